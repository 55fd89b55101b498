/*
 * Unit tests for primary/outqueue: output commit of console bytes and
 * network frames, and the rule that the acknowledgement of checkpoint k
 * releases what the guest produced before checkpoint k.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "primary/outqueue.h"
#include "vm/net.h"

/* ---- the console, and a frame sink that logs into it ---- */

/* An in-memory file standing for stdout. */
static int out_fd(void)
{
    int fd = memfd_create("out", MFD_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

/* Everything written to fd so far, NUL-terminated (static buffer). */
static const char *written(int fd)
{
    static char buf[1 << 20];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    return buf;
}

/* The console sink of these tests: straight into the fd opaque points to. */
static int fd_console(void *opaque, const void *buf, size_t len)
{
    assert_int_equal(write(*(int *)opaque, buf, len), (ssize_t)len);
    return 0;
}

/*
 * The frame sink of these tests: a frame is its own text, written to the
 * console's fd as "[TEXT]", so one log shows the order of both kinds.
 * From call number `full_from` on (0: never) it answers -EAGAIN instead,
 * as a peer that stopped reading would.
 */
typedef struct sink {
    int fd;
    unsigned calls, full_from;
} sink;

static int sink_send(void *opaque, const void *frame, size_t len)
{
    sink *s = opaque;
    s->calls++;
    if (s->full_from && s->calls >= s->full_from)
        return -EAGAIN;
    char buf[NET_FRAME_MAX + 2];
    buf[0] = '[';
    memcpy(buf + 1, frame, len);
    buf[len + 1] = ']';
    assert_int_equal(write(s->fd, buf, len + 2), (ssize_t)len + 2);
    return 0;
}

typedef struct fixture {
    int fd;
    sink s;
    outqueue *q;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->fd = out_fd();
    fx->s.fd = fx->fd;
    assert_int_equal(outqueue_new(&fx->q), 0);
    outqueue_set_console_sink(fx->q, fd_console, &fx->fd);
    outqueue_set_frame_sink(fx->q, sink_send, &fx->s);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    outqueue_free(fx->q);
    close(fx->fd);
    free(fx);
    return 0;
}

static void con(outqueue *q, const char *s)
{
    assert_int_equal(outqueue_console(q, s, strlen(s)), 0);
}

static void frame(outqueue *q, const char *s)
{
    assert_int_equal(outqueue_transmit(q, s, strlen(s)), 0);
}

static outqueue_stats stats(outqueue *q)
{
    outqueue_stats st;
    outqueue_get_stats(q, &st);
    return st;
}

/* ---- tests ---- */

static void test_passthrough(void **state)
{
    fixture *fx = *state;
    con(fx->q, "a");
    frame(fx->q, "f");
    con(fx->q, "b");
    assert_string_equal(written(fx->fd), "a[f]b");
    outqueue_stats st = stats(fx->q);
    assert_false(st.holding);
    assert_int_equal(st.console_written_bytes, 2);
    assert_int_equal(st.frames_sent, 1);
    assert_int_equal(st.held_items, 0);
    assert_int_equal(st.delay_ns.count, 0);     /* nothing was held */
}

/*
 * The release arithmetic.  Checkpoint k marks the epoch of what the guest
 * produces after it; the acknowledgement of k releases what came before
 * it, and nothing after.  Releasing epoch base + k would show output of
 * state the secondary does not have (a failover would take it back);
 * releasing base + k - 2 would hold output one checkpoint too long.
 */
static void test_ack_releases_what_came_before(void **state)
{
    fixture *fx = *state;
    outqueue *q = fx->q;
    outqueue_begin(q);
    con(q, "0");                /* before checkpoint 1: out at once */
    outqueue_checkpoint(q, 1);
    con(q, "1a");
    frame(q, "1f");
    con(q, "1b");
    outqueue_checkpoint(q, 2);
    frame(q, "2f");
    outqueue_checkpoint(q, 3);
    con(q, "3");
    assert_string_equal(written(fx->fd), "0");
    outqueue_stats st = stats(q);
    assert_true(st.holding);
    assert_int_equal(st.epoch, 3);
    assert_int_equal(st.held_items, 5);
    assert_int_equal(st.held_console_bytes, 5);
    assert_int_equal(st.held_frames, 2);
    assert_int_equal(st.held_frame_bytes, 4);

    /* Checkpoint 1 holds none of what came after it. */
    assert_int_equal(outqueue_acked(q, 1), 0);
    assert_string_equal(written(fx->fd), "0");
    /* Checkpoint 2 holds the state that produced epoch 1. */
    assert_int_equal(outqueue_acked(q, 2), 3);
    assert_string_equal(written(fx->fd), "01a[1f]1b");
    /* Acknowledged again, or an older one: nothing more. */
    assert_int_equal(outqueue_acked(q, 2), 0);
    assert_int_equal(outqueue_acked(q, 1), 0);
    assert_int_equal(outqueue_acked(q, 3), 1);
    assert_string_equal(written(fx->fd), "01a[1f]1b[2f]");
    st = stats(q);
    assert_int_equal(st.held_items, 1);
    assert_int_equal(st.held_console_bytes, 1);
    assert_int_equal(st.held_frames, 0);
    assert_int_equal(st.delay_ns.count, 4);
    /* "3" is dropped at free: never safe. */
}

/*
 * A second secondary's ids start at 1 again; epochs go on from where the
 * first one's stopped, so its acknowledgements release by the same rule.
 */
static void test_next_secondary_epochs_go_on(void **state)
{
    fixture *fx = *state;
    outqueue *q = fx->q;
    outqueue_begin(q);
    for (uint64_t k = 1; k <= 4; k++)
        outqueue_checkpoint(q, k);
    con(q, "a");
    assert_int_equal(outqueue_release_all(q), 1);   /* the first is lost */
    con(q, "b");
    outqueue_begin(q);
    outqueue_checkpoint(q, 1);
    assert_int_equal(stats(q).epoch, 5);
    con(q, "c");
    outqueue_checkpoint(q, 2);
    con(q, "d");
    assert_int_equal(outqueue_acked(q, 1), 0);
    assert_string_equal(written(fx->fd), "ab");
    assert_int_equal(outqueue_acked(q, 2), 1);
    assert_string_equal(written(fx->fd), "abc");
    assert_int_equal(stats(q).epoch, 6);
}

/* An acknowledgement of nothing (id 0) releases nothing. */
static void test_ack_zero(void **state)
{
    fixture *fx = *state;
    outqueue_begin(fx->q);
    outqueue_checkpoint(fx->q, 1);
    con(fx->q, "x");
    assert_int_equal(outqueue_acked(fx->q, 0), 0);
    assert_string_equal(written(fx->fd), "");
}

/* Ending protection sends what is held first, then passes through. */
static void test_release_all_keeps_order(void **state)
{
    fixture *fx = *state;
    outqueue *q = fx->q;
    outqueue_begin(q);
    outqueue_checkpoint(q, 1);
    con(q, "x");
    outqueue_checkpoint(q, 2);
    frame(q, "y");
    assert_int_equal(outqueue_release_all(q), 2);
    con(q, "z");
    frame(q, "w");
    assert_string_equal(written(fx->fd), "x[y]z[w]");
    outqueue_stats st = stats(q);
    assert_false(st.holding);
    assert_int_equal(st.held_items, 0);
    assert_int_equal(outqueue_release_all(q), 0);
}

static int limit_calls;

static void on_limit(void *opaque)
{
    assert_ptr_equal(opaque, &limit_calls);
    limit_calls++;
}

static void test_limit_once_per_epoch(void **state)
{
    fixture *fx = *state;
    outqueue *q = fx->q;
    char chunk[60];
    memset(chunk, 'c', sizeof(chunk));
    outqueue_set_limit(q, 3, 100, on_limit, &limit_calls);
    limit_calls = 0;
    /* Not holding: nothing accumulates, no call. */
    for (int i = 0; i < 5; i++)
        outqueue_console(q, chunk, sizeof(chunk));
    assert_int_equal(limit_calls, 0);
    outqueue_begin(q);
    outqueue_checkpoint(q, 1);
    outqueue_console(q, chunk, sizeof(chunk));
    assert_int_equal(limit_calls, 0);
    /* Bytes: console and frames together. */
    assert_int_equal(outqueue_transmit(q, chunk, sizeof(chunk)), 0);
    assert_int_equal(limit_calls, 1);
    outqueue_console(q, chunk, sizeof(chunk));
    assert_int_equal(limit_calls, 1);
    /* A new epoch counts from zero; frames by their number. */
    outqueue_checkpoint(q, 2);
    for (int i = 0; i < 2; i++)
        frame(q, "f");
    assert_int_equal(limit_calls, 1);
    frame(q, "f");
    assert_int_equal(limit_calls, 2);
    frame(q, "f");
    assert_int_equal(limit_calls, 2);
}

static void test_bounds(void **state)
{
    fixture *fx = *state;
    outqueue *q = fx->q;
    size_t big = 1u << 20;
    char *chunk = calloc(1, big);
    assert_non_null(chunk);
    outqueue_begin(q);
    outqueue_checkpoint(q, 1);
    size_t n = OUTQUEUE_MAX_BYTES / big;
    for (size_t i = 0; i < n + 2; i++)
        outqueue_console(q, chunk, big);
    outqueue_stats st = stats(q);
    assert_int_equal(st.held_console_bytes, n * big);
    assert_int_equal(st.console_dropped_bytes, 2 * big);
    /* Full: a frame is refused, not lost; the guest tries again. */
    assert_int_equal(outqueue_transmit(q, "f", 1), -ENOSPC);
    st = stats(q);
    assert_int_equal(st.frames_refused, 1);
    assert_int_equal(st.held_frames, 0);

    assert_int_equal(outqueue_acked(q, 2), n);
    st = stats(q);
    assert_int_equal(st.held_items, 0);
    assert_int_equal(st.console_written_bytes, n * big);

    /* The number of items, hit first by small frames. */
    outqueue_checkpoint(q, 2);
    for (size_t i = 0; i < OUTQUEUE_MAX_ITEMS; i++)
        assert_int_equal(outqueue_transmit(q, "s", 1), 0);
    assert_int_equal(outqueue_transmit(q, "s", 1), -ENOSPC);
    con(q, "lost");
    st = stats(q);
    assert_int_equal(st.held_frames, OUTQUEUE_MAX_ITEMS);
    assert_int_equal(st.frames_refused, 2);
    assert_int_equal(st.console_dropped_bytes, 2 * big + 4);
    free(chunk);
    /* Freeing with items held must free them (the sanitizer build). */
}

static void test_invalid_frames(void **state)
{
    fixture *fx = *state;
    uint8_t f[NET_FRAME_MAX + 1] = { 0 };
    assert_int_equal(outqueue_transmit(fx->q, f, 0), -EINVAL);
    assert_int_equal(outqueue_transmit(fx->q, f, NET_FRAME_MAX + 1),
                     -EINVAL);
    assert_int_equal(outqueue_transmit(fx->q, NULL, 10), -EINVAL);
    outqueue_begin(fx->q);
    outqueue_checkpoint(fx->q, 1);
    assert_int_equal(outqueue_transmit(fx->q, f, NET_FRAME_MAX + 1),
                     -EINVAL);
    outqueue_stats st = stats(fx->q);
    assert_int_equal(st.frames_sent + st.held_frames + st.frames_refused, 0);
    assert_int_equal(fx->s.calls, 0);
}

/* Without sinks: frames are refused, console bytes dropped and counted. */
static void test_no_sinks(void **state)
{
    (void)state;
    outqueue *q;
    assert_int_equal(outqueue_new(&q), 0);
    assert_int_equal(outqueue_transmit(q, "f", 1), -ENODEV);
    assert_int_equal(outqueue_console(q, "abc", 3), 0);
    outqueue_stats st = stats(q);
    assert_int_equal(st.console_dropped_bytes, 3);
    assert_int_equal(st.console_written_bytes, 0);
    outqueue_free(q);
}

/*
 * A peer that stops reading: a release goes on past it, in order, and
 * the next release sends again once there is room.
 */
static void test_full_peer(void **state)
{
    fixture *fx = *state;
    outqueue *q = fx->q;
    outqueue_begin(q);
    outqueue_checkpoint(q, 1);
    for (int i = 0; i < 6; i++)
        frame(q, "f");
    fx->s.full_from = 3;
    assert_int_equal(outqueue_acked(q, 2), 6);
    assert_string_equal(written(fx->fd), "[f][f]");
    assert_int_equal(fx->s.calls, 6);
    fx->s.full_from = 0;
    outqueue_checkpoint(q, 2);
    frame(q, "g");
    assert_int_equal(outqueue_acked(q, 3), 1);
    assert_string_equal(written(fx->fd), "[f][f][g]");
    assert_int_equal(stats(q).frames_sent, 7);
}

static void test_delay(void **state)
{
    fixture *fx = *state;
    outqueue_begin(fx->q);
    outqueue_checkpoint(fx->q, 1);
    con(fx->q, "late");
    frame(fx->q, "late");
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    outqueue_acked(fx->q, 2);
    outqueue_stats st = stats(fx->q);
    assert_int_equal(st.delay_ns.count, 2);
    assert_true(st.delay_ns.last >= 20u * 1000 * 1000);
    assert_true(st.delay_ns.max >= st.delay_ns.last);
}

/*
 * A real backend whose UNIX datagram peer does not read: a release
 * neither hangs nor reorders; the oldest frames get through, the rest
 * are counted as dropped by the NIC.
 */
static void test_net_peer_not_reading(void **state)
{
    (void)state;
    char dir[] = "/tmp/ftvm-outqueue-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char dev_path[64], peer_path[64], spec[160], err[256];
    snprintf(dev_path, sizeof(dev_path), "%s/dev.sock", dir);
    snprintf(peer_path, sizeof(peer_path), "%s/peer.sock", dir);
    int peer = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(peer >= 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", peer_path);
    assert_int_equal(bind(peer, (struct sockaddr *)&a, sizeof(a)), 0);
    snprintf(spec, sizeof(spec), "dgram:%s,%s", dev_path, peer_path);
    net_dev *n;
    if (net_open(&n, spec, err, sizeof(err)) < 0)
        fail_msg("%s", err);

    outqueue *q;
    assert_int_equal(outqueue_new(&q), 0);
    outqueue_set_frame_sink(q, outqueue_net_send, n);
    outqueue_begin(q);
    outqueue_checkpoint(q, 1);
    uint8_t f[60] = { 0 };
    for (uint32_t i = 0; i < 100; i++) {
        f[14] = (uint8_t)i;
        assert_int_equal(outqueue_transmit(q, f, sizeof(f)), 0);
    }
    assert_int_equal(outqueue_release_all(q), 100);
    net_stats ns;
    net_get_stats(n, &ns);
    assert_int_equal(ns.tx_frames + ns.tx_dropped, 100);
    assert_true(ns.tx_frames > 0);
    for (uint64_t i = 0; i < ns.tx_frames; i++) {
        uint8_t buf[NET_FRAME_MAX];
        assert_int_equal(recv(peer, buf, sizeof(buf), MSG_DONTWAIT), 60);
        assert_int_equal(buf[14], (uint8_t)i);
    }
    outqueue_free(q);
    net_close(n);
    close(peer);
    unlink(peer_path);
    rmdir(dir);
}

/*
 * vCPU threads write numbered lines (one of them as frames) while the
 * loop takes checkpoints and acknowledges them: every line comes out
 * once, and each thread's in order.
 */
#define WRITERS 4
#define LINES 3000

typedef struct writer {
    outqueue *q;
    int id;
} writer;

static void *write_lines(void *arg)
{
    writer *w = arg;
    char line[32];
    for (int i = 0; i < LINES; i++) {
        int n = snprintf(line, sizeof(line), "%d:%d\n", w->id, i);
        if (w->id == WRITERS - 1) {
            while (outqueue_transmit(w->q, line, (size_t)n) == -ENOSPC)
                sched_yield();
        } else {
            outqueue_console(w->q, line, (size_t)n);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    fixture *fx = *state;
    outqueue *q = fx->q;
    outqueue_begin(q);
    outqueue_checkpoint(q, 1);
    pthread_t t[WRITERS];
    writer w[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer){ q, i };
        assert_int_equal(pthread_create(&t[i], NULL, write_lines, &w[i]),
                         0);
    }
    for (uint64_t k = 2; k < 200; k++) {
        outqueue_checkpoint(q, k);
        outqueue_acked(q, k - 1);
        if (k == 150)
            outqueue_release_all(q);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(t[i], NULL);
    outqueue_release_all(q);
    const char *s = written(fx->fd);
    int next[WRITERS] = { 0 };
    int lines = 0;
    for (const char *p = s; *p;) {
        int id, n;
        if (*p == '[' || *p == ']') {
            p++;
            continue;
        }
        assert_int_equal(sscanf(p, "%d:%d", &id, &n), 2);
        assert_true(id >= 0 && id < WRITERS);
        assert_int_equal(n, next[id]);
        next[id]++;
        lines++;
        p = strchr(p, '\n') + 1;
    }
    assert_int_equal(lines, WRITERS * LINES);
}

#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T(test_passthrough),
        T(test_ack_releases_what_came_before),
        T(test_next_secondary_epochs_go_on),
        T(test_ack_zero),
        T(test_release_all_keeps_order),
        T(test_limit_once_per_epoch),
        T(test_bounds),
        T(test_invalid_frames),
        cmocka_unit_test(test_no_sinks),
        T(test_full_peer),
        T(test_delay),
        cmocka_unit_test(test_net_peer_not_reading),
        T(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
