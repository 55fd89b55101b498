/* etcdwatch: see etcdwatch.h. */
#include "witness/etcdwatch.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "witness/b64.h"

/* Messages not yet parsed, several of them at most ETCD_MAX_BODY each. */
#define ETCDWATCH_MAX_BUFFER (8 * ETCD_MAX_BODY)

struct etcdwatch {
    etcd *c;
    char *key, *range_end;      /* base64 */
    int64_t next_rev;           /* 0: from whatever "now" is at creation */
    size_t ep;
    bool tried;                 /* ep is set: the next try is ep + 1 */
    struct evhttp_connection *conn;
    struct evbuffer *buf;       /* bytes of the stream not yet parsed */
    struct event *timer;        /* cutoff before created, or the retry */
    struct event *step;         /* work outside evhttp's callbacks */
    bool created;
    bool broken;                /* the stream is over: err says why */
    bool ended;                 /* for good: no more tries */
    bool waiting;               /* the pause before the next try */
    bool in_callback, cancelled;
    char err[1024];
    etcdwatch_event_fn on_event;
    etcdwatch_error_fn on_error;
    void *opaque;
};

static void schedule_step(etcdwatch *w)
{
    event_active(w->step, EV_TIMEOUT, 0);
}

static void breaks(etcdwatch *w, bool ended, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void breaks(etcdwatch *w, bool ended, const char *fmt, ...)
{
    if (w->broken)
        return;                 /* the first reason is the one */
    w->broken = true;
    w->ended = ended;
    char what[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(w->err, sizeof(w->err), "watch on %s: %s",
             etcd_endpoint_url(w->c, w->ep), what);
    schedule_step(w);
}

static void on_chunk(struct evhttp_request *hr, void *arg)
{
    etcdwatch *w = arg;
    /* evhttp drains its buffer after this returns: keep the bytes. */
    evbuffer_add_buffer(w->buf, evhttp_request_get_input_buffer(hr));
    if (evbuffer_get_length(w->buf) > ETCDWATCH_MAX_BUFFER)
        breaks(w, false, "over %d bytes unread", ETCDWATCH_MAX_BUFFER);
    schedule_step(w);
}

static void on_done(struct evhttp_request *hr, void *arg)
{
    etcdwatch *w = arg;
    int code = hr ? evhttp_request_get_response_code(hr) : 0;
    if (code == 0) {
        breaks(w, false, "%s", w->created ? "the stream broke"
                                          : "connection refused or failed");
    } else if (code != 200) {
        char text[200] = "";
        struct evbuffer *in = evhttp_request_get_input_buffer(hr);
        size_t n = evbuffer_copyout(in, text, sizeof(text) - 1);
        text[n] = '\0';
        breaks(w, false, "HTTP %d: %s", code, text);
    } else {
        evbuffer_add_buffer(w->buf, evhttp_request_get_input_buffer(hr));
        breaks(w, false, "the stream ended");
    }
}

static void connect_next(etcdwatch *w)
{
    etcd *c = w->c;
    w->ep = w->tried ? (w->ep + 1) % etcd_endpoints(c) : etcd_preferred(c);
    w->tried = true;
    w->broken = w->created = false;
    evbuffer_drain(w->buf, evbuffer_get_length(w->buf));
    char rev[24] = "";
    if (w->next_rev > 0)
        snprintf(rev, sizeof(rev), "%" PRId64, w->next_rev);
    json_t *j = json_pack("{s:{s:s, s:s, s:s}}", "create_request",
                          "key", w->key, "range_end", w->range_end,
                          "start_revision", *rev ? rev : "0");
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    unsigned ms = etcd_attempt_ms(c);
    struct timeval tv = { (time_t)(ms / 1000),
                          (suseconds_t)(ms % 1000 * 1000) };
    event_add(w->timer, &tv);
    w->conn = body ? etcd_http_connect(c, w->ep) : NULL;
    struct evhttp_request *hr = w->conn ? evhttp_request_new(on_done, w)
                                        : NULL;
    if (!hr) {
        free(body);
        breaks(w, false, "out of memory");
        return;
    }
    evhttp_request_set_chunked_cb(hr, on_chunk);
    if (etcd_http_post(c, w->ep, w->conn, hr, "/v3/watch", body) < 0)
        breaks(w, false, "cannot send the request");
    free(body);
}

static void drop_conn(etcdwatch *w)
{
    if (w->conn) {
        /* Frees a pending request with it, without its callbacks. */
        evhttp_connection_free(w->conn);
        w->conn = NULL;
    }
}

static void watch_free(etcdwatch *w)
{
    drop_conn(w);
    if (w->timer)
        event_free(w->timer);
    if (w->step)
        event_free(w->step);
    if (w->buf)
        evbuffer_free(w->buf);
    free(w->key);
    free(w->range_end);
    free(w);
}

/* One event to the owner: false if the watch is gone or the event bad. */
static bool deliver(etcdwatch *w, json_t *e)
{
    json_t *kv = json_object_get(e, "kv");
    const char *type = json_string_value(json_object_get(e, "type"));
    json_t *k = json_object_get(kv, "key"), *v = json_object_get(kv, "value");
    etcdwatch_event ev = { 0 };
    uint8_t *key = NULL, *value = NULL;
    bool ok = json_is_object(kv) && json_is_string(k) &&
              b64_decode(json_string_value(k), ETCD_MAX_VALUE, &key,
                         &ev.key_len) == 0 &&
              (!v || (json_is_string(v) &&
                      b64_decode(json_string_value(v), ETCD_MAX_VALUE,
                                 &value, &ev.value_len) == 0)) &&
              etcd_json_int64(json_object_get(kv, "mod_revision"), &ev.revision) &&
              etcd_json_int64(json_object_get(kv, "lease"), &ev.lease) &&
              ev.revision > 0 &&
              (!type || !strcmp(type, "PUT") || !strcmp(type, "DELETE"));
    if (!ok) {
        free(key);
        free(value);
        breaks(w, false, "a malformed event");
        return false;
    }
    ev.type = type && !strcmp(type, "DELETE") ? ETCDWATCH_DELETE
                                              : ETCDWATCH_PUT;
    ev.key = key;
    ev.value = value ? value : (const uint8_t *)"";
    /* A break may repeat what a member already sent: skip it. */
    if (ev.revision >= w->next_rev) {
        w->next_rev = ev.revision;      /* +1 once the message is done */
        w->in_callback = true;
        w->on_event(w->opaque, &ev);
        w->in_callback = false;
    }
    free(key);
    free(value);
    return !w->cancelled;
}

/* One line of the stream; false when the watch is gone. */
static bool handle(etcdwatch *w, const char *line, size_t len)
{
    json_error_t je;
    json_t *j = json_loadb(line, len, 0, &je);
    json_t *res = json_object_get(j, "result");
    if (!json_is_object(res)) {
        json_t *e = json_object_get(j, "error");
        const char *msg = json_string_value(json_object_get(e, "message"));
        breaks(w, false, "%s", msg ? msg : "a message that is not etcd's");
        json_decref(j);
        return true;
    }
    bool alive = true;
    int64_t compact = 0, hrev = 0;
    etcd_json_int64(json_object_get(json_object_get(res, "header"), "revision"),
             &hrev);
    if (json_is_true(json_object_get(res, "canceled"))) {
        etcd_json_int64(json_object_get(res, "compact_revision"), &compact);
        const char *why = json_string_value(json_object_get(res,
                                                            "cancel_reason"));
        if (compact)
            breaks(w, true, "revisions up to %" PRId64 " are compacted "
                   "away: read the keys again and watch from there",
                   compact);
        else
            breaks(w, true, "etcd cancelled the watch: %s",
                   why && *why ? why : "no reason given");
    } else if (json_is_true(json_object_get(res, "created"))) {
        w->created = true;
        event_del(w->timer);
        if (w->next_rev == 0)
            w->next_rev = hrev + 1;
    } else {
        json_t *evs = json_object_get(res, "events");
        size_t i;
        json_t *e;
        int64_t before = w->next_rev;
        json_array_foreach(evs, i, e) {
            if (!deliver(w, e)) {
                alive = !w->cancelled;
                break;
            }
        }
        if (alive && !w->broken && w->next_rev != before)
            w->next_rev++;
    }
    json_decref(j);
    return alive;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    etcdwatch *w = arg;
    if (w->waiting) {
        w->waiting = false;
        connect_next(w);
    } else if (!w->created) {
        breaks(w, false, "no watch created within %u ms",
               etcd_attempt_ms(w->c));
    }
}

static void on_step(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    etcdwatch *w = arg;
    if (w->waiting)
        return;                 /* this break is dealt with already */
    for (;;) {
        size_t n;
        struct evbuffer_ptr eol = evbuffer_search_eol(w->buf, NULL, &n,
                                                      EVBUFFER_EOL_LF);
        if (eol.pos < 0)
            break;
        size_t len = (size_t)eol.pos;
        char *line = malloc(len + 1);
        if (!line) {
            breaks(w, false, "out of memory");
            break;
        }
        evbuffer_remove(w->buf, line, len + 1);
        bool alive = len > ETCD_MAX_BODY ? (breaks(w, false, "a message "
                     "over %d bytes", ETCD_MAX_BODY), true)
                                         : handle(w, line, len);
        free(line);
        if (!alive) {
            watch_free(w);      /* cancelled from the owner's callback */
            return;
        }
        if (w->broken)
            break;
    }
    if (!w->broken && evbuffer_get_length(w->buf) > ETCD_MAX_BODY)
        breaks(w, false, "a message over %d bytes", ETCD_MAX_BODY);
    if (!w->broken)
        return;
    drop_conn(w);
    event_del(w->timer);
    evbuffer_drain(w->buf, evbuffer_get_length(w->buf));
    w->in_callback = true;
    w->on_error(w->opaque, w->ended, w->err);
    w->in_callback = false;
    if (w->cancelled || w->ended) {
        watch_free(w);
        return;
    }
    /* Not a spin: a pause, then the next endpoint. */
    w->waiting = true;
    struct timeval tv = { 0, ETCDWATCH_RETRY_MS * 1000 };
    event_add(w->timer, &tv);
}

/* The end of a prefix range: the prefix with its last byte incremented
 * (trailing 0xff bytes dropped), or "\0" (every key) if none is left. */
static char *range_end_of(const char *prefix)
{
    size_t n = strlen(prefix);
    uint8_t *end = malloc(n + 1);
    if (!end)
        return NULL;
    memcpy(end, prefix, n);
    while (n && end[n - 1] == 0xff)
        n--;
    char *out;
    if (n) {
        end[n - 1]++;
        out = b64_encode(end, n);
    } else {
        out = b64_encode((const uint8_t *)"", 1);
    }
    free(end);
    return out;
}

etcdwatch *etcdwatch_new(etcd *c, const char *prefix, int64_t start_revision,
                         etcdwatch_event_fn on_event,
                         etcdwatch_error_fn on_error, void *opaque,
                         char *err, size_t errlen)
{
    size_t n = prefix ? strlen(prefix) : 0;
    if (n == 0 || n > ETCD_MAX_KEY || start_revision < 0) {
        snprintf(err, errlen, "etcd watch: a prefix of 1 to %d bytes and a "
                 "revision of 0 or more, not %zu bytes and %" PRId64,
                 ETCD_MAX_KEY, n, start_revision);
        return NULL;
    }
    etcdwatch *w = calloc(1, sizeof(*w));
    if (w) {
        w->c = c;
        w->key = b64_encode((const uint8_t *)prefix, n);
        w->range_end = range_end_of(prefix);
        w->buf = evbuffer_new();
        w->timer = event_new(etcd_base(c), -1, 0, on_timer, w);
        w->step = event_new(etcd_base(c), -1, 0, on_step, w);
    }
    if (!w || !w->key || !w->range_end || !w->buf || !w->timer ||
        !w->step) {
        if (w)
            watch_free(w);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->next_rev = start_revision;
    w->on_event = on_event;
    w->on_error = on_error;
    w->opaque = opaque;
    /* From the loop, as every request: a refused connection calls back. */
    w->waiting = true;
    struct timeval now = { 0, 0 };
    event_add(w->timer, &now);
    return w;
}

void etcdwatch_cancel(etcdwatch *w)
{
    if (!w)
        return;
    if (w->in_callback) {
        w->cancelled = true;    /* freed when the callback returns */
        return;
    }
    watch_free(w);
}

bool etcdwatch_live(const etcdwatch *w)
{
    return w->created && !w->broken;
}

const char *etcdwatch_endpoint(const etcdwatch *w)
{
    return etcd_endpoint_url(w->c, w->ep);
}
