/*
 * netcmp_frame: one Ethernet frame read for net-compare: which flow it
 * belongs to (its key), where its headers and payload are, and the header
 * fields the comparator looks at (docs/net-compare.md, "Rules").
 *
 * Every length is checked against the frame before it is used.  A frame
 * whose IPv4, UDP or TCP headers do not hold together (truncated, IHL
 * below 5, a total length beyond the frame, ...) is classified
 * NETCMP_MALFORMED with the reason, and compared byte for byte: nothing
 * in it is trusted, nothing is ignored.
 */
#ifndef FTVM_NET_COMPARE_NETCMP_FRAME_H
#define FTVM_NET_COMPARE_NETCMP_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NETCMP_ETH_HLEN 14
#define NETCMP_ETHERTYPE_IPV4 0x0800
#define NETCMP_ETHERTYPE_ARP 0x0806
#define NETCMP_PROTO_TCP 6
#define NETCMP_PROTO_UDP 17

/* TCP flags, as in the header's byte 13. */
#define NETCMP_TCP_FIN 0x01
#define NETCMP_TCP_SYN 0x02
#define NETCMP_TCP_RST 0x04
#define NETCMP_TCP_PSH 0x08
#define NETCMP_TCP_ACK 0x10

typedef enum netcmp_class {
    NETCMP_ETHER,       /* not IPv4 (ARP, IPv6, ...): compared whole */
    NETCMP_IPV4,        /* IPv4 without ports: ICMP, other protocols,
                           fragments */
    NETCMP_UDP,
    NETCMP_TCP,
    NETCMP_MALFORMED,   /* headers that do not hold together */
    NETCMP_CLASS_COUNT,
} netcmp_class;

/*
 * A flow.  Zero-filled before it is set, so two keys are equal when their
 * bytes are (memcmp).  IPv4 flows are keyed by addresses, protocol and
 * ports only: the Ethernet header is a compared field, so two VMs that
 * disagree on a MAC address mismatch rather than wait apart.  Other
 * frames by EtherType and both MAC addresses.  Addresses and ports in
 * network byte order, as in the frame.
 */
typedef struct netcmp_key {
    uint8_t cls;                /* netcmp_class */
    uint8_t proto;              /* IPv4 protocol */
    uint16_t ethertype;         /* host order */
    uint8_t mac_dst[6], mac_src[6];
    uint8_t ip_src[4], ip_dst[4];
    uint8_t port_src[2], port_dst[2];
} netcmp_key;

typedef struct netcmp_frame {
    netcmp_class cls;
    const char *why;            /* NETCMP_MALFORMED: what is wrong */
    netcmp_key key;
    size_t len;                 /* the whole frame */
    /* IPv4 and above: */
    size_t l3_off, l3_hlen;     /* the IPv4 header and its length */
    size_t l3_end;              /* l3_off + total length; padding after */
    bool fragment;              /* MF set or a fragment offset */
    size_t l4_off;              /* the UDP or TCP header */
    size_t payload_off, payload_len;
    /* TCP: */
    uint32_t seq, ack;
    uint8_t tcp_flags;
} netcmp_frame;

/* Reads frame (len bytes) into *f; never fails (see NETCMP_MALFORMED). */
void netcmp_frame_parse(netcmp_frame *f, const uint8_t *frame, size_t len);

/*
 * Whether two frames of the same flow are the same output, by the rules
 * for their class; TCP frames by their headers only (the payload is
 * compared over sequence ranges by the comparator).  When they are not,
 * *field names the first field that differs ("eth.dst", "ip.ttl",
 * "udp.payload", ...).
 */
bool netcmp_frame_same(const netcmp_frame *a, const uint8_t *abytes,
                       const netcmp_frame *b, const uint8_t *bbytes,
                       const char **field);

/* Sequence space a TCP segment occupies: payload, SYN and FIN. */
uint32_t netcmp_tcp_seqlen(const netcmp_frame *f);

const char *netcmp_class_name(netcmp_class c);
/* "udp 10.0.0.2:7000 > 10.0.0.1:40000" and the like, into buf. */
void netcmp_key_format(const netcmp_key *k, char *buf, size_t len);

#endif
