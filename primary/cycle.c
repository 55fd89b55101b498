/*
 * cycle: the checkpoint cycle of replicator.h: taking the checkpoints
 * protection.h plans (pause, build, mark the output epoch, resume, seal,
 * queue), their package buffers and the figures about them.
 */
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

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
        return qfile_open_mem(p->prot.addr);
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

void cycle_early_notify(void *opaque)
{
    replicator *p = opaque;
    event_active(p->ev_early, EV_READ, 0);
}

/* ---- checkpoints ---- */

void cycle_arm(replicator *p)
{
    struct timeval tv = mono_tv(protection_delay(&p->prot, mono_ns()));
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
    protection_plan pl = protection_next(&p->prot);
    if (!pl.take)
        return;
    evtimer_del(p->ev_ckpt);
    qfile *q = pool_get(p);
    if (!q) {
        replicator_say(p, "no memory for checkpoint %" PRIu64 "'s package",
                       pl.id);
        protection_started(&p->prot, mono_ns());    /* retry in an interval */
        cycle_arm(p);
        return;
    }
    uint64_t id = pl.id;
    package_stats ps;
    uint64_t t0 = mono_ns();
    protection_started(&p->prot, t0);
    char perr[512];
    if (vm_pause(p->v, perr, sizeof(perr)) < 0) {
        /*
         * Nothing was taken (no dirty bit cleared, no epoch marked): the
         * same checkpoint is tried again in an interval.
         */
        replicator_say(p, "checkpoint %" PRIu64 " not taken: %s", id, perr);
        cycle_pool_put(p, q);
        cycle_arm(p);
        return;
    }
    if (vm_get_state(p->v) == VM_STOPPED) {
        char ignored[64];
        vm_resume(p->v, ignored, sizeof(ignored));
        cycle_pool_put(p, q);
        return;     /* on_stop follows */
    }
    int rc = package_build(p->v, q, &p->prot.pair, id, pl.base, pl.full,
                           &ps);
    if (rc == 0) {
        outqueue_checkpoint(p->out, id);
        if (p->mode == COLO_MODE_COLO)
            colo_checkpoint(p->colo, id);
        protection_hold(&p->prot);
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
    protection_act a;
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
        a = protection_build_failed(&p->prot, &pl, why);
        replicator_do(p, &a);
        return;
    }
    sampler_add(&p->pause, pause);
    sampler_add(&p->pages, ps.pages);
    sampler_add(&p->bytes, ps.bytes);
    rate_add(p, t0);
    p->bytes_total += ps.bytes;
    p->causes[p->cause]++;
    p->cause = COLO_CAUSE_PERIODIC;
    a = protection_taken(&p->prot, &pl);
    replicator_do(p, &a);
    channel_send_package(p->link, id, q);
}

void cycle_take_for(replicator *p, colo_cause cause)
{
    p->cause = cause;
    cycle_take(p);
}

void cycle_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cycle_take_for(arg, COLO_CAUSE_PERIODIC);
}

void cycle_on_early(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cycle_take_for(arg, COLO_CAUSE_LIMIT);
}
