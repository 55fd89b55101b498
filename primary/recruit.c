/* recruit: see recruit.h. */
#include "primary/recruit.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "witness/poolpick.h"

const char *recruit_state_name(recruit_state s)
{
    switch (s) {
    case RECRUIT_IDLE: return "idle";
    case RECRUIT_PICKING: return "picking";
    case RECRUIT_WAITING: return "waiting for a standby";
    case RECRUIT_ATTACHING: return "attaching";
    }
    return "?";
}

recruit_event recruit_event_of(const protection *p)
{
    if (p->ending)
        return RECRUIT_EV_OTHER;
    switch (p->state) {
    case PROTECTION_DEGRADED: return RECRUIT_EV_DEGRADED;
    case PROTECTION_SETUP: return RECRUIT_EV_SETUP;
    case PROTECTION_ACTIVE: return RECRUIT_EV_ACTIVE;
    default: return RECRUIT_EV_OTHER;
    }
}

recruit_action recruit_next(recruit_state *s, recruit_event ev)
{
    switch (*s) {
    case RECRUIT_IDLE:
        if (ev != RECRUIT_EV_DEGRADED)
            return RECRUIT_NOTHING;
        *s = RECRUIT_PICKING;
        return RECRUIT_PICK;
    case RECRUIT_PICKING:
        switch (ev) {
        case RECRUIT_EV_PICKED:
            *s = RECRUIT_ATTACHING;
            return RECRUIT_ATTACH;
        case RECRUIT_EV_EMPTY:
            *s = RECRUIT_WAITING;
            return RECRUIT_ARM;
        case RECRUIT_EV_SETUP:      /* someone else brings one up */
        case RECRUIT_EV_ACTIVE:
        case RECRUIT_EV_OTHER:
            *s = RECRUIT_IDLE;
            return RECRUIT_CANCEL;
        default:
            return RECRUIT_NOTHING;
        }
    case RECRUIT_WAITING:
        switch (ev) {
        case RECRUIT_EV_TIMER:      /* the update that follows picks */
            *s = RECRUIT_IDLE;
            return RECRUIT_NOTHING;
        case RECRUIT_EV_SETUP:
        case RECRUIT_EV_ACTIVE:
        case RECRUIT_EV_OTHER:
            *s = RECRUIT_IDLE;
            return RECRUIT_CANCEL;
        default:
            return RECRUIT_NOTHING;
        }
    case RECRUIT_ATTACHING:
        switch (ev) {
        case RECRUIT_EV_ACTIVE:
            *s = RECRUIT_IDLE;
            return RECRUIT_DONE;
        case RECRUIT_EV_DEGRADED:   /* it went before protecting the VM */
        case RECRUIT_EV_ATTACH_FAILED:
            *s = RECRUIT_WAITING;
            return RECRUIT_ARM;
        case RECRUIT_EV_OTHER:
            *s = RECRUIT_IDLE;
            return RECRUIT_CANCEL;
        default:
            return RECRUIT_NOTHING;
        }
    }
    return RECRUIT_NOTHING;
}

struct recruit {
    recruit_opts o;
    poolpick *picker;
    struct event *timer;
    recruit_state state;
    bool said_empty;            /* "no free standby" logged this streak */
    char picked[POOL_ADDR_MAX];
    uint64_t picks, recruited;
    char err[1024];
};

static void apply(recruit *r, recruit_event ev);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    recruit *r = arg;
    apply(r, RECRUIT_EV_TIMER);
    recruit_update(r);
}

int recruit_new(recruit **out, struct event_base *base,
                const recruit_opts *o, char *err, size_t errlen)
{
    recruit *r = calloc(1, sizeof(*r));
    if (!r || !(r->timer = evtimer_new(base, on_timer, r))) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->o = *o;
    int rc = poolpick_new(&r->picker, base, o->endpoints, o->tls_dir,
                             o->pool, o->timeout_ns, err, errlen);
    if (rc < 0) {
        recruit_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void recruit_free(recruit *r)
{
    if (!r)
        return;
    poolpick_free(r->picker);
    if (r->timer)
        event_free(r->timer);
    free(r);
}

static void on_pick(void *opaque, const poolpick_result *res)
{
    recruit *r = opaque;
    const char *pool = poolpick_pool(r->picker);
    if (res->outcome == POOLPICK_PICKED) {
        r->said_empty = false;
        r->err[0] = '\0';
        r->picks++;
        snprintf(r->picked, sizeof(r->picked), "%s", res->picked->addr);
        log_msg("standby pool %s: picked %s at %s%s", pool,
                res->picked->key, res->picked->addr,
                res->earlier ? " (an earlier attempt's reservation)" : "");
        apply(r, RECRUIT_EV_PICKED);
        return;
    }
    if (res->outcome == POOLPICK_FAILED)
        snprintf(r->err, sizeof(r->err), "the pool: %s", res->err);
    else
        snprintf(r->err, sizeof(r->err), "no free standby (%u listed)",
                 res->listed);
    if (!r->said_empty)
        log_msg("standby pool %s: %s; asking again every %.3g s", pool,
                r->err, RECRUIT_RETRY_NS / 1e9);
    r->said_empty = true;
    apply(r, RECRUIT_EV_EMPTY);
}

static void start_pick(recruit *r)
{
    char taker[POOL_TAKER_MAX], err[512];
    /* Unique per reservation: the process's value and the generation. */
    snprintf(taker, sizeof(taker), "%s for %s g%" PRIu64, r->o.me,
             r->o.pair->name, r->o.pair->generation + 1);
    if (poolpick_pick(r->picker, r->o.pair->name, taker, on_pick, r, err,
                  sizeof(err)) < 0) {
        snprintf(r->err, sizeof(r->err), "%s", err);
        apply(r, RECRUIT_EV_EMPTY);
    }
}

static void attach(recruit *r)
{
    char err[512];
    if (r->o.attach(r->o.opaque, r->picked, err, sizeof(err)) < 0) {
        snprintf(r->err, sizeof(r->err), "attaching %s: %.400s", r->picked,
                 err);
        log_msg("standby pool %s: %s", poolpick_pool(r->picker), r->err);
        /* Still attaching: the replicator did not say it failed. */
        if (r->state == RECRUIT_ATTACHING)
            apply(r, RECRUIT_EV_ATTACH_FAILED);
    }
}

static void apply(recruit *r, recruit_event ev)
{
    struct timeval tv = { (time_t)(RECRUIT_RETRY_NS / 1000000000ull),
                          (suseconds_t)(RECRUIT_RETRY_NS % 1000000000ull /
                                        1000) };
    switch (recruit_next(&r->state, ev)) {
    case RECRUIT_NOTHING:
        break;
    case RECRUIT_PICK:
        start_pick(r);
        break;
    case RECRUIT_ATTACH:
        attach(r);
        break;
    case RECRUIT_ARM:
        evtimer_add(r->timer, &tv);
        break;
    case RECRUIT_CANCEL:
        poolpick_cancel(r->picker);
        evtimer_del(r->timer);
        break;
    case RECRUIT_DONE:
        r->recruited++;
        r->err[0] = '\0';
        break;
    }
}

void recruit_update(recruit *r)
{
    apply(r, recruit_event_of(r->o.prot));
}

json_t *recruit_status(const recruit *r)
{
    return json_pack("{s:s, s:s, s:s?, s:I, s:I, s:s?}",
                     "pool", poolpick_pool(r->picker),
                     "state", recruit_state_name(r->state),
                     "picked", r->picked[0] ? r->picked : NULL,
                     "picks", (json_int_t)r->picks,
                     "recruited", (json_int_t)r->recruited,
                     "error", r->err[0] ? r->err : NULL);
}
