/*
 * replicate: the primary's side of replication (docs/replication.md).
 *
 * One pri per process drives one VM from the event loop: it brings a
 * secondary up over a link (primary/link.h), takes a checkpoint every
 * interval (pause, build the package in memory, mark the output epoch,
 * resume, queue the package for the link's thread), keeps at most
 * PRI_WINDOW packages unacknowledged, releases held output (console
 * through primary/outbuf.h, network frames through vm/net.h) as
 * acknowledgements come, answers a NACK with a full package, sends PINGs
 * when idle and declares the secondary dead when it goes quiet, resets,
 * stalls or says so.  Then the VM runs on unprotected (degraded) until
 * pri_attach, or the reconnect timer, brings a secondary up again.
 *
 * Checkpoint ids start at 1 with each secondary, as the protocol says;
 * output epochs go on across secondaries (the net queue's marks must not
 * decrease): checkpoint k of a secondary brought up at epoch g marks
 * epoch g + k.
 *
 * Everything here runs on the loop's thread, which must have libevent's
 * pthreads support (evthread_use_pthreads) before its base was made.
 */
#ifndef FTVM_PRIMARY_REPLICATE_H
#define FTVM_PRIMARY_REPLICATE_H

#include <stdbool.h>
#include <stdint.h>

#include "primary/outbuf.h"
#include "primary/package.h"
#include "primary/sampler.h"
#include "vm/vm.h"
#include "vm/vmshape.h"

struct event_base;

#define PRI_WINDOW 4                /* packages unacknowledged at most */
#define PRI_HOLD_FRAMES 256         /* held frames that checkpoint early */
#define PRI_HOLD_BYTES (1u << 20)   /* ... and held bytes (net, console) */
#define PRI_CONNECT_TIMEOUT_MS 3000
#define PRI_CORRUPT_MAX 8           /* FTVM_TEST_CORRUPT_PACKAGE entries */

typedef enum pri_state {
    PRI_SETUP,      /* connecting, bring-up not yet acknowledged */
    PRI_ACTIVE,     /* checkpoints flowing and acknowledged */
    PRI_DEGRADED,   /* the secondary is gone; running unprotected */
    PRI_STOPPED,    /* replication stopped on request */
} pri_state;

const char *pri_state_name(pri_state s);

typedef struct pri_opts {
    const char *secondary;      /* HOST:PORT */
    vmshape shape;              /* sent first, as "ftvm-vm" */
    uint64_t interval_ns;       /* 0: 50 ms */
    uint64_t heartbeat_ns;      /* 0: 50 ms */
    uint64_t failure_ns;        /* 0: 300 ms */
    uint64_t reconnect_ns;      /* 0: only pri_attach brings one up */
    /*
     * A package written but not acknowledged, or a write that made no
     * progress, for this long means a secondary that is alive but stuck
     * (it heartbeats, so the failure timeout cannot tell).  0: 10 s.
     */
    uint64_t stall_ns;
    /* TEST ONLY: packages (from 1) damaged after their sum; 0 ends. */
    uint64_t corrupt[PRI_CORRUPT_MAX];
    /*
     * Optional: whether a secondary may be brought up now (false, with a
     * message, while a checkpoint to disk uses the dirty log).
     */
    bool (*may_protect)(void *opaque, char *err, size_t errlen);
    void *opaque;
} pri_opts;

typedef struct pri pri;

/*
 * Sets up replication of v (created, not yet started) whose console goes
 * through console.  Nothing is sent before pri_start.  0 or -errno + msg.
 */
int pri_new(pri **out, vm *v, struct event_base *base, ob *console,
            const pri_opts *o, char *err, size_t errlen);
/*
 * Connects to the secondary (up to PRI_CONNECT_TIMEOUT_MS) and starts the
 * bring-up.  When it cannot be reached this fails, unless reconnect_ns is
 * set: then the VM starts degraded and the timer keeps trying.
 */
int pri_start(pri *p, char *err, size_t errlen);
void pri_free(pri *p);

/*
 * Called when a checkpoint asked for is acknowledged (rc 0), refused or
 * lost with its secondary (rc < 0, err says why).
 */
typedef void (*pri_done_fn)(void *opaque, int rc, uint64_t id,
                            const char *err);
/* Takes a checkpoint now (or as soon as the window allows). */
int pri_checkpoint(pri *p, pri_done_fn done, void *opaque, char *err,
                   size_t errlen);
/*
 * Changes a timing live: "checkpoint-interval", "heartbeat",
 * "failure-timeout", "reconnect" (0 turns reconnecting off).
 */
int pri_set(pri *p, const char *key, uint64_t ns, char *err, size_t errlen);
/* Ends replication cleanly: EOF, close; the VM runs on (stopped). */
int pri_stop(pri *p, char *err, size_t errlen);
/* Brings a new secondary up at addr (degraded or stopped only). */
int pri_attach(pri *p, const char *addr, char *err, size_t errlen);
/*
 * The VM has stopped for good.  takeover: the monitor failed (not the
 * guest), so the connection is dropped without EOF and held output is
 * discarded, leaving the secondary to carry on; otherwise replication
 * ends with EOF and held output is written.  done(opaque) is called on
 * the loop thread once that is over.
 */
void pri_vm_stopped(pri *p, bool takeover, void (*done)(void *opaque),
                    void *opaque);

typedef struct pri_status {
    pri_state state;
    char secondary[256];
    uint64_t secondaries;           /* brought up (or tried) so far */
    uint64_t interval_ns, heartbeat_ns, failure_ns, reconnect_ns;
    uint64_t taken, acked;          /* checkpoints, all secondaries */
    uint64_t last_id, last_acked;   /* this secondary's ids */
    uint64_t full, nacks;
    uint64_t in_flight;
    double rate;                    /* checkpoints per second, recent */
    smp_summary pause_ns, ack_ns, pages, bytes;
    uint64_t bytes_total;           /* packages, all secondaries */
    uint64_t last_heard_ns;         /* since the secondary last spoke */
    uint64_t pings, pongs, heartbeats;
    pkg_bringup_stats bringup;      /* the last one */
    uint64_t held_frames, held_bytes;   /* network, held now */
    ob_stats console;
    char last_error[512];
} pri_status;

void pri_get_status(pri *p, pri_status *st);
pri_state pri_get_state(const pri *p);

#endif
