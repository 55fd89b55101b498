/*
 * Unit tests for secondary/standby: what the end of a connection leads
 * to (fail over, exit 0, 3 or 4, wait for another primary), what a
 * signal or quit does in each state, and when the operator's commands
 * are allowed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "secondary/standby.h"

static standby_decision end(receiver_end why, bool have_vm, bool applied)
{
    return standby_on_end(&(standby_end){ .why = why, .have_vm = have_vm,
                                          .applied = applied });
}

static void test_primary_lost(void **state)
{
    (void)state;
    /* Lost or silent after a checkpoint: fail over to it. */
    standby_decision d = end(RECEIVER_END_LOST, true, true);
    assert_int_equal(d.verdict, STANDBY_PRIMARY_LOST);
    assert_int_equal(d.next, STANDBY_FAILOVER);
    assert_false(d.exit);
    assert_string_equal(d.failover_reason, "primary lost");
    d = end(RECEIVER_END_TIMEOUT, true, true);
    assert_int_equal(d.next, STANDBY_FAILOVER);
    assert_string_equal(d.failover_reason, "primary silent");

    /* Before the first checkpoint there is nothing to resume: exit 3. */
    for (int why = RECEIVER_END_LOST; why <= RECEIVER_END_TIMEOUT; why++) {
        d = end((receiver_end)why, true, false);
        assert_int_equal(d.verdict, STANDBY_NOTHING_APPLIED);
        assert_int_equal(d.next, STANDBY_STOPPED);
        assert_true(d.exit);
        assert_int_equal(d.status, STANDBY_EXIT_NOTHING);
        assert_int_equal(d.status, 3);
    }
}

static void test_primary_ends(void **state)
{
    (void)state;
    /* EOF: the primary stopped replication; no failover, exit 0. */
    standby_decision d = end(RECEIVER_END_EOF, true, true);
    assert_int_equal(d.verdict, STANDBY_PRIMARY_STOPPED);
    assert_int_equal(d.next, STANDBY_STOPPED);
    assert_true(d.exit);
    assert_int_equal(d.status, 0);
    d = end(RECEIVER_END_EOF, true, false);
    assert_int_equal(d.status, 0);

    /* A refused stream, or one we cut without asking: exit 4. */
    d = end(RECEIVER_END_PROTOCOL, true, true);
    assert_int_equal(d.verdict, STANDBY_REFUSED);
    assert_true(d.exit);
    assert_int_equal(d.status, STANDBY_EXIT_REFUSED);
    assert_int_equal(d.status, 4);
    d = end(RECEIVER_END_LOCAL, true, false);
    assert_int_equal(d.status, 4);
}

static void test_not_a_primary(void **state)
{
    (void)state;
    /* Whatever ended a connection before the VM, wait for another. */
    for (int why = RECEIVER_END_EOF; why <= RECEIVER_END_LOCAL; why++) {
        standby_decision d = end((receiver_end)why, false, false);
        assert_int_equal(d.verdict, STANDBY_NOT_A_PRIMARY);
        assert_int_equal(d.next, STANDBY_WAITING);
        assert_false(d.exit);
    }
    /* ... unless the process was ending anyway. */
    standby_decision d = standby_on_end(&(standby_end){
        .why = RECEIVER_END_LOCAL, .request = STANDBY_REQUEST_EXIT,
        .request_status = 143 });
    assert_int_equal(d.verdict, STANDBY_NOT_A_PRIMARY);
    assert_int_equal(d.next, STANDBY_WAITING);
    assert_true(d.exit);
    assert_int_equal(d.status, 143);
}

static void test_requested(void **state)
{
    (void)state;
    /* What the process asked for wins over how the receiver ended. */
    for (int why = RECEIVER_END_EOF; why <= RECEIVER_END_LOCAL; why++) {
        standby_decision d = standby_on_end(&(standby_end){
            .why = (receiver_end)why, .have_vm = true, .applied = true,
            .request = STANDBY_REQUEST_FAILOVER });
        assert_int_equal(d.verdict, STANDBY_AS_REQUESTED);
        assert_int_equal(d.next, STANDBY_FAILOVER);
        assert_false(d.exit);
        assert_string_equal(d.failover_reason, "requested");

        d = standby_on_end(&(standby_end){
            .why = (receiver_end)why, .have_vm = true, .applied = false,
            .request = STANDBY_REQUEST_EXIT, .request_status = 130 });
        assert_int_equal(d.verdict, STANDBY_AS_REQUESTED);
        assert_int_equal(d.next, STANDBY_STOPPED);
        assert_true(d.exit);
        assert_int_equal(d.status, 130);
    }
}

static void test_stop(void **state)
{
    (void)state;
    assert_int_equal(standby_on_stop(STANDBY_RUNNING), STANDBY_STOP_VM);
    assert_int_equal(standby_on_stop(STANDBY_REPLICATING),
                     STANDBY_STOP_REPLICATION);
    assert_int_equal(standby_on_stop(STANDBY_FAILOVER), STANDBY_STOP_IGNORED);
    assert_int_equal(standby_on_stop(STANDBY_WAITING), STANDBY_STOP_EXIT);
    assert_int_equal(standby_on_stop(STANDBY_STOPPED), STANDBY_STOP_EXIT);
}

static void test_commands(void **state)
{
    (void)state;
    char err[256];

    assert_int_equal(standby_may_fail_over(STANDBY_REPLICATING, true,
                                           STANDBY_REQUEST_NONE, err,
                                           sizeof(err)), 0);
    assert_int_equal(standby_may_fail_over(STANDBY_WAITING, false,
                                           STANDBY_REQUEST_NONE, err,
                                           sizeof(err)), -EINVAL);
    assert_string_equal(err, "failover: the secondary is waiting");
    assert_int_equal(standby_may_fail_over(STANDBY_RUNNING, true,
                                           STANDBY_REQUEST_NONE, err,
                                           sizeof(err)), -EINVAL);
    assert_string_equal(err, "failover: the secondary is running");
    assert_int_equal(standby_may_fail_over(STANDBY_REPLICATING, false,
                                           STANDBY_REQUEST_NONE, err,
                                           sizeof(err)), -EAGAIN);
    assert_non_null(strstr(err, "nothing to fail over to"));
    assert_int_equal(standby_may_fail_over(STANDBY_REPLICATING, true,
                                           STANDBY_REQUEST_EXIT, err,
                                           sizeof(err)), -EAGAIN);
    assert_non_null(strstr(err, "already being stopped"));

    assert_int_equal(standby_may_stop(STANDBY_REPLICATING, false,
                                      STANDBY_REQUEST_NONE, err,
                                      sizeof(err)), 0);
    assert_int_equal(standby_may_stop(STANDBY_REPLICATING, true,
                                      STANDBY_REQUEST_FAILOVER, err,
                                      sizeof(err)), -EINVAL);
    assert_int_equal(standby_may_stop(STANDBY_WAITING, false,
                                      STANDBY_REQUEST_NONE, err,
                                      sizeof(err)), -EINVAL);
    assert_string_equal(err, "stop-replication: the secondary is waiting");

    assert_int_equal(standby_may_save(STANDBY_RUNNING, true, err,
                                      sizeof(err)), 0);
    assert_int_equal(standby_may_save(STANDBY_REPLICATING, true, err,
                                      sizeof(err)), 0);
    assert_int_equal(standby_may_save(STANDBY_REPLICATING, false, err,
                                      sizeof(err)), -EAGAIN);
    assert_string_equal(err, "the secondary is setup: no checkpoint has "
                             "been applied yet");
    assert_int_equal(standby_may_save(STANDBY_STOPPED, true, err,
                                      sizeof(err)), -EAGAIN);
    assert_string_equal(err, "the secondary is stopped: nothing to save");
}

/*
 * With a witness, a lost or silent primary is claimed first: never a
 * failover straight away; everything else ends as without one.
 */
/*
 * The primary's drop notice: exit 6, never a claim or a failover, with or
 * without a witness, whatever was applied, even when an operator's
 * failover (or its claim) came meanwhile: the primary runs the VM on.
 */
static void test_dropped(void **state)
{
    (void)state;
    standby_request reqs[] = { STANDBY_REQUEST_NONE, STANDBY_REQUEST_CLAIM,
                               STANDBY_REQUEST_FAILOVER };
    for (int i = 0; i < 12; i++) {
        standby_decision d = standby_on_end(&(standby_end){
            .why = RECEIVER_END_DROPPED, .have_vm = true,
            .applied = i & 1, .witness = i & 2, .request = reqs[i / 4] });
        assert_int_equal(d.verdict, STANDBY_DROPPED_BY_PRIMARY);
        assert_int_equal(d.next, STANDBY_DROPPED);
        assert_true(d.exit);
        assert_int_equal(d.status, STANDBY_EXIT_DROPPED);
        assert_int_equal(d.status, 6);
        assert_null(d.failover_reason);
    }
    assert_string_equal(standby_state_name(STANDBY_DROPPED, true), "dropped");
    assert_int_equal(standby_on_stop(STANDBY_DROPPED), STANDBY_STOP_EXIT);
}

/* Only a primary newer than every generation the witness decided. */
static void test_admit(void **state)
{
    (void)state;
    char err[160] = "";
    assert_int_equal(standby_admit(1, 0, err, sizeof(err)), 0);
    assert_int_equal(standby_admit(6, 5, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(standby_admit(5, 5, err, sizeof(err)), -EPERM);
    assert_string_equal(err, "primary of generation 5 is not newer than "
                        "generation 5 decided by the witness");
    assert_int_equal(standby_admit(1, 5, err, sizeof(err)), -EPERM);
    assert_string_equal(err, "primary of generation 1 is older than "
                        "generation 5 decided by the witness");
}

static void test_witness_end(void **state)
{
    (void)state;
    receiver_end whys[] = { RECEIVER_END_LOST, RECEIVER_END_TIMEOUT };
    for (int i = 0; i < 2; i++) {
        standby_decision d = standby_on_end(&(standby_end){
            .why = whys[i], .have_vm = true, .applied = true,
            .witness = true });
        assert_int_equal(d.verdict, STANDBY_PRIMARY_LOST);
        assert_int_equal(d.next, STANDBY_CLAIMING);
        assert_false(d.exit);
        assert_string_equal(d.failover_reason, i ? "primary silent"
                                                 : "primary lost");
        /* An operator's claim in flight changes nothing. */
        d = standby_on_end(&(standby_end){
            .why = whys[i], .have_vm = true, .applied = true,
            .witness = true, .request = STANDBY_REQUEST_CLAIM });
        assert_int_equal(d.next, STANDBY_CLAIMING);
    }
    /* Before checkpoint 1 there is nothing to claim for. */
    standby_decision d = standby_on_end(&(standby_end){
        .why = RECEIVER_END_LOST, .have_vm = true, .witness = true });
    assert_int_equal(d.next, STANDBY_STOPPED);
    assert_int_equal(d.status, STANDBY_EXIT_NOTHING);
    /* A clean stop, a refused stream: no claim. */
    d = standby_on_end(&(standby_end){ .why = RECEIVER_END_EOF,
                                       .have_vm = true, .applied = true,
                                       .witness = true });
    assert_int_equal(d.next, STANDBY_STOPPED);
    assert_int_equal(d.status, 0);
    d = standby_on_end(&(standby_end){ .why = RECEIVER_END_PROTOCOL,
                                       .have_vm = true, .applied = true,
                                       .witness = true });
    assert_int_equal(d.status, STANDBY_EXIT_REFUSED);
    /* The operator's failover was won already: it fails over. */
    d = standby_on_end(&(standby_end){
        .why = RECEIVER_END_LOCAL, .have_vm = true, .applied = true,
        .witness = true, .request = STANDBY_REQUEST_FAILOVER });
    assert_int_equal(d.next, STANDBY_FAILOVER);
}

/* What each outcome of the witness leads to. */
static void test_claim_outcomes(void **state)
{
    (void)state;
    /* The primary's loss: won -> live; lost -> exit 5; unknown -> wait. */
    assert_int_equal(standby_on_claim(false, CLAIM_WON),
                     STANDBY_CLAIM_FAIL_OVER);
    assert_int_equal(standby_on_claim(false, CLAIM_LOST),
                     STANDBY_CLAIM_FENCED);
    assert_int_equal(standby_on_claim(false, CLAIM_UNKNOWN),
                     STANDBY_CLAIM_WAIT);
    /* An operator's: won -> live; lost or unknown -> refused at once. */
    assert_int_equal(standby_on_claim(true, CLAIM_WON),
                     STANDBY_CLAIM_FAIL_OVER);
    assert_int_equal(standby_on_claim(true, CLAIM_LOST),
                     STANDBY_CLAIM_REFUSE);
    assert_int_equal(standby_on_claim(true, CLAIM_UNKNOWN),
                     STANDBY_CLAIM_REFUSE);
    assert_int_equal(standby_on_claim(false, CLAIM_CLAIMING),
                     STANDBY_CLAIM_NOTHING);
    assert_int_equal(standby_on_claim(true, CLAIM_IDLE),
                     STANDBY_CLAIM_NOTHING);
    assert_int_equal(STANDBY_EXIT_FENCED, 5);

    /* Claiming, the VM never ran here: a signal ends the process. */
    assert_int_equal(standby_on_stop(STANDBY_CLAIMING), STANDBY_STOP_EXIT);

    char err[256];
    /* A second failover while the first asks the witness: not yet. */
    assert_int_equal(standby_may_fail_over(STANDBY_REPLICATING, true,
                                           STANDBY_REQUEST_CLAIM, err,
                                           sizeof(err)), -EAGAIN);
    assert_string_equal(err, "failover: already asking the witness");
    assert_int_equal(standby_may_fail_over(STANDBY_CLAIMING, true,
                                           STANDBY_REQUEST_NONE, err,
                                           sizeof(err)), -EINVAL);
    assert_string_equal(err, "failover: the secondary is claiming (waiting "
                             "for the witness; failover --force goes live "
                             "without it)");
    /* --force: while claiming, or over an operator's claim in flight. */
    assert_int_equal(standby_may_force(STANDBY_CLAIMING, true,
                                       STANDBY_REQUEST_NONE, err,
                                       sizeof(err)), 0);
    assert_int_equal(standby_may_force(STANDBY_REPLICATING, true,
                                       STANDBY_REQUEST_CLAIM, err,
                                       sizeof(err)), 0);
    assert_int_equal(standby_may_force(STANDBY_REPLICATING, true,
                                       STANDBY_REQUEST_NONE, err,
                                       sizeof(err)), 0);
    /* ... but never with nothing to go live from, nor twice. */
    assert_int_equal(standby_may_force(STANDBY_REPLICATING, false,
                                       STANDBY_REQUEST_NONE, err,
                                       sizeof(err)), -EAGAIN);
    assert_int_equal(standby_may_force(STANDBY_RUNNING, true,
                                       STANDBY_REQUEST_NONE, err,
                                       sizeof(err)), -EINVAL);
    assert_int_equal(standby_may_force(STANDBY_REPLICATING, true,
                                       STANDBY_REQUEST_FAILOVER, err,
                                       sizeof(err)), -EAGAIN);
    assert_int_equal(standby_may_force(STANDBY_WAITING, false,
                                       STANDBY_REQUEST_NONE, err,
                                       sizeof(err)), -EINVAL);
}

static void test_state_names(void **state)
{
    (void)state;
    assert_string_equal(standby_state_name(STANDBY_WAITING, false),
                        "waiting");
    assert_string_equal(standby_state_name(STANDBY_REPLICATING, false),
                        "setup");
    assert_string_equal(standby_state_name(STANDBY_REPLICATING, true),
                        "active");
    assert_string_equal(standby_state_name(STANDBY_CLAIMING, true),
                        "claiming");
    assert_string_equal(standby_state_name(STANDBY_FAILOVER, true),
                        "failover");
    assert_string_equal(standby_state_name(STANDBY_RUNNING, true),
                        "running");
    assert_string_equal(standby_state_name(STANDBY_STOPPED, true),
                        "stopped");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_primary_lost),
        cmocka_unit_test(test_primary_ends),
        cmocka_unit_test(test_not_a_primary),
        cmocka_unit_test(test_requested),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_witness_end),
        cmocka_unit_test(test_dropped),
        cmocka_unit_test(test_admit),
        cmocka_unit_test(test_claim_outcomes),
        cmocka_unit_test(test_state_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
