/*
 * standby: the secondary's decisions, apart from the event loop that acts
 * on them (secondary/secondary.c), so that unit tests can call them.
 *
 * The secondary serves one primary at a time.  A connection that ends
 * before it has sent the VM's shape was not a primary, and the secondary
 * waits for another; once the VM exists the process serves that primary
 * to the end, which is a failover (the VM then runs here), a clean stop
 * (exit 0), the primary's loss before its first checkpoint (exit 3) or a
 * refused stream (exit 4), or the primary's word that it dropped this
 * secondary (exit 6: it keeps the VM, so this one never claims it).
 *
 * With a witness (--witness, docs/witness.md) losing the primary after
 * checkpoint 1 is not yet a failover: the secondary claims the pairing's
 * key first (CLAIMING) and goes live only once it has won; if the primary
 * won, it exits 5 without ever running the VM.  An operator's failover
 * claims too, while replication goes on; --force skips the witness.
 */
#ifndef FTVM_SECONDARY_STANDBY_H
#define FTVM_SECONDARY_STANDBY_H

#include <stdbool.h>
#include <stddef.h>

#include "secondary/receiver.h"
#include "witness/claim.h"

/*
 * Exit statuses before a failover, besides 0 (replication stopped
 * cleanly) and daemon/exitcode.h's; after one, those of a VM that runs.
 */
enum {
    STANDBY_EXIT_NOTHING = 3,   /* the primary died before checkpoint 1 */
    STANDBY_EXIT_REFUSED = 4,   /* the primary's stream was refused */
    STANDBY_EXIT_FENCED = 5,    /* the witness gave the VM to the primary */
    STANDBY_EXIT_DROPPED = 6,   /* the primary dropped this secondary
                                   ("ftvm-drop"): it keeps the VM */
};

typedef enum standby_state {
    STANDBY_WAITING,        /* for a primary */
    STANDBY_REPLICATING,    /* setup, or active once a checkpoint applied */
    STANDBY_CLAIMING,       /* the primary is lost: asking the witness */
    STANDBY_FAILOVER,       /* the RAM cache is becoming the VM */
    STANDBY_RUNNING,        /* failed over: the VM runs here */
    STANDBY_STOPPED,        /* replication is over; the process exits */
    STANDBY_DROPPED,        /* the primary dropped us; the process exits */
} standby_state;

/*
 * "waiting", "setup", "active", "claiming", "failover", "running",
 * "stopped", "dropped".
 */
const char *standby_state_name(standby_state s, bool applied);

/* Why the process stopped the receiver itself, if it did. */
typedef enum standby_request {
    STANDBY_REQUEST_NONE,
    STANDBY_REQUEST_FAILOVER,   /* ftvmctl failover */
    STANDBY_REQUEST_EXIT,       /* stop-replication, quit, a signal */
    STANDBY_REQUEST_CLAIM,      /* ftvmctl failover, asking the witness */
} standby_request;

/* A connection's end, as the receiver reported it. */
typedef struct standby_end {
    receiver_end why;
    bool have_vm;               /* the primary sent the VM's shape */
    bool applied;               /* at least one checkpoint was applied */
    bool witness;               /* --witness: a loss is claimed first */
    standby_request request;
    int request_status;         /* the exit status REQUEST_EXIT asked for */
} standby_end;

/* What the end was, for the log. */
typedef enum standby_verdict {
    STANDBY_AS_REQUESTED,       /* fail over, or exit, as asked */
    STANDBY_NOT_A_PRIMARY,      /* ended before the VM: wait for another */
    STANDBY_PRIMARY_STOPPED,    /* EOF (its stop-replication): exit 0 */
    STANDBY_PRIMARY_LOST,       /* lost or silent: fail over (or claim) */
    STANDBY_NOTHING_APPLIED,    /* lost before checkpoint 1: exit 3 */
    STANDBY_REFUSED,            /* the stream was refused: exit 4 */
    STANDBY_DROPPED_BY_PRIMARY, /* "ftvm-drop": exit 6, never a failover */
} standby_verdict;

typedef struct standby_decision {
    standby_verdict verdict;
    standby_state next;         /* WAITING, CLAIMING, FAILOVER, STOPPED or
                                   DROPPED */
    bool exit;                  /* the process exits with status */
    int status;
    const char *failover_reason;    /* FAILOVER: for the log and status */
} standby_decision;

/* What the end of the connection leads to. */
standby_decision standby_on_end(const standby_end *e);

/* What a claim's outcome (witness/claim.h) leads to. */
typedef enum standby_claim_act {
    STANDBY_CLAIM_FAIL_OVER,    /* won: go live (an operator's: once the
                                   receiver has stopped) */
    STANDBY_CLAIM_FENCED,       /* lost after the primary's loss: exit 5 */
    STANDBY_CLAIM_REFUSE,       /* an operator's, lost or unknown: refuse
                                   the command, replication goes on */
    STANDBY_CLAIM_WAIT,         /* unknown after the primary's loss: stay
                                   CLAIMING, never live, asking again */
    STANDBY_CLAIM_NOTHING,      /* claiming: no outcome yet */
} standby_claim_act;

/* requested: the claim is an operator's failover (state REPLICATING). */
standby_claim_act standby_on_claim(bool requested, claim_state outcome);

/*
 * Whether a primary of generation may be served, the witness having
 * decided generations up to highest for its VM's name (witness/
 * generations.h): only a newer one, since a decided generation's pairing
 * is over and whoever runs the VM now is at least that new.  0, or -EPERM
 * with "primary of generation G is older than (not newer than, when
 * equal) generation H decided by the witness" in err.
 */
int standby_admit(uint64_t generation, uint64_t highest, char *err,
                  size_t errlen);

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
/*
 * Whether ftvmctl failover --force may run now: while replicating (as
 * above, an operator's claim in flight allowed) or while claiming (the
 * witness cannot be reached).  0 or -EINVAL/-EAGAIN with the message.
 */
int standby_may_force(standby_state s, bool applied, standby_request request,
                      char *err, size_t errlen);
int standby_may_stop(standby_state s, bool applied, standby_request request,
                     char *err, size_t errlen);
/* Whether a checkpoint to disk may be written: there is a VM to save. */
int standby_may_save(standby_state s, bool applied, char *err,
                     size_t errlen);

#endif
