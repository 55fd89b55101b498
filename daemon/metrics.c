/* metrics: see metrics.h. */
#include "daemon/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/parse.h"

struct metrics {
    struct evhttp *http;
    char prefix[64];
    const metrics_hint *hints;
    metrics_source_fn fn;
    void *opaque;
};

/* A growing text buffer; on allocation failure it keeps what it had. */
typedef struct text {
    char *s;
    size_t len, cap;
} text;

__attribute__((format(printf, 2, 3)))
static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t room = t->cap - t->len;
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? room : 0, fmt,
                          ap);
        va_end(ap);
        if (n < 0)
            return;
        if (t->s && (size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap ? t->cap : 4096) * 2 + (size_t)n;
        char *s = realloc(t->s, cap);
        if (!s)
            return;
        t->s = s;
        t->cap = cap;
    }
}

/* Keys become [a-zA-Z0-9_]: a dot or dash becomes '_'. */
static void sanitize(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < cap; i++) {
        char c = src[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '_';
        dst[i] = ok ? c : '_';
    }
    dst[i] = '\0';
}

static const metrics_hint *find_hint(const metrics_hint *hints,
                                     const char *path)
{
    for (const metrics_hint *h = hints; h && h->path; h++)
        if (strcmp(h->path, path) == 0)
            return h;
    return NULL;
}

/* Label values escape backslash, quote and newline. */
static void put_label_value(text *t, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            put(t, "\\%c", *v);
        else if (*v == '\n')
            put(t, "\\n");
        else
            put(t, "%c", *v);
    }
}

static void sample(text *t, const char *prefix, const metrics_hint *hints,
                   const char *path, json_t *v)
{
    const metrics_hint *h = find_hint(hints, path);
    char name[256], leaf[128];
    sanitize(name, sizeof(name), h && h->name ? h->name : path);
    const char *type = h && h->type == METRICS_COUNTER ? "counter" : "gauge";
    if (h && h->help)
        put(t, "# HELP %s_%s %s\n", prefix, name, h->help);
    put(t, "# TYPE %s_%s %s\n", prefix, name, type);
    if (json_is_string(v)) {
        const char *dot = strrchr(path, '.');
        sanitize(leaf, sizeof(leaf), dot ? dot + 1 : path);
        put(t, "%s_%s{%s=\"", prefix, name, leaf);
        put_label_value(t, json_string_value(v));
        put(t, "\"} 1\n");
        return;
    }
    double x = json_is_boolean(v) ? (json_is_true(v) ? 1 : 0)
                                  : json_number_value(v);
    put(t, "%s_%s %.17g\n", prefix, name,
        x * (h && h->scale ? h->scale : 1));
}

static void flatten(text *t, const char *prefix, const metrics_hint *hints,
                    const char *path, json_t *v)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            char sub[256];
            snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", k);
            flatten(t, prefix, hints, sub, x);
        }
    } else if (json_is_number(v) || json_is_boolean(v) ||
               json_is_string(v)) {
        sample(t, prefix, hints, path, v);
    }
}

char *metrics_format(const char *prefix, const metrics_hint *hints,
                     json_t *status)
{
    text t = { 0 };
    flatten(&t, prefix, hints, "", status);
    put(&t, "%s", "");
    return t.s;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    metrics *m = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(req);
    if (strcmp(uri, "/metrics") == 0 ||
               strncmp(uri, "/metrics?", 9) == 0) {
        json_t *st = m->fn(m->opaque);
        char *s = st ? metrics_format(m->prefix, m->hints, st) : NULL;
        json_decref(st);
        if (s) {
            evhttp_add_header(hdr, "Content-Type",
                              "text/plain; version=0.0.4; charset=utf-8");
            evbuffer_add(out, s, strlen(s));
            evhttp_send_reply(req, HTTP_OK, "OK", out);
        } else {
            evhttp_send_error(req, HTTP_INTERNAL, "no status");
        }
        free(s);
    } else if (strcmp(uri, "/") == 0) {
        evhttp_add_header(hdr, "Content-Type", "text/plain; charset=utf-8");
        evbuffer_add_printf(out, "ftvm: metrics are at /metrics\n");
        evhttp_send_reply(req, HTTP_OK, "OK", out);
    } else {
        evhttp_send_error(req, HTTP_NOTFOUND, NULL);
    }
    evbuffer_free(out);
}

int metrics_new(metrics **out, struct event_base *base, const char *addr,
                const char *prefix, const metrics_hint *hints,
                metrics_source_fn fn, void *opaque, char *err, size_t errlen)
{
    char host[128];
    uint16_t port;
    if (parse_hostport(addr, host, sizeof(host), &port) < 0 || port == 0) {
        snprintf(err, errlen, "--metrics '%s': expected ADDR:PORT, e.g. "
                 "127.0.0.1:9100 or :9100", addr);
        return -EINVAL;
    }
    metrics *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    snprintf(m->prefix, sizeof(m->prefix), "%s", prefix);
    m->hints = hints;
    m->fn = fn;
    m->opaque = opaque;
    m->http = evhttp_new(base);
    if (!m->http ||
        evhttp_bind_socket(m->http, host[0] ? host : "0.0.0.0",
                           port) < 0) {
        int e = errno ? errno : EADDRNOTAVAIL;
        snprintf(err, errlen, "--metrics %s: cannot listen: %s", addr,
                 strerror(e));
        metrics_free(m);
        return -e;
    }
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET);
    evhttp_set_gencb(m->http, on_request, m);
    *out = m;
    return 0;
}

void metrics_free(metrics *m)
{
    if (!m)
        return;
    if (m->http)
        evhttp_free(m->http);
    free(m);
}
