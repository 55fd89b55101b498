/*
 * Tests for vm/net over the datagram backend: UDP on 127.0.0.1 and UNIX
 * datagram sockets in a temporary directory.  The test plays the peer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vm/net.h"

/* ---- helpers ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A frame whose payload starts with a sequence number. */
static void make_frame(uint8_t *f, size_t len, uint32_t seq)
{
    static const uint8_t hdr[14] = {
        0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x88, 0xb5,
    };
    memcpy(f, hdr, len < 14 ? len : 14);
    for (size_t i = 14; i < len; i++)
        f[i] = (uint8_t)(i * 7 + seq);
    if (len >= 18) {
        f[14] = (uint8_t)(seq >> 24);
        f[15] = (uint8_t)(seq >> 16);
        f[16] = (uint8_t)(seq >> 8);
        f[17] = (uint8_t)seq;
    }
}

static uint32_t frame_seq(const uint8_t *f)
{
    return (uint32_t)f[14] << 24 | (uint32_t)f[15] << 16 |
           (uint32_t)f[16] << 8 | f[17];
}

typedef struct fixture {
    bool is_unix;
    char dir[64];
    char dev_path[96], peer_path[96];
    net_dev *n;
    int peer;                       /* the test's socket */
    struct sockaddr_storage dev_addr;
    socklen_t dev_addr_len;
} fixture;

static void peer_send(fixture *fx, const void *buf, size_t len)
{
    ssize_t r = sendto(fx->peer, buf, len, 0,
                       (struct sockaddr *)&fx->dev_addr, fx->dev_addr_len);
    assert_int_equal(r, (ssize_t)len);
}

static void peer_send_seq(fixture *fx, uint32_t seq, size_t len)
{
    uint8_t f[NET_FRAME_MAX];
    make_frame(f, len, seq);
    peer_send(fx, f, len);
}

/* One datagram the device sent, or -EAGAIN after timeout_ms. */
static ssize_t peer_recv(fixture *fx, void *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = { .fd = fx->peer, .events = POLLIN };
    if (poll(&p, 1, timeout_ms) <= 0)
        return -EAGAIN;
    ssize_t r = recv(fx->peer, buf, cap, MSG_DONTWAIT);
    return r < 0 ? -errno : r;
}

/* Pumps until `want` frames are queued or timeout_ms passes. */
static size_t pump_until(net_dev *n, size_t want, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    while (net_rxq_count(n) < want && now_ms() < end) {
        struct pollfd p = { .fd = net_fd(n), .events = POLLIN };
        if (poll(&p, 1, 20) > 0)
            assert_true(net_rx_pump(n) >= 0);
    }
    return net_rxq_count(n);
}

/* Pumps until `want` datagrams were taken in, queued or dropped. */
static void pump_seen(net_dev *n, uint64_t want)
{
    int64_t end = now_ms() + 2000;
    net_stats st;
    do {
        struct pollfd p = { .fd = net_fd(n), .events = POLLIN };
        if (poll(&p, 1, 20) > 0)
            assert_true(net_rx_pump(n) >= 0);
        net_get_stats(n, &st);
    } while (st.rx_frames + st.rx_dropped < want && now_ms() < end);
    assert_int_equal(st.rx_frames + st.rx_dropped, want);
}

/* Waits for the kernel to deliver what was sent, then pumps. */
static void settle_and_pump(net_dev *n)
{
    struct pollfd p = { .fd = net_fd(n), .events = POLLIN };
    for (int i = 0; i < 5; i++) {
        if (poll(&p, 1, 50) <= 0)
            break;
        assert_true(net_rx_pump(n) >= 0);
    }
}

static int udp_socket(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t l = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static int unix_socket(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    /* A path cut short would bind another socket than the test names. */
    assert_true((size_t)snprintf(a.sun_path, sizeof(a.sun_path), "%s",
                                 path) < sizeof(a.sun_path));
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static int open_ok(net_dev **n, const char *spec)
{
    char err[256];
    int rc = net_open(n, spec, err, sizeof(err));
    if (rc < 0)
        fail_msg("%s", err);
    return rc;
}

static int setup_udp(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    uint16_t peer_port;
    fx->peer = udp_socket(&peer_port);
    char spec[128];
    snprintf(spec, sizeof(spec), "dgram:127.0.0.1:0,127.0.0.1:%u",
             peer_port);
    open_ok(&fx->n, spec);
    fx->dev_addr_len = sizeof(fx->dev_addr);
    assert_int_equal(getsockname(net_fd(fx->n),
                                 (struct sockaddr *)&fx->dev_addr,
                                 &fx->dev_addr_len), 0);
    *state = fx;
    return 0;
}

static void make_tmpdir(fixture *fx)
{
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/ftvm-net-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
}

static int setup_unix(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    fx->is_unix = true;
    make_tmpdir(fx);
    snprintf(fx->dev_path, sizeof(fx->dev_path), "%s/dev.sock", fx->dir);
    snprintf(fx->peer_path, sizeof(fx->peer_path), "%s/peer.sock", fx->dir);
    fx->peer = unix_socket(fx->peer_path);
    char spec[300];
    snprintf(spec, sizeof(spec), "dgram:%s,%s", fx->dev_path, fx->peer_path);
    open_ok(&fx->n, spec);
    struct sockaddr_un *a = (struct sockaddr_un *)&fx->dev_addr;
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof(a->sun_path), "%s", fx->dev_path);
    fx->dev_addr_len = sizeof(*a);
    *state = fx;
    return 0;
}

/* A directory with nothing but the tests' own files in it. */
static void remove_tmpdir(const char *dir)
{
    static const char *names[] = {
        "dev.sock", "peer.sock", "other.sock", "file", "stale.sock",
    };
    char p[256];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static int teardown(void **state)
{
    fixture *fx = *state;
    net_close(fx->n);
    if (fx->peer >= 0)
        close(fx->peer);
    if (fx->dir[0])
        remove_tmpdir(fx->dir);
    free(fx);
    return 0;
}

/* ---- tests on both backends ---- */

static void test_send_recv(void **state)
{
    fixture *fx = *state;
    net_dev *n = fx->n;

    assert_false(net_rx_pending(n));
    uint8_t buf[NET_FRAME_MAX];
    assert_int_equal(net_recv(n, buf, sizeof(buf)), -EAGAIN);

    /* Peer to device: smallest, typical and largest frame. */
    const size_t lens[] = { 1, 60, NET_FRAME_MAX };
    for (uint32_t i = 0; i < 3; i++)
        peer_send_seq(fx, i, lens[i]);
    assert_int_equal(pump_until(n, 3, 2000), 3);
    assert_true(net_rx_pending(n));
    for (uint32_t i = 0; i < 3; i++) {
        uint8_t want[NET_FRAME_MAX];
        make_frame(want, lens[i], i);
        assert_int_equal(net_recv(n, buf, sizeof(buf)), (ssize_t)lens[i]);
        assert_memory_equal(buf, want, lens[i]);
    }
    assert_false(net_rx_pending(n));

    /* Device to peer, immediate. */
    for (uint32_t i = 0; i < 3; i++) {
        uint8_t f[NET_FRAME_MAX];
        make_frame(f, lens[i], 100 + i);
        assert_int_equal(net_transmit(n, f, lens[i], true), 0);
    }
    for (uint32_t i = 0; i < 3; i++) {
        uint8_t want[NET_FRAME_MAX];
        make_frame(want, lens[i], 100 + i);
        assert_int_equal(peer_recv(fx, buf, sizeof(buf), 2000),
                         (ssize_t)lens[i]);
        assert_memory_equal(buf, want, lens[i]);
    }

    net_stats st;
    net_get_stats(n, &st);
    assert_int_equal(st.rx_frames, 3);
    assert_int_equal(st.rx_bytes, 1 + 60 + NET_FRAME_MAX);
    assert_int_equal(st.rx_dropped, 0);
    assert_int_equal(st.tx_frames, 3);
    assert_int_equal(st.tx_bytes, 1 + 60 + NET_FRAME_MAX);
    assert_int_equal(st.tx_dropped, 0);
}

static void test_send_invalid(void **state)
{
    fixture *fx = *state;
    uint8_t f[NET_FRAME_MAX + 1];
    make_frame(f, sizeof(f), 0);
    assert_int_equal(net_transmit(fx->n, f, 0, true), -EINVAL);
    assert_int_equal(net_transmit(fx->n, f, NET_FRAME_MAX + 1, true),
                     -EINVAL);
    assert_int_equal(net_transmit(fx->n, NULL, 60, false), -EINVAL);
    net_stats st;
    net_get_stats(fx->n, &st);
    assert_int_equal(st.tx_frames + st.tx_dropped, 0);
}

/*
 * More frames than the queue holds, fed in small batches so neither the
 * socket's buffer nor a UNIX peer's queue limit loses any in the kernel.
 */
static void test_rxq_limit(void **state)
{
    fixture *fx = *state;
    net_dev *n = fx->n;
    const uint32_t total = NET_RXQ_MAX + 44;
    for (uint32_t seq = 0; seq < total;) {
        for (int b = 0; b < 8 && seq < total; b++)
            peer_send_seq(fx, seq++, 64);
        pump_seen(n, seq);
    }
    assert_int_equal(net_rxq_count(n), NET_RXQ_MAX);
    net_stats st;
    net_get_stats(n, &st);
    assert_int_equal(st.rx_frames, NET_RXQ_MAX);
    assert_int_equal(st.rx_dropped, 44);

    /* The oldest were kept, in order; the newest were dropped. */
    uint8_t buf[NET_FRAME_MAX];
    for (uint32_t i = 0; i < NET_RXQ_MAX; i++) {
        assert_int_equal(net_recv(n, buf, sizeof(buf)), 64);
        assert_int_equal(frame_seq(buf), i);
    }
    assert_int_equal(net_recv(n, buf, sizeof(buf)), -EAGAIN);

    /* Room again. */
    peer_send_seq(fx, 999, 64);
    assert_int_equal(pump_until(n, 1, 2000), 1);
}

static void test_oversize_and_empty(void **state)
{
    fixture *fx = *state;
    net_dev *n = fx->n;
    static uint8_t big[65000];
    make_frame(big, sizeof(big), 1);

    peer_send(fx, big, NET_FRAME_MAX + 1);
    peer_send(fx, big, sizeof(big));
    peer_send(fx, big, 0);
    peer_send(fx, big, NET_FRAME_MAX);
    assert_int_equal(pump_until(n, 1, 2000), 1);
    settle_and_pump(n);
    assert_int_equal(net_rxq_count(n), 1);

    net_stats st;
    net_get_stats(n, &st);
    assert_int_equal(st.rx_frames, 1);
    assert_int_equal(st.rx_bytes, NET_FRAME_MAX);
    assert_int_equal(st.rx_dropped, 3);
    uint8_t buf[NET_FRAME_MAX];
    assert_int_equal(net_recv(n, buf, sizeof(buf)), NET_FRAME_MAX);
    assert_memory_equal(buf, big, NET_FRAME_MAX);
}

static int notified;

static void on_rx(void *opaque)
{
    assert_ptr_equal(opaque, &notified);
    notified++;
}

static void test_rx_notify(void **state)
{
    fixture *fx = *state;
    net_dev *n = fx->n;
    notified = 0;
    net_set_rx_notify(n, on_rx, &notified);
    assert_int_equal(net_rx_pump(n), 0);   /* nothing waiting */
    assert_int_equal(notified, 0);
    peer_send_seq(fx, 1, 60);
    peer_send_seq(fx, 2, 60);
    assert_int_equal(pump_until(n, 2, 2000), 2);
    assert_true(notified >= 1 && notified <= 2);

    /* Dropped frames wake nobody. */
    int before = notified;
    uint8_t big[NET_FRAME_MAX + 1];
    make_frame(big, sizeof(big), 3);
    peer_send(fx, big, sizeof(big));
    settle_and_pump(n);
    assert_int_equal(notified, before);

    net_set_rx_notify(n, NULL, NULL);
    peer_send_seq(fx, 4, 60);
    assert_int_equal(pump_until(n, 3, 2000), 3);
    assert_int_equal(notified, before);
}

/* ---- state, limits and errors (backend-independent) ---- */

static void test_recv_truncates(void **state)
{
    fixture *fx = *state;
    net_dev *n = fx->n;
    uint8_t f[200], buf[200];
    make_frame(f, sizeof(f), 9);
    assert_int_equal(net_rxq_push(n, f, sizeof(f)), 0);
    assert_int_equal(net_rxq_push(n, f, 20), 0);
    memset(buf, 0xee, sizeof(buf));
    assert_int_equal(net_recv(n, buf, 50), 200);
    assert_memory_equal(buf, f, 50);
    assert_int_equal(buf[50], 0xee);
    /* The truncated frame is gone; the next one is intact. */
    assert_int_equal(net_recv(n, buf, 0), 20);
    assert_int_equal(net_recv(n, buf, sizeof(buf)), -EAGAIN);
}

static void test_rxq_peek_push_clear(void **state)
{
    fixture *fx = *state;
    net_dev *n = fx->n;
    uint8_t f[NET_FRAME_MAX + 1], buf[NET_FRAME_MAX];

    assert_int_equal(net_rxq_count(n), 0);
    assert_int_equal(net_rxq_peek(n, 0, buf, sizeof(buf)), -ENOENT);
    make_frame(f, sizeof(f), 0);
    assert_int_equal(net_rxq_push(n, f, 0), -EINVAL);
    assert_int_equal(net_rxq_push(n, f, NET_FRAME_MAX + 1), -EINVAL);
    assert_int_equal(net_rxq_push(n, NULL, 10), -EINVAL);

    for (uint32_t i = 0; i < NET_RXQ_MAX; i++) {
        make_frame(f, 18 + i, i);
        assert_int_equal(net_rxq_push(n, f, 18 + i), 0);
    }
    make_frame(f, 60, 0);
    assert_int_equal(net_rxq_push(n, f, 60), -ENOSPC);
    assert_int_equal(net_rxq_count(n), NET_RXQ_MAX);
    assert_true(net_rx_pending(n));

    /* Peek does not consume, and sees the ring in order after it wraps. */
    assert_int_equal(net_recv(n, buf, sizeof(buf)), 18);
    make_frame(f, 40, 1000);
    assert_int_equal(net_rxq_push(n, f, 40), 0);
    for (uint32_t i = 0; i < NET_RXQ_MAX; i++) {
        size_t want = i + 1 < NET_RXQ_MAX ? 18 + i + 1 : 40;
        assert_int_equal(net_rxq_peek(n, i, buf, sizeof(buf)),
                         (ssize_t)want);
        assert_int_equal(frame_seq(buf), i + 1 < NET_RXQ_MAX ? i + 1 : 1000);
    }
    assert_int_equal(net_rxq_peek(n, NET_RXQ_MAX, buf, sizeof(buf)), -ENOENT);
    assert_int_equal(net_rxq_peek(n, 3, buf, 4), 18 + 4);
    assert_int_equal(net_rxq_count(n), NET_RXQ_MAX);

    /* Restore pushes are state, not traffic. */
    net_stats st;
    net_get_stats(n, &st);
    assert_int_equal(st.rx_frames, 0);
    assert_int_equal(st.rx_dropped, 0);

    net_rxq_clear(n);
    assert_int_equal(net_rxq_count(n), 0);
    assert_false(net_rx_pending(n));
    assert_int_equal(net_recv(n, buf, sizeof(buf)), -EAGAIN);
    make_frame(f, 30, 5);
    assert_int_equal(net_rxq_push(n, f, 30), 0);
    assert_int_equal(net_recv(n, buf, sizeof(buf)), 30);
    assert_int_equal(frame_seq(buf), 5);
}

/* Datagrams from anyone but REMOTE do not reach the guest. */
static void test_udp_source_filter(void **state)
{
    fixture *fx = *state;
    uint16_t port;
    int other = udp_socket(&port);
    uint8_t f[60];
    make_frame(f, sizeof(f), 77);
    assert_int_equal(sendto(other, f, sizeof(f), 0,
                            (struct sockaddr *)&fx->dev_addr,
                            fx->dev_addr_len), (ssize_t)sizeof(f));
    peer_send_seq(fx, 78, 60);
    assert_int_equal(pump_until(fx->n, 1, 2000), 1);
    settle_and_pump(fx->n);
    uint8_t buf[NET_FRAME_MAX];
    assert_int_equal(net_recv(fx->n, buf, sizeof(buf)), 60);
    assert_int_equal(frame_seq(buf), 78);
    assert_int_equal(net_recv(fx->n, buf, sizeof(buf)), -EAGAIN);
    net_stats st;
    net_get_stats(fx->n, &st);
    assert_int_equal(st.rx_dropped, 1);
    close(other);
}

/* ---- UNIX-specific ---- */

static void test_unix_stale_and_cleanup(void **state)
{
    fixture *fx = *state;
    char path[160], spec[400];
    snprintf(path, sizeof(path), "%s/stale.sock", fx->dir);
    close(unix_socket(path));       /* a socket file nobody listens on */

    net_dev *n;
    snprintf(spec, sizeof(spec), "dgram:%s,%s", path, fx->peer_path);
    open_ok(&n, spec);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    net_close(n);
    assert_int_equal(lstat(path, &st), -1);
    assert_int_equal(errno, ENOENT);

    /* A socket someone else bound there after us is left alone. */
    open_ok(&n, spec);
    unlink(path);
    int fd = unix_socket(path);
    net_close(n);
    assert_int_equal(lstat(path, &st), 0);
    close(fd);
    unlink(path);
}

static void test_unix_send_to_missing_peer(void **state)
{
    fixture *fx = *state;
    close(fx->peer);
    fx->peer = -1;
    unlink(fx->peer_path);
    uint8_t f[60];
    make_frame(f, sizeof(f), 1);
    int rc = net_transmit(fx->n, f, sizeof(f), true);
    assert_true(rc == -ENOENT || rc == -ECONNREFUSED);
    net_stats st;
    net_get_stats(fx->n, &st);
    assert_int_equal(st.tx_dropped, 1);
    assert_int_equal(st.tx_frames, 0);
}

/*
 * A peer that stops reading fills its queue (net.unix.max_dgram_qlen):
 * then a send fails with -EAGAIN, after a short wait or (may_wait false)
 * at once; each failure is a dropped frame, and what got through is the
 * oldest, in order.
 */
static void test_unix_peer_not_reading(void **state)
{
    fixture *fx = *state;
    net_dev *n = fx->n;
    uint32_t tries = 0;
    int rc = 0;
    uint8_t f[60];
    while (rc == 0 && tries < 100000) {
        make_frame(f, sizeof(f), tries++);
        rc = net_transmit(n, f, sizeof(f), true);
    }
    assert_int_equal(rc, -EAGAIN);
    make_frame(f, sizeof(f), tries++);
    assert_int_equal(net_transmit(n, f, sizeof(f), false), -EAGAIN);
    net_stats st;
    net_get_stats(n, &st);
    assert_int_equal(st.tx_dropped, 2);
    assert_int_equal(st.tx_frames + st.tx_dropped, tries);
    uint8_t buf[NET_FRAME_MAX];
    for (uint32_t i = 0; i < st.tx_frames; i++) {
        assert_int_equal(peer_recv(fx, buf, sizeof(buf), 1000), 60);
        assert_int_equal(frame_seq(buf), i);
    }
    /* Read, it takes frames again. */
    make_frame(f, sizeof(f), 7);
    assert_int_equal(net_transmit(n, f, sizeof(f), false), 0);
}

/* ---- concurrency ---- */

typedef struct conc {
    fixture *fx;
    uint32_t total;
    int peer_done, stop;            /* atomics */
    uint32_t got, next;             /* the reader's, after join */
    bool in_order;
} conc;

static void *peer_thread(void *arg)
{
    conc *c = arg;
    for (uint32_t i = 0; i < c->total; i++) {
        uint8_t f[64];
        make_frame(f, sizeof(f), i);
        /* UNIX: blocks while the device's socket queue is full. */
        if (sendto(c->fx->peer, f, sizeof(f), 0,
                   (struct sockaddr *)&c->fx->dev_addr,
                   c->fx->dev_addr_len) != (ssize_t)sizeof(f))
            break;
    }
    __atomic_store_n(&c->peer_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *pump_thread(void *arg)
{
    conc *c = arg;
    while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        struct pollfd p = { .fd = net_fd(c->fx->n), .events = POLLIN };
        if (poll(&p, 1, 10) > 0)
            net_rx_pump(c->fx->n);
    }
    return NULL;
}

/*
 * The peer, the pump and the reader run at once: order holds, and every
 * frame is delivered or counted (UDP may also lose some in the kernel).
 */
static void test_concurrent_rx(void **state)
{
    fixture *fx = *state;
    conc c = { .fx = fx, .total = 3000, .in_order = true };
    struct timeval tv = { .tv_sec = 2 };
    setsockopt(fx->peer, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    pthread_t pt, pu;
    assert_int_equal(pthread_create(&pu, NULL, pump_thread, &c), 0);
    assert_int_equal(pthread_create(&pt, NULL, peer_thread, &c), 0);

    uint8_t buf[NET_FRAME_MAX];
    int64_t end = now_ms() + 10000, idle_since = -1;
    while (now_ms() < end) {
        ssize_t r = net_recv(fx->n, buf, sizeof(buf));
        if (r == 64) {
            if (frame_seq(buf) < c.next)
                c.in_order = false;
            c.next = frame_seq(buf) + 1;
            c.got++;
            idle_since = -1;
            continue;
        }
        if (!__atomic_load_n(&c.peer_done, __ATOMIC_ACQUIRE))
            usleep(100);
        else if (idle_since < 0)
            idle_since = now_ms();
        else if (now_ms() - idle_since > 200)
            break;
        else
            usleep(1000);
    }
    pthread_join(pt, NULL);
    __atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
    pthread_join(pu, NULL);
    assert_true(c.in_order);
    net_stats st;
    net_get_stats(fx->n, &st);
    assert_int_equal(st.rx_frames, c.got);
    if (fx->is_unix)
        assert_int_equal(st.rx_frames + st.rx_dropped, c.total);
    else
        assert_true(st.rx_frames + st.rx_dropped <= c.total);
    assert_true(c.got > 0);
}

static void *drain_thread(void *arg)
{
    conc *c = arg;
    uint8_t buf[NET_FRAME_MAX];
    for (;;) {
        ssize_t r = peer_recv(c->fx, buf, sizeof(buf), 20);
        if (r == 60) {
            if (frame_seq(buf) < c->next)
                c->in_order = false;
            c->next = frame_seq(buf) + 1;
            c->got++;
        } else if (__atomic_load_n(&c->peer_done, __ATOMIC_ACQUIRE)) {
            break;
        }
    }
    return NULL;
}

/*
 * A vCPU sending while the loop pumps and the peer reads: the two halves
 * do not wait on each other, every frame is accounted for once, and the
 * peer sees them in order.
 */
static void test_concurrent_tx(void **state)
{
    fixture *fx = *state;
    conc c = { .fx = fx, .total = 2000, .in_order = true };
    pthread_t pump, drain;
    assert_int_equal(pthread_create(&pump, NULL, pump_thread, &c), 0);
    assert_int_equal(pthread_create(&drain, NULL, drain_thread, &c), 0);
    for (uint32_t i = 0; i < c.total; i++) {
        uint8_t f[60];
        make_frame(f, sizeof(f), i);
        int rc = net_transmit(fx->n, f, sizeof(f), true);
        assert_true(rc == 0 || rc == -EAGAIN || rc == -ENOBUFS);
    }
    __atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
    pthread_join(pump, NULL);
    __atomic_store_n(&c.peer_done, 1, __ATOMIC_RELEASE);
    pthread_join(drain, NULL);
    assert_true(c.in_order);
    net_stats st;
    net_get_stats(fx->n, &st);
    assert_int_equal(st.tx_frames + st.tx_dropped, c.total);
    assert_true(c.got <= st.tx_frames);
    assert_true(c.got > 0);
    if (fx->is_unix)
        assert_int_equal(c.got, st.tx_frames);
}

/* ---- specs ---- */

static void expect_open_fails(const char *spec, int want_rc,
                              const char *want_msg)
{
    char err[512];
    net_dev *n = (net_dev *)0x1;
    int rc = net_open(&n, spec, err, sizeof(err));
    if (rc != want_rc || !strstr(err, want_msg))
        fail_msg("spec '%s': rc %d (want %d), message '%s' (want '%s')",
                 spec, rc, want_rc, err, want_msg);
    assert_null(n);
    char prefix[512];
    snprintf(prefix, sizeof(prefix), "net %s: ", spec);
    assert_memory_equal(err, prefix, strlen(prefix));
    /* No message buffer is fine too. */
    assert_int_equal(net_open(&n, spec, NULL, 0), want_rc);
}

static void test_bad_specs(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        int rc;
        const char *msg;
    } cases[] = {
        { "", -EINVAL, "unknown backend '' (expected tap:IFNAME, "
                       "dgram:LOCAL,REMOTE or none)" },
        { "eth:foo", -EINVAL, "unknown backend 'eth'" },
        { "tap", -EINVAL, "unknown backend 'tap'" },
        { "tap:", -EINVAL, "missing interface name" },
        { "tap:abcdefghijklmnop", -EINVAL,
          "interface name longer than 15 bytes" },
        { "tap:ftvm%d", -EINVAL, "bad interface name 'ftvm%d'" },
        { "tap:a/b", -EINVAL, "bad interface name 'a/b'" },
        { "dgram:", -EINVAL, "expected dgram:LOCAL,REMOTE" },
        { "dgram:127.0.0.1:1", -EINVAL, "expected dgram:LOCAL,REMOTE" },
        { "dgram:127.0.0.1:99999,127.0.0.1:1", -EINVAL,
          "LOCAL '127.0.0.1:99999': bad port '99999'" },
        { "dgram:127.0.0.1:1x,127.0.0.1:1", -EINVAL,
          "LOCAL '127.0.0.1:1x': bad port '1x'" },
        { "dgram:127.0.0.1:0,127.0.0.1:", -EINVAL,
          "REMOTE '127.0.0.1:': bad port ''" },
        { "dgram:localhost:1,127.0.0.1:2", -EINVAL,
          "LOCAL 'localhost:1': bad IPv4 address 'localhost' (numeric "
          "only)" },
        { "dgram:127.0.0.1:0,/tmp/x.sock", -EINVAL,
          "LOCAL and REMOTE are of different kinds" },
        { "dgram:127.0.0.1:0,[::1]:5", -EINVAL,
          "LOCAL and REMOTE are of different kinds" },
        { "dgram:relative.sock,/tmp/x.sock", -EINVAL,
          "LOCAL 'relative.sock': expected HOST:PORT, [IPV6]:PORT or an "
          "absolute path" },
        { "dgram:127.0.0.1:0,0.0.0.0:5", -EINVAL,
          "REMOTE '0.0.0.0:5' needs a real address and a port" },
        { "dgram:127.0.0.1:0,127.0.0.1:0", -EINVAL,
          "REMOTE '127.0.0.1:0' needs a real address and a port" },
        { "dgram:[::1]:0,[::]:5", -EINVAL,
          "REMOTE '[::]:5' needs a real address and a port" },
        { "dgram:[::1:0,[::1]:5", -EINVAL,
          "LOCAL '[::1:0': expected [IPV6]:PORT" },
        { "dgram:[zz]:0,[::1]:5", -EINVAL,
          "LOCAL '[zz]:0': bad IPv6 address 'zz'" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_open_fails(cases[i].spec, cases[i].rc, cases[i].msg);

    char spec[400], path[200];
    memset(path, 'a', 120);
    path[0] = '/';
    path[120] = 0;
    snprintf(spec, sizeof(spec), "dgram:%s,/tmp/x.sock", path);
    expect_open_fails(spec, -ENAMETOOLONG, "path longer than 107 bytes");

    fixture fx = { 0 };
    make_tmpdir(&fx);

    /* Something that is not a socket is never unlinked. */
    snprintf(path, sizeof(path), "%s/file", fx.dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(spec, sizeof(spec), "dgram:%s,%s/peer.sock", path, fx.dir);
    char want[300];
    snprintf(want, sizeof(want), "%s exists and is not a socket", path);
    expect_open_fails(spec, -EEXIST, want);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);

    snprintf(spec, sizeof(spec), "dgram:%s/none/dev.sock,%s/peer.sock",
             fx.dir, fx.dir);
    snprintf(want, sizeof(want), "bind %s/none/dev.sock: No such file or "
             "directory", fx.dir);
    expect_open_fails(spec, -ENOENT, want);
    remove_tmpdir(fx.dir);

    uint16_t port;
    int busy = udp_socket(&port);
    snprintf(spec, sizeof(spec), "dgram:127.0.0.1:%u,127.0.0.1:9", port);
    snprintf(want, sizeof(want), "bind 127.0.0.1:%u: Address already in use",
             port);
    expect_open_fails(spec, -EADDRINUSE, want);
    close(busy);
}

static void test_ipv6_spec(void **state)
{
    (void)state;
    net_dev *n;
    char err[256];
    /* Binds only; nothing is sent. */
    int rc = net_open(&n, "dgram:[::1]:0,[::1]:9", err, sizeof(err));
    if (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT) {
        print_message("IPv6 loopback unavailable (%s), skipped\n", err);
        return;
    }
    assert_int_equal(rc, 0);
    struct sockaddr_storage ss;
    socklen_t l = sizeof(ss);
    assert_int_equal(getsockname(net_fd(n), (struct sockaddr *)&ss, &l), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    net_close(n);
}

static void test_parse_mac(void **state)
{
    (void)state;
    uint8_t m[6] = { 0 };
    assert_int_equal(net_parse_mac("02:00:00:00:00:01", m), 0);
    assert_memory_equal(m, ((uint8_t[]){ 2, 0, 0, 0, 0, 1 }), 6);
    assert_int_equal(net_parse_mac("aA:bB:cC:dD:eE:fF", m), 0);
    assert_memory_equal(m,
                        ((uint8_t[]){ 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff }),
                        6);
    static const char *bad[] = {
        "", "02:00:00:00:00", "02:00:00:00:00:01:", "02:00:00:00:00:011",
        "2:00:00:00:00:01", "02-00-00-00-00-01", "02:00:00:00:00:0g",
        "02:00:00:00:00: 1", "0200.0000.0001", NULL,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(m, 0x5a, 6);
        assert_int_equal(net_parse_mac(bad[i], m), -EINVAL);
        assert_memory_equal(m, ((uint8_t[]){ 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
                                             0x5a }), 6);
    }
}

/* ---- COLO's pieces: "none", moving a backend, discarding, the tap ---- */

static void test_none_backend(void **state)
{
    (void)state;
    net_dev *n;
    open_ok(&n, "none");
    assert_int_equal(net_fd(n), -1);
    assert_int_equal(net_rx_pump(n), 0);
    assert_int_equal(net_rx_discard(n), 0);

    uint8_t f[NET_FRAME_MAX + 1], buf[NET_FRAME_MAX];
    make_frame(f, sizeof(f), 7);
    assert_int_equal(net_transmit(n, f, 60, true), -ENETDOWN);
    assert_int_equal(net_transmit(n, f, 60, false), -ENETDOWN);
    assert_int_equal(net_transmit(n, f, NET_FRAME_MAX + 1, true), -EINVAL);
    net_stats st;
    net_get_stats(n, &st);
    assert_int_equal(st.tx_dropped, 2);
    assert_int_equal(st.tx_frames + st.tx_bytes, 0);

    /* The receive queue is a NIC's, whatever its host side. */
    assert_int_equal(net_rxq_push(n, f, 60), 0);
    assert_int_equal(net_rx_deliver(n, f, 61), 0);
    assert_int_equal(net_rx_deliver(n, f, 0), -EINVAL);
    assert_int_equal(net_rx_deliver(n, f, NET_FRAME_MAX + 1), -EINVAL);
    assert_true(net_rx_pending(n));
    assert_int_equal(net_rxq_count(n), 2);
    assert_int_equal(net_recv(n, buf, sizeof(buf)), 60);
    assert_int_equal(net_recv(n, buf, sizeof(buf)), 61);
    assert_memory_equal(buf, f, 61);
    for (size_t i = 0; i < NET_RXQ_MAX; i++)
        assert_int_equal(net_rx_deliver(n, f, 64), 0);
    assert_int_equal(net_rx_deliver(n, f, 64), -ENOSPC);
    net_get_stats(n, &st);
    /* Delivered frames count as received; pushed ones are state. */
    assert_int_equal(st.rx_frames, NET_RXQ_MAX + 1);
    assert_int_equal(st.rx_bytes, 61 + NET_RXQ_MAX * 64);
    assert_int_equal(st.rx_dropped, 1);
    net_close(n);

    /* "none" is the whole spec. */
    char err[256];
    assert_int_equal(net_open(&n, "none:x", err, sizeof(err)), -EINVAL);
    assert_null(n);
    assert_non_null(strstr(err, "unknown backend 'none'"));
}

/*
 * The fixture's device hands its host side to a "none" device: frames
 * then flow through the new owner only, queues and counters stay put, and
 * (UNIX) the bound path goes with it.
 */
static void test_take_backend(void **state)
{
    fixture *fx = *state;
    net_dev *src = fx->n, *dst;
    open_ok(&dst, "none");
    int fd = net_fd(src);
    uint8_t f[NET_FRAME_MAX], buf[NET_FRAME_MAX];

    make_frame(f, 60, 500);
    assert_int_equal(net_rxq_push(src, f, 60), 0);
    assert_int_equal(net_transmit(src, f, 60, true), 0);
    assert_int_equal(peer_recv(fx, buf, sizeof(buf), 2000), 60);

    assert_int_equal(net_take_backend(src, dst), -EBUSY);
    assert_int_equal(net_take_backend(src, src), -EINVAL);
    assert_int_equal(net_take_backend(dst, src), 0);
    assert_int_equal(net_fd(dst), fd);
    assert_int_equal(net_fd(src), -1);
    assert_int_equal(net_rxq_count(src), 1);
    assert_int_equal(net_rxq_count(dst), 0);

    /* In: only the new owner reads. */
    peer_send_seq(fx, 1, 70);
    assert_int_equal(net_rx_pump(src), 0);
    assert_int_equal(pump_until(dst, 1, 2000), 1);
    assert_int_equal(net_recv(dst, buf, sizeof(buf)), 70);
    assert_int_equal(frame_seq(buf), 1);
    assert_int_equal(net_rxq_count(src), 1);

    /* Out: the new owner sends to REMOTE; the old one has no wire. */
    make_frame(f, 80, 2);
    assert_int_equal(net_transmit(dst, f, 80, true), 0);
    assert_int_equal(peer_recv(fx, buf, sizeof(buf), 2000), 80);
    assert_int_equal(frame_seq(buf), 2);
    assert_int_equal(net_transmit(src, f, 80, true), -ENETDOWN);
    assert_int_equal(peer_recv(fx, buf, sizeof(buf), 100), -EAGAIN);

    net_stats s, d;
    net_get_stats(src, &s);
    net_get_stats(dst, &d);
    assert_int_equal(s.tx_frames, 1);
    assert_int_equal(s.tx_dropped, 1);
    assert_int_equal(s.rx_frames, 0);
    assert_int_equal(d.tx_frames, 1);
    assert_int_equal(d.rx_frames, 1);

    /* A device with a host side takes no other, and gives nothing. */
    net_dev *other;
    open_ok(&other, "none");
    assert_int_equal(net_take_backend(dst, other), -EBUSY);
    assert_int_equal(net_fd(dst), fd);

    /* The old device goes; the path (UNIX) stays with the new owner, which
     * still receives on it, and removes it at its own close. */
    net_close(src);
    net_close(other);
    fx->n = dst;
    peer_send_seq(fx, 3, 90);
    assert_int_equal(pump_until(dst, 1, 2000), 1);
    assert_int_equal(net_recv(dst, buf, sizeof(buf)), 90);
    if (fx->is_unix) {
        struct stat st;
        net_close(dst);
        fx->n = NULL;
        assert_int_equal(lstat(fx->dev_path, &st), -1);
        assert_int_equal(errno, ENOENT);
    }
}

/* Moved there and back: the first owner's backend works again. */
static void test_take_backend_back(void **state)
{
    fixture *fx = *state;
    net_dev *dst;
    open_ok(&dst, "none");
    assert_int_equal(net_take_backend(dst, fx->n), 0);
    assert_int_equal(net_take_backend(fx->n, dst), 0);
    assert_int_equal(net_fd(dst), -1);
    net_close(dst);     /* a "none" device's close touches no fd or path */

    uint8_t buf[NET_FRAME_MAX];
    peer_send_seq(fx, 4, 64);
    assert_int_equal(pump_until(fx->n, 1, 2000), 1);
    assert_int_equal(net_recv(fx->n, buf, sizeof(buf)), 64);
    assert_int_equal(frame_seq(buf), 4);
}

static void test_rx_discard(void **state)
{
    fixture *fx = *state;
    net_dev *n = fx->n;
    uint8_t f[NET_FRAME_MAX], buf[NET_FRAME_MAX];

    assert_int_equal(net_rx_discard(n), 0);
    make_frame(f, 60, 900);
    assert_int_equal(net_rxq_push(n, f, 60), 0);    /* the guest's, kept */

    static uint8_t big[NET_FRAME_MAX + 100];
    for (uint32_t seq = 0; seq < 5; seq++)
        peer_send_seq(fx, seq, 64);
    peer_send(fx, big, sizeof(big));
    /* The kernel may still be delivering: count until all six are gone. */
    int64_t end = now_ms() + 2000;
    int total = 0;
    while (total < 6 && now_ms() < end) {
        struct pollfd p = { .fd = net_fd(n), .events = POLLIN };
        if (poll(&p, 1, 20) > 0) {
            int r = net_rx_discard(n);
            assert_true(r >= 0);
            total += r;
        }
    }
    assert_int_equal(total, 6);
    assert_int_equal(net_rx_discard(n), 0);

    net_stats st;
    net_get_stats(n, &st);
    assert_int_equal(st.rx_discarded, 6);
    assert_int_equal(st.rx_frames + st.rx_dropped, 0);
    assert_int_equal(net_rxq_count(n), 1);

    /* What comes after is received as usual. */
    peer_send_seq(fx, 5, 64);
    assert_int_equal(pump_until(n, 2, 2000), 2);
    assert_int_equal(net_recv(n, buf, sizeof(buf)), 60);
    assert_int_equal(frame_seq(buf), 900);
    assert_int_equal(net_recv(n, buf, sizeof(buf)), 64);
    assert_int_equal(frame_seq(buf), 5);
}

typedef struct tap_log {
    net_dev *n;
    uint32_t seqs[16];
    size_t lens[16];
    size_t count;
    size_t queued_at_notify;
    int notifies;
} tap_log;

static void on_tap(void *opaque, const void *frame, size_t len)
{
    tap_log *t = opaque;
    /* Takes rx_lock: a tap called with it held would hang here. */
    assert_true(net_rxq_count(t->n) >= 1);
    assert_true(t->count < 16);
    t->seqs[t->count] = len >= 18 ? frame_seq(frame) : UINT32_MAX;
    t->lens[t->count] = len;
    t->count++;
}

static void on_tap_notify(void *opaque)
{
    tap_log *t = opaque;
    t->notifies++;
    t->queued_at_notify = t->count;
}

/*
 * The tap sees every frame the pump appends, in order, before the notify,
 * and none it drops (oversize, empty, queue full) or that others put in.
 */
static void test_rx_tap(void **state)
{
    fixture *fx = *state;
    net_dev *n = fx->n;
    tap_log t = { .n = n };
    net_set_rx_tap(n, on_tap, &t);
    net_set_rx_notify(n, on_tap_notify, &t);

    uint8_t f[NET_FRAME_MAX], buf[NET_FRAME_MAX];
    static uint8_t big[NET_FRAME_MAX + 1];
    make_frame(f, 64, 0);
    for (size_t i = 0; i < NET_RXQ_MAX - 4; i++)
        assert_int_equal(net_rxq_push(n, f, 64), 0);
    assert_int_equal(net_rx_deliver(n, f, 64), 0);  /* room for 3 more */

    peer_send_seq(fx, 10, 60);
    peer_send(fx, big, sizeof(big));                /* oversize */
    peer_send_seq(fx, 11, 61);
    peer_send(fx, big, 0);                          /* empty */
    peer_send_seq(fx, 12, 62);
    peer_send_seq(fx, 13, 63);                      /* queue full */
    peer_send_seq(fx, 14, 64);                      /* queue full */
    pump_seen(n, 1 + 7);    /* the delivered frame counts as received */
    assert_int_equal(t.count, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(t.seqs[i], 10 + i);
        assert_int_equal(t.lens[i], 60 + i);
    }
    assert_true(t.notifies >= 1);
    assert_int_equal(t.queued_at_notify, t.count);
    net_stats st;
    net_get_stats(n, &st);
    assert_int_equal(st.rx_dropped, 4);

    /* The queue's tail holds what the tap saw. */
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(net_rxq_peek(n, NET_RXQ_MAX - 3 + i, buf,
                                      sizeof(buf)), (ssize_t)(60 + i));
        assert_int_equal(frame_seq(buf), 10 + i);
    }

    /* Removed: frames still flow, the tap hears nothing. */
    net_rxq_clear(n);
    net_set_rx_tap(n, NULL, &t);
    peer_send_seq(fx, 15, 60);
    assert_int_equal(pump_until(n, 1, 2000), 1);
    assert_int_equal(t.count, 3);
    net_set_rx_notify(n, NULL, NULL);
}

#define BOTH(t) \
    cmocka_unit_test_setup_teardown(t, setup_udp, teardown), \
    cmocka_unit_test_setup_teardown(t, setup_unix, teardown)
#define UDP(t) cmocka_unit_test_setup_teardown(t, setup_udp, teardown)
#define UNIX(t) cmocka_unit_test_setup_teardown(t, setup_unix, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_mac),
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_ipv6_spec),
        cmocka_unit_test(test_none_backend),
        BOTH(test_take_backend),
        BOTH(test_take_backend_back),
        BOTH(test_rx_discard),
        BOTH(test_rx_tap),
        BOTH(test_send_recv),
        BOTH(test_send_invalid),
        BOTH(test_rxq_limit),
        BOTH(test_oversize_and_empty),
        BOTH(test_rx_notify),
        BOTH(test_concurrent_rx),
        BOTH(test_concurrent_tx),
        UDP(test_recv_truncates),
        UDP(test_rxq_peek_push_clear),
        UDP(test_udp_source_filter),
        UNIX(test_unix_stale_and_cleanup),
        UNIX(test_unix_send_to_missing_peer),
        UNIX(test_unix_peer_not_reading),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
