/*
 * udpkv: a UDP key-value server on the VM's network device.
 *
 * Arguments (key=value, all optional):
 *   ip=A.B.C.D        the server's IPv4 address (default 10.0.0.2)
 *   port=P            the UDP port served (default 7777)
 *   verbose=0|1       log every request and dropped reply (default 0)
 *   stats-every=S     print counters every S seconds; 0 = never (default 0)
 *   persist=0|1       keep the store on the VM's disk (default 0): every
 *                     PUT and DEL reaches the disk, flushed, before its
 *                     reply; at boot the store is loaded from it
 *
 * It answers ARP for ip, ICMP echo (ping) and, on port P, one request per
 * datagram (docs/udpkv-protocol.md):
 *   ID PUT key value  ->  ID OK
 *   ID GET key        ->  ID VALUE value | ID NOTFOUND
 *   ID DEL key        ->  ID OK | ID NOTFOUND
 *   ID TIME           ->  ID VALUE tsc       (decimal; differs between VMs)
 *   ID RAND           ->  ID VALUE x         (64 bits, 16 hex digits)
 *   anything wrong    ->  ID ERR message
 *
 * Output:
 *   udpkv ready ip=10.0.0.2 port=7777 mac=52:54:00:12:34:56 mtu=1500 \
 *       rand=rdrand|tsc                 (RAND's source: CPUID's RDRAND bit)
 *   udpkv stats frames=F arp=A ping=I requests=R dropped=D bad=B \
 *       tx_errors=T keys=K                        (every S seconds)
 *   udpkv req PEER ID VERB key -> REPLY           (with verbose=1)
 *   udpkv persist: formatted the disk (3073 slots)        (persist=1, a
 *   udpkv persist: loaded K keys from the disk (...)       zero disk, or
 *                                                          one it wrote)
 * It runs until the VM is stopped; without a network device it prints
 * "udpkv: no network device" and exits 1; with persist=1 and no usable
 * disk (none, readonly, too small, holding something else) it says which
 * and exits 1.
 */
#include "udpkv.h"

#define DEFAULT_IP 0x0a000002u      /* 10.0.0.2 */
/* With no stats to print, how long one poll may block (about 18 min). */
#define IDLE_POLL_NS (1ull << 40)

static uint8_t rx[UDPKV_FRAME_MAX];
/* CPUID says RDRAND is there: RAND uses it (else the TSC, mixed). */
static bool use_rdrand;
/* persist=1: PUT and DEL go through udpkv_disk.c. */
static bool persist;

static bool printable_word(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] > '~')
            return false;
    return true;
}

/* Length of the word at s: the bytes before the next space or the end. */
static size_t word_len(const char *s, size_t n)
{
    const char *sp = memchr(s, ' ', n);

    return sp ? (size_t)(sp - s) : n;
}

struct reply {
    uint8_t *buf;
    size_t cap;
    size_t len;
};

static void reply_add(struct reply *r, const void *data, size_t n)
{
    if (n > r->cap - r->len)
        n = r->cap - r->len;
    memcpy(r->buf + r->len, data, n);
    r->len += n;
}

static void reply_str(struct reply *r, const char *s)
{
    reply_add(r, s, strlen(s));
}

struct request {
    const char *verb, *key, *val;
    size_t verb_len, key_len, val_len;
    char num[24];           /* TIME's and RAND's value, val points here */
};

/* "-" for an absent field, so a log line always has the same words; a
 * junk verb is cut short. */
static int field_len(size_t n)
{
    return n == 0 ? 1 : n > UDPKV_KEY_MAX ? UDPKV_KEY_MAX : (int)n;
}

static const char *field(const char *s, size_t n)
{
    return n > 0 ? s : "-";
}

/*
 * Parses and executes the request after the id: fills rq and returns the
 * reply's status ("OK", "NOTFOUND", "ERR ..."), or NULL for a VALUE reply
 * whose value is rq->val.
 */
static const char *execute(const char *p, size_t n, struct request *rq)
{
    size_t vl = word_len(p, n);

    rq->verb = p;
    rq->verb_len = vl;
    bool is_put = vl == 3 && memcmp(p, "PUT", 3) == 0;
    bool is_get = vl == 3 && memcmp(p, "GET", 3) == 0;
    bool is_del = vl == 3 && memcmp(p, "DEL", 3) == 0;
    bool is_time = vl == 4 && memcmp(p, "TIME", 4) == 0;
    bool is_rand = vl == 4 && memcmp(p, "RAND", 4) == 0;

    if (vl == 0)
        return "ERR missing command";
    if (is_time || is_rand) {
        if (vl != n)
            return "ERR extra arguments";
        if (is_time)
            snprintf(rq->num, sizeof(rq->num), "%lu",
                     (unsigned long)ftvm_rdtsc());
        else
            snprintf(rq->num, sizeof(rq->num), "%016lx",
                     (unsigned long)udpkv_random(use_rdrand));
        rq->val = rq->num;
        rq->val_len = strlen(rq->num);
        return NULL;
    }
    if (!is_put && !is_get && !is_del)
        return "ERR unknown command";
    if (vl == n)
        return "ERR missing key";
    p += vl + 1;
    n -= vl + 1;

    size_t kl = word_len(p, n);
    rq->key = p;
    rq->key_len = kl;
    if (kl == 0)
        return "ERR missing key";
    if (kl > UDPKV_KEY_MAX)
        return "ERR key too long";
    if (!printable_word(p, kl))
        return "ERR bad key";

    if (is_put) {
        if (kl == n)
            return "ERR missing value";
        rq->val = p + kl + 1;
        rq->val_len = n - kl - 1;
        if (rq->val_len > UDPKV_VALUE_MAX)
            return "ERR value too long";
        if (persist)
            return udpkv_disk_put(p, kl, rq->val, rq->val_len);
        if (udpkv_store_put(p, kl, rq->val, rq->val_len, 0) != 0)
            return "ERR store full";
        return "OK";
    }
    if (kl != n)
        return "ERR extra arguments";
    if (is_del && persist)
        return udpkv_disk_del(p, kl);
    if (is_del)
        return udpkv_store_del(p, kl) == 0 ? "OK" : "NOTFOUND";
    return udpkv_store_get(p, kl, &rq->val, &rq->val_len) == 0 ? NULL
                                                               : "NOTFOUND";
}

size_t udpkv_serve(const uint8_t *req, size_t len, uint8_t *out, size_t cap,
                   const char *peer, bool verbose)
{
    const char *p = (const char *)req;
    size_t n = len;
    struct reply r = { .buf = out, .cap = cap };
    struct request rq = { .verb = NULL };

    /* One final LF (or CRLF) ends a line rather than the request, so
     * clients like `echo ... | nc -u` work. */
    if (n > 0 && p[n - 1] == '\n') {
        n--;
        if (n > 0 && p[n - 1] == '\r')
            n--;
    }

    size_t idl = word_len(p, n);
    if (n == 0 || idl == 0 || idl > UDPKV_ID_MAX || !printable_word(p, idl)) {
        const char *status = n == 0 ? "ERR empty request"
                                    : "ERR bad request id";
        reply_str(&r, "- ");
        reply_str(&r, status);
        reply_str(&r, "\n");
        if (verbose)
            printf("udpkv req %s - - - -> %s\n", peer, status);
        return r.len;
    }

    /* "ID" alone and "ID " both lack a command. */
    const char *rest = p + idl;
    size_t rest_len = n - idl;
    if (rest_len > 0) {
        rest++;
        rest_len--;
    }
    const char *status = execute(rest, rest_len, &rq);

    if (status == NULL && idl + sizeof(" VALUE \n") - 1 + rq.val_len > cap)
        status = "ERR value too long for the MTU";
    reply_add(&r, p, idl);
    if (status == NULL) {
        reply_str(&r, " VALUE ");
        reply_add(&r, rq.val, rq.val_len);
    } else {
        reply_str(&r, " ");
        reply_str(&r, status);
    }
    reply_str(&r, "\n");

    if (verbose)
        printf("udpkv req %s %.*s %.*s %.*s -> %s\n", peer, (int)idl, p,
               field_len(rq.verb_len), field(rq.verb, rq.verb_len),
               field_len(rq.key_len), field(rq.key, rq.key_len),
               status ? status : "VALUE");
    return r.len;
}

static void print_stats(const struct udpkv_net *net)
{
    const struct udpkv_stats *s = &net->stats;

    printf("udpkv stats frames=%lu arp=%lu ping=%lu requests=%lu dropped=%lu "
           "bad=%lu tx_errors=%lu keys=%lu\n", (unsigned long)s->frames,
           (unsigned long)s->arp, (unsigned long)s->ping,
           (unsigned long)s->requests, (unsigned long)s->dropped,
           (unsigned long)s->bad, (unsigned long)s->tx_errors,
           (unsigned long)udpkv_store_count());
}

/* Reads every queued frame; returns when the queue is empty. */
static void drain(struct udpkv_net *net)
{
    for (;;) {
        uint64_t len = sizeof(rx);
        int64_t ret = ftvm_net_read(rx, &len);

        if (ret == FTVM_EAGAIN)
            return;
        if (ret != 0) {
            printf("udpkv: net read: %s\n", ftvm_strerror(ret));
            return;
        }
        /* Longer than our buffer: the monitor truncated and dropped it. */
        if (len > sizeof(rx)) {
            net->stats.bad++;
            continue;
        }
        udpkv_net_input(net, rx, len);
    }
}

int main(int argc, char **argv)
{
    static const char *const known[] = {
        "ip", "port", "verbose", "stats-every", "persist", NULL,
    };
    static struct udpkv_net net;
    uint64_t port, verbose, stats_s, persist_arg;
    const char *ip = ftvm_arg(argc, argv, "ip");

    if (ftvm_args_check(argc, argv, known) != 0 ||
        ftvm_arg_u64(argc, argv, "port", 7777, 1, 65535, &port) != 0 ||
        ftvm_arg_u64(argc, argv, "verbose", 0, 0, 1, &verbose) != 0 ||
        ftvm_arg_u64(argc, argv, "stats-every", 0, 0, 1u << 20,
                     &stats_s) != 0 ||
        ftvm_arg_u64(argc, argv, "persist", 0, 0, 1, &persist_arg) != 0)
        return 2;
    net.ip = DEFAULT_IP;
    if (ip != NULL && udpkv_parse_ip(ip, &net.ip) != 0) {
        printf("udpkv: ip=%s: want a dotted-quad IPv4 address\n", ip);
        return 2;
    }
    net.port = (uint16_t)port;
    net.verbose = verbose != 0;
    use_rdrand = udpkv_has_rdrand();

    int32_t ret = ftvm_net_info(net.mac, &net.mtu);
    if (ret == FTVM_ENODEV) {
        printf("udpkv: no network device\n");
        return 1;
    }
    if (ret != 0) {
        printf("udpkv: net info: %s\n", ftvm_strerror(ret));
        return 1;
    }
    if (net.mtu < 576) {
        printf("udpkv: mtu %u is below the IPv4 minimum of 576\n", net.mtu);
        return 1;
    }
    if (net.mtu > UDPKV_FRAME_MAX - 14)
        net.mtu = UDPKV_FRAME_MAX - 14;
    persist = persist_arg != 0;
    if (persist && udpkv_disk_open() != 0)
        return 1;

    printf("udpkv ready ip=%u.%u.%u.%u port=%u "
           "mac=%02x:%02x:%02x:%02x:%02x:%02x mtu=%u rand=%s\n",
           net.ip >> 24, (net.ip >> 16) & 0xff, (net.ip >> 8) & 0xff,
           net.ip & 0xff, net.port, net.mac[0], net.mac[1], net.mac[2],
           net.mac[3], net.mac[4], net.mac[5], net.mtu,
           use_rdrand ? "rdrand" : "tsc");

    uint64_t stats_ns = stats_s * FTVM_NS_PER_SEC;
    uint64_t next_stats = ftvm_monotonic_ns() + stats_ns;

    for (;;) {
        uint64_t deadline = stats_ns != 0 ? next_stats
                                          : ftvm_monotonic_ns() + IDLE_POLL_NS;

        if (ftvm_wait_events(FTVM_POLL_NET, deadline) & FTVM_POLL_NET)
            drain(&net);
        if (stats_ns != 0 && ftvm_monotonic_ns() >= next_stats) {
            print_stats(&net);
            next_stats += stats_ns;
            if (next_stats < ftvm_monotonic_ns())
                next_stats = ftvm_monotonic_ns() + stats_ns;
        }
    }
}
