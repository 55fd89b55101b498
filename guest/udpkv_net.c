/*
 * udpkv's network stack: just enough IPv4 for a host to reach one UDP port
 * over a TAP device.  ARP requests for our address and ICMP echo requests
 * are answered; UDP datagrams to our port go to udpkv_serve.  Everything
 * else is dropped.
 *
 * Replies go back to the Ethernet source of the request, so no ARP cache is
 * needed: the server never speaks first.  Fragments are dropped (requests
 * fit in one datagram) and IP options are skipped.  Byte order on the wire
 * is handled byte by byte, so no struct packing or alignment matters.
 */
#include "udpkv.h"

#define ETH_HLEN 14
#define ETH_MIN_FRAME 60            /* without the FCS */
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP 0x0806
#define ARP_LEN 28
#define IP_HLEN 20
#define IP_PROTO_ICMP 1
#define IP_PROTO_UDP 17
#define IP_FLAG_DF 0x4000
#define IP_FRAG_MASK 0x3fff         /* MF and the fragment offset */
#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8
#define UDP_HLEN 8

static uint8_t tx[UDPKV_FRAME_MAX];

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

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

/* The Internet checksum (RFC 1071): a ones' complement sum of 16-bit
 * big-endian words, an odd last byte padded with zero. */
static uint64_t csum_add(uint64_t sum, const uint8_t *p, size_t len)
{
    for (; len > 1; p += 2, len -= 2)
        sum += get16(p);
    if (len > 0)
        sum += (uint64_t)p[0] << 8;
    return sum;
}

static uint16_t csum_fold(uint64_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* The UDP pseudo-header: addresses, protocol and UDP length. */
static uint64_t csum_pseudo(uint32_t src, uint32_t dst, uint16_t udp_len)
{
    return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) +
           IP_PROTO_UDP + udp_len;
}

static void format_ip(char *buf, size_t size, uint32_t ip)
{
    snprintf(buf, size, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 0xff,
             (ip >> 8) & 0xff, ip & 0xff);
}

int udpkv_parse_ip(const char *s, uint32_t *ip)
{
    uint32_t v = 0;

    for (int i = 0; i < 4; i++) {
        const char *end;
        bool over;

        if (*s < '0' || *s > '9')
            return -1;
        uint64_t octet = ftvm_strtou64(s, &end, 10, &over);
        if (over || octet > 255 || *end != (i < 3 ? '.' : '\0'))
            return -1;
        v = v << 8 | (uint32_t)octet;
        s = end + 1;
    }
    *ip = v;
    return 0;
}

static void send_frame(struct udpkv_net *net, size_t len)
{
    /* Short frames are padded as Ethernet requires; bridges and real NICs
     * may drop runts. */
    if (len < ETH_MIN_FRAME) {
        memset(tx + len, 0, ETH_MIN_FRAME - len);
        len = ETH_MIN_FRAME;
    }
    int64_t ret = ftvm_net_write(tx, len);
    if (ret < 0) {
        net->stats.tx_errors++;
        if (net->verbose)
            printf("udpkv: net write of %lu bytes: %s\n",
                   (unsigned long)len, ftvm_strerror(ret));
    }
}

static void eth_header(struct udpkv_net *net, const uint8_t *dst_mac,
                       uint16_t type)
{
    memcpy(tx, dst_mac, 6);
    memcpy(tx + 6, net->mac, 6);
    put16(tx + 12, type);
}

/* Sends the IP payload already at tx + ETH_HLEN + IP_HLEN. */
static void send_ip(struct udpkv_net *net, const uint8_t *dst_mac,
                    uint32_t dst_ip, uint8_t proto, size_t payload_len)
{
    uint8_t *ip = tx + ETH_HLEN;

    eth_header(net, dst_mac, ETHERTYPE_IPV4);
    ip[0] = 0x45;                           /* IPv4, 20-byte header */
    ip[1] = 0;
    put16(ip + 2, (uint16_t)(IP_HLEN + payload_len));
    put16(ip + 4, net->ip_id++);
    put16(ip + 6, IP_FLAG_DF);
    ip[8] = 64;                             /* TTL */
    ip[9] = proto;
    put16(ip + 10, 0);
    put32(ip + 12, net->ip);
    put32(ip + 16, dst_ip);
    put16(ip + 10, csum_fold(csum_add(0, ip, IP_HLEN)));
    send_frame(net, ETH_HLEN + IP_HLEN + payload_len);
}

static void arp_input(struct udpkv_net *net, const uint8_t *arp, size_t len)
{
    if (len < ARP_LEN || get16(arp) != 1 || get16(arp + 2) != ETHERTYPE_IPV4 ||
        arp[4] != 6 || arp[5] != 4) {
        net->stats.bad++;
        return;
    }
    /* Only requests for our address; replies and gratuitous ARP from
     * others need no answer because we keep no cache. */
    if (get16(arp + 6) != 1 || get32(arp + 24) != net->ip) {
        net->stats.dropped++;
        return;
    }

    const uint8_t *sha = arp + 8;
    uint8_t *r = tx + ETH_HLEN;

    eth_header(net, sha, ETHERTYPE_ARP);
    put16(r, 1);                            /* Ethernet */
    put16(r + 2, ETHERTYPE_IPV4);
    r[4] = 6;
    r[5] = 4;
    put16(r + 6, 2);                        /* reply */
    memcpy(r + 8, net->mac, 6);
    put32(r + 14, net->ip);
    memcpy(r + 18, sha, 6);
    memcpy(r + 24, arp + 14, 4);            /* the asker's address */
    net->stats.arp++;
    send_frame(net, ETH_HLEN + ARP_LEN);
}

static void icmp_input(struct udpkv_net *net, const uint8_t *src_mac,
                       uint32_t src_ip, const uint8_t *icmp, size_t len)
{
    if (len < 8 || csum_fold(csum_add(0, icmp, len)) != 0) {
        net->stats.bad++;
        return;
    }
    if (icmp[0] != ICMP_ECHO_REQUEST || icmp[1] != 0) {
        net->stats.dropped++;
        return;
    }

    /* The reply is the request with another type: same identifier,
     * sequence number and data, which is what ping checks. */
    uint8_t *r = tx + ETH_HLEN + IP_HLEN;
    memcpy(r, icmp, len);
    r[0] = ICMP_ECHO_REPLY;
    put16(r + 2, 0);
    put16(r + 2, csum_fold(csum_add(0, r, len)));
    net->stats.ping++;
    send_ip(net, src_mac, src_ip, IP_PROTO_ICMP, len);
}

static void udp_input(struct udpkv_net *net, const uint8_t *src_mac,
                      uint32_t src_ip, uint32_t dst_ip, const uint8_t *udp,
                      size_t len)
{
    if (len < UDP_HLEN) {
        net->stats.bad++;
        return;
    }
    uint16_t udp_len = get16(udp + 4);
    if (udp_len < UDP_HLEN || udp_len > len) {
        net->stats.bad++;
        return;
    }
    /* A zero checksum means the sender did not compute one (IPv4 only). */
    if (get16(udp + 6) != 0 &&
        csum_fold(csum_add(csum_pseudo(src_ip, dst_ip, udp_len), udp,
                           udp_len)) != 0) {
        net->stats.bad++;
        return;
    }
    if (get16(udp + 2) != net->port) {
        net->stats.dropped++;
        return;
    }

    uint16_t src_port = get16(udp);
    uint8_t *r = tx + ETH_HLEN + IP_HLEN;
    char peer[24];

    format_ip(peer, sizeof(peer), src_ip);
    snprintf(peer + strlen(peer), sizeof(peer) - strlen(peer), ":%u",
             src_port);
    size_t n = udpkv_serve(udp + UDP_HLEN, udp_len - UDP_HLEN, r + UDP_HLEN,
                           net->mtu - IP_HLEN - UDP_HLEN, peer, net->verbose);

    put16(r, net->port);
    put16(r + 2, src_port);
    put16(r + 4, (uint16_t)(UDP_HLEN + n));
    put16(r + 6, 0);
    uint16_t sum = csum_fold(csum_add(
        csum_pseudo(net->ip, src_ip, (uint16_t)(UDP_HLEN + n)), r,
        UDP_HLEN + n));
    /* 0 would mean "no checksum"; its ones' complement twin says 0. */
    put16(r + 6, sum == 0 ? 0xffff : sum);
    net->stats.requests++;
    send_ip(net, src_mac, src_ip, IP_PROTO_UDP, UDP_HLEN + n);
}

static void ipv4_input(struct udpkv_net *net, const uint8_t *src_mac,
                       const uint8_t *ip, size_t len)
{
    if (len < IP_HLEN || ip[0] >> 4 != 4) {
        net->stats.bad++;
        return;
    }
    size_t hlen = (size_t)(ip[0] & 0xf) * 4;
    size_t total = get16(ip + 2);
    /* total, not the frame length: short frames carry Ethernet padding. */
    if (hlen < IP_HLEN || total < hlen || total > len || total > net->mtu ||
        csum_fold(csum_add(0, ip, hlen)) != 0) {
        net->stats.bad++;
        return;
    }
    uint32_t src_ip = get32(ip + 12);
    uint32_t dst_ip = get32(ip + 16);
    if (dst_ip != net->ip || (get16(ip + 6) & IP_FRAG_MASK) != 0) {
        net->stats.dropped++;
        return;
    }

    switch (ip[9]) {
    case IP_PROTO_ICMP:
        icmp_input(net, src_mac, src_ip, ip + hlen, total - hlen);
        break;
    case IP_PROTO_UDP:
        udp_input(net, src_mac, src_ip, dst_ip, ip + hlen, total - hlen);
        break;
    default:
        net->stats.dropped++;
        break;
    }
}

void udpkv_net_input(struct udpkv_net *net, const uint8_t *frame, size_t len)
{
    static const uint8_t broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff,
                                          0xff };

    net->stats.frames++;
    if (len < ETH_HLEN) {
        net->stats.bad++;
        return;
    }
    if (memcmp(frame, net->mac, 6) != 0 && memcmp(frame, broadcast, 6) != 0) {
        net->stats.dropped++;
        return;
    }

    const uint8_t *src_mac = frame + 6;
    switch (get16(frame + 12)) {
    case ETHERTYPE_ARP:
        arp_input(net, frame + ETH_HLEN, len - ETH_HLEN);
        break;
    case ETHERTYPE_IPV4:
        ipv4_input(net, src_mac, frame + ETH_HLEN, len - ETH_HLEN);
        break;
    default:
        net->stats.dropped++;
        break;
    }
}
