/* claim: see claim.h. */
#include "witness/claim.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "witness/etcd.h"

struct claim {
    etcd *client;
    struct event *retry;
    uint64_t timeout_ns;
    char name[80];
    char value[32];             /* "secondary 0123456789abcdef" */
    char key[CLAIM_KEY_MAX];
    uint64_t generation;
    claim_state state;
    etcd_req *req;
    uint64_t started_ns;        /* the attempt in flight's */
    uint64_t attempts;          /* of the latest claim */
    claim_cb cb;
    void *opaque;
    char owner[256];
    char err[512];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

etcd *claim_client(const claim *c)
{
    return c->client;
}

void claim_key_of(char *buf, size_t len, const char *name,
                  uint64_t generation)
{
    snprintf(buf, len, "/ftvm/%s/%" PRIu64 "/owner", name, generation);
}

static void on_retry(evutil_socket_t fd, short what, void *arg);

int claim_new(claim **out, struct event_base *base, const char *endpoints,
              const char *tls_dir, const char *role, uint64_t timeout_ns,
              char *err, size_t errlen)
{
    claim *c = calloc(1, sizeof(*c));
    uint8_t r[8];
    if (!c || !(c->retry = evtimer_new(base, on_retry, c))) {
        free(c);
        snprintf(err, errlen, "the witness: out of memory");
        return -ENOMEM;
    }
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        int e = errno ? errno : EIO;
        snprintf(err, errlen, "the witness: getrandom: %s", strerror(e));
        claim_free(c);
        return -e;
    }
    c->timeout_ns = timeout_ns ? timeout_ns : CLAIM_DEFAULT_TIMEOUT_NS;
    unsigned ms = (unsigned)((c->timeout_ns + 999999) / 1000000);
    if (ms > ETCD_MAX_TIMEOUT_MS) {
        snprintf(err, errlen, "--witness-timeout: at most %u s",
                 ETCD_MAX_TIMEOUT_MS / 1000);
        claim_free(c);
        return -EINVAL;
    }
    char why[512];
    etcd_options o = { .timeout_ms = ms, .tls_dir = tls_dir };
    int rc = etcd_new(&c->client, base, endpoints, &o, why, sizeof(why));
    if (rc < 0) {
        snprintf(err, errlen, "--witness: %s", why);
        claim_free(c);
        return rc;
    }
    snprintf(c->value, sizeof(c->value),
             "%s %02x%02x%02x%02x%02x%02x%02x%02x", role, r[0], r[1], r[2],
             r[3], r[4], r[5], r[6], r[7]);
    *out = c;
    return 0;
}

void claim_free(claim *c)
{
    if (!c)
        return;
    claim_cancel(c);
    if (c->retry)
        event_free(c->retry);
    etcd_free(c->client);
    free(c);
}

static void set_state(claim *c, claim_state s)
{
    if (c->state == s)
        return;
    c->state = s;
    if (c->cb)
        c->cb(c->opaque, s);
}

static void attempt(claim *c);

static void on_reply(void *opaque, const etcd_reply *r)
{
    claim *c = opaque;
    c->req = NULL;
    switch (r->status == ETCD_OK ? r->outcome : ETCD_UNKNOWN) {
    case ETCD_WON:
        c->err[0] = '\0';
        set_state(c, CLAIM_WON);
        return;
    case ETCD_LOST:
        c->err[0] = '\0';
        snprintf(c->owner, sizeof(c->owner), "%.*s",
                 (int)(r->value_len < 255 ? r->value_len : 255),
                 (const char *)r->value);
        set_state(c, CLAIM_LOST);
        return;
    case ETCD_UNKNOWN:
        break;
    }
    snprintf(c->err, sizeof(c->err), "%s", r->err && r->err[0] ? r->err
             : "no answer from a quorum in time");
    /* The next attempt begins a timeout after this one began. */
    uint64_t spent = now_ns() - c->started_ns;
    uint64_t wait = spent < c->timeout_ns ? c->timeout_ns - spent : 0;
    struct timeval tv = { (time_t)(wait / 1000000000ull),
                          (suseconds_t)(wait % 1000000000ull / 1000) };
    evtimer_add(c->retry, &tv);
    set_state(c, CLAIM_UNKNOWN);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    attempt(arg);
}

/* The request: false (no memory: the key and value were checked) with why. */
static bool send_claim(claim *c, char *why, size_t len)
{
    c->started_ns = now_ns();
    c->attempts++;
    c->req = etcd_create_if_absent(c->client, c->key, c->value,
                                   strlen(c->value), 0, on_reply, c, why,
                                   len);
    return c->req != NULL;
}

static void attempt(claim *c)
{
    char why[512];
    if (!send_claim(c, why, sizeof(why))) {
        snprintf(c->err, sizeof(c->err), "%s", why);
        struct timeval tv = { (time_t)(c->timeout_ns / 1000000000ull),
                              (suseconds_t)(c->timeout_ns % 1000000000ull /
                                            1000) };
        evtimer_add(c->retry, &tv);
        set_state(c, CLAIM_UNKNOWN);
    }
}

int claim_start(claim *c, const char *name, uint64_t generation, claim_cb cb,
                void *opaque, char *err, size_t errlen)
{
    claim_cancel(c);
    snprintf(c->name, sizeof(c->name), "%s", name);
    claim_key_of(c->key, sizeof(c->key), c->name, generation);
    c->generation = generation;
    c->attempts = 0;
    c->owner[0] = c->err[0] = '\0';
    c->cb = cb;
    c->opaque = opaque;
    c->state = CLAIM_CLAIMING;
    char why[512];
    if (!send_claim(c, why, sizeof(why))) {
        snprintf(err, errlen, "claiming %s: %s", c->key, why);
        c->state = CLAIM_IDLE;
        return -ENOMEM;
    }
    return 0;
}

void claim_cancel(claim *c)
{
    if (c->req)
        etcd_cancel(c->req);
    c->req = NULL;
    if (c->retry)
        evtimer_del(c->retry);
    c->cb = NULL;
    c->state = CLAIM_IDLE;
}

claim_state claim_get_state(const claim *c)
{
    return c->state;
}

const char *claim_state_name(claim_state s)
{
    switch (s) {
    case CLAIM_IDLE: return "idle";
    case CLAIM_CLAIMING: return "claiming";
    case CLAIM_WON: return "won";
    case CLAIM_LOST: return "lost";
    case CLAIM_UNKNOWN: return "unknown";
    }
    return "?";
}

const char *claim_owner(const claim *c)
{
    return c->state == CLAIM_LOST ? c->owner : NULL;
}

const char *claim_value(const claim *c)
{
    return c->value;
}

const char *claim_key(const claim *c)
{
    return c->key;
}

const char *claim_error(const claim *c)
{
    return c->err[0] ? c->err : NULL;
}

uint64_t claim_attempts(const claim *c)
{
    return c->attempts;
}

uint64_t claim_generation(const claim *c)
{
    return c->generation;
}

struct json_t *claim_status(const claim *c, const char *name,
                            uint64_t generation)
{
    json_t *eps = json_array();
    char key[CLAIM_KEY_MAX] = "";
    const char *owner = NULL, *err = NULL, *state = "none";
    if (c) {
        for (size_t i = 0; i < etcd_endpoints(c->client); i++)
            json_array_append_new(eps, json_string(etcd_endpoint_url(
                                           c->client, i)));
        state = claim_state_name(c->state);
        owner = claim_owner(c);
        err = claim_error(c);
    }
    if (c && c->state != CLAIM_IDLE) {
        name = c->name;
        generation = c->generation;
    }
    if (name && generation)
        claim_key_of(key, sizeof(key), name, generation);
    json_t *j = json_pack("{s:o, s:s?, s:I, s:s?, s:s, s:s?, s:s?, s:I}",
                          "endpoints", eps, "vm_name", name, "generation",
                          (json_int_t)generation, "key", key[0] ? key : NULL,
                          "state", state, "owner", owner, "error", err,
                          "attempts", (json_int_t)(c ? c->attempts : 0));
    if (j && !c)
        json_object_set_new(j, "warning", json_string(CLAIM_NO_WITNESS));
    return j;
}
