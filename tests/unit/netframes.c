/* netframes: see netframes.h. */
#include "tests/unit/netframes.h"

#include <string.h>

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    return s;
}

static uint16_t fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

nf_host nf_default(void)
{
    nf_host h = {
        .mac_dst = { 2, 0, 0, 0, 0, 1 }, .mac_src = { 2, 0, 0, 0, 0, 2 },
        .ip_src = { 10, 0, 0, 2 }, .ip_dst = { 10, 0, 0, 1 },
        .ttl = 64, .id = 1, .frag = 0x4000,
    };
    return h;
}

nf_host nf_reverse(const nf_host *h)
{
    nf_host r = *h;
    memcpy(r.mac_dst, h->mac_src, 6);
    memcpy(r.mac_src, h->mac_dst, 6);
    memcpy(r.ip_dst, h->ip_src, 4);
    memcpy(r.ip_src, h->ip_dst, 4);
    return r;
}

/* Ethernet and IPv4 headers for an l4len-byte payload; the L4 offset. */
static size_t ip_head(uint8_t *b, const nf_host *h, uint8_t proto,
                      size_t l4len)
{
    memcpy(b, h->mac_dst, 6);
    memcpy(b + 6, h->mac_src, 6);
    put16(b + 12, 0x0800);
    uint8_t *ip = b + 14;
    size_t hl = 20 + h->options_len;
    ip[0] = (uint8_t)(0x40 | hl / 4);
    ip[1] = h->tos;
    put16(ip + 2, (uint16_t)(hl + l4len));
    put16(ip + 4, h->id);
    put16(ip + 6, h->frag);
    ip[8] = h->ttl;
    ip[9] = proto;
    put16(ip + 10, 0);
    memcpy(ip + 12, h->ip_src, 4);
    memcpy(ip + 16, h->ip_dst, 4);
    memcpy(ip + 20, h->options, h->options_len);
    put16(ip + 10, fold(sum16(ip, hl, 0)));
    return 14 + hl;
}

static size_t pad(uint8_t *b, const nf_host *h, size_t n)
{
    while (n < h->pad_to && n < NETFRAMES_MAX)
        b[n++] = h->pad_byte;
    return n;
}

/* The checksum over the pseudo-header and the L4 bytes. */
static uint16_t l4_sum(const nf_host *h, uint8_t proto, const uint8_t *l4,
                       size_t n)
{
    uint8_t ph[12];
    memcpy(ph, h->ip_src, 4);
    memcpy(ph + 4, h->ip_dst, 4);
    ph[8] = 0;
    ph[9] = proto;
    put16(ph + 10, (uint16_t)n);
    return fold(sum16(l4, n, sum16(ph, 12, 0)));
}

size_t nf_udp(uint8_t *b, const nf_host *h, uint16_t sport, uint16_t dport,
              const void *payload, size_t len)
{
    size_t off = ip_head(b, h, 17, 8 + len);
    uint8_t *u = b + off;
    put16(u, sport);
    put16(u + 2, dport);
    put16(u + 4, (uint16_t)(8 + len));
    put16(u + 6, 0);
    memcpy(u + 8, payload, len);
    put16(u + 6, l4_sum(h, 17, u, 8 + len));
    return pad(b, h, off + 8 + len);
}

size_t nf_tcp(uint8_t *b, const nf_host *h, uint16_t sport, uint16_t dport,
              uint32_t seq, uint32_t ack, uint8_t flags, uint16_t window,
              const void *payload, size_t len)
{
    size_t off = ip_head(b, h, 6, 20 + len);
    uint8_t *t = b + off;
    put16(t, sport);
    put16(t + 2, dport);
    put32(t + 4, seq);
    put32(t + 8, ack);
    t[12] = 5 << 4;
    t[13] = flags;
    put16(t + 14, window);
    put16(t + 16, 0);
    put16(t + 18, 0);
    memcpy(t + 20, payload, len);
    put16(t + 16, l4_sum(h, 6, t, 20 + len));
    return pad(b, h, off + 20 + len);
}

size_t nf_icmp(uint8_t *b, const nf_host *h, uint16_t ident, uint16_t seq,
               const void *payload, size_t len)
{
    size_t off = ip_head(b, h, 1, 8 + len);
    uint8_t *c = b + off;
    c[0] = 0;       /* echo reply */
    c[1] = 0;
    put16(c + 2, 0);
    put16(c + 4, ident);
    put16(c + 6, seq);
    memcpy(c + 8, payload, len);
    put16(c + 2, fold(sum16(c, 8 + len, 0)));
    return pad(b, h, off + 8 + len);
}

size_t nf_ipv4(uint8_t *b, const nf_host *h, uint8_t proto,
               const void *payload, size_t len)
{
    size_t off = ip_head(b, h, proto, len);
    memcpy(b + off, payload, len);
    return pad(b, h, off + len);
}

size_t nf_arp(uint8_t *b, const nf_host *h)
{
    memcpy(b, h->mac_dst, 6);
    memcpy(b + 6, h->mac_src, 6);
    put16(b + 12, 0x0806);
    uint8_t *a = b + 14;
    put16(a, 1);            /* Ethernet */
    put16(a + 2, 0x0800);   /* IPv4 */
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, 2);        /* reply */
    memcpy(a + 8, h->mac_src, 6);
    memcpy(a + 14, h->ip_src, 4);
    memcpy(a + 18, h->mac_dst, 6);
    memcpy(a + 24, h->ip_dst, 4);
    return pad(b, h, 14 + 28);
}
