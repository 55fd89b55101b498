/*
 * Unit tests for devstate/vmdesc: the VM description vmstate_save writes, in
 * QEMU's shape key by key, and the decoder reading sections back
 * with it -- ours, and sections written the way QEMU writes its devices.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/ram.h"
#include "devstate/registry.h"
#include "devstate/vmdesc.h"

typedef struct inner {
    uint16_t a;
    int32_t b;
} inner;

static const vmstate_field inner_fields[] = {
    {VMSTATE_SCALAR(inner, a)},
    {VMSTATE_SCALAR(inner, b)},
    VMSTATE_END,
};
static const vmstate_desc inner_desc = {
    .name = "inner", .version = 1, .size = sizeof(inner),
    .fields = inner_fields,
};

typedef struct every {
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    int8_t i8;
    int16_t i16;
    int32_t i32;
    int64_t i64;
    bool flag;
    uint8_t buf[5];
    uint32_t vlen;
    uint8_t vbuf[100];
    uint32_t arr[3];
    uint8_t one[1];
    uint8_t n;
    int16_t varr[4];
    uint8_t none_n;
    uint8_t none[4];
    inner nested;
    inner inners[2];
    bool sub_on;
    uint32_t sub_val;
} every;

static bool sub_needed(const void *obj)
{
    return ((const every *)obj)->sub_on;
}

static const vmstate_field every_sub_fields[] = {
    {VMSTATE_SCALAR(every, sub_val)},
    VMSTATE_END,
};
static const vmstate_desc every_sub_desc = {
    .name = "every/sub", .version = 5, .fields = every_sub_fields,
};

static const vmstate_field every_fields[] = {
    {VMSTATE_SCALAR(every, u8)},
    {VMSTATE_SCALAR(every, u16)},
    {VMSTATE_SCALAR(every, u32)},
    {VMSTATE_SCALAR(every, u64)},
    {VMSTATE_SCALAR(every, i8)},
    {VMSTATE_SCALAR(every, i16)},
    {VMSTATE_SCALAR(every, i32)},
    {VMSTATE_SCALAR(every, i64)},
    {VMSTATE_SCALAR(every, flag)},
    {VMSTATE_BUFFER(every, buf)},
    {VMSTATE_SCALAR(every, vlen)},
    {VMSTATE_VBUFFER(every, vbuf, vlen)},
    {VMSTATE_ARRAY(every, arr)},
    {VMSTATE_ARRAY(every, one)},
    {VMSTATE_SCALAR(every, n)},
    {VMSTATE_VARRAY(every, varr, n)},
    {VMSTATE_SCALAR(every, none_n)},
    {VMSTATE_VARRAY(every, none, none_n)},
    {VMSTATE_STRUCT(every, nested, inner_desc)},
    {VMSTATE_STRUCT_ARRAY(every, inners, inner_desc)},
    VMSTATE_END,
};
static const vmstate_desc every_desc = {
    .name = "every",
    .version = 2,
    .minimum_version = 1,
    .size = sizeof(every),
    .fields = every_fields,
    .subsections =
        (const vmstate_subsection[]){
            {&every_sub_desc, sub_needed},
            {NULL, NULL},
        },
};

static void every_init(every *e)
{
    memset(e, 0, sizeof(*e));
    e->u8 = 200;
    e->u16 = 65535;
    e->u32 = 4000000000u;
    e->u64 = UINT64_MAX;
    e->i8 = -128;
    e->i16 = -300;
    e->i32 = -70000;
    e->i64 = INT64_MIN;
    e->flag = true;
    memcpy(e->buf, "\x00\x01\xab\xcd\xff", 5);
    e->vlen = 70;
    for (int i = 0; i < 70; i++)
        e->vbuf[i] = (uint8_t)i;
    e->arr[0] = 1;
    e->arr[1] = 2;
    e->arr[2] = 3;
    e->one[0] = 42;
    e->n = 2;
    e->varr[0] = -1;
    e->varr[1] = 1;
    e->nested = (inner){ 7, -7 };
    e->inners[0] = (inner){ 1, -1 };
    e->inners[1] = (inner){ 2, -2 };
    e->sub_on = true;
    e->sub_val = 0xfeedface;
}

static const char inner_json[] =
    "{\"vmsd_name\":\"inner\",\"version\":1,\"fields\":["
    "{\"name\":\"a\",\"type\":\"uint16\",\"size\":2},"
    "{\"name\":\"b\",\"type\":\"int32\",\"size\":4}]}";

static char *expected_every_json(void)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf),
        "{\"name\":\"every\",\"instance_id\":0,"
        "\"vmsd_name\":\"every\",\"version\":2,\"fields\":["
        "{\"name\":\"u8\",\"type\":\"uint8\",\"size\":1},"
        "{\"name\":\"u16\",\"type\":\"uint16\",\"size\":2},"
        "{\"name\":\"u32\",\"type\":\"uint32\",\"size\":4},"
        "{\"name\":\"u64\",\"type\":\"uint64\",\"size\":8},"
        "{\"name\":\"i8\",\"type\":\"int8\",\"size\":1},"
        "{\"name\":\"i16\",\"type\":\"int16\",\"size\":2},"
        "{\"name\":\"i32\",\"type\":\"int32\",\"size\":4},"
        "{\"name\":\"i64\",\"type\":\"int64\",\"size\":8},"
        "{\"name\":\"flag\",\"type\":\"bool\",\"size\":1},"
        "{\"name\":\"buf\",\"type\":\"buffer\",\"size\":5},"
        "{\"name\":\"vlen\",\"type\":\"uint32\",\"size\":4},"
        "{\"name\":\"vbuf\",\"type\":\"buffer\",\"length_from\":\"vlen\","
        "\"size\":70},"
        "{\"name\":\"arr\",\"array_len\":3,\"type\":\"uint32\",\"size\":4},"
        "{\"name\":\"one\",\"type\":\"uint8\",\"size\":1},"
        "{\"name\":\"n\",\"type\":\"uint8\",\"size\":1},"
        "{\"name\":\"varr\",\"array_len\":2,\"type\":\"int16\","
        "\"length_from\":\"n\",\"size\":2},"
        "{\"name\":\"none_n\",\"type\":\"uint8\",\"size\":1},"
        "{\"name\":\"none\",\"array_len\":0,\"type\":\"uint8\","
        "\"length_from\":\"none_n\",\"size\":0},"
        "{\"name\":\"nested\",\"type\":\"struct\",\"struct\":%s,\"size\":6},"
        "{\"name\":\"inners\",\"array_len\":2,\"type\":\"struct\","
        "\"struct\":%s,\"size\":6}],"
        "\"subsections\":[{\"vmsd_name\":\"every/sub\",\"version\":5,"
        "\"fields\":[{\"name\":\"sub_val\",\"type\":\"uint32\",\"size\":4}]}]}",
        inner_json, inner_json);
    return buf;
}

typedef struct saved {
    uint8_t *data;
    size_t len;
    json_t *dev;
} saved;

static saved save_dev(const vmstate_desc *d, const void *obj, const char *idstr)
{
    json_t *devs = json_array();
    json_t *dev = vmdesc_add_device(devs, idstr, 0);
    qfile *f = qfile_open_mem("out");
    assert_int_equal(vmstate_save(f, d, obj, dev), 0);
    size_t len;
    const uint8_t *p = qfile_mem_data(f, &len);
    saved s = { malloc(len + 1), len, json_incref(dev) };
    memcpy(s.data, p, len);
    qfile_close(f);
    json_decref(devs);
    return s;
}

static void assert_json_text(const json_t *j, const char *want)
{
    char *got = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (strcmp(got, want) != 0)
        fail_msg("got  %s\nwant %s", got, want);
    free(got);
}

/* ---- the description ---- */

static void test_shape_every_type(void **state)
{
    (void)state;
    every e;
    every_init(&e);
    saved s = save_dev(&every_desc, &e, "every");
    assert_json_text(s.dev, expected_every_json());

    /* Not needed: no "subsections" key at all, as QEMU does. */
    e.sub_on = false;
    saved t = save_dev(&every_desc, &e, "every");
    assert_null(json_object_get(t.dev, "subsections"));
    json_decref(t.dev);
    free(t.data);
    json_decref(s.dev);
    free(s.data);
}

static void test_top_level_and_dump(void **state)
{
    (void)state;
    json_t *vmdesc = vmdesc_new(VMDESC_PAGE_SIZE);
    json_t *devs = vmdesc_devices(vmdesc);
    assert_non_null(devs);
    assert_non_null(vmdesc_add_device(devs, "serial", 1));
    size_t len;
    char *text = vmdesc_dump(vmdesc, &len);
    assert_string_equal(text, "{\"page_size\":4096,\"devices\":"
                              "[{\"name\":\"serial\",\"instance_id\":1}]}");
    assert_int_equal(len, strlen(text));
    assert_non_null(vmdesc_find_device(vmdesc, "serial", 1));
    assert_null(vmdesc_find_device(vmdesc, "serial", 0));
    free(text);
    json_decref(vmdesc);
}

/* A struct with subsections cannot be described once for all elements. */
typedef struct ranged {
    inner v;
    bool extra;
} ranged;

static bool ranged_needed(const void *obj)
{
    return ((const ranged *)obj)->extra;
}

static const vmstate_field ranged_sub_fields[] = {
    {VMSTATE_SCALAR(ranged, extra)},
    VMSTATE_END,
};
static const vmstate_desc ranged_sub_desc = {
    .name = "ranged/extra", .version = 1, .fields = ranged_sub_fields,
};
static const vmstate_field ranged_fields[] = {
    {VMSTATE_STRUCT(ranged, v, inner_desc)},
    VMSTATE_END,
};
static const vmstate_desc ranged_desc = {
    .name = "ranged",
    .version = 1,
    .size = sizeof(ranged),
    .fields = ranged_fields,
    .subsections =
        (const vmstate_subsection[]){
            {&ranged_sub_desc, ranged_needed},
            {NULL, NULL},
        },
};

typedef struct holder {
    ranged r[2];
} holder;

static const vmstate_field holder_fields[] = {
    {VMSTATE_STRUCT_ARRAY(holder, r, ranged_desc)},
    VMSTATE_END,
};
static const vmstate_desc holder_desc = {
    .name = "holder", .version = 1, .size = sizeof(holder),
    .fields = holder_fields,
};

static void test_shape_indexed_structs(void **state)
{
    (void)state;
    holder h = { { { { 1, 2 }, false }, { { 3, 4 }, true } } };
    saved s = save_dev(&holder_desc, &h, "h");
    char want[2048];
    snprintf(want, sizeof(want),
        "{\"name\":\"h\",\"instance_id\":0,\"vmsd_name\":\"holder\","
        "\"version\":1,\"fields\":["
        "{\"name\":\"r\",\"index\":0,\"type\":\"struct\",\"struct\":"
        "{\"vmsd_name\":\"ranged\",\"version\":1,\"fields\":["
        "{\"name\":\"v\",\"type\":\"struct\",\"struct\":%s,\"size\":6}]},"
        "\"size\":6},"
        "{\"name\":\"r\",\"index\":1,\"type\":\"struct\",\"struct\":"
        "{\"vmsd_name\":\"ranged\",\"version\":1,\"fields\":["
        "{\"name\":\"v\",\"type\":\"struct\",\"struct\":%s,\"size\":6}],"
        "\"subsections\":[{\"vmsd_name\":\"ranged/extra\",\"version\":1,"
        "\"fields\":[{\"name\":\"extra\",\"type\":\"bool\",\"size\":1}]}]},"
        "\"size\":25}]}", inner_json, inner_json);
    assert_json_text(s.dev, want);

    json_t *values;
    qfile *f = qfile_open_view(s.data, s.len, "in");
    assert_int_equal(vmdesc_decode(f, s.dev, &values), 0);
    assert_true(qfile_at_eof(f));
    assert_json_text(values, "{\"r\":[{\"v\":{\"a\":1,\"b\":2}},"
                             "{\"v\":{\"a\":3,\"b\":4},"
                             "\"ranged/extra\":{\"extra\":true}}]}");
    json_decref(values);
    qfile_close(f);
    json_decref(s.dev);
    free(s.data);
}

/* ---- decoding our own sections ---- */

/*
 * A variable array of structs that hold a variable buffer (a NIC's receive
 * queue): the elements differ in size, and the description, which says the
 * first element's, must still decode them all -- and a save with other
 * lengths, as a replication package decoded with a file's description.
 */
typedef struct frame {
    uint16_t len;
    uint8_t data[16];
} frame;

static const vmstate_field frame_fields[] = {
    {VMSTATE_SCALAR(frame, len)},
    {VMSTATE_VBUFFER(frame, data, len)},
    VMSTATE_END,
};
static const vmstate_desc frame_desc = {
    .name = "frame", .version = 1, .size = sizeof(frame),
    .fields = frame_fields,
};

typedef struct queue {
    uint32_t count;
    frame frames[4];
} queue;

static const vmstate_field queue_fields[] = {
    {VMSTATE_SCALAR(queue, count)},
    {VMSTATE_STRUCT_VARRAY(queue, frames, count, frame_desc)},
    VMSTATE_END,
};
static const vmstate_desc queue_desc = {
    .name = "queue", .version = 1, .size = sizeof(queue),
    .fields = queue_fields,
};

static void test_decode_frames_of_other_lengths(void **state)
{
    (void)state;
    queue q = { .count = 2, .frames = { { 2, "ab" }, { 5, "cdefg" } } };
    saved s = save_dev(&queue_desc, &q, "q");
    queue other = { .count = 3,
                    .frames = { { 0, "" }, { 9, "hijklmnop" }, { 1, "q" } } };
    saved t = save_dev(&queue_desc, &other, "q");
    /* Each element described with its own sizes, as QEMU's reader reads. */
    assert_json_text(s.dev,
        "{\"name\":\"q\",\"instance_id\":0,\"vmsd_name\":\"queue\","
        "\"version\":1,\"fields\":["
        "{\"name\":\"count\",\"type\":\"uint32\",\"size\":4},"
        "{\"name\":\"frames\",\"index\":0,\"type\":\"struct\","
        "\"length_from\":\"count\",\"struct\":{\"vmsd_name\":\"frame\","
        "\"version\":1,\"fields\":["
        "{\"name\":\"len\",\"type\":\"uint16\",\"size\":2},"
        "{\"name\":\"data\",\"type\":\"buffer\",\"length_from\":\"len\","
        "\"size\":2}]},\"size\":4},"
        "{\"name\":\"frames\",\"index\":1,\"type\":\"struct\","
        "\"length_from\":\"count\",\"struct\":{\"vmsd_name\":\"frame\","
        "\"version\":1,\"fields\":["
        "{\"name\":\"len\",\"type\":\"uint16\",\"size\":2},"
        "{\"name\":\"data\",\"type\":\"buffer\",\"length_from\":\"len\","
        "\"size\":5}]},\"size\":7}]}");

    json_t *values;
    qfile *f = qfile_open_view(s.data, s.len, "in");
    if (vmdesc_decode(f, s.dev, &values) < 0)
        fail_msg("%s", qfile_errmsg(f));
    assert_true(qfile_at_eof(f));
    assert_json_text(values, "{\"count\":2,\"frames\":["
                             "{\"len\":2,\"data\":\"6162\"},"
                             "{\"len\":5,\"data\":\"6364656667\"}]}");
    json_decref(values);
    qfile_close(f);

    f = qfile_open_view(t.data, t.len, "other");
    if (vmdesc_decode(f, s.dev, &values) < 0)
        fail_msg("%s", qfile_errmsg(f));
    assert_true(qfile_at_eof(f));
    assert_json_text(values, "{\"count\":3,\"frames\":["
                             "{\"len\":0,\"data\":\"\"},"
                             "{\"len\":9,\"data\":\"68696a6b6c6d6e6f70\"},"
                             "{\"len\":1,\"data\":\"71\"}]}");
    json_decref(values);
    qfile_close(f);

    /*
     * An empty queue is described as QEMU's reader reads it (one element
     * of nothing); it decodes empty saves, and says why it cannot decode
     * others rather than misread them.
     */
    queue none = { 0 };
    saved e = save_dev(&queue_desc, &none, "q");
    assert_json_text(e.dev,
        "{\"name\":\"q\",\"instance_id\":0,\"vmsd_name\":\"queue\","
        "\"version\":1,\"fields\":["
        "{\"name\":\"count\",\"type\":\"uint32\",\"size\":4},"
        "{\"name\":\"frames\",\"array_len\":0,\"type\":\"struct\","
        "\"length_from\":\"count\",\"struct\":{\"vmsd_name\":\"frame\","
        "\"version\":1,\"fields\":[]},\"size\":0}]}");
    f = qfile_open_view(e.data, e.len, "empty");
    assert_int_equal(vmdesc_decode(f, s.dev, &values), 0);
    assert_true(qfile_at_eof(f));
    assert_json_text(values, "{\"count\":0,\"frames\":[]}");
    json_decref(values);
    qfile_close(f);
    f = qfile_open_view(s.data, s.len, "in");
    assert_int_equal(vmdesc_decode(f, e.dev, &values), -ENOENT);
    assert_non_null(strstr(qfile_errmsg(f), "field 'frames': the description "
                                            "comes from a save with no "
                                            "element here"));
    qfile_close(f);
    json_decref(e.dev);
    free(e.data);

    /* A struct of fixed layout still takes exactly its described size. */
    json_t *wrong = json_deep_copy(s.dev);
    json_t *frames = json_array_get(json_object_get(wrong, "fields"), 1);
    json_t *lenf = json_array_get(json_object_get(json_object_get(frames,
                                  "struct"), "fields"), 1);
    json_object_del(lenf, "length_from");
    json_object_set_new(frames, "size", json_integer(5));
    f = qfile_open_view(s.data, s.len, "in");
    assert_int_equal(vmdesc_decode(f, wrong, &values), -EINVAL);
    assert_non_null(strstr(qfile_errmsg(f), "field 'frames[0]': struct took "
                                            "4 bytes, the description says "
                                            "5"));
    qfile_close(f);
    json_decref(wrong);
    json_decref(s.dev);
    json_decref(t.dev);
    free(s.data);
    free(t.data);
}

static void test_decode_roundtrip(void **state)
{
    (void)state;
    every e;
    every_init(&e);
    saved s = save_dev(&every_desc, &e, "every");
    json_t *values;
    qfile *f = qfile_open_view(s.data, s.len, "in");
    assert_int_equal(vmdesc_decode(f, s.dev, &values), 0);
    assert_true(qfile_at_eof(f));
    qfile_close(f);

    char vbuf_hex[160] = "";
    for (int i = 0; i < 32; i++)
        sprintf(vbuf_hex + 2 * i, "%02x", i);
    char want[2048];
    snprintf(want, sizeof(want),
        "{\"u8\":200,\"u16\":65535,\"u32\":4000000000,"
        "\"u64\":\"0xffffffffffffffff\",\"i8\":-128,\"i16\":-300,"
        "\"i32\":-70000,\"i64\":-9223372036854775808,\"flag\":true,"
        "\"buf\":\"0001abcdff\",\"vlen\":70,"
        "\"vbuf\":\"%s... (70 bytes)\",\"arr\":[1,2,3],\"one\":42,\"n\":2,"
        "\"varr\":[-1,1],\"none_n\":0,\"none\":[],"
        "\"nested\":{\"a\":7,\"b\":-7},"
        "\"inners\":[{\"a\":1,\"b\":-1},{\"a\":2,\"b\":-2}],"
        "\"every/sub\":{\"sub_val\":4277009102}}", vbuf_hex);
    assert_json_text(values, want);
    json_decref(values);
    json_decref(s.dev);
    free(s.data);
}

static void test_decode_errors(void **state)
{
    (void)state;
    every e;
    every_init(&e);
    saved s = save_dev(&every_desc, &e, "every");
    json_t *values = NULL;

    /* Cut short anywhere: an error naming the device and a field. */
    for (size_t len = 0; len < s.len; len++) {
        qfile *f = qfile_open_view(s.data, len, "in");
        assert_int_equal(vmdesc_decode(f, s.dev, &values), -ENODATA);
        assert_null(values);
        assert_non_null(strstr(qfile_errmsg(f), "device 'every'"));
        if (len < 80)
            assert_non_null(strstr(qfile_errmsg(f), "field '"));
        qfile_close(f);
    }

    /* A subsection the description does not list. */
    json_t *nosub = json_deep_copy(s.dev);
    json_object_del(nosub, "subsections");
    qfile *f = qfile_open_view(s.data, s.len, "in");
    assert_int_equal(vmdesc_decode(f, nosub, &values), -ENOENT);
    assert_non_null(strstr(qfile_errmsg(f), "subsection 'every/sub' is not in "
                                            "the description"));
    qfile_close(f);
    json_decref(nosub);

    /* A listed subsection that is not there. */
    e.sub_on = false;
    saved t = save_dev(&every_desc, &e, "every");
    t.data[t.len] = SAVEVM_SECTION_FOOTER;
    f = qfile_open_view(t.data, t.len + 1, "in");
    assert_int_equal(vmdesc_decode(f, s.dev, &values), -EINVAL);
    assert_non_null(strstr(qfile_errmsg(f), "subsection 'every/sub' missing: "
                                            "found byte 0x7e"));
    qfile_close(f);
    f = qfile_open_view(t.data, t.len, "in");
    assert_int_equal(vmdesc_decode(f, s.dev, &values), -ENODATA);
    qfile_close(f);
    json_decref(t.dev);
    free(t.data);

    /* Junk descriptions are refused, not followed. */
    json_t *junk = json_loads("{\"name\":\"j\",\"fields\":[{\"name\":\"x\","
                              "\"type\":\"mystery\"}]}", 0, NULL);
    f = qfile_open_view(s.data, s.len, "in");
    assert_int_equal(vmdesc_decode(f, junk, &values), -EINVAL);
    assert_non_null(strstr(qfile_errmsg(f), "device 'j' field 'x'"));
    qfile_close(f);
    json_decref(junk);
    json_decref(s.dev);
    free(s.data);
}

/* ---- sections as QEMU writes them ---- */

static void test_decode_qemu_types(void **state)
{
    (void)state;
    static const char desc[] =
        "{\"name\":\"qdev\",\"instance_id\":0,\"vmsd_name\":\"qdev\","
        "\"version\":3,\"fields\":["
        "{\"name\":\"magic\",\"type\":\"uint32 equal\",\"size\":4},"
        "{\"name\":\"le\",\"type\":\"int32 le\",\"size\":4},"
        "{\"name\":\"t\",\"type\":\"timer\",\"size\":8},"
        "{\"name\":\"unused\",\"type\":\"unused_buffer\",\"size\":3},"
        "{\"name\":\"fp\",\"type\":\"cpu_double_U\",\"size\":8},"
        "{\"name\":\"bits\",\"type\":\"bitmap\",\"size\":2},"
        "{\"name\":\"cap\",\"type\":\"capability\",\"size\":4},"
        "{\"name\":\"regs\",\"index\":0,\"type\":\"struct\",\"struct\":"
        "{\"vmsd_name\":\"reg\",\"version\":1,\"fields\":["
        "{\"name\":\"v\",\"type\":\"uint16\",\"size\":2}],"
        "\"subsections\":[{\"vmsd_name\":\"reg/hi\",\"version\":1,"
        "\"fields\":[{\"name\":\"hi\",\"type\":\"uint8\",\"size\":1}]}]},"
        "\"size\":15},"
        "{\"name\":\"regs\",\"index\":1,\"type\":\"struct\",\"struct\":"
        "{\"vmsd_name\":\"reg\",\"version\":1,\"fields\":["
        "{\"name\":\"v\",\"type\":\"uint16\",\"size\":2}]},\"size\":2},"
        "{\"name\":\"tmp\",\"type\":\"tmp\",\"vmsd_name\":\"fp_tmp\","
        "\"version\":0,\"fields\":[{\"name\":\"e\",\"type\":\"uint16\","
        "\"size\":2}],\"size\":2},"
        "{\"name\":\"big\",\"type\":\"buffer\",\"size\":4096}]}";
    static const uint8_t head[] = {
        0xca, 0xfe, 0xba, 0xbe,
        0xff, 0xff, 0xff, 0xfe,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        1, 2, 3,
        0x3f, 0xf0, 0, 0, 0, 0, 0, 0,
        0x80, 0x01,
        3, 'x', 'y', 'z',
        0x12, 0x34, 0x05, 6, 'r', 'e', 'g', '/', 'h', 'i', 0, 0, 0, 1, 0x99,
        0x56, 0x78,
        0x40, 0x00,
    };
    uint8_t bytes[sizeof(head) + 4096];
    memcpy(bytes, head, sizeof(head));
    memset(bytes + sizeof(head), 0xee, 4096);

    json_t *d = json_loads(desc, 0, NULL);
    assert_non_null(d);
    json_t *values;
    qfile *f = qfile_open_view(bytes, sizeof(bytes), "in");
    int rc = vmdesc_decode(f, d, &values);
    if (rc)
        fail_msg("%s", qfile_errmsg(f));
    assert_true(qfile_at_eof(f));
    char big[128] = "";
    for (int i = 0; i < 32; i++)
        strcat(big, "ee");
    char want[1024];
    snprintf(want, sizeof(want),
        "{\"magic\":3405691582,\"le\":-2,\"t\":-1,\"unused\":\"010203\","
        "\"fp\":\"3ff0000000000000\",\"bits\":\"8001\",\"cap\":\"xyz\","
        "\"regs\":[{\"v\":4660,\"reg/hi\":{\"hi\":153}},{\"v\":22136}],"
        "\"tmp\":{\"e\":16384},"
        "\"big\":\"%s... (4096 bytes)\"}", big);
    assert_json_text(values, want);
    json_decref(values);
    qfile_close(f);

    /* An old-style section: one buffer of its whole size. */
    json_t *old = json_loads("{\"name\":\"old\",\"instance_id\":0,"
                             "\"size\":3,\"fields\":[{\"name\":\"data\","
                             "\"size\":3,\"type\":\"buffer\"}]}", 0, NULL);
    f = qfile_open_view(bytes, 3, "in");
    assert_int_equal(vmdesc_decode(f, old, &values), 0);
    assert_json_text(values, "{\"data\":\"cafeba\"}");
    json_decref(values);
    qfile_close(f);
    json_decref(old);
    json_decref(d);
}

/* ---- real QEMU 7.2 streams, when tests/qemu has them ---- */

typedef struct qemu_target {
    const json_t *vmdesc;
    ram_loader *ram;
    int decoded;
    json_t *globalstate;
} qemu_target;

static int qemu_section(void *opaque, qfile *f, const savevm_section *sec,
                        savevm_pass pass)
{
    qemu_target *t = opaque;

    if (strcmp(sec->idstr, RAM_SECTION_IDSTR) == 0) {
        if (!t->ram && ram_loader_new_inspect(&t->ram) < 0)
            return qfile_fail(f, -ENOMEM, "no ram loader");
        return ram_load(t->ram, f, sec->version_id, pass);
    }
    json_t *dev = vmdesc_find_device(t->vmdesc, sec->idstr, sec->instance_id);
    if (!dev)
        return qfile_fail(f, -ENOENT, "'%s' %u is not described", sec->idstr,
                          sec->instance_id);
    json_t *values;
    int rc = vmdesc_decode(f, dev, &values);
    if (rc < 0)
        return rc;
    t->decoded++;
    /* "int32 le" is big-endian: PCIDevice's version_id reads as 2. */
    if (strstr(sec->idstr, "/ide")) {
        json_t *pci = json_object_get(values, "parent_obj");
        assert_int_equal(json_integer_value(json_object_get(pci,
                                                            "version_id")),
                         2);
    }
    if (strcmp(sec->idstr, "globalstate") == 0 && !t->globalstate)
        t->globalstate = json_incref(values);
    json_decref(values);
    return 0;
}

/* The description is the last record: 0x06, be32 length, the JSON. */
static json_t *trailing_vmdesc(const uint8_t *d, size_t len)
{
    for (size_t p = len >= 6 ? len - 6 : 0; p > 0; p--) {
        if (d[p] != SAVEVM_VMDESCRIPTION || d[p + 5] != '{')
            continue;
        uint32_t n = (uint32_t)d[p + 1] << 24 | (uint32_t)d[p + 2] << 16 |
                     (uint32_t)d[p + 3] << 8 | d[p + 4];
        if (p + 5 + (size_t)n == len)
            return json_loadb((const char *)d + p + 5, n, 0, NULL);
    }
    return NULL;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n);
    *len = fread(buf, 1, (size_t)n, fp);
    fclose(fp);
    return buf;
}

/*
 * FTVM_QEMU_STREAMS, else tests/qemu found from this file's compile-time
 * path (relative to the build directory meson runs tests in), else from a
 * shell in the source tree.
 */
static void qemu_stream_dir(char *out, size_t len)
{
    const char *env = getenv("FTVM_QEMU_STREAMS");
    if (env) {
        snprintf(out, len, "%s", env);
        return;
    }
    snprintf(out, len, "%s", __FILE__);
    char *tail = strstr(out, "unit/test_vmdesc.c");
    if (tail)
        snprintf(tail, len - (size_t)(tail - out), "qemu");
    DIR *dir = opendir(out);
    if (dir)
        closedir(dir);
    else
        snprintf(out, len, "tests/qemu");
}

static void test_decode_qemu_streams(void **state)
{
    (void)state;
    static const char *const names[] = { "plain", "compress", "xbzrle" };
    char dir[512];

    qemu_stream_dir(dir, sizeof(dir));
    for (size_t i = 0; i < 3; i++) {
        char path[600];
        size_t len = 0;
        snprintf(path, sizeof(path), "%s/%s.qemu", dir, names[i]);
        uint8_t *data = read_file(path, &len);
        /* They are part of the tree: one missing is a broken checkout. */
        if (!data)
            fail_msg("%s: cannot read this QEMU stream", path);
        json_t *vmdesc = trailing_vmdesc(data, len);
        assert_non_null(vmdesc);
        size_t ndev = json_array_size(vmdesc_devices(vmdesc));

        qemu_target t = { .vmdesc = vmdesc };
        savevm_target_ops ops = {.section = qemu_section};
        savevm_loader *l = savevm_loader_new(&ops, &t, NULL);
        qfile *f = qfile_open_view(data, len, path);
        savevm_stop why;
        if (savevm_load_header(l, f) < 0 ||
            savevm_load_main(l, f, SAVEVM_PASS_VALIDATE, false, &why) < 0)
            fail_msg("%s", qfile_errmsg(f));
        assert_int_equal(t.decoded, ndev);
        print_message("%s: %d devices decoded\n", names[i], t.decoded);

        /* globalstate: a be32 length and a 100-byte buffer, "running". */
        assert_non_null(t.globalstate);
        assert_int_equal(json_integer_value(json_object_get(t.globalstate,
                                                            "size")), 8);
        const char *rs = json_string_value(json_object_get(t.globalstate,
                                                           "runstate"));
        assert_non_null(rs);
        assert_memory_equal(rs, "72756e6e696e6700", 16);

        json_decref(t.globalstate);
        ram_loader_free(t.ram);
        qfile_close(f);
        savevm_loader_free(l);
        json_decref(vmdesc);
        free(data);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_every_type),
        cmocka_unit_test(test_top_level_and_dump),
        cmocka_unit_test(test_shape_indexed_structs),
        cmocka_unit_test(test_decode_roundtrip),
        cmocka_unit_test(test_decode_frames_of_other_lengths),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_decode_qemu_types),
        cmocka_unit_test(test_decode_qemu_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
