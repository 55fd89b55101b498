/*
 * Unit tests for net-compare/netcmp: the comparator's queues and
 * verdicts with frames built in the test and times it makes up:
 * matching, order within a flow and independence across flows,
 * mismatch, timeout, the bounds, reset, malformed frames and the
 * counters.  TCP is test_netcmp_tcp.c's.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "net-compare/netcmp.h"
#include "tests/unit/netframes.h"

#define MS 1000000ull

typedef struct frame {
    size_t len;
    uint8_t b[NETFRAMES_MAX];
} frame;

/* A UDP reply of the guest on port sport, with this text, IP id id. */
static frame udp(uint16_t sport, const char *text, uint16_t id)
{
    frame f;
    nf_host h = nf_default();
    h.id = id;
    f.len = nf_udp(f.b, &h, sport, 40000, text, strlen(text));
    return f;
}

static void put(netcmp *nc, netcmp_side side, const frame *f, uint64_t t)
{
    assert_int_equal(netcmp_put(nc, side, f->b, f->len, t), 0);
}

static void expect_none(netcmp *nc)
{
    netcmp_verdict v;
    if (netcmp_next(nc, &v))
        fail_msg("unexpected verdict %s", netcmp_verdict_name(v.kind));
}

/* The next verdict is a release of f (its bytes), why, after delay. */
static void expect_release(netcmp *nc, const frame *f, netcmp_why why,
                           uint64_t delay)
{
    netcmp_verdict v;
    assert_true(netcmp_next(nc, &v));
    assert_string_equal(netcmp_verdict_name(v.kind), "release");
    assert_string_equal(netcmp_why_name(v.why), netcmp_why_name(why));
    assert_int_equal(v.frame->len, f->len);
    assert_memory_equal(v.frame->data, f->b, f->len);
    assert_int_equal(v.delay_ns, delay);
    netcmp_verdict_done(&v);
}

static netcmp_verdict expect_kind(netcmp *nc, netcmp_verdict_kind k)
{
    netcmp_verdict v;
    assert_true(netcmp_next(nc, &v));
    assert_string_equal(netcmp_verdict_name(v.kind), netcmp_verdict_name(k));
    return v;
}

/* The counters add up. */
static void check_stats(const netcmp *nc)
{
    netcmp_stats s;
    netcmp_get_stats(nc, &s);
    assert_int_equal(s.frames[0], s.released + s.held_frames[0]);
    assert_int_equal(s.frames[1],
                     s.consumed + s.held_frames[1] + s.dropped_at_reset);
    assert_int_equal(s.compared, s.matched + s.mismatched);
    assert_true(s.released >= s.matched + s.released_uncompared +
                                  s.released_at_reset);
}

static netcmp *make(const netcmp_opts *o)
{
    netcmp *nc;
    assert_int_equal(netcmp_new(&nc, o), 0);
    return nc;
}

static void test_match(void **state)
{
    (void)state;
    netcmp *nc = make(NULL);
    frame p = udp(7000, "OK 1\n", 11), s = udp(7000, "OK 1\n", 907);
    put(nc, NETCMP_PRIMARY, &p, 10 * MS);
    expect_none(nc);
    put(nc, NETCMP_SECONDARY, &s, 13 * MS);
    /* The primary's frame goes, its IP id and all. */
    expect_release(nc, &p, NETCMP_MATCHED, 3 * MS);
    expect_none(nc);
    /* The secondary ahead: released as the primary's arrives. */
    put(nc, NETCMP_SECONDARY, &s, 20 * MS);
    expect_none(nc);
    put(nc, NETCMP_PRIMARY, &p, 21 * MS);
    expect_release(nc, &p, NETCMP_MATCHED, 0);
    netcmp_stats st;
    netcmp_get_stats(nc, &st);
    assert_int_equal(st.matched, 2);
    assert_int_equal(st.compared, 2);
    assert_int_equal(st.delay_count, 2);
    assert_int_equal(st.delay_sum_ns, 3 * MS);
    assert_int_equal(st.delay_max_ns, 3 * MS);
    assert_int_equal(st.flows, 0);      /* nothing left to remember */
    check_stats(nc);
    /* ARP and ICMP pair up the same way. */
    nf_host h = nf_default();
    frame a, i;
    a.len = nf_arp(a.b, &h);
    i.len = nf_icmp(i.b, &h, 3, 4, "ping", 4);
    put(nc, NETCMP_PRIMARY, &a, 30 * MS);
    put(nc, NETCMP_PRIMARY, &i, 30 * MS);
    put(nc, NETCMP_SECONDARY, &i, 31 * MS);
    expect_release(nc, &i, NETCMP_MATCHED, MS);
    put(nc, NETCMP_SECONDARY, &a, 32 * MS);
    expect_release(nc, &a, NETCMP_MATCHED, 2 * MS);
    expect_none(nc);
    check_stats(nc);
    netcmp_free(nc);
}

typedef struct flows_seen {
    unsigned n;
    uint32_t held[2];
} flows_seen;

static void count_flow(void *opaque, const netcmp_flow_info *fi)
{
    flows_seen *fs = opaque;
    fs->n++;
    fs->held[0] += fi->held[0];
    fs->held[1] += fi->held[1];
}

static void test_order(void **state)
{
    (void)state;
    netcmp *nc = make(NULL);
    frame a1 = udp(1, "a1", 1), a2 = udp(1, "a2", 2);
    frame b1 = udp(2, "b1", 3), b2 = udp(2, "b2", 4);
    put(nc, NETCMP_PRIMARY, &a1, 0);
    put(nc, NETCMP_PRIMARY, &b1, 0);
    put(nc, NETCMP_PRIMARY, &a2, 0);
    put(nc, NETCMP_PRIMARY, &b2, 0);
    flows_seen fs = { 0 };
    netcmp_flows(nc, count_flow, &fs);
    assert_int_equal(fs.n, 2);
    assert_int_equal(fs.held[0], 4);
    /* Flow b first: a does not hold it up. */
    put(nc, NETCMP_SECONDARY, &b1, MS);
    expect_release(nc, &b1, NETCMP_MATCHED, MS);
    put(nc, NETCMP_SECONDARY, &b2, MS);
    expect_release(nc, &b2, NETCMP_MATCHED, MS);
    put(nc, NETCMP_SECONDARY, &a1, 2 * MS);
    expect_release(nc, &a1, NETCMP_MATCHED, 2 * MS);
    put(nc, NETCMP_SECONDARY, &a2, 2 * MS);
    expect_release(nc, &a2, NETCMP_MATCHED, 2 * MS);
    expect_none(nc);
    /* Within a flow, order is compared: a2 before a1 is a divergence. */
    put(nc, NETCMP_PRIMARY, &a1, 3 * MS);
    put(nc, NETCMP_PRIMARY, &a2, 3 * MS);
    put(nc, NETCMP_SECONDARY, &a2, 4 * MS);
    netcmp_verdict v = expect_kind(nc, NETCMP_MISMATCH);
    assert_string_equal(v.field, "udp.payload");
    netcmp_verdict_done(&v);
    check_stats(nc);
    netcmp_free(nc);
}

static void test_mismatch(void **state)
{
    (void)state;
    netcmp *nc = make(NULL);
    frame p = udp(7000, "TIME 1001\n", 1), s = udp(7000, "TIME 1002\n", 1);
    frame q = udp(7000, "OK\n", 2), o = udp(7001, "other\n", 3);
    put(nc, NETCMP_PRIMARY, &p, 0);
    put(nc, NETCMP_SECONDARY, &s, MS);
    netcmp_verdict v = expect_kind(nc, NETCMP_MISMATCH);
    assert_string_equal(v.field, "udp.payload");
    assert_memory_equal(v.frame->data, p.b, p.len);
    assert_non_null(v.other);
    assert_memory_equal(v.other->data, s.b, s.len);
    char buf[128];
    netcmp_key_format(&v.key, buf, sizeof(buf));
    assert_string_equal(buf, "udp 10.0.0.2:7000 > 10.0.0.1:40000");
    netcmp_verdict_done(&v);
    expect_none(nc);
    /* The flow waits for the checkpoint; other flows go on. */
    put(nc, NETCMP_PRIMARY, &q, 2 * MS);
    put(nc, NETCMP_SECONDARY, &q, 2 * MS);
    put(nc, NETCMP_PRIMARY, &o, 2 * MS);
    put(nc, NETCMP_SECONDARY, &o, 3 * MS);
    expect_release(nc, &o, NETCMP_MATCHED, MS);
    expect_none(nc);
    netcmp_tick(nc, 1000 * MS);     /* a diverged flow does not time out */
    expect_none(nc);
    /* The checkpoint: the primary's frames go, the secondary's are
       dropped, the flow compares again. */
    netcmp_reset(nc, NETCMP_RESET_RELEASE, 5 * MS);
    expect_release(nc, &p, NETCMP_CHECKPOINT, 5 * MS);
    expect_release(nc, &q, NETCMP_CHECKPOINT, 3 * MS);
    expect_none(nc);
    netcmp_stats st;
    netcmp_get_stats(nc, &st);
    assert_int_equal(st.mismatched, 1);
    assert_int_equal(st.dropped_at_reset, 2);
    assert_int_equal(st.released_at_reset, 2);
    assert_int_equal(st.held_frames[0] + st.held_frames[1], 0);
    assert_int_equal(st.flows, 0);
    check_stats(nc);
    put(nc, NETCMP_PRIMARY, &q, 6 * MS);
    put(nc, NETCMP_SECONDARY, &q, 6 * MS);
    expect_release(nc, &q, NETCMP_MATCHED, 0);
    /* A reset that keeps: the secondary's next frame matches. */
    put(nc, NETCMP_PRIMARY, &p, 7 * MS);
    put(nc, NETCMP_SECONDARY, &s, 7 * MS);
    v = expect_kind(nc, NETCMP_MISMATCH);
    netcmp_verdict_done(&v);
    netcmp_reset(nc, NETCMP_RESET_KEEP, 8 * MS);
    expect_none(nc);
    put(nc, NETCMP_SECONDARY, &p, 9 * MS);
    expect_release(nc, &p, NETCMP_MATCHED, 2 * MS);
    check_stats(nc);
    netcmp_free(nc);
}

static void test_timeout(void **state)
{
    (void)state;
    netcmp *nc = make(&(netcmp_opts){ .timeout_ns = 100 * MS });
    frame p = udp(1, "one", 1), p2 = udp(1, "two", 2), o = udp(2, "o", 3);
    uint64_t when;
    assert_false(netcmp_next_timeout(nc, &when));
    put(nc, NETCMP_PRIMARY, &p, 10 * MS);
    put(nc, NETCMP_PRIMARY, &p2, 50 * MS);
    put(nc, NETCMP_PRIMARY, &o, 60 * MS);
    assert_true(netcmp_next_timeout(nc, &when));
    assert_int_equal(when, 110 * MS);
    netcmp_tick(nc, 109 * MS);
    expect_none(nc);
    netcmp_tick(nc, 110 * MS);
    netcmp_verdict v = expect_kind(nc, NETCMP_TIMEOUT);
    assert_memory_equal(v.frame->data, p.b, p.len);
    netcmp_verdict_done(&v);
    expect_none(nc);
    assert_true(netcmp_next_timeout(nc, &when));    /* the other flow */
    assert_int_equal(when, 160 * MS);
    netcmp_tick(nc, 159 * MS);      /* once per flow */
    expect_none(nc);
    netcmp_tick(nc, 160 * MS);
    v = expect_kind(nc, NETCMP_TIMEOUT);
    assert_memory_equal(v.frame->data, o.b, o.len);
    netcmp_verdict_done(&v);
    assert_false(netcmp_next_timeout(nc, &when));   /* both diverged */
    /* Kept, they wait compare_timeout again from the reset. */
    netcmp_reset(nc, NETCMP_RESET_KEEP, 200 * MS);
    assert_true(netcmp_next_timeout(nc, &when));
    assert_int_equal(when, 300 * MS);
    netcmp_tick(nc, 299 * MS);
    expect_none(nc);
    put(nc, NETCMP_SECONDARY, &p, 250 * MS);
    expect_release(nc, &p, NETCMP_MATCHED, 240 * MS);
    netcmp_tick(nc, 300 * MS);
    v = expect_kind(nc, NETCMP_TIMEOUT);
    netcmp_verdict_done(&v);
    v = expect_kind(nc, NETCMP_TIMEOUT);
    netcmp_verdict_done(&v);
    expect_none(nc);
    netcmp_stats st;
    netcmp_get_stats(nc, &st);
    assert_int_equal(st.timeouts, 4);
    check_stats(nc);
    netcmp_free(nc);
}

static void expect_limit(netcmp *nc, const char *which)
{
    netcmp_verdict v = expect_kind(nc, NETCMP_LIMIT);
    assert_string_equal(v.field, which);
    assert_null(v.frame);
    netcmp_verdict_done(&v);
}

static void test_limits(void **state)
{
    (void)state;
    netcmp *nc = make(&(netcmp_opts){ .flow_frames = 4, .flow_bytes = 1000,
                                      .total_frames = 10,
                                      .total_bytes = 3000,
                                      .max_flows = 4 });
    frame p = udp(1, "x", 1);
    for (int i = 0; i < 4; i++)
        put(nc, NETCMP_PRIMARY, &p, 0);
    assert_int_equal(netcmp_put(nc, NETCMP_PRIMARY, p.b, p.len, 0), -ENOSPC);
    expect_limit(nc, "flow frames");
    /* Reported once until the checkpoint; refused every time. */
    assert_int_equal(netcmp_put(nc, NETCMP_PRIMARY, p.b, p.len, 0), -ENOSPC);
    expect_none(nc);
    /* The secondary's queue has its own bound. */
    frame s = udp(1, "y", 1);
    put(nc, NETCMP_SECONDARY, &s, 0);
    netcmp_verdict v = expect_kind(nc, NETCMP_MISMATCH);
    netcmp_verdict_done(&v);
    for (int i = 0; i < 3; i++)
        put(nc, NETCMP_SECONDARY, &s, 0);
    assert_int_equal(netcmp_put(nc, NETCMP_SECONDARY, s.b, s.len, 0),
                     -ENOSPC);
    netcmp_stats st;
    netcmp_get_stats(nc, &st);
    assert_int_equal(st.refused[0], 2);
    assert_int_equal(st.refused[1], 1);
    assert_int_equal(st.limits, 1);
    check_stats(nc);
    netcmp_reset(nc, NETCMP_RESET_RELEASE, MS);
    for (int i = 0; i < 4; i++)
        expect_release(nc, &p, NETCMP_CHECKPOINT, MS);
    expect_none(nc);
    /* Bytes in one flow. */
    char big[601];
    memset(big, 'b', 600);
    big[600] = 0;
    frame b = udp(1, big, 1);
    put(nc, NETCMP_PRIMARY, &b, 2 * MS);
    assert_int_equal(netcmp_put(nc, NETCMP_PRIMARY, b.b, b.len, 0), -ENOSPC);
    expect_limit(nc, "flow bytes");
    netcmp_reset(nc, NETCMP_RESET_RELEASE, 2 * MS);
    expect_release(nc, &b, NETCMP_CHECKPOINT, 0);
    /* Flows: four held, a fifth refused, an idle one makes room. */
    for (uint16_t port = 1; port <= 4; port++) {
        frame f = udp(port, "f", 1);
        put(nc, NETCMP_PRIMARY, &f, 3 * MS);
    }
    frame f5 = udp(5, "f", 1);
    assert_int_equal(netcmp_put(nc, NETCMP_PRIMARY, f5.b, f5.len, 0),
                     -ENOSPC);
    expect_limit(nc, "flows");
    frame f1 = udp(1, "f", 1);
    put(nc, NETCMP_SECONDARY, &f1, 4 * MS);
    expect_release(nc, &f1, NETCMP_MATCHED, MS);
    put(nc, NETCMP_PRIMARY, &f5, 4 * MS);
    netcmp_reset(nc, NETCMP_RESET_RELEASE, 5 * MS);
    for (int i = 0; i < 4; i++) {
        v = expect_kind(nc, NETCMP_RELEASE);
        netcmp_verdict_done(&v);
    }
    /* All flows together: frames, then bytes. */
    for (uint16_t i = 0; i < 10; i++) {
        frame f = udp((uint16_t)(1 + i % 4), "t", i);
        put(nc, i % 2 ? NETCMP_SECONDARY : NETCMP_PRIMARY, &f, 6 * MS);
    }
    assert_int_equal(netcmp_put(nc, NETCMP_PRIMARY, p.b, p.len, 0), -ENOSPC);
    while (netcmp_next(nc, &v)) {
        if (v.kind == NETCMP_LIMIT)
            assert_string_equal(v.field, "total frames");
        netcmp_verdict_done(&v);
    }
    netcmp_reset(nc, NETCMP_RESET_RELEASE, 7 * MS);
    while (netcmp_next(nc, &v))
        netcmp_verdict_done(&v);
    /* 942-byte frames: three fit in 3000 bytes, the fourth does not. */
    char bigger[901];
    memset(bigger, 'B', 900);
    bigger[900] = 0;
    for (uint16_t i = 0; i < 4; i++) {
        frame f = udp((uint16_t)(1 + i), bigger, i);
        assert_int_equal(f.len, 942);
        assert_int_equal(netcmp_put(nc, NETCMP_PRIMARY, f.b, f.len, 0),
                         i < 3 ? 0 : -ENOSPC);
    }
    expect_limit(nc, "total bytes");
    check_stats(nc);
    netcmp_free(nc);
}

typedef struct diverged_seen {
    unsigned flows, diverged;
} diverged_seen;

static void count_diverged(void *opaque, const netcmp_flow_info *fi)
{
    diverged_seen *d = opaque;
    d->flows++;
    d->diverged += fi->diverged;
}

/* TCP flows stay for their state while idle, and give way at the cap. */
static void test_idle_flows(void **state)
{
    (void)state;
    netcmp *nc = make(&(netcmp_opts){ .max_flows = 2 });
    nf_host h = nf_default();
    frame f[3];
    for (uint16_t i = 0; i < 3; i++) {
        f[i].len = nf_tcp(f[i].b, &h, (uint16_t)(80 + i), 40000, 100, 1,
                          0x12, 1000, "", 0);
        put(nc, NETCMP_PRIMARY, &f[i], MS);
        put(nc, NETCMP_SECONDARY, &f[i], MS);
        expect_release(nc, &f[i], NETCMP_MATCHED, 0);
    }
    netcmp_stats st;
    netcmp_get_stats(nc, &st);
    assert_int_equal(st.flows, 2);
    /* One diverges; listed as such; the reset forgets every idle one. */
    frame u = udp(9, "p", 1), v = udp(9, "s", 1);
    put(nc, NETCMP_PRIMARY, &u, 2 * MS);
    assert_int_equal(netcmp_put(nc, NETCMP_SECONDARY, v.b, v.len, 2 * MS), 0);
    netcmp_verdict vd = expect_kind(nc, NETCMP_MISMATCH);
    netcmp_verdict_done(&vd);
    diverged_seen d = { 0 };
    netcmp_flows(nc, count_diverged, &d);
    assert_int_equal(d.flows, 2);
    assert_int_equal(d.diverged, 1);
    /* Both flows busy: a third cannot be made. */
    frame w = udp(10, "w", 1), data;
    data.len = nf_tcp(data.b, &h, 82, 40000, 101, 1, 0x18, 1000, "x", 1);
    put(nc, NETCMP_PRIMARY, &data, 3 * MS);
    assert_int_equal(netcmp_put(nc, NETCMP_PRIMARY, w.b, w.len, 3 * MS),
                     -ENOSPC);
    vd = expect_kind(nc, NETCMP_LIMIT);
    assert_string_equal(vd.field, "flows");
    netcmp_verdict_done(&vd);
    netcmp_reset(nc, NETCMP_RESET_RELEASE, 4 * MS);
    while (netcmp_next(nc, &vd))
        netcmp_verdict_done(&vd);
    netcmp_get_stats(nc, &st);
    assert_int_equal(st.flows, 0);
    assert_int_equal(st.resets, 1);
    check_stats(nc);
    netcmp_free(nc);
}

static void test_invalid(void **state)
{
    (void)state;
    netcmp *nc = make(NULL);
    uint8_t b[NETCMP_FRAME_MAX + 1] = { 0 };
    assert_int_equal(netcmp_put(nc, NETCMP_PRIMARY, b, 0, 0), -EINVAL);
    assert_int_equal(netcmp_put(nc, NETCMP_SECONDARY, b, sizeof(b), 0),
                     -EINVAL);
    assert_int_equal(netcmp_put(nc, NETCMP_PRIMARY, b, NETCMP_FRAME_MAX, 0),
                     0);
    netcmp_stats st;
    netcmp_get_stats(nc, &st);
    assert_int_equal(st.invalid, 2);
    assert_int_equal(st.frames[0], 1);
    check_stats(nc);
    netcmp_free(nc);        /* with a frame held: freed, not leaked */
}

static void test_malformed(void **state)
{
    (void)state;
    netcmp *nc = make(NULL);
    frame p = udp(1, "payload", 1);
    frame bad = p;
    bad.b[14] = 0x44;                       /* IHL 4 */
    frame runt = { .len = 9, .b = { 1, 2, 3, 4, 5, 6, 7, 8, 9 } };
    put(nc, NETCMP_PRIMARY, &bad, 0);
    put(nc, NETCMP_PRIMARY, &runt, 0);
    /* Compared whole: the same bytes match... */
    put(nc, NETCMP_SECONDARY, &runt, MS);
    expect_release(nc, &runt, NETCMP_MATCHED, MS);
    put(nc, NETCMP_SECONDARY, &bad, MS);
    expect_release(nc, &bad, NETCMP_MATCHED, MS);
    /* ... and even a field ignored in a good frame is compared. */
    put(nc, NETCMP_PRIMARY, &bad, 2 * MS);
    bad.b[18] ^= 1;
    put(nc, NETCMP_SECONDARY, &bad, 2 * MS);
    netcmp_verdict v = expect_kind(nc, NETCMP_MISMATCH);
    assert_string_equal(v.field, "frame");
    netcmp_verdict_done(&v);
    /* A malformed frame and a good one are of different flows. */
    put(nc, NETCMP_PRIMARY, &p, 3 * MS);
    bad.b[18] ^= 1;
    put(nc, NETCMP_SECONDARY, &bad, 3 * MS);
    expect_none(nc);
    netcmp_stats st;
    netcmp_get_stats(nc, &st);
    assert_int_equal(st.malformed[0], 3);
    assert_int_equal(st.malformed[1], 4);
    check_stats(nc);
    netcmp_free(nc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_mismatch),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_idle_flows),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
