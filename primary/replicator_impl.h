/*
 * replicator_impl: the inside of struct replicator, shared by replicator.c
 * (the state machine: the link, heartbeats, degraded mode, the API) and
 * cycle.c (checkpoints, acknowledgements, output commit).  Not for other
 * modules.
 */
#ifndef FTVM_PRIMARY_REPLICATOR_IMPL_H
#define FTVM_PRIMARY_REPLICATOR_IMPL_H

#include <event2/util.h>
#include <sys/time.h>

#include "primary/channel.h"
#include "primary/replicator.h"

/* Package buffers kept for reuse (no page faults in the pause). */
#define POOL_MAX (REPLICATOR_WINDOW + 1)
/* Checkpoint times kept for the rate. */
#define RATE_N 256

typedef struct flight {
    uint64_t id;
    uint64_t sent_ns;       /* 0 until the link wrote it */
} flight;

typedef struct waiter {
    struct waiter *next;
    uint64_t id;            /* 0: the next checkpoint taken */
    replicator_done_fn fn;
    void *opaque;
} waiter;

struct replicator {
    vm *v;
    struct event_base *base;
    outqueue *out;
    replicator_opts o;
    char addr[256];
    replicator_state state;

    channel *link;          /* the current secondary's */
    channel *old;           /* one ending, until its thread is gone */
    bool release_on_exit;   /* write held output once old has ended */
    bool ready;             /* link's bring-up is written */
    bool holding;           /* output is held (from checkpoint 1 on) */
    package_bringup_stats bringup_tmp; /* the link's thread writes it */
    package_bringup_stats bringup;

    uint64_t next_id, acked_id;
    uint64_t last_start_ns;     /* when the last checkpoint began */
    bool need_full, due;
    uint64_t last_full_id;
    unsigned full_refusals; /* full packages refused since the last ACK */
    flight win[REPLICATOR_WINDOW];
    size_t nwin;
    waiter *waiters;
    qfile *pool[POOL_MAX];
    size_t npool;

    struct event *ev_ckpt, *ev_tick, *ev_early, *ev_reconnect;
    uint64_t last_tick_ns;
    bool ending;
    void (*done)(void *opaque);
    void *done_opaque;

    uint64_t secondaries, taken, acked, full, nacks, bytes_total;
    uint64_t pongs, heartbeats;
    sampler pause, ack, pages, bytes;
    uint64_t times[RATE_N];
    size_t ntimes, tnext;
    char last_error[512];
};

/* ---- replicator.c ---- */

/* Keeps the message for status and says it on stderr. */
__attribute__((format(printf, 2, 3))) void
replicator_say(replicator *p, const char *fmt, ...);
/* The secondary is gone: run on unprotected. */
void replicator_lose(replicator *p, const char *why);

/* ---- cycle.c ---- */

/* Takes a checkpoint now, or marks one due while the window is full. */
void cycle_take(replicator *p);
/* (Re)arms the checkpoint timer for an interval from now. */
void cycle_arm(replicator *p);
void cycle_on_timer(evutil_socket_t fd, short what, void *arg);
void cycle_on_early(evutil_socket_t fd, short what, void *arg);
/* From vCPU threads: held output passed its limit. */
void cycle_early_notify(void *opaque);
void cycle_ack(replicator *p, uint64_t id);
void cycle_nack(replicator *p, uint64_t id, const char *text);
/* Writes everything held and stops holding. */
void cycle_release_all(replicator *p);
/*
 * Answers the waiters: rc 0, those waiting on a checkpoint <= upto;
 * else those on upto exactly, or all for UINT64_MAX.
 */
void cycle_complete(replicator *p, uint64_t upto, int rc, const char *msg);
void cycle_pool_put(replicator *p, qfile *q);
/* Checkpoints per second, recently. */
double cycle_rate(const replicator *p, uint64_t now);

#endif
