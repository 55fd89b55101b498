/*
 * Unit tests for net-compare/netcmp_frame: frames read into flows and
 * compared fields.  Every field the rules ignore is changed and the
 * frames still compare the same; every compared field is changed and
 * they differ, in that field; malformed frames (truncated headers, bad
 * lengths) are classified with their reason, whatever their length.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "net-compare/netcmp_frame.h"
#include "tests/unit/netframes.h"

/* A UDP frame as a capture shows it: 10.0.0.2:7000 > 10.0.0.1:40000,
   "OK 1\n", id 0x1c46, DF, TTL 64; its checksums computed apart from
   netframes.c (with Python's struct), so the builder is checked too. */
static const uint8_t recorded_udp[] = {
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
    0x08, 0x00,
    0x45, 0x00, 0x00, 0x21, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x0a, 0x84,
    0x0a, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x01,
    0x1b, 0x58, 0x9c, 0x40, 0x00, 0x0d, 0xba, 0xbc,
    'O', 'K', ' ', '1', '\n',
};

/* An ARP reply 10.0.0.2 is-at 02:00:00:00:00:02, padded to 60 bytes. */
static const uint8_t recorded_arp[60] = {
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
    0x08, 0x06,
    0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02,
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x02,
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x01,
};

static bool same(const uint8_t *a, size_t an, const uint8_t *b, size_t bn,
                 const char **field)
{
    netcmp_frame fa, fb;
    netcmp_frame_parse(&fa, a, an);
    netcmp_frame_parse(&fb, b, bn);
    return netcmp_frame_same(&fa, a, &fb, b, field);
}

/* Parsed offsets stay inside the frame, whatever it is. */
static void check_bounds(const netcmp_frame *f, size_t len)
{
    assert_true(f->len == len);
    if (f->cls == NETCMP_MALFORMED) {
        assert_non_null(f->why);
        assert_int_equal(f->key.cls, NETCMP_MALFORMED);
        return;
    }
    assert_null(f->why);
    if (f->cls == NETCMP_ETHER)
        return;
    assert_true(f->l3_off + f->l3_hlen <= f->l3_end);
    assert_true(f->l3_end <= len);
    assert_true(f->payload_off + f->payload_len <= f->l3_end);
}

static void test_recorded(void **state)
{
    (void)state;
    netcmp_frame f;
    netcmp_frame_parse(&f, recorded_udp, sizeof(recorded_udp));
    assert_int_equal(f.cls, NETCMP_UDP);
    assert_int_equal(f.payload_len, 5);
    assert_memory_equal(recorded_udp + f.payload_off, "OK 1\n", 5);
    char buf[128];
    netcmp_key_format(&f.key, buf, sizeof(buf));
    assert_string_equal(buf, "udp 10.0.0.2:7000 > 10.0.0.1:40000");
    /* The builder writes the same bytes, checksums included. */
    nf_host h = nf_default();
    h.id = 0x1c46;
    uint8_t b[NETFRAMES_MAX];
    size_t n = nf_udp(b, &h, 7000, 40000, "OK 1\n", 5);
    assert_int_equal(n, sizeof(recorded_udp));
    assert_memory_equal(b, recorded_udp, n);
    n = nf_arp(b, &(nf_host){ .mac_dst = { 2, 0, 0, 0, 0, 1 },
                              .mac_src = { 2, 0, 0, 0, 0, 2 },
                              .ip_src = { 10, 0, 0, 2 },
                              .ip_dst = { 10, 0, 0, 1 }, .pad_to = 60 });
    assert_int_equal(n, 60);
    assert_memory_equal(b, recorded_arp, 60);
    netcmp_frame_parse(&f, recorded_arp, 60);
    assert_int_equal(f.cls, NETCMP_ETHER);
    assert_int_equal(f.key.ethertype, NETCMP_ETHERTYPE_ARP);
    netcmp_key_format(&f.key, buf, sizeof(buf));
    assert_string_equal(buf, "ether type 0x0806 02:00:00:00:00:02 > "
                        "02:00:00:00:00:01");
}

static void test_classes(void **state)
{
    (void)state;
    nf_host h = nf_default();
    uint8_t b[NETFRAMES_MAX];
    netcmp_frame f;
    size_t n = nf_tcp(b, &h, 80, 5000, 1000, 2000,
                      NETCMP_TCP_ACK | NETCMP_TCP_PSH, 512, "hello", 5);
    netcmp_frame_parse(&f, b, n);
    assert_int_equal(f.cls, NETCMP_TCP);
    assert_int_equal(f.seq, 1000);
    assert_int_equal(f.ack, 2000);
    assert_int_equal(f.payload_len, 5);
    assert_int_equal(netcmp_tcp_seqlen(&f), 5);
    n = nf_tcp(b, &h, 80, 5000, 1, 0, NETCMP_TCP_SYN | NETCMP_TCP_FIN, 0,
               "", 0);
    netcmp_frame_parse(&f, b, n);
    assert_int_equal(netcmp_tcp_seqlen(&f), 2);
    n = nf_icmp(b, &h, 7, 1, "ping", 4);
    netcmp_frame_parse(&f, b, n);
    assert_int_equal(f.cls, NETCMP_IPV4);
    assert_int_equal(f.key.proto, 1);
    /* A fragment has no ports, even of UDP. */
    h.frag = 0x2000;
    n = nf_ipv4(b, &h, NETCMP_PROTO_UDP, "xy", 2);
    netcmp_frame_parse(&f, b, n);
    assert_int_equal(f.cls, NETCMP_IPV4);
    assert_true(f.fragment);
    h.frag = 0x0010;
    n = nf_ipv4(b, &h, NETCMP_PROTO_TCP, "", 0);
    netcmp_frame_parse(&f, b, n);
    assert_int_equal(f.cls, NETCMP_IPV4);
    /* IPv6 and VLAN-tagged frames are other EtherTypes. */
    memset(b, 0, 60);
    b[12] = 0x86;
    b[13] = 0xdd;
    netcmp_frame_parse(&f, b, 60);
    assert_int_equal(f.cls, NETCMP_ETHER);
    b[12] = 0x81;
    b[13] = 0x00;
    netcmp_frame_parse(&f, b, 60);
    assert_int_equal(f.cls, NETCMP_ETHER);
    /* IP flows are keyed without MACs; others with them. */
    h = nf_default();
    uint8_t c[NETFRAMES_MAX];
    n = nf_udp(b, &h, 1, 2, "a", 1);
    h.mac_dst[5] = 9;
    nf_udp(c, &h, 1, 2, "a", 1);
    netcmp_frame g;
    netcmp_frame_parse(&f, b, n);
    netcmp_frame_parse(&g, c, n);
    assert_memory_equal(&f.key, &g.key, sizeof(f.key));
}

typedef struct bad {
    const char *why;
    size_t len;
    uint8_t b[NETFRAMES_MAX];
} bad;

static void expect_malformed(const uint8_t *b, size_t n, const char *why)
{
    netcmp_frame f;
    netcmp_frame_parse(&f, b, n);
    check_bounds(&f, n);
    assert_int_equal(f.cls, NETCMP_MALFORMED);
    assert_string_equal(f.why, why);
}

static void test_malformed(void **state)
{
    (void)state;
    nf_host h = nf_default();
    uint8_t b[NETFRAMES_MAX];
    size_t n = nf_udp(b, &h, 1, 2, "payload", 7);
    for (size_t len = 0; len < 14; len++)
        expect_malformed(b, len, "Ethernet header truncated");
    for (size_t len = 14; len < 34; len++)
        expect_malformed(b, len, "IPv4 header truncated");
    for (size_t len = 34; len < n; len++)
        expect_malformed(b, len, "IPv4 total length beyond the frame");
    uint8_t c[NETFRAMES_MAX];
    memcpy(c, b, n);
    c[14] = 0x65;
    expect_malformed(c, n, "IP version is not 4");
    c[14] = 0x44;
    expect_malformed(c, n, "IPv4 IHL below 5");
    c[14] = 0x40;
    expect_malformed(c, n, "IPv4 IHL below 5");
    c[14] = 0x4f;
    expect_malformed(c, 40, "IPv4 options beyond the frame");
    memcpy(c, b, n);
    c[16] = 0;
    c[17] = 19;
    expect_malformed(c, n, "IPv4 total length below its header");
    c[17] = 200;
    expect_malformed(c, n, "IPv4 total length beyond the frame");
    /* UDP. */
    memcpy(c, b, n);
    c[17] = 20 + 7;
    expect_malformed(c, n, "UDP header truncated");
    memcpy(c, b, n);
    c[38] = 0;
    c[39] = 7;
    expect_malformed(c, n, "UDP length below 8");
    c[39] = 16;
    expect_malformed(c, n, "UDP length beyond the IPv4 packet");
    /* TCP. */
    n = nf_tcp(b, &h, 1, 2, 1, 1, NETCMP_TCP_ACK, 1, "data", 4);
    for (size_t len = 34; len < n; len++)
        expect_malformed(b, len, "IPv4 total length beyond the frame");
    memcpy(c, b, n);
    c[17] = 20 + 19;
    expect_malformed(c, n, "TCP header truncated");
    memcpy(c, b, n);
    c[46] = 0x40;
    expect_malformed(c, n, "TCP data offset below 5");
    c[46] = 0x70;
    expect_malformed(c, n, "TCP header beyond the IPv4 packet");
    /* Nothing in a malformed frame is ignored: not even the IP id. */
    memcpy(c, b, n);
    c[14] = 0x44;
    uint8_t d[NETFRAMES_MAX];
    memcpy(d, c, n);
    const char *field;
    assert_true(same(c, n, d, n, &field));
    d[18] ^= 1;
    assert_false(same(c, n, d, n, &field));
    assert_string_equal(field, "frame");
    assert_false(same(c, n, d, n - 1, &field));
    assert_string_equal(field, "frame.length");
}

/* Every prefix and every single-byte damage of every kind of frame. */
static void test_every_damage(void **state)
{
    (void)state;
    nf_host h = nf_default();
    h.options_len = 4;
    h.options[0] = 1;
    uint8_t frames[5][NETFRAMES_MAX];
    size_t lens[5] = {
        nf_udp(frames[0], &h, 1, 2, "udp payload", 11),
        nf_tcp(frames[1], &h, 1, 2, 7, 9, NETCMP_TCP_ACK, 3, "tcp", 3),
        nf_icmp(frames[2], &h, 1, 2, "icmp", 4),
        nf_arp(frames[3], &h),
        nf_ipv4(frames[4], &h, 99, "other", 5),
    };
    for (int k = 0; k < 5; k++)
        for (size_t len = 0; len <= lens[k]; len++)
            for (size_t at = 0; at < len; at++)
                for (int bit = 0; bit < 8; bit++) {
                    uint8_t b[NETFRAMES_MAX];
                    memcpy(b, frames[k], len);
                    b[at] ^= (uint8_t)(1 << bit);
                    netcmp_frame f;
                    netcmp_frame_parse(&f, b, len);
                    check_bounds(&f, len);
                    netcmp_frame g;
                    netcmp_frame_parse(&g, frames[k], len);
                    const char *field;
                    /* Same flow or not, the comparison holds up. */
                    (void)netcmp_frame_same(&f, b, &g, frames[k], &field);
                }
}

/* A frame and one variant: the same, or different in field. */
typedef struct variant {
    const char *name;
    void (*change)(nf_host *h, uint8_t *payload);
    const char *field;      /* NULL: ignored */
} variant;

static void ch_id(nf_host *h, uint8_t *p) { (void)p; h->id = 0x7777; }
static void ch_pad(nf_host *h, uint8_t *p) { (void)p; h->pad_byte = 0xee; }
static void ch_mac_dst(nf_host *h, uint8_t *p) { (void)p; h->mac_dst[0] ^= 2; }
static void ch_mac_src(nf_host *h, uint8_t *p) { (void)p; h->mac_src[3] = 7; }
static void ch_tos(nf_host *h, uint8_t *p) { (void)p; h->tos = 0x10; }
static void ch_df(nf_host *h, uint8_t *p) { (void)p; h->frag = 0; }
static void ch_ttl(nf_host *h, uint8_t *p) { (void)p; h->ttl = 63; }
static void ch_opt(nf_host *h, uint8_t *p) { (void)p; h->options[1] = 9; }
static void ch_optlen(nf_host *h, uint8_t *p) { (void)p; h->options_len = 8; }
static void ch_src(nf_host *h, uint8_t *p) { (void)p; h->ip_src[3] = 3; }
static void ch_dst(nf_host *h, uint8_t *p) { (void)p; h->ip_dst[3] = 3; }
static void ch_payload(nf_host *h, uint8_t *p) { (void)h; p[3] ^= 0x20; }

static const variant ip_variants[] = {
    { "IPv4 id", ch_id, NULL },
    { "Ethernet padding", ch_pad, NULL },
    { "Ethernet destination", ch_mac_dst, "eth.dst" },
    { "Ethernet source", ch_mac_src, "eth.src" },
    { "IPv4 TOS", ch_tos, "ip.tos" },
    { "IPv4 DF", ch_df, "ip.flags" },
    { "IPv4 TTL", ch_ttl, "ip.ttl" },
    { "IPv4 options", ch_opt, "ip.options" },
    { "IPv4 IHL", ch_optlen, "ip.ihl" },
    { "IPv4 source", ch_src, "flow" },
    { "IPv4 destination", ch_dst, "flow" },
};

enum { K_UDP, K_ICMP, K_OTHER, K_TCP };

static size_t build(int kind, uint8_t *b, const nf_host *h, const uint8_t *p,
                    size_t plen, uint16_t sport)
{
    switch (kind) {
    case K_UDP:
        return nf_udp(b, h, sport, 53, p, plen);
    case K_ICMP:
        return nf_icmp(b, h, 1, 1, p, plen);
    case K_OTHER:
        return nf_ipv4(b, h, 47, p, plen);
    default:
        return nf_tcp(b, h, sport, 80, 1, 2, NETCMP_TCP_ACK, 9, p, plen);
    }
}

static void test_ip_fields(void **state)
{
    (void)state;
    static const char *const pay_field[] = { "udp.payload", "ip.payload",
                                             "ip.payload", NULL };
    static const char *const len_field[] = { "udp.length", "ip.length",
                                             "ip.length", NULL };
    for (int kind = K_UDP; kind <= K_TCP; kind++) {
        nf_host h = nf_default();
        h.options_len = 4;
        h.options[0] = 1;   /* NOP */
        h.pad_to = 64;
        uint8_t pay[16] = "0123456789abcdef";
        uint8_t a[NETFRAMES_MAX], b[NETFRAMES_MAX];
        size_t an = build(kind, a, &h, pay, 8, 1000);
        const char *field;
        for (size_t i = 0; i < sizeof(ip_variants) / sizeof(ip_variants[0]);
             i++) {
            const variant *v = &ip_variants[i];
            nf_host h2 = h;
            uint8_t p2[16];
            memcpy(p2, pay, 16);
            v->change(&h2, p2);
            size_t bn = build(kind, b, &h2, p2, 8, 1000);
            bool s = same(a, an, b, bn, &field);
            if (!v->field) {
                if (!s)
                    fail_msg("kind %d, %s changed: differs in %s", kind,
                             v->name, field);
            } else {
                if (s)
                    fail_msg("kind %d, %s changed: still the same", kind,
                             v->name);
                assert_string_equal(field, v->field);
            }
        }
        /* The IPv4 header checksum alone. */
        memcpy(b, a, an);
        b[24] ^= 0xff;
        assert_true(same(a, an, b, an, &field));
        /* The payload and its length. */
        uint8_t p2[16];
        memcpy(p2, pay, 16);
        ch_payload(&h, p2);
        size_t bn = build(kind, b, &h, p2, 8, 1000);
        if (kind == K_TCP) {
            /* Compared over sequence ranges, not here. */
            assert_true(same(a, an, b, bn, &field));
            continue;
        }
        assert_false(same(a, an, b, bn, &field));
        assert_string_equal(field, pay_field[kind]);
        bn = build(kind, b, &h, pay, 9, 1000);
        assert_false(same(a, an, b, bn, &field));
        assert_string_equal(field, len_field[kind]);
        if (kind == K_UDP) {
            bn = build(kind, b, &h, pay, 8, 1001);
            assert_false(same(a, an, b, bn, &field));
            assert_string_equal(field, "flow");
            /* The UDP checksum is ignored, as 0 (none) too. */
            memcpy(b, a, an);
            b[14 + 24 + 6] = b[14 + 24 + 7] = 0;
            assert_true(same(a, an, b, an, &field));
        }
    }
}

static void test_tcp_ignored(void **state)
{
    (void)state;
    /* What differs legitimately between two TCP stacks: the comparator
       looks at none of it in the header comparison. */
    nf_host h = nf_default();
    uint8_t a[NETFRAMES_MAX], b[NETFRAMES_MAX];
    size_t an = nf_tcp(a, &h, 1, 2, 100, 200, NETCMP_TCP_ACK, 1000, "x", 1);
    size_t bn = nf_tcp(b, &h, 1, 2, 5100, 300,
                       NETCMP_TCP_ACK | NETCMP_TCP_PSH, 2000, "xy", 2);
    const char *field;
    assert_true(same(a, an, b, bn, &field));
    bn = nf_tcp(b, &h, 1, 3, 100, 200, NETCMP_TCP_ACK, 1000, "x", 1);
    assert_false(same(a, an, b, bn, &field));
    assert_string_equal(field, "flow");
}

static void test_ether_fields(void **state)
{
    (void)state;
    const char *field;
    uint8_t b[60];
    memcpy(b, recorded_arp, 60);
    assert_true(same(recorded_arp, 60, b, 60, &field));
    /* Whole frame: every byte, the padding included. */
    for (size_t at = 14; at < 60; at++) {
        memcpy(b, recorded_arp, 60);
        b[at] ^= 0x80;
        assert_false(same(recorded_arp, 60, b, 60, &field));
        assert_string_equal(field, "frame");
    }
    assert_false(same(recorded_arp, 60, b, 42, &field));
    assert_string_equal(field, "frame.length");
    memcpy(b, recorded_arp, 60);
    b[0] ^= 1;
    assert_false(same(recorded_arp, 60, b, 60, &field));
    assert_string_equal(field, "flow");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recorded),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_every_damage),
        cmocka_unit_test(test_ip_fields),
        cmocka_unit_test(test_tcp_ignored),
        cmocka_unit_test(test_ether_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
