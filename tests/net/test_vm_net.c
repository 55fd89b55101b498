/*
 * test_vm_net: COLO's NIC calls at the VM level, on a real guest.
 *
 *   test_vm_net UDPKV.elf
 *
 * The udpkv guest runs in a VM whose NIC has no host side ("none"), as
 * COLO's secondary VM does; its transmit hook records each frame and
 * passes it to net_transmit.  A second VM, never started, holds a UDP
 * backend on 127.0.0.1, as the secondary's RAM-cache VM does.
 *
 * 1. vm_net_deliver puts ARP requests into the running guest's queue; the
 *    guest, blocked in FTVM_HC_POLL for minutes, must be woken to answer;
 *    its answers reach the hook and are dropped by "none" (-ENETDOWN).
 * 2. While paused: delivered frames fill the queue to -ENOSPC (counted);
 *    one delivered then is answered after the resume.
 * 3. vm_net_take_backend moves the UDP backend to the running VM: the
 *    test, as the UDP peer, sends an ARP request that the event loop pumps
 *    into the guest, and gets the answer back on the wire; the old VM has
 *    no host side left.
 * Bad arguments: -EINVAL, -EBUSY, -ENODEV.
 *
 * Exits 77 (skipped) without /dev/kvm; 1 if FTVM_REQUIRE_KVM=1 says it must
 * be there.  Deadlines scale with FTVM_TIME_SCALE.  No traffic leaves
 * loopback.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "vm/vm.h"

static const uint8_t guest_mac[6] = { 0x02, 0, 0, 0, 0, 0x07 };
static const uint8_t peer_mac[6] = { 0x02, 0, 0, 0, 0, 0x0a };
static const uint8_t guest_ip[4] = { 10, 0, 0, 2 };     /* udpkv's default */

#define REQUIRE(cond, ...) do {                                         \
        if (!(cond)) {                                                  \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);        \
            fprintf(stderr, __VA_ARGS__);                               \
            fputc('\n', stderr);                                        \
            exit(1);                                                    \
        }                                                               \
    } while (0)

static double time_scale(void)
{
    const char *s = getenv("FTVM_TIME_SCALE");
    return s && atof(s) >= 1 ? atof(s) : 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What the guest printed and sent, filled on its vCPU thread. */
typedef struct guest_io {
    pthread_mutex_t lock;
    char console[4096];
    size_t console_len;
    vm *v;
    unsigned arp_replies;           /* ARP replies the guest sent */
    uint8_t last_tpa;               /* the last one's target, last byte */
    unsigned tx_ok, tx_netdown, tx_other;
} guest_io;

static guest_io io = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int on_console(void *opaque, const void *buf, size_t len)
{
    (void)opaque;
    pthread_mutex_lock(&io.lock);
    size_t room = sizeof(io.console) - 1 - io.console_len;
    size_t n = len < room ? len : room;
    memcpy(io.console + io.console_len, buf, n);
    io.console_len += n;
    io.console[io.console_len] = 0;
    pthread_mutex_unlock(&io.lock);
    fwrite(buf, 1, len, stdout);
    return 0;
}

static bool is_arp_reply(const uint8_t *f, size_t len)
{
    return len >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[20] == 0 &&
           f[21] == 2 && memcmp(f + 28, guest_ip, 4) == 0;
}

/* The transmit hook: records, then the wire (none, or the taken UDP). */
static int on_transmit(void *opaque, const void *frame, size_t len)
{
    (void)opaque;
    int rc = net_transmit(vm_net(io.v), frame, len, false);
    pthread_mutex_lock(&io.lock);
    if (is_arp_reply(frame, len)) {
        io.arp_replies++;
        io.last_tpa = ((const uint8_t *)frame)[41];
    }
    if (rc == 0)
        io.tx_ok++;
    else if (rc == -ENETDOWN)
        io.tx_netdown++;
    else
        io.tx_other++;
    pthread_mutex_unlock(&io.lock);
    return 0;
}

/* An ARP request for the guest from 10.0.0.SENDER. */
static size_t make_arp_request(uint8_t *f, uint8_t sender)
{
    static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    memset(f, 0, 60);
    memcpy(f, bcast, 6);
    memcpy(f + 6, peer_mac, 6);
    f[12] = 0x08;
    f[13] = 0x06;
    uint8_t *a = f + 14;
    a[1] = 1;                   /* Ethernet */
    a[2] = 0x08;                /* IPv4 */
    a[4] = 6;
    a[5] = 4;
    a[7] = 1;                   /* request */
    memcpy(a + 8, peer_mac, 6);
    a[14] = 10;
    a[17] = sender;
    memcpy(a + 24, guest_ip, 4);
    return 60;
}

static bool seen_reply_to(uint8_t sender, unsigned count)
{
    pthread_mutex_lock(&io.lock);
    bool r = io.arp_replies >= count && io.last_tpa == sender;
    pthread_mutex_unlock(&io.lock);
    return r;
}

static bool console_has(const char *s)
{
    pthread_mutex_lock(&io.lock);
    bool r = strstr(io.console, s) != NULL;
    pthread_mutex_unlock(&io.lock);
    return r;
}

/* Runs the loop in short slices until pred holds or seconds (scaled) pass. */
static bool wait_for(struct event_base *base, bool (*pred)(void *), void *arg,
                     double seconds)
{
    double end = now_s() + seconds * time_scale();
    while (!pred(arg)) {
        if (now_s() > end)
            return false;
        struct timeval tv = { 0, 20000 };
        event_base_loopexit(base, &tv);
        event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    }
    return true;
}

static bool pred_ready(void *arg)
{
    (void)arg;
    return console_has("udpkv ready");
}

typedef struct reply_wait {
    uint8_t sender;
    unsigned count;
} reply_wait;

static bool pred_reply(void *arg)
{
    reply_wait *w = arg;
    return seen_reply_to(w->sender, w->count);
}

typedef struct peer_wait {
    int fd;
    uint8_t buf[NET_FRAME_MAX];
    ssize_t len;
} peer_wait;

static bool pred_peer_reply(void *arg)
{
    peer_wait *p = arg;
    struct pollfd pf = { .fd = p->fd, .events = POLLIN };
    while (poll(&pf, 1, 0) > 0) {
        p->len = recv(p->fd, p->buf, sizeof(p->buf), MSG_DONTWAIT);
        if (p->len > 0 && is_arp_reply(p->buf, (size_t)p->len))
            return true;
    }
    return false;
}

static vm *make_vm(const char *net)
{
    vm_config cfg;
    vm_config_init(&cfg);
    cfg.mem_size = 32ull << 20;
    cfg.net = net;
    memcpy(cfg.mac, guest_mac, 6);
    cfg.console_fd = -1;
    cfg.console_fn = on_console;
    cfg.transmit_fn = on_transmit;
    vm *v;
    char err[512];
    int rc = vm_create(&v, &cfg, err, sizeof(err));
    REQUIRE(rc == 0, "vm_create (net %s): %s", net ? net : "-", err);
    return v;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_vm_net UDPKV.elf\n");
        return 2;
    }
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        const char *require = getenv("FTVM_REQUIRE_KVM");
        if (require && strcmp(require, "1") == 0) {
            printf("FAIL: /dev/kvm is not usable here (%s), and "
                   "FTVM_REQUIRE_KVM=1 says this run has KVM\n",
                   strerror(errno));
            return 1;
        }
        printf("SKIP: /dev/kvm is not usable here (%s); this test needs "
               "KVM\n", strerror(errno));
        return 77;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    char err[512];
    uint8_t f[NET_FRAME_MAX + 1];

    /* The test's UDP peer, and the cache VM's backend wired to it. */
    int peer = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in pa = { .sin_family = AF_INET };
    pa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t pl = sizeof(pa);
    REQUIRE(peer >= 0 && bind(peer, (struct sockaddr *)&pa, sizeof(pa)) == 0
            && getsockname(peer, (struct sockaddr *)&pa, &pl) == 0,
            "peer socket: %s", strerror(errno));
    char spec[96];
    snprintf(spec, sizeof(spec), "dgram:127.0.0.1:0,127.0.0.1:%u",
             ntohs(pa.sin_port));

    struct event_base *base = event_base_new();
    REQUIRE(base, "event_base_new");
    vm *svm = make_vm("none");
    vm *cache = make_vm(spec);
    vm *nonic = make_vm(NULL);
    io.v = svm;
    REQUIRE(net_fd(vm_net(svm)) == -1, "a none NIC has no fd");
    REQUIRE(vm_attach(svm, base, NULL, NULL) == 0, "vm_attach svm");
    REQUIRE(vm_attach(cache, base, NULL, NULL) == 0, "vm_attach cache");

    REQUIRE(vm_boot(svm, argv[1], "", err, sizeof(err)) == 0, "vm_boot: %s",
            err);
    REQUIRE(vm_start(svm, err, sizeof(err)) == 0, "vm_start: %s", err);
    REQUIRE(wait_for(base, pred_ready, NULL, 10), "udpkv never got ready");

    /* Bad arguments. */
    REQUIRE(vm_net_deliver(svm, f, 0) == -EINVAL, "empty frame");
    REQUIRE(vm_net_deliver(svm, f, NET_FRAME_MAX + 1) == -EINVAL,
            "oversize frame");
    REQUIRE(vm_net_deliver(nonic, f, 60) == -ENODEV, "deliver without NIC");
    REQUIRE(vm_net_take_backend(nonic, cache, err, sizeof(err)) == -ENODEV,
            "take into a VM without NIC");
    REQUIRE(vm_net_take_backend(svm, nonic, err, sizeof(err)) == -ENODEV,
            "take from a VM without NIC");
    REQUIRE(vm_net_take_backend(cache, svm, err, sizeof(err)) == -EBUSY,
            "take into a VM with a backend");
    printf("busy: %s\n", err);

    /* 1. Delivered while running: the polling guest wakes and answers. */
    size_t l = make_arp_request(f, 11);
    double t0 = now_s();
    REQUIRE(vm_net_deliver(svm, f, l) == 0, "deliver");
    reply_wait w = { 11, 1 };
    REQUIRE(wait_for(base, pred_reply, &w, 5), "no ARP reply to a delivered "
            "request (the guest was not woken?)");
    printf("delivered request answered within %.0f ms (20 ms slices)\n",
           (now_s() - t0) * 1e3);
    pthread_mutex_lock(&io.lock);
    REQUIRE(io.tx_netdown >= 1 && io.tx_ok == 0 && io.tx_other == 0,
            "the none NIC's sends: ok %u netdown %u other %u", io.tx_ok,
            io.tx_netdown, io.tx_other);
    pthread_mutex_unlock(&io.lock);

    /* 2. Delivered while paused: a full queue refuses, counted. */
    REQUIRE(vm_pause(svm, err, sizeof(err)) == 0, "vm_pause: %s", err);
    net_dev *n = vm_net(svm);
    net_stats before, after;
    net_get_stats(n, &before);
    size_t queued = net_rxq_count(n);
    make_arp_request(f, 99);
    f[0] = 0x02;    /* to another MAC: the guest drops these */
    for (size_t i = queued; i < NET_RXQ_MAX; i++)
        REQUIRE(vm_net_deliver(svm, f, 60) == 0, "deliver %zu", i);
    REQUIRE(vm_net_deliver(svm, f, 60) == -ENOSPC, "full queue");
    net_get_stats(n, &after);
    REQUIRE(after.rx_dropped == before.rx_dropped + 1, "rx_dropped %llu",
            (unsigned long long)after.rx_dropped);
    net_rxq_clear(n);
    l = make_arp_request(f, 12);
    REQUIRE(vm_net_deliver(svm, f, l) == 0, "deliver while paused");
    REQUIRE(vm_resume(svm, err, sizeof(err)) == 0, "vm_resume: %s", err);
    w = (reply_wait){ 12, 2 };
    REQUIRE(wait_for(base, pred_reply, &w, 5), "no ARP reply to a request "
            "delivered while paused");

    /* 3. The cache VM's backend moves to the running guest. */
    int fd = net_fd(vm_net(cache));
    REQUIRE(vm_net_take_backend(svm, cache, err, sizeof(err)) == 0,
            "vm_net_take_backend: %s", err);
    REQUIRE(net_fd(vm_net(svm)) == fd && net_fd(vm_net(cache)) == -1,
            "the fd moved");
    struct sockaddr_in da;
    socklen_t dl = sizeof(da);
    REQUIRE(getsockname(fd, (struct sockaddr *)&da, &dl) == 0,
            "getsockname");
    l = make_arp_request(f, 13);
    REQUIRE(sendto(peer, f, l, 0, (struct sockaddr *)&da, dl) == (ssize_t)l,
            "peer send: %s", strerror(errno));
    peer_wait pw = { .fd = peer };
    REQUIRE(wait_for(base, pred_peer_reply, &pw, 5), "no ARP reply on the "
            "wire after the take-over");
    REQUIRE(pw.buf[41] == 13, "the reply answers request 13");
    REQUIRE(vm_net_take_backend(svm, cache, err, sizeof(err)) == -EBUSY,
            "a second take");
    net_get_stats(vm_net(svm), &after);
    printf("svm NIC: rx %llu dropped %llu, tx %llu dropped %llu\n",
           (unsigned long long)after.rx_frames,
           (unsigned long long)after.rx_dropped,
           (unsigned long long)after.tx_frames,
           (unsigned long long)after.tx_dropped);
    REQUIRE(after.tx_frames >= 1, "a frame went out on the taken backend");

    vm_destroy(nonic);
    vm_destroy(cache);
    vm_destroy(svm);
    event_base_free(base);
    close(peer);
    printf("PASS\n");
    return 0;
}
