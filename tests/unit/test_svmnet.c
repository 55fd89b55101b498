/*
 * Unit tests for secondary/svmnet: the COLO secondary VM's NIC, without
 * a VM.  Its frames go to the return path (a send function of the test's,
 * run by a real event loop), tagged with the checkpoint of the last
 * reset; mirrored input waits for the reset to its checkpoint.  What a
 * VM is needed for (delivering into its NIC, the wire at failover) is
 * tests/net/test_vm_net.c's and the colo-net tests'.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <string.h>

#include "secondary/svm.h"
#include "secondary/svmnet.h"
#include "vm/pc.h"

/* What the primary got: the COLO_FRAMEs' tags and first bytes. */
static struct { uint64_t id; uint8_t first; uint16_t len; } got[2048];
static size_t ngot;
static int send_rc;

static int send_msg(void *opaque, const retpath_msg *m)
{
    (void)opaque;
    if (send_rc != 1)
        return send_rc;
    assert_int_equal(m->type, RETPATH_COLO_FRAME);
    assert_true(ngot < 2048);
    got[ngot].id = m->value64;
    got[ngot].first = (uint8_t)m->text[0];
    got[ngot].len = m->len;
    ngot++;
    return 1;
}

static int never_live(void *opaque, const void *frame, size_t len)
{
    (void)opaque;
    (void)frame;
    (void)len;
    fail_msg("a frame reached the wire before failover");
    return 0;
}

typedef struct env {
    struct event_base *base;
    svmnet *n;
} env;

static int setup(void **state)
{
    static env e;
    ngot = 0;
    send_rc = 1;
    e.base = event_base_new();
    assert_non_null(e.base);
    assert_int_equal(svmnet_new(&e.n, e.base, send_msg, NULL, never_live,
                                NULL), 0);
    *state = &e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    svmnet_free(e->n);
    event_base_free(e->base);
    return 0;
}

static void run_loop(env *e)
{
    event_base_loop(e->base, EVLOOP_NONBLOCK);
}

static void out(env *e, uint8_t first, size_t len)
{
    uint8_t f[64] = { first };
    assert_int_equal(svmnet_transmit(e->n, f, len), 0);
}

/* Frames go out tagged with the reset's checkpoint, in order. */
static void test_frames_tagged(void **state)
{
    env *e = *state;
    svmnet_end_reset(e->n, NULL, 3);
    out(e, 1, 60);
    out(e, 2, 42);
    run_loop(e);
    assert_int_equal(ngot, 2);
    assert_int_equal(got[0].id, 3);
    assert_int_equal(got[0].first, 1);
    assert_int_equal(got[0].len, 60);
    assert_int_equal(got[1].first, 2);
    svmnet_stats st;
    svmnet_get_stats(e->n, &st);
    assert_int_equal(st.output_frames, 2);
    assert_int_equal(st.sent_frames, 2);
}

/*
 * A return path with no room keeps them (tried again); a reset drops
 * those of the older checkpoint, which the primary is past; more than
 * SVMNET_MAX_OUTPUT waiting are dropped and counted.
 */
static void test_frames_bounded_and_stale(void **state)
{
    env *e = *state;
    svmnet_end_reset(e->n, NULL, 1);
    send_rc = 0;
    for (unsigned i = 0; i < SVMNET_MAX_OUTPUT + 5; i++)
        out(e, (uint8_t)i, 60);
    run_loop(e);
    assert_int_equal(ngot, 0);
    svmnet_stats st;
    svmnet_get_stats(e->n, &st);
    assert_int_equal(st.dropped_frames, 5);
    svmnet_begin_reset(e->n);
    svmnet_end_reset(e->n, NULL, 2);
    out(e, 9, 60);
    send_rc = 1;
    run_loop(e);
    assert_int_equal(ngot, 1);
    assert_int_equal(got[0].id, 2);
    assert_int_equal(got[0].first, 9);
    svmnet_get_stats(e->n, &st);
    assert_int_equal(st.dropped_frames, 5 + SVMNET_MAX_OUTPUT);
    /* Oversize or empty: dropped, never sent. */
    uint8_t big[1515] = { 0 };
    assert_int_equal(svmnet_transmit(e->n, big, sizeof(big)), 0);
    assert_int_equal(svmnet_transmit(e->n, big, 0), 0);
    run_loop(e);
    assert_int_equal(ngot, 1);
}

/*
 * Mirrored input for a checkpoint the SVM has not reset to yet waits for
 * it; input of an older checkpoint is dropped (at once, or at the reset
 * past it); more than SVMNET_MAX_INPUT waiting are dropped.
 */
static void test_input_waits_for_its_reset(void **state)
{
    env *e = *state;
    uint8_t f[60] = { 0 };
    svmnet_input(e->n, 3, f, sizeof(f));
    svmnet_input(e->n, 5, f, sizeof(f));
    svmnet_stats st;
    svmnet_get_stats(e->n, &st);
    assert_int_equal(st.input_frames, 2);
    assert_int_equal(st.input_dropped, 0);
    /* The reset to 4: 3's is stale, 5's waits on. */
    svmnet_begin_reset(e->n);
    svmnet_end_reset(e->n, NULL, 4);
    svmnet_get_stats(e->n, &st);
    assert_int_equal(st.input_dropped, 1);
    assert_int_equal(st.input_delivered, 0);
    svmnet_input(e->n, 2, f, sizeof(f));            /* past: dropped */
    svmnet_get_stats(e->n, &st);
    assert_int_equal(st.input_dropped, 2);
    for (unsigned i = 0; i < SVMNET_MAX_INPUT; i++)
        svmnet_input(e->n, 6, f, sizeof(f));
    svmnet_get_stats(e->n, &st);
    assert_int_equal(st.input_dropped, 3);      /* 1 waiting + the rest */
    assert_int_equal(st.input_frames, 3 + SVMNET_MAX_INPUT);
}

/* A COLO stream of a Linux guest's PC: refused before any VM is made. */
static void test_svm_refuses_pc(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    svm_opts o = { .base = base, .send = send_msg };
    svm *s;
    assert_int_equal(svm_new(&s, &o), 0);
    vmshape shape = { .mem_size = 64 << 20, .vcpus = 1,
                      .machine = VM_MACHINE_PC };
    char err[256] = "";
    assert_int_equal(svm_prepare(s, &shape, err, sizeof(err)), -ENOTSUP);
    assert_string_equal(err, PC_NO_COLO);
    svm_free(s);
    event_base_free(base);
}

/* Nor a COLO stream of a VM with a disk (the SVM would write its copy). */
static void test_svm_refuses_disk(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    svm_opts o = { .base = base, .send = send_msg };
    svm *s;
    assert_int_equal(svm_new(&s, &o), 0);
    vmshape shape = { .mem_size = 64 << 20, .vcpus = 1,
                      .disk_size = 8 << 20 };
    char err[256] = "";
    assert_int_equal(svm_prepare(s, &shape, err, sizeof(err)), -ENOTSUP);
    assert_string_equal(err, VM_DISK_NO_COLO);
    svm_free(s);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_svm_refuses_pc),
        cmocka_unit_test(test_svm_refuses_disk),
        cmocka_unit_test_setup_teardown(test_frames_tagged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frames_bounded_and_stale, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_input_waits_for_its_reset,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
