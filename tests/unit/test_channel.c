/*
 * Unit tests for primary/channel: the link keeps proving the primary alive
 * while its owner's event loop does not run (as while it builds a full
 * package), and PINGs fall between records, never inside a package.
 *
 * The link runs over a socketpair; the test reads the secondary's end.
 * The event base is never dispatched: the owner's loop is "busy" for the
 * whole test, and only the link's own threads write.  But for the return
 * path's reader, whose test runs the loop one round at a time.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checkpoint/savevm.h"
#include "primary/channel.h"
#include "vm/mono.h"

#define PING_LEN 9u             /* COMMAND, be16 PING, be16 4, be32 n */
#define DEADLINE_NS 20000000000ull

typedef struct fixture {
    struct event_base *base;
    channel *l;
    int fd;                     /* the secondary's end */
    uint8_t *buf;
    size_t len, cap;
    unsigned msgs;              /* return-path messages the link read */
} fixture;

/* The bring-up: just the stream's header, as a real one starts. */
static int bringup(void *opaque, channel *l, char *err, size_t errlen)
{
    (void)opaque;
    qfile *f = qfile_open_mem("header");
    savevm_put_header(f);
    size_t len;
    const uint8_t *d = qfile_mem_data(f, &len);
    int rc = channel_write(l, d, len, err, errlen);
    qfile_close(f);
    return rc;
}

static void on_ready(void *opaque, channel *l) { (void)opaque; (void)l; }
static void on_msg(void *opaque, channel *l, const retpath_msg *m)
{
    (void)l;
    fixture *x = opaque;
    assert_int_equal(m->type, RETPATH_HEARTBEAT);
    assert_int_equal(m->value64, x->msgs + 1);   /* in order, none lost */
    x->msgs++;
}
static void on_sent(void *opaque, channel *l, uint64_t id, qfile *pkg,
                    uint64_t sent_ns)
{
    (void)opaque; (void)l; (void)id; (void)sent_ns;
    qfile_close(pkg);
}
static void on_down(void *opaque, channel *l, int rc, const char *why)
{
    (void)opaque; (void)l; (void)rc; (void)why;
}
static void on_exit_(void *opaque, channel *l) { (void)opaque; (void)l; }

static const channel_ops ops = {
    .bringup = bringup, .on_ready = on_ready, .on_msg = on_msg,
    .on_sent = on_sent, .on_down = on_down, .on_exit = on_exit_,
};

static int setup(void **state)
{
    fixture *x = calloc(1, sizeof(*x));
    int sv[2];
    assert_non_null(x);
    evthread_use_pthreads();
    x->base = event_base_new();
    assert_non_null(x->base);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    x->fd = sv[0];
    char err[256];
    assert_int_equal(channel_new(&x->l, x->base, "test-secondary", sv[1],
                                 1000, NULL, &ops, x, err, sizeof(err)),
                     0);
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    fixture *x = *state;
    channel_free(x->l);
    event_base_free(x->base);
    close(x->fd);
    free(x->buf);
    free(x);
    return 0;
}

/* Reads what arrived within wait_ms (0: what is there now). */
static void pump(fixture *x, int wait_ms)
{
    struct pollfd p = { .fd = x->fd, .events = POLLIN };
    while (poll(&p, 1, wait_ms) > 0) {
        if (x->cap - x->len < 65536) {
            x->cap = x->cap ? x->cap * 2 : 1 << 20;
            x->buf = realloc(x->buf, x->cap);
            assert_non_null(x->buf);
        }
        ssize_t n = recv(x->fd, x->buf + x->len, x->cap - x->len,
                         MSG_DONTWAIT);
        if (n <= 0)
            break;
        x->len += (size_t)n;
        wait_ms = 0;
    }
}

static size_t header_len(void)
{
    qfile *f = qfile_open_mem("header");
    savevm_put_header(f);
    size_t len;
    qfile_mem_data(f, &len);
    qfile_close(f);
    return len;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

/* A PING record at p: its value, or -1 if it is not one. */
static int64_t ping_at(const uint8_t *p, size_t left)
{
    if (left < PING_LEN || p[0] != SAVEVM_COMMAND || p[1] != 0 ||
        p[2] != SAVEVM_CMD_PING || p[3] != 0 || p[4] != 4)
        return -1;
    return be32(p + 5);
}

/*
 * Parses the header, then PINGs and at most one package of want_len
 * bytes (each byte its offset mod 251); returns PINGs seen and sets
 * *pkg when the package came whole.
 */
static unsigned parse(fixture *x, size_t want_len, bool *pkg)
{
    size_t off = header_len();
    unsigned pings = 0;
    uint32_t last = 0;
    *pkg = false;
    if (x->len < off)
        return 0;
    while (off < x->len) {
        int64_t v = ping_at(x->buf + off, x->len - off);
        if (v >= 0) {
            assert_true((uint32_t)v == last + 1);   /* in order, none lost */
            last = (uint32_t)v;
            pings++;
            off += PING_LEN;
            continue;
        }
        /* Otherwise only the package may be here, whole. */
        assert_false(*pkg);
        const uint8_t *p = x->buf + off;
        assert_true(x->len - off >= 9);
        assert_int_equal(p[0], SAVEVM_COMMAND);
        assert_int_equal((p[1] << 8) | p[2], SAVEVM_CMD_PACKAGED);
        assert_int_equal(be32(p + 5), want_len);
        if (x->len - off - 9 < want_len)
            break;          /* not all here yet */
        for (size_t i = 0; i < want_len; i++)
            if (p[9 + i] != (uint8_t)(i % 251))
                fail_msg("package byte %zu changed: a PING inside it?", i);
        *pkg = true;
        off += 9 + want_len;
    }
    return pings;
}

/* With the owner's loop never running, PINGs keep coming. */
static void test_pings_without_the_loop(void **state)
{
    fixture *x = *state;
    channel_set_heartbeat(x->l, 10000000);      /* 10 ms */
    uint64_t t0 = mono_ns();
    bool pkg;
    unsigned n = 0;
    while (n < 5 && mono_ns() - t0 < DEADLINE_NS) {
        pump(x, 100);
        n = parse(x, 0, &pkg);
    }
    assert_true(n >= 5);
    channel_times t;
    channel_get_times(x->l, &t);
    /* Counted right after each is written: the last may be on its way. */
    assert_true(t.pings >= n - 1);
}

/*
 * The stall the owner asks about: none while the heartbeat thread keeps
 * waking; asked as of a second later (a process that did not run for a
 * second, its threads not yet woken), about that second less the
 * interval; none without heartbeats.
 */
static void test_stall(void **state)
{
    fixture *x = *state;
    assert_int_equal(channel_take_stall(x->l, mono_ns() + 1000000000ull), 0);
    channel_set_heartbeat(x->l, 10000000);      /* 10 ms */
    bool pkg;
    uint64_t t0 = mono_ns();
    while (parse(x, 0, &pkg) < 2 && mono_ns() - t0 < DEADLINE_NS)
        pump(x, 100);
    assert_true(channel_take_stall(x->l, mono_ns()) < 500000000ull);
    uint64_t later = channel_take_stall(x->l, mono_ns() + 1000000000ull);
    assert_true(later >= 900000000ull && later <= 1000000000ull);
}

/* Interval 0: the link stays quiet after the header. */
static void test_no_heartbeat(void **state)
{
    fixture *x = *state;
    uint64_t t0 = mono_ns();
    while (x->len < header_len() && mono_ns() - t0 < DEADLINE_NS)
        pump(x, 100);
    pump(x, 200);
    assert_int_equal(x->len, header_len());
}

/*
 * A package written while the peer does not read (the writer blocks
 * mid-record): PINGs only before and after it, never inside.
 */
static void test_pings_between_records(void **state)
{
    fixture *x = *state;
    const size_t len = 8u << 20;
    channel_set_heartbeat(x->l, 2000000);       /* 2 ms */
    uint64_t t0 = mono_ns();
    bool pkg;
    while (parse(x, 0, &pkg) < 2 && mono_ns() - t0 < DEADLINE_NS)
        pump(x, 50);
    qfile *q = qfile_open_mem("package");
    for (size_t i = 0; i < len; i++)
        qfile_put_u8(q, (uint8_t)(i % 251));
    channel_send_package(x->l, 1, q);
    /* The socket fills and the sender waits on us: PINGs must wait too. */
    usleep(100000);
    unsigned before = 0;
    t0 = mono_ns();
    for (;;) {
        pump(x, 50);
        unsigned n = parse(x, len, &pkg);
        if (pkg && n > before + 2)
            break;
        if (!pkg)
            before = n;
        assert_true(mono_ns() - t0 < DEADLINE_NS);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (*(unsigned *)arg)++;
}

/*
 * A secondary that sends faster than the loop reads (finding 6 of issue
 * 8: a flood of HEARTBEATs kept the loop in the reader, and a status
 * call waited 5 s): each round of the loop reads a bounded share, and a
 * timer due meanwhile runs in that round.
 */
static void test_reader_yields(void **state)
{
    fixture *x = *state;
    enum { N = 20000 };
    uint8_t *all = malloc(N * 12);
    assert_non_null(all);
    for (unsigned i = 0; i < N; i++) {
        uint8_t *p = all + i * 12;
        uint64_t seq = i + 1;
        p[0] = 0x7f, p[1] = 0x03, p[2] = 0, p[3] = 8;
        for (int b = 0; b < 8; b++)
            p[4 + b] = (uint8_t)(seq >> (56 - 8 * b));
    }
    /* As much as the socket takes now, the rest as the link reads. */
    size_t sent = 0;
    unsigned timer_runs = 0, rounds = 0, most = 0;
    struct event *t = evtimer_new(x->base, on_timer, &timer_runs);
    assert_non_null(t);
    uint64_t t0 = mono_ns();
    while (x->msgs < N) {
        if (sent < N * 12) {
            ssize_t w = send(x->fd, all + sent, N * 12 - sent, MSG_DONTWAIT);
            if (w > 0)
                sent += (size_t)w;
        }
        struct timeval zero = { 0, 0 };
        unsigned before = x->msgs, runs = timer_runs;
        evtimer_add(t, &zero);
        event_base_loop(x->base, EVLOOP_ONCE);
        unsigned read = x->msgs - before;
        most = read > most ? read : most;
        if (read)
            rounds++;
        /* The timer had its turn in the same round as the reader. */
        assert_int_equal(timer_runs, runs + 1);
        assert_true(mono_ns() - t0 < DEADLINE_NS);
    }
    /* All of them, in order (on_msg checks), over many rounds. */
    assert_int_equal(x->msgs, N);
    assert_true(most <= 1000);
    assert_true(rounds >= N / 1000);
    event_free(t);
    free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pings_without_the_loop, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_heartbeat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pings_between_records, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reader_yields, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
