/* metrics: see metrics.h. */
#include "daemon/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/httpget.h"
#include "daemon/log.h"
#include "daemon/parse.h"

struct metrics_writer {
    char *s;
    size_t len, cap;
    bool nomem;
    char err[256];      /* the first bad name */
};

struct metrics {
    httpget *http;
    metrics_collect_fn fn;
    void *opaque;
};

__attribute__((format(printf, 2, 3)))
static void put(metrics_writer *w, const char *fmt, ...)
{
    va_list ap;
    while (!w->nomem) {
        size_t room = w->cap - w->len;
        va_start(ap, fmt);
        int n = vsnprintf(w->s ? w->s + w->len : NULL, w->s ? room : 0, fmt,
                          ap);
        va_end(ap);
        if (n < 0) {
            w->nomem = true;
            return;
        }
        if (w->s && (size_t)n < room) {
            w->len += (size_t)n;
            return;
        }
        size_t cap = (w->cap ? w->cap : 4096) * 2 + (size_t)n;
        char *s = realloc(w->s, cap);
        if (!s) {
            w->nomem = true;
            return;
        }
        w->s = s;
        w->cap = cap;
    }
}

/*
 * The shortest text that reads back as v, so that bucket bounds print the
 * same everywhere ("0.0001", not "0.00010000000000000001").
 */
static void put_number(metrics_writer *w, double v)
{
    if (isnan(v)) {
        put(w, "NaN");
        return;
    }
    if (isinf(v)) {
        put(w, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    /* Counters of bytes read better whole than as 1.5e+09. */
    if (v == floor(v) && fabs(v) < 1e17) {
        put(w, "%.0f", v);
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    put(w, "%s", buf);
}

/* HELP text escapes backslash and newline; label values also quotes. */
static void put_escaped(metrics_writer *w, const char *s, bool quotes)
{
    for (; *s; s++) {
        if (*s == '\\')
            put(w, "\\\\");
        else if (*s == '\n')
            put(w, "\\n");
        else if (*s == '"' && quotes)
            put(w, "\\\"");
        else
            put(w, "%c", *s);
    }
}

static bool name_char(char c, bool first, bool colon)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (colon && c == ':') || (!first && c >= '0' && c <= '9');
}

static bool valid_name(const char *s, bool colon)
{
    if (!s || !*s)
        return false;
    for (size_t i = 0; s[i]; i++)
        if (!name_char(s[i], i == 0, colon))
            return false;
    return true;
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n > t && strcmp(s + n - t, tail) == 0;
}

__attribute__((format(printf, 2, 3)))
static void refuse(metrics_writer *w, const char *fmt, ...)
{
    if (w->err[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof(w->err), fmt, ap);
    va_end(ap);
}

/* HELP and TYPE, or false (and the reason kept) for a bad name. */
static bool family(metrics_writer *w, const char *name, const char *help,
                   const char *type)
{
    if (!valid_name(name, true)) {
        refuse(w, "'%s' is not a metric name", name ? name : "(null)");
        return false;
    }
    put(w, "# HELP %s ", name);
    put_escaped(w, help ? help : "", false);
    put(w, "\n# TYPE %s %s\n", name, type);
    return true;
}

static void sample(metrics_writer *w, const char *name, const char *suffix,
                   double v)
{
    put(w, "%s%s ", name, suffix);
    put_number(w, v);
    put(w, "\n");
}

void metrics_counter(metrics_writer *w, const char *name, const char *help,
                     double value)
{
    if (name && !ends_with(name, "_total")) {
        refuse(w, "counter '%s' does not end in _total", name);
        return;
    }
    if (family(w, name, help, "counter"))
        sample(w, name, "", value);
}

void metrics_gauge(metrics_writer *w, const char *name, const char *help,
                   double value)
{
    if (family(w, name, help, "gauge"))
        sample(w, name, "", value);
}

void metrics_state(metrics_writer *w, const char *name, const char *help,
                   const char *const *states, size_t n, const char *current)
{
    if (!family(w, name, help, "gauge"))
        return;
    for (size_t i = 0; i < n; i++) {
        put(w, "%s{state=\"", name);
        put_escaped(w, states[i], true);
        put(w, "\"} %d\n", current && strcmp(states[i], current) == 0);
    }
}

void metrics_info(metrics_writer *w, const char *name, const char *help, ...)
{
    if (name && !ends_with(name, "_info")) {
        refuse(w, "info family '%s' does not end in _info", name);
        return;
    }
    if (!family(w, name, help, "gauge"))
        return;
    va_list ap;
    va_start(ap, help);
    put(w, "%s{", name);
    const char *sep = "";
    for (const char *k; (k = va_arg(ap, const char *)); sep = ",") {
        const char *v = va_arg(ap, const char *);
        if (!valid_name(k, false) || strncmp(k, "__", 2) == 0) {
            refuse(w, "'%s' is not a label name", k);
            break;
        }
        put(w, "%s%s=\"", sep, k);
        put_escaped(w, v ? v : "", true);
        put(w, "\"");
    }
    va_end(ap);
    put(w, "} 1\n");
}

void metrics_histogram(metrics_writer *w, const char *name, const char *help,
                       const sampler_summary *s)
{
    if (!s->bounds) {
        refuse(w, "histogram '%s' has no bounds", name ? name : "(null)");
        return;
    }
    if (!family(w, name, help, "histogram"))
        return;
    for (size_t i = 0; i < s->bounds->n; i++) {
        put(w, "%s_bucket{le=\"", name);
        put_number(w, (double)s->bounds->le[i] / s->bounds->per_base);
        put(w, "\"} %llu\n",
            (unsigned long long)sampler_cumulative(s, i));
    }
    put(w, "%s_bucket{le=\"+Inf\"} %llu\n", name,
        (unsigned long long)s->count);
    sample(w, name, "_sum", s->sum / s->bounds->per_base);
    sample(w, name, "_count", (double)s->count);
}

metrics_writer *metrics_writer_new(void)
{
    return calloc(1, sizeof(metrics_writer));
}

const char *metrics_writer_text(metrics_writer *w, const char **err)
{
    if (!w->err[0] && !w->nomem)
        put(w, "%s", "");       /* an empty writer's text is "" */
    if (w->nomem && !w->err[0])
        snprintf(w->err, sizeof(w->err), "out of memory");
    if (err)
        *err = w->err[0] ? w->err : NULL;
    return w->err[0] ? NULL : w->s;
}

void metrics_writer_free(metrics_writer *w)
{
    if (!w)
        return;
    free(w->s);
    free(w);
}

/* The body of GET /metrics: the owner's families, written now. */
static int scrape(void *opaque, char **body, size_t *len)
{
    metrics *m = opaque;
    metrics_writer *w = metrics_writer_new();
    const char *err = "out of memory";
    const char *text = NULL;
    if (w) {
        m->fn(m->opaque, w);
        text = metrics_writer_text(w, &err);
    }
    *body = text ? strdup(text) : NULL;
    if (!*body && text)
        err = "out of memory";
    if (!*body)
        log_msg("metrics: cannot answer a scrape: %s", err);
    else
        *len = strlen(*body);
    metrics_writer_free(w);
    return *body ? 0 : -ENOMEM;
}

/*
 * "PORT" and ":PORT" are 127.0.0.1: an endpoint is not exposed beyond
 * the host unless an address says so.
 */
static int parse_addr(const char *addr, char *host, size_t hostlen,
                      uint16_t *port)
{
    long p;
    if (parse_count(addr, 1, 65535, &p) == 0) {
        host[0] = '\0';
        *port = (uint16_t)p;
        return 0;
    }
    return parse_hostport(addr, host, hostlen, port) < 0 || *port == 0
               ? -EINVAL : 0;
}

int metrics_new(metrics **out, struct event_base *base, const char *addr,
                metrics_collect_fn fn, void *opaque, char *err, size_t errlen)
{
    char host[128];
    uint16_t port;
    if (parse_addr(addr, host, sizeof(host), &port) < 0) {
        snprintf(err, errlen, "--metrics '%s': expected [ADDR:]PORT, e.g. "
                 "9100 or :9100 (127.0.0.1), 0.0.0.0:9100 or [::1]:9100",
                 addr);
        return -EINVAL;
    }
    metrics *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    m->fn = fn;
    m->opaque = opaque;
    char why[256];
    int r = httpget_new(&m->http, base, host, port, "/metrics",
                        "text/plain; version=0.0.4; charset=utf-8", scrape,
                        m, why, sizeof(why));
    if (r < 0) {
        snprintf(err, errlen, "--metrics %s: %s", addr, why);
        free(m);
        return r;
    }
    *out = m;
    return 0;
}

void metrics_free(metrics *m)
{
    if (!m)
        return;
    httpget_free(m->http);
    free(m);
}
