/*
 * replicator: see replicator.h.  The state machine: bringing a secondary up
 * over a link, heartbeats and failure detection, degraded mode and
 * re-protection, and the API.  The checkpoint cycle is in cycle.c, the
 * link's thread in channel.c, the stream's contents in package.c.
 */
#include "primary/replicator.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "primary/dial.h"
#include "primary/replicator_impl.h"
#include "vm/mono.h"

#define DEFAULT_INTERVAL_NS 50000000ull
#define DEFAULT_HEARTBEAT_NS 50000000ull
#define DEFAULT_FAILURE_NS 300000000ull
#define DEFAULT_STALL_NS 10000000000ull

static const channel_ops link_ops;


const char *replicator_state_name(replicator_state s)
{
    switch (s) {
    case REPLICATOR_SETUP:
        return "setup";
    case REPLICATOR_ACTIVE:
        return "active";
    case REPLICATOR_DEGRADED:
        return "degraded";
    case REPLICATOR_STOPPED:
        return "stopped";
    }
    return "?";
}

void replicator_say(replicator *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->last_error, sizeof(p->last_error), fmt, ap);
    va_end(ap);
    fprintf(stderr, "ftvm primary: %s\n", p->last_error);
}

/* ---- the link: bring-up, teardown ---- */

static void arm_reconnect(replicator *p)
{
    if (!p->o.reconnect_ns || p->ending)
        return;
    struct timeval tv = mono_tv(p->o.reconnect_ns);
    evtimer_add(p->ev_reconnect, &tv);
}

/* Drops the current link: with EOF first (graceful) or at once. */
static void end_link(replicator *p, bool graceful, const char *why)
{
    channel *l = p->link;
    p->link = NULL;
    p->ready = false;
    p->nwin = 0;
    p->due = false;
    evtimer_del(p->ev_ckpt);
    cycle_complete(p, UINT64_MAX, -ECONNABORTED, why);
    if (!l)
        return;
    if (p->old)
        channel_free(p->old);
    p->old = l;
    if (graceful)
        channel_finish(l, p->o.failure_ns);
    else
        channel_shutdown(l);
}

void replicator_lose(replicator *p, const char *why)
{
    if (p->state != REPLICATOR_SETUP && p->state != REPLICATOR_ACTIVE)
        return;
    /* A reconnect that fails as the last one did is not news. */
    bool again = !p->ready && strcmp(why, p->last_error) == 0;
    snprintf(p->last_error, sizeof(p->last_error), "%s", why);
    if (!again)
        fprintf(stderr, "ftvm primary: %s; running unprotected (degraded)"
                "\n", why);
    end_link(p, false, why);
    p->state = REPLICATOR_DEGRADED;
    cycle_release_all(p);
    arm_reconnect(p);
}

static int protect(replicator *p, const char *addr, int fd, char *err,
                   size_t errlen)
{
    if (p->o.may_protect && !p->o.may_protect(p->o.opaque, err, errlen))
        return -EBUSY;
    if (p->old) {
        channel_free(p->old);
        p->old = NULL;
    }
    if (p->release_on_exit) {
        p->release_on_exit = false;
        cycle_release_all(p);
    }
    if (addr != p->addr)
        snprintf(p->addr, sizeof(p->addr), "%s", addr);
    p->next_id = 1;
    p->acked_id = 0;
    outqueue_begin(p->out);
    p->need_full = false;
    p->last_full_id = 0;
    p->full_refusals = 0;
    p->nwin = 0;
    p->due = false;
    p->ready = false;
    p->secondaries++;
    p->state = REPLICATOR_SETUP;
    int rc =
        channel_new(&p->link, p->base, addr, fd, REPLICATOR_CONNECT_TIMEOUT_MS,
                    &link_ops, p, err, errlen);
    if (rc < 0) {
        p->link = NULL;
        p->state = REPLICATOR_DEGRADED;
        arm_reconnect(p);
    } else {
        channel_set_heartbeat(p->link, p->o.heartbeat_ns);
    }
    return rc;
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    replicator *p = arg;
    char err[512];
    if (p->state != REPLICATOR_DEGRADED || p->ending)
        return;
    if (protect(p, p->addr, -1, err, sizeof(err)) == -EBUSY)
        arm_reconnect(p);
}

static int link_bringup(void *opaque, channel *l, char *err, size_t errlen)
{
    replicator *p = opaque;
    return package_bringup(p->v, &p->o.shape, l, &p->bringup_tmp, err, errlen);
}

static void link_ready(void *opaque, channel *l)
{
    replicator *p = opaque;
    if (l != p->link)
        return;
    p->ready = true;
    p->bringup = p->bringup_tmp;
    cycle_take(p);
}

static void link_sent(void *opaque, channel *l, uint64_t id, qfile *pkg,
                      uint64_t sent_ns)
{
    replicator *p = opaque;
    cycle_pool_put(p, pkg);
    if (l != p->link)
        return;
    for (size_t i = 0; i < p->nwin; i++)
        if (p->win[i].id == id)
            p->win[i].sent_ns = sent_ns;
}

static void link_down(void *opaque, channel *l, int rc, const char *why)
{
    (void)rc;
    replicator *p = opaque;
    if (l == p->link)
        replicator_lose(p, why);
}

static void finish_ending(replicator *p)
{
    if (p->ending && p->done && !p->link && !p->old) {
        void (*done)(void *) = p->done;
        p->done = NULL;
        done(p->done_opaque);
    }
}

static void link_exit(void *opaque, channel *l)
{
    replicator *p = opaque;
    if (l == p->link) {
        /* Ended without a failure being reported: treat it as one. */
        char why[600];
        snprintf(why, sizeof(why), "secondary %s: the link ended", p->addr);
        replicator_lose(p, why);
    }
    if (l == p->old) {
        channel_free(l);
        p->old = NULL;
        if (p->release_on_exit && !p->link) {
            p->release_on_exit = false;
            cycle_release_all(p);
        }
        finish_ending(p);
    }
}

static void link_msg(void *opaque, channel *l, const retpath_msg *m)
{
    replicator *p = opaque;
    if (l != p->link)
        return;
    char why[600];
    switch (m->type) {
    case RETPATH_ACK:
        cycle_ack(p, m->value64);
        break;
    case RETPATH_NACK:
        cycle_nack(p, m->value64, m->text);
        break;
    case RETPATH_HEARTBEAT:
        p->heartbeats++;
        break;
    case RETPATH_PONG:
        p->pongs++;
        break;
    case RETPATH_SHUT:
        if (m->value32 == 0) {
            replicator_say(p,
                           "secondary %s ended replication; running "
                           "unprotected (stopped)",
                           p->addr);
            end_link(p, false, p->last_error);
            p->state = REPLICATOR_STOPPED;
            cycle_release_all(p);
        } else {
            snprintf(why, sizeof(why), "secondary %s ended replication "
                     "with error %" PRIu32, p->addr, m->value32);
            replicator_lose(p, why);
        }
        break;
    }
}

static const channel_ops link_ops = {
    .bringup = link_bringup,
    .on_ready = link_ready,
    .on_msg = link_msg,
    .on_sent = link_sent,
    .on_down = link_down,
    .on_exit = link_exit,
};

/* ---- heartbeats and failure detection ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    replicator *p = arg;
    if (!p->link)
        return;
    channel_times t;
    channel_get_times(p->link, &t);
    if (!t.last_recv_ns)
        return;     /* still connecting: that has its own timeout */
    uint64_t now = mono_ns();
    /*
     * After a long stretch without the loop (a full package's pause, a
     * slow stdout) the peer's messages may be waiting unread: let them
     * be read before judging it.
     */
    uint64_t gap = now - p->last_tick_ns;
    p->last_tick_ns = now;
    if (gap > p->o.failure_ns / 2)
        return;
    char why[400];
    if (now - t.last_recv_ns >= p->o.failure_ns) {
        snprintf(why, sizeof(why), "secondary %s: nothing heard for %.0f ms "
                 "(failure timeout %.0f ms)", p->addr,
                 (now - t.last_recv_ns) / 1e6, p->o.failure_ns / 1e6);
        replicator_lose(p, why);
        return;
    }
    if (t.busy && now - t.progress_ns >= p->o.stall_ns) {
        snprintf(why, sizeof(why), "secondary %s: a write has made no "
                 "progress for %.1f s (stalled)", p->addr,
                 (now - t.progress_ns) / 1e9);
        replicator_lose(p, why);
        return;
    }
    if (p->nwin && p->win[0].sent_ns &&
        now - p->win[0].sent_ns >= p->o.stall_ns) {
        snprintf(why, sizeof(why), "secondary %s: checkpoint %" PRIu64
                 " unacknowledged %.1f s after it was sent (stalled)",
                 p->addr, p->win[0].id, (now - p->win[0].sent_ns) / 1e9);
        replicator_lose(p, why);
        return;
    }
}

static void arm_tick(replicator *p)
{
    uint64_t period = p->o.heartbeat_ns < p->o.failure_ns
                          ? p->o.heartbeat_ns : p->o.failure_ns;
    struct timeval tv = mono_tv(period / 4 ? period / 4 : 1000000);
    evtimer_del(p->ev_tick);
    event_add(p->ev_tick, &tv);
}

/* ---- the API ---- */

int replicator_new(replicator **out, vm *v, struct event_base *base,
                   outqueue *output, const replicator_opts *o, char *err,
                   size_t errlen)
{
    replicator *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    p->v = v;
    p->base = base;
    p->out = output;
    p->o = *o;
    p->o.secondary = NULL;
    snprintf(p->addr, sizeof(p->addr), "%s", o->secondary);
    if (!p->o.interval_ns)
        p->o.interval_ns = DEFAULT_INTERVAL_NS;
    if (!p->o.heartbeat_ns)
        p->o.heartbeat_ns = DEFAULT_HEARTBEAT_NS;
    if (!p->o.failure_ns)
        p->o.failure_ns = DEFAULT_FAILURE_NS;
    if (!p->o.stall_ns)
        p->o.stall_ns = DEFAULT_STALL_NS;
    p->state = REPLICATOR_DEGRADED;
    sampler_init(&p->pause);
    sampler_init(&p->ack);
    sampler_init(&p->pages);
    sampler_init(&p->bytes);
    p->ev_ckpt = evtimer_new(base, cycle_on_timer, p);
    p->ev_tick = event_new(base, -1, EV_PERSIST, on_tick, p);
    p->ev_early = event_new(base, -1, 0, cycle_on_early, p);
    p->ev_reconnect = evtimer_new(base, on_reconnect, p);
    if (!p->ev_ckpt || !p->ev_tick || !p->ev_early || !p->ev_reconnect) {
        snprintf(err, errlen, "out of memory");
        replicator_free(p);
        return -ENOMEM;
    }
    outqueue_set_limit(output, 0, 0, cycle_early_notify, p);
    if (vm_net(v))
        outqueue_set_frame_sink(output, outqueue_net_send, vm_net(v));
    *out = p;
    return 0;
}

int replicator_start(replicator *p, char *err, size_t errlen)
{
    int fd;
    arm_tick(p);
    int rc = dial_connect(p->addr, REPLICATOR_CONNECT_TIMEOUT_MS, NULL, NULL,
                          &fd, err, errlen);
    if (rc < 0 && !p->o.reconnect_ns)
        return rc;
    if (rc < 0) {
        replicator_say(p,
                       "%s; starting unprotected (degraded), trying again "
                       "every %.1f s",
                       err, p->o.reconnect_ns / 1e9);
        arm_reconnect(p);
        return 0;
    }
    return protect(p, p->addr, fd, err, errlen);
}

void replicator_free(replicator *p)
{
    if (!p)
        return;
    channel_free(p->link);
    channel_free(p->old);
    cycle_complete(p, UINT64_MAX, -ECONNABORTED, "the primary is exiting");
    if (p->out)
        outqueue_set_limit(p->out, 0, 0, NULL, NULL);
    struct event *evs[] = { p->ev_ckpt, p->ev_tick, p->ev_early,
                            p->ev_reconnect };
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    while (p->npool)
        qfile_close(p->pool[--p->npool]);
    free(p);
}

int replicator_checkpoint(replicator *p, replicator_done_fn done, void *opaque,
                          char *err, size_t errlen)
{
    if (!p->link || p->ending) {
        snprintf(err, errlen,
                 "not replicating (%s): no secondary to "
                 "checkpoint to",
                 replicator_state_name(p->state));
        return -ENOTCONN;
    }
    waiter *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    *w = (waiter){ .next = p->waiters, .fn = done, .opaque = opaque };
    p->waiters = w;
    cycle_take(p);
    return 0;
}

int replicator_set(replicator *p, const char *key, uint64_t ns, char *err,
                   size_t errlen)
{
    if (strcmp(key, "checkpoint-interval") == 0 && ns) {
        p->o.interval_ns = ns;
        if (evtimer_pending(p->ev_ckpt, NULL))
            cycle_arm(p);
    } else if (strcmp(key, "heartbeat") == 0 && ns) {
        p->o.heartbeat_ns = ns;
        if (p->link)
            channel_set_heartbeat(p->link, ns);
        arm_tick(p);
    } else if (strcmp(key, "failure-timeout") == 0 && ns) {
        p->o.failure_ns = ns;
        arm_tick(p);
    } else if (strcmp(key, "reconnect") == 0) {
        p->o.reconnect_ns = ns;
        evtimer_del(p->ev_reconnect);
        if (p->state == REPLICATOR_DEGRADED)
            arm_reconnect(p);
    } else {
        snprintf(err, errlen, "set %s: not a setting with a value; "
                 "checkpoint-interval, heartbeat and failure-timeout take "
                 "a time, reconnect a time or off", key);
        return -EINVAL;
    }
    return 0;
}

int replicator_stop(replicator *p, char *err, size_t errlen)
{
    if (p->state != REPLICATOR_SETUP && p->state != REPLICATOR_ACTIVE) {
        snprintf(err, errlen, "replication is not running (%s)",
                 replicator_state_name(p->state));
        return -ENOTCONN;
    }
    replicator_say(p,
                   "replication to %s stopped on request; running "
                   "unprotected (stopped)",
                   p->addr);
    /* Held output leaves once EOF has: until then a failover could. */
    p->release_on_exit = p->holding;
    end_link(p, p->ready, "replication stopped on request");
    p->state = REPLICATOR_STOPPED;
    if (!p->holding)
        cycle_release_all(p);
    return 0;
}

int replicator_attach(replicator *p, const char *addr, char *err, size_t errlen)
{
    if (p->ending) {
        snprintf(err, errlen, "the VM has stopped");
        return -ESHUTDOWN;
    }
    if (p->state == REPLICATOR_SETUP || p->state == REPLICATOR_ACTIVE) {
        snprintf(err, errlen,
                 "already replicating to %s (%s); "
                 "stop-replication first",
                 p->addr, replicator_state_name(p->state));
        return -EISCONN;
    }
    char host[256];
    snprintf(host, sizeof(host), "%s", addr);
    evtimer_del(p->ev_reconnect);
    fprintf(stderr, "ftvm primary: bringing up secondary %s\n", host);
    return protect(p, host, -1, err, errlen);
}

void replicator_vm_stopped(replicator *p, bool takeover,
                           void (*done)(void *opaque), void *opaque)
{
    p->ending = true;
    p->done = done;
    p->done_opaque = opaque;
    evtimer_del(p->ev_ckpt);
    evtimer_del(p->ev_reconnect);
    event_del(p->ev_tick);
    if (takeover) {
        /* Held output belongs to state the secondary will redo. */
        channel_free(p->link);
        channel_free(p->old);
        p->link = p->old = NULL;
        cycle_complete(p, UINT64_MAX, -ECONNABORTED, "the VM failed");
        p->state = REPLICATOR_DEGRADED;
    } else if (p->link) {
        p->release_on_exit = true;
        end_link(p, p->ready, "the VM has stopped");
        p->state = REPLICATOR_STOPPED;
    } else if (!p->old) {
        cycle_release_all(p);
    }
    finish_ending(p);
}

void replicator_get_status(replicator *p, replicator_status *st)
{
    memset(st, 0, sizeof(*st));
    uint64_t now = mono_ns();
    st->state = p->state;
    snprintf(st->secondary, sizeof(st->secondary), "%s", p->addr);
    st->secondaries = p->secondaries;
    st->interval_ns = p->o.interval_ns;
    st->heartbeat_ns = p->o.heartbeat_ns;
    st->failure_ns = p->o.failure_ns;
    st->reconnect_ns = p->o.reconnect_ns;
    st->taken = p->taken;
    st->acked = p->acked;
    st->last_id = p->next_id ? p->next_id - 1 : 0;
    st->last_acked = p->acked_id;
    st->full = p->full;
    st->nacks = p->nacks;
    st->in_flight = p->nwin;
    st->rate = cycle_rate(p, now);
    sampler_summarize(&p->pause, &st->pause_ns);
    sampler_summarize(&p->ack, &st->ack_ns);
    sampler_summarize(&p->pages, &st->pages);
    sampler_summarize(&p->bytes, &st->bytes);
    st->bytes_total = p->bytes_total;
    if (p->link) {
        channel_times t;
        channel_get_times(p->link, &t);
        st->last_heard_ns = t.last_recv_ns ? now - t.last_recv_ns : 0;
        st->pings = t.pings;
    }
    st->pongs = p->pongs;
    st->heartbeats = p->heartbeats;
    st->bringup = p->bringup;
    outqueue_get_stats(p->out, &st->output);
    snprintf(st->last_error, sizeof(st->last_error), "%s", p->last_error);
}

replicator_state replicator_get_state(const replicator *p)
{
    return p->state;
}
