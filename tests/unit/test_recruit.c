/*
 * Unit tests for primary/recruit's decisions (recruit_next,
 * recruit_event_of) and secondary/enlist's (the address offered, when it
 * is offered): a degraded primary picks, attaches what it picked, waits
 * and asks again when none is free or the attach fails, and drops all of
 * it once it is protected, stopped, claiming or fenced.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "primary/recruit.h"
#include "secondary/enlist.h"

static recruit_action step(recruit_state *s, recruit_event ev,
                           recruit_state want)
{
    recruit_action a = recruit_next(s, ev);
    assert_int_equal(*s, want);
    return a;
}

static void test_degraded_picks_and_attaches(void **state)
{
    (void)state;
    recruit_state s = RECRUIT_IDLE;
    /* Protected, or being brought up: nothing. */
    assert_int_equal(step(&s, RECRUIT_EV_ACTIVE, RECRUIT_IDLE),
                     RECRUIT_NOTHING);
    assert_int_equal(step(&s, RECRUIT_EV_SETUP, RECRUIT_IDLE),
                     RECRUIT_NOTHING);
    assert_int_equal(step(&s, RECRUIT_EV_OTHER, RECRUIT_IDLE),
                     RECRUIT_NOTHING);
    /* Degraded: one pick, not one per update. */
    assert_int_equal(step(&s, RECRUIT_EV_DEGRADED, RECRUIT_PICKING),
                     RECRUIT_PICK);
    assert_int_equal(step(&s, RECRUIT_EV_DEGRADED, RECRUIT_PICKING),
                     RECRUIT_NOTHING);
    assert_int_equal(step(&s, RECRUIT_EV_PICKED, RECRUIT_ATTACHING),
                     RECRUIT_ATTACH);
    /* The attach's bring-up, then its first ACK. */
    assert_int_equal(step(&s, RECRUIT_EV_SETUP, RECRUIT_ATTACHING),
                     RECRUIT_NOTHING);
    assert_int_equal(step(&s, RECRUIT_EV_ACTIVE, RECRUIT_IDLE),
                     RECRUIT_DONE);
    /* That one lost too: the next pick. */
    assert_int_equal(step(&s, RECRUIT_EV_DEGRADED, RECRUIT_PICKING),
                     RECRUIT_PICK);
}

static void test_none_free_waits(void **state)
{
    (void)state;
    recruit_state s = RECRUIT_PICKING;
    assert_int_equal(step(&s, RECRUIT_EV_EMPTY, RECRUIT_WAITING),
                     RECRUIT_ARM);
    /* Still degraded while waiting: no pick before the timer. */
    assert_int_equal(step(&s, RECRUIT_EV_DEGRADED, RECRUIT_WAITING),
                     RECRUIT_NOTHING);
    /* The timer: idle, so that the update that follows picks. */
    assert_int_equal(step(&s, RECRUIT_EV_TIMER, RECRUIT_IDLE),
                     RECRUIT_NOTHING);
    assert_int_equal(step(&s, RECRUIT_EV_DEGRADED, RECRUIT_PICKING),
                     RECRUIT_PICK);
    assert_string_equal(recruit_state_name(RECRUIT_WAITING),
                        "waiting for a standby");
}

static void test_attach_fails(void **state)
{
    (void)state;
    recruit_state s = RECRUIT_ATTACHING;
    assert_int_equal(step(&s, RECRUIT_EV_ATTACH_FAILED, RECRUIT_WAITING),
                     RECRUIT_ARM);
    /* Or its link went before the first ACK: degraded again. */
    s = RECRUIT_ATTACHING;
    assert_int_equal(step(&s, RECRUIT_EV_DEGRADED, RECRUIT_WAITING),
                     RECRUIT_ARM);
    /* A late timer of an earlier wait picks nothing while attaching. */
    s = RECRUIT_ATTACHING;
    assert_int_equal(step(&s, RECRUIT_EV_TIMER, RECRUIT_ATTACHING),
                     RECRUIT_NOTHING);
}

static void test_others_cancel(void **state)
{
    (void)state;
    recruit_event evs[] = { RECRUIT_EV_SETUP, RECRUIT_EV_ACTIVE,
                            RECRUIT_EV_OTHER };
    /* An operator's attach, the reconnect timer, a claim, a stop. */
    for (size_t i = 0; i < 3; i++) {
        recruit_state s = RECRUIT_PICKING;
        assert_int_equal(step(&s, evs[i], RECRUIT_IDLE), RECRUIT_CANCEL);
        s = RECRUIT_WAITING;
        assert_int_equal(step(&s, evs[i], RECRUIT_IDLE), RECRUIT_CANCEL);
    }
    recruit_state s = RECRUIT_ATTACHING;
    assert_int_equal(step(&s, RECRUIT_EV_OTHER, RECRUIT_IDLE),
                     RECRUIT_CANCEL);
    /* A pick's late answer after a cancel does nothing. */
    s = RECRUIT_IDLE;
    assert_int_equal(step(&s, RECRUIT_EV_PICKED, RECRUIT_IDLE),
                     RECRUIT_NOTHING);
    assert_int_equal(step(&s, RECRUIT_EV_EMPTY, RECRUIT_IDLE),
                     RECRUIT_NOTHING);
}

static void test_event_of(void **state)
{
    (void)state;
    protection p = { .state = PROTECTION_DEGRADED };
    assert_int_equal(recruit_event_of(&p), RECRUIT_EV_DEGRADED);
    p.ending = true;            /* the VM stopped: nothing to protect */
    assert_int_equal(recruit_event_of(&p), RECRUIT_EV_OTHER);
    p.ending = false;
    protection_state others[] = { PROTECTION_STOPPED, PROTECTION_CLAIMING,
                                  PROTECTION_FENCED,
                                  PROTECTION_SETUP_FAILED };
    for (size_t i = 0; i < 4; i++) {
        p.state = others[i];
        assert_int_equal(recruit_event_of(&p), RECRUIT_EV_OTHER);
    }
    p.state = PROTECTION_SETUP;
    assert_int_equal(recruit_event_of(&p), RECRUIT_EV_SETUP);
    p.state = PROTECTION_ACTIVE;
    assert_int_equal(recruit_event_of(&p), RECRUIT_EV_ACTIVE);
}

static void test_enlist(void **state)
{
    (void)state;
    char out[POOL_ADDR_MAX], err[256];
    assert_int_equal(enlist_address(out, sizeof(out), NULL,
                                    "127.0.0.1:4000", err, sizeof(err)), 0);
    assert_string_equal(out, "127.0.0.1:4000");
    assert_int_equal(enlist_address(out, sizeof(out), NULL, "[::1]:4000",
                                    err, sizeof(err)), 0);
    /* Every address: a primary cannot dial that. */
    assert_int_equal(enlist_address(out, sizeof(out), NULL, "0.0.0.0:4000",
                                    err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "--advertise"));
    assert_int_equal(enlist_address(out, sizeof(out), NULL, "[::]:4000",
                                    err, sizeof(err)), -EINVAL);
    assert_int_equal(enlist_address(out, sizeof(out), "10.1.2.3:4000",
                                    "0.0.0.0:4000", err, sizeof(err)), 0);
    assert_string_equal(out, "10.1.2.3:4000");
    const char *bad[] = { "host", ":4000", "host:", "host:0", "host:4x" };
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(enlist_address(out, sizeof(out), bad[i],
                                        "127.0.0.1:1", err, sizeof(err)),
                         -EINVAL);
    assert_true(enlist_offered(STANDBY_WAITING));
    assert_false(enlist_offered(STANDBY_REPLICATING));
    assert_false(enlist_offered(STANDBY_CLAIMING));
    assert_false(enlist_offered(STANDBY_RUNNING));
    assert_false(enlist_offered(STANDBY_STOPPED));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_degraded_picks_and_attaches),
        cmocka_unit_test(test_none_free_waits),
        cmocka_unit_test(test_attach_fails),
        cmocka_unit_test(test_others_cancel),
        cmocka_unit_test(test_event_of),
        cmocka_unit_test(test_enlist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
