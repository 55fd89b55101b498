/* protection: see protection.h. */
#include "primary/protection.h"

#include "devstate/dropnotice.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_INTERVAL_NS 50000000ull
#define DEFAULT_HEARTBEAT_NS 50000000ull
#define DEFAULT_FAILURE_NS 300000000ull
#define DEFAULT_STALL_NS 10000000000ull

struct protection_waiter {
    protection_waiter *next;
    uint64_t id;            /* 0: the next checkpoint taken */
    protection_done_fn fn;
    void *opaque;
};

const char *protection_state_name(protection_state s)
{
    switch (s) {
    case PROTECTION_SETUP:
        return "setup";
    case PROTECTION_ACTIVE:
        return "active";
    case PROTECTION_DEGRADED:
        return "degraded";
    case PROTECTION_STOPPED:
        return "stopped";
    case PROTECTION_CLAIMING:
        return "claiming";
    case PROTECTION_FENCED:
        return "fenced";
    case PROTECTION_SETUP_FAILED:
        return "setup-failed";
    }
    return "?";
}

/* A secondary is set up or active: there is a current link. */
static bool linked(const protection *p)
{
    return p->state == PROTECTION_SETUP || p->state == PROTECTION_ACTIVE;
}

void protection_init(protection *p, const protection_opts *o,
                     const char *addr)
{
    memset(p, 0, sizeof(*p));
    p->o = *o;
    if (!p->o.interval_ns)
        p->o.interval_ns = DEFAULT_INTERVAL_NS;
    if (!p->o.heartbeat_ns)
        p->o.heartbeat_ns = DEFAULT_HEARTBEAT_NS;
    if (!p->o.failure_ns)
        p->o.failure_ns = DEFAULT_FAILURE_NS;
    if (!p->o.stall_ns)
        p->o.stall_ns = DEFAULT_STALL_NS;
    snprintf(p->addr, sizeof(p->addr), "%s", addr ? addr : "");
    p->state = PROTECTION_DEGRADED;
    p->must_protect = !o->reconnect_ns && !o->running;
}

void protection_fini(protection *p, const char *msg)
{
    protection_answer(p, UINT64_MAX, -ECONNABORTED, msg);
}

void protection_note(protection *p, const char *msg)
{
    snprintf(p->last_error, sizeof(p->last_error), "%s", msg);
}

/* Logs msg and keeps it as the last error. */
__attribute__((format(printf, 3, 4))) static void
say(protection *p, protection_act *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->msg, sizeof(a->msg), fmt, ap);
    va_end(ap);
    a->say = true;
    protection_note(p, a->msg);
}

static void answer(protection_act *a, uint64_t upto, int rc, const char *why)
{
    a->answers[a->nanswers].upto = upto;
    a->answers[a->nanswers].rc = rc;
    a->nanswers++;
    /* A longer why (a->msg, a NACK's text) is cut to fit. */
    if (why != a->why)
        snprintf(a->why, sizeof(a->why), "%.*s", (int)sizeof(a->why) - 1,
                 why);
}

bool protection_retries(const protection *p)
{
    return p->o.reconnect_ns && !p->ending;
}

bool protection_may_reconnect(const protection *p)
{
    /* Not while the last link still writes its drop notice: below. */
    return p->state == PROTECTION_DEGRADED && !p->ending && !p->draining;
}

/*
 * Ends the current link; every waiter's checkpoint is lost with it.  A
 * link finished with EOF has a live secondary: reason goes with it.
 */
static void end_link_for(protection *p, protection_act *a, protection_end how,
                         uint32_t reason, const char *why)
{
    a->end = how;
    a->drop_reason = how == PROTECTION_FINISH ? reason : 0;
    p->ready = false;
    p->nwin = 0;
    p->due = false;
    p->draining = true;
    answer(a, UINT64_MAX, -ECONNABORTED, why);
}

static void end_link(protection *p, protection_act *a, protection_end how,
                     const char *why)
{
    end_link_for(p, a, how, DROPNOTICE_GAVE_UP, why);
}

static void release_all(protection *p, protection_act *a)
{
    a->release_all = true;
    p->holding = false;
}

/* ---- a secondary's life ---- */

protection_act protection_begin(protection *p, const char *addr,
                                const pairing *pair)
{
    protection_act a = { 0 };
    p->draining = false;
    if (p->release_on_drain) {
        p->release_on_drain = false;
        release_all(p, &a);
    }
    if (addr != p->addr)
        snprintf(p->addr, sizeof(p->addr), "%s", addr);
    p->pair = *pair;
    p->next_id = 1;
    p->acked_id = 0;
    p->need_full = false;
    p->last_full_id = 0;
    p->full_refusals = 0;
    p->nwin = 0;
    p->due = false;
    p->ready = false;
    p->written = false;
    p->secondaries++;
    p->state = PROTECTION_SETUP;
    return a;
}

protection_act protection_begin_failed(protection *p)
{
    protection_act a = { 0 };
    p->state = PROTECTION_DEGRADED;
    a.reconnect = protection_retries(p);
    return a;
}

protection_act protection_ready(protection *p)
{
    protection_act a = { 0 };
    if (!linked(p))
        return a;
    p->ready = true;
    a.take = true;
    return a;
}

/*
 * Whether the current link's end fails the primary's setup: the user
 * asked for a protected VM (no --reconnect to run unprotected until a
 * secondary protects it) and never had one.
 */
static bool setup_fails(const protection *p)
{
    return p->must_protect && p->state == PROTECTION_SETUP &&
           !p->o.reconnect_ns;
}

/*
 * The first secondary went before its first ACK: the VM stops and the
 * primary exits 120, rather than run on unprotected.  Held output (from
 * checkpoint 1 on) is never released: no checkpoint of the state that
 * produced it was acknowledged, and a secondary that applied checkpoint 1
 * whose ACK was lost fails over and says it again.  how ends the link:
 * with EOF a live secondary stops instead of failing over.
 */
static void fail_setup(protection *p, protection_act *a, protection_end how,
                       const char *why)
{
    say(p, a, "%s; the VM was never protected, and without --reconnect "
        "it does not run unprotected: stopping it (setup failed; the "
        "output held since checkpoint 1 is dropped, never released). "
        "Check --tls-creds and --tls-peer against the secondary's, or "
        "give --reconnect TIME to start unprotected and keep trying", why);
    protection_note(p, why);
    p->release_on_drain = false;
    end_link(p, a, how, why);
    p->state = PROTECTION_SETUP_FAILED;
    p->must_protect = false;
    a->setup_failed = true;
}

/* lose into an act that may already hold an answer (a NACK's). */
static void lose(protection *p, protection_act *a, const char *why)
{
    if (setup_fails(p)) {
        fail_setup(p, a, PROTECTION_DROP, why);
        return;
    }
    p->must_protect = false;
    /* A reconnect that fails as the last one did is not news. */
    if (p->o.witness && p->written) {
        /*
         * It may have applied checkpoint 1 and be failing over: whoever
         * wins the key runs the VM.  Until then everything the VM
         * produces stays held (what was acknowledged is out already:
         * that is safe whoever wins).
         */
        say(p, a, "%s; asking the witness who keeps the VM (claiming "
            "generation %" PRIu64 "); output stays held until it answers",
            why, p->pair.generation);
        protection_note(p, why);
        end_link(p, a, PROTECTION_DROP, why);
        p->state = PROTECTION_CLAIMING;
        a->claim = true;
        return;
    }
    bool again = !p->ready && strcmp(why, p->last_error) == 0;
    if (!again)
        say(p, a, "%s; running unprotected (degraded)", why);
    protection_note(p, why);
    end_link(p, a, PROTECTION_DROP, why);
    p->state = PROTECTION_DEGRADED;
    release_all(p, a);
    a->reconnect = protection_retries(p);
}

/*
 * Ends protection of a secondary that is alive and connected (it refuses
 * everything, or answers what it cannot): with EOF, as stop-replication
 * does, not by dropping the connection.  Dropped, a live secondary takes
 * the primary for lost and fails over while this VM runs on: two VMs
 * from one.  With EOF it stops.  Held output leaves once EOF has: until
 * then the secondary could still fail over to the last checkpoint
 * acknowledged.  Degraded, and reconnecting as after a loss.
 */
static void give_up(protection *p, protection_act *a, const char *why)
{
    if (setup_fails(p)) {
        fail_setup(p, a, p->ready ? PROTECTION_FINISH : PROTECTION_DROP,
                   why);
        return;
    }
    p->must_protect = false;
    say(p, a, "%s; ending replication (EOF) and running unprotected "
        "(degraded)", why);
    protection_note(p, why);
    p->release_on_drain = p->holding;
    end_link(p, a, p->ready ? PROTECTION_FINISH : PROTECTION_DROP, why);
    p->state = PROTECTION_DEGRADED;
    if (!p->holding)
        release_all(p, a);
    a->reconnect = protection_retries(p);
}

protection_act protection_lose(protection *p, const char *why)
{
    protection_act a = { 0 };
    if (linked(p))
        lose(p, &a, why);
    return a;
}

protection_act protection_stalled(protection *p, uint64_t stall_ns)
{
    protection_act a = { 0 };
    if (!p->o.witness || !linked(p) || stall_ns < p->o.failure_ns / 2)
        return a;
    char why[600];
    snprintf(why, sizeof(why), "secondary %s: this process did not run for "
             "%.0f ms (failure timeout %.0f ms): the secondary may have taken "
             "over meanwhile, so its answers are no longer trusted", p->addr,
             stall_ns / 1e6, p->o.failure_ns / 1e6);
    lose(p, &a, why);
    return a;
}

static void finish(protection *p, protection_act *a)
{
    a->finished = p->ending && !linked(p) && !p->draining;
}

protection_act protection_drained(protection *p)
{
    protection_act a = { 0 };
    p->draining = false;
    /* A reconnect that came while it drained waited for this. */
    a.reconnect = protection_may_reconnect(p) && protection_retries(p);
    if (p->release_on_drain && !linked(p)) {
        p->release_on_drain = false;
        release_all(p, &a);
    }
    finish(p, &a);
    return a;
}

protection_act protection_claimed(protection *p, claim_state outcome,
                                  const char *owner, const char *err)
{
    protection_act a = { 0 };
    if (p->state != PROTECTION_CLAIMING)
        return a;
    switch (outcome) {
    case CLAIM_WON:
        say(p, &a, "the witness kept the VM here (generation %" PRIu64
            "); running unprotected (degraded)", p->pair.generation);
        p->state = PROTECTION_DEGRADED;
        if (p->paused) {
            p->paused = false;
            a.resume = true;
        }
        if (!p->ending)
            release_all(p, &a);
        a.reconnect = protection_retries(p);
        break;
    case CLAIM_LOST:
        say(p, &a, "the secondary took the VM over (owner: %s); this copy "
            "stops without releasing the output it holds (fenced)",
            owner ? owner : "?");
        p->state = PROTECTION_FENCED;
        p->paused = false;
        a.fenced = !p->ending;
        finish(p, &a);
        break;
    case CLAIM_UNKNOWN:
        if (p->paused)
            break;
        say(p, &a, "fenced: cannot reach the witness (%s): the VM is "
            "paused and its output held until the witness answers",
            err ? err : "no answer");
        p->paused = !p->ending;
        a.pause = p->paused;
        break;
    case CLAIM_IDLE:
    case CLAIM_CLAIMING:
        break;
    }
    return a;
}

/* ---- checkpoints ---- */

protection_plan protection_next(protection *p)
{
    protection_plan pl = { 0 };
    if (!linked(p) || !p->ready || p->ending)
        return pl;
    if (p->nwin == PROTECTION_WINDOW) {
        p->due = true;
        return pl;
    }
    p->due = false;
    pl.take = true;
    pl.id = p->next_id;
    pl.full = p->need_full;
    pl.base = pl.full ? 0 : pl.id - 1;
    return pl;
}

void protection_started(protection *p, uint64_t now)
{
    p->last_start_ns = now;
}

void protection_hold(protection *p)
{
    p->holding = true;
}

protection_act protection_build_failed(protection *p,
                                       const protection_plan *pl,
                                       const char *why)
{
    protection_act a = { 0 };
    /*
     * The dirty bits it cleared are gone: only a full one is safe.  A
     * full one that failed would fail again, pausing the guest for a
     * copy of all its RAM every interval: give up instead.
     */
    if (pl->full) {
        if (linked(p))
            give_up(p, &a, why);
        return a;
    }
    say(p, &a, "%s; sending the next checkpoint in full", why);
    p->need_full = true;
    a.rearm = true;
    return a;
}

protection_act protection_taken(protection *p, const protection_plan *pl)
{
    protection_act a = { 0 };
    p->taken++;
    if (pl->full) {
        p->full++;
        p->need_full = false;
        p->last_full_id = pl->id;
    }
    p->win[p->nwin++] = (protection_flight){ .id = pl->id };
    p->next_id = pl->id + 1;
    for (protection_waiter *w = p->waiters; w; w = w->next)
        if (!w->id)
            w->id = pl->id;
    a.rearm = true;
    return a;
}

void protection_sent(protection *p, uint64_t id, uint64_t sent_ns)
{
    if (sent_ns && linked(p))
        p->written = true;
    for (size_t i = 0; i < p->nwin; i++)
        if (p->win[i].id == id)
            p->win[i].sent_ns = sent_ns;
}

void protection_writing(protection *p, uint64_t sending)
{
    if (sending && linked(p))
        p->written = true;
}

/*
 * The next checkpoint is due one interval after the last one started, not
 * after it ended: otherwise every checkpoint's own duration (and the
 * timer's rounding) would stretch the interval.
 */
uint64_t protection_delay(const protection *p, uint64_t now)
{
    uint64_t due = p->last_start_ns + p->o.interval_ns;
    return due > now ? due - now : 0;
}

/* ---- the return path ---- */

/*
 * Whether an answer for checkpoint k (0: a NACK of a package too damaged
 * to name itself) may be one: of this pairing, and for a package whose
 * write began.  Otherwise the link ends, as for garbage.
 */
static bool answer_ok(protection *p, protection_act *a, const char *what,
                      uint64_t k, const pairing *pair, uint64_t sending)
{
    char why[700];
    if (!pairing_equal(pair, &p->pair)) {
        char got[96], want[96];
        p->foreign_answers++;
        snprintf(why, sizeof(why), "secondary %s: protocol error: %s of "
                 "checkpoint %" PRIu64 " for pairing %s, not %s", p->addr,
                 what, k, pairing_str(pair, got, sizeof(got)),
                 pairing_str(&p->pair, want, sizeof(want)));
    } else if (k > sending) {
        snprintf(why, sizeof(why), "secondary %s: protocol error: %s of "
                 "checkpoint %" PRIu64 ", which was not sent (the last "
                 "sent is %" PRIu64 ")", p->addr, what, k, sending);
    } else {
        return true;
    }
    give_up(p, a, why);
    return false;
}

protection_act protection_ack(protection *p, uint64_t k, const pairing *pair,
                              uint64_t sending, uint64_t now)
{
    protection_act a = { 0 };
    if (!linked(p))
        return a;
    if (!answer_ok(p, &a, "ACK", k, pair, sending))
        return a;
    size_t i = 0;
    while (i < p->nwin && p->win[i].id != k)
        i++;
    if (i == p->nwin) {
        char why[600];
        snprintf(why, sizeof(why), "secondary %s acknowledged checkpoint "
                 "%" PRIu64 ", which is not in flight", p->addr, k);
        give_up(p, &a, why);
        return a;
    }
    if (p->win[i].sent_ns) {
        a.have_ack_ns = true;
        a.ack_ns = now - p->win[i].sent_ns;
    }
    /* Acknowledging k acknowledges everything before it. */
    p->nwin -= i + 1;
    memmove(p->win, p->win + i + 1, p->nwin * sizeof(p->win[0]));
    p->acked_id = k;
    p->acked++;
    p->full_refusals = 0;
    a.release_upto = k;
    if (p->state == PROTECTION_SETUP) {
        p->state = PROTECTION_ACTIVE;
        p->must_protect = false;
        a.protected_now = true;
    }
    answer(&a, k, 0, "");
    a.take = p->due;
    return a;
}

protection_act protection_nack(protection *p, uint64_t k,
                               const pairing *pair, uint64_t sending,
                               const char *text)
{
    protection_act a = { 0 };
    if (!linked(p))
        return a;
    if (!answer_ok(p, &a, "NACK", k, pair, sending))
        return a;
    p->nacks++;
    /* Too damaged to name itself (NACK 0): packages go in order. */
    if (k == 0 && p->nwin)
        k = p->win[0].id;
    size_t i = 0;
    while (i < p->nwin && p->win[i].id <= k)
        i++;
    p->nwin -= i;
    memmove(p->win, p->win + i, p->nwin * sizeof(p->win[0]));
    snprintf(a.why, sizeof(a.why), "secondary %s refused checkpoint %" PRIu64
             ": %s", p->addr, k, text);
    answer(&a, k, -EBADMSG, a.why);
    /* Refusals of packages that built on it are expected: ignore them. */
    if (p->last_full_id > k)
        return a;
    /* A full package refused twice in a row will be refused again. */
    if (p->last_full_id == k && ++p->full_refusals >= 2) {
        give_up(p, &a, a.why);
        return a;
    }
    say(p, &a, "%s; sending the next checkpoint in full", a.why);
    p->need_full = true;
    a.take = true;
    return a;
}

protection_act protection_shut(protection *p, uint32_t code)
{
    protection_act a = { 0 };
    if (!linked(p))
        return a;
    if (code != 0) {
        char why[600];
        snprintf(why, sizeof(why), "secondary %s ended replication "
                 "with error %" PRIu32, p->addr, code);
        lose(p, &a, why);
        return a;
    }
    if (setup_fails(p)) {
        char why[600];
        snprintf(why, sizeof(why), "secondary %s ended replication",
                 p->addr);
        fail_setup(p, &a, PROTECTION_DROP, why);
        return a;
    }
    say(p, &a, "secondary %s ended replication; running unprotected "
        "(stopped)", p->addr);
    end_link(p, &a, PROTECTION_DROP, a.msg);
    p->state = PROTECTION_STOPPED;
    release_all(p, &a);
    return a;
}

protection_act protection_refused(protection *p, uint64_t decided,
                                  const pairing *pair, const char *text)
{
    protection_act a = { 0 };
    (void)decided;              /* the text names it */
    if (!linked(p) || !answer_ok(p, &a, "REFUSE", 0, pair, 0))
        return a;
    char why[1200], ps[96];
    snprintf(why, sizeof(why), "secondary %s refused this primary "
             "(pairing %s): %s", p->addr,
             pairing_str(&p->pair, ps, sizeof(ps)), text);
    lose(p, &a, why);
    return a;
}

/* ---- liveness ---- */

uint64_t protection_tick_period(const protection *p)
{
    uint64_t period = p->o.heartbeat_ns < p->o.failure_ns
                          ? p->o.heartbeat_ns : p->o.failure_ns;
    return period / 4 ? period / 4 : 1000000;
}

protection_act protection_tick(protection *p, uint64_t now,
                               const channel_times *t)
{
    protection_act a = { 0 };
    protection_writing(p, t->sending);
    if (!linked(p) || !t->last_recv_ns)
        return a;   /* still connecting: that has its own timeout */
    /*
     * After a long stretch without the loop (a full package's pause, a
     * slow stdout) the peer's messages may be waiting unread: let them
     * be read before judging it.
     */
    uint64_t gap = now - p->last_tick_ns;
    p->last_tick_ns = now;
    if (gap > p->o.failure_ns / 2)
        return a;
    char why[400];
    if (now - t->last_recv_ns >= p->o.failure_ns) {
        snprintf(why, sizeof(why), "secondary %s: nothing heard for %.0f ms "
                 "(failure timeout %.0f ms)", p->addr,
                 (now - t->last_recv_ns) / 1e6, p->o.failure_ns / 1e6);
        lose(p, &a, why);
        return a;
    }
    if (t->busy && now - t->progress_ns >= p->o.stall_ns) {
        snprintf(why, sizeof(why), "secondary %s: a write has made no "
                 "progress for %.1f s (stalled)", p->addr,
                 (now - t->progress_ns) / 1e9);
        lose(p, &a, why);
        return a;
    }
    if (p->nwin && p->win[0].sent_ns &&
        now - p->win[0].sent_ns >= p->o.stall_ns) {
        snprintf(why, sizeof(why), "secondary %s: checkpoint %" PRIu64
                 " unacknowledged %.1f s after it was sent (stalled)",
                 p->addr, p->win[0].id, (now - p->win[0].sent_ns) / 1e9);
        lose(p, &a, why);
        return a;
    }
    return a;
}

/* ---- requests ---- */

int protection_wait(protection *p, protection_done_fn fn, void *opaque,
                    protection_act *a, char *err, size_t errlen)
{
    *a = (protection_act){ 0 };
    if (!linked(p) || p->ending) {
        snprintf(err, errlen,
                 "not replicating (%s): no secondary to "
                 "checkpoint to",
                 protection_state_name(p->state));
        return -ENOTCONN;
    }
    protection_waiter *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    *w = (protection_waiter){ .next = p->waiters, .fn = fn,
                              .opaque = opaque };
    p->waiters = w;
    a->take = true;
    return 0;
}

void protection_answer(protection *p, uint64_t upto, int rc, const char *msg)
{
    protection_waiter **w = &p->waiters;
    while (*w) {
        protection_waiter *x = *w;
        bool hit = rc == 0 ? x->id && x->id <= upto
                           : upto == UINT64_MAX || x->id == upto;
        if (!hit) {
            w = &x->next;
            continue;
        }
        *w = x->next;
        x->fn(x->opaque, rc, x->id, rc == 0 ? NULL : msg);
        free(x);
    }
}

int protection_stop(protection *p, protection_act *a, char *err,
                    size_t errlen)
{
    *a = (protection_act){ 0 };
    if (!linked(p)) {
        snprintf(err, errlen, "replication is not running (%s)",
                 protection_state_name(p->state));
        return -ENOTCONN;
    }
    say(p, a, "replication to %s stopped on request; running unprotected "
        "(stopped)", p->addr);
    p->must_protect = false;
    /* Held output leaves once EOF has: until then a failover could. */
    p->release_on_drain = p->holding;
    end_link_for(p, a, p->ready ? PROTECTION_FINISH : PROTECTION_DROP,
                 DROPNOTICE_STOPPED, "replication stopped on request");
    p->state = PROTECTION_STOPPED;
    if (!p->holding)
        release_all(p, a);
    return 0;
}

int protection_may_attach(const protection *p, char *err, size_t errlen)
{
    if (p->ending || p->state == PROTECTION_SETUP_FAILED ||
        p->state == PROTECTION_FENCED) {
        snprintf(err, errlen, p->ending ? "the VM has stopped"
                 : p->state == PROTECTION_SETUP_FAILED
                 ? "the VM is stopping: its first secondary never "
                   "protected it (setup failed)"
                 : "the VM is stopping: the witness gave it to the "
                   "secondary (fenced)");
        return -ESHUTDOWN;
    }
    if (p->state == PROTECTION_CLAIMING) {
        snprintf(err, errlen, "the witness has not yet said who keeps the "
                 "VM (claiming): no new secondary until it has");
        return -EBUSY;
    }
    if (p->draining && !linked(p)) {
        /*
         * Freeing that link now could cut its drop notice off: the
         * secondary, alive, would take it for a lost primary, claim the
         * old generation (nobody else does) and go live beside this VM.
         */
        snprintf(err, errlen, "the last secondary (%s) is still being told "
                 "it is dropped (its drop notice and EOF); try again in a "
                 "moment", p->addr);
        return -EBUSY;
    }
    if (linked(p)) {
        snprintf(err, errlen,
                 "already replicating to %s (%s); "
                 "stop-replication first",
                 p->addr, protection_state_name(p->state));
        return -EISCONN;
    }
    return 0;
}

int protection_may_save(const protection *p, char *err, size_t errlen)
{
    if (!linked(p))
        return 0;
    snprintf(err, errlen,
             "replication is %s: a checkpoint to disk would "
             "reset the dirty tracking it depends on; stop-replication "
             "first (saving is allowed degraded or stopped)",
             protection_state_name(p->state));
    return -EBUSY;
}

protection_act protection_vm_stopped(protection *p, bool takeover)
{
    protection_act a = { 0 };
    p->ending = true;
    if (takeover) {
        /* Held output belongs to state the secondary will redo. */
        a.end = PROTECTION_DISCARD;
        p->draining = false;
        answer(&a, UINT64_MAX, -ECONNABORTED, "the VM failed");
        p->state = PROTECTION_DEGRADED;
    } else if (linked(p)) {
        p->release_on_drain = true;
        end_link_for(p, &a, p->ready ? PROTECTION_FINISH : PROTECTION_DROP,
                     DROPNOTICE_VM_STOPPED, "the VM has stopped");
        p->state = PROTECTION_STOPPED;
    } else if (!p->draining && p->state != PROTECTION_SETUP_FAILED &&
               p->state != PROTECTION_CLAIMING &&
               p->state != PROTECTION_FENCED) {
        /*
         * Claiming or fenced, held output may belong to the secondary;
         * setup failed, it was never safe.
         */
        release_all(p, &a);
    }
    finish(p, &a);
    return a;
}
