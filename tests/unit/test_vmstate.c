/*
 * Unit tests for devstate/vmstate: the encoding of every field type, round
 * trips through a memory channel, versions, subsections, hooks, and the
 * promise that VALIDATE changes nothing, whatever the bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "devstate/vmstate.h"

/* ---- the structs under test ---- */

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

#define PBUF_MAX 32
#define PARR_MAX 4

typedef struct all {
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
    uint8_t vbuf[16];
    uint16_t plen;
    uint8_t *pbuf;
    uint32_t arr[3];
    uint8_t acount;
    int16_t varr[4];
    uint8_t pcount;
    uint64_t *parr;
    bool flags[2];
    inner nested;
    inner inners[2];
    uint32_t ninner;
    inner vinners[3];
} all;

static const vmstate_field all_fields[] = {
    {VMSTATE_SCALAR(all, u8)},
    {VMSTATE_SCALAR(all, u16)},
    {VMSTATE_SCALAR(all, u32)},
    {VMSTATE_SCALAR(all, u64)},
    {VMSTATE_SCALAR(all, i8)},
    {VMSTATE_SCALAR(all, i16)},
    {VMSTATE_SCALAR(all, i32)},
    {VMSTATE_SCALAR(all, i64)},
    {VMSTATE_SCALAR(all, flag)},
    {VMSTATE_BUFFER(all, buf)},
    {VMSTATE_SCALAR(all, vlen)},
    {VMSTATE_VBUFFER(all, vbuf, vlen)},
    {VMSTATE_SCALAR(all, plen)},
    {VMSTATE_VBUFFER_PTR(all, pbuf, plen, PBUF_MAX)},
    {VMSTATE_ARRAY(all, arr)},
    {VMSTATE_SCALAR(all, acount)},
    {VMSTATE_VARRAY(all, varr, acount)},
    {VMSTATE_SCALAR(all, pcount)},
    {VMSTATE_VARRAY_PTR(all, parr, pcount, PARR_MAX)},
    {VMSTATE_ARRAY(all, flags)},
    {VMSTATE_STRUCT(all, nested, inner_desc)},
    {VMSTATE_STRUCT_ARRAY(all, inners, inner_desc)},
    {VMSTATE_SCALAR(all, ninner)},
    {VMSTATE_STRUCT_VARRAY(all, vinners, ninner, inner_desc)},
    VMSTATE_END,
};
static const vmstate_desc all_desc = {
    .name = "all", .version = 1, .size = sizeof(all), .fields = all_fields,
};

/* Each object owns its pointed-to storage, so tests can compare it. */
typedef struct all_obj {
    all s;
    uint8_t pbuf[PBUF_MAX];
    uint64_t parr[PARR_MAX];
} all_obj;

static void all_init(all_obj *o, int seed)
{
    memset(o, 0, sizeof(*o));
    o->s.pbuf = o->pbuf;
    o->s.parr = o->parr;
    if (!seed)
        return;
    all *s = &o->s;
    s->u8 = 0xff;
    s->u16 = 0xfffe;
    s->u32 = 0x80000001u;
    s->u64 = UINT64_MAX;
    s->i8 = INT8_MIN;
    s->i16 = -2;
    s->i32 = INT32_MIN;
    s->i64 = INT64_MIN + 7;
    s->flag = true;
    memcpy(s->buf, "\x01\x02\x03\x04\x05", 5);
    s->vlen = 16;
    for (int i = 0; i < 16; i++)
        s->vbuf[i] = (uint8_t)(0xa0 + i);
    s->plen = 7;
    memcpy(o->pbuf, "pointed", 7);
    s->arr[0] = 1;
    s->arr[1] = 0xdeadbeef;
    s->arr[2] = 3;
    s->acount = 2;
    s->varr[0] = INT16_MIN;
    s->varr[1] = INT16_MAX;
    s->pcount = 3;
    o->parr[0] = 0x0102030405060708ull;
    o->parr[1] = 0;
    o->parr[2] = UINT64_MAX - 1;
    s->flags[1] = true;
    s->nested = (inner){ 0x1234, -5 };
    s->inners[0] = (inner){ 1, 2 };
    s->inners[1] = (inner){ 3, INT32_MAX };
    s->ninner = 2;
    s->vinners[0] = (inner){ 9, -9 };
    s->vinners[1] = (inner){ 10, -10 };
}

/* Byte-for-byte image of an object and its storage, pointers excluded. */
static void all_snapshot(const all_obj *o, all_obj *snap)
{
    memcpy(snap, o, sizeof(*snap));
    snap->s.pbuf = NULL;
    snap->s.parr = NULL;
}

static void assert_all_unchanged(const all_obj *o, const all_obj *before)
{
    all_obj now;
    all_snapshot(o, &now);
    assert_memory_equal(&now, before, sizeof(now));
    assert_ptr_equal(o->s.pbuf, o->pbuf);
    assert_ptr_equal(o->s.parr, o->parr);
}

/* ---- helpers ---- */

typedef struct blob {
    uint8_t *data;
    size_t len;
} blob;

static blob save(const vmstate_desc *d, const void *obj)
{
    qfile *f = qfile_open_mem("test");
    assert_int_equal(vmstate_save(f, d, obj, NULL), 0);
    size_t len;
    const uint8_t *p = qfile_mem_data(f, &len);
    blob b = { malloc(len + 1), len };
    memcpy(b.data, p, len);
    assert_int_equal(qfile_close(f), 0);
    return b;
}

/* Loads b (whole: the load must consume every byte) and returns the error. */
static int load(const blob *b, size_t len, const vmstate_desc *d, void *obj,
                uint32_t version, savevm_pass pass, char *msg, size_t msglen)
{
    qfile *f = qfile_open_view(b->data, len, "test");
    int rc = vmstate_load(f, d, obj, version, pass);
    if (rc == 0)
        assert_true(qfile_at_eof(f));
    if (msg)
        snprintf(msg, msglen, "%s", qfile_errmsg(f));
    qfile_close(f);
    return rc;
}

static int load_both(const blob *b, const vmstate_desc *d, void *obj,
                     uint32_t version)
{
    int rc = load(b, b->len, d, obj, version, SAVEVM_PASS_VALIDATE, NULL, 0);
    if (rc == 0)
        rc = load(b, b->len, d, obj, version, SAVEVM_PASS_APPLY, NULL, 0);
    return rc;
}

/* ---- encoding ---- */

typedef struct scalars {
    uint16_t u16;
    int32_t i32;
    bool t, f;
    int8_t i8;
    uint64_t u64;
    int64_t i64;
    uint8_t buf[3];
} scalars;

static const vmstate_field scalars_fields[] = {
    {VMSTATE_SCALAR(scalars, u16)},
    {VMSTATE_SCALAR(scalars, i32)},
    {VMSTATE_SCALAR(scalars, t)},
    {VMSTATE_SCALAR(scalars, f)},
    {VMSTATE_SCALAR(scalars, i8)},
    {VMSTATE_SCALAR(scalars, u64)},
    {VMSTATE_SCALAR(scalars, i64)},
    {VMSTATE_BUFFER(scalars, buf)},
    VMSTATE_END,
};
static const vmstate_desc scalars_desc = {
    .name = "scalars", .version = 1, .size = sizeof(scalars),
    .fields = scalars_fields,
};

static void test_encoding_bytes(void **state)
{
    (void)state;
    scalars s = { 0x1234, -2, true, false, -1, 0x0102030405060708ull,
                  INT64_MIN, { 'a', 'b', 'c' } };
    static const uint8_t want[] = {
        0x12, 0x34,
        0xff, 0xff, 0xff, 0xfe,
        0x01,
        0x00,
        0xff,
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        'a', 'b', 'c',
    };
    blob b = save(&scalars_desc, &s);
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));

    scalars back;
    memset(&back, 0x55, sizeof(back));
    assert_int_equal(load_both(&b, &scalars_desc, &back, 1), 0);
    assert_int_equal(back.u16, 0x1234);
    assert_int_equal(back.i32, -2);
    assert_true(back.t);
    assert_false(back.f);
    assert_int_equal(back.i8, -1);
    assert_true(back.u64 == 0x0102030405060708ull);
    assert_true(back.i64 == INT64_MIN);
    assert_memory_equal(back.buf, "abc", 3);
    free(b.data);
}

static void test_arrays_and_buffers_bytes(void **state)
{
    (void)state;
    all_obj o;
    all_init(&o, 1);
    blob b = save(&all_desc, &o.s);
    /* Skip the scalars (1+2+4+8+1+2+4+8+1 = 31) and the fixed buffer. */
    const uint8_t *p = b.data + 31 + 5;
    assert_memory_equal(p, "\x00\x00\x00\x10", 4);      /* vlen */
    assert_int_equal(p[4], 0xa0);                       /* vbuf */
    assert_int_equal(p[4 + 15], 0xaf);
    p += 4 + 16;
    assert_memory_equal(p, "\x00\x07" "pointed", 9);    /* plen, pbuf */
    p += 9;
    assert_memory_equal(p, "\x00\x00\x00\x01\xde\xad\xbe\xef\x00\x00\x00\x03",
                        12);                            /* arr */
    p += 12;
    assert_memory_equal(p, "\x02\x80\x00\x7f\xff", 5);  /* acount, varr[2] */
    p += 5;
    assert_int_equal(p[0], 3);                          /* pcount */
    assert_memory_equal(p + 1, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    p += 1 + 24;
    assert_memory_equal(p, "\x00\x01", 2);              /* flags */
    p += 2;
    assert_memory_equal(p, "\x12\x34\xff\xff\xff\xfb", 6);  /* nested */
    p += 6 + 12;                                        /* inners[2] */
    assert_memory_equal(p, "\x00\x00\x00\x02", 4);      /* ninner */
    p += 4 + 12;                                        /* vinners[2] */
    assert_int_equal((size_t)(p - b.data), b.len);
    free(b.data);
}

/* ---- round trips ---- */

static void test_roundtrip_all(void **state)
{
    (void)state;
    all_obj src, dst;
    all_init(&src, 1);
    all_init(&dst, 0);
    blob b = save(&all_desc, &src.s);
    assert_int_equal(load_both(&b, &all_desc, &dst.s, 1), 0);

    all_obj a, c;
    all_snapshot(&src, &a);
    all_snapshot(&dst, &c);
    /* Beyond the counts, the destination keeps its own (zero) bytes. */
    assert_memory_equal(a.pbuf, c.pbuf, src.s.plen);
    assert_memory_equal(a.parr, c.parr, src.s.pcount * sizeof(uint64_t));
    memset(&a.s.varr[2], 0, 2 * sizeof(int16_t));
    memset(&a.s.vinners[2], 0, sizeof(inner));
    memcpy(a.pbuf, c.pbuf, sizeof(a.pbuf));
    memcpy(a.parr, c.parr, sizeof(a.parr));
    assert_memory_equal(&a, &c, sizeof(a));
    free(b.data);
}

static void test_edge_values(void **state)
{
    (void)state;
    static const int64_t i64s[] = { INT64_MIN, -1, 0, 1, INT64_MAX };
    static const uint64_t u64s[] = { 0, 1, 0x7fffffffffffffffull,
                                     0x8000000000000000ull, UINT64_MAX };
    for (size_t i = 0; i < 5; i++) {
        all_obj src, dst;
        all_init(&src, 1);
        all_init(&dst, 0);
        src.s.i64 = i64s[i];
        src.s.i32 = (int32_t)(i64s[i] >> 32);
        src.s.i16 = (int16_t)(i64s[i] >> 48);
        src.s.i8 = (int8_t)(i64s[i] >> 56);
        src.s.u64 = u64s[i];
        src.s.u32 = (uint32_t)(u64s[i] >> 32);
        src.s.u16 = (uint16_t)(u64s[i] >> 48);
        src.s.u8 = (uint8_t)(u64s[i] >> 56);
        blob b = save(&all_desc, &src.s);
        assert_int_equal(load_both(&b, &all_desc, &dst.s, 1), 0);
        assert_true(dst.s.i64 == src.s.i64);
        assert_int_equal(dst.s.i32, src.s.i32);
        assert_int_equal(dst.s.i16, src.s.i16);
        assert_int_equal(dst.s.i8, src.s.i8);
        assert_true(dst.s.u64 == src.s.u64);
        assert_int_equal(dst.s.u32, src.s.u32);
        assert_int_equal(dst.s.u16, src.s.u16);
        assert_int_equal(dst.s.u8, src.s.u8);
        free(b.data);
    }
}

/* ---- VALIDATE changes nothing ---- */

static void test_validate_changes_nothing(void **state)
{
    (void)state;
    all_obj src, dst, before;
    all_init(&src, 1);
    all_init(&dst, 0);
    memset(dst.pbuf, 0x77, sizeof(dst.pbuf));
    memset(dst.parr, 0x66, sizeof(dst.parr));
    all_snapshot(&dst, &before);

    blob b = save(&all_desc, &src.s);
    assert_int_equal(
        load(&b, b.len, &all_desc, &dst.s, 1, SAVEVM_PASS_VALIDATE, NULL, 0),
        0);
    assert_all_unchanged(&dst, &before);
    free(b.data);
}

static void test_truncated_every_offset(void **state)
{
    (void)state;
    all_obj src, dst, before;
    all_init(&src, 1);
    all_init(&dst, 0);
    memset(dst.pbuf, 0x77, sizeof(dst.pbuf));
    all_snapshot(&dst, &before);
    blob b = save(&all_desc, &src.s);

    for (size_t len = 0; len < b.len; len++) {
        char msg[600];
        int rc = load(&b, len, &all_desc, &dst.s, 1, SAVEVM_PASS_VALIDATE, msg,
                      sizeof(msg));
        assert_int_equal(rc, -ENODATA);
        assert_non_null(strstr(msg, "ends"));
        if (len < 31)   /* inside the scalars: the field is named */
            assert_non_null(strstr(msg, "'all' field '"));
        assert_all_unchanged(&dst, &before);
    }
    free(b.data);
}

/* ---- refusals ---- */

static void test_bool_not_0_or_1(void **state)
{
    (void)state;
    scalars s = { 0 };
    blob b = save(&scalars_desc, &s);
    b.data[6] = 2;      /* field t */
    char msg[600];
    scalars dst = { 0 }, before = dst;
    assert_int_equal(load(&b, b.len, &scalars_desc, &dst, 1,
                          SAVEVM_PASS_VALIDATE, msg, sizeof(msg)),
                     -EINVAL);
    assert_non_null(strstr(msg, "'scalars' field 't'"));
    assert_non_null(strstr(msg, "0x02"));
    assert_memory_equal(&dst, &before, sizeof(dst));
    free(b.data);
}

static void test_vlen_over_max(void **state)
{
    (void)state;
    all_obj src, dst, before;
    all_init(&src, 1);
    all_init(&dst, 0);
    all_snapshot(&dst, &before);
    blob b = save(&all_desc, &src.s);
    b.data[31 + 5 + 3] = 17;    /* vlen: one over the 16-byte vbuf */
    char msg[600];
    assert_int_equal(load(&b, b.len, &all_desc, &dst.s, 1,
                          SAVEVM_PASS_VALIDATE, msg, sizeof(msg)),
                     -EINVAL);
    assert_non_null(strstr(msg, "field 'vbuf'"));
    assert_non_null(strstr(msg, "17"));
    assert_all_unchanged(&dst, &before);

    /* Saving a count over its max is refused too. */
    src.s.plen = PBUF_MAX + 1;
    qfile *f = qfile_open_mem("out");
    assert_int_equal(vmstate_save(f, &all_desc, &src.s, NULL), -EINVAL);
    assert_non_null(strstr(qfile_errmsg(f), "field 'pbuf'"));
    qfile_close(f);
    free(b.data);
}

typedef struct signed_count {
    int8_t n;
    uint8_t data[4];
} signed_count;

static const vmstate_field signed_count_fields[] = {
    {VMSTATE_SCALAR(signed_count, n)},
    {VMSTATE_VARRAY(signed_count, data, n)},
    VMSTATE_END,
};
static const vmstate_desc signed_count_desc = {
    .name = "sc", .version = 1, .size = sizeof(signed_count),
    .fields = signed_count_fields,
};

static void test_negative_count(void **state)
{
    (void)state;
    uint8_t bytes[] = { 0xff };
    blob b = { bytes, 1 };
    signed_count dst = { 0 };
    char msg[600];
    assert_int_equal(load(&b, 1, &signed_count_desc, &dst, 1,
                          SAVEVM_PASS_VALIDATE, msg, sizeof(msg)),
                     -EINVAL);
    assert_non_null(strstr(msg, "negative"));
}

static void test_null_pointer_storage(void **state)
{
    (void)state;
    all_obj src, dst;
    all_init(&src, 1);
    all_init(&dst, 0);
    blob b = save(&all_desc, &src.s);
    dst.s.pbuf = NULL;
    char msg[600];
    assert_int_equal(load(&b, b.len, &all_desc, &dst.s, 1,
                          SAVEVM_PASS_VALIDATE, msg, sizeof(msg)),
                     -EFAULT);
    assert_non_null(strstr(msg, "field 'pbuf'"));

    src.s.parr = NULL;
    qfile *f = qfile_open_mem("out");
    assert_int_equal(vmstate_save(f, &all_desc, &src.s, NULL), -EFAULT);
    qfile_close(f);
    free(b.data);
}

/* ---- versions ---- */

typedef struct dev {
    uint32_t a;
    uint16_t added;     /* appeared in version 2 */
    uint32_t b;
    uint8_t sub_x;      /* subsection state */
    uint8_t deep_y;     /* subsection of the subsection */
    bool want_sub, want_deep;
} dev;

static const vmstate_field dev_v1_fields[] = {
    {VMSTATE_SCALAR(dev, a)},
    {VMSTATE_SCALAR(dev, b)},
    VMSTATE_END,
};
static const vmstate_desc dev_v1_desc = {
    .name = "dev", .version = 1, .minimum_version = 1, .size = sizeof(dev),
    .fields = dev_v1_fields,
};

static const vmstate_field dev_fields[] = {
    {VMSTATE_SCALAR(dev, a)},
    {VMSTATE_SCALAR(dev, added), .version = 2},
    {VMSTATE_SCALAR(dev, b)},
    VMSTATE_END,
};

static bool deep_needed(const void *obj)
{
    return ((const dev *)obj)->want_deep;
}

static bool sub_needed(const void *obj)
{
    return ((const dev *)obj)->want_sub;
}

static const vmstate_field deep_fields[] = {
    {VMSTATE_SCALAR(dev, deep_y)},
    VMSTATE_END,
};
static const vmstate_desc deep_desc = {
    .name = "dev/sub/deep", .version = 1, .fields = deep_fields,
};
static const vmstate_field sub_fields[] = {
    {VMSTATE_SCALAR(dev, sub_x)},
    VMSTATE_END,
};
static const vmstate_desc sub_desc = {
    .name = "dev/sub",
    .version = 2,
    .minimum_version = 1,
    .fields = sub_fields,
    .subsections =
        (const vmstate_subsection[]){
            {&deep_desc, deep_needed},
            {NULL, NULL},
        },
};
static const vmstate_desc dev_desc = {
    .name = "dev",
    .version = 2,
    .minimum_version = 1,
    .size = sizeof(dev),
    .fields = dev_fields,
    .subsections =
        (const vmstate_subsection[]){
            {&sub_desc, sub_needed},
            {NULL, NULL},
        },
};
/* The same device as a build that never heard of the subsection. */
static const vmstate_desc dev_nosub_desc = {
    .name = "dev", .version = 2, .minimum_version = 1, .size = sizeof(dev),
    .fields = dev_fields,
};

static void test_older_stream_leaves_new_field(void **state)
{
    (void)state;
    dev src = { .a = 1, .added = 2, .b = 3 };
    blob b = save(&dev_v1_desc, &src);
    assert_int_equal(b.len, 8);

    dev dst = { .added = 0xabcd };
    assert_int_equal(load_both(&b, &dev_desc, &dst, 1), 0);
    assert_int_equal(dst.a, 1);
    assert_int_equal(dst.b, 3);
    assert_int_equal(dst.added, 0xabcd);
    free(b.data);

    b = save(&dev_desc, &src);
    assert_int_equal(b.len, 10);
    assert_int_equal(load_both(&b, &dev_desc, &dst, 2), 0);
    assert_int_equal(dst.added, 2);
    free(b.data);
}

static void test_version_refusals(void **state)
{
    (void)state;
    dev src = { 0 }, dst = { .a = 7 };
    blob b = save(&dev_desc, &src);
    char msg[600];

    assert_int_equal(load(&b, b.len, &dev_desc, &dst, 3, SAVEVM_PASS_VALIDATE,
                          msg, sizeof(msg)),
                     -ENOTSUP);
    assert_non_null(strstr(msg, "'dev': version 3 is newer than 2"));
    assert_int_equal(load(&b, b.len, &dev_desc, &dst, 3, SAVEVM_PASS_APPLY,
                          msg, sizeof(msg)),
                     -ENOTSUP);

    static const vmstate_desc strict = {
        .name = "dev", .version = 2, .minimum_version = 2,
        .size = sizeof(dev), .fields = dev_fields,
    };
    assert_int_equal(load(&b, b.len, &strict, &dst, 1, SAVEVM_PASS_VALIDATE,
                          msg, sizeof(msg)),
                     -ENOTSUP);
    assert_non_null(strstr(msg, "'dev': version 1 is older than 2"));
    assert_int_equal(dst.a, 7);
    free(b.data);
}

/* ---- subsections ---- */

static void test_subsection_not_needed(void **state)
{
    (void)state;
    dev src = { .a = 1, .added = 2, .b = 3, .sub_x = 4 };
    blob b = save(&dev_desc, &src);
    assert_int_equal(b.len, 10);

    dev dst = { .sub_x = 99 };
    assert_int_equal(load_both(&b, &dev_desc, &dst, 2), 0);
    assert_int_equal(dst.b, 3);
    assert_int_equal(dst.sub_x, 99);
    free(b.data);
}

static void test_subsection_needed(void **state)
{
    (void)state;
    dev src = { .a = 1, .added = 2, .b = 3, .sub_x = 4, .want_sub = true };
    blob b = save(&dev_desc, &src);
    static const uint8_t tail[] = {
        0x05, 7, 'd', 'e', 'v', '/', 's', 'u', 'b', 0, 0, 0, 2, 4,
    };
    assert_int_equal(b.len, 10 + sizeof(tail));
    assert_memory_equal(b.data + 10, tail, sizeof(tail));

    dev dst = { 0 };
    assert_int_equal(load_both(&b, &dev_desc, &dst, 2), 0);
    assert_int_equal(dst.sub_x, 4);
    free(b.data);
}

static void test_subsection_nested(void **state)
{
    (void)state;
    dev src = { .a = 1, .sub_x = 4, .deep_y = 5, .want_sub = true,
                .want_deep = true };
    blob b = save(&dev_desc, &src);
    static const uint8_t tail[] = {
        0x05, 7, 'd', 'e', 'v', '/', 's', 'u', 'b', 0, 0, 0, 2, 4,
        0x05, 12, 'd', 'e', 'v', '/', 's', 'u', 'b', '/', 'd', 'e', 'e', 'p',
        0, 0, 0, 1, 5,
    };
    assert_int_equal(b.len, 10 + sizeof(tail));
    assert_memory_equal(b.data + 10, tail, sizeof(tail));

    dev dst = { 0 };
    assert_int_equal(load_both(&b, &dev_desc, &dst, 2), 0);
    assert_int_equal(dst.sub_x, 4);
    assert_int_equal(dst.deep_y, 5);
    free(b.data);
}

static void test_subsection_unknown(void **state)
{
    (void)state;
    dev src = { .want_sub = true }, dst = { .a = 5 };
    blob b = save(&dev_desc, &src);
    char msg[600];
    assert_int_equal(load(&b, b.len, &dev_nosub_desc, &dst, 2,
                          SAVEVM_PASS_VALIDATE, msg, sizeof(msg)),
                     -ENOENT);
    assert_non_null(strstr(msg, "unknown subsection 'dev/sub'"));
    assert_int_equal(dst.a, 5);
    free(b.data);
}

static void test_subsection_version_refused(void **state)
{
    (void)state;
    dev src = { .want_sub = true }, dst = { 0 };
    blob b = save(&dev_desc, &src);
    b.data[10 + 12] = 3;        /* subsection version 2 -> 3 */
    char msg[600];
    assert_int_equal(load(&b, b.len, &dev_desc, &dst, 2, SAVEVM_PASS_VALIDATE,
                          msg, sizeof(msg)),
                     -ENOTSUP);
    assert_non_null(strstr(msg, "'dev/sub'"));
    assert_non_null(strstr(msg, "version 3 is outside 1..2"));

    /* Below the subsection's minimum version (1) is refused as well. */
    b.data[10 + 12] = 0;
    dst.sub_x = 9;
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(load(&b, b.len, &dev_desc, &dst, 2,
                              pass ? SAVEVM_PASS_APPLY : SAVEVM_PASS_VALIDATE,
                              msg, sizeof(msg)),
                         -ENOTSUP);
        assert_non_null(strstr(msg, "'dev/sub'"));
        assert_non_null(strstr(msg, "version 0 is outside 1..2"));
        assert_int_equal(dst.sub_x, 9);
    }
    /* The minimum itself is read. */
    b.data[10 + 12] = 1;
    assert_int_equal(load_both(&b, &dev_desc, &dst, 2), 0);
    assert_int_equal(dst.sub_x, 0);
    free(b.data);
}

/*
 * A struct with subsections inside another, followed by a field and the
 * outer subsection: the inner loader must hand back what is not its own.
 */
typedef struct holder {
    dev d[2];
    uint8_t after;
    uint8_t outer_z;
} holder;

static const vmstate_field holder_sub_fields[] = {
    {VMSTATE_SCALAR(holder, outer_z)},
    VMSTATE_END,
};
static const vmstate_desc holder_sub_desc = {
    .name = "holder/z", .version = 1, .fields = holder_sub_fields,
};
static const vmstate_field holder_fields[] = {
    {VMSTATE_STRUCT_ARRAY(holder, d, dev_desc)},
    {VMSTATE_SCALAR(holder, after)},
    VMSTATE_END,
};
static const vmstate_desc holder_desc = {
    .name = "holder",
    .version = 1,
    .size = sizeof(holder),
    .fields = holder_fields,
    .subsections =
        (const vmstate_subsection[]){{&holder_sub_desc, NULL}, {NULL, NULL}},
};

static void test_subsection_inside_nested_struct(void **state)
{
    (void)state;
    holder src = { 0 };
    src.d[0] = (dev){ .a = 1, .sub_x = 2, .want_sub = true };
    src.d[1] = (dev){ .a = 3, .sub_x = 4, .want_sub = true,
                      .want_deep = true, .deep_y = 6 };
    src.after = 0x05;   /* looks like a subsection marker */
    src.outer_z = 9;
    blob b = save(&holder_desc, &src);

    holder dst = { 0 };
    assert_int_equal(load_both(&b, &holder_desc, &dst, 1), 0);
    assert_int_equal(dst.d[0].sub_x, 2);
    assert_int_equal(dst.d[1].a, 3);
    assert_int_equal(dst.d[1].sub_x, 4);
    assert_int_equal(dst.d[1].deep_y, 6);
    assert_int_equal(dst.after, 5);
    assert_int_equal(dst.outer_z, 9);
    free(b.data);

    /* No inner subsections sent: the outer one is handed back up. */
    src.d[0].want_sub = src.d[1].want_sub = false;
    b = save(&holder_desc, &src);
    memset(&dst, 0, sizeof(dst));
    assert_int_equal(load_both(&b, &holder_desc, &dst, 1), 0);
    assert_int_equal(dst.outer_z, 9);
    assert_int_equal(dst.d[1].sub_x, 0);
    free(b.data);
}

/* Field bytes after a struct with subsections that look like a header. */
typedef struct looks_like {
    dev d;
    uint8_t x, y;
} looks_like;

static const vmstate_field looks_like_fields[] = {
    {VMSTATE_STRUCT(looks_like, d, dev_desc)},
    {VMSTATE_SCALAR(looks_like, x)},
    {VMSTATE_SCALAR(looks_like, y)},
    VMSTATE_END,
};
static const vmstate_desc looks_like_desc = {
    .name = "looks_like", .version = 1, .size = sizeof(looks_like),
    .fields = looks_like_fields,
};

static void test_header_lookalike_at_end(void **state)
{
    (void)state;
    looks_like src = { .d = { .a = 1, .want_sub = true, .sub_x = 3 },
                       .x = 0x05, .y = 0x40 };
    blob b = save(&looks_like_desc, &src);
    looks_like dst = { 0 };
    assert_int_equal(load_both(&b, &looks_like_desc, &dst, 1), 0);
    assert_int_equal(dst.d.sub_x, 3);
    assert_int_equal(dst.x, 0x05);
    assert_int_equal(dst.y, 0x40);
    free(b.data);
}

/* ---- hooks ---- */

typedef struct hooked {
    uint32_t value;
    uint32_t derived;       /* filled by pre_save */
    int post_loads;
    int checks;
} hooked;

static int hooked_pre_save(void *copy)
{
    hooked *h = copy;
    h->derived = h->value * 2;
    return 0;
}

static int check_calls;
static int post_load_calls;

static int hooked_check(qfile *f, const void *obj, uint32_t version)
{
    const hooked *h = obj;
    (void)version;
    check_calls++;
    if (h->derived != h->value * 2)
        return qfile_fail(f, -EINVAL, "derived %u is not twice %u", h->derived,
                          h->value);
    return 0;
}

static int hooked_post_load(void *obj, uint32_t version)
{
    hooked *h = obj;
    assert_int_equal(version, 1);
    h->post_loads++;
    post_load_calls++;
    return 0;
}

static const vmstate_field hooked_fields[] = {
    {VMSTATE_SCALAR(hooked, value)},
    {VMSTATE_SCALAR(hooked, derived)},
    VMSTATE_END,
};
static const vmstate_desc hooked_desc = {
    .name = "hooked", .version = 1, .size = sizeof(hooked),
    .fields = hooked_fields, .pre_save = hooked_pre_save,
    .check = hooked_check, .post_load = hooked_post_load,
};

static void test_hooks(void **state)
{
    (void)state;
    hooked src = { .value = 21 };
    blob b = save(&hooked_desc, &src);
    assert_int_equal(src.derived, 0);       /* pre_save saw a copy */
    assert_memory_equal(b.data, "\x00\x00\x00\x15\x00\x00\x00\x2a", 8);

    hooked dst = { 0 };
    check_calls = post_load_calls = 0;
    assert_int_equal(
        load(&b, b.len, &hooked_desc, &dst, 1, SAVEVM_PASS_VALIDATE, NULL, 0),
        0);
    assert_int_equal(check_calls, 1);
    assert_int_equal(post_load_calls, 0);
    assert_int_equal(dst.value, 0);
    assert_int_equal(
        load(&b, b.len, &hooked_desc, &dst, 1, SAVEVM_PASS_APPLY, NULL, 0), 0);
    assert_int_equal(check_calls, 1);
    assert_int_equal(post_load_calls, 1);
    assert_int_equal(dst.value, 21);
    assert_int_equal(dst.derived, 42);
    assert_int_equal(dst.post_loads, 1);

    /* A check that fails leaves the object alone and says why. */
    b.data[7] = 41;
    hooked before = dst;
    char msg[600];
    assert_int_equal(load(&b, b.len, &hooked_desc, &dst, 1,
                          SAVEVM_PASS_VALIDATE, msg, sizeof(msg)),
                     -EINVAL);
    assert_non_null(strstr(msg, "derived 41 is not twice 21"));
    assert_memory_equal(&dst, &before, sizeof(dst));
    free(b.data);
}

static int silent_check(qfile *f, const void *obj, uint32_t version)
{
    (void)f; (void)obj; (void)version;
    return -ERANGE;
}

static int failing_pre_save(void *copy)
{
    (void)copy;
    return -EIO;
}

static void test_hook_failures(void **state)
{
    (void)state;
    vmstate_desc d = hooked_desc;
    d.check = silent_check;
    hooked src = { .value = 1 }, dst = { 0 };
    blob b = save(&d, &src);
    char msg[600];
    assert_int_equal(
        load(&b, b.len, &d, &dst, 1, SAVEVM_PASS_VALIDATE, msg, sizeof(msg)),
        -ERANGE);
    assert_non_null(strstr(msg, "'hooked' refused the state"));
    free(b.data);

    d.pre_save = failing_pre_save;
    qfile *f = qfile_open_mem("out");
    assert_int_equal(vmstate_save(f, &d, &src, NULL), -EIO);
    assert_non_null(strstr(qfile_errmsg(f), "pre_save of 'hooked' failed"));
    qfile_close(f);
}

/* ---- description checks ---- */

typedef struct bad {
    uint32_t n;
    uint16_t small;
    uint8_t data[4];
} bad;

static void expect_invalid(const vmstate_field *fields, const char *needle)
{
    vmstate_desc d = {
        .name = "bad", .version = 2, .size = sizeof(bad), .fields = fields};
    char why[256];
    assert_int_equal(vmstate_desc_verify(&d, why, sizeof(why)), -EINVAL);
    if (!strstr(why, needle))
        fail_msg("'%s' does not mention '%s'", why, needle);
}

static void test_desc_verify(void **state)
{
    (void)state;
    char why[256];
    assert_int_equal(vmstate_desc_verify(&all_desc, why, sizeof(why)), 0);
    assert_int_equal(vmstate_desc_verify(&dev_desc, why, sizeof(why)), 0);
    assert_int_equal(vmstate_desc_verify(&holder_desc, why, sizeof(why)), 0);

    expect_invalid(
        (const vmstate_field[]){
            {VMSTATE_VARRAY(bad, data, n)},
            {VMSTATE_SCALAR(bad, n)},
            VMSTATE_END,
        },
        "not an earlier field");
    expect_invalid(
        (const vmstate_field[]){
            {VMSTATE_SCALAR(bad, n), .version = 2},
            {VMSTATE_VARRAY(bad, data, n)},
            VMSTATE_END,
        },
        "newer than it");
    expect_invalid(
        (const vmstate_field[]){
            {VMSTATE_SCALAR(bad, n)},
            {VMSTATE_SCALAR(bad, n)},
            VMSTATE_END,
        },
        "used twice");
    expect_invalid(
        (const vmstate_field[]){
            {.name = "x", .type = VMSTATE_T_U32, .offset = 0, .size = 2},
            VMSTATE_END,
        },
        "uint32 with size 2");
    expect_invalid(
        (const vmstate_field[]){
            {.name = "x",
             .type = VMSTATE_T_U64,
             .offset = sizeof(bad) - 4,
             .size = 8},
            VMSTATE_END,
        },
        "outside");
    expect_invalid(
        (const vmstate_field[]){
            {VMSTATE_SCALAR(bad, n), .version = 3},
            VMSTATE_END,
        },
        "newer than the description");
    expect_invalid(
        (const vmstate_field[]){
            {VMSTATE_SCALAR(bad, n)},
            {.name = "d",
             .type = VMSTATE_T_VBUFFER,
             .offset = offsetof(bad, data),
             .size = 4,
             .count_from = "n",
             .max = 5},
            VMSTATE_END,
        },
        "variable buffer");

    vmstate_desc nosize = {.name = "x", .version = 1, .fields = dev_fields};
    assert_int_equal(vmstate_desc_verify(&nosize, why, sizeof(why)), -EINVAL);
    vmstate_desc minver = {
        .name = "x", .version = 1, .minimum_version = 2, .size = 4};
    assert_int_equal(vmstate_desc_verify(&minver, why, sizeof(why)), -EINVAL);
}

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(vmstate_type_name(VMSTATE_T_U8), "uint8");
    assert_string_equal(vmstate_type_name(VMSTATE_T_I64), "int64");
    assert_string_equal(vmstate_type_name(VMSTATE_T_BOOL), "bool");
    assert_string_equal(vmstate_type_name(VMSTATE_T_VBUFFER), "buffer");
    assert_string_equal(vmstate_type_name(VMSTATE_T_STRUCT), "struct");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoding_bytes),
        cmocka_unit_test(test_arrays_and_buffers_bytes),
        cmocka_unit_test(test_roundtrip_all),
        cmocka_unit_test(test_edge_values),
        cmocka_unit_test(test_validate_changes_nothing),
        cmocka_unit_test(test_truncated_every_offset),
        cmocka_unit_test(test_bool_not_0_or_1),
        cmocka_unit_test(test_vlen_over_max),
        cmocka_unit_test(test_negative_count),
        cmocka_unit_test(test_null_pointer_storage),
        cmocka_unit_test(test_older_stream_leaves_new_field),
        cmocka_unit_test(test_version_refusals),
        cmocka_unit_test(test_subsection_not_needed),
        cmocka_unit_test(test_subsection_needed),
        cmocka_unit_test(test_subsection_nested),
        cmocka_unit_test(test_subsection_unknown),
        cmocka_unit_test(test_subsection_version_refused),
        cmocka_unit_test(test_subsection_inside_nested_struct),
        cmocka_unit_test(test_header_lookalike_at_end),
        cmocka_unit_test(test_hooks),
        cmocka_unit_test(test_hook_failures),
        cmocka_unit_test(test_desc_verify),
        cmocka_unit_test(test_type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
