/* netcmp_frame: see netcmp_frame.h; the rules are docs/net-compare.md's. */
#include "net-compare/netcmp_frame.h"

#include <stdio.h>
#include <string.h>

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

/* Returns 0, for the parsers' `return malformed(...)`. */
static int malformed(netcmp_frame *f, const char *why)
{
    f->cls = NETCMP_MALFORMED;
    f->why = why;
    f->key.cls = NETCMP_MALFORMED;
    f->key.proto = 0;
    memset(f->key.ip_src, 0, sizeof(f->key.ip_src));
    memset(f->key.ip_dst, 0, sizeof(f->key.ip_dst));
    memset(f->key.port_src, 0, sizeof(f->key.port_src));
    memset(f->key.port_dst, 0, sizeof(f->key.port_dst));
    return 0;
}

/* The UDP or TCP header after an unfragmented IPv4 header. */
static int parse_l4(netcmp_frame *f, const uint8_t *b)
{
    size_t off = f->l4_off, avail = f->l3_end - off;
    if (f->key.proto == NETCMP_PROTO_UDP) {
        if (avail < 8)
            return malformed(f, "UDP header truncated");
        size_t ulen = be16(b + off + 4);
        if (ulen < 8)
            return malformed(f, "UDP length below 8");
        if (ulen > avail)
            return malformed(f, "UDP length beyond the IPv4 packet");
        f->cls = NETCMP_UDP;
        f->payload_off = off + 8;
        f->payload_len = ulen - 8;
    } else {
        if (avail < 20)
            return malformed(f, "TCP header truncated");
        size_t doff = (size_t)(b[off + 12] >> 4) * 4;
        if (doff < 20)
            return malformed(f, "TCP data offset below 5");
        if (doff > avail)
            return malformed(f, "TCP header beyond the IPv4 packet");
        f->cls = NETCMP_TCP;
        f->seq = be32(b + off + 4);
        f->ack = be32(b + off + 8);
        f->tcp_flags = b[off + 13];
        f->payload_off = off + doff;
        f->payload_len = avail - doff;
    }
    f->key.cls = (uint8_t)f->cls;
    memcpy(f->key.port_src, b + off, 2);
    memcpy(f->key.port_dst, b + off + 2, 2);
    return 0;
}

static int parse(netcmp_frame *f, const uint8_t *b, size_t len)
{
    memset(f, 0, sizeof(*f));
    f->len = len;
    if (len < NETCMP_ETH_HLEN)
        return malformed(f, "Ethernet header truncated");
    f->key.ethertype = be16(b + 12);
    if (f->key.ethertype != NETCMP_ETHERTYPE_IPV4) {
        f->cls = NETCMP_ETHER;
        f->key.cls = NETCMP_ETHER;
        memcpy(f->key.mac_dst, b, 6);
        memcpy(f->key.mac_src, b + 6, 6);
        return 0;
    }
    /* The MACs stay in the key of a malformed IPv4 frame only. */
    memcpy(f->key.mac_dst, b, 6);
    memcpy(f->key.mac_src, b + 6, 6);
    size_t l3 = NETCMP_ETH_HLEN;
    f->l3_off = l3;
    if (len - l3 < 20)
        return malformed(f, "IPv4 header truncated");
    if (b[l3] >> 4 != 4)
        return malformed(f, "IP version is not 4");
    size_t hlen = (size_t)(b[l3] & 0x0f) * 4;
    if (hlen < 20)
        return malformed(f, "IPv4 IHL below 5");
    if (hlen > len - l3)
        return malformed(f, "IPv4 options beyond the frame");
    size_t tot = be16(b + l3 + 2);
    if (tot < hlen)
        return malformed(f, "IPv4 total length below its header");
    if (tot > len - l3)
        return malformed(f, "IPv4 total length beyond the frame");
    memset(f->key.mac_dst, 0, sizeof(f->key.mac_dst));
    memset(f->key.mac_src, 0, sizeof(f->key.mac_src));
    f->l3_hlen = hlen;
    f->l3_end = l3 + tot;
    f->key.proto = b[l3 + 9];
    memcpy(f->key.ip_src, b + l3 + 12, 4);
    memcpy(f->key.ip_dst, b + l3 + 16, 4);
    uint16_t frag = be16(b + l3 + 6);
    f->fragment = (frag & 0x2000) || (frag & 0x1fff);
    f->cls = NETCMP_IPV4;
    f->key.cls = NETCMP_IPV4;
    f->payload_off = l3 + hlen;
    f->payload_len = tot - hlen;
    if (f->fragment || (f->key.proto != NETCMP_PROTO_UDP &&
                        f->key.proto != NETCMP_PROTO_TCP))
        return 0;
    f->l4_off = l3 + hlen;
    return parse_l4(f, b);
}

void netcmp_frame_parse(netcmp_frame *f, const uint8_t *b, size_t len)
{
    (void)parse(f, b, len);
}

uint32_t netcmp_tcp_seqlen(const netcmp_frame *f)
{
    return (uint32_t)f->payload_len + !!(f->tcp_flags & NETCMP_TCP_SYN) +
           !!(f->tcp_flags & NETCMP_TCP_FIN);
}

static bool differ(const uint8_t *a, const uint8_t *b, size_t n,
                   const char *name, const char **field)
{
    if (memcmp(a, b, n) == 0)
        return false;
    *field = name;
    return true;
}

bool netcmp_frame_same(const netcmp_frame *a, const uint8_t *x,
                       const netcmp_frame *b, const uint8_t *y,
                       const char **field)
{
    const char *dummy;
    if (!field)
        field = &dummy;
    *field = NULL;
    if (memcmp(&a->key, &b->key, sizeof(a->key)) != 0) {
        *field = "flow";
        return false;
    }
    if (a->cls == NETCMP_ETHER || a->cls == NETCMP_MALFORMED) {
        if (a->len != b->len) {
            *field = "frame.length";
            return false;
        }
        return !differ(x, y, a->len, "frame", field);
    }
    /* IPv4: the id (bytes 4-5) and the checksum (10-11) are ignored. */
    size_t l3 = a->l3_off;
    if (differ(x, y, 6, "eth.dst", field) ||
        differ(x + 6, y + 6, 6, "eth.src", field))
        return false;
    if (x[l3] != y[l3]) {
        *field = "ip.ihl";
        return false;
    }
    if (differ(x + l3 + 1, y + l3 + 1, 1, "ip.tos", field) ||
        differ(x + l3 + 6, y + l3 + 6, 2, "ip.flags", field) ||
        differ(x + l3 + 8, y + l3 + 8, 1, "ip.ttl", field) ||
        differ(x + l3 + 20, y + l3 + 20, a->l3_hlen - 20, "ip.options",
               field))
        return false;
    if (a->cls == NETCMP_TCP)
        return true;
    const char *len_name = a->cls == NETCMP_UDP ? "udp.length" : "ip.length";
    const char *pay_name = a->cls == NETCMP_UDP ? "udp.payload"
                                                : "ip.payload";
    if (a->l3_end - a->l3_off != b->l3_end - b->l3_off ||
        a->payload_len != b->payload_len) {
        *field = len_name;
        return false;
    }
    /* UDP: the checksum (header bytes 6-7) is ignored, the rest compared. */
    size_t from = a->cls == NETCMP_UDP ? a->l4_off + 8 : a->payload_off;
    return !differ(x + from, y + from, a->l3_end - from, pay_name, field);
}

const char *netcmp_class_name(netcmp_class c)
{
    static const char *const names[] = {
        [NETCMP_ETHER] = "ether", [NETCMP_IPV4] = "ipv4",
        [NETCMP_UDP] = "udp", [NETCMP_TCP] = "tcp",
        [NETCMP_MALFORMED] = "malformed",
    };
    return (unsigned)c < NETCMP_CLASS_COUNT ? names[c] : "?";
}

void netcmp_key_format(const netcmp_key *k, char *buf, size_t len)
{
    const uint8_t *s = k->ip_src, *d = k->ip_dst;
    const uint8_t *ms = k->mac_src, *md = k->mac_dst;
    switch (k->cls) {
    case NETCMP_UDP:
    case NETCMP_TCP:
        snprintf(buf, len, "%s %u.%u.%u.%u:%u > %u.%u.%u.%u:%u",
                 netcmp_class_name(k->cls), s[0], s[1], s[2], s[3],
                 be16(k->port_src), d[0], d[1], d[2], d[3],
                 be16(k->port_dst));
        break;
    case NETCMP_IPV4:
        snprintf(buf, len, "ipv4 proto %u %u.%u.%u.%u > %u.%u.%u.%u",
                 k->proto, s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3]);
        break;
    default:
        snprintf(buf, len, "%s type 0x%04x %02x:%02x:%02x:%02x:%02x:%02x > "
                 "%02x:%02x:%02x:%02x:%02x:%02x", netcmp_class_name(k->cls),
                 k->ethertype, ms[0], ms[1], ms[2], ms[3], ms[4], ms[5],
                 md[0], md[1], md[2], md[3], md[4], md[5]);
        break;
    }
}
