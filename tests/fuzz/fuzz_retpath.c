/*
 * libFuzzer target: the primary's return path.  The input is a list of
 * events (tests/fuzz/inputs.h): bytes arriving from the secondary, which
 * retpath_parse frames as primary/channel.c does, and checkpoints, ticks,
 * requests and link events between them; each message goes to
 * primary/protection as primary/replicator.c hands it over, and each act
 * is carried out as replicator_do would (answers, a checkpoint to take).
 *
 * What must hold, whatever the secondary says: the parser consumes only
 * what it has and frames what it accepts exactly as retpath_put writes
 * it; output is released only for a checkpoint that was sent on the
 * current link, and never backwards; the window stays within its bound
 * and in order; every operator request is answered exactly once, and
 * "done" only for a checkpoint the secondary acknowledged.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint/retpath.h"
#include "primary/protection.h"
#include "tests/fuzz/fuzzcheck.h"
#include "tests/fuzz/inputs.h"

#define MS 1000000ull
#define ADDR "fuzz-secondary:1"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct run {
    protection p;
    const uint8_t *in;
    size_t len, pos;
    uint64_t now;
    uint8_t rx[4 * RETPATH_MSG_MAX];
    size_t rx_len;
    uint64_t last_recv;
    /* The model: this link's checkpoints, and what was released. */
    uint64_t max_sent;          /* highest id sent on the current link */
    uint64_t released;          /* highest release_upto on it */
    uint64_t acked;             /* highest id the secondary acknowledged */
    unsigned waits, answered;
    bool lost;                  /* the link ended on something received */
} run;

static int next_byte(run *r)
{
    return r->pos < r->len ? r->in[r->pos++] : -1;
}

static void on_done(void *opaque, int rc, uint64_t id, const char *err)
{
    run *r = opaque;
    r->answered++;
    if (rc == 0 && (id == 0 || id > r->acked))
        fuzzcheck_broken("fuzz_retpath: a request answered done for "
                         "checkpoint %llu; the secondary acknowledged up "
                         "to %llu", (unsigned long long)id,
                         (unsigned long long)r->acked);
    if (rc < 0 && (!err || !err[0]))
        fuzzcheck_broken("fuzz_retpath: a request refused without a "
                         "message");
}

static void check_window(const run *r)
{
    const protection *p = &r->p;
    if (p->nwin > PROTECTION_WINDOW)
        fuzzcheck_broken("fuzz_retpath: %zu packages in flight", p->nwin);
    for (size_t i = 0; i < p->nwin; i++) {
        if (p->win[i].id <= p->acked_id || p->win[i].id >= p->next_id ||
            (i && p->win[i].id <= p->win[i - 1].id))
            fuzzcheck_broken("fuzz_retpath: checkpoint %llu in flight out "
                             "of order (acked %llu, next %llu)",
                             (unsigned long long)p->win[i].id,
                             (unsigned long long)p->acked_id,
                             (unsigned long long)p->next_id);
    }
}

static void take(run *r);

/* What replicator_do does with an act, with the model's checks. */
static void carry(run *r, const protection_act *a, protection_state was)
{
    protection *p = &r->p;
    if (a->release_upto) {
        if (a->release_upto > r->max_sent)
            fuzzcheck_broken("fuzz_retpath: output released up to "
                             "checkpoint %llu, but only %llu were sent",
                             (unsigned long long)a->release_upto,
                             (unsigned long long)r->max_sent);
        if (a->release_upto <= r->released)
            fuzzcheck_broken("fuzz_retpath: output released up to %llu "
                             "after %llu", (unsigned long long)a->release_upto,
                             (unsigned long long)r->released);
        r->released = a->release_upto;
    }
    if (a->release_all && p->holding)
        fuzzcheck_broken("fuzz_retpath: all output released, still holding");
    if (a->protected_now &&
        (was != PROTECTION_SETUP || p->state != PROTECTION_ACTIVE))
        fuzzcheck_broken("fuzz_retpath: \"protected\" from state %s to %s",
                         protection_state_name(was),
                         protection_state_name(p->state));
    if (a->nanswers > 2)
        fuzzcheck_broken("fuzz_retpath: %zu answers in one act",
                         a->nanswers);
    if (a->say && !a->msg[0])
        fuzzcheck_broken("fuzz_retpath: an empty message to log");
    check_window(r);
    for (size_t i = 0; i < a->nanswers; i++)
        protection_answer(p, a->answers[i].upto, a->answers[i].rc, a->why);
    if (a->take)
        take(r);
}

static void take(run *r)
{
    protection *p = &r->p;
    protection_plan pl = protection_next(p);
    if (!pl.take)
        return;
    if (pl.id != r->max_sent + 1)
        fuzzcheck_broken("fuzz_retpath: checkpoint %llu planned after %llu",
                         (unsigned long long)pl.id,
                         (unsigned long long)r->max_sent);
    protection_started(p, r->now);
    protection_hold(p);
    protection_state was = p->state;
    protection_act a = protection_taken(p, &pl);
    r->max_sent = pl.id;
    protection_sent(p, pl.id, r->now);
    carry(r, &a, was);
}

static void attach(run *r)
{
    char err[256];
    /* The last link ends first: an attach waits for its drop notice. */
    protection_act a = protection_drained(&r->p);
    carry(r, &a, r->p.state);
    if (protection_may_attach(&r->p, err, sizeof(err)) < 0)
        return;
    protection_state was = r->p.state;
    a = protection_begin(&r->p, ADDR, &rp_pair);
    r->max_sent = r->released = r->acked = 0;
    carry(r, &a, was);
    a = protection_ready(&r->p);
    carry(r, &a, r->p.state);
}

/*
 * The states a lost secondary leaves: degraded, or, the first one before
 * protecting the VM without --reconnect, setup failed.
 */
static bool lost_state(protection_state s)
{
    return s == PROTECTION_DEGRADED || s == PROTECTION_SETUP_FAILED;
}

/* One message from the secondary, as replicator.c's link_msg hands it. */
static void deliver(run *r, const retpath_msg *m)
{
    protection *p = &r->p;
    protection_state was = p->state;
    bool linked = was == PROTECTION_SETUP || was == PROTECTION_ACTIVE;
    protection_act a = { 0 };
    switch (m->type) {
    case RETPATH_ACK: {
        /* In flight on this link, and of its pairing: nothing else counts. */
        bool in_flight = false;
        for (size_t i = 0; i < p->nwin; i++)
            in_flight |= p->win[i].id == m->value64;
        in_flight &= pairing_equal(&m->pair, &rp_pair);
        /* The model sends every package as it is taken. */
        a = protection_ack(p, m->value64, &m->pair, r->max_sent, r->now);
        if (linked && in_flight && m->value64 > r->acked)
            r->acked = m->value64;
        if (linked && !in_flight && (a.release_upto || p->state ==
                                     PROTECTION_ACTIVE))
            fuzzcheck_broken("fuzz_retpath: an ACK of checkpoint %llu, not "
                             "in flight or of another pairing, was taken",
                             (unsigned long long)m->value64);
        break;
    }
    case RETPATH_NACK:
        a = protection_nack(p, m->value64, &m->pair, r->max_sent, m->text);
        if (linked && !pairing_equal(&m->pair, &rp_pair) &&
            (p->state == PROTECTION_SETUP || p->state == PROTECTION_ACTIVE))
            fuzzcheck_broken("fuzz_retpath: a NACK of another pairing did "
                             "not end the link");
        break;
    case RETPATH_REFUSE:
        a = protection_refused(p, m->value64, &m->pair, m->text);
        if (linked && (p->state == PROTECTION_SETUP ||
                       p->state == PROTECTION_ACTIVE))
            fuzzcheck_broken("fuzz_retpath: a REFUSE did not end the link");
        if (a.release_upto)
            fuzzcheck_broken("fuzz_retpath: a REFUSE released output by "
                             "checkpoint");
        break;
    case RETPATH_SHUT:
        a = protection_shut(p, m->value32);
        break;
    case RETPATH_HEARTBEAT:
    case RETPATH_PONG:
    case RETPATH_COLO_CONSOLE:  /* colo.h's, not protection's */
    case RETPATH_COLO_FRAME:
    case RETPATH_COLO_RELEASED:
        break;
    }
    if (linked && lost_state(p->state))
        r->lost = true;
    carry(r, &a, was);
}

/* Bytes arrive: framed as primary/channel.c's on_read frames them. */
static void receive(run *r, size_t n)
{
    if (n > r->len - r->pos)
        n = r->len - r->pos;
    if (n > sizeof(r->rx) - r->rx_len)
        n = sizeof(r->rx) - r->rx_len;
    memcpy(r->rx + r->rx_len, r->in + r->pos, n);
    r->pos += n;
    r->rx_len += n;
    r->last_recv = r->now;
    size_t off = 0;
    for (;;) {
        retpath_msg m;
        char err[256] = "";
        int used = retpath_parse(r->rx + off, r->rx_len - off, &m, err,
                                 sizeof(err));
        if (used < 0) {
            if (!err[0])
                fuzzcheck_broken("fuzz_retpath: refused without a message");
            fuzzcheck_refused("fuzz_retpath: %s", err);
            protection_state was = r->p.state;
            protection_act a = protection_lose(&r->p, err);
            r->lost = true;
            carry(r, &a, was);
            r->rx_len = 0;
            return;
        }
        if (used == 0)
            break;
        if ((size_t)used > r->rx_len - off)
            fuzzcheck_broken("fuzz_retpath: %d bytes used of %zu", used,
                             r->rx_len - off);
        /* What it accepts is what the writer writes, byte for byte. */
        if ((m.type != RETPATH_NACK && m.type != RETPATH_REFUSE) ||
            !memchr(r->rx + off + 4 + RETPATH_ANSWER_LEN, 0,
                    (size_t)used - 4 - RETPATH_ANSWER_LEN)) {
            qfile *q = qfile_open_mem("rp");
            retpath_put(q, &m);
            size_t qn;
            const uint8_t *qb = qfile_mem_data(q, &qn);
            if (qn != (size_t)used || memcmp(qb, r->rx + off, qn) != 0)
                fuzzcheck_broken("fuzz_retpath: %s parsed from %d bytes "
                                 "is written as %zu other bytes",
                                 retpath_type_name(m.type), used, qn);
            qfile_close(q);
        }
        off += (size_t)used;
        deliver(r, &m);
    }
    memmove(r->rx, r->rx + off, r->rx_len - off);
    r->rx_len -= off;
}

static void link_event(run *r, int what)
{
    protection *p = &r->p;
    protection_state was = p->state;
    protection_act a = { 0 };
    char err[256];
    switch (what % RP_LINK_COUNT) {
    case RP_LINK_DOWN:
        a = protection_lose(p, "fuzz: the link went down");
        break;
    case RP_LINK_ATTACH:
        attach(r);
        return;
    case RP_LINK_STOP:
        if (protection_stop(p, &a, err, sizeof(err)) < 0 && !err[0])
            fuzzcheck_broken("fuzz_retpath: stop refused without a "
                             "message");
        break;
    case RP_LINK_BUILD_FAILED: {
        protection_plan pl = protection_next(p);
        if (!pl.take)
            return;
        a = protection_build_failed(p, &pl, "fuzz: the package failed");
        break;
    }
    }
    carry(r, &a, was);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static run r;
    memset(&r, 0, sizeof(r));
    r.in = data;
    r.len = size;
    r.now = 1000 * MS;
    protection_init(&r.p, &(protection_opts){ .reconnect_ns = 0 }, ADDR);
    attach(&r);
    int op;
    while ((op = next_byte(&r)) >= 0) {
        int arg;
        switch (op % RP_OP_COUNT) {
        case RP_OP_CHECKPOINT:
            take(&r);
            break;
        case RP_OP_RECV:
            arg = next_byte(&r);
            receive(&r, arg < 0 ? 0 : (size_t)arg);
            break;
        case RP_OP_TICK: {
            arg = next_byte(&r);
            r.now += (uint64_t)(arg < 0 ? 0 : arg) * MS;
            channel_times t = { .last_recv_ns = r.last_recv ? r.last_recv
                                                            : r.now,
                                .progress_ns = r.now };
            protection_state was = r.p.state;
            protection_act a = protection_tick(&r.p, r.now, &t);
            carry(&r, &a, was);
            break;
        }
        case RP_OP_WAIT: {
            protection_act a;
            char err[256] = "";
            protection_state was = r.p.state;
            if (protection_wait(&r.p, on_done, &r, &a, err, sizeof(err))
                == 0) {
                r.waits++;
                carry(&r, &a, was);
            } else if (!err[0]) {
                fuzzcheck_broken("fuzz_retpath: a request refused without "
                                 "a message");
            }
            break;
        }
        case RP_OP_LINK:
            arg = next_byte(&r);
            link_event(&r, arg < 0 ? 0 : arg);
            break;
        case RP_OP_VM_STOP: {
            arg = next_byte(&r);
            protection_state was = r.p.state;
            protection_act a = protection_vm_stopped(&r.p, arg > 0 &&
                                                     (arg & 1));
            carry(&r, &a, was);
            break;
        }
        }
    }
    if (r.lost && lost_state(r.p.state))
        fuzzcheck_refused("fuzz_retpath: the secondary's messages ended the "
                          "link: %s", r.p.last_error);
    protection_fini(&r.p, "fuzz: the end");
    if (r.answered != r.waits)
        fuzzcheck_broken("fuzz_retpath: %u requests, %u answers", r.waits,
                         r.answered);
    return 0;
}
