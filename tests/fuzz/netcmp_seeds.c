/*
 * fuzz_netcmp's seeds (netcmp_inputs.h), frames built with the unit
 * tests' builder (tests/unit/netframes.h): UDP, ARP, ICMP and malformed
 * frames matched, mismatched, timed out and over a bound; TCP
 * connections whose two sides differ in ISN and segmentation, written
 * out and made by the target's SPLIT.
 */
#include "tests/fuzz/netcmp_inputs.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tests/unit/netframes.h"

typedef struct seed {
    uint8_t b[1 << 16];
    size_t n;
    bool over;
} seed;

static void byte(seed *s, unsigned v)
{
    if (s->n < sizeof(s->b))
        s->b[s->n++] = (uint8_t)v;
    else
        s->over = true;
}

static void be(seed *s, uint32_t v, int n)
{
    for (int i = n - 1; i >= 0; i--)
        byte(s, v >> (8 * i));
}

static void put(seed *s, int side, const uint8_t *f, size_t len)
{
    byte(s, NC_OP_PUT);
    byte(s, (unsigned)side);
    be(s, (uint32_t)len, 2);
    for (size_t i = 0; i < len; i++)
        byte(s, f[i]);
}

static void echo(seed *s, unsigned at, unsigned x)
{
    byte(s, NC_OP_ECHO);
    be(s, at, 2);
    byte(s, x);
}

static void op(seed *s, int o, int arg)
{
    byte(s, (unsigned)o);
    if (arg >= 0)
        byte(s, (unsigned)arg);
}

static int write_seed(const char *dir, const char *name, const seed *s)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (s->over || !f || fwrite(s->b, 1, s->n, f) != s->n || fclose(f)) {
        fprintf(stderr, "gen_corpus: %s: %s\n", path,
                s->over ? "seed too long" : strerror(errno));
        return -1;
    }
    return 0;
}

static int seed_plain(const char *dir)
{
    static seed s;
    uint8_t f[NETFRAMES_MAX];
    nf_host h = nf_default();
    size_t n;
    /* A UDP answer, echoed; another, sent apart with another IP id. */
    n = nf_udp(f, &h, 7000, 40000, "OK 1\n", 5);
    put(&s, 0, f, n);
    echo(&s, 0, 0);
    n = nf_udp(f, &h, 7000, 40000, "VALUE x\n", 8);
    put(&s, 0, f, n);
    h.id = 999;
    n = nf_udp(f, &h, 7000, 40000, "VALUE x\n", 8);
    put(&s, 1, f, n);
    /* A mismatch in the payload, then the checkpoint. */
    h = nf_default();
    n = nf_udp(f, &h, 7000, 40000, "TIME 17\n", 8);
    put(&s, 0, f, n);
    echo(&s, (unsigned)n - 2, 1);
    op(&s, NC_OP_RESET, 0);
    /* ARP, ICMP and a malformed frame, matched. */
    n = nf_arp(f, &h);
    put(&s, 0, f, n);
    echo(&s, 0, 0);
    n = nf_icmp(f, &h, 1, 1, "ping", 4);
    put(&s, 0, f, n);
    echo(&s, 0, 0);
    f[14] = 0x44;
    put(&s, 0, f, n);
    echo(&s, 0, 0);
    /* A timeout, a checkpoint that keeps, and the match after it. */
    n = nf_udp(f, &h, 7001, 40000, "late\n", 5);
    put(&s, 0, f, n);
    op(&s, NC_OP_TICK, 150);
    op(&s, NC_OP_RESET, 1);
    echo(&s, 0, 0);
    /* A flow over its bound. */
    for (int i = 0; i < 9; i++)
        put(&s, 0, f, n);
    op(&s, NC_OP_RESET, 0);
    op(&s, NC_OP_TICK, 10);
    return write_seed(dir, "plain", &s);
}

static int seed_tcp(const char *dir)
{
    static seed s;
    uint8_t f[NETFRAMES_MAX];
    nf_host h = nf_default();
    const uint32_t p = 1000, q = 50000, c = 7001;
    size_t n;
    n = nf_tcp(f, &h, 80, 40000, p, c, 0x12, 29200, "", 0);
    put(&s, 0, f, n);
    n = nf_tcp(f, &h, 80, 40000, q, c, 0x12, 28960, "", 0);
    put(&s, 1, f, n);
    /* The client's request, put as a primary frame only for REWRITE to
       have it; the checkpoint releases it. */
    nf_host cl = nf_reverse(&h);
    n = nf_tcp(f, &cl, 40000, 80, c, p + 1, 0x18, 502, "GET", 3);
    put(&s, 0, f, n);
    op(&s, NC_OP_REWRITE, -1);
    op(&s, NC_OP_RESET, 0);
    /* The answer: one segment and two. */
    n = nf_tcp(f, &h, 80, 40000, p, c, 0x12, 29200, "", 0);
    put(&s, 0, f, n);
    n = nf_tcp(f, &h, 80, 40000, q, c, 0x12, 29200, "", 0);
    put(&s, 1, f, n);
    n = nf_tcp(f, &h, 80, 40000, p + 1, c + 3, 0x18, 29200, "hello world",
               11);
    put(&s, 0, f, n);
    n = nf_tcp(f, &h, 80, 40000, q + 1, c + 3, 0x10, 29200, "hello ", 6);
    put(&s, 1, f, n);
    n = nf_tcp(f, &h, 80, 40000, q + 7, c + 3, 0x18, 29200, "world", 5);
    put(&s, 1, f, n);
    /* A pure ACK, the secondary's first; a retransmission. */
    n = nf_tcp(f, &h, 80, 40000, q + 12, c + 5, 0x10, 29200, "", 0);
    put(&s, 1, f, n);
    n = nf_tcp(f, &h, 80, 40000, p + 12, c + 5, 0x10, 29200, "", 0);
    put(&s, 0, f, n);
    n = nf_tcp(f, &h, 80, 40000, p + 1, c + 3, 0x18, 29200, "hello world",
               11);
    put(&s, 0, f, n);
    /* FIN, then an offset the caller sets. */
    n = nf_tcp(f, &h, 80, 40000, p + 12, c + 5, 0x11, 29200, "", 0);
    put(&s, 0, f, n);
    /* Echoed unshifted: far behind in the secondary's space, taken for
       a retransmission and dropped; the FIN times out. */
    echo(&s, 0, 0);
    byte(&s, NC_OP_OFFSET);
    be(&s, p - q, 4);
    op(&s, NC_OP_TICK, 200);
    op(&s, NC_OP_RESET, 0);
    return write_seed(dir, "tcp", &s);
}

static void split(seed *s, unsigned cut, uint32_t delta)
{
    byte(s, NC_OP_SPLIT);
    byte(s, cut);
    be(s, delta, 4);
}

/* A connection the guests open, the secondary's stack cutting it. */
static int seed_split(const char *dir)
{
    static seed s;
    uint8_t f[NETFRAMES_MAX];
    nf_host h = nf_default();
    const uint32_t p = 0xfffffff0u, delta = 0x80000000u, c = 333;
    size_t n;
    n = nf_tcp(f, &h, 40001, 80, p, 0, 0x02, 29200, "", 0);
    put(&s, 0, f, n);
    split(&s, 0, delta);
    /* The server's SYN-ACK, as the secondary gets it, the ACK rewritten. */
    nf_host srv = nf_reverse(&h);
    n = nf_tcp(f, &srv, 80, 40001, c, p + 1, 0x12, 65535, "", 0);
    put(&s, 0, f, n);
    op(&s, NC_OP_REWRITE, -1);
    op(&s, NC_OP_RESET, 0);
    n = nf_tcp(f, &h, 40001, 80, p, 0, 0x02, 29200, "", 0);
    put(&s, 0, f, n);
    split(&s, 0, delta);
    /* A request across the wrap, cut in two; the ACK the secondary's
       pure ACK lets go; the last bytes with FIN, cut before the FIN. */
    n = nf_tcp(f, &h, 40001, 80, p + 1, c + 1, 0x18, 29200,
               "GET /a-long-path HTTP/1.0\r\n\r\n", 29);
    put(&s, 0, f, n);
    split(&s, 11, delta);
    n = nf_tcp(f, &h, 40001, 80, p + 30, c + 100, 0x10, 29200, "", 0);
    put(&s, 0, f, n);
    split(&s, 0, delta);
    n = nf_tcp(f, &h, 40001, 80, p + 30, c + 100, 0x11, 29200, "bye", 3);
    put(&s, 0, f, n);
    split(&s, 3, delta);
    /* The wrong shift: a position mismatch, then the checkpoint. */
    n = nf_tcp(f, &h, 40001, 80, p + 34, c + 100, 0x10, 29200, "x", 1);
    put(&s, 0, f, n);
    split(&s, 0, delta + 1);
    op(&s, NC_OP_RESET, 0);
    return write_seed(dir, "tcp-split", &s);
}

int netcmp_seeds_write(const char *dir)
{
    return seed_plain(dir) | seed_tcp(dir) | seed_split(dir);
}
