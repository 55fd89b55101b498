/* Unit tests for checkpoint/trailer (checksum and package header) and
 * checkpoint/retpath (return-path messages). */
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
#include "checkpoint/trailer.h"

/* A small stream: header, some bytes in a section, the trailer. */
static qfile *sealed_stream(uint64_t id)
{
    qfile *f = qf_open_mem("s");
    qf_crc_start(f);
    sv_put_header(f);
    sv_put_section_start(f, SV_SECTION_FULL, 0, "dev", 0, 1);
    qf_put_buf(f, "payload-bytes", 13);
    sv_put_footer(f, 0);
    ckt_put(f, 1, id);
    sv_put_eof(f);
    return f;
}

/* Reads up to the trailer's body and checks it. */
static int check_bytes(const uint8_t *b, size_t n, ckt_info *info,
                       char *msg, size_t msglen)
{
    qfile *r = qf_open_view(b, n, "r");
    qf_crc_start(r);
    qf_skip(r, 8 + 17 + 13 + 5);   /* header, dev section, footer */
    sv_section sec = { .type = qf_get_u8(r) };
    sec.section_id = qf_get_be32(r);
    qf_get_str(r, sec.idstr);
    sec.instance_id = qf_get_be32(r);
    sec.version_id = qf_get_be32(r);
    int rc = ckt_load(r, &sec, info);
    snprintf(msg, msglen, "%s", qf_errmsg(r));
    qf_close(r);
    return rc;
}

static void test_trailer_roundtrip_and_damage(void **state)
{
    (void)state;
    qfile *f = sealed_stream(42);
    size_t n;
    const uint8_t *b = qf_mem_data(f, &n);
    ckt_info info;
    char msg[512];
    assert_int_equal(check_bytes(b, n, &info, msg, sizeof(msg)), 0);
    assert_int_equal(info.id, 42);
    assert_int_equal(info.covered, 8 + 17 + 13 + 5 + 23);
    /* Every single flipped bit before the trailer's body is caught. */
    uint8_t *copy = malloc(n);
    for (size_t i = 8 + 17; i < 8 + 17 + 13; i++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, b, n);
            copy[i] ^= (uint8_t)(1 << bit);
            assert_int_equal(check_bytes(copy, n, &info, msg, sizeof(msg)),
                             -EBADMSG);
            assert_non_null(strstr(msg, "checksum mismatch"));
        }
    /* A stored length that disagrees says bytes went missing. */
    memcpy(copy, b, n);
    copy[8 + 17 + 13 + 5 + 23 + 8 + 7] ^= 1;
    assert_int_equal(check_bytes(copy, n, &info, msg, sizeof(msg)),
                     -EBADMSG);
    assert_non_null(strstr(msg, "bytes were lost or added"));
    free(copy);
    qf_close(f);
}

static void test_pkg_header(void **state)
{
    (void)state;
    const ckt_pkg cases[] = {
        { 7, 6, 0 }, { 1, 0, 0 }, { 5, 5, 0 }, { 0, 0, 0 }, { 9, 2, 4 },
    };
    const int want[] = { 0, 0, -EINVAL, -EINVAL, -ENOTSUP };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        qfile *f = qf_open_mem("p");
        ckt_put_pkg(f, 3, &cases[i]);
        size_t n;
        const uint8_t *b = qf_mem_data(f, &n);
        qfile *r = qf_open_view(b, n, "p");
        sv_section sec = { .type = qf_get_u8(r) };
        sec.section_id = qf_get_be32(r);
        qf_get_str(r, sec.idstr);
        sec.instance_id = qf_get_be32(r);
        sec.version_id = qf_get_be32(r);
        assert_string_equal(sec.idstr, CKT_PKG_IDSTR);
        ckt_pkg got;
        assert_int_equal(ckt_load_pkg(r, &sec, &got), want[i]);
        if (want[i] == 0) {
            assert_int_equal(got.id, cases[i].id);
            assert_int_equal(got.base, cases[i].base);
            assert_int_equal(qf_get_u8(r), SV_SECTION_FOOTER);
        }
        qf_close(r);
        qf_close(f);
    }
    /* The wrong kind of section is refused. */
    qfile *r = qf_open_view("", 0, "p");
    sv_section sec = { .type = SV_SECTION_START, .version_id = 1 };
    ckt_pkg got;
    assert_int_equal(ckt_load_pkg(r, &sec, &got), -EINVAL);
    qf_close(r);
}

static void test_retpath(void **state)
{
    (void)state;
    qfile *f = qf_open_mem("rp");
    rp_put_ack(f, 0x0102030405060708ull);
    rp_put_nack(f, 9, "checksum mismatch");
    rp_put_heartbeat(f, 77);
    rp_put_shut(f, 0);
    rp_put(f, &(rp_msg){ .type = RP_PONG, .value32 = 5 });
    size_t n;
    const uint8_t *b = qf_mem_data(f, &n);
    assert_int_equal(n, 12 + (12 + 17) + 12 + 8 + 8);
    static const uint8_t ack[12] = { 0x7f, 0x01, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8 };
    assert_memory_equal(b, ack, 12);
    rp_msg m;
    char err[256];
    size_t off = 0;
    /* Partial input asks for more, at every cut. */
    for (size_t cut = 0; cut < 12; cut++)
        assert_int_equal(rp_parse(b, cut, &m, err, sizeof(err)), 0);
    assert_int_equal(rp_parse(b, n, &m, err, sizeof(err)), 12);
    assert_int_equal(m.type, RP_ACK);
    assert_true(m.value64 == 0x0102030405060708ull);
    off = 12;
    assert_int_equal(rp_parse(b + off, n - off, &m, err, sizeof(err)), 29);
    assert_int_equal(m.type, RP_NACK);
    assert_int_equal(m.value64, 9);
    assert_string_equal(m.text, "checksum mismatch");
    off += 29;
    assert_int_equal(rp_parse(b + off, n - off, &m, err, sizeof(err)), 12);
    assert_int_equal(m.type, RP_HEARTBEAT);
    assert_int_equal(m.value64, 77);
    off += 12;
    assert_int_equal(rp_parse(b + off, n - off, &m, err, sizeof(err)), 8);
    assert_int_equal(m.type, RP_SHUT);
    off += 8;
    assert_int_equal(rp_parse(b + off, n - off, &m, err, sizeof(err)), 8);
    assert_int_equal(m.type, RP_PONG);
    assert_int_equal(m.value32, 5);
    assert_string_equal(rp_type_name(RP_NACK), "NACK");
    assert_null(rp_type_name(99));
    qf_close(f);

    static const uint8_t unknown[] = { 0x00, 0x09, 0, 0 };
    assert_int_equal(rp_parse(unknown, 4, &m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "unknown message type 0x0009"));
    static const uint8_t badlen[] = { 0x7f, 0x01, 0, 4, 0, 0, 0, 0 };
    assert_int_equal(rp_parse(badlen, 8, &m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "ACK with length 4"));
    static const uint8_t longnack[] = { 0x7f, 0x02, 0xff, 0xff };
    assert_int_equal(rp_parse(longnack, 4, &m, err, sizeof(err)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trailer_roundtrip_and_damage),
        cmocka_unit_test(test_pkg_header),
        cmocka_unit_test(test_retpath),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
