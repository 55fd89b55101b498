/* Unit tests for primary/outbuf: output commit of the console. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "primary/outbuf.h"

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

static void put(outbuf *b, const char *s)
{
    assert_int_equal(outbuf_console(b, s, strlen(s)), 0);
}

static void test_passthrough(void **state)
{
    (void)state;
    int fd = out_fd();
    outbuf *b;
    assert_int_equal(outbuf_new(&b, fd), 0);
    put(b, "a");
    put(b, "b");
    assert_string_equal(written(fd), "ab");
    outbuf_stats st;
    outbuf_get_stats(b, &st);
    assert_false(st.holding);
    assert_int_equal(st.written_bytes, 2);
    assert_int_equal(st.held_bytes, 0);
    assert_int_equal(st.delay_ns.count, 0);     /* nothing was held */
    outbuf_free(b);
    close(fd);
}

static void test_epochs(void **state)
{
    (void)state;
    int fd = out_fd();
    outbuf *b;
    assert_int_equal(outbuf_new(&b, fd), 0);
    put(b, "0");            /* before holding: out at once */
    outbuf_set_hold(b, true);
    outbuf_mark(b, 1);
    put(b, "1a");
    put(b, "1b");
    outbuf_mark(b, 2);
    put(b, "2");
    outbuf_mark(b, 3);
    put(b, "3");
    assert_string_equal(written(fd), "0");
    outbuf_stats st;
    outbuf_get_stats(b, &st);
    assert_int_equal(st.held_bytes, 6);
    assert_int_equal(st.held_writes, 4);
    assert_int_equal(st.epoch, 3);

    assert_int_equal(outbuf_release(b, 0), 0);
    assert_string_equal(written(fd), "0");
    assert_int_equal(outbuf_release(b, 1), 4);
    assert_string_equal(written(fd), "01a1b");
    /* Releasing an epoch again, or an older one, writes nothing. */
    assert_int_equal(outbuf_release(b, 1), 0);
    assert_int_equal(outbuf_release(b, 2), 1);
    assert_string_equal(written(fd), "01a1b2");
    outbuf_get_stats(b, &st);
    assert_int_equal(st.held_bytes, 1);
    assert_int_equal(st.delay_ns.count, 3);
    outbuf_free(b);     /* "3" is dropped: never safe */
    assert_string_equal(written(fd), "01a1b2");
    close(fd);
}

/* Stopping holding writes what is held first, then passes through. */
static void test_unhold_keeps_order(void **state)
{
    (void)state;
    int fd = out_fd();
    outbuf *b;
    assert_int_equal(outbuf_new(&b, fd), 0);
    outbuf_set_hold(b, true);
    outbuf_mark(b, 5);
    put(b, "x");
    outbuf_mark(b, 6);
    put(b, "y");
    outbuf_set_hold(b, false);
    put(b, "z");
    assert_string_equal(written(fd), "xyz");
    /* Marks may go on while not holding; they do not hold anything. */
    outbuf_mark(b, 7);
    put(b, "w");
    assert_string_equal(written(fd), "xyzw");
    outbuf_free(b);
    close(fd);
}

static int limit_calls;

static void on_limit(void *opaque)
{
    assert_ptr_equal(opaque, &limit_calls);
    limit_calls++;
}

static void test_limit_once_per_epoch(void **state)
{
    (void)state;
    int fd = out_fd();
    outbuf *b;
    char chunk[60];
    memset(chunk, 'c', sizeof(chunk));
    assert_int_equal(outbuf_new(&b, fd), 0);
    outbuf_set_limit(b, 100, on_limit, &limit_calls);
    limit_calls = 0;
    /* Not holding: nothing accumulates, no call. */
    for (int i = 0; i < 3; i++)
        outbuf_console(b, chunk, sizeof(chunk));
    assert_int_equal(limit_calls, 0);
    outbuf_set_hold(b, true);
    outbuf_mark(b, 1);
    outbuf_console(b, chunk, sizeof(chunk));
    assert_int_equal(limit_calls, 0);
    outbuf_console(b, chunk, sizeof(chunk));
    assert_int_equal(limit_calls, 1);
    outbuf_console(b, chunk, sizeof(chunk));
    assert_int_equal(limit_calls, 1);
    /* A new epoch counts from zero. */
    outbuf_mark(b, 2);
    outbuf_console(b, chunk, sizeof(chunk));
    assert_int_equal(limit_calls, 1);
    outbuf_console(b, chunk, sizeof(chunk));
    assert_int_equal(limit_calls, 2);
    outbuf_free(b);
    close(fd);
}

static void test_hold_max_drops(void **state)
{
    (void)state;
    int fd = out_fd();
    outbuf *b;
    size_t big = 1u << 20;
    char *chunk = calloc(1, big);
    assert_non_null(chunk);
    assert_int_equal(outbuf_new(&b, fd), 0);
    outbuf_set_hold(b, true);
    outbuf_mark(b, 1);
    size_t n = OUTBUF_HOLD_MAX / big;
    for (size_t i = 0; i < n + 2; i++)
        outbuf_console(b, chunk, big);
    outbuf_stats st;
    outbuf_get_stats(b, &st);
    assert_int_equal(st.held_bytes, n * big);
    assert_int_equal(st.dropped_bytes, 2 * big);
    outbuf_release(b, 1);
    outbuf_get_stats(b, &st);
    assert_int_equal(st.held_bytes, 0);
    assert_int_equal(st.written_bytes, n * big);
    outbuf_free(b);
    free(chunk);
    close(fd);
}

static void test_delay(void **state)
{
    (void)state;
    int fd = out_fd();
    outbuf *b;
    assert_int_equal(outbuf_new(&b, fd), 0);
    outbuf_set_hold(b, true);
    outbuf_mark(b, 1);
    put(b, "late");
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    outbuf_release(b, 1);
    outbuf_stats st;
    outbuf_get_stats(b, &st);
    assert_int_equal(st.delay_ns.count, 1);
    assert_true(st.delay_ns.last >= 20u * 1000 * 1000);
    assert_true(st.delay_ns.p99 == st.delay_ns.last);
    outbuf_free(b);
    close(fd);
}

/* A reader that went away: bytes are counted as dropped, nothing dies. */
static void test_broken_pipe(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[0]);
    outbuf *b;
    assert_int_equal(outbuf_new(&b, p[1]), 0);
    put(b, "gone");
    outbuf_set_hold(b, true);
    outbuf_mark(b, 1);
    put(b, "held");
    outbuf_release(b, 1);
    outbuf_stats st;
    outbuf_get_stats(b, &st);
    assert_int_equal(st.dropped_bytes, 8);
    outbuf_free(b);
    close(p[1]);
}

/*
 * vCPU threads write numbered lines while the loop marks epochs and
 * releases them: every line comes out once, and each thread's in order.
 */
#define WRITERS 4
#define LINES 3000

typedef struct writer {
    outbuf *b;
    int id;
} writer;

static void *write_lines(void *arg)
{
    writer *w = arg;
    char line[32];
    for (int i = 0; i < LINES; i++) {
        int n = snprintf(line, sizeof(line), "%d:%d\n", w->id, i);
        outbuf_console(w->b, line, (size_t)n);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    int fd = out_fd();
    outbuf *b;
    assert_int_equal(outbuf_new(&b, fd), 0);
    outbuf_set_hold(b, true);
    pthread_t t[WRITERS];
    writer w[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer){ b, i };
        assert_int_equal(pthread_create(&t[i], NULL, write_lines, &w[i]),
                         0);
    }
    for (uint64_t e = 1; e < 200; e++) {
        outbuf_mark(b, e);
        outbuf_release(b, e - 1);
        if (e == 150)
            outbuf_set_hold(b, false);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(t[i], NULL);
    outbuf_set_hold(b, false);
    const char *s = written(fd);
    int next[WRITERS] = { 0 };
    int lines = 0;
    for (const char *p = s; *p; p = strchr(p, '\n') + 1) {
        int id, n;
        assert_int_equal(sscanf(p, "%d:%d", &id, &n), 2);
        assert_true(id >= 0 && id < WRITERS);
        assert_int_equal(n, next[id]);
        next[id]++;
        lines++;
    }
    assert_int_equal(lines, WRITERS * LINES);
    outbuf_free(b);
    close(fd);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_passthrough),
        cmocka_unit_test(test_epochs),
        cmocka_unit_test(test_unhold_keeps_order),
        cmocka_unit_test(test_limit_once_per_epoch),
        cmocka_unit_test(test_hold_max_drops),
        cmocka_unit_test(test_delay),
        cmocka_unit_test(test_broken_pipe),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
