/*
 * The TAP backend against a real kernel, inside a network namespace this
 * test makes and always deletes: the tap gets 10.99.0.1/24, the test plays
 * the guest at 10.99.0.2, and every frame stays inside the namespace.
 * Needs root, /dev/net/tun and `ip`; otherwise exits 77 (skipped).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "primary/outqueue.h"
#include "vm/net.h"

#define IFNAME "ftvmt0"

static const uint8_t guest_mac[6] = { 0x02, 0, 0, 0x99, 0, 0x02 };
static const uint8_t guest_ip[4] = { 10, 99, 0, 2 };
static const uint8_t host_ip[4] = { 10, 99, 0, 1 };
static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static char ip_path[64];
static char ns_name[64];
static volatile sig_atomic_t ns_created;
static net_dev *dev;
static uint8_t host_mac[6];
static bool host_mac_known;

/* ---- the namespace ---- */

/* Runs ip with argv (argv[0] unused); its exit status, or -1.  Only
 * async-signal-safe calls, as the signal handler uses it too. */
static int run_ip(char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execv(ip_path, argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void ns_delete(void)
{
    if (!ns_created)
        return;
    ns_created = 0;
    char *argv[] = { "ip", "netns", "del", ns_name, NULL };
    run_ip(argv);
}

static void on_signal(int sig)
{
    ns_delete();
    signal(sig, SIG_DFL);
    raise(sig);
}

static bool find_ip(void)
{
    static const char *dirs[] = { "/usr/sbin", "/sbin", "/usr/bin", "/bin" };
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(ip_path, sizeof(ip_path), "%s/ip", dirs[i]);
        if (access(ip_path, X_OK) == 0)
            return true;
    }
    return false;
}

static int ip_in_ns(const char *a, const char *b, const char *c,
                    const char *d, const char *e, const char *f)
{
    char *argv[] = { "ip", "-n", ns_name, (char *)a, (char *)b, (char *)c,
                     (char *)d, (char *)e, (char *)f, NULL };
    return run_ip(argv);
}

/*
 * TUNSETIFF creates the interface in the namespace of the thread that
 * calls it, so the open happens with this thread moved into the test's
 * namespace, and moved back after.
 */
static int open_tap_in_ns(char *err, size_t errlen)
{
    char path[128];
    snprintf(path, sizeof(path), "/var/run/netns/%s", ns_name);
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = open(path, O_RDONLY | O_CLOEXEC);
    int rc = -1;
    if (self < 0 || target < 0) {
        snprintf(err, errlen, "open namespace: %s", strerror(errno));
    } else if (setns(target, CLONE_NEWNET) < 0) {
        snprintf(err, errlen, "setns %s: %s", ns_name, strerror(errno));
    } else {
        rc = net_open(&dev, "tap:" IFNAME, err, errlen);
        if (setns(self, CLONE_NEWNET) < 0) {
            fprintf(stderr, "setns back: %s\n", strerror(errno));
            abort();
        }
    }
    if (self >= 0)
        close(self);
    if (target >= 0)
        close(target);
    return rc;
}

/* ---- frames ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint16_t csum(const uint8_t *p, size_t len)
{
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < len; i += 2)
        s += (uint32_t)p[i] << 8 | p[i + 1];
    if (len & 1)
        s += (uint32_t)p[len - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static size_t make_arp(uint8_t *f, uint16_t op, const uint8_t *dst_mac,
                       const uint8_t *tha, const uint8_t *tpa)
{
    memset(f, 0, 60);
    memcpy(f, dst_mac, 6);
    memcpy(f + 6, guest_mac, 6);
    put16(f + 12, 0x0806);
    uint8_t *a = f + 14;
    put16(a, 1);                /* Ethernet */
    put16(a + 2, 0x0800);       /* IPv4 */
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, op);
    memcpy(a + 8, guest_mac, 6);
    memcpy(a + 14, guest_ip, 4);
    memcpy(a + 18, tha, 6);
    memcpy(a + 24, tpa, 4);
    return 60;                  /* padded to Ethernet's minimum */
}

static const char ping_payload[16] = "ftvm net test!!";

static size_t make_echo(uint8_t *f, uint16_t id, uint16_t seq)
{
    memcpy(f, host_mac, 6);
    memcpy(f + 6, guest_mac, 6);
    put16(f + 12, 0x0800);
    uint8_t *ip = f + 14;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, 20 + 8 + sizeof(ping_payload));
    put16(ip + 4, seq);
    put16(ip + 6, 0x4000);      /* don't fragment */
    ip[8] = 64;
    ip[9] = 1;                  /* ICMP */
    memcpy(ip + 12, guest_ip, 4);
    memcpy(ip + 16, host_ip, 4);
    put16(ip + 10, csum(ip, 20));
    uint8_t *icmp = ip + 20;
    memset(icmp, 0, 8);
    icmp[0] = 8;                /* echo request */
    put16(icmp + 4, id);
    put16(icmp + 6, seq);
    memcpy(icmp + 8, ping_payload, sizeof(ping_payload));
    put16(icmp + 2, csum(icmp, 8 + sizeof(ping_payload)));
    return 14 + 20 + 8 + sizeof(ping_payload);
}

static bool is_arp(const uint8_t *f, ssize_t len, uint16_t op,
                   const uint8_t *spa, const uint8_t *tpa)
{
    return len >= 42 && get16(f + 12) == 0x0806 && get16(f + 14 + 6) == op &&
           memcmp(f + 14 + 14, spa, 4) == 0 &&
           memcmp(f + 14 + 24, tpa, 4) == 0;
}

static bool is_echo_reply(const uint8_t *f, ssize_t len, uint16_t id,
                          uint16_t seq)
{
    if (len < 14 + 20 + 8 + (ssize_t)sizeof(ping_payload) ||
        get16(f + 12) != 0x0800 || memcmp(f, guest_mac, 6) != 0)
        return false;
    const uint8_t *ip = f + 14;
    size_t ihl = (size_t)(ip[0] & 0xf) * 4;
    const uint8_t *icmp = ip + ihl;
    return ip[9] == 1 && memcmp(ip + 12, host_ip, 4) == 0 &&
           memcmp(ip + 16, guest_ip, 4) == 0 && icmp[0] == 0 &&
           get16(icmp + 4) == id && get16(icmp + 6) == seq &&
           (ssize_t)(14 + ihl + 8 + sizeof(ping_payload)) <= len &&
           memcmp(icmp + 8, ping_payload, sizeof(ping_payload)) == 0;
}

typedef bool (*frame_match)(const uint8_t *f, ssize_t len, void *ctx);

/*
 * Pumps and reads frames for up to timeout_ms until one matches; answers
 * the kernel's ARP requests for the guest address on the way and skips
 * the rest (IPv6 router solicitations and the like).  Returns the
 * matching frame's length, or 0.
 */
static ssize_t wait_frame(frame_match match, void *ctx, uint8_t *out,
                          int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    while (now_ms() < end) {
        struct pollfd p = { .fd = net_fd(dev), .events = POLLIN };
        if (poll(&p, 1, 20) > 0)
            assert_true(net_rx_pump(dev) >= 0);
        ssize_t len;
        while ((len = net_recv(dev, out, NET_FRAME_MAX)) > 0) {
            if (match(out, len, ctx))
                return len;
            if (is_arp(out, len, 1, host_ip, guest_ip)) {
                uint8_t r[60];
                make_arp(r, 2, out + 6, out + 6, host_ip);
                assert_int_equal(net_transmit(dev, r, sizeof(r), true), 0);
            }
        }
    }
    return 0;
}

static bool match_arp_reply(const uint8_t *f, ssize_t len, void *ctx)
{
    (void)ctx;
    return is_arp(f, len, 2, host_ip, guest_ip) &&
           memcmp(f, guest_mac, 6) == 0;
}

typedef struct echo_id {
    uint16_t id, seq;
} echo_id;

static bool match_echo(const uint8_t *f, ssize_t len, void *ctx)
{
    echo_id *e = ctx;
    return is_echo_reply(f, len, e->id, e->seq);
}

/* ---- tests ---- */

static void test_arp(void **state)
{
    (void)state;
    uint8_t f[NET_FRAME_MAX], req[60];
    static const uint8_t zero[6];
    make_arp(req, 1, bcast, zero, host_ip);
    ssize_t len = 0;
    /* The link may need a moment after `ip link set up`. */
    for (int tries = 0; tries < 10 && len == 0; tries++) {
        assert_int_equal(net_transmit(dev, req, sizeof(req), true), 0);
        len = wait_frame(match_arp_reply, NULL, f, 500);
    }
    if (len == 0)
        fail_msg("no ARP reply from %u.%u.%u.%u on " IFNAME, host_ip[0],
                 host_ip[1], host_ip[2], host_ip[3]);
    memcpy(host_mac, f + 14 + 8, 6);
    host_mac_known = true;
}

static void test_icmp_echo(void **state)
{
    (void)state;
    if (!host_mac_known)
        skip();
    uint8_t f[NET_FRAME_MAX];
    echo_id e = { 0x4654, 1 };
    size_t l = make_echo(f, e.id, e.seq);
    assert_int_equal(net_transmit(dev, f, l, true), 0);
    assert_true(wait_frame(match_echo, &e, f, 3000) > 0);
}

/*
 * Output commit against a real peer: the kernel sees the request only
 * when the checkpoint after the one that produced it is acknowledged.
 */
static void test_echo_held_until_ack(void **state)
{
    (void)state;
    if (!host_mac_known)
        skip();
    outqueue *q;
    assert_int_equal(outqueue_new(&q), 0);
    outqueue_set_frame_sink(q, outqueue_net_send, dev);
    outqueue_begin(q);
    outqueue_checkpoint(q, 1);
    uint8_t f[NET_FRAME_MAX];
    echo_id e = { 0x4654, 2 };
    size_t l = make_echo(f, e.id, e.seq);
    assert_int_equal(outqueue_transmit(q, f, l), 0);
    outqueue_stats st;
    outqueue_get_stats(q, &st);
    assert_int_equal(st.held_frames, 1);

    assert_int_equal(wait_frame(match_echo, &e, f, 300), 0);
    assert_int_equal(outqueue_acked(q, 1), 0);
    assert_int_equal(wait_frame(match_echo, &e, f, 300), 0);
    /* The acknowledgement of checkpoint 2 releases what 1 produced. */
    assert_int_equal(outqueue_acked(q, 2), 1);
    assert_true(wait_frame(match_echo, &e, f, 3000) > 0);
    outqueue_free(q);
}

static int notified;

static void on_rx(void *opaque)
{
    (void)opaque;
    notified++;
}

static void test_notify_and_stats(void **state)
{
    (void)state;
    if (!host_mac_known)
        skip();
    notified = 0;
    net_set_rx_notify(dev, on_rx, NULL);
    uint8_t f[NET_FRAME_MAX];
    echo_id e = { 0x4654, 3 };
    size_t l = make_echo(f, e.id, e.seq);
    assert_int_equal(net_transmit(dev, f, l, true), 0);
    assert_true(wait_frame(match_echo, &e, f, 3000) > 0);
    assert_true(notified >= 1);
    net_set_rx_notify(dev, NULL, NULL);

    net_stats st;
    net_get_stats(dev, &st);
    assert_true(st.tx_frames >= 4);
    assert_true(st.rx_frames >= 3);
    assert_int_equal(st.tx_dropped, 0);
}

/* Matches echo reply e[1], failing on a reply to e[0] (a stale frame). */
static bool match_fresh_echo(const uint8_t *f, ssize_t len, void *ctx)
{
    echo_id *e = ctx;
    if (is_echo_reply(f, len, e[0].id, e[0].seq))
        fail_msg("the stale reply to echo %u reached the new owner",
                 e[0].seq);
    return is_echo_reply(f, len, e[1].id, e[1].seq);
}

/*
 * A failover on a TAP: while nobody reads the tap, the kernel's reply to
 * an echo waits in it; the device taking the backend over drops what
 * waits (net_rx_discard) and then talks to the kernel through the same
 * interface, while the old device has no wire.  Last: it leaves `dev` a
 * device of its own.
 */
static void test_take_backend_and_discard(void **state)
{
    (void)state;
    if (!host_mac_known)
        skip();
    net_dev *old = dev, *svm;
    char err[256];
    assert_int_equal(net_open(&svm, "none", err, sizeof(err)), 0);
    assert_int_equal(net_take_backend(old, svm), -EBUSY);

    /* tun's receive path runs the stack inside the write: by the time
     * net_transmit returns, the reply (or an ARP request) waits. */
    uint8_t f[NET_FRAME_MAX];
    echo_id e[2] = { { 0x4654, 10 }, { 0x4654, 11 } };
    size_t l = make_echo(f, e[0].id, e[0].seq);
    assert_int_equal(net_transmit(old, f, l, true), 0);
    struct pollfd p = { .fd = net_fd(old), .events = POLLIN };
    assert_int_equal(poll(&p, 1, 3000), 1);

    int fd = net_fd(old);
    assert_int_equal(net_take_backend(svm, old), 0);
    dev = svm;
    assert_int_equal(net_fd(svm), fd);
    int dropped = net_rx_discard(svm);
    assert_true(dropped >= 1);
    net_stats st;
    net_get_stats(svm, &st);
    assert_int_equal(st.rx_discarded, (uint64_t)dropped);
    assert_int_equal(st.rx_frames, 0);

    l = make_echo(f, e[1].id, e[1].seq);
    assert_int_equal(net_transmit(old, f, l, true), -ENETDOWN);
    assert_int_equal(net_rx_pump(old), 0);
    assert_int_equal(net_transmit(svm, f, l, true), 0);
    assert_true(wait_frame(match_fresh_echo, e, f, 3000) > 0);
    assert_int_equal(net_rxq_count(old), 0);
    net_close(old);     /* "none" now: the tap stays open, svm's */
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (geteuid() != 0) {
        printf("SKIP: needs root to make a network namespace and a TAP "
               "device\n");
        return 77;
    }
    if (access("/dev/net/tun", R_OK | W_OK) != 0) {
        printf("SKIP: /dev/net/tun: %s\n", strerror(errno));
        return 77;
    }
    if (!find_ip()) {
        printf("SKIP: no `ip` command (iproute2)\n");
        return 77;
    }

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(ns_name, sizeof(ns_name), "ftvm-test-%d-%lx", (int)getpid(),
             (unsigned long)ts.tv_nsec);
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGALRM };
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    atexit(ns_delete);
    alarm(50);                  /* under the meson timeout: clean up first */

    char *add[] = { "ip", "netns", "add", ns_name, NULL };
    ns_created = 1;
    if (run_ip(add) != 0) {
        ns_created = 0;
        printf("SKIP: `ip netns add %s` failed (no CAP_SYS_ADMIN?)\n",
               ns_name);
        return 77;
    }

    char err[256];
    if (open_tap_in_ns(err, sizeof(err)) < 0) {
        fprintf(stderr, "FAIL: %s\n", err);
        ns_delete();
        return 1;
    }
    if (ip_in_ns("addr", "add", "10.99.0.1/24", "dev", IFNAME, NULL) != 0 ||
        ip_in_ns("link", "set", IFNAME, "up", NULL, NULL) != 0) {
        fprintf(stderr, "FAIL: configuring " IFNAME " in %s\n", ns_name);
        net_close(dev);
        ns_delete();
        return 1;
    }

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arp),
        cmocka_unit_test(test_icmp_echo),
        cmocka_unit_test(test_echo_held_until_ack),
        cmocka_unit_test(test_notify_and_stats),
        cmocka_unit_test(test_take_backend_and_discard),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    net_close(dev);
    ns_delete();
    return rc;
}
