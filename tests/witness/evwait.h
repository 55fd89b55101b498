/*
 * evwait: what the witness's C tests share: failing with a message, and
 * running an event loop until a condition holds, with a deadline scaled
 * by FTVM_TIME_SCALE (tests/lib/ftvmtest.py's rule).
 */
#ifndef FTVM_TESTS_WITNESS_EVWAIT_H
#define FTVM_TESTS_WITNESS_EVWAIT_H

#include <stdbool.h>

struct event_base;

/* FAIL: and the message on stderr, exit 1. */
void evwait_die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
                                                     noreturn));
/* CLOCK_MONOTONIC in seconds. */
double evwait_now(void);
/* FTVM_TIME_SCALE (at least 1). */
double evwait_scale(void);
/* Runs base for seconds, whether or not anything is pending. */
void evwait_pause(struct event_base *base, double seconds);
/*
 * Runs base in 20 ms slices until pred(arg) holds; after seconds (scaled)
 * fails naming what.
 */
void evwait_until(struct event_base *base, bool (*pred)(void *), void *arg,
                  double seconds, const char *what);

#endif
