/*
 * cycle: the checkpoint cycle of replicate.h: taking checkpoints (pause,
 * build, mark the output epoch, resume, seal, queue), the window of
 * unacknowledged packages, acknowledgements and refusals, and releasing
 * held output as they come.
 */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "primary/replicate_impl.h"
#include "vm/mono.h"

/* A buffer a full package made this big is not kept. */
#define POOL_KEEP_BYTES (64u << 20)
/* The rate covers at most this span. */
#define RATE_SPAN_NS 2000000000ull

/* ---- package buffers ---- */

static qfile *pool_get(pri *p)
{
    if (!p->npool)
        return qf_open_mem(p->addr);
    qfile *q = p->pool[--p->npool];
    qf_mem_reset(q);
    return q;
}

void cyc_pool_put(pri *p, qfile *q)
{
    size_t len;
    qf_mem_data(q, &len);
    if (p->npool == POOL_MAX || len > POOL_KEEP_BYTES)
        qf_close(q);
    else
        p->pool[p->npool++] = q;
}

/* ---- output commit ---- */

static void hold(pri *p)
{
    if (p->holding)
        return;
    ob_set_hold(p->ob, true);
    if (p->net)
        net_set_tx_policy(p->net, NET_TX_HOLD);
    p->holding = true;
}

void cyc_release_all(pri *p)
{
    ob_set_hold(p->ob, false);
    if (p->net)
        net_set_tx_policy(p->net, NET_TX_IMMEDIATE);
    p->holding = false;
}

void cyc_early_notify(void *opaque)
{
    pri *p = opaque;
    event_active(p->ev_early, EV_READ, 0);
}

/* ---- requests waiting for a checkpoint ---- */

void cyc_complete(pri *p, uint64_t upto, int rc, const char *msg)
{
    waiter **w = &p->waiters;
    while (*w) {
        waiter *x = *w;
        bool hit = rc == 0 ? x->id && x->id <= upto
                           : upto == UINT64_MAX || x->id == upto;
        if (!hit) {
            w = &x->next;
            continue;
        }
        *w = x->next;
        x->fn(x->opaque, rc, x->id, msg);
        free(x);
    }
}

/* ---- checkpoints ---- */

/*
 * The next checkpoint is due one interval after the last one started, not
 * after it ended: otherwise every checkpoint's own duration (and the
 * timer's rounding) would stretch the interval.
 */
void cyc_arm(pri *p)
{
    uint64_t now = mono_ns(), due = p->last_start_ns + p->o.interval_ns;
    struct timeval tv = mono_tv(due > now ? due - now : 0);
    evtimer_add(p->ev_ckpt, &tv);
}

static void rate_add(pri *p, uint64_t t)
{
    p->times[p->tnext] = t;
    p->tnext = (p->tnext + 1) % RATE_N;
    if (p->ntimes < RATE_N)
        p->ntimes++;
}

double cyc_rate(const pri *p, uint64_t now)
{
    uint64_t oldest = now, n = 0;
    for (size_t i = 0; i < p->ntimes; i++)
        if (now - p->times[i] <= RATE_SPAN_NS) {
            n++;
            if (p->times[i] < oldest)
                oldest = p->times[i];
        }
    if (n == 0)
        return 0;
    uint64_t span = n == RATE_N ? now - oldest : RATE_SPAN_NS;
    return span ? (double)n * 1e9 / (double)span : 0;
}

/*
 * Pause, build, mark, resume: the guest's whole pause is a copy into
 * memory.  Then the package is sealed (its CRC) and goes to the link's
 * thread.
 */
void cyc_take(pri *p)
{
    if (!p->link || !p->ready || p->ending)
        return;
    if (p->nwin == PRI_WINDOW) {
        p->due = true;
        return;
    }
    p->due = false;
    evtimer_del(p->ev_ckpt);
    qfile *q = pool_get(p);
    if (!q) {
        rep_say(p, "no memory for checkpoint %" PRIu64 "'s package",
                p->next_id);
        p->last_start_ns = mono_ns();    /* retry in an interval */
        cyc_arm(p);
        return;
    }
    uint64_t id = p->next_id;
    bool full = p->need_full;
    pkg_stats ps;
    uint64_t t0 = mono_ns();
    p->last_start_ns = t0;
    vm_pause(p->v);
    if (vm_get_state(p->v) == VM_STOPPED) {
        char ignored[64];
        vm_resume(p->v, ignored, sizeof(ignored));
        cyc_pool_put(p, q);
        return;     /* on_stop follows */
    }
    int rc = pkg_build(p->v, q, id, full ? 0 : id - 1, full, &ps);
    if (rc == 0) {
        hold(p);
        p->epoch = p->epoch_base + id;
        ob_mark(p->ob, p->epoch);
        if (p->net)
            net_tx_mark(p->net, p->epoch);
    }
    char rerr[256];
    /* Releases this checkpoint's hold; an operator's pause stays. */
    int rr = vm_resume(p->v, rerr, sizeof(rerr));
    uint64_t pause = mono_ns() - t0;
    if (rr < 0)
        rep_say(p, "resuming the VM after checkpoint %" PRIu64 ": %s", id,
                rerr);
    if (rc == 0)
        rc = pkg_seal(p->v, q, id, &ps);
    if (rc == 0 && ps.bytes > UINT32_MAX)
        rc = -EFBIG;
    if (rc < 0) {
        char why[700];
        if (rc == -EFBIG)
            snprintf(why, sizeof(why), "checkpoint %" PRIu64 ": %" PRIu64
                     " bytes, over the 4 GiB a package can carry", id,
                     ps.bytes);
        else
            snprintf(why, sizeof(why), "checkpoint %" PRIu64 ": %s", id,
                     qf_errmsg(q));
        cyc_pool_put(p, q);
        /*
         * The dirty bits it cleared are gone: only a full one is safe.
         * A full one that failed would fail again, pausing the guest
         * for a copy of all its RAM every interval: give up instead.
         */
        if (full) {
            rep_lose(p, why);
            return;
        }
        rep_say(p, "%s; sending the next checkpoint in full", why);
        p->need_full = true;
        cyc_arm(p);
        return;
    }
    smp_add(&p->pause, pause);
    smp_add(&p->pages, ps.pages);
    smp_add(&p->bytes, ps.bytes);
    rate_add(p, t0);
    p->taken++;
    p->bytes_total += ps.bytes;
    if (full) {
        p->full++;
        p->need_full = false;
        p->last_full_id = id;
    }
    p->built++;
    for (size_t i = 0; i < PRI_CORRUPT_MAX && p->o.corrupt[i]; i++)
        if (p->o.corrupt[i] == p->built) {
            pkg_test_corrupt(q);
            fprintf(stderr, "ftvm primary: TEST: damaged package %" PRIu64
                    " (checkpoint %" PRIu64 ") after its checksum\n",
                    p->built, id);
        }
    p->win[p->nwin++] = (flight){ .id = id };
    p->next_id++;
    for (waiter *w = p->waiters; w; w = w->next)
        if (!w->id)
            w->id = id;
    cyc_arm(p);
    lnk_send_package(p->link, id, q);
}

void cyc_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cyc_take(arg);
}

void cyc_on_early(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pri *p = arg;
    if (p->state == PRI_ACTIVE || p->state == PRI_SETUP)
        cyc_take(p);
}

/* ---- acknowledgements ---- */

void cyc_ack(pri *p, uint64_t k)
{
    size_t i = 0;
    while (i < p->nwin && p->win[i].id != k)
        i++;
    if (i == p->nwin) {
        char why[600];
        snprintf(why, sizeof(why), "secondary %s acknowledged checkpoint "
                 "%" PRIu64 ", which is not in flight", p->addr, k);
        rep_lose(p, why);
        return;
    }
    if (p->win[i].sent_ns)
        smp_add(&p->ack, mono_ns() - p->win[i].sent_ns);
    p->nwin -= i + 1;
    memmove(p->win, p->win + i + 1, p->nwin * sizeof(p->win[0]));
    p->acked_id = k;
    p->acked++;
    p->full_refusals = 0;
    uint64_t upto = p->epoch_base + k - 1;
    ob_release(p->ob, upto);
    if (p->net)
        net_tx_release(p->net, upto);
    if (p->state == PRI_SETUP) {
        p->state = PRI_ACTIVE;
        fprintf(stderr, "ftvm primary: protected by %s (bring-up %.1f MiB "
                "in %.0f ms)\n", p->addr, p->bringup.bytes / 1048576.0,
                p->bringup.ns / 1e6);
    }
    cyc_complete(p, k, 0, NULL);
    if (p->due)
        cyc_take(p);
}

void cyc_nack(pri *p, uint64_t k, const char *text)
{
    p->nacks++;
    /* Too damaged to name itself (NACK 0): packages go in order. */
    if (k == 0 && p->nwin)
        k = p->win[0].id;
    size_t i = 0;
    while (i < p->nwin && p->win[i].id <= k)
        i++;
    p->nwin -= i;
    memmove(p->win, p->win + i, p->nwin * sizeof(p->win[0]));
    char why[1400];
    snprintf(why, sizeof(why), "secondary %s refused checkpoint %" PRIu64
             ": %s", p->addr, k, text);
    cyc_complete(p, k, -EBADMSG, why);
    /* Refusals of packages that built on it are expected: ignore them. */
    if (p->last_full_id > k)
        return;
    /* A full package refused twice in a row will be refused again. */
    if (p->last_full_id == k && ++p->full_refusals >= 2) {
        rep_lose(p, why);
        return;
    }
    rep_say(p, "%s; sending the next checkpoint in full", why);
    p->need_full = true;
    cyc_take(p);
}
