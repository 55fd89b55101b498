/*
 * Unit tests for primary/channel: the link keeps proving the primary alive
 * while its owner's event loop does not run (as while it builds a full
 * package), and PINGs fall between records, never inside a package; the
 * owner's records (channel_send_record) go out whole and in order with
 * the packages, and at most CHANNEL_RECORDS_MAX of them wait unwritten.
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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checkpoint/savevm.h"
#include "primary/channel.h"
#include "vm/colosec.h"
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
    /* Until released, the bring-up waits (test_records_before_ready). */
    pthread_mutex_t hold_lock;
    pthread_cond_t hold_cond;
    bool hold;
} fixture;

/*
 * The stream's start, as a real one's: its header and OPEN_RETURN_PATH,
 * without which a loader refuses the PINGs.
 */
static void put_start(qfile *f)
{
    savevm_put_header(f);
    savevm_put_command(f, SAVEVM_CMD_OPEN_RETURN_PATH, 0, NULL);
}

/* The bring-up: just the stream's start. */
static int bringup(void *opaque, channel *l, char *err, size_t errlen)
{
    fixture *x = opaque;
    pthread_mutex_lock(&x->hold_lock);
    while (x->hold)
        pthread_cond_wait(&x->hold_cond, &x->hold_lock);
    pthread_mutex_unlock(&x->hold_lock);
    qfile *f = qfile_open_mem("header");
    put_start(f);
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

static int setup_held(void **state, bool hold)
{
    fixture *x = calloc(1, sizeof(*x));
    int sv[2];
    assert_non_null(x);
    pthread_mutex_init(&x->hold_lock, NULL);
    pthread_cond_init(&x->hold_cond, NULL);
    x->hold = hold;
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

static int setup(void **state)
{
    return setup_held(state, false);
}

static int setup_hold(void **state)
{
    return setup_held(state, true);
}

static void release_bringup(fixture *x)
{
    pthread_mutex_lock(&x->hold_lock);
    x->hold = false;
    pthread_cond_broadcast(&x->hold_cond);
    pthread_mutex_unlock(&x->hold_lock);
}

static int teardown(void **state)
{
    fixture *x = *state;
    release_bringup(x);
    channel_free(x->l);
    pthread_mutex_destroy(&x->hold_lock);
    pthread_cond_destroy(&x->hold_cond);
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
    put_start(f);
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

/* ---- records ---- */

/* One "ftvm-colo-in" section, as the owner queues one: a frame whose
 * checkpoint field says which it is (and whose bytes say it too). */
static size_t colo_in(uint64_t which, uint8_t *out)
{
    uint8_t frame[COLOSEC_INPUT_FRAME_MAX];
    size_t len = 60 + (size_t)(which * 37) % (COLOSEC_INPUT_FRAME_MAX - 59);
    for (size_t i = 0; i < len; i++)
        frame[i] = (uint8_t)(which + i);
    qfile *f = qfile_open_mem("rec");
    colosec_put_input(f, 50, which, frame, len);
    size_t n;
    const uint8_t *d = qfile_mem_data(f, &n);
    assert_int_equal(qfile_error(f), 0);
    memcpy(out, d, n);
    qfile_close(f);
    return n;
}

static int queue_record(fixture *x, uint64_t which)
{
    uint8_t rec[COLOSEC_INPUT_SECTION_LEN];
    size_t n = colo_in(which, rec);
    return channel_send_record(x->l, rec, n);
}

/* A package: a nested stream of one section (id which) and EOF. */
static void queue_package(fixture *x, uint64_t id, uint64_t which)
{
    uint8_t rec[COLOSEC_INPUT_SECTION_LEN];
    size_t n = colo_in(which, rec);
    qfile *q = qfile_open_mem("package");
    qfile_put_buf(q, rec, n);
    savevm_put_eof(q);
    channel_send_package(x->l, id, q);
}

/* What a loader read: each section's id, in order, outside (and inside)
 * packages alike; the frames are checked as they are read. */
typedef struct seen {
    uint64_t ids[8192];
    size_t n;
} seen;

static int seen_section(void *opaque, qfile *f, const savevm_section *sec,
                        savevm_pass pass)
{
    seen *s = opaque;
    uint64_t id;
    uint8_t frame[COLOSEC_INPUT_FRAME_MAX];
    size_t len;
    if (strcmp(sec->idstr, COLOSEC_INPUT_IDSTR) != 0)
        return qfile_fail(f, -ENOENT, "section '%s'", sec->idstr);
    if (colosec_load_input(f, sec, &id, frame, &len) < 0)
        return qfile_error(f);
    for (size_t i = 0; i < len; i++)
        if (frame[i] != (uint8_t)(id + i))
            return qfile_fail(f, -EINVAL, "frame %llu byte %zu changed",
                              (unsigned long long)id, i);
    if (pass == SAVEVM_PASS_APPLY && s->n < 8192)
        s->ids[s->n++] = id;
    return 0;
}

/* Reads until the link closes its side, then loads it all with savevm's
 * own loader: PINGs anywhere but inside a record, which would fail it. */
static void load_all(fixture *x, seen *s)
{
    uint64_t t0 = mono_ns();
    for (;;) {
        if (x->cap - x->len < 65536) {
            x->cap = x->cap ? x->cap * 2 : 1 << 20;
            x->buf = realloc(x->buf, x->cap);
            assert_non_null(x->buf);
        }
        struct pollfd p = { .fd = x->fd, .events = POLLIN };
        assert_true(poll(&p, 1, 100) >= 0);
        ssize_t n = recv(x->fd, x->buf + x->len, x->cap - x->len,
                         MSG_DONTWAIT);
        if (n == 0)
            break;
        if (n > 0)
            x->len += (size_t)n;
        assert_true(mono_ns() - t0 < DEADLINE_NS);
    }
    static const savevm_target_ops ops_ = { .section = seen_section };
    qfile *pongs = qfile_open_mem("return path");
    savevm_loader *ld = savevm_loader_new(&ops_, s, &(savevm_loader_opts){
                                              .footers = true,
                                              .return_path = pongs });
    qfile *r = qfile_open_view(x->buf, x->len, "stream");
    s->n = 0;
    savevm_stop why;
    int rc = savevm_load_header(ld, r);
    if (rc == 0)
        rc = savevm_load_main(ld, r, SAVEVM_PASS_APPLY, false, &why);
    if (rc < 0)
        fail_msg("the stream does not load: %s", qfile_errmsg(r));
    assert_int_equal(why, SAVEVM_STOP_EOF);
    assert_true(qfile_at_eof(r));
    qfile_close(r);
    savevm_loader_free(ld);
    qfile_close(pongs);
}

/*
 * Records between packages, with PINGs every 1 ms: the secondary reads
 * them in the order queued, each whole; after channel_finish, none more.
 */
static void test_records_in_order(void **state)
{
    fixture *x = *state;
    channel_set_heartbeat(x->l, 1000000);       /* 1 ms */
    uint64_t want[1024];
    size_t n = 0;
    assert_int_equal(channel_send_record(x->l, "x", 0), -EINVAL);
    for (uint64_t k = 1; k <= 4; k++) {
        queue_package(x, k, 1000 + k);
        want[n++] = 1000 + k;
        for (uint64_t r = 0; r < 100 + 30 * k; r++) {
            uint64_t which = k * 200 + r;
            assert_int_equal(queue_record(x, which), 0);
            want[n++] = which;
            if (r % 50 == 0)
                usleep(2000);       /* let PINGs in between some */
        }
    }
    channel_finish(x->l, 5000000000ull, NULL, 0);
    assert_int_equal(queue_record(x, 1), -ECANCELED);
    static seen s;
    load_all(x, &s);
    assert_int_equal(s.n, n);
    for (size_t i = 0; i < n; i++)
        if (s.ids[i] != want[i])
            fail_msg("record %zu is %llu, not %llu", i,
                     (unsigned long long)s.ids[i],
                     (unsigned long long)want[i]);
    channel_times t;
    channel_get_times(x->l, &t);
    assert_int_equal(t.records, n - 4);
    assert_int_equal(t.records_queued_bytes, 0);
    uint8_t rec[COLOSEC_INPUT_SECTION_LEN];
    assert_int_equal(t.record_bytes, (n - 4) * colo_in(1, rec));
}

/* Queued before the bring-up is done: after it, in order. */
static void test_records_before_ready(void **state)
{
    fixture *x = *state;
    for (uint64_t r = 1; r <= 10; r++)
        assert_int_equal(queue_record(x, r), 0);
    usleep(20000);
    pump(x, 0);
    assert_int_equal(x->len, 0);        /* the bring-up holds them */
    release_bringup(x);
    queue_package(x, 1, 1000);
    assert_int_equal(queue_record(x, 11), 0);
    channel_finish(x->l, 5000000000ull, NULL, 0);
    static seen s;
    load_all(x, &s);
    assert_int_equal(s.n, 12);
    for (uint64_t r = 1; r <= 10; r++)
        assert_int_equal(s.ids[r - 1], r);
    assert_int_equal(s.ids[10], 1000);
    assert_int_equal(s.ids[11], 11);
}

/*
 * A secondary that does not read: records are refused (-ENOBUFS) once
 * CHANNEL_RECORDS_MAX of them wait unwritten, and taken again as the
 * queue drains; every one accepted arrives, none refused does.
 */
static void test_records_bounded(void **state)
{
    fixture *x = *state;
    uint8_t rec[COLOSEC_INPUT_SECTION_LEN];
    const size_t each = colo_in(1, rec);
    static uint64_t want[8192];
    size_t n = 0;
    uint64_t which = 0;
    int rc;
    /*
     * The kernel takes some, then the queue fills; topped up until the
     * thread has been stuck in its write for 50 ms (the socket is full).
     */
    channel_times t;
    uint64_t t0 = mono_ns();
    for (;;) {
        while ((rc = queue_record(x, ++which)) == 0) {
            assert_true(n < 8192);
            want[n++] = which;
        }
        assert_int_equal(rc, -ENOBUFS);
        channel_get_times(x->l, &t);
        if (t.busy && mono_ns() - t.progress_ns > 50000000ull)
            break;
        usleep(10000);
        assert_true(mono_ns() - t0 < DEADLINE_NS);
    }
    channel_get_times(x->l, &t);
    assert_true(t.records_queued_bytes <= CHANNEL_RECORDS_MAX);
    assert_true(t.records_queued_bytes + each > CHANNEL_RECORDS_MAX);
    assert_true(n >= CHANNEL_RECORDS_MAX / each);
    /* Still full while the peer does not read. */
    assert_int_equal(queue_record(x, ++which), -ENOBUFS);
    /* Read some: the thread writes, the queue drains, records go again. */
    t0 = mono_ns();
    while ((rc = queue_record(x, ++which)) == -ENOBUFS) {
        pump(x, 10);
        assert_true(mono_ns() - t0 < DEADLINE_NS);
    }
    assert_int_equal(rc, 0);
    want[n++] = which;
    channel_finish(x->l, 5000000000ull, NULL, 0);
    static seen s;
    load_all(x, &s);
    assert_int_equal(s.n, n);
    assert_memory_equal(s.ids, want, n * sizeof(want[0]));
    channel_get_times(x->l, &t);
    assert_int_equal(t.records, n);
    assert_int_equal(t.records_queued_bytes, 0);
}

/* A link that failed, or was shut down, takes no more. */
static void test_records_after_shutdown(void **state)
{
    fixture *x = *state;
    assert_int_equal(queue_record(x, 1), 0);
    channel_shutdown(x->l);
    assert_int_equal(queue_record(x, 2), -ECANCELED);
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
        cmocka_unit_test_setup_teardown(test_records_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_records_before_ready,
                                        setup_hold, teardown),
        cmocka_unit_test_setup_teardown(test_records_bounded, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_records_after_shutdown, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
