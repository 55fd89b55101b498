/*
 * Unit tests for net-compare's TCP: segments from two guests' TCP stacks,
 * built byte for byte as a capture would show them, that agree on the
 * bytes they send but not on initial sequence numbers, segmentation,
 * windows or ACK timing.  The offset learnt from the SYNs, payload
 * compared over sequence ranges, pure ACKs and the ACK guard,
 * retransmissions, FIN and RST, each kind of divergence, the offset set
 * by the caller and the rewriting of the secondary's inbound ACKs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "net-compare/netcmp.h"
#include "tests/unit/netframes.h"

#define MS 1000000ull
#define SYN NETCMP_TCP_SYN
#define ACK NETCMP_TCP_ACK
#define FIN NETCMP_TCP_FIN
#define RST NETCMP_TCP_RST
#define PSH NETCMP_TCP_PSH

/* The primary's and the secondary's initial sequence numbers. */
#define PISN 1000u
#define SISN 50000u
#define CLIENT_ISN 7000u

typedef struct frame {
    size_t len;
    uint8_t b[NETFRAMES_MAX];
} frame;

/* A segment of the guest (10.0.0.2:80) to the client (10.0.0.1:40000). */
static frame seg(uint32_t seq, uint32_t ack, uint8_t flags, const char *data)
{
    frame f;
    nf_host h = nf_default();
    h.id = (uint16_t)(seq * 7);     /* differs between the VMs */
    f.len = nf_tcp(f.b, &h, 80, 40000, seq, ack, flags,
                   (uint16_t)(29200 + seq % 100), data, strlen(data));
    return f;
}

/* The primary's segment at relative sequence rel, and the secondary's. */
static frame pseg(uint32_t rel, uint32_t ack, uint8_t fl, const char *d)
{
    return seg(PISN + rel, CLIENT_ISN + ack, fl, d);
}

static frame sseg(uint32_t rel, uint32_t ack, uint8_t fl, const char *d)
{
    return seg(SISN + rel, CLIENT_ISN + ack, fl, d);
}

static void put(netcmp *nc, netcmp_side side, frame f, uint64_t t)
{
    assert_int_equal(netcmp_put(nc, side, f.b, f.len, t), 0);
}

static void expect_none(netcmp *nc)
{
    netcmp_verdict v;
    if (netcmp_next(nc, &v))
        fail_msg("unexpected verdict %s (%s)", netcmp_verdict_name(v.kind),
                 v.kind == NETCMP_RELEASE ? netcmp_why_name(v.why)
                                          : v.field ? v.field : "");
}

static void expect_release(netcmp *nc, frame f, netcmp_why why)
{
    netcmp_verdict v;
    assert_true(netcmp_next(nc, &v));
    assert_string_equal(netcmp_verdict_name(v.kind), "release");
    assert_string_equal(netcmp_why_name(v.why), netcmp_why_name(why));
    assert_int_equal(v.frame->len, f.len);
    assert_memory_equal(v.frame->data, f.b, f.len);
    netcmp_verdict_done(&v);
}

static void expect_mismatch(netcmp *nc, const char *field)
{
    netcmp_verdict v;
    assert_true(netcmp_next(nc, &v));
    assert_string_equal(netcmp_verdict_name(v.kind), "mismatch");
    assert_string_equal(v.field, field);
    netcmp_verdict_done(&v);
    expect_none(nc);
}

static void check_stats(const netcmp *nc)
{
    netcmp_stats s;
    netcmp_get_stats(nc, &s);
    assert_int_equal(s.frames[0], s.released + s.held_frames[0]);
    assert_int_equal(s.frames[1],
                     s.consumed + s.held_frames[1] + s.dropped_at_reset);
    assert_int_equal(s.compared, s.matched + s.mismatched);
}

static netcmp_key flow_key(void)
{
    frame f = pseg(1, 1, ACK, "");
    netcmp_frame pf;
    netcmp_frame_parse(&pf, f.b, f.len);
    return pf.key;
}

/* A connection opened and its SYN-ACKs compared: the offset learnt. */
static netcmp *opened(const netcmp_opts *o)
{
    netcmp *nc;
    assert_int_equal(netcmp_new(&nc, o), 0);
    frame p = pseg(0, 1, SYN | ACK, ""), s = sseg(0, 1, SYN | ACK, "");
    put(nc, NETCMP_PRIMARY, p, 0);
    expect_none(nc);
    put(nc, NETCMP_SECONDARY, s, MS);
    expect_release(nc, p, NETCMP_MATCHED);
    expect_none(nc);
    uint32_t off;
    netcmp_key k = flow_key();
    assert_true(netcmp_tcp_offset(nc, &k, &off));
    assert_int_equal(off, PISN - SISN);
    return nc;
}

static void test_handshake(void **state)
{
    (void)state;
    netcmp *nc = opened(NULL);
    netcmp_stats st;
    netcmp_get_stats(nc, &st);
    assert_int_equal(st.matched, 1);
    assert_int_equal(st.flows, 1);      /* kept: it has an offset */
    check_stats(nc);
    netcmp_free(nc);
    /* A SYN against a SYN-ACK is a divergence. */
    assert_int_equal(netcmp_new(&nc, NULL), 0);
    put(nc, NETCMP_PRIMARY, pseg(0, 1, SYN | ACK, ""), 0);
    put(nc, NETCMP_SECONDARY, sseg(0, 0, SYN, ""), 0);
    expect_mismatch(nc, "tcp.syn");
    netcmp_free(nc);
    /* A SYN against data. */
    assert_int_equal(netcmp_new(&nc, NULL), 0);
    put(nc, NETCMP_PRIMARY, pseg(0, 1, SYN | ACK, ""), 0);
    put(nc, NETCMP_SECONDARY, seg(PISN, CLIENT_ISN + 1, ACK, "x"), 0);
    expect_mismatch(nc, "tcp.syn");
    netcmp_free(nc);
}

static void test_resegmented(void **state)
{
    (void)state;
    netcmp *nc = opened(NULL);
    /* One segment on the primary, two on the secondary. */
    frame p = pseg(1, 10, ACK | PSH, "hello world");
    put(nc, NETCMP_PRIMARY, p, 2 * MS);
    put(nc, NETCMP_SECONDARY, sseg(1, 10, ACK, "hello "), 3 * MS);
    expect_none(nc);
    put(nc, NETCMP_SECONDARY, sseg(7, 10, ACK | PSH, "world"), 4 * MS);
    expect_release(nc, p, NETCMP_MATCHED);
    expect_none(nc);
    /* Two on the primary, one on the secondary. */
    frame p1 = pseg(12, 10, ACK, "abc"), p2 = pseg(15, 10, ACK, "def");
    put(nc, NETCMP_PRIMARY, p1, 5 * MS);
    put(nc, NETCMP_PRIMARY, p2, 5 * MS);
    put(nc, NETCMP_SECONDARY, sseg(12, 10, ACK, "abcd"), 6 * MS);
    expect_release(nc, p1, NETCMP_MATCHED);
    expect_none(nc);
    put(nc, NETCMP_SECONDARY, sseg(16, 10, ACK, "ef"), 6 * MS);
    expect_release(nc, p2, NETCMP_MATCHED);
    expect_none(nc);
    netcmp_stats st;
    netcmp_get_stats(nc, &st);
    assert_int_equal(st.held_frames[1], 0);
    assert_int_equal(st.matched, 4);
    check_stats(nc);
    netcmp_free(nc);
}

static void test_pure_ack(void **state)
{
    (void)state;
    netcmp *nc = opened(NULL);
    /* Released uncompared once the secondary acknowledged as much. */
    frame a = pseg(1, 20, ACK, "");
    put(nc, NETCMP_PRIMARY, a, MS);
    expect_none(nc);
    put(nc, NETCMP_SECONDARY, sseg(1, 15, ACK, ""), 2 * MS);
    expect_none(nc);
    put(nc, NETCMP_SECONDARY, sseg(1, 20, ACK, ""), 3 * MS);
    expect_release(nc, a, NETCMP_PURE_ACK);
    /* Behind data not yet matched, it waits its turn. */
    frame d = pseg(1, 20, ACK, "data"), a2 = pseg(5, 20, ACK, "");
    put(nc, NETCMP_PRIMARY, d, 4 * MS);
    put(nc, NETCMP_PRIMARY, a2, 4 * MS);
    expect_none(nc);
    put(nc, NETCMP_SECONDARY, sseg(1, 20, ACK, "data"), 5 * MS);
    expect_release(nc, d, NETCMP_MATCHED);
    expect_release(nc, a2, NETCMP_PURE_ACK);
    /* Data that acknowledges more than the secondary did waits too. */
    frame d2 = pseg(5, 30, ACK, "more");
    put(nc, NETCMP_PRIMARY, d2, 6 * MS);
    put(nc, NETCMP_SECONDARY, sseg(5, 25, ACK, "more"), 6 * MS);
    expect_none(nc);
    put(nc, NETCMP_SECONDARY, sseg(9, 30, ACK, ""), 7 * MS);
    expect_release(nc, d2, NETCMP_MATCHED);
    netcmp_stats st;
    netcmp_get_stats(nc, &st);
    assert_int_equal(st.released_uncompared, 2);
    check_stats(nc);
    /* An ACK the secondary never reaches times out. */
    frame a3 = pseg(9, 40, ACK, "");
    put(nc, NETCMP_PRIMARY, a3, 10 * MS);
    netcmp_tick(nc, 110 * MS);
    netcmp_verdict v;
    assert_true(netcmp_next(nc, &v));
    assert_string_equal(netcmp_verdict_name(v.kind), "timeout");
    netcmp_verdict_done(&v);
    netcmp_free(nc);
    /* Without the guard, at once. */
    nc = opened(&(netcmp_opts){ .no_ack_guard = true });
    put(nc, NETCMP_PRIMARY, a3, MS);
    expect_release(nc, a3, NETCMP_PURE_ACK);
    netcmp_free(nc);
}

static void test_retransmit(void **state)
{
    (void)state;
    netcmp *nc = opened(NULL);
    frame p = pseg(1, 1, ACK, "hello world");
    put(nc, NETCMP_PRIMARY, p, MS);
    put(nc, NETCMP_SECONDARY, sseg(1, 1, ACK, "hello world"), MS);
    expect_release(nc, p, NETCMP_MATCHED);
    /* The same bytes again: compared when first sent. */
    put(nc, NETCMP_PRIMARY, p, 2 * MS);
    expect_release(nc, p, NETCMP_RETRANSMIT);
    put(nc, NETCMP_SECONDARY, sseg(1, 1, ACK, "hello world"), 2 * MS);
    expect_none(nc);
    /* Overlapping old and new bytes: only the new ones compared. */
    frame o = pseg(7, 1, ACK, "world!!");
    put(nc, NETCMP_PRIMARY, o, 3 * MS);
    expect_none(nc);
    put(nc, NETCMP_SECONDARY, sseg(10, 1, ACK, "ld!!"), 3 * MS);
    expect_release(nc, o, NETCMP_MATCHED);
    /* A new byte that differs in an overlapping segment. */
    frame o2 = pseg(10, 1, ACK, "ld!!?");
    put(nc, NETCMP_PRIMARY, o2, 4 * MS);
    put(nc, NETCMP_SECONDARY, sseg(10, 1, ACK, "ld!!X"), 4 * MS);
    expect_mismatch(nc, "tcp.payload");
    check_stats(nc);
    netcmp_free(nc);
}

static void test_divergence(void **state)
{
    (void)state;
    netcmp *nc = opened(NULL);
    put(nc, NETCMP_PRIMARY, pseg(1, 1, ACK, "VALUE 17"), MS);
    put(nc, NETCMP_SECONDARY, sseg(1, 1, ACK, "VALUE 18"), MS);
    expect_mismatch(nc, "tcp.payload");
    /* Diverged: nothing more is compared until the reset. */
    put(nc, NETCMP_PRIMARY, pseg(9, 1, ACK, "x"), MS);
    put(nc, NETCMP_SECONDARY, sseg(9, 1, ACK, "x"), MS);
    expect_none(nc);
    netcmp_reset(nc, NETCMP_RESET_RELEASE, 2 * MS);
    for (int i = 0; i < 2; i++) {
        netcmp_verdict v;
        assert_true(netcmp_next(nc, &v));
        assert_string_equal(netcmp_why_name(v.why), "checkpoint");
        netcmp_verdict_done(&v);
    }
    expect_none(nc);
    netcmp_stats st;
    netcmp_get_stats(nc, &st);
    assert_int_equal(st.flows, 0);
    check_stats(nc);
    /* After it the secondary is the primary's copy: same numbers. */
    frame p = pseg(10, 1, ACK, "y");
    put(nc, NETCMP_PRIMARY, p, 3 * MS);
    put(nc, NETCMP_SECONDARY, pseg(10, 1, ACK, "y"), 3 * MS);
    expect_release(nc, p, NETCMP_MATCHED);
    netcmp_free(nc);
    /* The secondary's bytes at another place in the stream. */
    nc = opened(NULL);
    put(nc, NETCMP_PRIMARY, pseg(1, 1, ACK, "abc"), MS);
    put(nc, NETCMP_SECONDARY, sseg(2, 1, ACK, "bc"), MS);
    expect_mismatch(nc, "tcp.seq");
    netcmp_free(nc);
    /* Header fields compared as for any IPv4 frame. */
    nc = opened(NULL);
    frame s = sseg(1, 1, ACK, "abc");
    s.b[14 + 8] = 1;                /* TTL */
    put(nc, NETCMP_PRIMARY, pseg(1, 1, ACK, "abc"), MS);
    put(nc, NETCMP_SECONDARY, s, MS);
    expect_mismatch(nc, "ip.ttl");
    netcmp_free(nc);
}

static void test_fin_rst(void **state)
{
    (void)state;
    netcmp *nc = opened(NULL);
    /* Data and FIN in one segment, apart on the other side. */
    frame p = pseg(1, 1, ACK | FIN, "bye");
    put(nc, NETCMP_PRIMARY, p, MS);
    put(nc, NETCMP_SECONDARY, sseg(1, 1, ACK, "bye"), MS);
    expect_none(nc);
    put(nc, NETCMP_SECONDARY, sseg(4, 1, ACK | FIN, ""), MS);
    expect_release(nc, p, NETCMP_MATCHED);
    /* The FIN retransmitted. */
    frame f = pseg(4, 1, ACK | FIN, "");
    put(nc, NETCMP_PRIMARY, f, 2 * MS);
    expect_release(nc, f, NETCMP_RETRANSMIT);
    check_stats(nc);
    netcmp_free(nc);
    /* FIN where the other sends data. */
    nc = opened(NULL);
    put(nc, NETCMP_PRIMARY, pseg(1, 1, ACK | FIN, ""), MS);
    put(nc, NETCMP_SECONDARY, sseg(1, 1, ACK, "more"), MS);
    expect_mismatch(nc, "tcp.fin");
    netcmp_free(nc);
    /* RST where the other resets too, and where it does not. */
    nc = opened(NULL);
    frame r = pseg(1, 1, RST | ACK, "");
    put(nc, NETCMP_PRIMARY, r, MS);
    put(nc, NETCMP_SECONDARY, sseg(1, 1, RST | ACK, ""), MS);
    expect_release(nc, r, NETCMP_MATCHED);
    netcmp_free(nc);
    nc = opened(NULL);
    put(nc, NETCMP_PRIMARY, r, MS);
    put(nc, NETCMP_SECONDARY, sseg(1, 1, ACK, "data"), MS);
    expect_mismatch(nc, "tcp.rst");
    netcmp_free(nc);
    nc = opened(NULL);
    put(nc, NETCMP_PRIMARY, pseg(1, 1, ACK, "data"), MS);
    put(nc, NETCMP_SECONDARY, sseg(1, 1, RST, ""), MS);
    expect_mismatch(nc, "tcp.rst");
    netcmp_free(nc);
    /* Data and RST in one segment: the RST after the data. */
    nc = opened(NULL);
    frame rd = pseg(1, 1, RST | ACK, "last");
    put(nc, NETCMP_PRIMARY, rd, MS);
    put(nc, NETCMP_SECONDARY, sseg(1, 1, ACK, "la"), MS);
    expect_none(nc);
    put(nc, NETCMP_SECONDARY, sseg(3, 1, RST | ACK, "st"), MS);
    expect_release(nc, rd, NETCMP_MATCHED);
    expect_none(nc);
    check_stats(nc);
    netcmp_free(nc);
    nc = opened(NULL);
    put(nc, NETCMP_PRIMARY, rd, MS);
    put(nc, NETCMP_SECONDARY, sseg(1, 1, ACK, "last"), MS);
    put(nc, NETCMP_SECONDARY, sseg(5, 1, ACK, "more"), MS);
    expect_mismatch(nc, "tcp.rst");
    netcmp_free(nc);
}

/* A connection the guests open, across the wrap of sequence numbers. */
static void test_outbound_wrap(void **state)
{
    (void)state;
    netcmp *nc;
    assert_int_equal(netcmp_new(&nc, NULL), 0);
    frame p = seg(0xfffffff0u, 0, SYN, ""), s = seg(0x7ffffff0u, 0, SYN, "");
    put(nc, NETCMP_PRIMARY, p, 0);
    put(nc, NETCMP_SECONDARY, s, 0);
    expect_release(nc, p, NETCMP_MATCHED);
    char d[40];
    memset(d, 'w', sizeof(d) - 1);
    d[39] = 0;
    frame pd = seg(0xfffffff1u, 5, ACK, d);
    put(nc, NETCMP_PRIMARY, pd, MS);
    put(nc, NETCMP_SECONDARY, seg(0x7ffffff1u, 5, ACK, "wwwwwwwwwwwwwwwwwwww"),
        MS);
    expect_none(nc);
    put(nc, NETCMP_SECONDARY, seg(0x7ffffff1u + 20, 5, ACK,
                                  "wwwwwwwwwwwwwwwwwww"), MS);
    expect_release(nc, pd, NETCMP_MATCHED);
    netcmp_free(nc);
}

/* The secondary ahead, two connections interleaved, a reset keeping. */
static void test_secondary_ahead(void **state)
{
    (void)state;
    netcmp *nc;
    assert_int_equal(netcmp_new(&nc, NULL), 0);
    nf_host h = nf_default();
    frame p2, s2;
    p2.len = nf_tcp(p2.b, &h, 81, 40000, 9000, 1, SYN | ACK, 1, "", 0);
    s2.len = nf_tcp(s2.b, &h, 81, 40000, 300, 1, SYN | ACK, 1, "", 0);
    put(nc, NETCMP_SECONDARY, sseg(0, 1, SYN | ACK, ""), 0);
    put(nc, NETCMP_SECONDARY, s2, 0);
    put(nc, NETCMP_SECONDARY, sseg(1, 1, ACK, "first"), 0);
    expect_none(nc);
    frame p = pseg(0, 1, SYN | ACK, "");
    put(nc, NETCMP_PRIMARY, p2, MS);
    expect_release(nc, p2, NETCMP_MATCHED);
    put(nc, NETCMP_PRIMARY, p, MS);
    expect_release(nc, p, NETCMP_MATCHED);
    frame d = pseg(1, 1, ACK, "first");
    put(nc, NETCMP_PRIMARY, d, 2 * MS);
    expect_release(nc, d, NETCMP_MATCHED);
    /* A reset that keeps: the offset forgotten (the secondary is the
       primary's copy now), the held segment compared again. */
    frame e = pseg(6, 1, ACK, "second");
    put(nc, NETCMP_PRIMARY, e, 3 * MS);
    put(nc, NETCMP_SECONDARY, sseg(6, 1, ACK, "secXnd"), 3 * MS);
    expect_mismatch(nc, "tcp.payload");
    netcmp_reset(nc, NETCMP_RESET_KEEP, 4 * MS);
    expect_none(nc);
    netcmp_key k = flow_key();
    uint32_t off;
    assert_false(netcmp_tcp_offset(nc, &k, &off));
    netcmp_stats st;
    netcmp_get_stats(nc, &st);
    assert_int_equal(st.dropped_at_reset, 1);
    assert_int_equal(st.held_frames[0], 1);
    put(nc, NETCMP_SECONDARY, pseg(6, 1, ACK, "second"), 5 * MS);
    expect_release(nc, e, NETCMP_MATCHED);
    check_stats(nc);
    netcmp_free(nc);
}

static void test_offset_rewrite(void **state)
{
    (void)state;
    netcmp *nc;
    assert_int_equal(netcmp_new(&nc, NULL), 0);
    netcmp_key k = flow_key();
    uint32_t off;
    assert_false(netcmp_tcp_offset(nc, &k, &off));
    /* Set by the caller: the secondary's numbers, shifted, match. */
    assert_int_equal(netcmp_set_tcp_offset(nc, &k, PISN - SISN), 0);
    assert_true(netcmp_tcp_offset(nc, &k, &off));
    assert_int_equal(off, PISN - SISN);
    frame p = pseg(1, 1, ACK, "abc");
    put(nc, NETCMP_PRIMARY, p, MS);
    put(nc, NETCMP_SECONDARY, sseg(1, 1, ACK, "abc"), MS);
    expect_release(nc, p, NETCMP_MATCHED);
    netcmp_key u = k;
    u.cls = NETCMP_UDP;
    assert_int_equal(netcmp_set_tcp_offset(nc, &u, 1), -22);
    /* The client's segment: its ACK moved into the secondary's space,
       with a checksum as the secondary's stack computes it. */
    nf_host guest = nf_default();
    nf_host client = nf_reverse(&guest);
    frame in, want;
    in.len = nf_tcp(in.b, &client, 40000, 80, CLIENT_ISN + 1, PISN + 4, ACK,
                    500, "GET", 3);
    want.len = nf_tcp(want.b, &client, 40000, 80, CLIENT_ISN + 1, SISN + 4,
                      ACK, 500, "GET", 3);
    assert_true(netcmp_rewrite_to_secondary(nc, in.b, in.len));
    assert_memory_equal(in.b, want.b, want.len);
    /* Not TCP, no offset, or no ACK: untouched. */
    frame other = in;
    other.b[14 + 20 + 13] = SYN;
    assert_false(netcmp_rewrite_to_secondary(nc, other.b, other.len));
    assert_false(netcmp_rewrite_to_secondary(nc, p.b, p.len));
    netcmp_free(nc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_resegmented),
        cmocka_unit_test(test_pure_ack),
        cmocka_unit_test(test_retransmit),
        cmocka_unit_test(test_divergence),
        cmocka_unit_test(test_fin_rst),
        cmocka_unit_test(test_outbound_wrap),
        cmocka_unit_test(test_secondary_ahead),
        cmocka_unit_test(test_offset_rewrite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
