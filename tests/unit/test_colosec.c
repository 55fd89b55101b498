/*
 * Unit tests for vm/colosec's "ftvm-colo-in" (COLO's input mirror,
 * docs/stream-format.md): its bytes, a round trip through a real loader,
 * what its reader refuses, and its VM description entry.
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

#include "vm/colosec.h"

#define SID 11u
/* The body starts after type, id, counted "ftvm-colo-in", instance, version. */
#define BODY_AT (1 + 4 + 1 + 12 + 4 + 4)

static uint8_t frame60[60];

/* The section as colosec_put_input writes it, in a buffer of ours. */
static uint8_t *put(uint64_t id, const void *frame, size_t len, size_t *n)
{
    qfile *f = qfile_open_mem("w");
    colosec_put_input(f, SID, id, frame, len);
    assert_int_equal(qfile_error(f), 0);
    const uint8_t *b = qfile_mem_data(f, n);
    uint8_t *copy = malloc(*n);
    memcpy(copy, b, *n);
    qfile_close(f);
    return copy;
}

/* The target of a real loader: every section goes to colosec_load_input. */
typedef struct got {
    int sections;
    uint64_t id;
    uint8_t frame[COLOSEC_INPUT_FRAME_MAX];
    size_t len;
} got;

static int on_section(void *opaque, qfile *f, const savevm_section *sec,
                      savevm_pass pass)
{
    (void)pass;
    got *g = opaque;
    g->sections++;
    return colosec_load_input(f, sec, &g->id, g->frame, &g->len);
}

static const savevm_target_ops ops = { .section = on_section };

/*
 * A stream of header, the section's bytes b (version patched to version,
 * type to type, instance to instance) and EOF, loaded by savevm; the
 * loader's message in msg.
 */
static int load(const uint8_t *b, size_t n, uint8_t type, uint32_t instance,
                uint32_t version, got *g, char *msg, size_t msglen)
{
    qfile *w = qfile_open_mem("stream");
    savevm_put_header(w);
    size_t at;
    qfile_mem_data(w, &at);
    qfile_put_buf(w, b, n);
    savevm_put_eof(w);
    size_t len;
    const uint8_t *d = qfile_mem_data(w, &len);
    uint8_t *s = malloc(len);
    memcpy(s, d, len);
    qfile_close(w);
    s[at] = type;
    uint8_t *inst = s + at + BODY_AT - 8, *ver = s + at + BODY_AT - 4;
    for (int i = 0; i < 4; i++) {
        inst[i] = (uint8_t)(instance >> (24 - 8 * i));
        ver[i] = (uint8_t)(version >> (24 - 8 * i));
    }
    savevm_loader *l = savevm_loader_new(&ops, g, &(savevm_loader_opts){
                                             .footers = true });
    qfile *r = qfile_open_view(s, len, "r");
    int rc = savevm_load_header(l, r);
    savevm_stop why;
    if (rc == 0)
        rc = savevm_load_main(l, r, SAVEVM_PASS_APPLY, false, &why);
    snprintf(msg, msglen, "%s", qfile_errmsg(r));
    qfile_close(r);
    savevm_loader_free(l);
    free(s);
    return rc;
}

static int load_plain(const uint8_t *b, size_t n, got *g, char *msg,
                      size_t msglen)
{
    return load(b, n, SAVEVM_SECTION_FULL, 0, 1, g, msg, msglen);
}

static void test_bytes(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(frame60); i++)
        frame60[i] = (uint8_t)(0xa0 + i);
    size_t n;
    uint8_t *b = put(0x0102030405060708ull, frame60, sizeof(frame60), &n);
    assert_int_equal(n, COLOSEC_INPUT_SECTION_LEN);
    assert_int_equal(n, 1555);
    static const uint8_t head[BODY_AT] = {
        0x04, 0, 0, 0, SID, 12, 'f', 't', 'v', 'm', '-', 'c', 'o', 'l', 'o',
        '-', 'i', 'n', 0, 0, 0, 0, 0, 0, 0, 1 };
    assert_memory_equal(b, head, BODY_AT);
    static const uint8_t body[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 0, 60 };
    assert_memory_equal(b + BODY_AT, body, 10);
    assert_memory_equal(b + BODY_AT + 10, frame60, 60);
    for (size_t i = BODY_AT + 10 + 60; i < BODY_AT + 1524; i++)
        assert_int_equal(b[i], 0);
    static const uint8_t foot[5] = { 0x7e, 0, 0, 0, SID };
    assert_memory_equal(b + BODY_AT + 1524, foot, 5);
    free(b);
    assert_int_equal(colosec_input_section_id(40), 44);
}

/* Frames of 1, 60 and 1514 bytes through savevm's loader and back. */
static void test_round_trip(void **state)
{
    (void)state;
    static uint8_t big[COLOSEC_INPUT_FRAME_MAX];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 13 + 1);
    const struct { const uint8_t *f; size_t len; } cases[] = {
        { frame60, 1 }, { frame60, 60 }, { big, sizeof(big) },
    };
    for (size_t c = 0; c < 3; c++) {
        size_t n;
        uint8_t *b = put(7 + c, cases[c].f, cases[c].len, &n);
        got g = { 0 };
        char msg[512];
        assert_int_equal(load_plain(b, n, &g, msg, sizeof(msg)), 0);
        assert_int_equal(g.sections, 1);
        assert_int_equal(g.id, 7 + c);
        assert_int_equal(g.len, cases[c].len);
        assert_memory_equal(g.frame, cases[c].f, cases[c].len);
        free(b);
    }
}

static void be16_at(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* Each refusal names the section and stores nothing. */
static void refused(const uint8_t *b, size_t n, uint8_t type,
                    uint32_t instance, uint32_t version, int want,
                    const char *says)
{
    got g = { .id = 99, .len = 99 };
    char msg[512];
    assert_int_equal(load(b, n, type, instance, version, &g, msg,
                          sizeof(msg)), want);
    if (!strstr(msg, says) || !strstr(msg, "ftvm-colo-in"))
        fail_msg("refused with \"%s\", not \"%s\"", msg, says);
    assert_int_equal(g.id, 99);
    assert_int_equal(g.len, 99);
}

static void test_refused(void **state)
{
    (void)state;
    size_t n;
    uint8_t *good = put(3, frame60, sizeof(frame60), &n);
    uint8_t *b = malloc(n);

    memcpy(b, good, n);
    be16_at(b + BODY_AT + 8, 0);
    memset(b + BODY_AT + 10, 0, 60);
    refused(b, n, SAVEVM_SECTION_FULL, 0, 1, -EINVAL, "a frame of 0 bytes");

    memcpy(b, good, n);
    be16_at(b + BODY_AT + 8, 1515);
    refused(b, n, SAVEVM_SECTION_FULL, 0, 1, -EINVAL,
            "a frame of 1515 bytes");

    /* A byte past the frame: the padding must be zeros. */
    memcpy(b, good, n);
    b[BODY_AT + 10 + 60 + 100] = 1;
    refused(b, n, SAVEVM_SECTION_FULL, 0, 1, -EINVAL, "byte 160 past");
    memcpy(b, good, n);
    b[BODY_AT + 10 + 1513] = 0x80;
    refused(b, n, SAVEVM_SECTION_FULL, 0, 1, -EINVAL, "byte 1513 past");

    refused(good, n, SAVEVM_SECTION_FULL, 0, 2, -ENOTSUP, "newer");
    refused(good, n, SAVEVM_SECTION_FULL, 0, 0, -ENOTSUP, "older");
    refused(good, n, SAVEVM_SECTION_FULL, 1, 1, -EINVAL, "instance 1");
    refused(good, n, SAVEVM_SECTION_START, 0, 1, -EINVAL,
            "expected a FULL section");

    /* Cut short: the stream ends inside the frame. */
    got g = { 0 };
    char msg[512];
    assert_true(load_plain(good, BODY_AT + 500, &g, msg, sizeof(msg)) < 0);
    free(b);
    free(good);
}

/* The writer refuses what the reader would, and writes nothing. */
static void test_put_refuses(void **state)
{
    (void)state;
    static uint8_t big[COLOSEC_INPUT_FRAME_MAX + 1];
    size_t sizes[] = { 0, sizeof(big) };
    for (int i = 0; i < 2; i++) {
        qfile *f = qfile_open_mem("w");
        colosec_put_input(f, SID, 1, big, sizes[i]);
        assert_int_equal(qfile_error(f), -EINVAL);
        assert_non_null(strstr(qfile_errmsg(f), "ftvm-colo-in"));
        size_t n;
        qfile_mem_data(f, &n);
        assert_int_equal(n, 0);
        qfile_close(f);
    }
}

/* Both sections' entries, as a device's would be: 1524 bytes described. */
static void test_described(void **state)
{
    (void)state;
    json_t *devices = json_array();
    assert_int_equal(colosec_describe(devices), 0);
    char *text = json_dumps(devices, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text,
        "[{\"name\":\"ftvm-colo\",\"instance_id\":0,\"vmsd_name\":"
        "\"ftvm-colo\",\"version\":1,\"fields\":["
        "{\"name\":\"mode\",\"type\":\"uint32\",\"size\":4}]},"
        "{\"name\":\"ftvm-colo-in\",\"instance_id\":0,\"vmsd_name\":"
        "\"ftvm-colo-in\",\"version\":1,\"fields\":["
        "{\"name\":\"checkpoint\",\"type\":\"uint64\",\"size\":8},"
        "{\"name\":\"len\",\"type\":\"uint16\",\"size\":2},"
        "{\"name\":\"frame\",\"type\":\"buffer\",\"size\":1514}]},"
        "{\"name\":\"ftvm-colo-rel\",\"instance_id\":0,\"vmsd_name\":"
        "\"ftvm-colo-rel\",\"version\":1,\"fields\":["
        "{\"name\":\"checkpoint\",\"type\":\"uint64\",\"size\":8},"
        "{\"name\":\"console\",\"type\":\"uint64\",\"size\":8}]}]");
    free(text);
    json_decref(devices);
}

/* The release record: its bytes, a round trip through a loader, and
   checkpoint 0 or another section type refused. */
typedef struct rel { int n; uint64_t id, console; } rel;

static int on_release(void *opaque, qfile *f, const savevm_section *sec,
                      savevm_pass pass)
{
    (void)pass;
    rel *r = opaque;
    r->n++;
    return colosec_load_release(f, sec, &r->id, &r->console);
}

static int load_release(uint64_t id, uint64_t console, uint8_t type,
                        rel *r, char *msg, size_t msglen)
{
    qfile *w = qfile_open_mem("stream");
    savevm_put_header(w);
    size_t at;
    qfile_mem_data(w, &at);
    colosec_put_release(w, colosec_release_section_id(6), id, console);
    savevm_put_eof(w);
    size_t len;
    const uint8_t *d = qfile_mem_data(w, &len);
    uint8_t *s = malloc(len);
    memcpy(s, d, len);
    qfile_close(w);
    /* type, id 11, counted "ftvm-colo-rel", instance, version, 16, footer */
    assert_int_equal(len - at, 1 + 4 + 1 + 13 + 4 + 4 + 16 + 5 + 1);
    assert_int_equal(s[at + 4], 11);
    s[at] = type;
    static const savevm_target_ops rops = { .section = on_release };
    savevm_loader *l = savevm_loader_new(&rops, r, &(savevm_loader_opts){
                                             .footers = true });
    qfile *q = qfile_open_view(s, len, "r");
    int rc = savevm_load_header(l, q);
    savevm_stop why;
    if (rc == 0)
        rc = savevm_load_main(l, q, SAVEVM_PASS_APPLY, false, &why);
    snprintf(msg, msglen, "%s", qfile_errmsg(q));
    qfile_close(q);
    savevm_loader_free(l);
    free(s);
    return rc;
}

static void test_release(void **state)
{
    (void)state;
    rel r = { 0 };
    char msg[512];
    assert_int_equal(load_release(3, 123456789012ull, SAVEVM_SECTION_FULL,
                                  &r, msg, sizeof(msg)), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.id, 3);
    assert_int_equal(r.console, 123456789012ull);
    r = (rel){ 0 };
    assert_int_equal(load_release(0, 5, SAVEVM_SECTION_FULL, &r, msg,
                                  sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "ftvm-colo-rel"));
    assert_non_null(strstr(msg, "checkpoint 0"));
    assert_int_equal(load_release(1, 5, SAVEVM_SECTION_START, &r, msg,
                                  sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "FULL"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_put_refuses),
        cmocka_unit_test(test_described),
        cmocka_unit_test(test_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
