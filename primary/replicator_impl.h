/*
 * replicator_impl: the inside of struct replicator, shared by replicator.c
 * (the links, the timers, the API) and cycle.c (taking checkpoints); what
 * they decide is protection.h's.  Not for other modules.
 */
#ifndef FTVM_PRIMARY_REPLICATOR_IMPL_H
#define FTVM_PRIMARY_REPLICATOR_IMPL_H

#include <event2/util.h>
#include <sys/time.h>

#include "primary/channel.h"
#include "primary/protection.h"
#include "primary/recruit.h"
#include "primary/replicator.h"
#include "witness/generations.h"

/* Package buffers kept for reuse (no page faults in the pause). */
#define POOL_MAX (PROTECTION_WINDOW + 1)
/* Checkpoint times kept for the rate. */
#define RATE_N 256

struct replicator {
    vm *v;
    struct event_base *base;
    outqueue *out;
    vmshape shape;
    bool (*may_protect)(void *opaque, char *err, size_t errlen);
    void *opaque;
    protection prot;            /* every decision's state, the timings */
    tls_ctx *tls;               /* NULL: --insecure */
    bool insecure;
    claim *witness;             /* --witness, or NULL */
    recruit *recruit;           /* --standby-pool, or NULL */
    generations *gens;          /* with it: the first generation's scan */
    void (*gens_done)(void *opaque);
    void *gens_opaque;
    bool paused;                /* a hold of the VM's while fenced */

    channel *link;              /* the current secondary's */
    channel *old;               /* one ending, until its thread is gone */
    package_bringup_stats bringup_tmp; /* the link's thread writes it */
    package_bringup_stats bringup;

    qfile *pool[POOL_MAX];
    size_t npool;

    struct event *ev_ckpt, *ev_tick, *ev_early, *ev_reconnect;
    void (*done)(void *opaque);
    void *done_opaque;

    colo_mode mode;
    colo *colo;                 /* the console's comparison (COLO mode) */
    colo_cause cause;           /* of the checkpoint being asked for */
    uint64_t colo_timeout_ns;
    uint64_t causes[COLO_CAUSE_N];
    struct event *ev_colo;      /* colo_tick */
    qfile *colo_f;              /* encodes COLO's records (loop thread) */
    struct event *ev_colo_rel;  /* sends release records */

    uint64_t bytes_total, pongs, heartbeats;
    sampler pause, ack, pages, bytes;
    uint64_t times[RATE_N];
    size_t ntimes, tnext;
};

/* ---- replicator.c ---- */

/* Keeps the message for status and logs it. */
__attribute__((format(printf, 2, 3))) void
replicator_say(replicator *p, const char *fmt, ...);
/* Carries out what protection decided, in the order protection.h gives. */
void replicator_do(replicator *p, const protection_act *a);

/* ---- cycle.c ---- */

/* Takes a checkpoint now, or marks one due while the window is full. */
void cycle_take(replicator *p);
/* (Re)arms the checkpoint timer for an interval after the last began. */
void cycle_arm(replicator *p);
/* The checkpoint timer, and held output passing its limit (ev_early). */
void cycle_on_timer(evutil_socket_t fd, short what, void *arg);
/* ev_early: held output passed its limit. */
void cycle_on_early(evutil_socket_t fd, short what, void *arg);
/* Takes a checkpoint for cause (counted once it is taken). */
void cycle_take_for(replicator *p, colo_cause cause);
/* From vCPU threads: held output passed its limit. */
void cycle_early_notify(void *opaque);
void cycle_pool_put(replicator *p, qfile *q);
/* Checkpoints per second, recently. */
double cycle_rate(const replicator *p, uint64_t now);

#endif
