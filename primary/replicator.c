/*
 * replicator: see replicator.h.  The links to secondaries, the timers
 * (heartbeats and failure checks, reconnecting) and the API, carrying out
 * what protection.c decides.  Taking checkpoints is in cycle.c, the
 * link's thread in channel.c, the stream's contents in package.c.
 */
#include "primary/replicator.h"

#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "devstate/registry.h"
#include "primary/dial.h"
#include "primary/replicator_impl.h"
#include "vm/colosec.h"
#include "vm/mono.h"
#include "vm/net.h"
#include "vm/pc.h"

static const channel_ops link_ops;

void replicator_say(replicator *p, const char *fmt, ...)
{
    char msg[sizeof(p->prot.last_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    protection_note(&p->prot, msg);
    log_msg("%s", msg);
}

static void arm_reconnect(replicator *p)
{
    struct timeval tv = mono_tv(p->prot.o.reconnect_ns);
    evtimer_add(p->ev_reconnect, &tv);
}

static void finish_ending(replicator *p)
{
    if (p->done && !p->link && !p->old) {
        void (*done)(void *) = p->done;
        p->done = NULL;
        done(p->done_opaque);
    }
}

/* EOF after the drop notice a says, so that the secondary stops. */
static void finish_link(replicator *p, channel *l, const protection_act *a)
{
    qfile *q = qfile_open_mem("drop notice");
    size_t len = 0;
    const uint8_t *d = NULL;
    if (q && package_drop(p->v, q, &p->prot.pair, a->drop_reason,
                          a->why) == 0)
        d = qfile_mem_data(q, &len);
    if (d)
        channel_finish(l, p->prot.o.failure_ns, d, len);
    else    /* no memory: cut, rather than a bare EOF */
        channel_shutdown(l);
    qfile_close(q);
}

/* Ends the current link as a says; it becomes the old one. */
static void end_link(replicator *p, const protection_act *a)
{
    protection_end how = a->end;
    evtimer_del(p->ev_ckpt);
    if (how == PROTECTION_DISCARD) {
        channel_free(p->link);
        channel_free(p->old);
        p->link = p->old = NULL;
        return;
    }
    channel *l = p->link;
    p->link = NULL;
    if (!l)
        return;
    if (p->old)
        channel_free(p->old);
    p->old = l;
    if (how == PROTECTION_FINISH)
        finish_link(p, l, a);
    else
        channel_shutdown(l);
}

static void on_claim(void *opaque, claim_state outcome)
{
    replicator *p = opaque;
    protection_act a = protection_claimed(&p->prot, outcome,
                                          claim_owner(p->witness),
                                          claim_error(p->witness));
    replicator_do(p, &a);
}

static void start_claim(replicator *p)
{
    char err[512];
    if (claim_start(p->witness, p->prot.pair.name, p->prot.pair.generation,
                    on_claim, p, err, sizeof(err)) < 0) {
        /* No memory: what is safe is what no answer means. */
        log_msg("%s", err);
        on_claim(p, CLAIM_UNKNOWN);
    }
}

static void pause_vm(replicator *p, bool pause)
{
    char err[512];
    if (pause == p->paused)
        return;
    int rc = pause ? vm_pause(p->v, err, sizeof(err))
                   : vm_resume(p->v, err, sizeof(err));
    if (rc < 0)     /* its output stays held either way */
        log_msg("%s the VM: %s", pause ? "pausing" : "resuming", err);
    else
        p->paused = pause;
}

void replicator_do(replicator *p, const protection_act *a)
{
    if (a->say)
        log_msg("%s", a->msg);
    if (a->end != PROTECTION_KEEP)
        end_link(p, a);
    if (a->have_ack_ns)
        sampler_add(&p->ack, a->ack_ns);
    if (a->release_upto)
        outqueue_acked(p->out, a->release_upto);
    if (a->release_all) {
        if (p->colo)
            colo_stop(p->colo);
        outqueue_release_all(p->out);
    }
    if (a->protected_now)
        log_msg("protected by %s (bring-up %.1f MiB in %.0f ms)",
                p->prot.addr, p->bringup.bytes / 1048576.0,
                p->bringup.ns / 1e6);
    for (size_t i = 0; i < a->nanswers; i++)
        protection_answer(&p->prot, a->answers[i].upto, a->answers[i].rc,
                          a->why);
    if (a->reconnect)
        arm_reconnect(p);
    if (a->rearm)
        cycle_arm(p);
    if (a->take)
        cycle_take(p);
    if (a->claim)
        start_claim(p);
    if (a->pause || a->resume)
        pause_vm(p, a->pause);
    if (a->setup_failed || a->fenced)
        vm_stop(p->v);      /* on_stop follows, then replicator_vm_stopped */
    if (a->finished)
        finish_ending(p);
    if (p->recruit)
        recruit_update(p->recruit);
}

/* ---- the link: bring-up, teardown ---- */

static int protect(replicator *p, const char *addr, int fd, char *err,
                   size_t errlen)
{
    if (p->may_protect && !p->may_protect(p->opaque, err, errlen))
        return -EBUSY;
    if (p->old) {
        channel_free(p->old);
        p->old = NULL;
    }
    /*
     * A fresh pairing for each secondary: answers of any other are refused.
     * Each bring-up is the next generation (the first is 1), so that the
     * witness decides each pairing's failure once (docs/witness.md).
     */
    int rc = pairing_draw(&p->shape.pair, p->shape.pair.name,
                          p->shape.pair.generation + 1);
    if (rc < 0) {
        snprintf(err, errlen, "drawing a pairing id: %s", strerror(-rc));
        return rc;
    }
    protection_act a = protection_begin(&p->prot, addr, &p->shape.pair);
    replicator_do(p, &a);
    if (p->colo)
        colo_stop(p->colo);
    outqueue_begin(p->out);
    rc = channel_new(&p->link, p->base, p->prot.addr, fd,
                     REPLICATOR_CONNECT_TIMEOUT_MS, p->tls, &link_ops, p, err,
                     errlen);
    if (rc < 0) {
        p->link = NULL;
        a = protection_begin_failed(&p->prot);
        replicator_do(p, &a);
    } else {
        channel_set_heartbeat(p->link, p->prot.o.heartbeat_ns);
    }
    return rc;
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    replicator *p = arg;
    char err[512];
    if (!protection_may_reconnect(&p->prot))
        return;
    if (protect(p, p->prot.addr, -1, err, sizeof(err)) == -EBUSY &&
        protection_retries(&p->prot))
        arm_reconnect(p);
}

static int link_bringup(void *opaque, channel *l, char *err, size_t errlen)
{
    replicator *p = opaque;
    return package_bringup(p->v, &p->shape, p->mode == COLO_MODE_COLO, l,
                           &p->bringup_tmp, err, errlen);
}

static void link_ready(void *opaque, channel *l)
{
    replicator *p = opaque;
    if (l != p->link)
        return;
    p->bringup = p->bringup_tmp;
    protection_act a = protection_ready(&p->prot);
    replicator_do(p, &a);
}

static void link_sent(void *opaque, channel *l, uint64_t id, qfile *pkg,
                      uint64_t sent_ns)
{
    replicator *p = opaque;
    cycle_pool_put(p, pkg);
    if (l == p->link)
        protection_sent(&p->prot, id, sent_ns);
}

static void lose(replicator *p, const char *why)
{
    if (p->link) {
        channel_times t;
        channel_get_times(p->link, &t);
        protection_writing(&p->prot, t.sending);
    }
    protection_act a = protection_lose(&p->prot, why);
    replicator_do(p, &a);
}

static void link_down(void *opaque, channel *l, int rc, const char *why)
{
    (void)rc;
    replicator *p = opaque;
    if (l == p->link)
        lose(p, why);
}

static void link_exit(void *opaque, channel *l)
{
    replicator *p = opaque;
    if (l == p->link) {
        /* Ended without a failure being reported: treat it as one. */
        char why[600];
        snprintf(why, sizeof(why), "secondary %s: the link ended",
                 p->prot.addr);
        lose(p, why);
    }
    if (l == p->old) {
        channel_free(l);
        p->old = NULL;
        protection_act a = protection_drained(&p->prot);
        replicator_do(p, &a);
    }
}

/* What the comparison asked for. */
static void colo_ask(replicator *p, colo_verdict v)
{
    if (v == COLO_CHECKPOINT_MISMATCH)
        cycle_take_for(p, COLO_CAUSE_MISMATCH);
    else if (v == COLO_CHECKPOINT_TIMEOUT)
        cycle_take_for(p, COLO_CAUSE_TIMEOUT);
    else if (v == COLO_CHECKPOINT_LIMIT)
        cycle_take_for(p, COLO_CAUSE_LIMIT);
}

/*
 * Queues the COLO record just written into p->colo_f on the link, after
 * what is queued there (channel_send_record's 0 or -errno).
 */
static int send_colo_record(replicator *p)
{
    size_t n;
    const uint8_t *d = qfile_mem_data(p->colo_f, &n);
    int r = qfile_error(p->colo_f);
    return r < 0 ? r : channel_send_record(p->link, d, n);
}

/* The registry's size, from which ftvm's own section ids count. */
static uint32_t registry_n(const replicator *p)
{
    return (uint32_t)registry_count(vm_registry(p->v));
}

/* COLO's exact release: the records colo asks for (docs/colo.md). */
static void on_colo_release(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    replicator *p = arg;
    uint64_t id, upto;
    if (!p->link || !colo_release_due(p->colo, &id, &upto))
        return;
    qfile_mem_reset(p->colo_f);
    colosec_put_release(p->colo_f, colosec_release_section_id(registry_n(p)),
                        id, upto);
    if (send_colo_record(p) < 0)
        colo_release_failed(p->colo, id);       /* colo_tick asks again */
}

/* colo's notify: from any thread, with colo's lock held. */
static void colo_release_notify(void *opaque)
{
    replicator *p = opaque;
    event_active(p->ev_colo_rel, EV_READ, 0);
}

/*
 * COLO's input mirror (colonet's mirror function, on the loop thread):
 * one frame the NIC received after checkpoint id, as an ftvm-colo-in
 * section queued on the link after package id (docs/colo.md).
 */
static int mirror_frame(void *opaque, uint64_t id, const void *frame,
                        size_t len)
{
    replicator *p = opaque;
    if (!p->link)
        return -ENOTCONN;
    qfile_mem_reset(p->colo_f);
    colosec_put_input(p->colo_f, colosec_input_section_id(registry_n(p)), id,
                      frame, len);
    return send_colo_record(p);
}

static void on_colo_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    replicator *p = arg;
    colo_ask(p, colo_tick(p->colo, mono_ns()));
}

static void link_msg(void *opaque, channel *l, const retpath_msg *m)
{
    replicator *p = opaque;
    if (l != p->link)
        return;
    protection_act a = { 0 };
    channel_times t;
    if (m->type == RETPATH_ACK || m->type == RETPATH_NACK) {
        /* Read after a stall, an answer may predate a takeover. */
        a = protection_stalled(&p->prot, channel_take_stall(l, mono_ns()));
        if (p->prot.state != PROTECTION_SETUP &&
            p->prot.state != PROTECTION_ACTIVE) {
            replicator_do(p, &a);
            return;
        }
    }
    switch (m->type) {
    case RETPATH_ACK:
        channel_get_times(l, &t);
        a = protection_ack(&p->prot, m->value64, &m->pair, t.sending,
                           mono_ns());
        if (p->mode == COLO_MODE_COLO && a.release_upto)
            colo_acked(p->colo, m->value64, mono_ns());
        break;
    case RETPATH_NACK:
        channel_get_times(l, &t);
        a = protection_nack(&p->prot, m->value64, &m->pair, t.sending,
                            m->text);
        break;
    case RETPATH_HEARTBEAT:
        p->heartbeats++;
        break;
    case RETPATH_PONG:
        p->pongs++;
        break;
    case RETPATH_COLO_RELEASED:
        if (p->mode == COLO_MODE_COLO &&
            colo_released(p->colo, m->value64, m->offset))
            event_active(p->ev_colo_rel, EV_READ, 0);
        break;
    case RETPATH_COLO_FRAME:
        if (p->mode == COLO_MODE_COLO)
            colo_ask(p, colo_secondary_frame(p->colo, m->value64, m->text,
                                             m->len, mono_ns()));
        break;
    case RETPATH_COLO_CONSOLE:
        if (p->mode == COLO_MODE_COLO)
            colo_ask(p, colo_secondary(p->colo, m->value64, m->text, m->len,
                                       mono_ns()));
        break;
    case RETPATH_REFUSE:
        channel_get_times(l, &t);
        protection_writing(&p->prot, t.sending);
        a = protection_refused(&p->prot, m->value64, &m->pair, m->text);
        break;
    case RETPATH_SHUT:
        channel_get_times(l, &t);
        protection_writing(&p->prot, t.sending);
        a = protection_shut(&p->prot, m->value32);
        break;
    }
    replicator_do(p, &a);
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
    /* Also a degraded start (no secondary), which no act reports. */
    if (p->recruit)
        recruit_update(p->recruit);
    if (!p->link)
        return;
    channel_times t;
    channel_get_times(p->link, &t);
    protection_act a = protection_tick(&p->prot, mono_ns(), &t);
    replicator_do(p, &a);
}

static void arm_tick(replicator *p)
{
    struct timeval tv = mono_tv(protection_tick_period(&p->prot));
    evtimer_del(p->ev_tick);
    event_add(p->ev_tick, &tv);
}

/* ---- the API ---- */

static int recruit_attach(void *opaque, const char *addr, char *err,
                          size_t errlen)
{
    return replicator_attach(opaque, addr, err, errlen);
}

/* --standby-pool: a degraded primary picks a standby (recruit.h). */
static int start_recruiting(replicator *p, struct event_base *base,
                            const replicator_opts *o, char *err,
                            size_t errlen)
{
    if (!p->witness) {
        snprintf(err, errlen, "--standby-pool needs --witness (the pool "
                 "is in etcd)");
        return -EINVAL;
    }
    recruit_opts ro = { .endpoints = o->witness,
                        .tls_dir = o->witness_tls,
                        .pool = o->standby_pool,
                        .timeout_ns = o->witness_timeout_ns,
                        .prot = &p->prot, .pair = &p->shape.pair,
                        .me = claim_value(p->witness),
                        .attach = recruit_attach, .opaque = p };
    return recruit_new(&p->recruit, base, &ro, err, errlen);
}

int replicator_new(replicator **out, vm *v, struct event_base *base,
                   outqueue *output, const replicator_opts *o, char *err,
                   size_t errlen)
{
    if (o->mode == COLO_MODE_COLO && vm_get_machine(v) == VM_MACHINE_PC) {
        snprintf(err, errlen, "%s", PC_NO_COLO);
        return -ENOTSUP;
    }
    if (o->mode == COLO_MODE_COLO && vm_disk(v)) {
        snprintf(err, errlen, "%s", VM_DISK_NO_COLO);
        return -ENOTSUP;
    }
    replicator *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    p->v = v;
    p->base = base;
    p->out = output;
    p->shape = o->shape;
    p->may_protect = o->may_protect;
    p->opaque = o->opaque;
    p->insecure = o->tls.insecure;
    protection_opts timing = o->timing;
    timing.witness = o->witness != NULL;
    protection_init(&p->prot, &timing, o->secondary);
    if (o->witness) {
        int rc = claim_new(&p->witness, base, o->witness, o->witness_tls,
                           "primary", o->witness_timeout_ns, err, errlen);
        if (rc == 0 && generations_new(&p->gens, claim_client(p->witness),
                                       o->witness_timeout_ns) < 0) {
            snprintf(err, errlen, "out of memory");
            rc = -ENOMEM;
        }
        if (rc < 0) {
            replicator_free(p);
            return rc;
        }
    }
    if (o->standby_pool) {
        int rc = start_recruiting(p, base, o, err, errlen);
        if (rc < 0) {
            replicator_free(p);
            return rc;
        }
    }
    if (o->tls.creds) {
        int rc = tls_ctx_new(&p->tls, TLS_CLIENT, &o->tls, err, errlen);
        if (rc < 0) {
            replicator_free(p);
            return rc;
        }
    }
    sampler_init(&p->pause, &sampler_ns);
    sampler_init(&p->ack, &sampler_ns);
    sampler_init(&p->pages, &sampler_pages);
    sampler_init(&p->bytes, &sampler_bytes);
    p->ev_ckpt = evtimer_new(base, cycle_on_timer, p);
    p->ev_tick = event_new(base, -1, EV_PERSIST, on_tick, p);
    p->ev_early = event_new(base, -1, 0, cycle_on_early, p);
    p->ev_reconnect = evtimer_new(base, on_reconnect, p);
    if (!p->ev_ckpt || !p->ev_tick || !p->ev_early || !p->ev_reconnect) {
        snprintf(err, errlen, "out of memory");
        replicator_free(p);
        return -ENOMEM;
    }
    p->mode = o->mode;
    p->colo = o->colo;
    p->colo_timeout_ns = o->compare_timeout_ns ? o->compare_timeout_ns
                                               : COLO_DEFAULT_TIMEOUT_NS;
    if (p->mode == COLO_MODE_COLO) {
        if (!p->colo) {
            snprintf(err, errlen, "--mode colo: no comparison");
            replicator_free(p);
            return -EINVAL;
        }
        colo_set_timeout(p->colo, p->colo_timeout_ns);
        p->colo_f = qfile_open_mem("colo-records");
        p->ev_colo_rel = event_new(base, -1, 0, on_colo_release, p);
        if (!p->colo_f || !p->ev_colo_rel) {
            snprintf(err, errlen, "out of memory");
            replicator_free(p);
            return -ENOMEM;
        }
        colo_set_release_notify(p->colo, colo_release_notify, p);
        colonet *cn = colo_net(p->colo);
        if (o->compare_log &&
            colonet_set_log(cn, o->compare_log, err, errlen) < 0) {
            replicator_free(p);
            return -EINVAL;
        }
        if (vm_net(v)) {
            colonet_set_mirror(cn, mirror_frame, p);
            net_set_rx_tap(vm_net(v), colonet_input, cn);
        }
        p->ev_colo = event_new(base, -1, EV_PERSIST, on_colo_tick, p);
        struct timeval tv = mono_tv(colo_tick_period(p->colo));
        if (!p->ev_colo || event_add(p->ev_colo, &tv) < 0) {
            snprintf(err, errlen, "out of memory");
            replicator_free(p);
            return -ENOMEM;
        }
    }
    outqueue_set_limit(output, 0, 0, cycle_early_notify, p);
    if (vm_net(v))
        outqueue_set_frame_sink(output, outqueue_net_send, vm_net(v));
    *out = p;
    return 0;
}

static void on_generations(void *opaque, int rc, uint64_t highest,
                           const char *err)
{
    replicator *p = opaque;
    char msg[sizeof(p->prot.last_error)];
    if (p->prot.ending) {
        generations_cancel(p->gens);
        return;
    }
    if (rc < 0) {
        snprintf(msg, sizeof(msg), "%s: not pairing until the witness "
                 "answers (asking again)", err);
        if (strcmp(msg, p->prot.last_error) != 0)   /* news only */
            replicator_say(p, "%s", msg);
        return;
    }
    /*
     * protect() takes the next: the first pairing is highest + 1 (never
     * lower than the generation a survivor continues from).
     */
    if (highest > p->shape.pair.generation)
        p->shape.pair.generation = highest;
    highest = p->shape.pair.generation;
    replicator_say(p, "the witness decided generations up to %llu for "
                   "'%s': the first pairing is generation %llu",
                   (unsigned long long)highest, p->shape.pair.name,
                   (unsigned long long)highest + 1);
    p->gens_done(p->gens_opaque);
}

int replicator_read_generations(replicator *p, void (*done)(void *opaque),
                                void *opaque, char *err, size_t errlen)
{
    p->gens_done = done;
    p->gens_opaque = opaque;
    return generations_scan(p->gens, p->shape.pair.name, on_generations, p,
                            err, errlen);
}

/* Plaintext goes to loopback addresses only: checked before connecting. */
static int may_reach(replicator *p, const char *addr, char *err,
                     size_t errlen)
{
    if (p->tls || tls_loopback_addr(addr))
        return 0;
    snprintf(err, errlen, "--insecure: secondary %s is not a loopback "
             "address; plaintext replication is allowed on loopback only "
             "(give --tls-creds DIR)", addr);
    return -EPERM;
}

int replicator_start(replicator *p, char *err, size_t errlen)
{
    int fd;
    if (!p->prot.addr[0]) {
        arm_tick(p);
        log_msg("running unprotected (degraded): no secondary yet; "
                "`ftvmctl protect HOST:PORT` brings one up");
        return 0;
    }
    int rc = may_reach(p, p->prot.addr, err, errlen);
    if (rc < 0)
        return rc;
    arm_tick(p);
    rc = dial_connect(p->prot.addr, REPLICATOR_CONNECT_TIMEOUT_MS, NULL,
                      NULL, &fd, err, errlen);
    if (rc < 0 && !protection_retries(&p->prot))
        return rc;
    if (rc < 0) {
        replicator_say(p,
                       "%s; starting unprotected (degraded), trying again "
                       "every %.1f s",
                       err, p->prot.o.reconnect_ns / 1e9);
        arm_reconnect(p);
        return 0;
    }
    return protect(p, p->prot.addr, fd, err, errlen);
}

void replicator_free(replicator *p)
{
    if (!p)
        return;
    channel_free(p->link);
    channel_free(p->old);
    recruit_free(p->recruit);
    generations_free(p->gens);
    claim_free(p->witness);
    protection_fini(&p->prot, "the primary is exiting");
    if (p->out)
        outqueue_set_limit(p->out, 0, 0, NULL, NULL);
    if (p->colo_f) {
        colo_set_release_notify(p->colo, NULL, NULL);
        if (vm_net(p->v)) {
            net_set_rx_tap(vm_net(p->v), NULL, NULL);
            colonet_set_mirror(colo_net(p->colo), NULL, NULL);
        }
        qfile_close(p->colo_f);
    }
    if (p->ev_colo_rel)
        event_free(p->ev_colo_rel);
    struct event *evs[] = { p->ev_ckpt, p->ev_tick, p->ev_early,
                            p->ev_reconnect, p->ev_colo };
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    while (p->npool)
        qfile_close(p->pool[--p->npool]);
    tls_ctx_free(p->tls);
    free(p);
}

int replicator_checkpoint(replicator *p, protection_done_fn done,
                          void *opaque, char *err, size_t errlen)
{
    protection_act a;
    int rc = protection_wait(&p->prot, done, opaque, &a, err, errlen);
    if (rc == 0) {
        p->cause = COLO_CAUSE_MANUAL;
        replicator_do(p, &a);
    }
    return rc;
}

int replicator_set(replicator *p, const char *key, uint64_t ns, char *err,
                   size_t errlen)
{
    protection_opts *o = &p->prot.o;
    if (strcmp(key, "checkpoint-interval") == 0 && ns) {
        o->interval_ns = ns;
        if (evtimer_pending(p->ev_ckpt, NULL))
            cycle_arm(p);
    } else if (strcmp(key, "heartbeat") == 0 && ns) {
        o->heartbeat_ns = ns;
        if (p->link)
            channel_set_heartbeat(p->link, ns);
        arm_tick(p);
    } else if (strcmp(key, "failure-timeout") == 0 && ns) {
        o->failure_ns = ns;
        arm_tick(p);
    } else if (strcmp(key, "reconnect") == 0) {
        o->reconnect_ns = ns;
        evtimer_del(p->ev_reconnect);
        if (protection_may_reconnect(&p->prot) &&
            protection_retries(&p->prot))
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
    protection_act a;
    int rc = protection_stop(&p->prot, &a, err, errlen);
    if (rc == 0)
        replicator_do(p, &a);
    return rc;
}

int replicator_attach(replicator *p, const char *addr, char *err, size_t errlen)
{
    int rc = protection_may_attach(&p->prot, err, errlen);
    if (rc == 0)
        rc = may_reach(p, addr, err, errlen);
    if (rc < 0)
        return rc;
    char host[256];
    snprintf(host, sizeof(host), "%s", addr);
    evtimer_del(p->ev_reconnect);
    log_msg("bringing up secondary %s", host);
    return protect(p, host, -1, err, errlen);
}

void replicator_vm_stopped(replicator *p, bool takeover,
                           void (*done)(void *opaque), void *opaque)
{
    p->done = done;
    p->done_opaque = opaque;
    evtimer_del(p->ev_ckpt);
    evtimer_del(p->ev_reconnect);
    event_del(p->ev_tick);
    protection_act a = protection_vm_stopped(&p->prot, takeover);
    replicator_do(p, &a);
}

colonet *replicator_colonet(const replicator *p)
{
    return p->mode == COLO_MODE_COLO && vm_net(p->v) ? colo_net(p->colo)
                                                     : NULL;
}

void replicator_get_status(replicator *p, replicator_status *st)
{
    const protection *r = &p->prot;
    memset(st, 0, sizeof(*st));
    uint64_t now = mono_ns();
    st->state = r->state;
    snprintf(st->secondary, sizeof(st->secondary), "%s", r->addr);
    st->pair = p->shape.pair;
    st->secondaries = r->secondaries;
    st->interval_ns = r->o.interval_ns;
    st->heartbeat_ns = r->o.heartbeat_ns;
    st->failure_ns = r->o.failure_ns;
    st->reconnect_ns = r->o.reconnect_ns;
    st->taken = r->taken;
    st->acked = r->acked;
    st->last_id = r->next_id ? r->next_id - 1 : 0;
    st->last_acked = r->acked_id;
    st->full = r->full;
    st->nacks = r->nacks;
    st->foreign_answers = r->foreign_answers;
    st->in_flight = r->nwin;
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
    st->mode = p->mode;
    memcpy(st->causes, p->causes, sizeof(st->causes));
    if (p->mode == COLO_MODE_COLO) {
        colo_get_stats(p->colo, &st->colo);
        st->compare_timeout_ns = p->colo_timeout_ns;
    }
    snprintf(st->last_error, sizeof(st->last_error), "%s", r->last_error);
}

bool replicator_setup_failed(const replicator *p)
{
    return p->prot.state == PROTECTION_SETUP_FAILED;
}

bool replicator_fenced(const replicator *p)
{
    return p->prot.state == PROTECTION_FENCED;
}

struct json_t *replicator_witness_status(const replicator *p)
{
    return claim_status(p->witness, p->shape.pair.name,
                        p->shape.pair.generation);
}

struct json_t *replicator_pool_status(const replicator *p)
{
    return p->recruit ? recruit_status(p->recruit) : NULL;
}

const char *replicator_witness_value(const replicator *p)
{
    return p->witness ? claim_value(p->witness) : NULL;
}

int replicator_may_save(const replicator *p, char *err, size_t errlen)
{
    return protection_may_save(&p->prot, err, errlen);
}

vm *replicator_vm(const replicator *p)
{
    return p->v;
}
