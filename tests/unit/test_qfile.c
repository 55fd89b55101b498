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
    qfile_put_u8(f, 0xab);
    qfile_put_be16(f, 0x1234);
    qfile_put_be32(f, 0xdeadbeef);
    qfile_put_be64(f, 0x0102030405060708ull);
    qfile_put_buf(f, "xyz", 3);
    qfile_put_str(f, "hello");
    qfile_put_iov(f, "IOV", 3);
}

static const uint8_t everything[] = {
    0xab, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef,
    1, 2, 3, 4, 5, 6, 7, 8,
    'x', 'y', 'z', 5, 'h', 'e', 'l', 'l', 'o', 'I', 'O', 'V',
};

static void get_everything(qfile *f)
{
    assert_int_equal(qfile_get_u8(f), 0xab);
    assert_int_equal(qfile_get_be16(f), 0x1234);
    assert_int_equal(qfile_get_be32(f), 0xdeadbeef);
    assert_true(qfile_get_be64(f) == 0x0102030405060708ull);
    char b[4] = { 0 };
    qfile_get_buf(f, b, 3);
    assert_string_equal(b, "xyz");
    char s[256];
    assert_int_equal(qfile_get_str(f, s), 5);
    assert_string_equal(s, "hello");
    const uint8_t *p = qfile_get_ptr(f, 3);
    assert_non_null(p);
    assert_memory_equal(p, "IOV", 3);
    assert_int_equal(qfile_error(f), 0);
    assert_true(qfile_at_eof(f));
    assert_int_equal(qfile_peek_u8(f), -1);
}

/* A CRC started after the fact equals one started at the first byte. */
static void test_crc_start_mem(void **state)
{
    (void)state;
    qfile *a = qfile_open_mem("a"), *b = qfile_open_mem("b");
    qfile_crc_start(a);
    put_everything(a);
    put_everything(b);
    qfile_crc_start_mem(b);
    assert_int_equal(qfile_crc(a), qfile_crc(b));
    qfile_put_be32(a, 7);
    qfile_put_be32(b, 7);
    assert_int_equal(qfile_crc(a), qfile_crc(b));
    /* A reset stops the sum: what follows is not summed. */
    qfile_mem_reset(b);
    uint32_t before = qfile_crc(b);
    put_everything(b);
    assert_int_equal(qfile_crc(b), before);
    qfile_close(a);
    qfile_close(b);
}

static void test_mem_roundtrip(void **state)
{
    (void)state;
    qfile *w = qfile_open_mem("mem");
    put_everything(w);
    size_t len;
    const uint8_t *data = qfile_mem_data(w, &len);
    assert_int_equal(len, sizeof(everything));
    assert_memory_equal(data, everything, len);
    assert_int_equal(qfile_tell(w), len);

    qfile *r = qfile_open_view(data, len, "view");
    get_everything(r);
    assert_int_equal(qfile_tell(r), len);
    assert_int_equal(qfile_rewind(r), 0);
    assert_int_equal(qfile_tell(r), 0);
    get_everything(r);
    assert_int_equal(qfile_close(r), 0);

    qfile_mem_reset(w);
    qfile_mem_data(w, &len);
    assert_int_equal(len, 0);
    assert_int_equal(qfile_close(w), 0);
}

static void test_fd_roundtrip_file(void **state)
{
    (void)state;
    FILE *tmp = tmpfile();
    int fd = fileno(tmp);
    qfile *w = qfile_open_fd(fd, QFILE_WRITE, "tmpfile");
    put_everything(w);
    assert_int_equal(qfile_close(w), 0);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), sizeof(everything));

    lseek(fd, 0, SEEK_SET);
    qfile *r = qfile_open_fd(fd, QFILE_READ, "tmpfile");
    get_everything(r);
    assert_int_equal(qfile_rewind(r), 0);
    get_everything(r);
    qfile_close(r);
    fclose(tmp);
}

/* A stream larger than the internal window, mixing small puts and iovs. */
static void test_fd_large(void **state)
{
    (void)state;
    const size_t n = 3 * QFILE_BUF_SIZE + 123;
    uint8_t *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    FILE *tmp = tmpfile();
    int fd = fileno(tmp);
    qfile *w = qfile_open_fd(fd, QFILE_WRITE, "big");
    for (int i = 0; i < 200; i++) {
        qfile_put_be32(w, (uint32_t)i);
        qfile_put_iov(w, big + i, 4096);
    }
    qfile_put_buf(w, big, n);
    assert_int_equal(qfile_tell(w), 200 * 4100 + n);
    assert_int_equal(qfile_close(w), 0);

    lseek(fd, 0, SEEK_SET);
    qfile *r = qfile_open_fd(fd, QFILE_READ, "big");
    qfile_crc_start(r);
    uint8_t *back = malloc(n);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(qfile_get_be32(r), (uint32_t)i);
        const uint8_t *p = qfile_get_ptr(r, 4096);
        assert_non_null(p);
        assert_memory_equal(p, big + i, 4096);
    }
    qfile_get_buf(r, back, n); /* larger than the window: read direct */
    assert_int_equal(qfile_error(r), 0);
    assert_memory_equal(back, big, n);
    assert_true(qfile_at_eof(r));
    assert_int_equal(qfile_tell(r), 200 * 4100 + n);
    /* The running sum covers the direct read like any other. */
    uint8_t *all = malloc(200 * 4100 + n);
    assert_int_equal(pread(fd, all, 200 * 4100 + n, 0), 200 * 4100 + n);
    assert_int_equal(qfile_crc(r), crc32(0, all, 200 * 4100 + n));
    free(all);
    qfile_close(r);

    /* A direct read cut short by the end of the file. */
    lseek(fd, 0, SEEK_SET);
    r = qfile_open_fd(fd, QFILE_READ, "big");
    size_t total = 200 * 4100 + n;
    uint8_t *over = malloc(total + 1);
    qfile_get_buf(r, over, total + 1);
    assert_int_equal(qfile_error(r), -ENODATA);
    assert_non_null(strstr(qfile_errmsg(r), "stream ends early"));
    free(over);
    qfile_close(r);
    fclose(tmp);
    free(big);
    free(back);
}

/* qfile_put_iov on an fd queues the pointer: what is written is the bytes at
 * flush time, which is the contract that lets guest pages go out uncopied. */
static void test_iov_is_zero_copy(void **state)
{
    (void)state;
    FILE *tmp = tmpfile();
    int fd = fileno(tmp);
    char page[8] = "before!";
    qfile *w = qfile_open_fd(fd, QFILE_WRITE, "iov");
    qfile_put_iov(w, page, 7);
    memcpy(page, "after!!", 7);
    assert_int_equal(qfile_flush(w), 0);
    qfile_close(w);
    char back[8] = { 0 };
    assert_int_equal(pread(fd, back, 7, 0), 7);
    assert_string_equal(back, "after!!");
    fclose(tmp);

    /* A memory channel copies at once. */
    qfile *m = qfile_open_mem("m");
    memcpy(page, "before!", 7);
    qfile_put_iov(m, page, 7);
    memcpy(page, "after!!", 7);
    size_t len;
    const uint8_t *d = qfile_mem_data(m, &len);
    assert_memory_equal(d, "before!", 7);
    qfile_close(m);
}

/* More iovecs than one writev takes. */
static void test_many_iovs(void **state)
{
    (void)state;
    FILE *tmp = tmpfile();
    int fd = fileno(tmp);
    static uint8_t pages[300][16];
    qfile *w = qfile_open_fd(fd, QFILE_WRITE, "iovs");
    for (int i = 0; i < 300; i++) {
        memset(pages[i], i, 16);
        qfile_put_u8(w, (uint8_t)i);
        qfile_put_iov(w, pages[i], 16);
    }
    assert_int_equal(qfile_close(w), 0);
    lseek(fd, 0, SEEK_SET);
    qfile *r = qfile_open_fd(fd, QFILE_READ, "iovs");
    for (int i = 0; i < 300; i++) {
        assert_int_equal(qfile_get_u8(r), (uint8_t)i);
        const uint8_t *p = qfile_get_ptr(r, 16);
        assert_memory_equal(p, pages[i], 16);
    }
    assert_true(qfile_at_eof(r));
    qfile_close(r);
    fclose(tmp);
}

static void test_short_read_latches(void **state)
{
    (void)state;
    uint8_t bytes[3] = { 1, 2, 3 };
    qfile *r = qfile_open_view(bytes, 3, "short");
    assert_int_equal(qfile_get_be16(r), 0x0102);
    assert_int_equal(qfile_get_be32(r), 0);
    assert_int_equal(qfile_error(r), -ENODATA);
    assert_int_equal(qfile_error_offset(r), 2);
    assert_non_null(strstr(qfile_errmsg(r), "short: byte 2:"));
    /* Later reads are no-ops returning zero; the first error stays. */
    assert_int_equal(qfile_get_u8(r), 0);
    assert_null(qfile_get_ptr(r, 1));
    assert_int_equal(qfile_fail(r, -EINVAL, "second"), -ENODATA);
    assert_null(strstr(qfile_errmsg(r), "second"));
    char buf[4] = { 9, 9, 9, 9 };
    qfile_get_buf(r, buf, 4);
    assert_memory_equal(buf, "\0\0\0\0", 4);
    assert_int_equal(qfile_close(r), -ENODATA);
}

static void test_base_offset_and_take(void **state)
{
    (void)state;
    uint8_t bytes[4] = { 0 };
    qfile *inner = qfile_open_view(bytes, 4, "pkg");
    qfile_set_base(inner, 1000);
    qfile_get_be32(inner);
    qfile_fail(inner, -EINVAL, "bad thing %d", 7);
    assert_int_equal(qfile_error_offset(inner), 1004);
    assert_string_equal(qfile_errmsg(inner), "pkg: byte 1004: bad thing 7");

    qfile *outer = qfile_open_view(bytes, 4, "outer");
    assert_int_equal(qfile_take_error(outer, inner), -EINVAL);
    assert_string_equal(qfile_errmsg(outer), qfile_errmsg(inner));
    assert_int_equal(qfile_error_offset(outer), 1004);
    qfile_close(inner);
    qfile_close(outer);
}

static void test_str_limits(void **state)
{
    (void)state;
    char longs[300];
    memset(longs, 'a', 299);
    longs[299] = '\0';
    qfile *w = qfile_open_mem("w");
    qfile_put_str(w, longs);
    assert_int_equal(qfile_error(w), -ENAMETOOLONG);
    qfile_put_u8(w, 1);
    size_t len;
    qfile_mem_data(w, &len);
    assert_int_equal(len, 0);
    qfile_close(w);

    uint8_t maxs[256];
    maxs[0] = 255;
    memset(maxs + 1, 'b', 255);
    qfile *r = qfile_open_view(maxs, sizeof(maxs), "r");
    char out[256];
    assert_int_equal(qfile_get_str(r, out), 255);
    assert_int_equal(strlen(out), 255);
    qfile_close(r);

    /* A counted string that runs past the end. */
    uint8_t cut[3] = { 10, 'a', 'b' };
    r = qfile_open_view(cut, 3, "cut");
    assert_int_equal(qfile_get_str(r, out), 0);
    assert_string_equal(out, "");
    assert_int_equal(qfile_error(r), -ENODATA);
    qfile_close(r);
}

static void test_wrong_direction(void **state)
{
    (void)state;
    uint8_t b[1] = { 0 };
    qfile *r = qfile_open_view(b, 1, "r");
    qfile_put_u8(r, 1);
    assert_int_equal(qfile_error(r), -EBADF);
    qfile_close(r);
    qfile *w = qfile_open_mem("w");
    qfile_get_u8(w);
    assert_int_equal(qfile_error(w), -EBADF);
    assert_int_equal(qfile_rewind(w), -EBADF);
    qfile_close(w);
}

static void test_pipe_errors(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    /* Reading: a pipe cannot rewind; an oversize zero-copy read is refused. */
    qfile *r = qfile_open_fd(p[0], QFILE_READ, "pipe");
    assert_int_equal(qfile_remaining(r), -1);
    assert_int_equal(qfile_rewind(r), -ESPIPE);
    assert_null(qfile_get_ptr(r, QFILE_BUF_SIZE + 1));
    assert_int_equal(qfile_error(r), -E2BIG);
    qfile_close(r);

    /* Writing to a pipe whose reader is gone: EPIPE, latched, named. */
    signal(SIGPIPE, SIG_IGN);
    close(p[0]);
    qfile *w = qfile_open_fd(p[1], QFILE_WRITE, "peer 127.0.0.1:7000");
    qfile_put_be32(w, 1);
    assert_int_equal(qfile_flush(w), -EPIPE);
    assert_non_null(strstr(qfile_errmsg(w), "peer 127.0.0.1:7000"));
    assert_non_null(strstr(qfile_errmsg(w), "write failed"));
    assert_int_equal(qfile_close(w), -EPIPE);
    close(p[1]);
}

static void test_pipe_stream(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    qfile *w = qfile_open_fd(p[1], QFILE_WRITE, "w");
    put_everything(w);
    assert_int_equal(qfile_close(w), 0);
    close(p[1]);
    qfile *r = qfile_open_fd(p[0], QFILE_READ, "r");
    get_everything(r);
    assert_int_equal(qfile_close(r), 0);
    close(p[0]);
}

static void test_skip_and_peek(void **state)
{
    (void)state;
    uint8_t b[6] = { 1, 2, 3, 4, 5, 6 };
    qfile *r = qfile_open_view(b, 6, "r");
    assert_int_equal(qfile_remaining(r), 6);
    qfile_skip(r, 4);
    assert_int_equal(qfile_remaining(r), 2);
    assert_int_equal(qfile_peek_u8(r), 5);
    assert_int_equal(qfile_tell(r), 4);
    qfile_skip(r, 3);
    assert_int_equal(qfile_error(r), -ENODATA);
    qfile_close(r);
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
    qfile *m = qfile_open_mem("m");
    qfile *w = qfile_open_fd(fd, QFILE_WRITE, "f");
    qfile_crc_start(m);
    qfile_crc_start(w);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, scribble, &s), 0);
    for (int i = 0; i < 400; i++) {
        qfile_put_iov(m, s.buf, sizeof(s.buf));
        qfile_put_iov(w, s.buf, sizeof(s.buf));
    }
    __atomic_store_n(&s.stop, 1, __ATOMIC_RELAXED);
    pthread_join(t, NULL);
    assert_int_equal(qfile_flush(w), 0);
    size_t n;
    const uint8_t *d = qfile_mem_data(m, &n);
    assert_int_equal(n, 400 * sizeof(s.buf));
    assert_int_equal((uint32_t)crc32(0, d, (uInt)n), qfile_crc(m));
    uint8_t *back = malloc(n);
    assert_int_equal(pread(fd, back, n, 0), (ssize_t)n);
    assert_int_equal((uint32_t)crc32(0, back, (uInt)n), qfile_crc(w));
    free(back);
    qfile_close(w);
    qfile_close(m);
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
