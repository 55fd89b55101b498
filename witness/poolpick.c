/* poolpick: see poolpick.h. */
#include "witness/poolpick.h"

#include <errno.h>
#include <event2/event.h>
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

typedef enum pick_phase {
    PICK_IDLE,
    PICK_LISTING,       /* poolpick_pick's listing */
    PICK_RESERVING,     /* the txn in flight, or waiting to ask again */
    PICK_LIST_ONLY,     /* poolpick_list's */
} pick_phase;

struct poolpick {
    etcd *c;
    struct event *timer;
    char pool[64], prefix[96];
    pick_phase phase;
    etcd_req *req;
    char vm_name[64];
    char taker[POOL_TAKER_MAX];
    bool whole;                 /* poolpick_pick (list again on a lost race) */
    unsigned rounds, attempts, listed, fit;
    pool_entry chosen;          /* with taken_by: what the txn puts */
    char *value;
    poolpick_cb cb;
    poolpick_list_cb list_cb;
    void *opaque;
    char err[600];
};

static void on_timer(evutil_socket_t fd, short what, void *arg);

int poolpick_new(poolpick **out, struct event_base *base,
                    const char *endpoints, const char *tls_dir,
                    const char *pool, uint64_t timeout_ns, char *err,
                    size_t errlen)
{
    char why[256];
    pool = pool ? pool : POOL_DEFAULT_NAME;
    if (pool_check_name(pool, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "--pool %s", why);
        return -EINVAL;
    }
    poolpick *p = calloc(1, sizeof(*p));
    if (!p || !(p->timer = evtimer_new(base, on_timer, p))) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    snprintf(p->pool, sizeof(p->pool), "%s", pool);
    snprintf(p->prefix, sizeof(p->prefix), POOL_PREFIX "%s/", pool);
    int rc = pool_client_new(&p->c, base, endpoints, tls_dir, timeout_ns, err,
                        errlen);
    if (rc < 0) {
        poolpick_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void poolpick_cancel(poolpick *p)
{
    etcd_cancel(p->req);
    p->req = NULL;
    evtimer_del(p->timer);
    free(p->value);
    p->value = NULL;
    p->phase = PICK_IDLE;
}

void poolpick_free(poolpick *p)
{
    if (!p)
        return;
    poolpick_cancel(p);
    if (p->timer)
        event_free(p->timer);
    etcd_free(p->c);
    free(p);
}

static void finish(poolpick *p, poolpick_outcome o, bool earlier,
                   const char *err)
{
    poolpick_result r = { .outcome = o, .earlier = earlier,
                           .listed = p->listed, .fit = p->fit, .err = err };
    pool_entry chosen = p->chosen;
    if (o == POOLPICK_PICKED)
        r.picked = &chosen;
    poolpick_cancel(p);
    p->cb(p->opaque, &r);
}

static int start_list(poolpick *p, char *err, size_t errlen);
static void send_reserve(poolpick *p);

static void on_reserve(void *opaque, const etcd_reply *r)
{
    poolpick *p = opaque;
    p->req = NULL;
    if (r->status != ETCD_OK) {
        /* Maybe reserved: asked again, the same value, until we know. */
        snprintf(p->err, sizeof(p->err), "reserving %s: %s", p->chosen.key,
                 r->err);
        struct timeval tv = tv_of(POOL_RETRY_NS);
        evtimer_add(p->timer, &tv);
        return;
    }
    p->err[0] = '\0';
    if (r->outcome == ETCD_WON) {
        finish(p, POOLPICK_PICKED, r->earlier, NULL);
        return;
    }
    /* Another picker took it, or the standby went: choose again. */
    if (!p->whole || ++p->rounds >= POOLPICK_MAX_ROUNDS) {
        finish(p, POOLPICK_EMPTY, false, NULL);
        return;
    }
    char why[512];
    if (start_list(p, why, sizeof(why)) < 0)
        finish(p, POOLPICK_FAILED, false, why);
}

static void send_reserve(poolpick *p)
{
    char why[512];
    p->phase = PICK_RESERVING;
    p->attempts++;
    p->req = etcd_put_if_unchanged(p->c, p->chosen.key,
                                   p->chosen.mod_revision, p->value,
                                   strlen(p->value), p->chosen.lease,
                                   on_reserve, p, why, sizeof(why));
    if (!p->req) {
        snprintf(p->err, sizeof(p->err), "%s", why);
        struct timeval tv = tv_of(POOL_RETRY_NS);
        evtimer_add(p->timer, &tv);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    send_reserve(arg);
}

/* Reserves e: the value is e's with taken_by ours. */
static int reserve(poolpick *p, const pool_entry *e, char *err,
                   size_t errlen)
{
    p->chosen = *e;
    snprintf(p->chosen.taken_by, sizeof(p->chosen.taken_by), "%s",
             p->taker);
    free(p->value);
    p->value = pool_entry_value(&p->chosen);
    if (!p->value) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    send_reserve(p);
    return 0;
}

static unsigned draw(unsigned n)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint32_t)now_ns();
    return r % n;
}

static void on_list(void *opaque, const etcd_reply *r)
{
    poolpick *p = opaque;
    p->req = NULL;
    static const pool_entry none;
    pool_entry *es = NULL;
    size_t n = 0;
    const char *failed = r->status == ETCD_OK ? NULL : r->err;
    if (!failed && r->nkvs && !(es = calloc(r->nkvs, sizeof(*es))))
        failed = "out of memory";
    char why[300];
    for (size_t i = 0; !failed && i < r->nkvs; i++)
        if (pool_entry_parse(&es[n], r->kvs[i].key, r->kvs[i].value,
                             r->kvs[i].value_len, why, sizeof(why)) == 0) {
            es[n].mod_revision = r->kvs[i].mod_revision;
            es[n].lease = r->kvs[i].lease;
            n++;
        }
    if (p->phase == PICK_LIST_ONLY) {
        poolpick_list_cb cb = p->list_cb;
        p->phase = PICK_IDLE;
        cb(p->opaque, failed ? NULL : es ? es : &none, n, failed);
        free(es);
        return;
    }
    if (failed) {
        free(es);
        finish(p, POOLPICK_FAILED, false, failed);
        return;
    }
    p->listed = (unsigned)n;
    size_t fit[POOL_MAX_LIST];
    size_t nfit = 0;
    for (size_t i = 0; i < n && nfit < POOL_MAX_LIST; i++)
        if (pool_entry_fits(&es[i], p->vm_name))
            fit[nfit++] = i;
    p->fit = (unsigned)nfit;
    if (!nfit) {
        free(es);
        finish(p, POOLPICK_EMPTY, false, NULL);
        return;
    }
    /* At random: two survivors picking at once seldom collide. */
    int rc = reserve(p, &es[fit[draw((unsigned)nfit)]], why, sizeof(why));
    free(es);
    if (rc < 0)
        finish(p, POOLPICK_FAILED, false, why);
}

static int start_list(poolpick *p, char *err, size_t errlen)
{
    p->phase = p->phase == PICK_LIST_ONLY ? PICK_LIST_ONLY : PICK_LISTING;
    p->req = etcd_list(p->c, p->prefix, POOL_MAX_LIST, on_list, p, err,
                       errlen);
    if (!p->req) {
        p->phase = PICK_IDLE;
        return -ENOMEM;
    }
    return 0;
}

static int begin(poolpick *p, const char *taker, void *opaque, char *err,
                 size_t errlen)
{
    if (p->phase != PICK_IDLE) {
        snprintf(err, errlen, "a pick is in flight already");
        return -EBUSY;
    }
    if (taker && (!*taker || strlen(taker) >= sizeof(p->taker))) {
        snprintf(err, errlen, "a taker's value of 1 to %d bytes",
                 POOL_TAKER_MAX - 1);
        return -EINVAL;
    }
    snprintf(p->taker, sizeof(p->taker), "%s", taker ? taker : "");
    p->opaque = opaque;
    p->rounds = p->attempts = p->listed = p->fit = 0;
    p->err[0] = '\0';
    return 0;
}

int poolpick_pick(poolpick *p, const char *vm_name, const char *taker,
              poolpick_cb cb, void *opaque, char *err, size_t errlen)
{
    int rc = begin(p, taker ? taker : "", opaque, err, errlen);
    if (rc < 0)
        return rc;
    snprintf(p->vm_name, sizeof(p->vm_name), "%s", vm_name ? vm_name : "");
    p->cb = cb;
    p->whole = true;
    return start_list(p, err, errlen);
}

int poolpick_reserve(poolpick *p, const pool_entry *e, const char *taker,
                 poolpick_cb cb, void *opaque, char *err, size_t errlen)
{
    int rc = begin(p, taker ? taker : "", opaque, err, errlen);
    if (rc < 0)
        return rc;
    p->cb = cb;
    p->whole = false;
    p->listed = 1;
    p->fit = 1;
    return reserve(p, e, err, errlen);
}

int poolpick_list(poolpick *p, poolpick_list_cb cb, void *opaque, char *err,
              size_t errlen)
{
    int rc = begin(p, NULL, opaque, err, errlen);
    if (rc < 0)
        return rc;
    p->list_cb = cb;
    p->phase = PICK_LIST_ONLY;
    return start_list(p, err, errlen);
}

bool poolpick_busy(const poolpick *p)
{
    return p->phase != PICK_IDLE;
}

const char *poolpick_error(const poolpick *p)
{
    return p->err[0] ? p->err : NULL;
}

unsigned poolpick_attempts(const poolpick *p)
{
    return p->attempts;
}

const char *poolpick_pool(const poolpick *p)
{
    return p->pool;
}
