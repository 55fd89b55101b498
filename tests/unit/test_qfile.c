/* Unit tests for checkpoint/qfile: every backend, every put/get, errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "checkpoint/qfile.h"

static void put_everything(qfile *f)
{
    qf_put_u8(f, 0xab);
    qf_put_be16(f, 0x1234);
    qf_put_be32(f, 0xdeadbeef);
    qf_put_be64(f, 0x0102030405060708ull);
    qf_put_buf(f, "xyz", 3);
    qf_put_str(f, "hello");
    qf_put_iov(f, "IOV", 3);
}

static const uint8_t everything[] = {
    0xab, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef,
    1, 2, 3, 4, 5, 6, 7, 8,
    'x', 'y', 'z', 5, 'h', 'e', 'l', 'l', 'o', 'I', 'O', 'V',
};

static void get_everything(qfile *f)
{
    assert_int_equal(qf_get_u8(f), 0xab);
    assert_int_equal(qf_get_be16(f), 0x1234);
    assert_int_equal(qf_get_be32(f), 0xdeadbeef);
    assert_true(qf_get_be64(f) == 0x0102030405060708ull);
    char b[4] = { 0 };
    qf_get_buf(f, b, 3);
    assert_string_equal(b, "xyz");
    char s[256];
    assert_int_equal(qf_get_str(f, s), 5);
    assert_string_equal(s, "hello");
    const uint8_t *p = qf_get_ptr(f, 3);
    assert_non_null(p);
    assert_memory_equal(p, "IOV", 3);
    assert_int_equal(qf_error(f), 0);
    assert_true(qf_at_eof(f));
    assert_int_equal(qf_peek_u8(f), -1);
}

/* A CRC started after the fact equals one started at the first byte. */
static void test_crc_start_mem(void **state)
{
    (void)state;
    qfile *a = qf_open_mem("a"), *b = qf_open_mem("b");
    qf_crc_start(a);
    put_everything(a);
    put_everything(b);
    qf_crc_start_mem(b);
    assert_int_equal(qf_crc(a), qf_crc(b));
    qf_put_be32(a, 7);
    qf_put_be32(b, 7);
    assert_int_equal(qf_crc(a), qf_crc(b));
    /* A reset stops the sum: what follows is not summed. */
    qf_mem_reset(b);
    uint32_t before = qf_crc(b);
    put_everything(b);
    assert_int_equal(qf_crc(b), before);
    qf_close(a);
    qf_close(b);
}

static void test_mem_roundtrip(void **state)
{
    (void)state;
    qfile *w = qf_open_mem("mem");
    put_everything(w);
    size_t len;
    const uint8_t *data = qf_mem_data(w, &len);
    assert_int_equal(len, sizeof(everything));
    assert_memory_equal(data, everything, len);
    assert_int_equal(qf_tell(w), len);

    qfile *r = qf_open_view(data, len, "view");
    get_everything(r);
    assert_int_equal(qf_tell(r), len);
    assert_int_equal(qf_rewind(r), 0);
    assert_int_equal(qf_tell(r), 0);
    get_everything(r);
    assert_int_equal(qf_close(r), 0);

    qf_mem_reset(w);
    qf_mem_data(w, &len);
    assert_int_equal(len, 0);
    assert_int_equal(qf_close(w), 0);
}

static void test_fd_roundtrip_file(void **state)
{
    (void)state;
    FILE *tmp = tmpfile();
    int fd = fileno(tmp);
    qfile *w = qf_open_fd(fd, QF_WRITE, "tmpfile");
    put_everything(w);
    assert_int_equal(qf_close(w), 0);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), sizeof(everything));

    lseek(fd, 0, SEEK_SET);
    qfile *r = qf_open_fd(fd, QF_READ, "tmpfile");
    get_everything(r);
    assert_int_equal(qf_rewind(r), 0);
    get_everything(r);
    qf_close(r);
    fclose(tmp);
}

/* A stream larger than the internal window, mixing small puts and iovs. */
static void test_fd_large(void **state)
{
    (void)state;
    const size_t n = 3 * QF_BUF_SIZE + 123;
    uint8_t *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    FILE *tmp = tmpfile();
    int fd = fileno(tmp);
    qfile *w = qf_open_fd(fd, QF_WRITE, "big");
    for (int i = 0; i < 200; i++) {
        qf_put_be32(w, (uint32_t)i);
        qf_put_iov(w, big + i, 4096);
    }
    qf_put_buf(w, big, n);
    assert_int_equal(qf_tell(w), 200 * 4100 + n);
    assert_int_equal(qf_close(w), 0);

    lseek(fd, 0, SEEK_SET);
    qfile *r = qf_open_fd(fd, QF_READ, "big");
    qf_crc_start(r);
    uint8_t *back = malloc(n);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(qf_get_be32(r), (uint32_t)i);
        const uint8_t *p = qf_get_ptr(r, 4096);
        assert_non_null(p);
        assert_memory_equal(p, big + i, 4096);
    }
    qf_get_buf(r, back, n);     /* larger than the window: read direct */
    assert_int_equal(qf_error(r), 0);
    assert_memory_equal(back, big, n);
    assert_true(qf_at_eof(r));
    assert_int_equal(qf_tell(r), 200 * 4100 + n);
    /* The running sum covers the direct read like any other. */
    uint8_t *all = malloc(200 * 4100 + n);
    assert_int_equal(pread(fd, all, 200 * 4100 + n, 0), 200 * 4100 + n);
    assert_int_equal(qf_crc(r), crc32(0, all, 200 * 4100 + n));
    free(all);
    qf_close(r);

    /* A direct read cut short by the end of the file. */
    lseek(fd, 0, SEEK_SET);
    r = qf_open_fd(fd, QF_READ, "big");
    size_t total = 200 * 4100 + n;
    uint8_t *over = malloc(total + 1);
    qf_get_buf(r, over, total + 1);
    assert_int_equal(qf_error(r), -ENODATA);
    assert_non_null(strstr(qf_errmsg(r), "stream ends early"));
    free(over);
    qf_close(r);
    fclose(tmp);
    free(big);
    free(back);
}

/* qf_put_iov on an fd queues the pointer: what is written is the bytes at
 * flush time, which is the contract that lets guest pages go out uncopied. */
static void test_iov_is_zero_copy(void **state)
{
    (void)state;
    FILE *tmp = tmpfile();
    int fd = fileno(tmp);
    char page[8] = "before!";
    qfile *w = qf_open_fd(fd, QF_WRITE, "iov");
    qf_put_iov(w, page, 7);
    memcpy(page, "after!!", 7);
    assert_int_equal(qf_flush(w), 0);
    qf_close(w);
    char back[8] = { 0 };
    assert_int_equal(pread(fd, back, 7, 0), 7);
    assert_string_equal(back, "after!!");
    fclose(tmp);

    /* A memory channel copies at once. */
    qfile *m = qf_open_mem("m");
    memcpy(page, "before!", 7);
    qf_put_iov(m, page, 7);
    memcpy(page, "after!!", 7);
    size_t len;
    const uint8_t *d = qf_mem_data(m, &len);
    assert_memory_equal(d, "before!", 7);
    qf_close(m);
}

/* More iovecs than one writev takes. */
static void test_many_iovs(void **state)
{
    (void)state;
    FILE *tmp = tmpfile();
    int fd = fileno(tmp);
    static uint8_t pages[300][16];
    qfile *w = qf_open_fd(fd, QF_WRITE, "iovs");
    for (int i = 0; i < 300; i++) {
        memset(pages[i], i, 16);
        qf_put_u8(w, (uint8_t)i);
        qf_put_iov(w, pages[i], 16);
    }
    assert_int_equal(qf_close(w), 0);
    lseek(fd, 0, SEEK_SET);
    qfile *r = qf_open_fd(fd, QF_READ, "iovs");
    for (int i = 0; i < 300; i++) {
        assert_int_equal(qf_get_u8(r), (uint8_t)i);
        const uint8_t *p = qf_get_ptr(r, 16);
        assert_memory_equal(p, pages[i], 16);
    }
    assert_true(qf_at_eof(r));
    qf_close(r);
    fclose(tmp);
}

static void test_short_read_latches(void **state)
{
    (void)state;
    uint8_t bytes[3] = { 1, 2, 3 };
    qfile *r = qf_open_view(bytes, 3, "short");
    assert_int_equal(qf_get_be16(r), 0x0102);
    assert_int_equal(qf_get_be32(r), 0);
    assert_int_equal(qf_error(r), -ENODATA);
    assert_int_equal(qf_error_offset(r), 2);
    assert_non_null(strstr(qf_errmsg(r), "short: byte 2:"));
    /* Later reads are no-ops returning zero; the first error stays. */
    assert_int_equal(qf_get_u8(r), 0);
    assert_null(qf_get_ptr(r, 1));
    assert_int_equal(qf_fail(r, -EINVAL, "second"), -ENODATA);
    assert_null(strstr(qf_errmsg(r), "second"));
    char buf[4] = { 9, 9, 9, 9 };
    qf_get_buf(r, buf, 4);
    assert_memory_equal(buf, "\0\0\0\0", 4);
    assert_int_equal(qf_close(r), -ENODATA);
}

static void test_base_offset_and_take(void **state)
{
    (void)state;
    uint8_t bytes[4] = { 0 };
    qfile *inner = qf_open_view(bytes, 4, "pkg");
    qf_set_base(inner, 1000);
    qf_get_be32(inner);
    qf_fail(inner, -EINVAL, "bad thing %d", 7);
    assert_int_equal(qf_error_offset(inner), 1004);
    assert_string_equal(qf_errmsg(inner), "pkg: byte 1004: bad thing 7");

    qfile *outer = qf_open_view(bytes, 4, "outer");
    assert_int_equal(qf_take_error(outer, inner), -EINVAL);
    assert_string_equal(qf_errmsg(outer), qf_errmsg(inner));
    assert_int_equal(qf_error_offset(outer), 1004);
    qf_close(inner);
    qf_close(outer);
}

static void test_str_limits(void **state)
{
    (void)state;
    char longs[300];
    memset(longs, 'a', 299);
    longs[299] = '\0';
    qfile *w = qf_open_mem("w");
    qf_put_str(w, longs);
    assert_int_equal(qf_error(w), -ENAMETOOLONG);
    qf_put_u8(w, 1);
    size_t len;
    qf_mem_data(w, &len);
    assert_int_equal(len, 0);
    qf_close(w);

    uint8_t maxs[256];
    maxs[0] = 255;
    memset(maxs + 1, 'b', 255);
    qfile *r = qf_open_view(maxs, sizeof(maxs), "r");
    char out[256];
    assert_int_equal(qf_get_str(r, out), 255);
    assert_int_equal(strlen(out), 255);
    qf_close(r);

    /* A counted string that runs past the end. */
    uint8_t cut[3] = { 10, 'a', 'b' };
    r = qf_open_view(cut, 3, "cut");
    assert_int_equal(qf_get_str(r, out), 0);
    assert_string_equal(out, "");
    assert_int_equal(qf_error(r), -ENODATA);
    qf_close(r);
}

static void test_wrong_direction(void **state)
{
    (void)state;
    uint8_t b[1] = { 0 };
    qfile *r = qf_open_view(b, 1, "r");
    qf_put_u8(r, 1);
    assert_int_equal(qf_error(r), -EBADF);
    qf_close(r);
    qfile *w = qf_open_mem("w");
    qf_get_u8(w);
    assert_int_equal(qf_error(w), -EBADF);
    assert_int_equal(qf_rewind(w), -EBADF);
    qf_close(w);
}

static void test_pipe_errors(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    /* Reading: a pipe cannot rewind; an oversize zero-copy read is refused. */
    qfile *r = qf_open_fd(p[0], QF_READ, "pipe");
    assert_int_equal(qf_remaining(r), -1);
    assert_int_equal(qf_rewind(r), -ESPIPE);
    assert_null(qf_get_ptr(r, QF_BUF_SIZE + 1));
    assert_int_equal(qf_error(r), -E2BIG);
    qf_close(r);

    /* Writing to a pipe whose reader is gone: EPIPE, latched, named. */
    signal(SIGPIPE, SIG_IGN);
    close(p[0]);
    qfile *w = qf_open_fd(p[1], QF_WRITE, "peer 127.0.0.1:7000");
    qf_put_be32(w, 1);
    assert_int_equal(qf_flush(w), -EPIPE);
    assert_non_null(strstr(qf_errmsg(w), "peer 127.0.0.1:7000"));
    assert_non_null(strstr(qf_errmsg(w), "write failed"));
    assert_int_equal(qf_close(w), -EPIPE);
    close(p[1]);
}

static void test_pipe_stream(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    qfile *w = qf_open_fd(p[1], QF_WRITE, "w");
    put_everything(w);
    assert_int_equal(qf_close(w), 0);
    close(p[1]);
    qfile *r = qf_open_fd(p[0], QF_READ, "r");
    get_everything(r);
    assert_int_equal(qf_close(r), 0);
    close(p[0]);
}

static void test_skip_and_peek(void **state)
{
    (void)state;
    uint8_t b[6] = { 1, 2, 3, 4, 5, 6 };
    qfile *r = qf_open_view(b, 6, "r");
    assert_int_equal(qf_remaining(r), 6);
    qf_skip(r, 4);
    assert_int_equal(qf_remaining(r), 2);
    assert_int_equal(qf_peek_u8(r), 5);
    assert_int_equal(qf_tell(r), 4);
    qf_skip(r, 3);
    assert_int_equal(qf_error(r), -ENODATA);
    qf_close(r);
}

/* A source that keeps changing, as a running guest's page does. */
typedef struct scribbler {
    uint8_t buf[16384];
    int stop;
} scribbler;

static void *scribble(void *arg)
{
    scribbler *s = arg;
    for (uint32_t i = 0; !__atomic_load_n(&s->stop, __ATOMIC_RELAXED); i++)
        __atomic_store_n(&s->buf[(i * 2654435761u) % sizeof(s->buf)],
                         (uint8_t)i, __ATOMIC_RELAXED);
    return NULL;
}

/* The running sum covers the bytes written, whatever the source did. */
static void test_crc_of_changing_source(void **state)
{
    (void)state;
    static scribbler s;
    char path[] = "/tmp/ftvm-qfile-crc-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    qfile *m = qf_open_mem("m");
    qfile *w = qf_open_fd(fd, QF_WRITE, "f");
    qf_crc_start(m);
    qf_crc_start(w);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, scribble, &s), 0);
    for (int i = 0; i < 400; i++) {
        qf_put_iov(m, s.buf, sizeof(s.buf));
        qf_put_iov(w, s.buf, sizeof(s.buf));
    }
    __atomic_store_n(&s.stop, 1, __ATOMIC_RELAXED);
    pthread_join(t, NULL);
    assert_int_equal(qf_flush(w), 0);
    size_t n;
    const uint8_t *d = qf_mem_data(m, &n);
    assert_int_equal(n, 400 * sizeof(s.buf));
    assert_int_equal((uint32_t)crc32(0, d, (uInt)n), qf_crc(m));
    uint8_t *back = malloc(n);
    assert_int_equal(pread(fd, back, n, 0), (ssize_t)n);
    assert_int_equal((uint32_t)crc32(0, back, (uInt)n), qf_crc(w));
    free(back);
    qf_close(w);
    qf_close(m);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mem_roundtrip),
        cmocka_unit_test(test_fd_roundtrip_file),
        cmocka_unit_test(test_fd_large),
        cmocka_unit_test(test_iov_is_zero_copy),
        cmocka_unit_test(test_many_iovs),
        cmocka_unit_test(test_short_read_latches),
        cmocka_unit_test(test_base_offset_and_take),
        cmocka_unit_test(test_str_limits),
        cmocka_unit_test(test_wrong_direction),
        cmocka_unit_test(test_pipe_errors),
        cmocka_unit_test(test_pipe_stream),
        cmocka_unit_test(test_skip_and_peek),
        cmocka_unit_test(test_crc_start_mem),
        cmocka_unit_test(test_crc_of_changing_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
