/*
 * recruit: a primary left without a secondary finds a new one in the
 * witness's standby pool (`ftvm primary --standby-pool`, docs/witness.md
 * "The standby pool").
 *
 * Whenever the replicator is degraded (after winning its claim, after a
 * secondary lost before it could have applied a checkpoint, or at start
 * with --reconnect and the secondary unreachable), a pick is made
 * (witness/pool.h: list, reserve one free standby atomically) and the
 * standby picked is attached as any secondary is (replicator_attach: a
 * new pairing, the next generation).  None free, the pool unanswered, or
 * the attach failed: asked again every RECRUIT_RETRY_NS, status saying
 * "waiting for a standby".  Protected again, stopped, claiming or fenced:
 * nothing is picked, a pick in flight is dropped.
 *
 * recruit_next is the decision, apart from etcd and the loop, for unit
 * tests; the rest carries it out on the replicator's loop.
 */
#ifndef FTVM_PRIMARY_RECRUIT_H
#define FTVM_PRIMARY_RECRUIT_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint/pairing.h"
#include "primary/protection.h"

struct event_base;
struct json_t;

#define RECRUIT_RETRY_NS 1000000000ull

typedef enum recruit_state {
    RECRUIT_IDLE,           /* protected, or nothing to do */
    RECRUIT_PICKING,        /* a pick in flight */
    RECRUIT_WAITING,        /* none free (or no answer): asking again */
    RECRUIT_ATTACHING,      /* the standby picked is being brought up */
} recruit_state;

/* "idle", "picking", "waiting for a standby", "attaching". */
const char *recruit_state_name(recruit_state s);

typedef enum recruit_event {
    RECRUIT_EV_DEGRADED,    /* the replicator runs unprotected */
    RECRUIT_EV_SETUP,       /* a secondary is being brought up */
    RECRUIT_EV_ACTIVE,      /* a secondary protects the VM */
    RECRUIT_EV_OTHER,       /* stopped, claiming, fenced, ending */
    RECRUIT_EV_PICKED,      /* the pick reserved a standby */
    RECRUIT_EV_EMPTY,       /* none free, or the pool did not answer */
    RECRUIT_EV_ATTACH_FAILED,
    RECRUIT_EV_TIMER,       /* the retry timer fired */
} recruit_event;

typedef enum recruit_action {
    RECRUIT_NOTHING,
    RECRUIT_PICK,           /* start a pick */
    RECRUIT_ATTACH,         /* attach the standby picked */
    RECRUIT_ARM,            /* arm the retry timer */
    RECRUIT_CANCEL,         /* drop the pick in flight and the timer */
    RECRUIT_DONE,           /* the standby picked protects the VM */
} recruit_action;

/* The replicator's state as an event: DEGRADED, SETUP, ACTIVE or OTHER. */
recruit_event recruit_event_of(const protection *p);
/* The next state, and what to do, on ev in *s. */
recruit_action recruit_next(recruit_state *s, recruit_event ev);

typedef struct recruit recruit;

typedef int (*recruit_attach_fn)(void *opaque, const char *addr, char *err,
                                 size_t errlen);

typedef struct recruit_opts {
    const char *endpoints;      /* --witness */
    const char *tls_dir;        /* --witness-tls, or NULL */
    const char *pool;           /* --pool: NULL "default" */
    uint64_t timeout_ns;        /* --witness-timeout */
    /* What it follows (both outlive it): the decisions, the pairing. */
    const protection *prot;
    const pairing *pair;
    const char *me;             /* the primary's witness value */
    recruit_attach_fn attach;
    void *opaque;
} recruit_opts;

int recruit_new(recruit **out, struct event_base *base,
                const recruit_opts *o, char *err, size_t errlen);
void recruit_free(recruit *r);
/* The replicator's state may have changed: acts on it. */
void recruit_update(recruit *r);
/*
 * The status object "standby_pool": pool, state, picked (the address of
 * the last standby picked), picks, recruited, error.
 */
struct json_t *recruit_status(const recruit *r);

#endif
