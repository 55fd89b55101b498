/*
 * Unit tests for checkpoint/retpath's COLO_FRAME (the SVM's frames on the
 * return path, docs/stream-format.md) and the bounds COLO_FRAME's longer
 * payload must leave alone.  The other messages are test_trailer's.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/retpath.h"

static void fill(uint8_t *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(seed + i * 7);
}

/* Frames of 1, 60 and 1514 bytes written, then parsed back byte for byte. */
static void test_round_trip(void **state)
{
    (void)state;
    static const size_t sizes[] = { 1, 60, RETPATH_COLO_FRAME_MAX };
    static uint8_t frames[3][RETPATH_COLO_FRAME_MAX];
    qfile *f = qfile_open_mem("rp");
    for (int i = 0; i < 3; i++) {
        fill(frames[i], sizes[i], (unsigned)i);
        retpath_put_colo_frame(f, 0x1122334455667700ull + (uint64_t)i,
                               frames[i], sizes[i]);
    }
    assert_int_equal(qfile_error(f), 0);
    size_t len;
    const uint8_t *d = qfile_mem_data(f, &len);
    assert_int_equal(len, 3 * 12 + 1 + 60 + RETPATH_COLO_FRAME_MAX);
    /* The framing: be16 0x7f11, be16 8 + len, be64 id. */
    static const uint8_t head[12] = { 0x7f, 0x11, 0, 9, 0x11, 0x22, 0x33,
                                      0x44, 0x55, 0x66, 0x77, 0x00 };
    assert_memory_equal(d, head, 12);
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        retpath_msg m;
        char err[256];
        size_t want = 12 + sizes[i];
        /* A partial message asks for more, at every cut. */
        for (size_t cut = 0; cut < want; cut += 97)
            assert_int_equal(retpath_parse(d + off, cut, &m, err,
                                           sizeof(err)), 0);
        assert_int_equal(retpath_parse(d + off, len - off, &m, err,
                                       sizeof(err)), (int)want);
        assert_int_equal(m.type, RETPATH_COLO_FRAME);
        assert_true(m.value64 == 0x1122334455667700ull + (uint64_t)i);
        assert_int_equal(m.len, sizes[i]);
        assert_memory_equal(m.text, frames[i], sizes[i]);
        /* What the parser accepts, the writer writes again. */
        qfile *g = qfile_open_mem("again");
        retpath_put(g, &m);
        size_t gl;
        const uint8_t *gd = qfile_mem_data(g, &gl);
        assert_int_equal(gl, want);
        assert_memory_equal(gd, d + off, want);
        qfile_close(g);
        off += want;
    }
    assert_string_equal(retpath_type_name(RETPATH_COLO_FRAME), "COLO_FRAME");
    qfile_close(f);
}

/* A message of type 0x7f11 with payload length n, its body zero. */
static int parse_len(uint16_t type, uint16_t n, char *err, size_t errlen)
{
    static uint8_t buf[4 + 0xffff];
    memset(buf, 0, sizeof(buf));
    buf[0] = (uint8_t)(type >> 8);
    buf[1] = (uint8_t)type;
    buf[2] = (uint8_t)(n >> 8);
    buf[3] = (uint8_t)n;
    buf[4 + 8] = 0x45;
    retpath_msg m;
    err[0] = '\0';
    return retpath_parse(buf, 4u + n, &m, err, errlen);
}

/* Payloads of 9 and 1522 bytes are frames; 8 and 1523 are refused. */
static void test_bounds(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(parse_len(RETPATH_COLO_FRAME, 9, err, sizeof(err)), 13);
    assert_int_equal(parse_len(RETPATH_COLO_FRAME, 1522, err, sizeof(err)),
                     4 + 1522);
    assert_int_equal(parse_len(RETPATH_COLO_FRAME, 8, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "COLO_FRAME with length 8"));
    assert_int_equal(parse_len(RETPATH_COLO_FRAME, 1523, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "COLO_FRAME with length 1523"));
    /* The length alone is refused: no need to wait for 1523 bytes. */
    static const uint8_t head[4] = { 0x7f, 0x11, 0x05, 0xf3 };
    retpath_msg m;
    assert_int_equal(retpath_parse(head, 4, &m, err, sizeof(err)), -EINVAL);
    assert_int_equal(RETPATH_MSG_MAX, 1522);

    /* The console's bound and a NACK's did not move with RETPATH_MSG_MAX. */
    assert_int_equal(RETPATH_COLO_DATA_MAX, 1016);
    assert_int_equal(parse_len(RETPATH_COLO_CONSOLE, 1024, err, sizeof(err)),
                     4 + 1024);
    assert_int_equal(parse_len(RETPATH_COLO_CONSOLE, 1025, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(parse_len(RETPATH_NACK, 1025, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "NACK with length 1025"));

    /* Unknown types are still refused, next to it as anywhere. */
    assert_int_equal(parse_len(0x7f13, 9, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "unknown message type 0x7f13"));
    assert_null(retpath_type_name(0x7f13));
    /* COLO_RELEASED: exactly its two be64s. */
    assert_int_equal(parse_len(RETPATH_COLO_RELEASED, 16, err, sizeof(err)),
                     4 + 16);
    assert_int_equal(parse_len(RETPATH_COLO_RELEASED, 15, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "COLO_RELEASED with length 15"));
    assert_int_equal(parse_len(RETPATH_COLO_RELEASED, 17, err, sizeof(err)),
                     -EINVAL);
}

/* COLO_RELEASED through the writer and the parser. */
static void test_colo_released(void **state)
{
    (void)state;
    qfile *f = qfile_open_mem("rp");
    retpath_put_colo_released(f, 4, 0x0102030405060708ull);
    size_t n;
    const uint8_t *d = qfile_mem_data(f, &n);
    assert_int_equal(n, 20);
    assert_int_equal(d[0], 0x7f);
    assert_int_equal(d[1], 0x12);
    assert_int_equal(d[3], 16);
    retpath_msg m;
    char err[128];
    assert_int_equal(retpath_parse(d, n, &m, err, sizeof(err)), 20);
    assert_int_equal(m.type, RETPATH_COLO_RELEASED);
    assert_int_equal(m.value64, 4);
    assert_int_equal(m.offset, 0x0102030405060708ull);
    assert_int_equal(retpath_parse(d, n - 1, &m, err, sizeof(err)), 0);
    assert_string_equal(retpath_type_name(RETPATH_COLO_RELEASED),
                        "COLO_RELEASED");
    qfile_close(f);
}

/* The writer refuses what the reader would: no frame, or too long a one. */
static void test_put_refuses(void **state)
{
    (void)state;
    static uint8_t big[RETPATH_COLO_FRAME_MAX + 1];
    qfile *f = qfile_open_mem("rp");
    retpath_put_colo_frame(f, 1, big, 0);
    assert_int_equal(qfile_error(f), -EINVAL);
    size_t len;
    qfile_mem_data(f, &len);
    assert_int_equal(len, 0);
    qfile_close(f);
    f = qfile_open_mem("rp");
    retpath_put_colo_frame(f, 1, big, sizeof(big));
    assert_int_equal(qfile_error(f), -EINVAL);
    assert_non_null(strstr(qfile_errmsg(f), "1515 bytes"));
    qfile_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_colo_released),
        cmocka_unit_test(test_put_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
