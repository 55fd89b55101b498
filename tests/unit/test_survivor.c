/*
 * Unit tests for secondary/survivor: the replicator options a secondary
 * that went live protects its VM with (made in one place from the
 * secondary's own), the output hooks its VMs are made with, and protect
 * refused until the VM runs here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "primary/outqueue.h"
#include "primary/colo.h"
#include "secondary/survivor.h"

static void test_opts(void **state)
{
    (void)state;
    secondary_opts o = {
        .listen = "127.0.0.1:0",
        .failure_ns = 700000000u,
        .heartbeat_ns = 40000000u,
        .tls = { .creds = "certs/b", .peer = "node-a", .insecure = false },
        .witness = "http://127.0.0.1:2379",
        .witness_timeout_ns = 250000000u,
        .witness_tls = "certs/etcd",
    };
    vmshape shape = { .mem_size = 64 << 20, .vcpus = 2, .has_net = true,
                      .mac = { 2, 0, 10, 78, 0, 2 } };
    snprintf(shape.pair.name, sizeof(shape.pair.name), "counter");
    shape.pair.generation = 3;
    replicator_opts r;
    memset(&r, 0x5a, sizeof(r));
    survivor_opts(&o, &shape, &r);

    /* No secondary yet; the VM ran before: none must protect it first. */
    assert_null(r.secondary);
    assert_true(r.timing.running);
    assert_int_equal(r.timing.reconnect_ns, 0);
    /* The pairing taken over: its next bring-up is generation 4. */
    assert_memory_equal(&r.shape, &shape, sizeof(shape));
    assert_int_equal(r.shape.pair.generation, 3);
    assert_string_equal(r.shape.pair.name, "counter");
    /* The secondary's own timings; the primary's default interval. */
    assert_int_equal(r.timing.failure_ns, o.failure_ns);
    assert_int_equal(r.timing.heartbeat_ns, o.heartbeat_ns);
    assert_int_equal(r.timing.interval_ns, 0);
    assert_false(r.timing.witness);     /* replicator_new's to set */
    /* Its credentials, not its primary's name. */
    assert_string_equal(r.tls.creds, "certs/b");
    assert_null(r.tls.peer);
    assert_false(r.tls.insecure);
    assert_string_equal(r.witness, o.witness);
    assert_int_equal(r.witness_timeout_ns, o.witness_timeout_ns);
    assert_string_equal(r.witness_tls, "certs/etcd");
    assert_null(r.may_protect);
    assert_null(r.opaque);

    o.tls = (tls_opts){ .insecure = true };
    o.witness = NULL;
    survivor_opts(&o, &shape, &r);
    assert_null(r.tls.creds);
    assert_true(r.tls.insecure);
    assert_null(r.witness);
}

static void test_output_and_protect(void **state)
{
    (void)state;
    survivor *sv;
    char err[256];
    assert_int_equal(survivor_new(&sv, NULL), 0);
    /* The receiver's VMs: output through the queue from the start. */
    replica_output out = survivor_output(sv);
    /* Console and frames through colo.h's and colonet.h's comparison
       (idle outside COLO mode). */
    assert_ptr_equal(out.console_fn, colo_console);
    assert_ptr_equal(out.transmit_fn, colonet_transmit);
    assert_non_null(out.console_opaque);
    assert_non_null(out.transmit_opaque);

    assert_false(survivor_live(sv));
    json_t *args = json_pack("{s:s}", "address", "127.0.0.1:4000");
    int rc = survivor_protect(sv, "active", args, err, sizeof(err));
    assert_int_equal(rc, -ENOTSUP);
    assert_non_null(strstr(err, "this secondary is not running the VM "
                                "(active)"));
    json_decref(args);
    args = json_pack("{s:s, s:s}", "key", "heartbeat", "value", "20ms");
    rc = survivor_set(sv, "waiting for a primary", args, err, sizeof(err));
    assert_int_equal(rc, -ENOTSUP);
    assert_non_null(strstr(err, "this secondary is not running the VM "
                                "(waiting for a primary): set works"));
    json_decref(args);
    /* stop-replication stays the secondary's own. */
    assert_int_equal(survivor_stop(sv, err, sizeof(err)), -ENOENT);
    /* Not live: status and metrics gain nothing, save is not held off. */
    json_t *st = json_object();
    survivor_status(sv, st);
    assert_int_equal(json_object_size(st), 0);
    json_decref(st);
    assert_int_equal(survivor_may_save(sv, err, sizeof(err)), 0);
    survivor_end(sv);
    survivor_free(sv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opts),
        cmocka_unit_test(test_output_and_protect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
