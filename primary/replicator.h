/*
 * replicator: the primary's side of replication (docs/replication.md).
 *
 * One pri per process drives one VM from the event loop: it brings a
 * secondary up over a link (primary/channel.h), takes a checkpoint every
 * interval (pause, build the package in memory, mark the output epoch,
 * resume, queue the package for the link's thread), keeps at most
 * REPLICATOR_WINDOW packages unacknowledged, releases held output (console
 * bytes and network frames, primary/outqueue.h) as acknowledgements
 * come, answers a NACK with a full package, sends PINGs
 * when idle and declares the secondary dead when it goes quiet, resets,
 * stalls or says so.  Then the VM runs on unprotected (degraded) until
 * replicator_attach, or the reconnect timer, brings a secondary up again.
 *
 * Checkpoint ids start at 1 with each secondary, as the protocol says;
 * output epochs go on across secondaries (outqueue_begin).
 *
 * Everything here runs on the loop's thread, which must have libevent's
 * pthreads support (evthread_use_pthreads) before its base was made.
 */
#ifndef FTVM_PRIMARY_REPLICATOR_H
#define FTVM_PRIMARY_REPLICATOR_H

#include <stdbool.h>
#include <stdint.h>

#include "primary/outqueue.h"
#include "primary/package.h"
#include "daemon/sampler.h"
#include "vm/vm.h"
#include "vm/vmshape.h"

struct event_base;

#define REPLICATOR_WINDOW 4        /* packages unacknowledged at most */
#define REPLICATOR_CONNECT_TIMEOUT_MS 3000

typedef enum replicator_state {
    REPLICATOR_SETUP,    /* connecting, bring-up not yet acknowledged */
    REPLICATOR_ACTIVE,   /* checkpoints flowing and acknowledged */
    REPLICATOR_DEGRADED, /* the secondary is gone; running unprotected */
    REPLICATOR_STOPPED,  /* replication stopped on request */
} replicator_state;

const char *replicator_state_name(replicator_state s);

typedef struct replicator_opts {
    const char *secondary;      /* HOST:PORT */
    vmshape shape;              /* sent first, as "ftvm-vm" */
    uint64_t interval_ns;       /* 0: 50 ms */
    uint64_t heartbeat_ns;      /* 0: 50 ms */
    uint64_t failure_ns;        /* 0: 300 ms */
    uint64_t reconnect_ns;      /* 0: only replicator_attach brings one up */
    /*
     * A package written but not acknowledged, or a write that made no
     * progress, for this long means a secondary that is alive but stuck
     * (it heartbeats, so the failure timeout cannot tell).  0: 10 s.
     */
    uint64_t stall_ns;
    /*
     * Optional: whether a secondary may be brought up now (false, with a
     * message, while a checkpoint to disk uses the dirty log).
     */
    bool (*may_protect)(void *opaque, char *err, size_t errlen);
    void *opaque;
} replicator_opts;

typedef struct replicator replicator;

/*
 * Sets up replication of v (created, not yet started) whose console and
 * network output go through output (v's console_fn and transmit_fn);
 * frames released from it go to v's network backend.  Nothing is sent
 * before replicator_start.  0 or -errno + msg.
 */
int replicator_new(replicator **out, vm *v, struct event_base *base,
                   outqueue *output, const replicator_opts *o, char *err,
                   size_t errlen);
/*
 * Connects to the secondary (up to REPLICATOR_CONNECT_TIMEOUT_MS) and starts
 * the bring-up.  When it cannot be reached this fails, unless reconnect_ns is
 * set: then the VM starts degraded and the timer keeps trying.
 */
int replicator_start(replicator *p, char *err, size_t errlen);
void replicator_free(replicator *p);

/*
 * Called when a checkpoint asked for is acknowledged (rc 0), refused or
 * lost with its secondary (rc < 0, err says why).
 */
typedef void (*replicator_done_fn)(void *opaque, int rc, uint64_t id,
                                   const char *err);
/* Takes a checkpoint now (or as soon as the window allows). */
int replicator_checkpoint(replicator *p, replicator_done_fn done, void *opaque,
                          char *err, size_t errlen);
/*
 * Changes a timing live: "checkpoint-interval", "heartbeat",
 * "failure-timeout", "reconnect" (0 turns reconnecting off).
 */
int replicator_set(replicator *p, const char *key, uint64_t ns, char *err,
                   size_t errlen);
/* Ends replication cleanly: EOF, close; the VM runs on (stopped). */
int replicator_stop(replicator *p, char *err, size_t errlen);
/* Brings a new secondary up at addr (degraded or stopped only). */
int replicator_attach(replicator *p, const char *addr, char *err,
                      size_t errlen);
/*
 * The VM has stopped for good.  takeover: the monitor failed (not the
 * guest), so the connection is dropped without EOF and held output is
 * discarded, leaving the secondary to carry on; otherwise replication
 * ends with EOF and held output is written.  done(opaque) is called on
 * the loop thread once that is over.
 */
void replicator_vm_stopped(replicator *p, bool takeover,
                           void (*done)(void *opaque), void *opaque);

typedef struct replicator_status {
    replicator_state state;
    char secondary[256];
    uint64_t secondaries;           /* brought up (or tried) so far */
    uint64_t interval_ns, heartbeat_ns, failure_ns, reconnect_ns;
    uint64_t taken, acked;          /* checkpoints, all secondaries */
    uint64_t last_id, last_acked;   /* this secondary's ids */
    uint64_t full, nacks;
    uint64_t in_flight;
    double rate;                    /* checkpoints per second, recent */
    sampler_summary pause_ns, ack_ns, pages, bytes;
    uint64_t bytes_total;           /* packages, all secondaries */
    uint64_t last_heard_ns;         /* since the secondary last spoke */
    uint64_t pings;                 /* written to this secondary */
    uint64_t pongs, heartbeats;     /* received, all secondaries */
    package_bringup_stats bringup;      /* the last one */
    outqueue_stats output;
    char last_error[512];
} replicator_status;

void replicator_get_status(replicator *p, replicator_status *st);
replicator_state replicator_get_state(const replicator *p);

#endif
