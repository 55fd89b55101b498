/*
 * Unit tests for primary/colo: the console comparison of COLO mode.  The
 * primary's bytes go through colo_console into a real outqueue (holding
 * from checkpoint 1), the SVM's come as colo_secondary; what is released
 * is what the queue's console sink received.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "checkpoint/retpath.h"
#include "primary/colo.h"
#include "primary/outqueue.h"
#include "vm/mono.h"

#define MS 1000000ull

/* What the world saw: the console sink's bytes. */
static char seen[4096];
static size_t nseen;

static int sink(void *opaque, const void *buf, size_t len)
{
    (void)opaque;
    assert_true(nseen + len < sizeof(seen));
    memcpy(seen + nseen, buf, len);
    nseen += len;
    seen[nseen] = '\0';
    return 0;
}

typedef struct env {
    outqueue *q;
    colo *c;
} env;

/* A queue and a comparison at checkpoint 1 (held, comparing). */
static int setup(void **state)
{
    static env e;
    nseen = 0;
    seen[0] = '\0';
    assert_int_equal(outqueue_new(&e.q), 0);
    outqueue_set_console_sink(e.q, sink, NULL);
    assert_int_equal(colo_new(&e.c, e.q, 100 * MS), 0);
    outqueue_begin(e.q);
    outqueue_checkpoint(e.q, 1);
    colo_checkpoint(e.c, 1);
    *state = &e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    colo_free(e->c);
    outqueue_free(e->q);
    return 0;
}

static void pri(env *e, const char *s)
{
    colo_console(e->c, s, strlen(s));
}

/*
 * The secondary's side of the exact release, answered at once: each
 * record colo asks for is "kept" and answered.  The records' offsets.
 */
static uint64_t confirm(env *e)
{
    uint64_t id, upto, last = 0;
    while (colo_release_due(e->c, &id, &upto)) {
        last = upto;
        colo_released(e->c, id, upto);
    }
    return last;
}

/* The SVM's bytes, then the release records answered. */
static colo_verdict sec(env *e, uint64_t id, const char *s)
{
    colo_verdict v = colo_secondary(e->c, id, s, strlen(s), 0);
    confirm(e);
    return v;
}

/* Matching bytes leave at once, without an ACK; only the matched prefix. */
static void test_match_releases(void **state)
{
    env *e = *state;
    pri(e, "tick 1\ntick 2\n");
    assert_int_equal(nseen, 0);                 /* held, as checkpoint mode */
    assert_int_equal(sec(e, 1, "tick 1\nti"), COLO_OK);
    assert_string_equal(seen, "tick 1\nti");    /* part of one write */
    assert_int_equal(sec(e, 1, "ck 2\n"), COLO_OK);
    assert_string_equal(seen, "tick 1\ntick 2\n");
    /* The SVM ahead: its bytes wait for the primary's. */
    assert_int_equal(sec(e, 1, "tick 3\n"), COLO_OK);
    assert_int_equal(nseen, 14);
    pri(e, "tick 3\n");
    confirm(e);
    assert_string_equal(seen, "tick 1\ntick 2\ntick 3\n");
    colo_stats st;
    colo_get_stats(e->c, &st);
    assert_int_equal(st.matched_bytes, 21);
    assert_int_equal(st.pending_primary, 0);
    assert_int_equal(st.mismatches, 0);
    /* Nothing left for the ACK to release twice. */
    outqueue_acked(e->q, 2);
    assert_int_equal(nseen, 21);
}

/*
 * Matched bytes leave only once the secondary answered the release
 * record (so its SVM will not write them at failover); one record on its
 * way at a time; answers of another checkpoint, or beyond the record,
 * release nothing; a record that could not be queued is asked again.
 */
static void test_exact_release(void **state)
{
    env *e = *state;
    pri(e, "one\ntwo\n");
    colo_secondary(e->c, 1, "one\n", 4, 0);
    assert_int_equal(nseen, 0);                 /* matched, not released */
    uint64_t id, upto;
    assert_true(colo_release_due(e->c, &id, &upto));
    assert_int_equal(id, 1);
    assert_int_equal(upto, 4);
    colo_secondary(e->c, 1, "two\n", 4, 0);
    assert_false(colo_release_due(e->c, &id, &upto));   /* one at a time */
    assert_false(colo_released(e->c, 2, 4));    /* another checkpoint */
    assert_false(colo_released(e->c, 1, 8));    /* beyond the record */
    assert_int_equal(nseen, 0);
    assert_true(colo_released(e->c, 1, 4));     /* more is due */
    assert_string_equal(seen, "one\n");
    assert_true(colo_release_due(e->c, &id, &upto));
    assert_int_equal(upto, 8);
    colo_release_failed(e->c, 1);               /* the link had no room */
    assert_true(colo_release_due(e->c, &id, &upto));
    assert_false(colo_released(e->c, 1, 8));
    assert_string_equal(seen, "one\ntwo\n");
    colo_stats st;
    colo_get_stats(e->c, &st);
    assert_int_equal(st.matched_bytes, 8);
    assert_int_equal(st.released_bytes, 8);
}

/* A difference asks for one checkpoint; the bytes wait for its ACK. */
static void test_mismatch(void **state)
{
    env *e = *state;
    pri(e, "rand 17\ntick 1\n");
    assert_int_equal(sec(e, 1, "rand 4"), COLO_CHECKPOINT_MISMATCH);
    assert_int_equal(nseen, 0);                 /* nothing of the SVM's */
    /* Once per epoch. */
    assert_int_equal(sec(e, 1, "2\n"), COLO_OK);
    pri(e, "tick 2\n");
    colo_stats st;
    colo_get_stats(e->c, &st);
    assert_true(st.diverged);
    assert_int_equal(st.mismatches, 1);
    /* Checkpoint 2: the epoch's bytes go on its ACK, the primary's own. */
    outqueue_checkpoint(e->q, 2);
    colo_checkpoint(e->c, 2);
    pri(e, "tick 3\n");
    outqueue_acked(e->q, 2);
    assert_string_equal(seen, "rand 17\ntick 1\ntick 2\n");
    /* Comparing again from checkpoint 2; old tags are ignored. */
    assert_int_equal(sec(e, 1, "tick 3\n"), COLO_OK);
    assert_int_equal(sec(e, 2, "tick 3\n"), COLO_OK);
    assert_string_equal(seen, "rand 17\ntick 1\ntick 2\ntick 3\n");
}

/* Matched bytes of an epoch behind unacknowledged ones wait for the ACK. */
static void test_order_behind_ack(void **state)
{
    env *e = *state;
    pri(e, "a\n");                  /* epoch of checkpoint 1 */
    outqueue_checkpoint(e->q, 2);
    colo_checkpoint(e->c, 2);
    pri(e, "b\n");
    assert_int_equal(sec(e, 2, "b\n"), COLO_OK);
    assert_int_equal(nseen, 0);     /* "a" first, on ACK 2 */
    outqueue_acked(e->q, 2);
    assert_string_equal(seen, "a\nb\n");
}

/* Unmatched primary bytes: the timeout runs from the later of the write
 * and the SVM's word that it runs from the epoch's checkpoint, plus the
 * byte's distance from the checkpoint (the SVM writes it that much after
 * it starts). */
static void test_timeout(void **state)
{
    env *e = *state;
    pri(e, "x");
    uint64_t t0 = mono_ns() + 1000 * MS;    /* the ACK, after the write */
    /* No ACK yet: the secondary is still applying. */
    assert_int_equal(colo_tick(e->c, UINT64_MAX / 2), COLO_OK);
    colo_acked(e->c, 1, t0);
    /* The SVM starting takes time: from its word on. */
    assert_int_equal(colo_tick(e->c, t0 + 500 * MS), COLO_OK);
    assert_int_equal(colo_secondary(e->c, 1, "", 0, t0 + 600 * MS),
                     COLO_OK);
    /* (Plus the write's distance from the checkpoint: microseconds.) */
    assert_int_equal(colo_tick(e->c, t0 + 690 * MS), COLO_OK);
    assert_int_equal(colo_tick(e->c, t0 + 750 * MS),
                     COLO_CHECKPOINT_TIMEOUT);
    assert_int_equal(colo_tick(e->c, t0 + 900 * MS), COLO_OK);  /* once */
    colo_stats st;
    colo_get_stats(e->c, &st);
    assert_int_equal(st.timeouts, 1);
    /* An ACK of another checkpoint does not start it. */
    outqueue_checkpoint(e->q, 2);
    colo_checkpoint(e->c, 2);
    pri(e, "y");
    colo_acked(e->c, 1, t0);
    assert_int_equal(colo_tick(e->c, UINT64_MAX / 2), COLO_OK);
    /* An SVM that never says it runs: from the ACK, with the grace. */
    colo_acked(e->c, 2, t0);
    assert_int_equal(colo_tick(e->c, t0 + COLO_READY_GRACE * 100 * MS +
                                         99 * MS), COLO_OK);
    assert_int_equal(colo_tick(e->c, t0 + COLO_READY_GRACE * 100 * MS +
                                         100 * MS),
                     COLO_CHECKPOINT_TIMEOUT);
    /* Matched in time: nothing to ask. */
    outqueue_checkpoint(e->q, 3);
    colo_checkpoint(e->c, 3);
    pri(e, "y");
    colo_acked(e->c, 3, t0);
    assert_int_equal(colo_secondary(e->c, 3, "", 0, t0), COLO_OK);
    assert_int_equal(sec(e, 3, "y"), COLO_OK);
    assert_int_equal(colo_tick(e->c, UINT64_MAX / 2), COLO_OK);
}

/* More unmatched bytes than the bound is a divergence. */
static void test_bound(void **state)
{
    env *e = *state;
    static char big[COLO_MAX_PENDING / 4];
    memset(big, 'z', sizeof(big));
    for (int i = 0; i < 4; i++)
        colo_secondary(e->c, 1, big, sizeof(big), 0);
    assert_int_equal(colo_secondary(e->c, 1, "z", 1, 0),
                     COLO_CHECKPOINT_MISMATCH);
}

/* Not comparing (checkpoint mode, or replication over): straight through. */
static void test_idle(void **state)
{
    env *e = *state;
    colo_stop(e->c);
    outqueue_release_all(e->q);
    pri(e, "free\n");
    assert_string_equal(seen, "free\n");
    assert_int_equal(sec(e, 1, "free\n"), COLO_OK);
    colo_stats st;
    colo_get_stats(e->c, &st);
    assert_int_equal(st.ignored_bytes, 5);
    assert_int_equal(colo_tick(e->c, UINT64_MAX / 2), COLO_OK);
}

/* COLO_CONSOLE on the return path: the bytes and the tag, bounds. */
static void test_retpath(void **state)
{
    (void)state;
    qfile *f = qfile_open_mem("rp");
    static char big[RETPATH_COLO_DATA_MAX + 100];
    memset(big, 'b', sizeof(big));
    retpath_put_colo_console(f, 7, "tick 1\n", 7);
    retpath_put_colo_console(f, 8, NULL, 0);            /* "runs from 8" */
    retpath_put_colo_console(f, 9, big, sizeof(big));   /* cut to the max */
    size_t len;
    const uint8_t *d = qfile_mem_data(f, &len);
    retpath_msg m;
    char err[256];
    int n = retpath_parse(d, len, &m, err, sizeof(err));
    assert_int_equal(n, 4 + 8 + 7);
    assert_int_equal(m.type, RETPATH_COLO_CONSOLE);
    assert_int_equal(m.value64, 7);
    assert_int_equal(m.len, 7);
    assert_memory_equal(m.text, "tick 1\n", 7);
    int n2 = retpath_parse(d + n, len - n, &m, err, sizeof(err));
    assert_int_equal(n2, 12);
    assert_int_equal(m.value64, 8);
    assert_int_equal(m.len, 0);
    int n3 = retpath_parse(d + n + n2, len - n - n2, &m, err, sizeof(err));
    assert_int_equal(n3, 4 + 8 + RETPATH_COLO_DATA_MAX);
    assert_int_equal(m.len, RETPATH_COLO_DATA_MAX);
    assert_string_equal(retpath_type_name(RETPATH_COLO_CONSOLE),
                        "COLO_CONSOLE");
    /* Too short for its tag, too long for the return path: refused. */
    const uint8_t short7[] = { 0x7f, 0x10, 0, 7, 0, 0, 0, 0, 0, 0, 1 };
    assert_int_equal(retpath_parse(short7, sizeof(short7), &m, err,
                                   sizeof(err)), -EINVAL);
    const uint8_t long1025[] = { 0x7f, 0x10, 0x04, 0x01 };
    assert_int_equal(retpath_parse(long1025, sizeof(long1025), &m, err,
                                   sizeof(err)), -EINVAL);
    qfile_close(f);
}

static void test_names(void **state)
{
    (void)state;
    colo_mode m;
    assert_int_equal(colo_mode_parse("colo", &m), 0);
    assert_int_equal(m, COLO_MODE_COLO);
    assert_int_equal(colo_mode_parse("checkpoint", &m), 0);
    assert_int_equal(m, COLO_MODE_CHECKPOINT);
    assert_int_equal(colo_mode_parse("remus", &m), -EINVAL);
    assert_string_equal(colo_cause_name(COLO_CAUSE_LIMIT),
                        "held_output_limit");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exact_release, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_match_releases, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_behind_ack, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle, setup, teardown),
        cmocka_unit_test(test_retpath),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
