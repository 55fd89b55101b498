/*
 * Unit tests for primary/protection: the primary's replication decisions,
 * event by event, with times the test makes up.  Bring-up to active, the
 * window, ACK/NACK/SHUT and their refusals, silence and stalls at and
 * just before their deadlines, stop, attach, save, the VM's end, waiters,
 * and (with a real primary/outqueue) which output an ACK releases.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "primary/outqueue.h"
#include "devstate/dropnotice.h"
#include "primary/protection.h"

#define MS 1000000ull
#define S (1000 * MS)
#define INTERVAL (50 * MS)
#define HEARTBEAT (50 * MS)
#define FAILURE (300 * MS)
#define STALL (10 * S)
#define ADDR "test-secondary:1"

/* The pairing drawn for the secondary of these tests. */
static const pairing test_pair = {
    .id = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 },
    .name = "vm-1",
    .generation = 1,
};

/*
 * An answer of this pairing, every package taken so far being sent (the
 * link began writing it), as an honest secondary's would be.
 */
static protection_act ack(protection *p, uint64_t k, uint64_t now)
{
    return protection_ack(p, k, &test_pair, p->next_id - 1, now);
}

static protection_act nack(protection *p, uint64_t k, const char *text)
{
    return protection_nack(p, k, &test_pair, p->next_id - 1, text);
}

static void init(protection *p, uint64_t reconnect_ns)
{
    protection_init(p, &(protection_opts){ .interval_ns = INTERVAL,
                                           .heartbeat_ns = HEARTBEAT,
                                           .failure_ns = FAILURE,
                                           .stall_ns = STALL,
                                           .reconnect_ns = reconnect_ns },
                    ADDR);
}

static bool act_is_empty(const protection_act *a)
{
    return !a->say && a->end == PROTECTION_KEEP && !a->release_upto &&
           !a->release_all && !a->protected_now && !a->have_ack_ns &&
           !a->nanswers && !a->reconnect && !a->rearm && !a->take &&
           !a->finished && !a->setup_failed;
}

/* Takes the checkpoint protection plans; asserts there is one. */
static protection_plan take(protection *p, uint64_t now)
{
    protection_plan pl = protection_next(p);
    assert_true(pl.take);
    protection_started(p, now);
    protection_hold(p);
    protection_act a = protection_taken(p, &pl);
    assert_true(a.rearm);
    return pl;
}

/* A secondary brought up (its bring-up written), nothing taken yet. */
static void bring_up(protection *p)
{
    protection_act a = protection_begin(p, ADDR, &test_pair);
    assert_int_equal(p->state, PROTECTION_SETUP);
    a = protection_ready(p);
    assert_true(a.take);
}

/*
 * A fresh protection reconnecting every 2 s, and a secondary brought up:
 * losing it before its first ACK degrades.  (Without reconnecting, the
 * first secondary's loss before then fails the setup: test_setup_failed.)
 */
static void linked(protection *p)
{
    init(p, 2 * S);
    bring_up(p);
}

/* Brought up and active: checkpoint 1 taken and acknowledged. */
static void active(protection *p)
{
    bring_up(p);
    take(p, 0);
    protection_act a = ack(p, 1, 0);
    assert_true(a.protected_now);
    assert_int_equal(p->state, PROTECTION_ACTIVE);
}

/*
 * The checks every end of a link makes: in state (degraded, or setup
 * failed), ended as end says, said
 * (what, then the consequence), kept as the last error, every waiter's checkpoint
 * lost with it, nothing taken.
 */
static void assert_ended(protection *p, const protection_act *a,
                         protection_state state, protection_end end,
                         const char *what, const char *then)
{
    assert_int_equal(p->state, state);
    assert_int_equal(a->end, end);
    assert_false(p->ready);
    assert_int_equal(p->nwin, 0);
    assert_true(a->say);
    assert_non_null(strstr(a->msg, what));
    assert_non_null(strstr(a->msg, then));
    assert_non_null(strstr(p->last_error, what));
    assert_true(a->nanswers >= 1);
    assert_int_equal(a->answers[a->nanswers - 1].upto, UINT64_MAX);
    assert_int_equal(a->answers[a->nanswers - 1].rc, -ECONNABORTED);
    assert_false(a->take);
}

/* The checks a loss always makes. */
static void assert_lost(protection *p, const protection_act *a,
                        const char *what)
{
    assert_ended(p, a, PROTECTION_DEGRADED, PROTECTION_DROP, what,
                 "; running unprotected (degraded)");
    assert_true(a->release_all);
    assert_false(p->holding);
    assert_false(a->setup_failed);
    assert_int_not_equal(p->state, PROTECTION_SETUP_FAILED);
}

/*
 * The checks of giving up on a secondary that is alive (it answers what
 * it cannot, or refuses everything): replication ends with EOF, not a
 * drop, so that it stops rather than fail over; held output leaves once
 * the EOF has (protection_drained).
 */
static void assert_given_up(protection *p, const protection_act *a,
                            const char *what)
{
    assert_ended(p, a, PROTECTION_DEGRADED, PROTECTION_FINISH, what,
                 "; ending replication (EOF) "
                 "and running unprotected (degraded)");
    assert_int_equal(a->release_upto, 0);
    bool held = p->holding;
    assert_true(a->release_all == !held);
    assert_true(p->release_on_drain == held);
    protection_act d = protection_drained(p);
    assert_true(d.release_all == held);
    assert_false(p->holding);
}

/*
 * Answers no honest secondary gives (finding 4 of issue 8): for a
 * checkpoint taken but whose write has not begun, or of another pairing.
 * Each ends the link as a protocol error and releases nothing by
 * checkpoint (what degraded mode releases, it releases as unprotected).
 */
static void test_forged_answers(void **unused)
{
    (void)unused;
    protection p;
    protection_act a;
    pairing other = test_pair;
    other.id[7] ^= 0x80;
    pairing renamed = test_pair;
    renamed.name[0] = 'w';
    pairing older = test_pair;
    older.generation = 0;
    pairing newer = test_pair;
    newer.generation = 2;

    /* Checkpoint 2 is in the window, but the link has not begun it. */
    init(&p, 0);
    active(&p);
    take(&p, 0);
    a = protection_ack(&p, 2, &test_pair, 1, 0);
    assert_given_up(&p, &a, "secondary " ADDR ": protocol error: ACK of "
                "checkpoint 2, which was not sent (the last sent is 1)");
    assert_int_equal(a.release_upto, 0);
    assert_int_equal(p.acked_id, 1);
    assert_false(a.protected_now);

    /* The same for a NACK: no full resend is planned. */
    init(&p, 0);
    active(&p);
    take(&p, 0);
    a = protection_nack(&p, 2, &test_pair, 1, "checksum mismatch");
    assert_given_up(&p, &a, "protocol error: NACK of checkpoint 2, which was "
                "not sent");
    assert_false(p.need_full);

    /* Sent, but answered for another pairing: ACK, then NACK. */
    const pairing *forged[] = { &other, &renamed, &older, &newer };
    const char *says[] = { ", not vm-1/01020304/g1",
                           "for pairing wm-1/01020304/g1, not vm-1/01020304/g1",
                           "for pairing vm-1/01020304/g0, not vm-1/01020304/g1",
                           "for pairing vm-1/01020304/g2, not vm-1/01020304/g1" };
    for (int i = 0; i < 4; i++) {
        init(&p, 0);
        active(&p);
        take(&p, 0);
        a = protection_ack(&p, 2, forged[i], 2, 0);
        assert_given_up(&p, &a, "protocol error: ACK of checkpoint 2 for "
                    "pairing ");
        assert_non_null(strstr(a.msg, says[i]));
        assert_int_equal(a.release_upto, 0);
        assert_int_equal(p.acked_id, 1);

        init(&p, 0);
        active(&p);
        take(&p, 0);
        a = protection_nack(&p, 2, forged[i], 2, "refused");
        assert_given_up(&p, &a, "protocol error: NACK of checkpoint 2 for "
                    "pairing ");
    }

    /* A NACK 0 (a package too damaged to name itself) stays honest. */
    init(&p, 0);
    active(&p);
    take(&p, 0);
    a = protection_nack(&p, 0, &test_pair, 2, "no header");
    assert_int_equal(p.state, PROTECTION_ACTIVE);
    assert_true(p.need_full);

    /* A new secondary has a new pairing: the old one's is refused. */
    pairing second = test_pair;
    second.id[0] = 0x77;
    init(&p, 2 * S);
    protection_begin(&p, ADDR, &second);
    protection_ready(&p);
    take(&p, 0);
    a = protection_ack(&p, 1, &test_pair, 1, 0);
    assert_given_up(&p, &a, "for pairing vm-1/01020304/g1, not "
                "vm-1/77020304/g1");
    assert_int_equal(a.release_upto, 0);
}

/* ---- waiters ---- */

typedef struct answered {
    int calls;
    int rc;
    uint64_t id;
    char err[1500];
} answered;

static void on_done(void *opaque, int rc, uint64_t id, const char *err)
{
    answered *w = opaque;
    w->calls++;
    w->rc = rc;
    w->id = id;
    snprintf(w->err, sizeof(w->err), "%s", err ? err : "");
}

static void run_answers(protection *p, const protection_act *a)
{
    for (size_t i = 0; i < a->nanswers; i++)
        protection_answer(p, a->answers[i].upto, a->answers[i].rc, a->why);
}

/* ---- the tests ---- */

/*
 * Every link ended on purpose while the secondary may be alive (FINISH)
 * carries a drop notice's reason; a dropped connection (DROP), or the
 * monitor's failure (DISCARD), none.  An answer of another generation
 * ends the link as a protocol error and is counted; a REFUSE ends it as
 * a loss, its reason said.
 */
static void test_drop_reasons(void **unused)
{
    (void)unused;
    protection p;
    protection_act a;
    char err[256];

    init(&p, 0);
    active(&p);
    a = protection_vm_stopped(&p, false);
    assert_int_equal(a.end, PROTECTION_FINISH);
    assert_int_equal(a.drop_reason, DROPNOTICE_VM_STOPPED);
    assert_string_equal(a.why, "the VM has stopped");

    init(&p, 0);
    active(&p);
    a = protection_vm_stopped(&p, true);
    assert_int_equal(a.end, PROTECTION_DISCARD);
    assert_int_equal(a.drop_reason, 0);

    /* Not yet written: cut at once, nothing to tell. */
    init(&p, 2 * S);
    protection_begin(&p, ADDR, &test_pair);
    assert_int_equal(protection_stop(&p, &a, err, sizeof(err)), 0);
    assert_int_equal(a.end, PROTECTION_DROP);
    assert_int_equal(a.drop_reason, 0);

    /* An ACK of generation 2 on a link of generation 1. */
    pairing newer = test_pair;
    newer.generation = 2;
    init(&p, 2 * S);
    active(&p);
    take(&p, 0);
    a = protection_ack(&p, 2, &newer, 2, 0);
    assert_int_equal(a.end, PROTECTION_FINISH);
    assert_int_equal(a.drop_reason, DROPNOTICE_GAVE_UP);
    assert_int_equal(a.release_upto, 0);
    assert_int_equal(p.foreign_answers, 1);
    assert_int_equal(p.state, PROTECTION_DEGRADED);
    assert_non_null(strstr(a.msg, "protocol error: ACK of checkpoint 2 for "
                                  "pairing vm-1/01020304/g2"));

    /* A secondary that refuses the pairing: lost, its reason said. */
    init(&p, 2 * S);
    bring_up(&p);
    a = protection_refused(&p, 5, &test_pair, "primary of generation 1 is "
                           "older than generation 5 decided by the witness");
    assert_int_equal(p.state, PROTECTION_DEGRADED);
    assert_int_equal(a.end, PROTECTION_DROP);
    assert_non_null(strstr(a.msg, "secondary " ADDR " refused this primary "
                                  "(pairing vm-1/01020304/g1): primary of "
                                  "generation 1 is older than generation 5"));
    /* ... of another pairing: a protocol error, counted. */
    init(&p, 2 * S);
    active(&p);
    a = protection_refused(&p, 5, &newer, "x");
    assert_int_equal(p.foreign_answers, 1);
    assert_int_equal(a.drop_reason, DROPNOTICE_GAVE_UP);
    /* With a witness, once a package went, the loss is claimed. */
    protection_init(&p, &(protection_opts){ .witness = true }, ADDR);
    active(&p);
    protection_sent(&p, 1, 1);
    a = protection_refused(&p, 5, &test_pair, "stale");
    assert_true(a.claim);
    assert_int_equal(p.state, PROTECTION_CLAIMING);
}

static void test_init(void **unused)
{
    (void)unused;
    protection p;
    protection_init(&p, &(protection_opts){ 0 }, ADDR);
    assert_int_equal(p.state, PROTECTION_DEGRADED);
    assert_int_equal(p.o.interval_ns, 50 * MS);
    assert_int_equal(p.o.heartbeat_ns, 50 * MS);
    assert_int_equal(p.o.failure_ns, 300 * MS);
    assert_int_equal(p.o.stall_ns, 10 * S);
    assert_int_equal(p.o.reconnect_ns, 0);
    assert_string_equal(p.addr, ADDR);
    assert_false(protection_retries(&p));
    assert_true(protection_may_reconnect(&p));
    /* No --reconnect: the first secondary must protect the VM. */
    assert_true(p.must_protect);
    assert_int_not_equal(p.state, PROTECTION_SETUP_FAILED);
    init(&p, 2 * S);
    assert_false(p.must_protect);
    /* Degraded from the start: no checkpoint before a bring-up. */
    assert_false(protection_next(&p).take);
    assert_string_equal(protection_state_name(PROTECTION_SETUP), "setup");
    assert_string_equal(protection_state_name(PROTECTION_ACTIVE), "active");
    assert_string_equal(protection_state_name(PROTECTION_DEGRADED),
                        "degraded");
    assert_string_equal(protection_state_name(PROTECTION_STOPPED),
                        "stopped");
    assert_string_equal(protection_state_name((protection_state)99), "?");
}

/* Bring-up: nothing until the bring-up is written, then 1, 2, ... */
static void test_bringup_to_active(void **unused)
{
    (void)unused;
    protection p;
    init(&p, 0);
    protection_act a = protection_begin(&p, "elsewhere:2", &test_pair);
    assert_true(act_is_empty(&a));
    assert_string_equal(p.addr, "elsewhere:2");
    assert_int_equal(p.state, PROTECTION_SETUP);
    assert_int_equal(p.secondaries, 1);
    assert_false(protection_next(&p).take);     /* not ready */

    a = protection_ready(&p);
    assert_true(a.take);
    protection_plan pl = take(&p, 0);
    assert_int_equal(pl.id, 1);
    assert_false(pl.full);
    assert_int_equal(pl.base, 0);
    assert_true(p.holding);
    pl = take(&p, 0);
    assert_int_equal(pl.id, 2);
    assert_int_equal(pl.base, 1);
    assert_int_equal(p.nwin, 2);
    assert_int_equal(p.taken, 2);

    /* The first ACK: active, and held output up to it released. */
    protection_sent(&p, 1, 100);
    a = ack(&p, 1, 130);
    assert_int_equal(p.state, PROTECTION_ACTIVE);
    assert_true(a.protected_now);
    assert_int_equal(a.release_upto, 1);
    assert_true(a.have_ack_ns);
    assert_int_equal(a.ack_ns, 30);
    assert_int_equal(p.acked_id, 1);
    assert_int_equal(p.acked, 1);
    assert_int_equal(p.nwin, 1);
    assert_false(a.take);
    assert_false(a.say);
    /* The next is not news; one never sent has no latency. */
    a = ack(&p, 2, 200);
    assert_false(a.protected_now);
    assert_false(a.have_ack_ns);
    assert_int_equal(a.release_upto, 2);
    assert_int_equal(p.nwin, 0);
}

/* A ready message for a link no longer current changes nothing. */
static void test_ready_when_not_linked(void **unused)
{
    (void)unused;
    protection p;
    init(&p, 0);
    protection_act a = protection_ready(&p);
    assert_true(act_is_empty(&a));
    assert_false(p.ready);
}

/* At most PROTECTION_WINDOW in flight; an ACK makes room for the due one. */
static void test_window(void **unused)
{
    (void)unused;
    protection p;
    linked(&p);
    for (uint64_t k = 1; k <= PROTECTION_WINDOW; k++)
        assert_int_equal(take(&p, 0).id, k);
    assert_int_equal(p.nwin, PROTECTION_WINDOW);
    assert_false(p.due);
    protection_plan pl = protection_next(&p);
    assert_false(pl.take);
    assert_true(p.due);

    /* ACK 2 acknowledges 1 too; the due checkpoint goes now. */
    protection_act a = ack(&p, 2, 0);
    assert_int_equal(a.release_upto, 2);
    assert_int_equal(p.nwin, PROTECTION_WINDOW - 2);
    assert_int_equal(p.win[0].id, 3);
    assert_true(a.take);
    pl = take(&p, 0);
    assert_int_equal(pl.id, PROTECTION_WINDOW + 1);
    assert_int_equal(pl.base, PROTECTION_WINDOW);
    assert_false(p.due);
    /* One below full: one more fits, then none. */
    assert_int_equal(p.nwin, PROTECTION_WINDOW - 1);
    take(&p, 0);
    assert_false(protection_next(&p).take);
    /* Without a due one an ACK takes nothing by itself. */
    linked(&p);
    take(&p, 0);
    a = ack(&p, 1, 0);
    assert_false(a.take);
}

/* ACKs for what is not in flight are a broken secondary: given up on. */
static void test_ack_refusals(void **unused)
{
    (void)unused;
    protection p;
    protection_act a;
    const char *not_in_flight = "which is not in flight";

    /* Never even taken. */
    linked(&p);
    take(&p, 0);
    a = ack(&p, 2, 0);
    assert_given_up(&p, &a, "secondary " ADDR ": protocol error: ACK of "
                "checkpoint 2, which was not sent (the last sent is 1)");
    assert_int_equal(a.release_upto, 0);
    assert_int_equal(p.acked, 0);

    /* The same one twice. */
    init(&p, 0);
    active(&p);
    a = ack(&p, 1, 0);
    assert_given_up(&p, &a, not_in_flight);

    /* An older one after a newer. */
    linked(&p);
    take(&p, 0);
    take(&p, 0);
    ack(&p, 2, 0);
    a = ack(&p, 1, 0);
    assert_given_up(&p, &a, "acknowledged checkpoint 1,");

    /* 0, which no package has. */
    linked(&p);
    take(&p, 0);
    a = ack(&p, 0, 0);
    assert_given_up(&p, &a, "acknowledged checkpoint 0,");

    /* Degraded: an ACK is no longer anyone's; nothing changes. */
    uint64_t acked = p.acked;
    a = ack(&p, 1, 0);
    assert_true(act_is_empty(&a));
    assert_int_equal(p.acked, acked);
    assert_int_equal(p.state, PROTECTION_DEGRADED);
}

/* A NACK: the next package goes in full; those built on the refused
 * one are expected to be refused too. */
static void test_nack_then_full(void **unused)
{
    (void)unused;
    protection p;
    linked(&p);
    take(&p, 0);
    take(&p, 0);
    take(&p, 0);
    protection_act a = nack(&p, 2, "checksum mismatch");
    assert_int_equal(p.nacks, 1);
    assert_true(a.say);
    assert_string_equal(a.msg, "secondary " ADDR " refused checkpoint 2: "
                        "checksum mismatch; sending the next checkpoint in "
                        "full");
    assert_string_equal(p.last_error, a.msg);
    assert_string_equal(a.why, "secondary " ADDR " refused checkpoint 2: "
                        "checksum mismatch");
    assert_int_equal(a.nanswers, 1);
    assert_int_equal(a.answers[0].upto, 2);
    assert_int_equal(a.answers[0].rc, -EBADMSG);
    assert_true(a.take);
    assert_int_equal(a.end, PROTECTION_KEEP);
    assert_int_equal(a.release_upto, 0);
    assert_false(a.release_all);
    assert_int_equal(p.state, PROTECTION_SETUP);
    /* 1 and 2 are out of the window; 3 stays. */
    assert_int_equal(p.nwin, 1);
    assert_int_equal(p.win[0].id, 3);

    protection_plan pl = take(&p, 0);
    assert_int_equal(pl.id, 4);
    assert_true(pl.full);
    assert_int_equal(pl.base, 0);
    assert_false(p.need_full);
    assert_int_equal(p.last_full_id, 4);
    assert_int_equal(p.full, 1);
    /* The next builds on the full one again. */
    pl = take(&p, 0);
    assert_false(pl.full);
    assert_int_equal(pl.base, 4);

    /* 3 built on 2: its refusal is expected; nothing more to do. */
    a = nack(&p, 3, "no base");
    assert_false(a.say);
    assert_false(a.take);
    assert_false(p.need_full);
    assert_int_equal(a.nanswers, 1);
    assert_int_equal(a.answers[0].upto, 3);
    assert_int_equal(p.nacks, 2);
    assert_int_equal(p.win[0].id, 4);
    a = ack(&p, 4, 0);
    assert_int_equal(a.release_upto, 4);
}

/* A full package refused twice in a row is given up on. */
static void test_full_refused_twice(void **unused)
{
    (void)unused;
    protection p;
    linked(&p);
    take(&p, 0);
    nack(&p, 1, "bad");
    assert_int_equal(take(&p, 0).id, 2);        /* full */
    protection_act a = nack(&p, 2, "bad");
    assert_int_equal(p.full_refusals, 1);
    assert_int_equal(p.state, PROTECTION_SETUP);
    assert_true(a.take);
    assert_true(take(&p, 0).full);              /* 3, full */
    a = nack(&p, 3, "still bad");
    assert_int_equal(p.full_refusals, 2);
    assert_given_up(&p, &a, "secondary " ADDR " refused checkpoint 3: "
                "still bad");
    /* The refused one's waiter hears the refusal, the rest the loss. */
    assert_int_equal(a.nanswers, 2);
    assert_int_equal(a.answers[0].upto, 3);
    assert_int_equal(a.answers[0].rc, -EBADMSG);

    /* An ACK in between starts the count again. */
    linked(&p);
    take(&p, 0);
    nack(&p, 1, "bad");
    take(&p, 0);                                /* 2, full */
    nack(&p, 2, "bad");
    take(&p, 0);                                /* 3, full */
    ack(&p, 3, 0);
    assert_int_equal(p.full_refusals, 0);
    take(&p, 0);                                /* 4 */
    nack(&p, 4, "bad");
    take(&p, 0);                                /* 5, full */
    a = nack(&p, 5, "bad");
    assert_int_equal(p.full_refusals, 1);
    assert_int_equal(p.state, PROTECTION_ACTIVE);
}

/* NACK 0: too damaged to name itself, so the oldest in flight. */
static void test_nack_zero(void **unused)
{
    (void)unused;
    protection p;
    linked(&p);
    take(&p, 0);
    take(&p, 0);
    protection_act a = nack(&p, 0, "unreadable");
    assert_string_equal(a.why, "secondary " ADDR " refused checkpoint 1: "
                        "unreadable");
    assert_int_equal(a.answers[0].upto, 1);
    assert_int_equal(p.nwin, 1);
    assert_int_equal(p.win[0].id, 2);
    assert_true(p.need_full);
}

/* Degraded or stopped, a NACK or SHUT is no one's: nothing happens. */
static void test_return_path_when_not_linked(void **unused)
{
    (void)unused;
    protection p;
    linked(&p);
    take(&p, 0);
    protection_lose(&p, "gone");
    protection_act a = nack(&p, 1, "late");
    assert_true(act_is_empty(&a));
    assert_int_equal(p.nacks, 0);
    assert_false(p.need_full);
    a = protection_shut(&p, 0);
    assert_true(act_is_empty(&a));
    assert_int_equal(p.state, PROTECTION_DEGRADED);
    a = protection_lose(&p, "again");
    assert_true(act_is_empty(&a));
    assert_string_equal(p.last_error, "gone");
}

static void test_shut(void **unused)
{
    (void)unused;
    protection p;
    init(&p, 5 * S);
    active(&p);
    take(&p, 0);
    /* SHUT 0: the secondary ended replication; stopped, not retried. */
    protection_act a = protection_shut(&p, 0);
    assert_int_equal(p.state, PROTECTION_STOPPED);
    assert_int_equal(a.end, PROTECTION_DROP);
    assert_true(a.release_all);
    assert_false(a.reconnect);
    assert_string_equal(a.msg, "secondary " ADDR " ended replication; "
                        "running unprotected (stopped)");
    assert_string_equal(a.why, a.msg);
    assert_int_equal(a.answers[0].rc, -ECONNABORTED);
    assert_int_equal(p.nwin, 0);
    assert_false(protection_may_reconnect(&p));

    /* SHUT with an error: lost, and retried. */
    init(&p, 5 * S);
    active(&p);
    a = protection_shut(&p, 3);
    assert_lost(&p, &a, "secondary " ADDR " ended replication with "
                "error 3");
    assert_true(a.reconnect);
}

/* A link ending, a secondary gone: degraded, reconnecting if asked. */
static void test_lose_and_reconnect(void **unused)
{
    (void)unused;
    protection p;
    init(&p, 0);
    active(&p);
    protection_act a = protection_lose(&p, "secondary x: the link ended");
    assert_lost(&p, &a, "the link ended");
    assert_false(a.reconnect);
    assert_true(p.draining);
    assert_false(protection_next(&p).take);

    init(&p, 2 * S);
    assert_true(protection_retries(&p));
    bring_up(&p);
    a = protection_lose(&p, "refused");
    assert_true(a.reconnect);
    /* Not until the link is gone; then the timer is armed again. */
    assert_false(protection_may_reconnect(&p));
    a = protection_drained(&p);
    assert_true(a.reconnect);
    assert_true(protection_may_reconnect(&p));
    /* The timer's next attempt fails the same way: said once only. */
    protection_begin(&p, p.addr, &test_pair);
    assert_int_equal(p.secondaries, 2);
    a = protection_lose(&p, "refused");
    assert_false(a.say);
    assert_true(a.reconnect);
    assert_int_equal(a.end, PROTECTION_DROP);
    protection_begin(&p, p.addr, &test_pair);
    a = protection_lose(&p, "refused differently");
    assert_true(a.say);
    /* The same failure once the bring-up was written is news. */
    bring_up(&p);
    a = protection_lose(&p, "refused differently");
    assert_true(a.say);

    /* A link that could not even be made. */
    protection_begin(&p, p.addr, &test_pair);
    a = protection_begin_failed(&p);
    assert_int_equal(p.state, PROTECTION_DEGRADED);
    assert_true(a.reconnect);
    assert_int_equal(a.end, PROTECTION_KEEP);
    p.o.reconnect_ns = 0;
    protection_begin(&p, p.addr, &test_pair);
    a = protection_begin_failed(&p);
    assert_false(a.reconnect);
}

/*
 * The checks of a setup that failed: the first secondary went before its
 * first ACK, without --reconnect.  The VM is to stop, held output is never
 * released (not now, not once the link has drained, not at the VM's end),
 * nothing is retried or attached, and the message says why and what to do.
 */
static void assert_setup_failed(protection *p, const protection_act *a,
                                protection_end end, const char *what)
{
    assert_ended(p, a, PROTECTION_SETUP_FAILED, end, what,
                 "; the VM was never protected, and "
                 "without --reconnect it does not run unprotected: stopping "
                 "it (setup failed; the output held since checkpoint 1 is "
                 "dropped, never released)");
    assert_true(a->setup_failed);
    assert_int_equal(p->state, PROTECTION_SETUP_FAILED);
    assert_false(p->must_protect);
    assert_false(a->release_all);
    assert_int_equal(a->release_upto, 0);
    assert_false(p->release_on_drain);
    assert_false(a->reconnect);
    assert_non_null(strstr(a->msg, "Check --tls-creds and --tls-peer"));
    assert_non_null(strstr(a->msg, "give --reconnect TIME"));
    assert_false(protection_may_reconnect(p));
    assert_false(protection_next(p).take);
    char err[256];
    assert_int_equal(protection_may_attach(p, err, sizeof(err)), -ESHUTDOWN);
    assert_string_equal(err, "the VM is stopping: its first secondary never "
                        "protected it (setup failed)");
    /* The VM stops (replicator.c stops it): still nothing released. */
    bool held = p->holding;
    protection_act d = protection_vm_stopped(p, false);
    assert_false(d.release_all);
    assert_false(d.finished);           /* the old link still drains */
    d = protection_drained(p);
    assert_false(d.release_all);
    assert_true(d.finished);
    assert_true(p->holding == held);
}

/* The link has drained; the next secondary goes before an ACK: degraded. */
static void next_one_degrades(protection *p)
{
    protection_drained(p);
    protection_begin(p, ADDR, &test_pair);
    protection_act a = protection_lose(p, "refused again");
    assert_lost(p, &a, "refused again");
}

/* Without --reconnect, a VM never protected does not run on unprotected. */
static void test_setup_failed(void **unused)
{
    (void)unused;
    protection p;
    protection_act a;
    char err[256];

    /* The link went before the bring-up was written (a TLS refusal). */
    init(&p, 0);
    protection_begin(&p, ADDR, &test_pair);
    a = protection_lose(&p, "TLS handshake with secondary " ADDR
                        " failed: bad certificate");
    assert_setup_failed(&p, &a, PROTECTION_DROP, "TLS handshake with "
                        "secondary " ADDR " failed: bad certificate");
    assert_false(p.holding);

    /* After checkpoint 1, before its ACK: held output stays held. */
    init(&p, 0);
    bring_up(&p);
    take(&p, 0);
    take(&p, 0);
    a = protection_lose(&p, "secondary " ADDR ": receiving: Connection "
                        "reset by peer");
    assert_setup_failed(&p, &a, PROTECTION_DROP, "Connection reset");
    assert_true(p.holding);

    /* Silence before the first ACK. */
    init(&p, 0);
    bring_up(&p);
    take(&p, 0);
    channel_times t = { .last_recv_ns = 1 * S };
    p.last_tick_ns = 1 * S + FAILURE - 1;
    a = protection_tick(&p, 1 * S + FAILURE, &t);
    assert_setup_failed(&p, &a, PROTECTION_DROP, "nothing heard for 300 ms");

    /* A SHUT, clean or not, before the first ACK. */
    init(&p, 0);
    bring_up(&p);
    a = protection_shut(&p, 0);
    assert_setup_failed(&p, &a, PROTECTION_DROP, "secondary " ADDR
                        " ended replication");
    init(&p, 0);
    bring_up(&p);
    a = protection_shut(&p, 1);
    assert_setup_failed(&p, &a, PROTECTION_DROP, "ended replication with "
                        "error 1");

    /*
     * A live secondary refusing everything (its full packages twice, or
     * answering what was not sent): EOF, so that it stops rather than
     * fail over; the output still stays held.
     */
    init(&p, 0);
    bring_up(&p);
    take(&p, 0);
    nack(&p, 1, "bad");
    take(&p, 0);                                /* 2, full */
    nack(&p, 2, "bad");
    take(&p, 0);                                /* 3, full */
    a = nack(&p, 3, "bad");
    assert_setup_failed(&p, &a, PROTECTION_FINISH, "refused checkpoint 3");
    assert_true(p.holding);
    init(&p, 0);
    bring_up(&p);
    take(&p, 0);
    a = ack(&p, 7, 0);
    assert_setup_failed(&p, &a, PROTECTION_FINISH, "protocol error: ACK of "
                        "checkpoint 7");
    /* Not even the bring-up written: dropped. */
    init(&p, 0);
    protection_begin(&p, ADDR, &test_pair);
    a = protection_ack(&p, 1, &test_pair, 0, 0);
    assert_setup_failed(&p, &a, PROTECTION_DROP, "which was not sent");

    /* A full package that cannot be built, twice. */
    init(&p, 0);
    bring_up(&p);
    protection_plan pl = protection_next(&p);
    protection_build_failed(&p, &pl, "no memory");
    pl = protection_next(&p);
    a = protection_build_failed(&p, &pl, "no memory again");
    assert_setup_failed(&p, &a, PROTECTION_FINISH, "no memory again");

    /* Once protected, a later loss degrades, as with the next secondary. */
    init(&p, 0);
    active(&p);
    assert_false(p.must_protect);
    a = protection_lose(&p, "gone");
    assert_lost(&p, &a, "gone");
    next_one_degrades(&p);

    /* --reconnect: degraded, retried (the old behaviour). */
    init(&p, 2 * S);
    bring_up(&p);
    take(&p, 0);
    a = protection_lose(&p, "refused");
    assert_lost(&p, &a, "refused");
    assert_true(a.reconnect);

    /* reconnect set live before the loss: the same; and for good. */
    init(&p, 0);
    bring_up(&p);
    p.o.reconnect_ns = 2 * S;                   /* replicator_set */
    a = protection_lose(&p, "refused");
    assert_lost(&p, &a, "refused");
    assert_false(p.must_protect);
    p.o.reconnect_ns = 0;
    next_one_degrades(&p);

    /* stop-replication in setup is the operator's choice: then attach. */
    init(&p, 0);
    protection_begin(&p, ADDR, &test_pair);
    assert_int_equal(protection_stop(&p, &a, err, sizeof(err)), 0);
    assert_false(a.setup_failed);
    assert_false(p.must_protect);
    next_one_degrades(&p);

    /* The VM's own end in setup is no setup failure: output written. */
    init(&p, 0);
    bring_up(&p);
    take(&p, 0);
    a = protection_vm_stopped(&p, false);
    assert_false(a.setup_failed);
    assert_int_not_equal(p.state, PROTECTION_SETUP_FAILED);
    a = protection_drained(&p);
    assert_true(a.release_all);
}

/* Each secondary starts at 1; a new bring-up writes what waited on EOF. */
static void test_begin_again(void **unused)
{
    (void)unused;
    protection p;
    char err[256];
    init(&p, 0);
    active(&p);
    take(&p, 0);
    nack(&p, 2, "x");
    protection_act a;
    assert_int_equal(protection_stop(&p, &a, err, sizeof(err)), 0);
    assert_true(p.release_on_drain);
    a = protection_begin(&p, "second:3", &test_pair);
    assert_true(a.release_all);
    assert_false(p.release_on_drain);
    assert_false(p.draining);
    assert_false(p.holding);
    assert_int_equal(p.next_id, 1);
    assert_int_equal(p.acked_id, 0);
    assert_false(p.need_full);
    assert_int_equal(p.last_full_id, 0);
    assert_int_equal(p.nwin, 0);
    assert_int_equal(p.secondaries, 2);
    /* Totals go on across secondaries. */
    assert_int_equal(p.taken, 2);
    assert_int_equal(p.nacks, 1);
    protection_ready(&p);
    protection_plan pl = take(&p, 0);
    assert_int_equal(pl.id, 1);
    assert_false(pl.full);
}

/* Silence: degraded at the failure timeout exactly, not a ns before. */
static void test_tick_silence(void **unused)
{
    (void)unused;
    protection p;
    linked(&p);
    uint64_t t0 = 10 * S;
    channel_times t = { .last_recv_ns = 0 };
    /* Still connecting: its own timeout covers that. */
    protection_act a = protection_tick(&p, t0, &t);
    assert_true(act_is_empty(&a));
    assert_int_equal(p.last_tick_ns, 0);

    t.last_recv_ns = t0;
    /* The first check after a long gap only notes the time. */
    a = protection_tick(&p, t0 + FAILURE * 2, &t);
    assert_true(act_is_empty(&a));
    assert_int_equal(p.last_tick_ns, t0 + FAILURE * 2);

    p.last_tick_ns = t0 + FAILURE - 10 * MS;
    a = protection_tick(&p, t0 + FAILURE - 1, &t);
    assert_true(act_is_empty(&a));
    assert_int_equal(p.state, PROTECTION_SETUP);
    a = protection_tick(&p, t0 + FAILURE, &t);
    assert_lost(&p, &a, "secondary " ADDR ": nothing heard for 300 ms "
                "(failure timeout 300 ms)");
}

/* A gap over half the failure timeout skips the judgement, once. */
static void test_tick_gap(void **unused)
{
    (void)unused;
    protection p;
    linked(&p);
    channel_times t = { .last_recv_ns = 1 * S };
    uint64_t now = 1 * S + 2 * FAILURE;
    p.last_tick_ns = now - FAILURE / 2 - 1;
    protection_act a = protection_tick(&p, now, &t);
    assert_true(act_is_empty(&a));
    /* Exactly half is no gap. */
    p.last_tick_ns = now - FAILURE / 2;
    a = protection_tick(&p, now, &t);
    assert_lost(&p, &a, "nothing heard for 600 ms");
}

/* A write that makes no progress for the stall timeout. */
static void test_tick_stalled_write(void **unused)
{
    (void)unused;
    protection p;
    linked(&p);
    uint64_t t0 = 100 * S;
    channel_times t = { .busy = true, .progress_ns = t0 };
    p.last_tick_ns = t0 + STALL - 2;
    t.last_recv_ns = t0 + STALL - 2;
    protection_act a = protection_tick(&p, t0 + STALL - 1, &t);
    assert_true(act_is_empty(&a));
    a = protection_tick(&p, t0 + STALL, &t);
    assert_lost(&p, &a, "secondary " ADDR ": a write has made no progress "
                "for 10.0 s (stalled)");
    /* Not busy, the same times are no stall. */
    linked(&p);
    t.busy = false;
    p.last_tick_ns = t0 + STALL - 2;
    a = protection_tick(&p, t0 + STALL, &t);
    assert_true(act_is_empty(&a));
}

/* A package written and not acknowledged for the stall timeout. */
static protection_act tick_busy(protection *p, uint64_t now)
{
    /* Heard from just now, writing just now: only the window can stall. */
    channel_times t = { .last_recv_ns = now - 1, .busy = true,
                        .progress_ns = now };
    p->last_tick_ns = now - 1;
    return protection_tick(p, now, &t);
}

static void test_tick_unacknowledged(void **unused)
{
    (void)unused;
    protection p;
    linked(&p);
    take(&p, 0);
    take(&p, 0);
    uint64_t t0 = 100 * S;
    /* Not yet written: no stall however long. */
    protection_act a = tick_busy(&p, t0 + 10 * STALL);
    assert_true(act_is_empty(&a));
    protection_sent(&p, 1, t0 + 10 * STALL);
    protection_sent(&p, 2, t0 + 20 * STALL);
    a = tick_busy(&p, t0 + 11 * STALL - 1);
    assert_true(act_is_empty(&a));
    a = tick_busy(&p, t0 + 11 * STALL);
    assert_lost(&p, &a, "secondary " ADDR ": checkpoint 1 unacknowledged "
                "10.0 s after it was sent (stalled)");
}

/*
 * A link quiet for longer than the heartbeat interval but heard from is
 * fine: PINGs are the heartbeat thread's, not a decision of the tick.
 */
static void test_tick_quiet(void **unused)
{
    (void)unused;
    protection p;
    linked(&p);
    uint64_t t0 = 10 * S;
    channel_times t = { .last_recv_ns = t0 };
    p.last_tick_ns = t0;
    protection_act a = protection_tick(&p, t0 + 2 * HEARTBEAT, &t);
    assert_true(act_is_empty(&a));
    /* Not linked: no checks at all. */
    protection_lose(&p, "gone");
    a = protection_tick(&p, t0 + 100 * S, &t);
    assert_true(act_is_empty(&a));
}

static void test_tick_period(void **unused)
{
    (void)unused;
    protection p;
    init(&p, 0);
    assert_int_equal(protection_tick_period(&p), HEARTBEAT / 4);
    p.o.failure_ns = 40 * MS;
    assert_int_equal(protection_tick_period(&p), 10 * MS);
    p.o.heartbeat_ns = 3;
    assert_int_equal(protection_tick_period(&p), 1 * MS);
}

/* The next checkpoint is due an interval after the last began. */
static void test_delay(void **unused)
{
    (void)unused;
    protection p;
    init(&p, 0);
    protection_started(&p, 5 * S);
    assert_int_equal(protection_delay(&p, 5 * S), INTERVAL);
    assert_int_equal(protection_delay(&p, 5 * S + INTERVAL - 1), 1);
    assert_int_equal(protection_delay(&p, 5 * S + INTERVAL), 0);
    assert_int_equal(protection_delay(&p, 5 * S + INTERVAL + 1), 0);
}

/* A package that cannot be made: in full next time, unless it was. */
static void test_build_failed(void **unused)
{
    (void)unused;
    protection p;
    linked(&p);
    protection_plan pl = protection_next(&p);
    protection_act a = protection_build_failed(&p, &pl, "checkpoint 1: x");
    assert_true(a.say);
    assert_string_equal(a.msg, "checkpoint 1: x; sending the next "
                        "checkpoint in full");
    assert_true(a.rearm);
    assert_false(a.take);
    assert_true(p.need_full);
    assert_int_equal(p.taken, 0);
    assert_int_equal(p.nwin, 0);
    pl = protection_next(&p);
    assert_int_equal(pl.id, 1);
    assert_true(pl.full);
    a = protection_build_failed(&p, &pl, "checkpoint 1: y");
    assert_given_up(&p, &a, "checkpoint 1: y");
}

/* stop-replication: EOF after what is queued, held output after EOF. */
static void test_stop(void **unused)
{
    (void)unused;
    protection p;
    protection_act a;
    char err[256];
    init(&p, 2 * S);
    assert_int_equal(protection_stop(&p, &a, err, sizeof(err)), -ENOTCONN);
    assert_string_equal(err, "replication is not running (degraded)");

    /* Before the bring-up is written: at once, nothing held. */
    protection_begin(&p, ADDR, &test_pair);
    assert_int_equal(protection_stop(&p, &a, err, sizeof(err)), 0);
    assert_int_equal(a.end, PROTECTION_DROP);
    assert_true(a.release_all);
    assert_false(a.reconnect);
    assert_int_equal(p.state, PROTECTION_STOPPED);
    assert_string_equal(a.msg, "replication to " ADDR " stopped on request; "
                        "running unprotected (stopped)");
    assert_string_equal(a.why, "replication stopped on request");
    assert_int_equal(protection_stop(&p, &a, err, sizeof(err)), -ENOTCONN);
    assert_string_equal(err, "replication is not running (stopped)");

    /* Active and holding: EOF first, output once it is out. */
    init(&p, 0);
    active(&p);
    take(&p, 0);
    assert_int_equal(protection_stop(&p, &a, err, sizeof(err)), 0);
    assert_int_equal(a.end, PROTECTION_FINISH);
    /* The secondary is told it is dropped, and why, before the EOF. */
    assert_int_equal(a.drop_reason, DROPNOTICE_STOPPED);
    assert_false(a.release_all);
    assert_true(p.holding);
    assert_true(p.draining);
    assert_false(protection_next(&p).take);
    a = protection_drained(&p);
    assert_true(a.release_all);
    assert_false(a.finished);
    assert_false(p.holding);
    a = protection_drained(&p);
    assert_false(a.release_all);
}

static void test_attach_and_save(void **unused)
{
    (void)unused;
    protection p;
    char err[256];
    init(&p, 0);
    assert_int_equal(protection_may_attach(&p, err, sizeof(err)), 0);
    assert_int_equal(protection_may_save(&p, err, sizeof(err)), 0);
    protection_begin(&p, ADDR, &test_pair);
    assert_int_equal(protection_may_attach(&p, err, sizeof(err)), -EISCONN);
    assert_string_equal(err, "already replicating to " ADDR " (setup); "
                        "stop-replication first");
    assert_int_equal(protection_may_save(&p, err, sizeof(err)), -EBUSY);
    assert_non_null(strstr(err, "replication is setup: "));
    protection_ready(&p);
    take(&p, 0);
    ack(&p, 1, 0);
    assert_int_equal(protection_may_attach(&p, err, sizeof(err)), -EISCONN);
    assert_int_equal(protection_may_save(&p, err, sizeof(err)), -EBUSY);
    assert_non_null(strstr(err, "replication is active: "));
    protection_act a;
    protection_stop(&p, &a, err, sizeof(err));
    /* Not while the stopped link still writes its drop notice. */
    assert_int_equal(protection_may_attach(&p, err, sizeof(err)), -EBUSY);
    assert_string_equal(err, "the last secondary (" ADDR ") is still being "
                        "told it is dropped (its drop notice and EOF); try "
                        "again in a moment");
    a = protection_drained(&p);
    assert_false(a.reconnect);          /* stopped: no reconnecting */
    assert_int_equal(protection_may_attach(&p, err, sizeof(err)), 0);
    assert_int_equal(protection_may_save(&p, err, sizeof(err)), 0);
    protection_vm_stopped(&p, false);
    assert_int_equal(protection_may_attach(&p, err, sizeof(err)),
                     -ESHUTDOWN);
    assert_string_equal(err, "the VM has stopped");
}

/* The VM's end: EOF and held output written, or (takeover) neither. */
static void test_vm_stopped(void **unused)
{
    (void)unused;
    protection p;
    init(&p, 2 * S);
    active(&p);
    take(&p, 0);
    protection_act a = protection_vm_stopped(&p, false);
    assert_int_equal(a.end, PROTECTION_FINISH);
    assert_false(a.release_all);
    assert_false(a.finished);
    assert_int_equal(p.state, PROTECTION_STOPPED);
    assert_string_equal(a.why, "the VM has stopped");
    assert_false(protection_retries(&p));
    assert_false(protection_may_reconnect(&p));
    a = protection_drained(&p);
    assert_true(a.release_all);
    assert_true(a.finished);

    /* The monitor failed: links dropped, output left for the secondary. */
    init(&p, 2 * S);
    active(&p);
    take(&p, 0);
    a = protection_vm_stopped(&p, true);
    assert_int_equal(a.end, PROTECTION_DISCARD);
    assert_false(a.release_all);
    assert_true(p.holding);
    assert_true(a.finished);
    assert_int_equal(p.state, PROTECTION_DEGRADED);
    assert_string_equal(a.why, "the VM failed");
    assert_false(a.reconnect);

    /* Degraded, nothing draining: output written, done at once. */
    init(&p, 0);
    a = protection_vm_stopped(&p, false);
    assert_true(a.release_all);
    assert_true(a.finished);
    assert_int_equal(a.end, PROTECTION_KEEP);

    /* Stopped with the old link still draining: done once it is. */
    init(&p, 0);
    active(&p);
    take(&p, 0);
    char err[64];
    protection_stop(&p, &a, err, sizeof(err));
    a = protection_vm_stopped(&p, false);
    assert_false(a.release_all);
    assert_false(a.finished);
    a = protection_drained(&p);
    assert_true(a.release_all);
    assert_true(a.finished);
    /* After the end no checkpoint is taken, none waited for. */
    answered w = { 0 };
    assert_int_equal(protection_wait(&p, on_done, &w, &a, err, sizeof(err)),
                     -ENOTCONN);
}

/* Requests waiting for a checkpoint, answered by ACK, NACK or loss. */
static void test_waiters(void **unused)
{
    (void)unused;
    protection p;
    protection_act a;
    char err[256];
    answered w1 = { 0 }, w2 = { 0 }, w3 = { 0 }, w4 = { 0 };
    init(&p, 0);
    assert_int_equal(protection_wait(&p, on_done, &w1, &a, err,
                                     sizeof(err)), -ENOTCONN);
    assert_string_equal(err, "not replicating (degraded): no secondary to "
                        "checkpoint to");
    assert_int_equal(w1.calls, 0);

    bring_up(&p);
    take(&p, 0);                            /* 1, before any request */
    assert_int_equal(protection_wait(&p, on_done, &w1, &a, err,
                                     sizeof(err)), 0);
    assert_true(a.take);
    take(&p, 0);                            /* 2: w1's */
    protection_wait(&p, on_done, &w2, &a, err, sizeof(err));
    protection_wait(&p, on_done, &w3, &a, err, sizeof(err));
    take(&p, 0);                            /* 3: w2's and w3's */
    protection_wait(&p, on_done, &w4, &a, err, sizeof(err));   /* none yet */

    a = ack(&p, 1, 0);
    run_answers(&p, &a);
    assert_int_equal(w1.calls, 0);
    a = ack(&p, 2, 0);
    run_answers(&p, &a);
    assert_int_equal(w1.calls, 1);
    assert_int_equal(w1.rc, 0);
    assert_int_equal(w1.id, 2);
    assert_int_equal(w2.calls, 0);

    /* A NACK answers those on that checkpoint only. */
    a = nack(&p, 3, "bad crc");
    run_answers(&p, &a);
    assert_int_equal(w2.calls, 1);
    assert_int_equal(w2.rc, -EBADMSG);
    assert_int_equal(w2.id, 3);
    assert_string_equal(w2.err, "secondary " ADDR " refused checkpoint 3: "
                        "bad crc");
    assert_int_equal(w3.calls, 1);
    assert_int_equal(w4.calls, 0);

    /* A loss answers all, those not yet given a checkpoint too. */
    a = protection_lose(&p, "secondary gone");
    run_answers(&p, &a);
    assert_int_equal(w4.calls, 1);
    assert_int_equal(w4.rc, -ECONNABORTED);
    assert_int_equal(w4.id, 0);
    assert_string_equal(w4.err, "secondary gone");
    assert_int_equal(w1.calls + w2.calls + w3.calls, 3);
    assert_null(p.waiters);

    /* What is still waiting when the process ends hears so. */
    answered w5 = { 0 };
    bring_up(&p);
    protection_wait(&p, on_done, &w5, &a, err, sizeof(err));
    protection_fini(&p, "the primary is exiting");
    assert_int_equal(w5.calls, 1);
    assert_int_equal(w5.rc, -ECONNABORTED);
    assert_string_equal(w5.err, "the primary is exiting");
    assert_null(p.waiters);
}

/*
 * With a real output-commit queue: what the guest produced before
 * checkpoint k goes out on ACK k, what it produced after stays held,
 * with one secondary and the next.
 */
static void console(outqueue *q, const char *s)
{
    outqueue_console(q, s, strlen(s));
}

/* The queue's console sink: straight into the fd opaque points to. */
static int fd_console(void *opaque, const void *buf, size_t len)
{
    assert_int_equal(write(*(int *)opaque, buf, len), (ssize_t)len);
    return 0;
}

static const char *written(int fd)
{
    static char buf[4096];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    return buf;
}

/* What replicator_do does with output, and nothing else. */
static void release(outqueue *q, const protection_act *a)
{
    if (a->release_upto)
        outqueue_acked(q, a->release_upto);
    if (a->release_all)
        outqueue_release_all(q);
}

static void take_marked(protection *p, outqueue *q)
{
    protection_plan pl = protection_next(p);
    assert_true(pl.take);
    outqueue_checkpoint(q, pl.id);
    protection_hold(p);
    protection_taken(p, &pl);
}

static void test_ack_releases_output(void **unused)
{
    (void)unused;
    int fd = memfd_create("console", MFD_CLOEXEC);
    assert_true(fd >= 0);
    outqueue *q;
    assert_int_equal(outqueue_new(&q), 0);
    outqueue_set_console_sink(q, fd_console, &fd);
    protection p;
    init(&p, 0);

    console(q, "a");                        /* unprotected: at once */
    protection_act a = protection_begin(&p, ADDR, &test_pair);
    release(q, &a);
    outqueue_begin(q);
    protection_ready(&p);
    take_marked(&p, q);                     /* 1 */
    console(q, "b");
    take_marked(&p, q);                     /* 2 */
    console(q, "c");
    take_marked(&p, q);                     /* 3 */
    console(q, "d");
    assert_string_equal(written(fd), "a");
    a = ack(&p, 1, 0);
    release(q, &a);
    assert_string_equal(written(fd), "a");  /* b came after 1 */
    a = ack(&p, 2, 0);
    release(q, &a);
    assert_string_equal(written(fd), "ab");
    a = ack(&p, 3, 0);
    release(q, &a);
    assert_string_equal(written(fd), "abc");

    /* Lost: everything goes, unheld from now on. */
    a = protection_lose(&p, "gone");
    release(q, &a);
    assert_string_equal(written(fd), "abcd");
    console(q, "e");
    assert_string_equal(written(fd), "abcde");

    /* The next secondary's ids start at 1 again; the rule holds. */
    a = protection_drained(&p);
    release(q, &a);
    a = protection_begin(&p, ADDR, &test_pair);
    release(q, &a);
    outqueue_begin(q);
    protection_ready(&p);
    take_marked(&p, q);                     /* 1 */
    console(q, "f");
    take_marked(&p, q);                     /* 2 */
    a = ack(&p, 1, 0);
    release(q, &a);
    assert_string_equal(written(fd), "abcde");
    a = ack(&p, 2, 0);
    release(q, &a);
    assert_string_equal(written(fd), "abcdef");
    outqueue_free(q);
    close(fd);
}

/* ---- the witness ---- */

/*
 * With a witness, reconnecting every 2 s: active, checkpoint 2 taken and
 * written (unacknowledged), so output is held from it on.
 */
static void witnessed(protection *p)
{
    protection_init(p, &(protection_opts){ .interval_ns = INTERVAL,
                                           .heartbeat_ns = HEARTBEAT,
                                           .failure_ns = FAILURE,
                                           .stall_ns = STALL,
                                           .reconnect_ns = 2 * S,
                                           .witness = true }, ADDR);
    bring_up(p);
    take(p, 0);
    protection_sent(p, 1, 1);
    ack(p, 1, 2);
    take(p, INTERVAL);
    protection_sent(p, 2, INTERVAL + 1);
    assert_true(p->holding);
}

/* A loss is claimed: nothing released, no reconnecting, the VM runs. */
static void assert_claiming(protection *p, const protection_act *a,
                            const char *what)
{
    assert_int_equal(p->state, PROTECTION_CLAIMING);
    assert_true(a->claim);
    assert_int_equal(a->end, PROTECTION_DROP);
    assert_false(a->release_all);
    assert_int_equal(a->release_upto, 0);
    assert_true(p->holding);
    assert_false(a->reconnect);
    assert_false(a->pause);
    assert_false(a->fenced);
    assert_true(a->say);
    assert_non_null(strstr(a->msg, what));
    assert_non_null(strstr(a->msg, "asking the witness who keeps the VM "
                                   "(claiming generation 1); output stays "
                                   "held"));
    assert_non_null(strstr(p->last_error, what));
    assert_true(a->nanswers >= 1);
    assert_int_equal(a->answers[a->nanswers - 1].rc, -ECONNABORTED);
    assert_string_equal(protection_state_name(p->state), "claiming");
}

static void test_witness_claims(void **unused)
{
    (void)unused;
    protection p;
    protection_act a;
    char err[256];

    /* Each way of losing the secondary is claimed. */
    witnessed(&p);
    a = protection_lose(&p, "secondary " ADDR ": the link ended");
    assert_claiming(&p, &a, "the link ended");
    /* While claiming: no new secondary, no checkpoint, no reconnect. */
    assert_int_equal(protection_may_attach(&p, err, sizeof(err)), -EBUSY);
    assert_non_null(strstr(err, "has not yet said who keeps the VM"));
    assert_false(protection_may_reconnect(&p));
    assert_false(protection_next(&p).take);
    /* A late answer of the old link changes nothing. */
    a = ack(&p, 2, 3 * INTERVAL);
    assert_true(act_is_empty(&a));
    assert_int_equal(p.state, PROTECTION_CLAIMING);

    witnessed(&p);
    a = protection_shut(&p, 1);
    assert_claiming(&p, &a, "ended replication with error 1");

    witnessed(&p);
    channel_times t = { .last_recv_ns = INTERVAL + 1 };
    p.last_tick_ns = INTERVAL + FAILURE;
    a = protection_tick(&p, INTERVAL + 1 + FAILURE, &t);
    assert_claiming(&p, &a, "nothing heard for 300 ms");

    /* A clean SHUT 0 is no loss: stopped, as without a witness. */
    witnessed(&p);
    a = protection_shut(&p, 0);
    assert_int_equal(p.state, PROTECTION_STOPPED);
    assert_false(a.claim);

    /* Before checkpoint 1 was written nothing can have failed over. */
    init(&p, 2 * S);
    p.o.witness = true;
    bring_up(&p);
    take(&p, 0);
    protection_writing(&p, 0);
    protection_sent(&p, 1, 0);          /* dropped unsent */
    a = protection_lose(&p, "secondary " ADDR ": the link ended");
    assert_lost(&p, &a, "the link ended");
    assert_false(a.claim);
    /*
     * Its write began: the secondary may hold it whole although the
     * report of the write has not come yet.
     */
    init(&p, 2 * S);
    p.o.witness = true;
    bring_up(&p);
    take(&p, 0);
    protection_writing(&p, 1);
    a = protection_lose(&p, "secondary " ADDR ": the link ended");
    assert_int_equal(p.state, PROTECTION_CLAIMING);
    assert_true(a.claim);
    /* ... as the liveness check finds it. */
    init(&p, 2 * S);
    p.o.witness = true;
    bring_up(&p);
    take(&p, 0);
    t = (channel_times){ .last_recv_ns = 1, .sending = 1 };
    p.last_tick_ns = FAILURE;
    a = protection_tick(&p, FAILURE + 1, &t);
    assert_int_equal(p.state, PROTECTION_CLAIMING);
    assert_true(a.claim);
    /* ... and a new secondary starts unwritten. */
    witnessed(&p);
    protection_lose(&p, "gone");
    protection_claimed(&p, CLAIM_WON, NULL, NULL);
    protection_begin(&p, ADDR, &test_pair);
    assert_false(p.written);
}

/*
 * An answer read after this process stalled for half the failure timeout
 * may predate a takeover: with a witness it is a loss, claimed, and not
 * acted on; a shorter stall, or no witness, changes nothing.
 */
static void test_witness_stalled(void **unused)
{
    (void)unused;
    protection p;
    protection_act a;

    witnessed(&p);
    a = protection_stalled(&p, FAILURE / 2 - 1);
    assert_true(act_is_empty(&a));
    assert_int_equal(p.state, PROTECTION_ACTIVE);
    a = protection_stalled(&p, FAILURE / 2);
    assert_claiming(&p, &a, "this process did not run for 150 ms");
    assert_non_null(strstr(a.msg, "its answers are no longer trusted"));
    /* The answer itself then changes nothing: nothing is released. */
    a = ack(&p, 2, 3 * INTERVAL);
    assert_true(act_is_empty(&a));
    assert_true(p.holding);

    /* Without a witness nothing could decide it: as before. */
    witnessed(&p);
    p.o.witness = false;
    a = protection_stalled(&p, 10 * FAILURE);
    assert_true(act_is_empty(&a));
    assert_int_equal(p.state, PROTECTION_ACTIVE);

    /* Nothing to lose: no secondary. */
    witnessed(&p);
    protection_lose(&p, "gone");
    protection_claimed(&p, CLAIM_WON, NULL, NULL);
    a = protection_stalled(&p, 10 * FAILURE);
    assert_true(act_is_empty(&a));
    assert_int_equal(p.state, PROTECTION_DEGRADED);
}

static void test_witness_won(void **unused)
{
    (void)unused;
    protection p;
    protection_act a;

    witnessed(&p);
    protection_lose(&p, "gone");
    a = protection_claimed(&p, CLAIM_WON, NULL, NULL);
    assert_int_equal(p.state, PROTECTION_DEGRADED);
    assert_true(a.release_all);
    assert_false(p.holding);
    assert_true(a.reconnect);
    assert_false(a.resume);
    assert_false(a.fenced);
    assert_non_null(strstr(a.msg, "the witness kept the VM here "
                                  "(generation 1); running unprotected"));
    /* An answer after that is no news. */
    a = protection_claimed(&p, CLAIM_LOST, "secondary x", NULL);
    assert_true(act_is_empty(&a) && !a.fenced);
    assert_int_equal(p.state, PROTECTION_DEGRADED);
}

static void test_witness_lost(void **unused)
{
    (void)unused;
    protection p;
    protection_act a;
    char err[256];

    witnessed(&p);
    protection_lose(&p, "gone");
    a = protection_claimed(&p, CLAIM_LOST, "secondary 0123456789abcdef",
                           NULL);
    assert_int_equal(p.state, PROTECTION_FENCED);
    assert_true(a.fenced);
    assert_false(a.release_all);
    assert_int_equal(a.release_upto, 0);
    assert_false(a.reconnect);
    assert_true(p.holding);
    assert_non_null(strstr(a.msg, "the secondary took the VM over (owner: "
                                  "secondary 0123456789abcdef); this copy "
                                  "stops without releasing"));
    assert_string_equal(protection_state_name(p.state), "fenced");
    assert_int_equal(protection_may_attach(&p, err, sizeof(err)),
                     -ESHUTDOWN);
    assert_non_null(strstr(err, "fenced"));
    /* The dropped link's end, then the VM's, release nothing. */
    a = protection_drained(&p);
    assert_false(a.release_all);
    a = protection_vm_stopped(&p, false);
    assert_false(a.release_all);
    assert_true(a.finished);
    assert_true(p.holding);
}

static void test_witness_unknown(void **unused)
{
    (void)unused;
    protection p;
    protection_act a;

    /* No answer: paused, held; asked again quietly; then won: resumed. */
    witnessed(&p);
    protection_lose(&p, "gone");
    a = protection_claimed(&p, CLAIM_UNKNOWN, NULL, "no quorum");
    assert_int_equal(p.state, PROTECTION_CLAIMING);
    assert_true(a.pause);
    assert_false(a.release_all || a.fenced || a.resume);
    assert_non_null(strstr(a.msg, "fenced: cannot reach the witness (no "
                                  "quorum): the VM is paused"));
    assert_non_null(strstr(p.last_error, "fenced: cannot reach the witness"));
    a = protection_claimed(&p, CLAIM_UNKNOWN, NULL, "no quorum");
    assert_false(a.say || a.pause || a.resume);
    a = protection_claimed(&p, CLAIM_WON, NULL, NULL);
    assert_true(a.resume);
    assert_true(a.release_all);
    assert_int_equal(p.state, PROTECTION_DEGRADED);

    /* No answer, then lost: stopped, still held, never resumed. */
    witnessed(&p);
    protection_lose(&p, "gone");
    protection_claimed(&p, CLAIM_UNKNOWN, NULL, "no quorum");
    a = protection_claimed(&p, CLAIM_LOST, "secondary x", NULL);
    assert_true(a.fenced);
    assert_false(a.resume || a.release_all);

    /* The VM ends while claiming: held output is not released. */
    witnessed(&p);
    protection_lose(&p, "gone");
    a = protection_drained(&p);
    assert_false(a.release_all);
    a = protection_vm_stopped(&p, false);
    assert_false(a.release_all);
    assert_true(a.finished);
    /* ... and a later answer neither releases, pauses nor stops it. */
    a = protection_claimed(&p, CLAIM_UNKNOWN, NULL, "x");
    assert_false(a.pause);
    a = protection_claimed(&p, CLAIM_WON, NULL, NULL);
    assert_false(a.release_all || a.fenced);
}

/*
 * A secondary that went live (o.running, no --reconnect): degraded with
 * no secondary yet, and its VM ran unprotected before, so losing its
 * first secondary before the first ACK degrades instead of failing the
 * setup; with a witness, once checkpoint 1 was written, that loss is
 * claimed like any other.
 */
static void test_running(void **unused)
{
    (void)unused;
    protection p;
    protection_act a;
    char err[256];
    protection_opts o = { .interval_ns = INTERVAL, .heartbeat_ns = HEARTBEAT,
                          .failure_ns = FAILURE, .stall_ns = STALL,
                          .running = true };

    protection_init(&p, &o, NULL);
    assert_int_equal(p.state, PROTECTION_DEGRADED);
    assert_string_equal(p.addr, "");
    assert_false(p.must_protect);
    assert_false(protection_retries(&p));
    assert_int_equal(protection_may_attach(&p, err, sizeof(err)), 0);

    /* The link went before the bring-up was written. */
    protection_begin(&p, ADDR, &test_pair);
    a = protection_lose(&p, "TLS handshake with secondary " ADDR
                        " failed: bad certificate");
    assert_lost(&p, &a, "TLS handshake");
    assert_false(a.reconnect);

    /* After checkpoint 1, before its ACK. */
    protection_init(&p, &o, NULL);
    bring_up(&p);
    take(&p, 0);
    a = protection_lose(&p, "secondary " ADDR ": receiving: Connection "
                        "reset by peer");
    assert_lost(&p, &a, "Connection reset");
    /* Once the ended link is gone (it is shut down at once). */
    assert_int_equal(protection_may_attach(&p, err, sizeof(err)), -EBUSY);
    protection_drained(&p);
    assert_int_equal(protection_may_attach(&p, err, sizeof(err)), 0);

    /* A live secondary refusing everything: EOF, degraded. */
    protection_init(&p, &o, NULL);
    bring_up(&p);
    take(&p, 0);
    a = ack(&p, 7, 0);
    assert_given_up(&p, &a, "protocol error: ACK of checkpoint 7");
    assert_false(a.setup_failed);

    /* With a witness, checkpoint 1 written: claimed, output held. */
    o.witness = true;
    protection_init(&p, &o, NULL);
    bring_up(&p);
    take(&p, 0);
    protection_sent(&p, 1, 1);
    a = protection_lose(&p, "secondary " ADDR ": the link ended");
    assert_claiming(&p, &a, "the link ended");
    assert_false(a.setup_failed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_drop_reasons),
        cmocka_unit_test(test_bringup_to_active),
        cmocka_unit_test(test_ready_when_not_linked),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_ack_refusals),
        cmocka_unit_test(test_forged_answers),
        cmocka_unit_test(test_nack_then_full),
        cmocka_unit_test(test_full_refused_twice),
        cmocka_unit_test(test_nack_zero),
        cmocka_unit_test(test_return_path_when_not_linked),
        cmocka_unit_test(test_shut),
        cmocka_unit_test(test_lose_and_reconnect),
        cmocka_unit_test(test_setup_failed),
        cmocka_unit_test(test_begin_again),
        cmocka_unit_test(test_tick_silence),
        cmocka_unit_test(test_tick_gap),
        cmocka_unit_test(test_tick_stalled_write),
        cmocka_unit_test(test_tick_unacknowledged),
        cmocka_unit_test(test_tick_quiet),
        cmocka_unit_test(test_tick_period),
        cmocka_unit_test(test_delay),
        cmocka_unit_test(test_build_failed),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_attach_and_save),
        cmocka_unit_test(test_vm_stopped),
        cmocka_unit_test(test_waiters),
        cmocka_unit_test(test_ack_releases_output),
        cmocka_unit_test(test_witness_claims),
        cmocka_unit_test(test_witness_stalled),
        cmocka_unit_test(test_witness_won),
        cmocka_unit_test(test_witness_lost),
        cmocka_unit_test(test_witness_unknown),
        cmocka_unit_test(test_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
