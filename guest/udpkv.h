/*
 * udpkv's five parts: the network stack (udpkv_net.c: Ethernet, ARP,
 * IPv4, ICMP echo, UDP), the key-value store (udpkv_store.c), its copy on
 * the disk (udpkv_disk.c, with persist=1), the nondeterministic answers
 * (udpkv_noise.c) and the request protocol with main (udpkv.c).
 * docs/udpkv-protocol.md has the protocol and the disk layout byte by
 * byte.
 */
#ifndef FTVM_GUEST_UDPKV_H
#define FTVM_GUEST_UDPKV_H

#include "ftvm.h"

#define UDPKV_KEY_MAX 64
#define UDPKV_VALUE_MAX 1024
#define UDPKV_ID_MAX 32
#define UDPKV_SLOTS 4096
/* Three quarters full at most, so every probe sequence stays short. */
#define UDPKV_KEYS_MAX (UDPKV_SLOTS / 4 * 3)

struct udpkv_stats {
    uint64_t frames;        /* received */
    uint64_t arp;           /* ARP requests answered */
    uint64_t ping;          /* ICMP echo requests answered */
    uint64_t requests;      /* UDP requests answered */
    uint64_t dropped;       /* not for us, or not understood */
    uint64_t bad;           /* malformed or with a wrong checksum */
    uint64_t tx_errors;     /* NET_WRITE failed */
};

struct udpkv_net {
    uint8_t mac[6];
    uint32_t ip;            /* host byte order */
    uint16_t port;
    uint16_t ip_id;
    uint32_t mtu;           /* largest IP packet we send or accept */
    bool verbose;
    struct udpkv_stats stats;
};

/* Frames larger than this are not accepted, whatever the device's MTU. */
#define UDPKV_FRAME_MAX 9018

/* Handles one received Ethernet frame, answering it when it asks for it. */
void udpkv_net_input(struct udpkv_net *net, const uint8_t *frame,
                     size_t len);

/* Parses dotted-quad IPv4 into host byte order: 0 or -1. */
int udpkv_parse_ip(const char *s, uint32_t *ip);

/*
 * Answers one request datagram: writes the reply into out (cap bytes) and
 * returns its length.  peer names the client for verbose logging.
 */
size_t udpkv_serve(const uint8_t *req, size_t len, uint8_t *out, size_t cap,
                   const char *peer, bool verbose);

/*
 * The store.  Keys are 1..UDPKV_KEY_MAX bytes, values 0..UDPKV_VALUE_MAX.
 * Each key carries a tag for the persistence (its slot on the disk).
 */
int udpkv_store_put(const char *key, size_t klen, const char *val,
                    size_t vlen, uint32_t tag);         /* 0, -1 full */
int udpkv_store_tag(const char *key, size_t klen,
                    uint32_t *tag);                     /* 0, -1 absent */
int udpkv_store_get(const char *key, size_t klen, const char **val,
                    size_t *vlen);                      /* 0, -1 absent */
int udpkv_store_del(const char *key, size_t klen);      /* 0, -1 absent */
size_t udpkv_store_count(void);

/*
 * persist=1: udpkv_disk_open checks the disk and formats it (sector 0 all
 * zeros) or loads the store from it, printing what it did; 0, or -1 with
 * the reason printed.  put and del change the disk (flushed) and then the
 * store, and return the reply's status ("OK", "NOTFOUND", "ERR ...").
 * An I/O error stops the guest with status 1.
 */
int udpkv_disk_open(void);
const char *udpkv_disk_put(const char *key, size_t klen, const char *val,
                           size_t vlen);
const char *udpkv_disk_del(const char *key, size_t klen);

/* RAND: a 64-bit random number, from RDRAND when use_rdrand
 * (udpkv_has_rdrand(): CPUID leaf 1), else the time stamp counter mixed;
 * TIME is the counter itself (ftvm_rdtsc). */
bool udpkv_has_rdrand(void);
uint64_t udpkv_random(bool use_rdrand);

#endif
