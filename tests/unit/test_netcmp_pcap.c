/*
 * Unit tests for net-compare/netcmp_pcap: mismatching pairs from a real
 * comparator written to a capture file, then read back with libpcap's
 * own reader: packets, bytes, nanosecond timestamps; the file's bound;
 * the errors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pcap/pcap.h>

#include "net-compare/netcmp_pcap.h"
#include "tests/unit/netframes.h"

#define MS 1000000ull
#define OFFSET 1700000000123456789ll    /* the caller's clock to realtime */

typedef struct frame {
    size_t len;
    uint8_t b[NETFRAMES_MAX];
} frame;

static frame udp(const char *text)
{
    frame f;
    nf_host h = nf_default();
    f.len = nf_udp(f.b, &h, 7000, 40000, text, strlen(text));
    return f;
}

/* A mismatch verdict from a comparator: p at tp, s at ts. */
static netcmp_verdict mismatch(frame p, uint64_t tp, frame s, uint64_t ts)
{
    netcmp *nc;
    assert_int_equal(netcmp_new(&nc, NULL), 0);
    assert_int_equal(netcmp_put(nc, NETCMP_PRIMARY, p.b, p.len, tp), 0);
    assert_int_equal(netcmp_put(nc, NETCMP_SECONDARY, s.b, s.len, ts), 0);
    netcmp_verdict v;
    assert_true(netcmp_next(nc, &v));
    assert_int_equal(v.kind, NETCMP_MISMATCH);
    netcmp_free(nc);
    return v;
}

static char *tmp_path(void)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/ftvm-netcmp-%d-XXXXXX", getpid());
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    return path;
}

/* Reads the next packet; its bytes must be want's, its time t + OFFSET. */
static void expect_packet(pcap_t *in, const frame *want, uint64_t t)
{
    struct pcap_pkthdr *h;
    const u_char *data;
    assert_int_equal(pcap_next_ex(in, &h, &data), 1);
    assert_int_equal(h->caplen, want->len);
    assert_int_equal(h->len, want->len);
    assert_memory_equal(data, want->b, want->len);
    uint64_t ns = (uint64_t)h->ts.tv_sec * 1000000000ull +
                  (uint64_t)h->ts.tv_usec;
    assert_int_equal(ns, t + OFFSET);
}

static pcap_t *open_read(const char *path)
{
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *in = pcap_open_offline_with_tstamp_precision(
        path, PCAP_TSTAMP_PRECISION_NANO, err);
    if (!in)
        fail_msg("%s: %s", path, err);
    assert_int_equal(pcap_datalink(in), DLT_EN10MB);
    return in;
}

static void test_pairs(void **state)
{
    (void)state;
    frame p1 = udp("TIME 1001\n"), s1 = udp("TIME 1002\n");
    frame p2 = udp("RAND 5\n"), s2 = udp("RAND 42\n");
    netcmp_verdict v1 = mismatch(p1, 10 * MS + 7, s1, 12 * MS + 9);
    netcmp_verdict v2 = mismatch(p2, 20 * MS, s2, 19 * MS);
    char *path = tmp_path();
    char err[256];
    netcmp_pcap *pc;
    assert_int_equal(netcmp_pcap_open(&pc, path, 0, err, sizeof(err)), 0);
    assert_int_equal(netcmp_pcap_write(pc, &v1, OFFSET), 0);
    assert_int_equal(netcmp_pcap_write(pc, &v2, OFFSET), 0);
    netcmp_pcap_stats st;
    netcmp_pcap_get_stats(pc, &st);
    assert_int_equal(st.pairs, 2);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(netcmp_pcap_close(pc), 0);
    pcap_t *in = open_read(path);
    expect_packet(in, &p1, 10 * MS + 7);
    expect_packet(in, &s1, 12 * MS + 9);
    expect_packet(in, &p2, 20 * MS);
    expect_packet(in, &s2, 19 * MS);
    struct pcap_pkthdr *h;
    const u_char *data;
    assert_int_equal(pcap_next_ex(in, &h, &data), PCAP_ERROR_BREAK);
    pcap_close(in);
    /* The counted bytes are the file's. */
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    assert_int_equal((uint64_t)ftell(f), st.bytes);
    fclose(f);
    unlink(path);
    netcmp_verdict_done(&v1);
    netcmp_verdict_done(&v2);
}

static void test_bound(void **state)
{
    (void)state;
    frame p = udp("a"), s = udp("b");
    netcmp_verdict v = mismatch(p, MS, s, MS);
    char *path = tmp_path();
    char err[256];
    netcmp_pcap *pc;
    /* The file header and one pair fit, not two. */
    uint64_t max = 24 + 2 * (16 + p.len);
    assert_int_equal(netcmp_pcap_open(&pc, path, max, err, sizeof(err)), 0);
    assert_int_equal(netcmp_pcap_write(pc, &v, OFFSET), 0);
    assert_int_equal(netcmp_pcap_write(pc, &v, OFFSET), -ENOSPC);
    assert_int_equal(netcmp_pcap_flush(pc), 0);
    netcmp_pcap_stats st;
    netcmp_pcap_get_stats(pc, &st);
    assert_int_equal(st.pairs, 1);
    assert_int_equal(st.dropped, 1);
    assert_int_equal(st.bytes, max);
    /* Only mismatches are pairs. */
    netcmp_verdict r = { .kind = NETCMP_RELEASE, .frame = v.frame };
    assert_int_equal(netcmp_pcap_write(pc, &r, 0), -EINVAL);
    assert_int_equal(netcmp_pcap_close(pc), 0);
    pcap_t *in = open_read(path);
    expect_packet(in, &p, MS);
    expect_packet(in, &s, MS);
    struct pcap_pkthdr *h;
    const u_char *data;
    assert_int_equal(pcap_next_ex(in, &h, &data), PCAP_ERROR_BREAK);
    pcap_close(in);
    unlink(path);
    netcmp_verdict_done(&v);
}

static void test_open_error(void **state)
{
    (void)state;
    char err[256] = "";
    netcmp_pcap *pc = NULL;
    const char *path = "/nonexistent-ftvm-dir/compare.pcap";
    assert_int_equal(netcmp_pcap_open(&pc, path, 0, err, sizeof(err)),
                     -ENOENT);
    assert_null(pc);
    assert_non_null(strstr(err, "compare log /nonexistent-ftvm-dir/"));
    assert_non_null(strstr(err, "No such file or directory"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pairs),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_open_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
