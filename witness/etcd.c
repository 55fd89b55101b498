/* etcd: see etcd.h. */
#include "witness/etcd.h"

#include "witness/b64.h"
#include "witness/etcdtls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A round of endpoints that all failed at once waits this long. */
#define ROUND_PAUSE_MS 50
#define MIN_ATTEMPT_MS 50
#define MAX_HEADERS_SIZE (64 * 1024)
/* etcd's gRPC codes that no other endpoint would answer differently. */
#define GRPC_INVALID_ARGUMENT 3
#define GRPC_NOT_FOUND 5
#define GRPC_PERMISSION_DENIED 7
#define GRPC_UNAUTHENTICATED 16

typedef struct endpoint {
    char url[256];      /* as given, for messages */
    char host[256];     /* without IPv6 brackets */
    uint16_t port;
} endpoint;

struct etcd {
    struct event_base *base;
    struct evdns_base *dns;     /* only when an endpoint is a name */
    endpoint eps[ETCD_MAX_ENDPOINTS];
    size_t n;
    size_t current;             /* the endpoint that answered last */
    unsigned timeout_ms, attempt_ms;
    etcdtls *tls;               /* https:// endpoints, or NULL */
    etcd_req *reqs;
};

typedef enum req_kind {
    REQ_CREATE,
    REQ_GET,
    REQ_GRANT,
    REQ_KEEPALIVE,
    REQ_REVOKE,
    REQ_PUT_IF,
    REQ_LIST,
} req_kind;

/* What one finished attempt means for the request. */
typedef enum verdict {
    VERDICT_DONE,       /* a definite answer: reply is filled in */
    VERDICT_FINAL,      /* refused for good (bad request): FAILED */
    VERDICT_RETRY,      /* try another endpoint while time is left */
} verdict;

struct etcd_req {
    etcd *c;
    req_kind kind;
    const char *path;
    char *body;                 /* the JSON we POST */
    uint8_t *mine;              /* create: our value, to know our own win */
    size_t mine_len;
    etcd_cb cb;
    void *opaque;
    uint64_t deadline_ns;
    unsigned attempts;
    unsigned round_failures;    /* attempts failed since the last pause */
    size_t ep;                  /* the endpoint of the current attempt */
    struct evhttp_connection *conn;
    struct evhttp_request *hreq;
    bool attempt_over;          /* the HTTP callback has run */
    bool pausing;
    bool linked;                /* on the client's list */
    struct event *timer;        /* the attempt's cutoff, or a pause */
    struct event *step;         /* runs the next step outside evhttp */
    int http_code;
    enum evhttp_request_error http_error;
    bool have_http_error;
    char *answer;               /* the attempt's body, NUL-terminated */
    size_t answer_len;
    etcd_reply reply;
    uint8_t *value;             /* decoded reply value */
    etcd_kv *kvs;               /* list: decoded, each key and value */
    size_t nkvs;                /* malloc'd (freed with the request) */
    size_t limit;               /* list: keys asked for at most */
    char err[1024];
    char tls_err[300];          /* the last TLS failure's reason, if any */
    etcd_req *prev, *next;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- endpoints ---- */

static int parse_endpoint(endpoint *e, const char *url, size_t len,
                          bool tls, char *err, size_t errlen)
{
    if (len == 0 || len >= sizeof(e->url)) {
        snprintf(err, errlen, "etcd endpoint \"%.*s\": %s", (int)(len > 64 ?
                 64 : len), url, len ? "too long" : "empty");
        return -EINVAL;
    }
    memcpy(e->url, url, len);
    e->url[len] = '\0';
    struct evhttp_uri *u = evhttp_uri_parse(e->url);
    const char *why = NULL;
    const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
    if (!u)
        why = "not a URL";
    else if (!scheme || (strcmp(scheme, "http") != 0 &&
                         strcmp(scheme, "https") != 0))
        why = "expected http://HOST:PORT or https://HOST:PORT";
    else if (tls && strcmp(scheme, "http") == 0)
        why = "http:// with TLS credentials (--witness-tls): give the "
              "members' https:// URLs";
    else if (!tls && strcmp(scheme, "https") == 0)
        why = "https:// needs TLS credentials: --witness-tls DIR (ca.pem, "
              "and cert.pem + key.pem for a client certificate)";
    else if (!evhttp_uri_get_host(u) || !*evhttp_uri_get_host(u))
        why = "no host";
    else if (evhttp_uri_get_userinfo(u) || evhttp_uri_get_query(u) ||
             evhttp_uri_get_fragment(u) ||
             (evhttp_uri_get_path(u) && *evhttp_uri_get_path(u) &&
              strcmp(evhttp_uri_get_path(u), "/") != 0))
        why = "expected http[s]://HOST:PORT and nothing else";
    else if (evhttp_uri_get_port(u) == 0)
        why = "port 0";
    if (why) {
        snprintf(err, errlen, "etcd endpoint \"%s\": %s", e->url, why);
        if (u)
            evhttp_uri_free(u);
        return -EINVAL;
    }
    const char *h = evhttp_uri_get_host(u);
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    snprintf(e->host, sizeof(e->host), "%.*s", (int)hl, h);
    int port = evhttp_uri_get_port(u);
    e->port = port < 0 ? 2379 : (uint16_t)port;     /* etcd's own default */
    evhttp_uri_free(u);
    return 0;
}

static bool is_numeric(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 ||
           inet_pton(AF_INET6, host, a) == 1;
}

int etcd_new(etcd **out, struct event_base *base, const char *endpoints,
             const etcd_options *opts, char *err, size_t errlen)
{
    etcd *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->base = base;
    if (opts && opts->tls_dir) {
        int rc = etcdtls_new(&c->tls, opts->tls_dir, err, errlen);
        if (rc < 0) {
            free(c);
            return rc;
        }
    }
    const char *p = endpoints ? endpoints : "";
    bool names = false;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (c->n == ETCD_MAX_ENDPOINTS) {
            snprintf(err, errlen, "more than %d etcd endpoints",
                     ETCD_MAX_ENDPOINTS);
            etcd_free(c);
            return -EINVAL;
        }
        int rc = parse_endpoint(&c->eps[c->n], p, len, c->tls != NULL, err,
                                errlen);
        if (rc < 0) {
            etcd_free(c);
            return rc;
        }
        names |= !is_numeric(c->eps[c->n].host);
        c->n++;
        if (!p[len])
            break;
        p += len + 1;
    }
    unsigned t = opts && opts->timeout_ms ? opts->timeout_ms
                                          : ETCD_DEFAULT_TIMEOUT_MS;
    if (t > ETCD_MAX_TIMEOUT_MS) {
        snprintf(err, errlen, "etcd timeout %u ms: at most %u", t,
                 ETCD_MAX_TIMEOUT_MS);
        etcd_free(c);
        return -EINVAL;
    }
    c->timeout_ms = t;
    unsigned a = opts && opts->attempt_ms ? opts->attempt_ms
                                          : t / (unsigned)c->n;
    c->attempt_ms = a < MIN_ATTEMPT_MS ? MIN_ATTEMPT_MS : a > t ? t : a;
    /* A name resolved by getaddrinfo would block the loop: evdns does not. */
    if (names) {
        c->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
        if (!c->dns) {
            snprintf(err, errlen, "cannot set up name resolution for the "
                     "etcd endpoints (give addresses instead)");
            etcd_free(c);
            return -EINVAL;
        }
    }
    *out = c;
    return 0;
}

size_t etcd_endpoints(const etcd *c)
{
    return c->n;
}

/* ---- one request ---- */

static void req_unlink(etcd_req *r)
{
    if (!r->linked)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else
        r->c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->linked = false;
}

static void free_kvs(etcd_req *r)
{
    for (size_t i = 0; i < r->nkvs; i++) {
        free((char *)r->kvs[i].key);
        free((uint8_t *)r->kvs[i].value);
    }
    free(r->kvs);
    r->kvs = NULL;
    r->nkvs = 0;
}

static void req_free(etcd_req *r)
{
    req_unlink(r);
    free_kvs(r);
    /* Frees a pending evhttp request with it, without its callbacks. */
    if (r->conn)
        evhttp_connection_free(r->conn);
    if (r->timer)
        event_free(r->timer);
    if (r->step)
        event_free(r->step);
    free(r->body);
    free(r->mine);
    free(r->answer);
    free(r->value);
    free(r);
}

void etcd_cancel(etcd_req *r)
{
    if (r)
        req_free(r);
}

void etcd_free(etcd *c)
{
    if (!c)
        return;
    while (c->reqs)
        req_free(c->reqs);
    if (c->dns)
        evdns_base_free(c->dns, 0);
    etcdtls_free(c->tls);
    free(c);
}

const char *etcd_outcome_name(etcd_outcome o)
{
    switch (o) {
    case ETCD_WON: return "won";
    case ETCD_LOST: return "lost";
    case ETCD_UNKNOWN: return "unknown";
    }
    return "?";
}

const char *etcd_status_name(etcd_status s)
{
    switch (s) {
    case ETCD_OK: return "ok";
    case ETCD_NOT_FOUND: return "not found";
    case ETCD_FAILED: return "failed";
    }
    return "?";
}

static void schedule_step(etcd_req *r)
{
    event_active(r->step, EV_TIMEOUT, 0);
}

static const char *http_error_name(enum evhttp_request_error e)
{
    switch (e) {
    case EVREQ_HTTP_TIMEOUT: return "timed out";
    case EVREQ_HTTP_EOF: return "connection closed before a full answer";
    case EVREQ_HTTP_INVALID_HEADER: return "not an HTTP answer";
    case EVREQ_HTTP_BUFFER_ERROR: return "connection failed";
    case EVREQ_HTTP_REQUEST_CANCEL: return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG: return "answer over the size limit";
    }
    return "failed";
}

static void on_http_error(enum evhttp_request_error e, void *arg)
{
    etcd_req *r = arg;
    r->http_error = e;
    r->have_http_error = true;
}

static void on_http_done(struct evhttp_request *hr, void *arg)
{
    etcd_req *r = arg;
    /* evhttp frees hr after this returns; the connection is ours. */
    r->hreq = NULL;
    r->attempt_over = true;
    r->http_code = hr ? evhttp_request_get_response_code(hr) : 0;
    if (r->http_code > 0) {
        struct evbuffer *in = evhttp_request_get_input_buffer(hr);
        size_t n = evbuffer_get_length(in);
        if (n <= ETCD_MAX_BODY) {
            r->answer = malloc(n + 1);
            if (r->answer) {
                evbuffer_copyout(in, r->answer, n);
                r->answer[n] = '\0';
                r->answer_len = n;
            }
        } else {
            r->have_http_error = true;
            r->http_error = EVREQ_HTTP_DATA_TOO_LONG;
        }
    }
    /* Freeing the connection inside its own callback is not allowed. */
    schedule_step(r);
}

/* ---- reading answers ---- */

bool etcd_json_int64(json_t *j, int64_t *v)
{
    if (!j) {
        *v = 0;                 /* zero values are left out */
        return true;
    }
    if (json_is_integer(j)) {
        *v = json_integer_value(j);
        return true;
    }
    if (!json_is_string(j))
        return false;
    const char *s = json_string_value(j);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return false;
    *v = x;
    return true;
}

/* The value of a key-value object into r->reply; false if malformed. */
static bool take_kv(etcd_req *r, json_t *kv)
{
    json_t *v = json_object_get(kv, "value");
    size_t len = 0;
    free(r->value);
    r->value = NULL;
    if (v && (!json_is_string(v) ||
              b64_decode(json_string_value(v), ETCD_MAX_VALUE, &r->value,
                         &len) < 0))
        return false;
    if (!etcd_json_int64(json_object_get(kv, "lease"), &r->reply.lease) ||
        !etcd_json_int64(json_object_get(kv, "mod_revision"),
                         &r->reply.mod_revision))
        return false;
    r->reply.value = r->value ? r->value : (const uint8_t *)"";
    r->reply.value_len = len;
    return true;
}

static json_t *first_kv(json_t *range)
{
    json_t *kvs = json_object_get(range, "kvs");
    return json_is_array(kvs) ? json_array_get(kvs, 0) : NULL;
}

static verdict read_create(etcd_req *r, json_t *j)
{
    if (json_is_true(json_object_get(j, "succeeded"))) {
        r->reply.outcome = ETCD_WON;
        r->reply.value = r->mine;
        r->reply.value_len = r->mine_len;
        return VERDICT_DONE;
    }
    /* The compare failed: the key exists, and the failure branch read it
     * in the same transaction. */
    json_t *resp = json_array_get(json_object_get(j, "responses"), 0);
    json_t *range = json_object_get(resp, "response_range");
    if (!range)
        range = json_object_get(resp, "responseRange");
    json_t *kv = first_kv(range);
    if (!kv && r->kind == REQ_PUT_IF && range) {
        /* Changed, then deleted (its lease expired, or a revoke). */
        r->reply.outcome = ETCD_LOST;
        r->reply.value = NULL;
        r->reply.value_len = 0;
        return VERDICT_DONE;
    }
    if (!kv || !take_kv(r, kv)) {
        snprintf(r->err, sizeof(r->err), "a transaction answer with "
                 "neither success nor the key's value");
        return VERDICT_RETRY;
    }
    if (r->reply.value_len == r->mine_len &&
        memcmp(r->reply.value, r->mine, r->mine_len) == 0) {
        r->reply.outcome = ETCD_WON;
        r->reply.earlier = true;
    } else {
        r->reply.outcome = ETCD_LOST;
    }
    return VERDICT_DONE;
}

/* s (base64) decoded, NUL-terminated, into *out; false if malformed. */
static bool decode_str(json_t *s, size_t max, uint8_t **out, size_t *len)
{
    uint8_t *b = NULL;
    *len = 0;
    if (s && (!json_is_string(s) ||
              b64_decode(json_string_value(s), max, &b, len) < 0))
        return false;
    uint8_t *z = malloc(*len + 1);
    if (z && *len)
        memcpy(z, b, *len);
    free(b);
    if (!z)
        return false;
    z[*len] = '\0';
    *out = z;
    return true;
}

static verdict read_list(etcd_req *r, json_t *j)
{
    json_t *kvs = json_object_get(j, "kvs");
    size_t n = json_is_array(kvs) ? json_array_size(kvs) : 0;
    free_kvs(r);
    if (kvs && !json_is_array(kvs)) {
        snprintf(r->err, sizeof(r->err), "a range answer whose kvs is not "
                 "an array");
        return VERDICT_RETRY;
    }
    /* The limit was asked for; an answer over it is cut, and says more. */
    r->reply.more = json_is_true(json_object_get(j, "more"));
    if (n > r->limit) {
        n = r->limit;
        r->reply.more = true;
    }
    r->kvs = n ? calloc(n, sizeof(*r->kvs)) : NULL;
    if (n && !r->kvs) {
        snprintf(r->err, sizeof(r->err), "out of memory");
        return VERDICT_RETRY;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *kv = json_array_get(kvs, i);
        etcd_kv *e = &r->kvs[r->nkvs];
        uint8_t *k = NULL, *v = NULL;
        size_t kl, vl;
        bool ok = json_is_object(kv) &&
            decode_str(json_object_get(kv, "key"), ETCD_MAX_KEY, &k, &kl) &&
            decode_str(json_object_get(kv, "value"), ETCD_MAX_VALUE, &v,
                       &vl) &&
            etcd_json_int64(json_object_get(kv, "mod_revision"),
                            &e->mod_revision) &&
            etcd_json_int64(json_object_get(kv, "lease"), &e->lease);
        if (!ok) {
            free(k);
            free(v);
            free_kvs(r);
            snprintf(r->err, sizeof(r->err), "a malformed key-value in a "
                     "range answer");
            return VERDICT_RETRY;
        }
        if (kl == 0 || strlen((char *)k) != kl) {
            free(k);            /* not a key anyone here wrote */
            free(v);
            continue;
        }
        e->key = (char *)k;
        e->value = v;
        e->value_len = vl;
        r->nkvs++;
    }
    r->reply.kvs = r->kvs;
    r->reply.nkvs = r->nkvs;
    return VERDICT_DONE;
}

static verdict read_ok(etcd_req *r, json_t *j)
{
    json_t *kv;
    switch (r->kind) {
    case REQ_CREATE:
    case REQ_PUT_IF:
        return read_create(r, j);
    case REQ_LIST:
        return read_list(r, j);
    case REQ_GET:
        kv = first_kv(j);
        if (!kv) {
            r->reply.status = ETCD_NOT_FOUND;
            return VERDICT_DONE;
        }
        if (!take_kv(r, kv)) {
            snprintf(r->err, sizeof(r->err), "a malformed key-value");
            return VERDICT_RETRY;
        }
        return VERDICT_DONE;
    case REQ_GRANT: {
        json_t *e = json_object_get(j, "error");
        if (json_is_string(e) && *json_string_value(e)) {
            snprintf(r->err, sizeof(r->err), "lease grant: %s",
                     json_string_value(e));
            return VERDICT_RETRY;
        }
        if (!etcd_json_int64(json_object_get(j, "ID"), &r->reply.lease) ||
            !etcd_json_int64(json_object_get(j, "TTL"), &r->reply.ttl) ||
            r->reply.lease == 0) {
            snprintf(r->err, sizeof(r->err), "a lease grant answer "
                     "without a lease");
            return VERDICT_RETRY;
        }
        return VERDICT_DONE;
    }
    case REQ_KEEPALIVE: {
        /* A stream's message: {"result": {...}} or {"error": {...}}. */
        json_t *res = json_object_get(j, "result");
        if (!json_is_object(res) ||
            !etcd_json_int64(json_object_get(res, "TTL"), &r->reply.ttl)) {
            snprintf(r->err, sizeof(r->err), "a keepalive answer without "
                     "a result");
            return VERDICT_RETRY;
        }
        etcd_json_int64(json_object_get(res, "ID"), &r->reply.lease);
        if (r->reply.ttl <= 0)
            r->reply.status = ETCD_NOT_FOUND;
        return VERDICT_DONE;
    }
    case REQ_REVOKE:
        return VERDICT_DONE;
    }
    return VERDICT_RETRY;
}

/* Judges the finished attempt: a definite answer, or why not. */
static verdict judge(etcd_req *r)
{
    if (r->have_http_error && r->http_error == EVREQ_HTTP_DATA_TOO_LONG) {
        snprintf(r->err, sizeof(r->err), "answer over %d bytes",
                 ETCD_MAX_BODY);
        return VERDICT_RETRY;
    }
    if (r->http_code <= 0 || !r->answer) {
        char why[300] = "";
        etcd_tls_failure(r->c, r->conn, why, sizeof(why));
        if (*why)
            snprintf(r->tls_err, sizeof(r->tls_err), "%s", why);
        snprintf(r->err, sizeof(r->err), "%s", *why ? why :
                 r->have_http_error ? http_error_name(r->http_error) :
                 r->http_code > 0 ? "out of memory" :
                 "connection refused or failed");
        return VERDICT_RETRY;
    }
    json_error_t je;
    json_t *j = json_loadb(r->answer, r->answer_len, JSON_DISABLE_EOF_CHECK,
                           &je);
    if (!json_is_object(j)) {
        snprintf(r->err, sizeof(r->err), "HTTP %d with a body that is not "
                 "a JSON object (not etcd's v3 gateway?)", r->http_code);
        json_decref(j);
        return VERDICT_RETRY;
    }
    json_t *header = json_object_get(j, "header");
    json_t *res = json_object_get(j, "result");
    if (!header && json_is_object(res))
        header = json_object_get(res, "header");
    etcd_json_int64(json_object_get(header, "revision"), &r->reply.revision);
    json_t *error = json_object_get(j, "error");
    verdict v;
    if (r->http_code != 200 || error) {
        /* {"error": "...", "code": N}, or a stream's {"error": {...}}. */
        json_t *msg = json_object_get(j, "message");
        json_t *code = json_object_get(j, "code");
        if (json_is_object(error)) {
            msg = json_object_get(error, "message");
            code = json_object_get(error, "grpc_code");
        }
        int64_t grpc = 0;
        etcd_json_int64(code, &grpc);
        snprintf(r->err, sizeof(r->err), "HTTP %d: %s", r->http_code,
                 json_is_string(msg) ? json_string_value(msg)
                                     : "an error without a message");
        if (grpc == GRPC_NOT_FOUND &&
            (r->kind == REQ_KEEPALIVE || r->kind == REQ_REVOKE)) {
            r->reply.status = ETCD_NOT_FOUND;
            v = VERDICT_DONE;
        } else if (grpc == GRPC_INVALID_ARGUMENT ||
                   grpc == GRPC_PERMISSION_DENIED ||
                   grpc == GRPC_UNAUTHENTICATED) {
            v = VERDICT_FINAL;
        } else {
            v = VERDICT_RETRY;
        }
    } else if (!json_is_object(header)) {
        snprintf(r->err, sizeof(r->err), "HTTP 200 without etcd's header "
                 "(not etcd's v3 gateway?)");
        v = VERDICT_RETRY;
    } else {
        v = read_ok(r, j);
    }
    json_decref(j);
    return v;
}

/* ---- attempts ---- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    etcd_req *r = arg;
    if (r->pausing) {
        r->pausing = false;
    } else {
        snprintf(r->err, sizeof(r->err), "no answer within %u ms",
                 r->c->attempt_ms);
        r->round_failures++;
    }
    schedule_step(r);
}

static void end_attempt(etcd_req *r)
{
    if (r->conn) {
        evhttp_connection_free(r->conn);
        r->conn = NULL;
        r->hreq = NULL;
    }
    event_del(r->timer);
    free(r->answer);
    r->answer = NULL;
    r->answer_len = 0;
}

struct event_base *etcd_base(const etcd *c)
{
    return c->base;
}

size_t etcd_preferred(const etcd *c)
{
    return c->current;
}

const char *etcd_endpoint_url(const etcd *c, size_t i)
{
    return c->eps[i % c->n].url;
}

unsigned etcd_attempt_ms(const etcd *c)
{
    return c->attempt_ms;
}

struct evhttp_connection *etcd_http_connect(etcd *c, size_t i)
{
    endpoint *e = &c->eps[i % c->n];
    struct evhttp_connection *conn;
    if (c->tls) {
        struct bufferevent *bev = etcdtls_bufferevent(c->tls, c->base,
                                                      e->host);
        conn = bev ? evhttp_connection_base_bufferevent_new(
                         c->base, c->dns, bev, e->host, e->port)
                   : NULL;
        if (bev && !conn)
            bufferevent_free(bev);
    } else {
        conn = evhttp_connection_base_new(c->base, c->dns, e->host, e->port);
    }
    if (conn) {
        evhttp_connection_set_max_headers_size(conn, MAX_HEADERS_SIZE);
        evhttp_connection_set_retries(conn, 0);
    }
    return conn;
}

void etcd_tls_failure(const etcd *c, struct evhttp_connection *conn,
                      char *buf, size_t len)
{
    buf[0] = '\0';
    if (c->tls && conn)
        etcdtls_describe(evhttp_connection_get_bufferevent(conn), buf, len);
}

int etcd_http_post(const etcd *c, size_t i, struct evhttp_connection *conn,
                   struct evhttp_request *hr, const char *path,
                   const char *body)
{
    const endpoint *e = &c->eps[i % c->n];
    struct evkeyvalq *h = evhttp_request_get_output_headers(hr);
    char host[300];
    snprintf(host, sizeof(host), strchr(e->host, ':') ? "[%s]:%u" : "%s:%u",
             e->host, e->port);
    evhttp_add_header(h, "Host", host);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Connection", "close");
    evbuffer_add(evhttp_request_get_output_buffer(hr), body, strlen(body));
    return evhttp_make_request(conn, hr, EVHTTP_REQ_POST, path);
}

static void start_attempt(etcd_req *r, uint64_t left_ns)
{
    etcd *c = r->c;
    r->ep = (c->current + r->attempts) % c->n;
    r->attempts++;
    r->attempt_over = false;
    r->have_http_error = false;
    r->http_code = 0;
    uint64_t ms = left_ns / 1000000u + 1;
    if (ms > c->attempt_ms)
        ms = c->attempt_ms;
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
                          .tv_usec = (suseconds_t)(ms % 1000 * 1000) };
    event_add(r->timer, &tv);
    r->conn = etcd_http_connect(c, r->ep);
    struct evhttp_request *hr = r->conn ?
        evhttp_request_new(on_http_done, r) : NULL;
    if (!hr) {
        snprintf(r->err, sizeof(r->err), "out of memory");
        r->round_failures++;
        r->attempt_over = true;
        schedule_step(r);
        return;
    }
    evhttp_connection_set_max_body_size(r->conn, ETCD_MAX_BODY);
    evhttp_request_set_error_cb(hr, on_http_error);
    r->hreq = hr;
    /* A refused connection may call on_http_done from in here. */
    if (etcd_http_post(c, r->ep, r->conn, hr, r->path, r->body) < 0 &&
        !r->attempt_over) {
        r->hreq = NULL;
        r->attempt_over = true;
        schedule_step(r);
    }
}

static void deliver(etcd_req *r)
{
    end_attempt(r);
    r->reply.endpoint = r->c->eps[r->ep].url;
    r->reply.err = r->reply.status == ETCD_FAILED ? r->err : "";
    /* Off the list first: the callback may free the client. */
    req_unlink(r);
    r->cb(r->opaque, &r->reply);
    req_free(r);
}

static void on_step(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    etcd_req *r = arg;
    etcd *c = r->c;
    if (r->pausing)
        return;
    if (r->attempt_over) {
        verdict v = judge(r);
        r->attempt_over = false;
        char what_went_wrong[sizeof(r->err)];
        snprintf(what_went_wrong, sizeof(what_went_wrong), "%s", r->err);
        end_attempt(r);
        if (v == VERDICT_DONE) {
            c->current = r->ep;
            deliver(r);
            return;
        }
        snprintf(r->err, sizeof(r->err), "%s: %.600s", c->eps[r->ep].url,
                 what_went_wrong);
        if (v == VERDICT_FINAL) {
            r->reply.status = ETCD_FAILED;
            r->reply.outcome = ETCD_UNKNOWN;
            deliver(r);
            return;
        }
        r->round_failures++;
    } else if (r->conn) {
        /* The attempt's cutoff: on_timer said so in r->err. */
        char cut[sizeof(r->err)];
        snprintf(cut, sizeof(cut), "%s: %.600s", c->eps[r->ep].url, r->err);
        snprintf(r->err, sizeof(r->err), "%s", cut);
        end_attempt(r);
    }
    uint64_t now = now_ns();
    if (now >= r->deadline_ns) {
        char last[sizeof(r->err)];
        snprintf(last, sizeof(last), "%s", r->err);
        r->reply.status = ETCD_FAILED;
        r->reply.outcome = ETCD_UNKNOWN;
        /* A TLS failure says more than the last attempt's cut-off. */
        bool tls_seen = r->tls_err[0] && !strstr(last, "TLS");
        snprintf(r->err, sizeof(r->err), "no definite answer from etcd "
                 "within %u ms (%u attempt%s; last: %.500s%s%.300s)",
                 c->timeout_ms, r->attempts, r->attempts == 1 ? "" : "s",
                 *last ? last : "none", tls_seen ? "; earlier, " : "",
                 tls_seen ? r->tls_err : "");
        deliver(r);
        return;
    }
    if (r->round_failures >= c->n) {
        /* Every endpoint failed at once: do not spin until the deadline. */
        r->round_failures = 0;
        r->pausing = true;
        uint64_t ms = (r->deadline_ns - now) / 1000000u + 1;
        if (ms > ROUND_PAUSE_MS)
            ms = ROUND_PAUSE_MS;
        struct timeval tv = { 0, (suseconds_t)(ms * 1000) };
        event_add(r->timer, &tv);
        return;
    }
    start_attempt(r, r->deadline_ns - now);
}

static etcd_req *req_new(etcd *c, req_kind kind, const char *path,
                         json_t *body, etcd_cb cb, void *opaque, char *err,
                         size_t errlen)
{
    etcd_req *r = body ? calloc(1, sizeof(*r)) : NULL;
    if (r) {
        r->c = c;
        r->body = json_dumps(body, JSON_COMPACT);
        r->timer = event_new(c->base, -1, 0, on_timer, r);
        r->step = event_new(c->base, -1, 0, on_step, r);
    }
    json_decref(body);
    if (!r || !r->body || !r->timer || !r->step) {
        if (r) {
            event_free(r->timer);
            event_free(r->step);
            free(r->body);
            free(r);
        }
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->kind = kind;
    r->path = path;
    r->cb = cb;
    r->opaque = opaque;
    r->deadline_ns = now_ns() + (uint64_t)c->timeout_ms * 1000000u;
    r->reply.status = ETCD_OK;
    r->reply.outcome = ETCD_UNKNOWN;
    r->next = c->reqs;
    if (r->next)
        r->next->prev = r;
    c->reqs = r;
    r->linked = true;
    /* The first attempt starts from the loop, so that cb never runs from
     * inside the call that made the request. */
    schedule_step(r);
    return r;
}

static char *key_b64(const char *key, char *err, size_t errlen)
{
    size_t n = key ? strlen(key) : 0;
    if (n == 0 || n > ETCD_MAX_KEY) {
        snprintf(err, errlen, "etcd key of %zu bytes: expected 1 to %d", n,
                 ETCD_MAX_KEY);
        return NULL;
    }
    char *k = b64_encode((const uint8_t *)key, n);
    if (!k)
        snprintf(err, errlen, "out of memory");
    return k;
}

/*
 * The two transactions of a witness: put key=value (under lease) only if
 * target (CREATE or MOD) of the key equals revision, and otherwise read
 * the key in the same transaction, so that the answer names who holds it
 * (and a retry recognises our own earlier put: r->mine).
 */
static etcd_req *put_txn(etcd *c, req_kind kind, const char *key,
                         const char *target, const char *field,
                         int64_t revision, const void *value, size_t len,
                         int64_t lease, etcd_cb cb, void *opaque, char *err,
                         size_t errlen)
{
    if (len == 0 || len > ETCD_MAX_VALUE || !value) {
        snprintf(err, errlen, "etcd value of %zu bytes: expected 1 to %d",
                 len, ETCD_MAX_VALUE);
        return NULL;
    }
    if (lease < 0) {
        snprintf(err, errlen, "etcd lease %" PRId64 ": expected a lease id "
                 "or 0", lease);
        return NULL;
    }
    char *k = key_b64(key, err, errlen);
    if (!k)
        return NULL;
    char *v = b64_encode(value, len);
    uint8_t *mine = malloc(len);
    char leasebuf[24], revbuf[24];
    snprintf(leasebuf, sizeof(leasebuf), "%" PRId64, lease);
    snprintf(revbuf, sizeof(revbuf), "%" PRId64, revision);
    json_t *body = v && mine ? json_pack(
        "{s:[{s:s, s:s, s:s, s:s}], s:[{s:{s:s, s:s, s:s}}],"
        " s:[{s:{s:s}}]}",
        "compare", "target", target, "result", "EQUAL", "key", k,
        field, revbuf,
        "success", "request_put", "key", k, "value", v, "lease", leasebuf,
        "failure", "request_range", "key", k) : NULL;
    free(k);
    free(v);
    etcd_req *r = req_new(c, kind, "/v3/kv/txn", body, cb, opaque, err,
                          errlen);
    if (!r) {
        free(mine);
        return NULL;
    }
    memcpy(mine, value, len);
    r->mine = mine;
    r->mine_len = len;
    return r;
}

etcd_req *etcd_create_if_absent(etcd *c, const char *key, const void *value,
                                size_t len, int64_t lease, etcd_cb cb,
                                void *opaque, char *err, size_t errlen)
{
    /* create_revision == 0 compares true only for a key that does not
     * exist. */
    return put_txn(c, REQ_CREATE, key, "CREATE", "create_revision", 0, value,
                   len, lease, cb, opaque, err, errlen);
}

etcd_req *etcd_put_if_unchanged(etcd *c, const char *key,
                                int64_t mod_revision, const void *value,
                                size_t len, int64_t lease, etcd_cb cb,
                                void *opaque, char *err, size_t errlen)
{
    if (mod_revision < 1) {
        snprintf(err, errlen, "put-if-unchanged: mod_revision %" PRId64
                 ": expected a key's revision", mod_revision);
        return NULL;
    }
    /* Unchanged since read. */
    return put_txn(c, REQ_PUT_IF, key, "MOD", "mod_revision", mod_revision,
                   value, len, lease, cb, opaque, err, errlen);
}

etcd_req *etcd_list(etcd *c, const char *prefix, size_t limit, etcd_cb cb,
                    void *opaque, char *err, size_t errlen)
{
    if (limit < 1 || limit > ETCD_MAX_LIST) {
        snprintf(err, errlen, "etcd list limit %zu: expected 1 to %d", limit,
                 ETCD_MAX_LIST);
        return NULL;
    }
    char *k = key_b64(prefix, err, errlen);
    if (!k)
        return NULL;
    /* The range's end: the prefix with its last byte that is not 0xff
     * plus one (what etcd's clientv3.WithPrefix computes). */
    size_t n = strlen(prefix);
    uint8_t end[ETCD_MAX_KEY];
    memcpy(end, prefix, n);
    while (n && end[n - 1] == 0xff)
        n--;
    char *e = NULL;
    if (n) {
        end[n - 1]++;
        e = b64_encode(end, n);
    } else {
        e = b64_encode((const uint8_t *)"", 1);    /* "\0": every key */
    }
    char lim[24];
    snprintf(lim, sizeof(lim), "%zu", limit);
    json_t *body = e ? json_pack("{s:s, s:s, s:s}", "key", k, "range_end", e,
                                 "limit", lim) : NULL;
    free(k);
    free(e);
    etcd_req *r = req_new(c, REQ_LIST, "/v3/kv/range", body, cb, opaque, err,
                          errlen);
    if (r)
        r->limit = limit;       /* what read_list holds the answer to */
    return r;
}

etcd_req *etcd_get(etcd *c, const char *key, etcd_cb cb, void *opaque,
                   char *err, size_t errlen)
{
    char *k = key_b64(key, err, errlen);
    if (!k)
        return NULL;
    json_t *body = json_pack("{s:s}", "key", k);
    free(k);
    return req_new(c, REQ_GET, "/v3/kv/range", body, cb, opaque, err,
                   errlen);
}

static json_t *id_body(const char *name, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRId64, v);
    return json_pack("{s:s}", name, buf);
}

etcd_req *etcd_lease_grant(etcd *c, int64_t ttl_s, etcd_cb cb, void *opaque,
                           char *err, size_t errlen)
{
    if (ttl_s < 1 || ttl_s > 9000000000LL) {     /* etcd's maximum TTL */
        snprintf(err, errlen, "lease TTL %" PRId64 " s: expected 1 to "
                 "9000000000", ttl_s);
        return NULL;
    }
    return req_new(c, REQ_GRANT, "/v3/lease/grant", id_body("TTL", ttl_s),
                   cb, opaque, err, errlen);
}

static bool lease_ok(int64_t id, char *err, size_t errlen)
{
    if (id > 0)
        return true;
    snprintf(err, errlen, "lease id %" PRId64 ": expected a granted one",
             id);
    return false;
}

etcd_req *etcd_lease_keepalive(etcd *c, int64_t id, etcd_cb cb, void *opaque,
                               char *err, size_t errlen)
{
    /* The gateway turns the body into the stream's one message and
     * answers with the server's one reply, then the stream ends. */
    return lease_ok(id, err, errlen) ?
        req_new(c, REQ_KEEPALIVE, "/v3/lease/keepalive", id_body("ID", id),
                cb, opaque, err, errlen) : NULL;
}

etcd_req *etcd_lease_revoke(etcd *c, int64_t id, etcd_cb cb, void *opaque,
                            char *err, size_t errlen)
{
    return lease_ok(id, err, errlen) ?
        req_new(c, REQ_REVOKE, "/v3/lease/revoke", id_body("ID", id),
                cb, opaque, err, errlen) : NULL;
}

etcd_req *etcd_range_keys(etcd *c, const char *from, bool after,
                          const char *end, size_t limit, int64_t revision,
                          etcd_cb cb, void *opaque, char *err, size_t errlen)
{
    size_t fn = from ? strlen(from) : 0, en = end ? strlen(end) : 0;
    if (limit < 1 || limit > ETCD_MAX_LIST || revision < 0 || fn == 0 ||
        fn > ETCD_MAX_KEY || en == 0 || en > ETCD_MAX_KEY) {
        snprintf(err, errlen, "etcd range: keys of %zu and %zu bytes, limit "
                 "%zu, revision %" PRId64 ": expected keys of 1 to %d bytes, "
                 "a limit of 1 to %d", fn, en, limit, revision, ETCD_MAX_KEY,
                 ETCD_MAX_LIST);
        return NULL;
    }
    /* After from: from with a NUL byte added, the next key there can be. */
    uint8_t buf[ETCD_MAX_KEY + 1];
    memcpy(buf, from, fn);
    buf[fn] = 0;
    char *k = b64_encode(buf, fn + (after ? 1 : 0));
    char *e = b64_encode((const uint8_t *)end, en);
    char lim[24], rev[24];
    snprintf(lim, sizeof(lim), "%zu", limit);
    snprintf(rev, sizeof(rev), "%" PRId64, revision);
    json_t *body = k && e ? json_pack("{s:s, s:s, s:s, s:b, s:s}", "key", k,
                                      "range_end", e, "limit", lim,
                                      "keys_only", 1, "revision", rev)
                          : NULL;
    free(k);
    free(e);
    etcd_req *r = req_new(c, REQ_LIST, "/v3/kv/range", body, cb, opaque, err,
                          errlen);
    if (r)
        r->limit = limit;       /* what read_list holds the answer to */
    return r;
}
