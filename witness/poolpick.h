/*
 * poolpick: a picker of the standby pool (witness/pool.h, docs/witness.md
 * "The standby pool"): a primary left without a secondary lists the pool
 * and reserves one free standby with a transaction that succeeds only if
 * the entry is unchanged since it was listed, putting it back with
 * "taken_by" (the picker's unique value) added, under the standby's own
 * lease.  Two pickers never reserve one standby: the second's compare
 * fails.  A reservation without an answer is asked again, with the same
 * value, until etcd says WON (maybe an earlier attempt's) or LOST; it is
 * never taken for a success.  Everything runs on the owner's loop.
 */
#ifndef FTVM_WITNESS_POOLPICK_H
#define FTVM_WITNESS_POOLPICK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "witness/pool.h"

struct event_base;

/* Compare failures (others' reservations) before one pick gives up. */
#define POOLPICK_MAX_ROUNDS 16

typedef struct poolpick poolpick;

typedef enum poolpick_outcome {
    POOLPICK_PICKED,        /* reserved for us: result.picked */
    POOLPICK_EMPTY,         /* listed: no free standby fits */
    POOLPICK_FAILED,        /* the listing had no answer: nothing reserved */
} poolpick_outcome;

typedef struct poolpick_result {
    poolpick_outcome outcome;
    const pool_entry *picked;       /* PICKED: taken_by is ours */
    bool earlier;                   /* reserved by an earlier attempt */
    unsigned listed, fit;           /* entries listed; free ones that fit */
    const char *err;                /* FAILED: why */
} poolpick_result;

/* Valid during the call only. */
typedef void (*poolpick_cb)(void *opaque, const poolpick_result *r);

/* endpoints and tls_dir as the witness's (etcd_options.tls_dir). */
int poolpick_new(poolpick **out, struct event_base *base,
                    const char *endpoints, const char *tls_dir,
                    const char *pool, uint64_t timeout_ns, char *err,
                    size_t errlen);
void poolpick_free(poolpick *p);
/*
 * Lists the pool, chooses a free standby that fits vm_name at random and
 * reserves it with taker (unique per reservation: "primary <hex> for
 * NAME g<G>").  cb runs once, from the loop.  A reservation without an
 * answer is asked again every POOL_RETRY_NS until there is one
 * (poolpick_error says why meanwhile); one that lost (another picker,
 * or the standby gone) lists again.  0, or -errno with a message (bad
 * arguments, one already in flight).
 */
int poolpick_pick(poolpick *p, const char *vm_name, const char *taker,
              poolpick_cb cb, void *opaque, char *err, size_t errlen);
/*
 * Reserves e (as listed) with taker; cb as for poolpick_pick (PICKED, or
 * EMPTY when e changed or went).  For tests and poolpick_pick.
 */
int poolpick_reserve(poolpick *p, const pool_entry *e, const char *taker,
                 poolpick_cb cb, void *opaque, char *err, size_t errlen);
/*
 * Lists the pool: cb(opaque, entries, n, err) once from the loop, entries
 * NULL and err set when there was no answer.
 */
typedef void (*poolpick_list_cb)(void *opaque, const pool_entry *entries,
                             size_t n, const char *err);
int poolpick_list(poolpick *p, poolpick_list_cb cb, void *opaque, char *err,
              size_t errlen);
/*
 * Drops a pick in flight (no callback).  A reservation that was asked
 * and not answered may still hold that standby for us: it stays taken,
 * never used, until its lease ends.
 */
void poolpick_cancel(poolpick *p);
bool poolpick_busy(const poolpick *p);
/* The last unanswered request's error (cleared by an answer), or NULL. */
const char *poolpick_error(const poolpick *p);
/* Reservation attempts of the pick in flight, or of the last one. */
unsigned poolpick_attempts(const poolpick *p);
const char *poolpick_pool(const poolpick *p);

#endif
