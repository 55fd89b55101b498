/*
 * Unit tests for primary/colonet: COLO's frame comparison and input
 * mirror.  The primary's frames go through colonet_transmit into a real
 * outqueue (holding from checkpoint 1) and a real comparator; the SVM's
 * come as colonet_secondary; what is released is what the queue's frame
 * sink received.  Times are the caller's (colonet_tick's now), frames
 * are put at the real monotonic clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "primary/colonet.h"
#include "primary/outqueue.h"
#include "tests/unit/netframes.h"
#include "vm/mono.h"

#define MS 1000000ull

typedef struct frame {
    size_t len;
    uint8_t b[NETFRAMES_MAX];
} frame;

/* What the world saw: the frame sink's frames, in order. */
static frame seen[64];
static size_t nseen;

static int sink(void *opaque, const void *buf, size_t len)
{
    (void)opaque;
    assert_true(nseen < 64);
    seen[nseen].len = len;
    memcpy(seen[nseen].b, buf, len);
    nseen++;
    return 0;
}

/* What the mirror sent: tags and lengths. */
static uint64_t mirrored_ids[16];
static size_t nmirrored;
static int mirror_rc;

static int mirror(void *opaque, uint64_t id, const void *f, size_t len)
{
    (void)opaque;
    (void)f;
    (void)len;
    if (mirror_rc == 0 && nmirrored < 16)
        mirrored_ids[nmirrored++] = id;
    return mirror_rc;
}

typedef struct env {
    outqueue *q;
    colonet *n;
} env;

/* A queue and a comparison at checkpoint 1 (held, comparing). */
static int setup(void **state)
{
    static env e;
    nseen = nmirrored = 0;
    mirror_rc = 0;
    assert_int_equal(outqueue_new(&e.q), 0);
    outqueue_set_frame_sink(e.q, sink, NULL);
    assert_int_equal(colonet_new(&e.n, e.q, 100 * MS), 0);
    colonet_set_mirror(e.n, mirror, NULL);
    outqueue_begin(e.q);
    outqueue_checkpoint(e.q, 1);
    colonet_checkpoint(e.n, 1);
    *state = &e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    colonet_free(e->n);
    outqueue_free(e->q);
    return 0;
}

/* The guest's UDP reply from port sport with this text and IP id. */
static frame udp(uint16_t sport, const char *text, uint16_t id)
{
    frame f;
    nf_host h = nf_default();
    h.id = id;
    f.len = nf_udp(f.b, &h, sport, 40000, text, strlen(text));
    return f;
}

static void pri(env *e, const frame *f)
{
    assert_int_equal(colonet_transmit(e->n, f->b, f->len), 0);
}

static colonet_ask sec(env *e, uint64_t id, const frame *f)
{
    return colonet_secondary(e->n, id, f->b, f->len, mono_ns());
}

static void assert_seen(size_t i, const frame *f)
{
    assert_true(i < nseen);
    assert_int_equal(seen[i].len, f->len);
    assert_memory_equal(seen[i].b, f->b, f->len);
}

/* A match releases the primary's frame (its own IP id) at once, no ACK. */
static void test_match_releases(void **state)
{
    env *e = *state;
    frame p = udp(7000, "1 OK\n", 11), s = udp(7000, "1 OK\n", 907);
    pri(e, &p);
    assert_int_equal(nseen, 0);
    assert_int_equal(sec(e, 1, &s), COLONET_OK);
    assert_int_equal(nseen, 1);
    assert_seen(0, &p);
    /* The SVM first, then the primary: released on the vCPU's call. */
    frame p2 = udp(7000, "2 OK\n", 12), s2 = udp(7000, "2 OK\n", 908);
    assert_int_equal(sec(e, 1, &s2), COLONET_OK);
    pri(e, &p2);
    assert_int_equal(nseen, 2);
    assert_seen(1, &p2);
    colonet_stats st;
    colonet_get_stats(e->n, &st);
    assert_int_equal(st.matched, 2);
    assert_int_equal(st.held_frames[0], 0);
    assert_int_equal(st.latency_ns.count, 2);
}

/* Flows do not wait for each other. */
static void test_flows_independent(void **state)
{
    env *e = *state;
    frame a = udp(7000, "a\n", 1), b = udp(7001, "b\n", 2);
    pri(e, &a);
    pri(e, &b);
    assert_int_equal(sec(e, 1, &b), COLONET_OK);
    assert_int_equal(nseen, 1);
    assert_seen(0, &b);
    assert_int_equal(sec(e, 1, &a), COLONET_OK);
    assert_seen(1, &a);
}

/*
 * A mismatch asks for a checkpoint once per epoch; the differing frame
 * waits for the checkpoint and then for its ACK, like checkpoint mode.
 */
static void test_mismatch_then_checkpoint(void **state)
{
    env *e = *state;
    frame p = udp(7000, "TIME 1001\n", 1), s = udp(7000, "TIME 1002\n", 1);
    frame p2 = udp(7002, "x\n", 2), s2 = udp(7002, "y\n", 2);
    pri(e, &p);
    assert_int_equal(sec(e, 1, &s), COLONET_MISMATCH);
    pri(e, &p2);
    assert_int_equal(sec(e, 1, &s2), COLONET_OK);      /* asked already */
    assert_int_equal(nseen, 0);
    /* Checkpoint 2: the held frames become epoch-1 items of the queue. */
    outqueue_checkpoint(e->q, 2);
    colonet_checkpoint(e->n, 2);
    assert_int_equal(nseen, 0);
    colonet_stats st;
    colonet_get_stats(e->n, &st);
    assert_int_equal(st.held_frames[0], 0);
    assert_int_equal(st.epoch, 2);
    outqueue_acked(e->q, 2);
    assert_int_equal(nseen, 2);
    assert_seen(0, &p);
    assert_seen(1, &p2);
    /* Comparing again, against the SVM's frames tagged 2. */
    frame p3 = udp(7000, "3\n", 3);
    pri(e, &p3);
    assert_int_equal(sec(e, 1, &p3), COLONET_OK);      /* old tag: ignored */
    assert_int_equal(nseen, 2);
    assert_int_equal(sec(e, 2, &p3), COLONET_OK);
    assert_int_equal(nseen, 3);
    colonet_get_stats(e->n, &st);
    assert_int_equal(st.ignored_frames, 1);
    assert_int_equal(st.mismatched, 2);     /* two flows, one ask */
}

/*
 * The timeout runs on the SVM's time line: nothing before the SVM is
 * known; a frame is late at its time + lag + timeout, asked once.
 */
static void test_timeout_on_svm_time_line(void **state)
{
    env *e = *state;
    frame p = udp(7000, "slow\n", 1);
    uint64_t t0 = mono_ns();
    pri(e, &p);
    assert_int_equal(colonet_tick(e->n, t0 + 500 * MS, 0, false), COLONET_OK);
    /* The SVM started 300 ms after the primary: not late at +350 ms. */
    assert_int_equal(colonet_tick(e->n, t0 + 350 * MS, 300 * MS, true),
                     COLONET_OK);
    uint64_t late = mono_ns() + 401 * MS;
    assert_int_equal(colonet_tick(e->n, late, 300 * MS, true),
                     COLONET_TIMEOUT);
    assert_int_equal(colonet_tick(e->n, late + MS, 300 * MS, true),
                     COLONET_OK);
    assert_int_equal(nseen, 0);
}

/* The mirror: nothing before checkpoint 1, then tagged with the epoch;
   a mirror that refuses is counted, not retried. */
static void test_mirror_tags(void **state)
{
    env *e = *state;
    frame in = udp(53, "query\n", 1);
    colonet_input(e->n, in.b, in.len);
    outqueue_checkpoint(e->q, 2);
    colonet_checkpoint(e->n, 2);
    colonet_input(e->n, in.b, in.len);
    mirror_rc = -ENOBUFS;
    colonet_input(e->n, in.b, in.len);
    assert_int_equal(nmirrored, 2);
    assert_int_equal(mirrored_ids[0], 1);
    assert_int_equal(mirrored_ids[1], 2);
    colonet_stats st;
    colonet_get_stats(e->n, &st);
    assert_int_equal(st.mirrored_frames, 2);
    assert_int_equal(st.mirror_dropped, 1);
    colonet_checkpoint(e->n, 0);     /* stop */
    mirror_rc = 0;
    colonet_input(e->n, in.b, in.len);
    assert_int_equal(nmirrored, 2);
}

/*
 * Stopping (the secondary is lost) hands what comparison holds to the
 * queue behind what it holds already, so release_all keeps the order;
 * then frames go straight to the queue.
 */
static void test_stop_keeps_order(void **state)
{
    env *e = *state;
    frame a = udp(7000, "a\n", 1), b = udp(7000, "b\n", 2);
    pri(e, &a);
    outqueue_checkpoint(e->q, 2);
    colonet_checkpoint(e->n, 2);       /* a: an epoch-1 item */
    pri(e, &b);                         /* b: held by comparison */
    colonet_checkpoint(e->n, 0);     /* stop */
    assert_int_equal(nseen, 0);
    outqueue_release_all(e->q);
    assert_int_equal(nseen, 2);
    assert_seen(0, &a);
    assert_seen(1, &b);
    frame c = udp(7000, "c\n", 3);
    pri(e, &c);                         /* not holding: out at once */
    assert_seen(2, &c);
}

/* Malformed or oversize frames: refused, nothing held, no crash. */
static void test_bad_frames(void **state)
{
    env *e = *state;
    uint8_t big[NETFRAMES_MAX + 1] = { 0 };
    assert_int_equal(colonet_transmit(e->n, big, sizeof(big)), -EINVAL);
    uint8_t tiny[3] = { 1, 2, 3 };
    assert_int_equal(colonet_transmit(e->n, tiny, sizeof(tiny)), 0);
    assert_int_equal(colonet_secondary(e->n, 1, tiny, sizeof(tiny),
                                       mono_ns()), COLONET_OK);
    assert_int_equal(nseen, 1);         /* both malformed, compared whole */
    assert_int_equal(colonet_secondary(e->n, 1, big, sizeof(big),
                                       mono_ns()), COLONET_OK);
}

/* Status lists the longest queues and the counters by their names. */
static void test_status(void **state)
{
    env *e = *state;
    frame a = udp(7000, "a\n", 1), b = udp(7001, "b\n", 2);
    pri(e, &a);
    pri(e, &a);
    pri(e, &b);
    json_t *j = colonet_status(e->n);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(
        json_object_get(j, "frames"), "primary")), 3);
    json_t *fq = json_object_get(j, "flow_queues");
    assert_int_equal(json_array_size(fq), 2);
    assert_int_equal(json_integer_value(json_object_get(
        json_array_get(fq, 0), "primary")), 2);
    assert_true(json_is_null(json_object_get(j, "compare_log")));
    json_decref(j);
}

#ifdef FTVM_HAVE_PCAP
/* --compare-log: a mismatching pair lands in the file. */
static void test_compare_log(void **state)
{
    env *e = *state;
    char path[] = "/tmp/ftvm-colonet-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char err[256];
    assert_int_equal(colonet_set_log(e->n, path, err, sizeof(err)), 0);
    frame p = udp(7000, "1\n", 1), s = udp(7000, "2\n", 1);
    pri(e, &p);
    assert_int_equal(sec(e, 1, &s), COLONET_MISMATCH);
    json_t *j = colonet_status(e->n);
    assert_int_equal(json_integer_value(json_object_get(
        json_object_get(j, "compare_log"), "pairs")), 1);
    json_decref(j);
    colonet_tick(e->n, mono_ns(), 0, false);      /* flushes */
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    /* Global header, then two records with their headers. */
    assert_int_equal(ftell(f), 24 + 2 * 16 + (long)p.len + (long)s.len);
    fclose(f);
    unlink(path);
    assert_int_equal(colonet_set_log(e->n, "/nonexistent/dir/x.pcap", err,
                                     sizeof(err)) < 0, 1);
    assert_non_null(strstr(err, "/nonexistent/dir/x.pcap"));
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_match_releases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flows_independent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mismatch_then_checkpoint, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_timeout_on_svm_time_line, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mirror_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_keeps_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status, setup, teardown),
#ifdef FTVM_HAVE_PCAP
        cmocka_unit_test_setup_teardown(test_compare_log, setup, teardown),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
