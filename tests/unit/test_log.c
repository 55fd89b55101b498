/*
 * Unit tests for daemon/log: a line goes to stderr whole, with who says
 * it; a stderr pipe nobody reads does not make log_msg wait (a wait would
 * hang this test), and loses the line whole, never part of it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/log.h"

typedef struct fixture {
    int saved;      /* the real stderr */
    int p[2];       /* stderr is p[1] while a test runs */
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(pipe(fx->p), 0);
    fx->saved = dup(STDERR_FILENO);
    assert_true(fx->saved >= 0);
    assert_int_equal(dup2(fx->p[1], STDERR_FILENO), STDERR_FILENO);
    log_init("test");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    dup2(fx->saved, STDERR_FILENO);
    close(fx->saved);
    close(fx->p[0]);
    close(fx->p[1]);
    free(fx);
    return 0;
}

/* What the pipe holds now, NUL-terminated (static buffer). */
static const char *take(fixture *fx, size_t *len)
{
    static char buf[1 << 20];
    int fl = fcntl(fx->p[0], F_GETFL);
    fcntl(fx->p[0], F_SETFL, fl | O_NONBLOCK);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fx->p[0], buf + n, sizeof(buf) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    fcntl(fx->p[0], F_SETFL, fl);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void test_line(void **state)
{
    fixture *fx = *state;
    log_msg("hello %d", 5);
    size_t n;
    assert_string_equal(take(fx, &n), "test: hello 5\n");
}

static void test_long_line_cut(void **state)
{
    fixture *fx = *state;
    char *big = malloc(3 * PIPE_BUF);
    assert_non_null(big);
    memset(big, 'x', 3 * PIPE_BUF - 1);
    big[3 * PIPE_BUF - 1] = '\0';
    log_msg("%s", big);
    free(big);
    size_t n;
    const char *s = take(fx, &n);
    assert_int_equal(n, PIPE_BUF);
    assert_memory_equal(s, "test: xxx", 9);
    assert_int_equal(s[n - 1], '\n');
}

/*
 * A full pipe (filled through a non-blocking moment, then blocking again,
 * as a shell's pipe is): log_msg returns, the line is lost whole.
 */
static void test_full_pipe(void **state)
{
    fixture *fx = *state;
    int fl = fcntl(fx->p[1], F_GETFL);
    fcntl(fx->p[1], F_SETFL, fl | O_NONBLOCK);
    static const char fill[512] = { 'f' };
    size_t filled = 0;
    for (;;) {
        ssize_t w = write(fx->p[1], fill, sizeof(fill));
        if (w < 0) {
            assert_int_equal(errno, EAGAIN);
            break;
        }
        filled += (size_t)w;
    }
    fcntl(fx->p[1], F_SETFL, fl);
    log_msg("lost");
    size_t n;
    const char *s = take(fx, &n);
    assert_int_equal(n, filled);
    assert_null(strstr(s, "lost"));
    log_msg("back");
    assert_string_equal(take(fx, &n), "test: back\n");
}

#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_line),
        T(test_long_line_cut),
        T(test_full_pipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
