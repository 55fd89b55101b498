/*
 * metrics: a Prometheus endpoint (text exposition format 0.0.4) for an
 * ftvm process, on its event loop, off unless --metrics ADDR:PORT.
 *
 * Generic: each scrape asks the owner for its status as a JSON object (the
 * same object `ftvmctl status --json` prints) and flattens it.  Every
 * number and boolean becomes a sample named PREFIX_PATH (the keys joined
 * with '_', e.g. ftvm_primary_pause_ms_p99), a gauge unless a hint says
 * otherwise; a string becomes PREFIX_PATH{PATH="value"} 1, so a state
 * can be matched on.  Hints give a sample a better name, type, unit scale
 * and help text; paths without one still appear.
 *
 *     GET /metrics     the samples
 *     GET /            a pointer to /metrics
 */
#ifndef FTVM_DAEMON_METRICS_H
#define FTVM_DAEMON_METRICS_H

#include <jansson.h>
#include <stddef.h>

struct event_base;

typedef enum metrics_type { METRICS_GAUGE, METRICS_COUNTER } metrics_type;

typedef struct metrics_hint {
    const char *path;       /* dotted JSON path: "pause_ms.p99" */
    const char *name;       /* without the prefix; NULL: from the path */
    metrics_type type;
    double scale;           /* the value is multiplied by it; 0: 1 */
    const char *help;       /* NULL: none */
} metrics_hint;

/* The owner's status now, a new reference (or NULL). */
typedef json_t *(*metrics_source_fn)(void *opaque);

typedef struct metrics metrics;

/*
 * Serves metrics on addr ("127.0.0.1:9100", "[::1]:9100", ":9100" for
 * every address).  hints ends with an entry whose path is NULL (may be
 * NULL).  0, or -errno with a message naming addr.
 */
int metrics_new(metrics **out, struct event_base *base, const char *addr,
                const char *prefix, const metrics_hint *hints,
                metrics_source_fn fn, void *opaque, char *err, size_t errlen);
void metrics_free(metrics *m);

/* The exposition text of one status object (malloc'd), for tests. */
char *metrics_format(const char *prefix, const metrics_hint *hints,
                     json_t *status);

#endif
