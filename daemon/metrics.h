/*
 * metrics: a Prometheus endpoint (text exposition format 0.0.4) for an
 * ftvm process, on its event loop, off unless --metrics [ADDR:]PORT.
 *
 * Each scrape asks the owner's collect function to write its families
 * with the writer calls below; every family gets its HELP and TYPE lines.
 * Names follow Prometheus' conventions: base units in the name (_seconds,
 * _bytes), and the writer refuses a counter whose name does not end in
 * _total or an info family's that does not end in _info.  docs/metrics.md
 * lists every family.
 *
 *     GET /metrics     the families (a query string is ignored)
 *     anything else    404, or 405 for another method on /metrics
 */
#ifndef FTVM_DAEMON_METRICS_H
#define FTVM_DAEMON_METRICS_H

#include <stddef.h>

#include "daemon/sampler.h"

struct event_base;

typedef struct metrics_writer metrics_writer;

/* Writes the owner's families on w, on the loop's thread. */
typedef void (*metrics_collect_fn)(void *opaque, metrics_writer *w);

/* A value that only goes up while the process lives. */
void metrics_counter(metrics_writer *w, const char *name, const char *help,
                     double value);
void metrics_gauge(metrics_writer *w, const char *name, const char *help,
                   double value);
/*
 * An enum: one gauge sample per state, name{state="S"}, 1 for current
 * and 0 for the others (all 0 if current is none of them).
 */
void metrics_state(metrics_writer *w, const char *name, const char *help,
                   const char *const *states, size_t n, const char *current);
/*
 * A gauge of 1 whose labels carry the information: label name, value,
 * ..., NULL.
 */
void metrics_info(metrics_writer *w, const char *name, const char *help,
                  ...) __attribute__((sentinel));
/*
 * The sampler's buckets as name_bucket{le=...} (cumulative, up to +Inf),
 * name_sum and name_count, in the bounds' base unit.
 */
void metrics_histogram(metrics_writer *w, const char *name, const char *help,
                       const sampler_summary *s);

/*
 * A writer on its own, for tests and for the endpoint.  The text is
 * NUL-terminated; NULL if a name was not a valid metric or label name
 * (err says which) or memory ran out.
 */
metrics_writer *metrics_writer_new(void);
const char *metrics_writer_text(metrics_writer *w, const char **err);
void metrics_writer_free(metrics_writer *w);

typedef struct metrics metrics;

/*
 * Serves fn's families on addr: "127.0.0.1:9100", "[::1]:9100",
 * "0.0.0.0:9100" for every IPv4 address, "9100" or ":9100" for 127.0.0.1
 * (an endpoint is not exposed beyond the host unless asked for), with
 * httpget.h's bounds.  0, or -errno with a message naming addr.
 */
int metrics_new(metrics **out, struct event_base *base, const char *addr,
                metrics_collect_fn fn, void *opaque, char *err,
                size_t errlen);
void metrics_free(metrics *m);

#endif
