/*
 * standby: the secondary's decisions, apart from the event loop that acts
 * on them (secondary/secondary.c), so that unit tests can call them.
 *
 * The secondary serves one primary at a time.  A connection that ends
 * before it has sent the VM's shape was not a primary, and the secondary
 * waits for another; once the VM exists the process serves that primary
 * to the end, which is a failover (the VM then runs here), a clean stop
 * (exit 0), the primary's loss before its first checkpoint (exit 3) or a
 * refused stream (exit 4).
 */
#ifndef FTVM_SECONDARY_STANDBY_H
#define FTVM_SECONDARY_STANDBY_H

#include <stdbool.h>
#include <stddef.h>

#include "secondary/receiver.h"

/*
 * Exit statuses before a failover, besides 0 (replication stopped
 * cleanly) and daemon/exitcode.h's; after one, those of a VM that runs.
 */
enum {
    STANDBY_EXIT_NOTHING = 3,   /* the primary died before checkpoint 1 */
    STANDBY_EXIT_REFUSED = 4,   /* the primary's stream was refused */
};

typedef enum standby_state {
    STANDBY_WAITING,        /* for a primary */
    STANDBY_REPLICATING,    /* setup, or active once a checkpoint applied */
    STANDBY_FAILOVER,       /* the RAM cache is becoming the VM */
    STANDBY_RUNNING,        /* failed over: the VM runs here */
    STANDBY_STOPPED,        /* replication is over; the process exits */
} standby_state;

/* "waiting", "setup", "active", "failover", "running", "stopped". */
const char *standby_state_name(standby_state s, bool applied);

/* Why the process stopped the receiver itself, if it did. */
typedef enum standby_request {
    STANDBY_REQUEST_NONE,
    STANDBY_REQUEST_FAILOVER,   /* ftvmctl failover */
    STANDBY_REQUEST_EXIT,       /* stop-replication, quit, a signal */
} standby_request;

/* A connection's end, as the receiver reported it. */
typedef struct standby_end {
    receiver_end why;
    bool have_vm;               /* the primary sent the VM's shape */
    bool applied;               /* at least one checkpoint was applied */
    standby_request request;
    int request_status;         /* the exit status REQUEST_EXIT asked for */
} standby_end;

/* What the end was, for the log. */
typedef enum standby_verdict {
    STANDBY_AS_REQUESTED,       /* fail over, or exit, as asked */
    STANDBY_NOT_A_PRIMARY,      /* ended before the VM: wait for another */
    STANDBY_PRIMARY_STOPPED,    /* EOF (its stop-replication): exit 0 */
    STANDBY_PRIMARY_LOST,       /* lost or silent: fail over */
    STANDBY_NOTHING_APPLIED,    /* lost before checkpoint 1: exit 3 */
    STANDBY_REFUSED,            /* the stream was refused: exit 4 */
} standby_verdict;

typedef struct standby_decision {
    standby_verdict verdict;
    standby_state next;         /* WAITING, FAILOVER or STOPPED */
    bool exit;                  /* the process exits with status */
    int status;
    const char *failover_reason;    /* FAILOVER: for the log and status */
} standby_decision;

/* What the end of the connection leads to. */
standby_decision standby_on_end(const standby_end *e);

/* What a SIGINT, SIGTERM or quit does in each state. */
typedef enum standby_stop {
    STANDBY_STOP_VM,            /* stop the VM; its exit status follows */
    STANDBY_STOP_REPLICATION,   /* SHUT 2 to the primary, then exit */
    STANDBY_STOP_EXIT,          /* exit now */
    STANDBY_STOP_IGNORED,       /* the VM is being started: nothing */
} standby_stop;

standby_stop standby_on_stop(standby_state s);

/*
 * Whether ftvmctl failover or stop-replication may run now: 0, or
 * -EINVAL (not replicating) or -EAGAIN (not yet, or already ending) with
 * the message for the operator.
 */
int standby_may_fail_over(standby_state s, bool applied,
                          standby_request request, char *err,
                          size_t errlen);
int standby_may_stop(standby_state s, bool applied, standby_request request,
                     char *err, size_t errlen);
/* Whether a checkpoint to disk may be written: there is a VM to save. */
int standby_may_save(standby_state s, bool applied, char *err,
                     size_t errlen);

#endif
