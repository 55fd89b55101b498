/*
 * cycle: the checkpoint cycle of replicator.h: taking checkpoints (pause,
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

#include "primary/replicator_impl.h"
#include "vm/mono.h"

/* A buffer a full package made this big is not kept. */
#define POOL_KEEP_BYTES (64u << 20)
/* The rate covers at most this span. */
#define RATE_SPAN_NS 2000000000ull

/* ---- package buffers ---- */

static qfile *pool_get(replicator *p)
{
    if (!p->npool)
        return qfile_open_mem(p->addr);
    qfile *q = p->pool[--p->npool];
    qfile_mem_reset(q);
    return q;
}

void cycle_pool_put(replicator *p, qfile *q)
{
    size_t len;
    qfile_mem_data(q, &len);
    if (p->npool == POOL_MAX || len > POOL_KEEP_BYTES)
        qfile_close(q);
    else
        p->pool[p->npool++] = q;
}

/* ---- output commit ---- */

void cycle_release_all(replicator *p)
{
    outqueue_release_all(p->out);
    p->holding = false;
}

void cycle_early_notify(void *opaque)
{
    replicator *p = opaque;
    event_active(p->ev_early, EV_READ, 0);
}

/* ---- requests waiting for a checkpoint ---- */

void cycle_complete(replicator *p, uint64_t upto, int rc, const char *msg)
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
void cycle_arm(replicator *p)
{
    uint64_t now = mono_ns(), due = p->last_start_ns + p->o.interval_ns;
    struct timeval tv = mono_tv(due > now ? due - now : 0);
    evtimer_add(p->ev_ckpt, &tv);
}

static void rate_add(replicator *p, uint64_t t)
{
    p->times[p->tnext] = t;
    p->tnext = (p->tnext + 1) % RATE_N;
    if (p->ntimes < RATE_N)
        p->ntimes++;
}

double cycle_rate(const replicator *p, uint64_t now)
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
void cycle_take(replicator *p)
{
    if (!p->link || !p->ready || p->ending)
        return;
    if (p->nwin == REPLICATOR_WINDOW) {
        p->due = true;
        return;
    }
    p->due = false;
    evtimer_del(p->ev_ckpt);
    qfile *q = pool_get(p);
    if (!q) {
        replicator_say(p, "no memory for checkpoint %" PRIu64 "'s package",
                       p->next_id);
        p->last_start_ns = mono_ns();    /* retry in an interval */
        cycle_arm(p);
        return;
    }
    uint64_t id = p->next_id;
    bool full = p->need_full;
    package_stats ps;
    uint64_t t0 = mono_ns();
    p->last_start_ns = t0;
    vm_pause(p->v);
    if (vm_get_state(p->v) == VM_STOPPED) {
        char ignored[64];
        vm_resume(p->v, ignored, sizeof(ignored));
        cycle_pool_put(p, q);
        return;     /* on_stop follows */
    }
    int rc = package_build(p->v, q, id, full ? 0 : id - 1, full, &ps);
    if (rc == 0) {
        outqueue_checkpoint(p->out, id);
        p->holding = true;
    }
    char rerr[256];
    /* Releases this checkpoint's hold; an operator's pause stays. */
    int rr = vm_resume(p->v, rerr, sizeof(rerr));
    uint64_t pause = mono_ns() - t0;
    if (rr < 0)
        replicator_say(p, "resuming the VM after checkpoint %" PRIu64 ": %s",
                       id, rerr);
    if (rc == 0)
        rc = package_seal(p->v, q, id, &ps);
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
                     qfile_errmsg(q));
        cycle_pool_put(p, q);
        /*
         * The dirty bits it cleared are gone: only a full one is safe.
         * A full one that failed would fail again, pausing the guest
         * for a copy of all its RAM every interval: give up instead.
         */
        if (full) {
            replicator_lose(p, why);
            return;
        }
        replicator_say(p, "%s; sending the next checkpoint in full", why);
        p->need_full = true;
        cycle_arm(p);
        return;
    }
    sampler_add(&p->pause, pause);
    sampler_add(&p->pages, ps.pages);
    sampler_add(&p->bytes, ps.bytes);
    rate_add(p, t0);
    p->taken++;
    p->bytes_total += ps.bytes;
    if (full) {
        p->full++;
        p->need_full = false;
        p->last_full_id = id;
    }
    p->win[p->nwin++] = (flight){ .id = id };
    p->next_id++;
    for (waiter *w = p->waiters; w; w = w->next)
        if (!w->id)
            w->id = id;
    cycle_arm(p);
    channel_send_package(p->link, id, q);
}

void cycle_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cycle_take(arg);
}

void cycle_on_early(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    replicator *p = arg;
    if (p->state == REPLICATOR_ACTIVE || p->state == REPLICATOR_SETUP)
        cycle_take(p);
}

/* ---- acknowledgements ---- */

void cycle_ack(replicator *p, uint64_t k)
{
    size_t i = 0;
    while (i < p->nwin && p->win[i].id != k)
        i++;
    if (i == p->nwin) {
        char why[600];
        snprintf(why, sizeof(why), "secondary %s acknowledged checkpoint "
                 "%" PRIu64 ", which is not in flight", p->addr, k);
        replicator_lose(p, why);
        return;
    }
    if (p->win[i].sent_ns)
        sampler_add(&p->ack, mono_ns() - p->win[i].sent_ns);
    p->nwin -= i + 1;
    memmove(p->win, p->win + i + 1, p->nwin * sizeof(p->win[0]));
    p->acked_id = k;
    p->acked++;
    p->full_refusals = 0;
    outqueue_acked(p->out, k);
    if (p->state == REPLICATOR_SETUP) {
        p->state = REPLICATOR_ACTIVE;
        fprintf(stderr, "ftvm primary: protected by %s (bring-up %.1f MiB "
                "in %.0f ms)\n", p->addr, p->bringup.bytes / 1048576.0,
                p->bringup.ns / 1e6);
    }
    cycle_complete(p, k, 0, NULL);
    if (p->due)
        cycle_take(p);
}

void cycle_nack(replicator *p, uint64_t k, const char *text)
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
    cycle_complete(p, k, -EBADMSG, why);
    /* Refusals of packages that built on it are expected: ignore them. */
    if (p->last_full_id > k)
        return;
    /* A full package refused twice in a row will be refused again. */
    if (p->last_full_id == k && ++p->full_refusals >= 2) {
        replicator_lose(p, why);
        return;
    }
    replicator_say(p, "%s; sending the next checkpoint in full", why);
    p->need_full = true;
    cycle_take(p);
}
