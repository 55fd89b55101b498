/*
 * Unit tests for vm/conout: the console's bounded writer, against real
 * pipes: everything in order when the reader keeps up (across the ring's
 * wrap), writes that never wait when nobody reads, whole writes dropped
 * and counted beyond the bound, one warning, output going on in order
 * once the reader comes back, a reader that went away, and a free that
 * does not wait for a reader that never comes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vm/conout.h"
#include "vm/mono.h"

/* Conditions are waited for this long at most (not a timing check). */
#define DEADLINE_NS (60ull * 1000000000ull)

/* ---- the warnings ---- */

typedef struct warnings {
    pthread_mutex_t lock;
    unsigned n;
    char last[400];
} warnings;

static void on_warn(void *opaque, const char *msg)
{
    warnings *w = opaque;
    pthread_mutex_lock(&w->lock);
    w->n++;
    snprintf(w->last, sizeof(w->last), "%s", msg);
    pthread_mutex_unlock(&w->lock);
}

static unsigned warned(warnings *w, char *last, size_t len)
{
    pthread_mutex_lock(&w->lock);
    unsigned n = w->n;
    if (last)
        snprintf(last, len, "%s", w->last);
    pthread_mutex_unlock(&w->lock);
    return n;
}

/* ---- a reader that takes everything until EOF ---- */

typedef struct reader {
    int fd;
    pthread_t t;
    char *buf;
    size_t len, cap;
} reader;

static void *read_all(void *arg)
{
    reader *r = arg;
    for (;;) {
        if (r->len + 65536 > r->cap) {
            r->cap = r->cap ? 2 * r->cap : 1 << 20;
            r->buf = realloc(r->buf, r->cap + 1);
            assert_non_null(r->buf);
        }
        ssize_t n = read(r->fd, r->buf + r->len, 65536);
        if (n <= 0)
            break;
        r->len += (size_t)n;
    }
    r->buf[r->len] = '\0';
    return NULL;
}

static void reader_start(reader *r, int fd)
{
    *r = (reader){ .fd = fd };
    assert_int_equal(pthread_create(&r->t, NULL, read_all, r), 0);
}

/* Joins the reader once the write end is closed; its text. */
static char *reader_end(reader *r)
{
    pthread_join(r->t, NULL);
    return r->buf;
}

/* Every test has a pipe; an end the test closed is -1. */
typedef struct fixture {
    int rd, wr;
} fixture;

static int setup(void **state)
{
    int p[2];
    fixture *fx = malloc(sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(pipe(p), 0);
    *fx = (fixture){ p[0], p[1] };
    *state = fx;
    return 0;
}

static void close_end(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    close_end(&fx->rd);
    close_end(&fx->wr);
    free(fx);
    return 0;
}

/* Waits (with a deadline that only guards against a hang) for cond. */
#define WAIT(cond)                                                      \
    do {                                                                \
        uint64_t until_ = mono_ns() + DEADLINE_NS;                      \
        while (!(cond)) {                                               \
            assert_true(mono_ns() < until_);                            \
            sched_yield();                                              \
        }                                                               \
    } while (0)

static conout_stats stats(conout *c)
{
    conout_stats st;
    conout_get_stats(c, &st);
    return st;
}

static void wait_drained(conout *c)
{
    WAIT(stats(c).buffered_bytes == 0);
}

/* Checks text is whole "line N\n" lines, N rising; returns the last N. */
static long check_lines(const char *text, long from)
{
    long last = from - 1;
    for (const char *p = text; *p;) {
        long n;
        int used;
        assert_int_equal(sscanf(p, "line %ld%n", &n, &used), 1);
        assert_int_equal(p[used], '\n');
        assert_true(n > last);
        last = n;
        p += used + 1;
    }
    return last;
}

static size_t put_line(conout *c, long n)
{
    char line[32];
    int len = snprintf(line, sizeof(line), "line %08ld\n", n);
    conout_write(c, line, (size_t)len);
    return (size_t)len;
}

/* ---- tests ---- */

/*
 * A ring of 100 bytes and lines of 14: the writer waits for room before
 * each line, so nothing is dropped and the ring wraps many times.
 */
static void test_in_order_across_wrap(void **state)
{
    fixture *fx = *state;
    reader r;
    reader_start(&r, fx->rd);
    conout *c;
    assert_int_equal(conout_new(&c, fx->wr, 100), 0);
    size_t total = 0;
    for (long i = 0; i < 5000; i++) {
        WAIT(stats(c).buffered_bytes + 14 <= 100);
        total += put_line(c, i);
    }
    wait_drained(c);
    conout_stats st = stats(c);
    assert_int_equal(st.written_bytes, total);
    assert_int_equal(st.dropped_bytes, 0);
    conout_free(c);
    close_end(&fx->wr);
    char *text = reader_end(&r);
    assert_int_equal(strlen(text), total);
    assert_int_equal(check_lines(text, 0), 4999);
    for (long i = 0; i < 5000; i++) {
        char want[32];
        snprintf(want, sizeof(want), "line %08ld\n", i);
        assert_memory_equal(text + i * 14, want, 14);
    }
    free(text);
}

/*
 * Nobody reads a one-page pipe: every write returns at once (a write that
 * waited would hang this test), what does not fit in the 16 KiB buffer
 * is dropped whole and counted, and one warning says so.  Then a reader
 * comes: what was kept and what follows arrives in order.
 */
static void test_full_pipe(void **state)
{
    fixture *fx = *state;
    int psize = fcntl(fx->wr, F_SETPIPE_SZ, 4096);
    assert_true(psize >= 4096);
    conout *c;
    warnings w = { .lock = PTHREAD_MUTEX_INITIALIZER };
    uint64_t t0 = mono_ns();
    assert_int_equal(conout_new(&c, fx->wr, 16384), 0);
    conout_set_warn(c, on_warn, &w);
    size_t total = 0;
    long i = 0;
    for (; i < 10000; i++)
        total += put_line(c, i);
    conout_stats st = stats(c);
    assert_int_equal(st.written_bytes + st.dropped_bytes +
                     st.buffered_bytes, total);
    assert_true(st.buffered_bytes <= 16384);
    assert_true(st.written_bytes <= (uint64_t)psize);
    assert_true(st.dropped_bytes >= total - 16384 - (uint64_t)psize);
    assert_int_equal(st.dropped_bytes % 14, 0);

    char msg[400];
    WAIT(warned(&w, msg, sizeof(msg)) > 0);
    assert_non_null(strstr(msg, "bytes of the guest's output dropped"));
    assert_non_null(strstr(msg, "16 KiB buffer is full"));
    /* More drops: warnings come at most once per CONOUT_WARN_NS. */
    for (int k = 0; k < 2000; k++)
        total += put_line(c, i++);
    assert_true(stats(c).dropped_bytes > st.dropped_bytes);
    assert_true(warned(&w, NULL, 0) <=
                1 + (mono_ns() - t0) / CONOUT_WARN_NS);

    reader r;
    reader_start(&r, fx->rd);
    wait_drained(c);
    long first_after = i;
    for (int k = 0; k < 100; k++)
        total += put_line(c, i++);
    wait_drained(c);
    st = stats(c);
    assert_int_equal(st.written_bytes + st.dropped_bytes, total);
    conout_free(c);
    close_end(&fx->wr);
    char *text = reader_end(&r);
    assert_int_equal(strlen(text), st.written_bytes);
    assert_int_equal(check_lines(text, 0), i - 1);
    /* The lines written once the reader was back all arrived. */
    char want[32];
    snprintf(want, sizeof(want), "line %08ld\n", first_after);
    const char *tail = strstr(text, want);
    assert_non_null(tail);
    assert_int_equal(strlen(tail), (size_t)(i - first_after) * 14);
    free(text);
}

/*
 * The reader went away: the drain thread meets EPIPE (SIGPIPE is not
 * ignored here: it must not kill the process), says so once, and every
 * byte from then on is dropped and counted.
 */
static void test_reader_gone(void **state)
{
    fixture *fx = *state;
    close_end(&fx->rd);
    conout *c;
    warnings w = { .lock = PTHREAD_MUTEX_INITIALIZER };
    assert_int_equal(conout_new(&c, fx->wr, 0), 0);
    conout_set_warn(c, on_warn, &w);
    size_t total = put_line(c, 0);
    WAIT(stats(c).dropped_bytes >= total);
    for (long i = 1; i < 100; i++)
        total += put_line(c, i);
    conout_stats st = stats(c);
    assert_int_equal(st.dropped_bytes, total);
    assert_int_equal(st.written_bytes, 0);
    assert_int_equal(st.buffered_bytes, 0);
    char msg[400];
    WAIT(warned(&w, msg, sizeof(msg)) > 0);
    assert_non_null(strstr(msg, "failed"));
    assert_non_null(strstr(msg, strerror(EPIPE)));
    conout_free(c);
    assert_int_equal(warned(&w, NULL, 0), 1);
}

/*
 * Freeing with bytes buffered for a reader that never comes gives up
 * after CONOUT_STALL_NS without progress (a free that waited for the
 * reader would hang this test).
 */
static void test_free_with_nobody_reading(void **state)
{
    fixture *fx = *state;
    conout *c;
    assert_int_equal(conout_new(&c, fx->wr, 0), 0);
    for (long i = 0; i < 20000; i++)
        put_line(c, i);
    assert_true(stats(c).buffered_bytes > 0);
    conout_free(c);
}

/* What the pipe holds now, without waiting: the bytes, or -1. */
static ssize_t recv_now(int fd, char *buf, size_t len)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, 0) != 1)
        return -1;
    return read(fd, buf, len);
}

/* A write larger than the whole buffer is dropped whole, never split. */
static void test_oversize_write(void **state)
{
    fixture *fx = *state;
    reader r;
    reader_start(&r, fx->rd);
    conout *c;
    assert_int_equal(conout_new(&c, fx->wr, 64), 0);
    char big[65];
    memset(big, 'x', sizeof(big));
    conout_write(c, big, sizeof(big));
    conout_write(c, "ok\n", 3);
    wait_drained(c);
    conout_stats st = stats(c);
    assert_int_equal(st.dropped_bytes, 65);
    assert_int_equal(st.written_bytes, 3);
    conout_free(c);
    close_end(&fx->wr);
    char *text = reader_end(&r);
    assert_string_equal(text, "ok\n");
    free(text);
}

/*
 * With nothing buffered and room in the pipe, the bytes are on the fd
 * when conout_write returns (output released on an ACK must not wait for
 * the drain thread: a kill right after would lose it).
 */
static void test_written_at_once(void **state)
{
    fixture *fx = *state;
    conout *c;
    assert_int_equal(conout_new(&c, fx->wr, 0), 0);
    conout_write(c, "hello\n", 6);
    conout_stats st = stats(c);
    assert_int_equal(st.written_bytes, 6);
    assert_int_equal(st.buffered_bytes, 0);
    char got[16];
    assert_int_equal(recv_now(fx->rd, got, sizeof(got)), 6);
    assert_memory_equal(got, "hello\n", 6);
    conout_free(c);
}

#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_in_order_across_wrap),
        T(test_full_pipe),
        T(test_reader_gone),
        T(test_free_with_nobody_reading),
        T(test_oversize_write),
        T(test_written_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
