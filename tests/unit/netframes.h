/*
 * netframes: Ethernet frames built byte by byte, as a capture shows them
 * (IPv4 and TCP/UDP checksums computed), for net-compare's unit tests
 * and fuzz seeds.  Each builder writes into buf (NETFRAMES_MAX bytes) and
 * returns the frame's length.
 */
#ifndef FTVM_TESTS_UNIT_NETFRAMES_H
#define FTVM_TESTS_UNIT_NETFRAMES_H

#include <stddef.h>
#include <stdint.h>

#define NETFRAMES_MAX 1514

/* Everything below Layer 4; nf_host() fills the defaults. */
typedef struct nf_host {
    uint8_t mac_dst[6], mac_src[6];
    uint8_t ip_src[4], ip_dst[4];
    uint8_t tos, ttl;
    uint16_t id;
    uint16_t frag;              /* flags and offset: 0x4000 is DF */
    uint8_t options[40];
    size_t options_len;         /* a multiple of 4 */
    size_t pad_to;              /* Ethernet padding up to this length */
    uint8_t pad_byte;
} nf_host;

/* The guest 10.0.0.2 (02:00:00:00:00:02) to 10.0.0.1 (02:..:01), TTL 64,
   DF, id 1. */
nf_host nf_default(void);

size_t nf_udp(uint8_t *buf, const nf_host *h, uint16_t sport, uint16_t dport,
              const void *payload, size_t len);
size_t nf_tcp(uint8_t *buf, const nf_host *h, uint16_t sport, uint16_t dport,
              uint32_t seq, uint32_t ack, uint8_t flags, uint16_t window,
              const void *payload, size_t len);
/* ICMP echo reply with this payload. */
size_t nf_icmp(uint8_t *buf, const nf_host *h, uint16_t ident, uint16_t seq,
               const void *payload, size_t len);
/* Any IPv4 protocol's payload as it is. */
size_t nf_ipv4(uint8_t *buf, const nf_host *h, uint8_t proto,
               const void *payload, size_t len);
/* An ARP reply: h's addresses, as a guest answers who-has. */
size_t nf_arp(uint8_t *buf, const nf_host *h);

/* The reversed frame's host: the world's answer to h. */
nf_host nf_reverse(const nf_host *h);

#endif
