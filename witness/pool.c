/* pool: see pool.h. */
#include "witness/pool.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct timeval tv_of(uint64_t ns)
{
    return (struct timeval){ (time_t)(ns / 1000000000ull),
                             (suseconds_t)(ns % 1000000000ull / 1000) };
}

int pool_check_name(const char *name, char *err, size_t errlen)
{
    size_t n = name ? strlen(name) : 0;
    if (n < 1 || n > 63 ||
        strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789._-") != n) {
        snprintf(err, errlen, "\"%.64s\": expected 1 to 63 of "
                 "[A-Za-z0-9._-]", name ? name : "");
        return -EINVAL;
    }
    return 0;
}

int pool_client_new(etcd **c, struct event_base *base,
                      const char *endpoints, const char *tls_dir,
                      uint64_t timeout_ns, char *err, size_t errlen)
{
    uint64_t ms = (timeout_ns ? timeout_ns : 1000000000ull) / 1000000;
    etcd_options o = { .timeout_ms = (unsigned)(ms < 50 ? 50 : ms >
                                                ETCD_MAX_TIMEOUT_MS ?
                                                ETCD_MAX_TIMEOUT_MS : ms),
                       .tls_dir = tls_dir };
    char why[512];
    int rc = etcd_new(c, base, endpoints, &o, why, sizeof(why));
    if (rc < 0)
        snprintf(err, errlen, "--witness: %s", why);
    return rc;
}

/* ---- entries ---- */

static bool copy_str(char *dst, size_t n, json_t *j, bool required)
{
    if (!j)
        return !required;
    if (!json_is_string(j) || strlen(json_string_value(j)) >= n)
        return false;
    snprintf(dst, n, "%s", json_string_value(j));
    return true;
}

int pool_entry_parse(pool_entry *e, const char *key, const uint8_t *value,
                     size_t len, char *err, size_t errlen)
{
    memset(e, 0, sizeof(*e));
    if (strlen(key) >= sizeof(e->key) || len > POOL_MAX_VALUE) {
        snprintf(err, errlen, "%.64s: key or value too long", key);
        return -EINVAL;
    }
    snprintf(e->key, sizeof(e->key), "%s", key);
    json_error_t je;
    json_t *j = json_loadb((const char *)value, len, 0, &je);
    bool ok = json_is_object(j) &&
        copy_str(e->addr, sizeof(e->addr), json_object_get(j, "addr"),
                 true) && e->addr[0] && strchr(e->addr, ':') &&
        copy_str(e->vm_name, sizeof(e->vm_name),
                 json_object_get(j, "vm_name"), false) &&
        copy_str(e->taken_by, sizeof(e->taken_by),
                 json_object_get(j, "taken_by"), false);
    json_decref(j);
    if (!ok) {
        snprintf(err, errlen, "%s: not a standby's entry (expected "
                 "{\"addr\":\"HOST:PORT\",...})", e->key);
        return -EINVAL;
    }
    return 0;
}

char *pool_entry_value(const pool_entry *e)
{
    json_t *j = json_pack("{s:s}", "addr", e->addr);
    if (j && e->vm_name[0])
        json_object_set_new(j, "vm_name", json_string(e->vm_name));
    if (j && e->taken_by[0])
        json_object_set_new(j, "taken_by", json_string(e->taken_by));
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

bool pool_entry_fits(const pool_entry *e, const char *vm_name)
{
    return !e->taken_by[0] &&
           (!e->vm_name[0] || (vm_name && strcmp(e->vm_name, vm_name) == 0));
}

/* ---- the standby ---- */

struct pool_standby {
    etcd *c;
    struct event *timer;
    pool_standby_opts o;
    char pool[64], addr[POOL_ADDR_MAX], vm_name[64];
    char key[128];
    char *value;
    int64_t ttl_s, lease;
    pool_standby_state state;
    etcd_req *req, *revoke;
    uint64_t last_ok_ns;        /* the key put, or a keepalive answered */
    uint64_t taken_ns;          /* when this standby found itself taken */
    int64_t taken_rev;          /* the reservation's mod_revision */
    uint64_t registrations;
    char taken_by[POOL_TAKER_MAX];
    char err[600];
};

const char *pool_standby_state_name(pool_standby_state s)
{
    switch (s) {
    case POOL_STANDBY_OFF: return "off";
    case POOL_STANDBY_GRANTING: return "granting";
    case POOL_STANDBY_PUTTING: return "putting";
    case POOL_STANDBY_REGISTERED: return "registered";
    case POOL_STANDBY_TAKEN: return "taken";
    }
    return "?";
}

__attribute__((format(printf, 2, 3)))
static void say(pool_standby *s, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->o.say)
        s->o.say(s->o.opaque, msg);
}

static uint64_t keepalive_ns(const pool_standby *s)
{
    return (uint64_t)s->ttl_s * 1000000000ull / 3;
}

static void standby_step(pool_standby *s);

static void standby_later(pool_standby *s, uint64_t ns)
{
    struct timeval tv = tv_of(ns);
    evtimer_add(s->timer, &tv);
}

/* A request could not even be made (no memory): try again later. */
static void standby_no_request(pool_standby *s, const char *why)
{
    snprintf(s->err, sizeof(s->err), "%s", why);
    standby_later(s, POOL_RETRY_NS);
}

static void on_grant(void *opaque, const etcd_reply *r)
{
    pool_standby *s = opaque;
    s->req = NULL;
    if (r->status != ETCD_OK) {
        snprintf(s->err, sizeof(s->err), "lease grant: %s", r->err);
        standby_later(s, POOL_RETRY_NS);
        return;
    }
    s->lease = r->lease;
    s->state = POOL_STANDBY_PUTTING;
    standby_step(s);
}

static void on_put(void *opaque, const etcd_reply *r)
{
    pool_standby *s = opaque;
    s->req = NULL;
    if (r->status != ETCD_OK) {
        /* Maybe put: asked again with the same value, under that lease. */
        snprintf(s->err, sizeof(s->err), "registering: %s", r->err);
        standby_later(s, POOL_RETRY_NS);
        return;
    }
    s->err[0] = '\0';
    s->last_ok_ns = now_ns();
    if (r->outcome == ETCD_WON) {
        s->state = POOL_STANDBY_REGISTERED;
        s->registrations++;
        say(s, "standby pool %s: registered as %s (%s, lease %" PRIx64
            ", %" PRId64 " s)", s->pool, s->key, s->addr, (uint64_t)s->lease,
            s->ttl_s);
    } else {
        pool_entry e;
        char why[300];
        if (pool_entry_parse(&e, s->key, r->value, r->value_len, why,
                             sizeof(why)) == 0 && e.taken_by[0]) {
            /* A picker reserved this registration already. */
            s->state = POOL_STANDBY_TAKEN;
            s->taken_ns = now_ns();
            s->taken_rev = r->mod_revision;
            snprintf(s->taken_by, sizeof(s->taken_by), "%s", e.taken_by);
            say(s, "standby pool %s: %s reserved by %s", s->pool, s->key,
                e.taken_by);
        } else {
            snprintf(s->err, sizeof(s->err), "%s holds another value: %.200s",
                     s->key, r->value ? (const char *)r->value : "");
            standby_later(s, POOL_RETRY_NS);
            return;
        }
    }
    standby_later(s, keepalive_ns(s));
}

static void on_reoffer(void *opaque, const etcd_reply *r)
{
    pool_standby *s = opaque;
    s->req = NULL;
    if (r->status == ETCD_OK && r->outcome == ETCD_WON) {
        say(s, "standby pool %s: reserved by %s, and no primary came for "
            "%.0f s: offered again", s->pool, s->taken_by,
            (double)s->o.reserve_ns / 1e9);
        s->taken_by[0] = '\0';
        s->state = POOL_STANDBY_REGISTERED;
        s->registrations++;
    } else if (r->status != ETCD_OK) {
        snprintf(s->err, sizeof(s->err), "offering again: %s", r->err);
    }
    /* LOST: the key changed (re-read next round). */
    standby_later(s, keepalive_ns(s));
}

/* What the key says after a keepalive: taken, or no longer. */
static void on_check(void *opaque, const etcd_reply *r)
{
    pool_standby *s = opaque;
    s->req = NULL;
    pool_entry e;
    char why[300];
    if (r->status == ETCD_NOT_FOUND) {
        /* Deleted behind our back, the lease alive: put it again. */
        s->state = POOL_STANDBY_PUTTING;
        standby_step(s);
        return;
    }
    if (r->status != ETCD_OK) {
        snprintf(s->err, sizeof(s->err), "reading %s: %s", s->key, r->err);
    } else if (pool_entry_parse(&e, s->key, r->value, r->value_len, why,
                                sizeof(why)) == 0 && e.taken_by[0]) {
        if (s->state != POOL_STANDBY_TAKEN ||
            strcmp(s->taken_by, e.taken_by) ||
            s->taken_rev != r->mod_revision) {
            s->state = POOL_STANDBY_TAKEN;
            s->taken_ns = now_ns();
            s->taken_rev = r->mod_revision;
            snprintf(s->taken_by, sizeof(s->taken_by), "%s", e.taken_by);
            say(s, "standby pool %s: reserved by %s", s->pool, e.taken_by);
        } else if (now_ns() - s->taken_ns >= s->o.reserve_ns) {
            char why2[256];
            s->req = etcd_put_if_unchanged(s->c, s->key, s->taken_rev,
                                           s->value, strlen(s->value),
                                           s->lease, on_reoffer, s, why2,
                                           sizeof(why2));
            if (s->req)
                return;
        }
    } else if (s->state == POOL_STANDBY_TAKEN) {
        s->state = POOL_STANDBY_REGISTERED;
        s->taken_by[0] = '\0';
    }
    standby_later(s, keepalive_ns(s));
}

static void on_keepalive(void *opaque, const etcd_reply *r)
{
    pool_standby *s = opaque;
    s->req = NULL;
    if (r->status == ETCD_NOT_FOUND) {
        say(s, "standby pool %s: lease %" PRIx64 " expired (%s gone): "
            "registering again", s->pool, (uint64_t)s->lease, s->key);
        snprintf(s->err, sizeof(s->err), "the lease expired: registering "
                 "again");
        s->lease = 0;
        s->taken_by[0] = '\0';
        s->state = POOL_STANDBY_GRANTING;
        standby_step(s);
        return;
    }
    if (r->status == ETCD_OK) {
        char why[256];
        s->err[0] = '\0';
        s->last_ok_ns = now_ns();
        s->req = etcd_get(s->c, s->key, on_check, s, why, sizeof(why));
        if (s->req)
            return;
    } else {
        snprintf(s->err, sizeof(s->err), "keepalive: %s", r->err);
    }
    standby_later(s, keepalive_ns(s));
}

/* The next request of the state, now. */
static void standby_step(pool_standby *s)
{
    char why[512];
    switch (s->state) {
    case POOL_STANDBY_OFF:
        return;
    case POOL_STANDBY_GRANTING:
        s->req = etcd_lease_grant(s->c, s->ttl_s, on_grant, s, why,
                                  sizeof(why));
        break;
    case POOL_STANDBY_PUTTING:
        s->req = etcd_create_if_absent(s->c, s->key, s->value,
                                       strlen(s->value), s->lease, on_put, s,
                                       why, sizeof(why));
        break;
    case POOL_STANDBY_REGISTERED:
    case POOL_STANDBY_TAKEN:
        s->req = etcd_lease_keepalive(s->c, s->lease, on_keepalive, s, why,
                                      sizeof(why));
        break;
    }
    if (!s->req)
        standby_no_request(s, why);
}

static void on_standby_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    standby_step(arg);
}

int pool_standby_new(pool_standby **out, struct event_base *base,
                     const pool_standby_opts *o, char *err, size_t errlen)
{
    const char *pool = o->pool ? o->pool : POOL_DEFAULT_NAME;
    char why[256];
    if (pool_check_name(pool, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "--pool %s", why);
        return -EINVAL;
    }
    if (!o->addr || !strchr(o->addr, ':') ||
        strlen(o->addr) >= POOL_ADDR_MAX) {
        snprintf(err, errlen, "the standby's address \"%.64s\": expected "
                 "HOST:PORT", o->addr ? o->addr : "");
        return -EINVAL;
    }
    if (o->vm_name && pool_check_name(o->vm_name, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "--vm-name %s", why);
        return -EINVAL;
    }
    int64_t ttl = o->ttl_s ? o->ttl_s : POOL_DEFAULT_TTL_S;
    if (ttl < 1 || ttl > 3600) {
        snprintf(err, errlen, "pool TTL %" PRId64 " s: expected 1 to 3600",
                 ttl);
        return -EINVAL;
    }
    uint8_t r[8];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        snprintf(err, errlen, "getrandom: %s", strerror(errno));
        return -EIO;
    }
    pool_standby *s = calloc(1, sizeof(*s));
    if (!s || !(s->timer = evtimer_new(base, on_standby_timer, s))) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->o = *o;
    if (!s->o.reserve_ns)
        s->o.reserve_ns = POOL_RESERVE_NS;
    s->ttl_s = ttl;
    snprintf(s->pool, sizeof(s->pool), "%s", pool);
    snprintf(s->addr, sizeof(s->addr), "%s", o->addr);
    snprintf(s->vm_name, sizeof(s->vm_name), "%s",
             o->vm_name ? o->vm_name : "");
    snprintf(s->key, sizeof(s->key), POOL_PREFIX "%s/"
             "%02x%02x%02x%02x%02x%02x%02x%02x", pool, r[0], r[1], r[2],
             r[3], r[4], r[5], r[6], r[7]);
    pool_entry e = { 0 };
    snprintf(e.addr, sizeof(e.addr), "%s", s->addr);
    snprintf(e.vm_name, sizeof(e.vm_name), "%s", s->vm_name);
    s->value = pool_entry_value(&e);
    /* Each keepalive must be answered, or not, well within TTL/3. */
    uint64_t t = o->timeout_ns ? o->timeout_ns : 1000000000ull;
    if (t > keepalive_ns(s))
        t = keepalive_ns(s);
    int rc = s->value ? pool_client_new(&s->c, base, o->endpoints,
                                        o->tls_dir, t, err, errlen)
                      : -ENOMEM;
    if (rc < 0) {
        if (!s->value)
            snprintf(err, errlen, "out of memory");
        pool_standby_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void pool_standby_free(pool_standby *s)
{
    if (!s)
        return;
    etcd_cancel(s->req);
    etcd_cancel(s->revoke);
    if (s->timer)
        event_free(s->timer);
    etcd_free(s->c);
    free(s->value);
    free(s);
}

static void on_revoke(void *opaque, const etcd_reply *r)
{
    pool_standby *s = opaque;
    s->revoke = NULL;
    if (r->status == ETCD_FAILED)
        say(s, "standby pool %s: revoking the lease: %s (%s goes when "
            "the lease expires)", s->pool, r->err, s->key);
}

void pool_standby_offer(pool_standby *s, bool offered)
{
    if (offered == (s->state != POOL_STANDBY_OFF))
        return;
    etcd_cancel(s->req);
    s->req = NULL;
    evtimer_del(s->timer);
    s->taken_by[0] = '\0';
    if (offered) {
        s->state = POOL_STANDBY_GRANTING;
        standby_step(s);
        return;
    }
    s->state = POOL_STANDBY_OFF;
    s->err[0] = '\0';
    if (s->lease) {
        char why[256];
        etcd_cancel(s->revoke);
        s->revoke = etcd_lease_revoke(s->c, s->lease, on_revoke, s, why,
                                      sizeof(why));
        say(s, "standby pool %s: withdrawn (%s)", s->pool, s->key);
    }
    s->lease = 0;
}

pool_standby_state pool_standby_get_state(const pool_standby *s)
{
    return s->state;
}

bool pool_standby_registered(const pool_standby *s)
{
    return s->state == POOL_STANDBY_REGISTERED &&
           now_ns() - s->last_ok_ns < (uint64_t)s->ttl_s * 1000000000ull;
}

const char *pool_standby_key(const pool_standby *s)
{
    return s->key;
}

json_t *pool_standby_status(const pool_standby *s)
{
    char lease[24] = "";
    if (s->lease)
        snprintf(lease, sizeof(lease), "%" PRIx64, (uint64_t)s->lease);
    const char *why = s->err[0] ? s->err : NULL;
    if (!why && s->state == POOL_STANDBY_OFF)
        why = "withdrawn: serving a primary";
    else if (!why && s->state == POOL_STANDBY_REGISTERED &&
             !pool_standby_registered(s))
        why = "no keepalive answered within the lease's TTL";
    return json_pack("{s:s, s:s, s:s, s:s, s:b, s:s?, s:I, s:I, s:s?, "
                     "s:s?}", "pool", s->pool, "key", s->key, "addr",
                     s->addr, "state", pool_standby_state_name(s->state),
                     "registered", pool_standby_registered(s), "lease",
                     lease[0] ? lease : NULL, "ttl_s", (json_int_t)s->ttl_s,
                     "registrations", (json_int_t)s->registrations,
                     "taken_by", s->taken_by[0] ? s->taken_by : NULL,
                     "error", why);
}
