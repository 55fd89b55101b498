/* Unit tests for devstate/trailer (checksum and package header) and
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
#include "devstate/trailer.h"

/* A small stream: header, some bytes in a section, the trailer. */
static qfile *sealed_stream(uint64_t id)
{
    qfile *f = qfile_open_mem("s");
    qfile_crc_start(f);
    savevm_put_header(f);
    savevm_put_section_start(f, SAVEVM_SECTION_FULL, 0, "dev", 0, 1);
    qfile_put_buf(f, "payload-bytes", 13);
    savevm_put_footer(f, 0);
    trailer_put(f, 1, id);
    savevm_put_eof(f);
    return f;
}

/* Reads up to the trailer's body and checks it. */
static int check_bytes(const uint8_t *b, size_t n, trailer_info *info,
                       char *msg, size_t msglen)
{
    qfile *r = qfile_open_view(b, n, "r");
    qfile_crc_start(r);
    qfile_skip(r, 8 + 17 + 13 + 5); /* header, dev section, footer */
    savevm_section sec = {.type = qfile_get_u8(r)};
    sec.section_id = qfile_get_be32(r);
    qfile_get_str(r, sec.idstr);
    sec.instance_id = qfile_get_be32(r);
    sec.version_id = qfile_get_be32(r);
    int rc = trailer_load(r, &sec, info);
    snprintf(msg, msglen, "%s", qfile_errmsg(r));
    qfile_close(r);
    return rc;
}

static void test_trailer_roundtrip_and_damage(void **state)
{
    (void)state;
    qfile *f = sealed_stream(42);
    size_t n;
    const uint8_t *b = qfile_mem_data(f, &n);
    trailer_info info;
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
    qfile_close(f);
}

/*
 * Reads one section of ftvm's own from b the way the loader hands it over
 * (header parsed, body next), with its header's version and instance
 * replaced; returns what load() said and its message.
 */
/* A pairing as the primary draws them. */
static const pairing test_pair = {
    .id = { 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 },
    .name = "vm-1",
    .generation = 0x1122334455667788ull,
};

static int load_altered(const uint8_t *b, size_t n, size_t skip,
                        uint32_t version, uint32_t instance,
                        int (*load)(qfile *, const savevm_section *, void *),
                        char *msg, size_t msglen)
{
    qfile *r = qfile_open_view(b, n, "r");
    qfile_crc_start(r);
    qfile_skip(r, skip);
    savevm_section sec = {.type = qfile_get_u8(r)};
    sec.section_id = qfile_get_be32(r);
    qfile_get_str(r, sec.idstr);
    qfile_get_be32(r);
    qfile_get_be32(r);
    sec.instance_id = instance;
    sec.version_id = version;
    int rc = load(r, &sec, NULL);
    snprintf(msg, msglen, "%s", qfile_errmsg(r));
    qfile_close(r);
    return rc;
}

static int do_trailer_load(qfile *f, const savevm_section *sec, void *unused)
{
    (void)unused;
    trailer_info info;
    return trailer_load(f, sec, &info);
}

static int do_trailer_skip(qfile *f, const savevm_section *sec, void *unused)
{
    (void)unused;
    return trailer_skip(f, sec);
}

static int do_pkg_load(qfile *f, const savevm_section *sec, void *unused)
{
    (void)unused;
    trailer_pkg p;
    return trailer_load_pkg(f, sec, &p);
}

/* Versions other than 1 and instances other than 0 are refused. */
/*
 * A checkpoint file's trailer is found only where the format puts it: the
 * last record before EOF.  A section after it, a missing EOF, or a
 * trailer whose sum claims to cover something else are refused, naming
 * the byte.
 */
static void test_find_end(void **state)
{
    (void)state;
    qfile *f = sealed_stream(7);
    size_t n;
    const uint8_t *b = qfile_mem_data(f, &n);
    const size_t body = 8 + 17 + 13 + 5 + 23;
    trailer_info info;
    uint64_t at = 0;
    char msg[512];
    assert_int_equal(trailer_find_end(b, n, &info, &at, msg, sizeof(msg)),
                     0);
    assert_int_equal(at, body);
    assert_int_equal(trailer_body_at_end(n), body);
    assert_int_equal(info.id, 7);
    assert_int_equal(info.covered, body);

    /* A valid-looking section after the trailer, then EOF. */
    qfile *g = qfile_open_mem("g");
    qfile_put_buf(g, b, n - 1);
    savevm_put_section_start(g, SAVEVM_SECTION_FULL, 2, "dev", 0, 1);
    qfile_put_buf(g, "uncovered-xxx", 13);
    savevm_put_footer(g, 2);
    savevm_put_eof(g);
    size_t gn;
    const uint8_t *gb = qfile_mem_data(g, &gn);
    assert_int_equal(trailer_find_end(gb, gn, &info, &at, msg, sizeof(msg)),
                     -EBADMSG);
    char want[64];
    snprintf(want, sizeof(want), "byte %zu: ", gn - 1 - TRAILER_FILE_BYTES);
    assert_non_null(strstr(msg, want));
    assert_non_null(strstr(msg, "not the checkpoint's 'ftvm-ckpt' trailer"));

    /* No EOF at the end. */
    assert_int_equal(trailer_find_end(b, n - 1, &info, &at, msg,
                                      sizeof(msg)), -EBADMSG);
    assert_non_null(strstr(msg, "expected EOF"));
    /* Too short for a trailer at all. */
    assert_int_equal(trailer_find_end(b, 20, &info, &at, msg, sizeof(msg)),
                     -EBADMSG);
    assert_int_equal(trailer_body_at_end(20), 0);
    /* A trailer in place whose sum claims fewer bytes than precede it. */
    uint8_t *copy = malloc(n);
    memcpy(copy, b, n);
    copy[body + 8 + 7] -= 1;
    assert_int_equal(trailer_find_end(copy, n, &info, &at, msg,
                                      sizeof(msg)), -EBADMSG);
    assert_non_null(strstr(msg, "bytes were lost or added"));
    /* Its footer naming another section. */
    memcpy(copy, b, n);
    copy[n - 2] ^= 1;
    assert_int_equal(trailer_find_end(copy, n, &info, &at, msg,
                                      sizeof(msg)), -EBADMSG);
    free(copy);
    qfile_close(g);
    qfile_close(f);
}

static void test_wrong_version_or_instance(void **state)
{
    (void)state;
    qfile *f = sealed_stream(42);
    size_t n;
    const uint8_t *b = qfile_mem_data(f, &n);
    const size_t at = 8 + 17 + 13 + 5;
    int (*const loads[])(qfile *, const savevm_section *, void *) = {
        do_trailer_load, do_trailer_skip,
    };
    char msg[512];
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(load_altered(b, n, at, 1, 0, loads[i], msg,
                                      sizeof(msg)), 0);
        assert_int_equal(load_altered(b, n, at, 2, 0, loads[i], msg,
                                      sizeof(msg)), -ENOTSUP);
        assert_non_null(strstr(msg, "'ftvm-ckpt': version 2 is newer than "
                                    "1"));
        assert_int_equal(load_altered(b, n, at, 0, 0, loads[i], msg,
                                      sizeof(msg)), -ENOTSUP);
        assert_non_null(strstr(msg, "'ftvm-ckpt': version 0 is older than "
                                    "1"));
        assert_int_equal(load_altered(b, n, at, 1, 1, loads[i], msg,
                                      sizeof(msg)), -EINVAL);
        assert_non_null(strstr(msg, "section 'ftvm-ckpt': expected a FULL "
                                    "section of instance 0, found "
                                    "SECTION_FULL instance 1"));
    }
    qfile_close(f);

    f = qfile_open_mem("p");
    trailer_put_pkg(f, 3, &(trailer_pkg){ .id = 2, .base = 1,
                                          .pair = test_pair });
    b = qfile_mem_data(f, &n);
    assert_int_equal(load_altered(b, n, 0, 3, 0, do_pkg_load, msg,
                                  sizeof(msg)), 0);
    assert_int_equal(load_altered(b, n, 0, 4, 0, do_pkg_load, msg,
                                  sizeof(msg)), -ENOTSUP);
    assert_non_null(strstr(msg, "'ftvm-pkg': version 4 is newer than 3"));
    /* Version 2 had no generation: a package of before it is refused. */
    assert_int_equal(load_altered(b, n, 0, 2, 0, do_pkg_load, msg,
                                  sizeof(msg)), -ENOTSUP);
    assert_non_null(strstr(msg, "'ftvm-pkg': version 2 is older than 3"));
    assert_int_equal(load_altered(b, n, 0, 3, 3, do_pkg_load, msg,
                                  sizeof(msg)), -EINVAL);
    qfile_close(f);
}

/* What is written is what the description says, field by field. */
static void test_described(void **state)
{
    (void)state;
    json_t *devices = json_array();
    qfile *f = qfile_open_mem("d");
    qfile_crc_start(f);
    assert_int_equal(trailer_put_desc(f, 9, 5, devices), 0);
    assert_int_equal(trailer_describe_pkg(devices), 0);
    size_t n;
    const uint8_t *b = qfile_mem_data(f, &n);
    /* Header (1 + 4 + 10 + 4 + 4), body (8 + 8 + 4), footer (5). */
    assert_int_equal(n, 23 + 20 + 5);
    assert_int_equal(b[23 + 7], 5);
    char *text = json_dumps(devices, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text,
        "[{\"name\":\"ftvm-ckpt\",\"instance_id\":0,"
        "\"vmsd_name\":\"ftvm-ckpt\",\"version\":1,\"fields\":["
        "{\"name\":\"id\",\"type\":\"uint64\",\"size\":8},"
        "{\"name\":\"covered\",\"type\":\"uint64\",\"size\":8},"
        "{\"name\":\"crc\",\"type\":\"uint32\",\"size\":4}]},"
        "{\"name\":\"ftvm-pkg\",\"instance_id\":0,"
        "\"vmsd_name\":\"ftvm-pkg\",\"version\":3,\"fields\":["
        "{\"name\":\"id\",\"type\":\"uint64\",\"size\":8},"
        "{\"name\":\"base\",\"type\":\"uint64\",\"size\":8},"
        "{\"name\":\"flags\",\"type\":\"uint32\",\"size\":4},"
        "{\"name\":\"pairing\",\"type\":\"buffer\",\"size\":16},"
        "{\"name\":\"name\",\"type\":\"buffer\",\"size\":64},"
        "{\"name\":\"generation\",\"type\":\"uint64\",\"size\":8}]}]");
    free(text);
    json_decref(devices);
    qfile_close(f);
}

static void test_pkg_header(void **state)
{
    (void)state;
    pairing noname = test_pair, badname = test_pair, unterminated;
    pairing nogen = test_pair;
    nogen.generation = 0;
    noname.name[0] = '\0';
    badname.name[2] = '/';
    memset(&unterminated, 'a', sizeof(unterminated));
    const trailer_pkg cases[] = {
        { 7, 6, 0, test_pair }, { 1, 0, 0, test_pair },
        { 5, 5, 0, test_pair }, { 0, 0, 0, test_pair },
        { 9, 2, 4, test_pair }, { 2, 1, 0, noname }, { 2, 1, 0, badname },
        { 2, 1, 0, unterminated }, { 2, 1, 0, nogen },
    };
    const int want[] = { 0, 0, -EINVAL, -EINVAL, -ENOTSUP, -EINVAL, -EINVAL,
                         -EINVAL, -EINVAL };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        qfile *f = qfile_open_mem("p");
        trailer_put_pkg(f, 3, &cases[i]);
        size_t n;
        const uint8_t *b = qfile_mem_data(f, &n);
        qfile *r = qfile_open_view(b, n, "p");
        savevm_section sec = {.type = qfile_get_u8(r)};
        sec.section_id = qfile_get_be32(r);
        qfile_get_str(r, sec.idstr);
        sec.instance_id = qfile_get_be32(r);
        sec.version_id = qfile_get_be32(r);
        assert_string_equal(sec.idstr, TRAILER_PKG_IDSTR);
        trailer_pkg got;
        assert_int_equal(trailer_load_pkg(r, &sec, &got), want[i]);
        if (want[i] == 0) {
            assert_int_equal(got.id, cases[i].id);
            assert_int_equal(got.base, cases[i].base);
            assert_true(pairing_equal(&got.pair, &test_pair));
            assert_int_equal(qfile_get_u8(r), SAVEVM_SECTION_FOOTER);
        }
        qfile_close(r);
        qfile_close(f);
    }
    /* The wrong kind of section is refused. */
    qfile *r = qfile_open_view("", 0, "p");
    savevm_section sec = {.type = SAVEVM_SECTION_START, .version_id = 1};
    trailer_pkg got;
    assert_int_equal(trailer_load_pkg(r, &sec, &got), -EINVAL);
    qfile_close(r);
}

static void test_retpath(void **state)
{
    (void)state;
    qfile *f = qfile_open_mem("rp");
    retpath_put_ack(f, 0x0102030405060708ull, &test_pair);
    retpath_put_nack(f, 9, &test_pair, "checksum mismatch");
    retpath_put_heartbeat(f, 77);
    retpath_put_shut(f, 0);
    retpath_put(f, &(retpath_msg){.type = RETPATH_PONG, .value32 = 5});
    size_t n;
    const uint8_t *b = qfile_mem_data(f, &n);
    const size_t ackn = 4 + RETPATH_ANSWER_LEN;
    assert_int_equal(RETPATH_ANSWER_LEN, 8 + 16 + 64 + 8);
    assert_int_equal(n, ackn + (ackn + 17) + 12 + 8 + 8);
    static const uint8_t ack[12] = { 0x7f, 0x01, 0, 96, 1, 2, 3, 4, 5, 6, 7,
                                     8 };
    assert_memory_equal(b, ack, 12);
    assert_memory_equal(b + 12, test_pair.id, 16);
    assert_string_equal((const char *)b + 28, "vm-1");
    static const uint8_t gen[8] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                    0x88 };
    assert_memory_equal(b + 28 + 64, gen, 8);
    retpath_msg m;
    char err[256];
    size_t off = 0;
    /* Partial input asks for more, at every cut. */
    for (size_t cut = 0; cut < ackn; cut++)
        assert_int_equal(retpath_parse(b, cut, &m, err, sizeof(err)), 0);
    assert_int_equal(retpath_parse(b, n, &m, err, sizeof(err)), (int)ackn);
    assert_int_equal(m.type, RETPATH_ACK);
    assert_true(m.value64 == 0x0102030405060708ull);
    assert_true(pairing_equal(&m.pair, &test_pair));
    off = ackn;
    assert_int_equal(retpath_parse(b + off, n - off, &m, err, sizeof(err)),
                     (int)ackn + 17);
    assert_int_equal(m.type, RETPATH_NACK);
    assert_int_equal(m.value64, 9);
    assert_true(pairing_equal(&m.pair, &test_pair));
    assert_string_equal(m.text, "checksum mismatch");
    off += ackn + 17;
    assert_int_equal(retpath_parse(b + off, n - off, &m, err, sizeof(err)),
                     12);
    assert_int_equal(m.type, RETPATH_HEARTBEAT);
    assert_int_equal(m.value64, 77);
    off += 12;
    assert_int_equal(retpath_parse(b + off, n - off, &m, err, sizeof(err)), 8);
    assert_int_equal(m.type, RETPATH_SHUT);
    off += 8;
    assert_int_equal(retpath_parse(b + off, n - off, &m, err, sizeof(err)), 8);
    assert_int_equal(m.type, RETPATH_PONG);
    assert_int_equal(m.value32, 5);
    assert_string_equal(retpath_type_name(RETPATH_NACK), "NACK");
    assert_null(retpath_type_name(99));
    qfile_close(f);

    static const uint8_t unknown[] = { 0x00, 0x09, 0, 0 };
    assert_int_equal(retpath_parse(unknown, 4, &m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "unknown message type 0x0009"));
    static const uint8_t badlen[] = { 0x7f, 0x01, 0, 4, 0, 0, 0, 0 };
    assert_int_equal(retpath_parse(badlen, 8, &m, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "ACK with length 4"));
    static const uint8_t longnack[] = { 0x7f, 0x02, 0xff, 0xff };
    assert_int_equal(retpath_parse(longnack, 4, &m, err, sizeof(err)), -EINVAL);
    /* A NACK's payload is at most RETPATH_ANSWER_MAX; its reason is cut. */
    char reason[2000];
    memset(reason, 'x', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    f = qfile_open_mem("rp");
    retpath_put_nack(f, 3, &test_pair, reason);
    b = qfile_mem_data(f, &n);
    assert_int_equal(n, 4 + RETPATH_ANSWER_MAX);
    assert_int_equal(retpath_parse(b, n, &m, err, sizeof(err)), (int)n);
    assert_int_equal(strlen(m.text), RETPATH_ANSWER_MAX - RETPATH_ANSWER_LEN);
    /* An answer whose name is no name is refused. */
    uint8_t bad[4 + RETPATH_ANSWER_LEN];
    memcpy(bad, b, sizeof(bad));
    bad[1] = 0x01;
    bad[2] = 0;
    bad[3] = RETPATH_ANSWER_LEN;
    bad[4 + 8 + 16] = ' ';
    assert_int_equal(retpath_parse(bad, sizeof(bad), &m, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "ACK: VM name"));
    qfile_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trailer_roundtrip_and_damage),
        cmocka_unit_test(test_pkg_header),
        cmocka_unit_test(test_find_end),
        cmocka_unit_test(test_wrong_version_or_instance),
        cmocka_unit_test(test_described),
        cmocka_unit_test(test_retpath),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
