/*
 * Unit tests for checkpoint/ram: every record kind through a memory channel
 * and back, partial passes, XBZRLE over several saves, and every way the
 * loader refuses a stream, always leaving the target as it was.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "checkpoint/ram.h"

#define PS RAM_PAGE_SIZE
#define MAXB 3
#define LBITS (sizeof(unsigned long) * CHAR_BIT)

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* A set of blocks with memory and bitmaps, as a VM would own them. */
struct vm {
    ram_block b[MAXB];
    size_t n;
};

static const char *const names[MAXB] = { "pc.ram", "vga.vram", "rom" };

static void vm_init(struct vm *v, size_t n, const uint64_t *pages)
{
    memset(v, 0, sizeof(*v));
    v->n = n;
    for (size_t i = 0; i < n; i++) {
        v->b[i].name = names[i];
        v->b[i].length = pages[i] * PS;
        v->b[i].host = calloc(1, v->b[i].length);
        v->b[i].dirty = calloc(ram_bitmap_longs(v->b[i].length),
                               sizeof(unsigned long));
        assert_non_null(v->b[i].host);
        assert_non_null(v->b[i].dirty);
    }
}

static void vm_free(struct vm *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free(v->b[i].host);
        free(v->b[i].dirty);
    }
}

static void vm_assert_equal(const struct vm *a, const struct vm *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->b[i].length, b->b[i].length);
        assert_memory_equal(a->b[i].host, b->b[i].host, a->b[i].length);
    }
}

static void vm_clear_dirty(struct vm *v)
{
    for (size_t i = 0; i < v->n; i++)
        memset(v->b[i].dirty, 0,
               ram_bitmap_longs(v->b[i].length) * sizeof(unsigned long));
}

static bool page_dirty(const ram_block *b, uint64_t p)
{
    return b->dirty[p / LBITS] >> (p % LBITS) & 1;
}

static void set_dirty(ram_block *b, uint64_t p)
{
    b->dirty[p / LBITS] |= 1UL << (p % LBITS);
}

static uint8_t *page_of(const struct vm *v, size_t blk, uint64_t p)
{
    return v->b[blk].host + p * PS;
}

/* Pages of every kind: random, zero, text-like (compressible), sparse. */
static void fill_mixed(struct vm *v)
{
    for (size_t i = 0; i < v->n; i++) {
        for (uint64_t p = 0; p < v->b[i].length / PS; p++) {
            uint8_t *pg = page_of(v, i, p);

            switch ((p + i) % 4) {
            case 0:
                for (size_t k = 0; k < PS; k++)
                    pg[k] = (uint8_t)rnd();
                break;
            case 1:
                memset(pg, 0, PS);
                break;
            case 2:
                for (size_t k = 0; k < PS; k++)
                    pg[k] = "the quick brown fox "[(k + p) % 20];
                break;
            default:
                memset(pg, 0, PS);
                pg[PS - 1] = (uint8_t)(p + 1);
                break;
            }
        }
    }
}

/* A copy of the target's memory and bitmaps, to prove nothing changed. */
struct snap {
    uint8_t *mem[MAXB];
    unsigned long *dirty[MAXB];
};

static void snap_take(struct snap *s, const struct vm *v)
{
    for (size_t i = 0; i < v->n; i++) {
        size_t words = ram_bitmap_longs(v->b[i].length);

        s->mem[i] = malloc(v->b[i].length);
        memcpy(s->mem[i], v->b[i].host, v->b[i].length);
        s->dirty[i] = malloc(words * sizeof(unsigned long));
        memcpy(s->dirty[i], v->b[i].dirty, words * sizeof(unsigned long));
    }
}

static void snap_check_free(struct snap *s, const struct vm *v)
{
    for (size_t i = 0; i < v->n; i++) {
        assert_memory_equal(s->mem[i], v->b[i].host, v->b[i].length);
        assert_memory_equal(s->dirty[i], v->b[i].dirty,
                            ram_bitmap_longs(v->b[i].length) *
                            sizeof(unsigned long));
        free(s->mem[i]);
        free(s->dirty[i]);
    }
}

/* The bytes of a memory channel, copied out so it can be closed. */
struct stream {
    uint8_t *data;
    size_t len;
};

static struct stream take(qfile *w)
{
    struct stream s;
    const uint8_t *d;

    assert_int_equal(qfile_error(w), 0);
    d = qfile_mem_data(w, &s.len);
    s.data = malloc(s.len ? s.len : 1);
    memcpy(s.data, d, s.len);
    assert_int_equal(qfile_close(w), 0);
    return s;
}

static struct stream save_setup(ram_saver *s)
{
    qfile *w = qfile_open_mem("setup");

    assert_int_equal(ram_save_setup(s, w), 0);
    return take(w);
}

static struct stream save_dirty(ram_saver *s, uint64_t max,
                                ram_save_stats *st, int64_t *pages)
{
    qfile *w = qfile_open_mem("pass");
    int64_t n = ram_save_dirty(s, w, max, st);

    assert_true(n >= 0);
    if (pages)
        *pages = n;
    return take(w);
}

static char last_msg[512];
static uint64_t last_err_off;

/*
 * Loads one section body the way a real caller does: VALIDATE the bytes,
 * and APPLY them only if that passed.  Also insists that a good body is
 * consumed exactly.
 */
static int load_checked(ram_loader *l, const uint8_t *data, size_t len,
                        uint32_t version)
{
    qfile *r = qfile_open_view(data, len, "pkg");
    int err = ram_load(l, r, version, SAVEVM_PASS_VALIDATE);

    last_msg[0] = 0;
    if (!err) {
        assert_true(qfile_at_eof(r));
        assert_int_equal(qfile_rewind(r), 0);
        err = ram_load(l, r, version, SAVEVM_PASS_APPLY);
        assert_int_equal(err, 0);
        assert_true(qfile_at_eof(r));
    } else {
        assert_int_equal(err, qfile_error(r));
        snprintf(last_msg, sizeof(last_msg), "%s", qfile_errmsg(r));
        last_err_off = qfile_error_offset(r);
    }
    qfile_close(r);
    return err;
}

static int load_stream(ram_loader *l, struct stream s)
{
    int err = load_checked(l, s.data, s.len, RAM_SECTION_VERSION);

    free(s.data);
    return err;
}

/* ---- helpers to write streams by hand ---- */

static uint8_t page_buf[PS];

static void put_page_rec(qfile *w, uint64_t hdr, const char *name)
{
    qfile_put_be64(w, hdr);
    if (name)
        qfile_put_str(w, name);
}

static void put_mem_size(qfile *w, const struct vm *v)
{
    uint64_t total = 0;

    for (size_t i = 0; i < v->n; i++)
        total += v->b[i].length;
    qfile_put_be64(w, total | RAM_FLAG_MEM_SIZE);
    for (size_t i = 0; i < v->n; i++) {
        qfile_put_str(w, v->b[i].name);
        qfile_put_be64(w, v->b[i].length);
    }
}

/* Expects the loader to refuse a hand-made body, target untouched. */
static void expect_refused(struct vm *tgt, qfile *w, int err,
                           const char *needle1, const char *needle2)
{
    struct stream s = take(w);
    struct snap snap;
    ram_loader *l;

    assert_int_equal(ram_loader_new(&l, tgt->b, tgt->n), 0);
    snap_take(&snap, tgt);
    assert_int_equal(load_stream(l, s), err);
    snap_check_free(&snap, tgt);
    if (needle1 && !strstr(last_msg, needle1))
        fail_msg("\"%s\" not in \"%s\"", needle1, last_msg);
    if (needle2 && !strstr(last_msg, needle2))
        fail_msg("\"%s\" not in \"%s\"", needle2, last_msg);
    assert_non_null(strstr(last_msg, "pkg: byte "));
    ram_loader_free(l);
}

/* ================================ tests ================================ */

static void test_helpers(void **state)
{
    uint8_t *buf = calloc(1, PS + 1);
    ram_block b = { .name = "x", .length = 70 * PS };
    unsigned long bm[2] = { 0, 0 };
    (void)state;

    assert_int_equal(ram_bitmap_longs(PS), 1);
    assert_int_equal(ram_bitmap_longs(LBITS * PS), 1);
    assert_int_equal(ram_bitmap_longs((LBITS + 1) * PS), 2);

    b.dirty = bm;
    ram_mark_all_dirty(&b, 1);
    assert_int_equal(__builtin_popcountl(bm[0]) + __builtin_popcountl(bm[1]),
                     70);

    /* Zero detection: every byte position counts, any alignment. */
    for (size_t off = 0; off < 2; off++) {
        assert_true(ram_page_is_zero(buf + off));
        for (size_t i = 0; i < PS; i++) {
            buf[off + i] = 0x80;
            assert_false(ram_page_is_zero(buf + off));
            buf[off + i] = 0;
        }
    }
    free(buf);
}

static void test_bad_arguments(void **state)
{
    static uint8_t mem[2 * PS];
    unsigned long bm[1] = { 0 };
    ram_block good = { "a", mem, 2 * PS, bm };
    ram_block bad[2];
    ram_save_opts o = { 0, 0 };
    ram_saver *s;
    ram_loader *l;
    char longname[300];
    (void)state;

    bad[0] = good;
    bad[0].length = PS + 1;
    assert_int_equal(ram_saver_new(&s, bad, 1, NULL), -EINVAL);
    assert_null(s);
    assert_int_equal(ram_loader_new(&l, bad, 1), -EINVAL);
    assert_null(l);
    bad[0].length = 0;
    assert_int_equal(ram_saver_new(&s, bad, 1, NULL), -EINVAL);
    bad[0] = good;
    bad[0].dirty = NULL;
    assert_int_equal(ram_saver_new(&s, bad, 1, NULL), -EINVAL);
    assert_int_equal(ram_loader_new(&l, bad, 1), 0);
    ram_loader_free(l);
    bad[0].host = NULL;
    assert_int_equal(ram_loader_new(&l, bad, 1), -EINVAL);
    memset(longname, 'n', sizeof(longname));
    longname[256] = 0;
    bad[0] = good;
    bad[0].name = longname;
    assert_int_equal(ram_saver_new(&s, bad, 1, NULL), -EINVAL);
    bad[0] = good;
    bad[1] = good;
    assert_int_equal(ram_saver_new(&s, bad, 2, NULL), -EINVAL);
    assert_int_equal(ram_loader_new(&l, bad, 2), -EINVAL);

    o.compress_level = 10;
    assert_int_equal(ram_saver_new(&s, &good, 1, &o), -EINVAL);
    o.compress_level = 0;
    o.xbzrle_cache = PS - 1;
    assert_int_equal(ram_saver_new(&s, &good, 1, &o), -EINVAL);
    o.xbzrle_cache = PS;
    assert_int_equal(ram_saver_new(&s, &good, 1, &o), 0);
    ram_saver_free(s);
}

static void test_setup_layout(void **state)
{
    static const uint64_t pages[] = { 4, 2 };
    struct vm src, tgt;
    ram_saver *s;
    ram_loader *l;
    struct stream st;
    static const uint8_t want[] = {
        0, 0, 0, 0, 0, 0, 0x60, 0x04,
        6, 'p', 'c', '.', 'r', 'a', 'm', 0, 0, 0, 0, 0, 0, 0x40, 0x00,
        8, 'v', 'g', 'a', '.', 'v', 'r', 'a', 'm',
        0, 0, 0, 0, 0, 0, 0x20, 0x00,
        0, 0, 0, 0, 0, 0, 0, 0x10,
    };
    (void)state;

    vm_init(&src, 2, pages);
    vm_init(&tgt, 2, pages);
    assert_int_equal(ram_saver_new(&s, src.b, 2, NULL), 0);
    st = save_setup(s);
    assert_int_equal(st.len, sizeof(want));
    assert_memory_equal(st.data, want, sizeof(want));

    assert_int_equal(ram_loader_new(&l, tgt.b, 2), 0);
    assert_int_equal(load_checked(l, st.data, st.len, 4), 0);
    ram_loader_free(l);
    free(st.data);
    ram_saver_free(s);
    vm_free(&src);
    vm_free(&tgt);
}

/* Reads the record headers of a body: flags, offset, name if any. */
struct rec {
    unsigned flags;
    uint64_t offset;
    char name[256];
};

static size_t parse_records(struct stream st, struct rec *out, size_t max)
{
    qfile *r = qfile_open_view(st.data, st.len, "parse");
    size_t n = 0;

    for (;;) {
        uint64_t hdr = qfile_get_be64(r);
        struct rec rec = {(unsigned)(hdr & (PS - 1)),
                          hdr & ~(uint64_t)(PS - 1), ""};
        unsigned kind = rec.flags & ~(unsigned)RAM_FLAG_CONTINUE;

        assert_int_equal(qfile_error(r), 0);
        if (kind == RAM_FLAG_EOS)
            break;
        if (!(rec.flags & RAM_FLAG_CONTINUE))
            qfile_get_str(r, rec.name);
        if (kind == RAM_FLAG_ZERO)
            qfile_skip(r, 1);
        else if (kind == RAM_FLAG_PAGE)
            qfile_skip(r, PS);
        else if (kind == RAM_FLAG_COMPRESS_PAGE)
            qfile_skip(r, qfile_get_be32(r));
        else if (kind == RAM_FLAG_XBZRLE) {
            assert_int_equal(qfile_get_u8(r), RAM_XBZRLE_ENCODING);
            qfile_skip(r, qfile_get_be16(r));
        } else
            fail_msg("unexpected flags 0x%x", rec.flags);
        assert_true(n < max);
        out[n++] = rec;
    }
    assert_true(qfile_at_eof(r));
    qfile_close(r);
    return n;
}

static void test_roundtrip_blocks_continue(void **state)
{
    static const uint64_t pages[] = { 9, 3, 70 };
    static struct rec recs[100];
    struct vm src, tgt;
    ram_saver *s;
    ram_loader *l;
    ram_save_stats st;
    struct stream body;
    int64_t n;
    size_t nrec, named = 0;
    ram_block_counts c;
    (void)state;

    vm_init(&src, 3, pages);
    vm_init(&tgt, 3, pages);
    fill_mixed(&src);
    assert_int_equal(ram_saver_new(&s, src.b, 3, NULL), 0);
    assert_int_equal(ram_loader_new(&l, tgt.b, 3), 0);
    assert_int_equal(load_stream(l, save_setup(s)), 0);

    ram_mark_all_dirty(src.b, 3);
    body = save_dirty(s, 0, &st, &n);
    assert_int_equal(n, 82);
    assert_int_equal(st.zero_pages + st.normal_pages, 82);
    assert_int_equal(st.compressed_pages + st.xbzrle_pages, 0);
    assert_int_equal(st.remaining, 0);
    assert_int_equal(st.bytes, body.len);

    /* One name per block, CONTINUE on every later page of it. */
    nrec = parse_records(body, recs, 100);
    assert_int_equal(nrec, 82);
    for (size_t i = 0; i < nrec; i++) {
        if (recs[i].flags & RAM_FLAG_CONTINUE)
            continue;
        assert_string_equal(recs[i].name, names[named]);
        assert_int_equal(recs[i].offset, 0);
        named++;
    }
    assert_int_equal(named, 3);
    assert_int_equal(recs[1].flags, RAM_FLAG_CONTINUE | RAM_FLAG_ZERO);
    assert_int_equal(recs[1].offset, PS);

    vm_clear_dirty(&tgt);
    assert_int_equal(load_stream(l, body), 0);
    vm_assert_equal(&src, &tgt);
    for (size_t i = 0; i < 3; i++)
        for (uint64_t p = 0; p < pages[i]; p++) {
            assert_true(page_dirty(&tgt.b[i], p));
            assert_false(page_dirty(&src.b[i], p));
        }

    assert_int_equal(ram_loader_nblocks(l), 3);
    assert_int_equal(ram_loader_counts(l, 2, &c), 0);
    assert_string_equal(c.name, "rom");
    assert_int_equal(c.zero_pages + c.normal_pages, 70);
    assert_int_equal(ram_loader_counts(l, 3, &c), -ENOENT);

    /* A clean bitmap gives an empty body: just EOS. */
    body = save_dirty(s, 0, &st, &n);
    assert_int_equal(n, 0);
    assert_int_equal(body.len, 8);
    assert_int_equal(load_stream(l, body), 0);

    ram_loader_free(l);
    ram_saver_free(s);
    vm_free(&src);
    vm_free(&tgt);
}

static void test_exact_record_bytes(void **state)
{
    static const uint64_t pages[] = { 2 };
    struct vm src;
    ram_saver *s;
    struct stream body;
    static const uint8_t zero_rec[] = {
        0, 0, 0, 0, 0, 0, 0, 0x02, 6, 'p', 'c', '.', 'r', 'a', 'm', 0,
    };
    static const uint8_t page_hdr[] = { 0, 0, 0, 0, 0, 0, 0x10, 0x28 };
    (void)state;

    vm_init(&src, 1, pages);
    memset(page_of(&src, 0, 1), 0x5a, PS);
    assert_int_equal(ram_saver_new(&s, src.b, 1, NULL), 0);
    ram_mark_all_dirty(src.b, 1);
    body = save_dirty(s, 0, NULL, NULL);
    assert_int_equal(body.len, sizeof(zero_rec) + 8 + PS + 8);
    assert_memory_equal(body.data, zero_rec, sizeof(zero_rec));
    assert_memory_equal(body.data + sizeof(zero_rec), page_hdr, 8);
    assert_memory_equal(body.data + sizeof(zero_rec) + 8,
                        page_of(&src, 0, 1), PS);
    assert_memory_equal(body.data + body.len - 8, "\0\0\0\0\0\0\0\x10", 8);
    free(body.data);
    ram_saver_free(s);
    vm_free(&src);
}

static void test_partial_and_max_pages(void **state)
{
    static const uint64_t pages[] = { 100, 5 };
    struct vm src, tgt, before;
    ram_saver *s;
    ram_loader *l;
    ram_save_stats st;
    int64_t n;
    uint64_t total = 0, last_remaining = 1000;
    (void)state;

    vm_init(&src, 2, pages);
    vm_init(&tgt, 2, pages);
    vm_init(&before, 2, pages);
    fill_mixed(&src);
    assert_int_equal(ram_saver_new(&s, src.b, 2, NULL), 0);
    assert_int_equal(ram_loader_new(&l, tgt.b, 2), 0);

    /* Only the pages marked dirty travel. */
    set_dirty(&src.b[0], 0);
    set_dirty(&src.b[0], 64);
    set_dirty(&src.b[0], 99);
    set_dirty(&src.b[1], 4);
    memset(page_of(&tgt, 0, 1), 0x77, PS);
    memcpy(before.b[0].host, tgt.b[0].host, tgt.b[0].length);
    assert_int_equal(load_stream(l, save_dirty(s, 0, &st, &n)), 0);
    assert_int_equal(n, 4);
    for (uint64_t p = 0; p < 100; p++) {
        const uint8_t *want = p == 0 || p == 64 || p == 99
                                  ? page_of(&src, 0, p)
                                  : page_of(&before, 0, p);

        assert_memory_equal(page_of(&tgt, 0, p), want, PS);
    }
    assert_memory_equal(page_of(&tgt, 1, 4), page_of(&src, 1, 4), PS);

    /* max_pages splits a full pass; each call names its first block. */
    ram_mark_all_dirty(src.b, 2);
    for (;;) {
        struct stream body = save_dirty(s, 7, &st, &n);
        struct rec recs[8];
        size_t nrec = parse_records(body, recs, 8);

        assert_true(n <= 7);
        assert_int_equal(nrec, (size_t)n);
        if (n)
            assert_false(recs[0].flags & RAM_FLAG_CONTINUE);
        total += (uint64_t)n;
        assert_int_equal(st.remaining, 105 - total);
        assert_true(st.remaining < last_remaining);
        last_remaining = st.remaining;
        assert_int_equal(load_stream(l, body), 0);
        if (!st.remaining)
            break;
    }
    assert_int_equal(total, 105);
    vm_assert_equal(&src, &tgt);

    ram_loader_free(l);
    ram_saver_free(s);
    vm_free(&src);
    vm_free(&tgt);
    vm_free(&before);
}

static void test_compression(void **state)
{
    static const uint64_t pages[] = { 16, 4 };
    static const int levels[] = { 1, 6, 9 };
    (void)state;

    for (size_t k = 0; k < 3; k++) {
        struct vm src, tgt;
        ram_save_opts o = { levels[k], 0 };
        ram_saver *s;
        ram_loader *l;
        ram_save_stats st;
        struct stream body;
        struct rec recs[20];
        size_t nrec, pos = 0;

        vm_init(&src, 2, pages);
        vm_init(&tgt, 2, pages);
        fill_mixed(&src);
        assert_int_equal(ram_saver_new(&s, src.b, 2, &o), 0);
        assert_int_equal(ram_loader_new(&l, tgt.b, 2), 0);
        ram_mark_all_dirty(src.b, 2);
        body = save_dirty(s, 0, &st, NULL);
        assert_int_equal(st.normal_pages, 0);
        assert_int_equal(st.compressed_pages + st.zero_pages, 20);
        assert_true(st.compressed_pages > 0 && st.zero_pages > 0);

        /* Each compressed page is a standalone zlib stream. */
        nrec = parse_records(body, recs, 20);
        assert_int_equal(nrec, 20);
        assert_int_equal(recs[0].flags, RAM_FLAG_COMPRESS_PAGE);
        pos = 8 + 1 + strlen(names[0]);
        assert_int_equal(body.data[pos + 4], 0x78);
        {
            uint8_t out[PS];
            uLongf outlen = PS;
            uint32_t len = (uint32_t)body.data[pos] << 24 |
                           (uint32_t)body.data[pos + 1] << 16 |
                           (uint32_t)body.data[pos + 2] << 8 |
                           body.data[pos + 3];

            assert_int_equal(uncompress(out, &outlen, body.data + pos + 4, len),
                             Z_OK);
            assert_int_equal(outlen, PS);
            assert_memory_equal(out, page_of(&src, 0, 0), PS);
        }

        assert_int_equal(load_stream(l, body), 0);
        vm_assert_equal(&src, &tgt);
        {
            ram_block_counts c;

            assert_int_equal(ram_loader_counts(l, 0, &c), 0);
            assert_true(c.compressed_pages > 0);
            assert_true(c.compressed_bytes > 0);
        }
        ram_loader_free(l);
        ram_saver_free(s);
        vm_free(&src);
        vm_free(&tgt);
    }
}

static void test_xbzrle_saves(void **state)
{
    static const uint64_t pages[] = { 32, 8 };
    struct vm src, tgt;
    ram_save_opts o = { 0, 64 * PS };
    ram_saver *s;
    ram_loader *l;
    ram_save_stats st;
    int64_t n;
    struct stream body;
    struct rec recs[64];
    size_t nrec;
    (void)state;

    vm_init(&src, 2, pages);
    vm_init(&tgt, 2, pages);
    fill_mixed(&src);
    assert_int_equal(ram_saver_new(&s, src.b, 2, &o), 0);
    assert_int_equal(ram_loader_new(&l, tgt.b, 2), 0);

    /* First pass: everything is a cache miss. */
    ram_mark_all_dirty(src.b, 2);
    assert_int_equal(load_stream(l, save_dirty(s, 0, &st, NULL)), 0);
    assert_int_equal(st.xbzrle_pages, 0);
    assert_int_equal(st.cache_misses, st.normal_pages);
    vm_assert_equal(&src, &tgt);

    for (int round = 0; round < 4; round++) {
        /* A few bytes in a few nonzero pages change. */
        for (uint64_t p = 0; p < 32; p += 4) {
            uint8_t *pg = page_of(&src, 0, p);

            pg[rnd() % PS] ^= 0x40;
            pg[rnd() % PS] ^= 0x01;
            set_dirty(&src.b[0], p);
        }
        body = save_dirty(s, 0, &st, &n);
        assert_int_equal(n, 8);
        assert_int_equal(st.xbzrle_pages, 8);
        assert_int_equal(st.cache_misses, 0);
        assert_true(body.len < 8 * 64);
        nrec = parse_records(body, recs, 64);
        assert_int_equal(nrec, 8);
        for (size_t i = 0; i < nrec; i++)
            assert_int_equal(recs[i].flags & ~(unsigned)RAM_FLAG_CONTINUE,
                             RAM_FLAG_XBZRLE);
        assert_int_equal(load_stream(l, body), 0);
        vm_assert_equal(&src, &tgt);
    }

    /* Dirty but unchanged: nothing is sent, and the target still matches. */
    set_dirty(&src.b[0], 0);
    set_dirty(&src.b[1], 2);
    body = save_dirty(s, 0, &st, &n);
    assert_int_equal(n, 0);
    assert_int_equal(st.unchanged_pages, 2);
    assert_int_equal(body.len, 8);
    assert_int_equal(load_stream(l, body), 0);

    /* A cached page zeroed goes as ZERO; a later small write is a delta. */
    memset(page_of(&src, 0, 0), 0, PS);
    set_dirty(&src.b[0], 0);
    assert_int_equal(load_stream(l, save_dirty(s, 0, &st, NULL)), 0);
    assert_int_equal(st.zero_pages, 1);
    page_of(&src, 0, 0)[100] = 1;
    set_dirty(&src.b[0], 0);
    assert_int_equal(load_stream(l, save_dirty(s, 0, &st, NULL)), 0);
    assert_int_equal(st.xbzrle_pages, 1);
    vm_assert_equal(&src, &tgt);

    /* A page rewritten entirely overflows the delta: a plain page. */
    for (size_t k = 0; k < PS; k++)
        page_of(&src, 0, 2)[k] = (uint8_t)rnd() | 1;
    set_dirty(&src.b[0], 2);
    assert_int_equal(load_stream(l, save_dirty(s, 0, &st, NULL)), 0);
    assert_int_equal(st.xbzrle_overflows, 1);
    assert_int_equal(st.normal_pages, 1);
    vm_assert_equal(&src, &tgt);
    /* ... and the cache holds the new contents for the next delta. */
    page_of(&src, 0, 2)[7] ^= 0xff;
    set_dirty(&src.b[0], 2);
    assert_int_equal(load_stream(l, save_dirty(s, 0, &st, NULL)), 0);
    assert_int_equal(st.xbzrle_pages, 1);
    vm_assert_equal(&src, &tgt);

    /* After dropping the cache, pages go whole again. */
    ram_saver_drop_cache(s);
    page_of(&src, 0, 2)[9] ^= 0xff;
    set_dirty(&src.b[0], 2);
    assert_int_equal(load_stream(l, save_dirty(s, 0, &st, NULL)), 0);
    assert_int_equal(st.cache_misses, 1);
    assert_int_equal(st.normal_pages, 1);
    vm_assert_equal(&src, &tgt);

    ram_loader_free(l);
    ram_saver_free(s);
    vm_free(&src);
    vm_free(&tgt);
}

static void test_xbzrle_eviction(void **state)
{
    static const uint64_t pages[] = { 8 };
    struct vm src, tgt;
    ram_save_opts o = { 0, 2 * PS + 100 };
    ram_saver *s;
    ram_loader *l;
    ram_save_stats st;
    (void)state;

    vm_init(&src, 1, pages);
    vm_init(&tgt, 1, pages);
    for (uint64_t p = 0; p < 8; p++)
        memset(page_of(&src, 0, p), (int)(p + 1), PS);
    assert_int_equal(ram_saver_new(&s, src.b, 1, &o), 0);
    assert_int_equal(ram_loader_new(&l, tgt.b, 1), 0);
    ram_mark_all_dirty(src.b, 1);
    assert_int_equal(load_stream(l, save_dirty(s, 0, &st, NULL)), 0);
    assert_int_equal(st.cache_misses, 8);

    /*
     * Two slots, page p in slot p % 2: after the pass they hold pages 6
     * and 7.  Each step changes some pages and says which should hit.
     */
    {
        static const struct {
            uint64_t pages[2];
            size_t n;
            uint64_t hits;
        } steps[] = {
            { { 0, 1 }, 2, 0 },     /* evicted by 6 and 7 */
            { { 0, 1 }, 2, 2 },     /* back in the cache */
            { { 2, 1 }, 2, 1 },     /* 2 misses and evicts 0 */
            { { 0, 0 }, 1, 0 },     /* gone */
            { { 0, 3 }, 2, 1 },     /* 0 was just reinserted */
            { { 6, 7 }, 2, 0 },
        };

        for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
            for (size_t i = 0; i < steps[k].n; i++) {
                page_of(&src, 0, steps[k].pages[i])[k] ^= 0xff;
                set_dirty(&src.b[0], steps[k].pages[i]);
            }
            assert_int_equal(load_stream(l, save_dirty(s, 0, &st, NULL)), 0);
            assert_int_equal(st.xbzrle_pages, steps[k].hits);
            assert_int_equal(st.cache_misses, steps[k].n - steps[k].hits);
            assert_int_equal(st.normal_pages, steps[k].n - steps[k].hits);
            vm_assert_equal(&src, &tgt);
        }
    }
    ram_loader_free(l);
    ram_saver_free(s);
    vm_free(&src);
    vm_free(&tgt);
}

static void test_xbzrle_with_compression(void **state)
{
    static const uint64_t pages[] = { 24 };
    struct vm src, tgt;
    ram_save_opts o = { 3, 64 * PS };
    ram_saver *s;
    ram_loader *l;
    ram_save_stats st;
    (void)state;

    vm_init(&src, 1, pages);
    vm_init(&tgt, 1, pages);
    fill_mixed(&src);
    assert_int_equal(ram_saver_new(&s, src.b, 1, &o), 0);
    assert_int_equal(ram_loader_new(&l, tgt.b, 1), 0);
    ram_mark_all_dirty(src.b, 1);
    assert_int_equal(load_stream(l, save_dirty(s, 0, &st, NULL)), 0);
    assert_true(st.compressed_pages > 0);
    assert_int_equal(st.normal_pages, 0);
    page_of(&src, 0, 2)[5] ^= 1;
    ram_mark_all_dirty(src.b, 1);
    assert_int_equal(load_stream(l, save_dirty(s, 0, &st, NULL)), 0);
    assert_int_equal(st.xbzrle_pages, 1);
    vm_assert_equal(&src, &tgt);
    ram_loader_free(l);
    ram_saver_free(s);
    vm_free(&src);
    vm_free(&tgt);
}

/*
 * Every strict prefix of a body must fail validation and leave the
 * target exactly as it was; the whole body must then apply.
 */
static void truncate_everywhere(struct vm *tgt, ram_loader *l,
                                ram_loader *insp, struct stream body,
                                const struct vm *want)
{
    struct snap snap;

    for (size_t len = 0; len < body.len; len++) {
        snap_take(&snap, tgt);
        assert_true(load_checked(l, body.data, len, 4) < 0);
        snap_check_free(&snap, tgt);
        assert_true(last_err_off <= len);
        assert_true(load_checked(insp, body.data, len, 4) < 0);
    }
    assert_int_equal(load_checked(l, body.data, body.len, 4), 0);
    assert_int_equal(load_checked(insp, body.data, body.len, 4), 0);
    if (want)
        vm_assert_equal(want, tgt);
}

static void test_truncation(void **state)
{
    static const uint64_t pages[] = { 6, 3 };
    (void)state;

    for (int level = 0; level <= 1; level++) {
        struct vm src, tgt;
        ram_save_opts o = { level, 64 * PS };
        ram_saver *s;
        ram_loader *l, *insp;
        ram_save_stats st;
        struct stream body;

        vm_init(&src, 2, pages);
        vm_init(&tgt, 2, pages);
        fill_mixed(&src);
        assert_int_equal(ram_saver_new(&s, src.b, 2, &o), 0);
        assert_int_equal(ram_loader_new(&l, tgt.b, 2), 0);
        assert_int_equal(ram_loader_new_inspect(&insp), 0);

        body = save_setup(s);
        truncate_everywhere(&tgt, l, insp, body, NULL);
        free(body.data);

        ram_mark_all_dirty(src.b, 2);
        body = save_dirty(s, 0, &st, NULL);
        truncate_everywhere(&tgt, l, insp, body, &src);
        free(body.data);

        /* Now a body with deltas, zeros and whole pages together. */
        page_of(&src, 0, 0)[3] ^= 1;
        memset(page_of(&src, 0, 2), 0, PS);
        for (size_t k = 0; k < PS; k++)
            page_of(&src, 1, 1)[k] = (uint8_t)(rnd() | 1);
        ram_mark_all_dirty(src.b, 2);
        body = save_dirty(s, 0, &st, NULL);
        assert_true(st.xbzrle_pages > 0 && st.zero_pages > 0);
        assert_true(st.normal_pages + st.compressed_pages > 0);
        truncate_everywhere(&tgt, l, insp, body, &src);
        free(body.data);

        ram_loader_free(insp);
        ram_loader_free(l);
        ram_saver_free(s);
        vm_free(&src);
        vm_free(&tgt);
    }
}

static void test_fd_channel(void **state)
{
    static const uint64_t pages[] = { 40 };
    struct vm src, tgt;
    ram_save_opts o = { 0, 8 * PS };
    ram_saver *s;
    ram_loader *l;
    FILE *tmp = tmpfile();
    qfile *w, *r;
    (void)state;

    assert_non_null(tmp);
    vm_init(&src, 1, pages);
    vm_init(&tgt, 1, pages);
    fill_mixed(&src);
    assert_int_equal(ram_saver_new(&s, src.b, 1, &o), 0);
    assert_int_equal(ram_loader_new(&l, tgt.b, 1), 0);

    w = qfile_open_fd(fileno(tmp), QFILE_WRITE, "tmpfile");
    assert_int_equal(ram_save_setup(s, w), 0);
    ram_mark_all_dirty(src.b, 1);
    assert_int_equal(ram_save_dirty(s, w, 0, NULL), 40);
    /* Pages were queued by reference: flush before they change. */
    assert_int_equal(qfile_flush(w), 0);
    page_of(&src, 0, 0)[1] ^= 1;
    set_dirty(&src.b[0], 0);
    assert_int_equal(ram_save_dirty(s, w, 0, NULL), 1);
    assert_int_equal(qfile_close(w), 0);

    assert_int_equal(lseek(fileno(tmp), 0, SEEK_SET), 0);
    r = qfile_open_fd(fileno(tmp), QFILE_READ, "tmpfile");
    for (int pass = 0; pass < 2; pass++) {
        savevm_pass p = pass ? SAVEVM_PASS_APPLY : SAVEVM_PASS_VALIDATE;

        assert_int_equal(qfile_rewind(r), 0);
        for (int body = 0; body < 3; body++)
            assert_int_equal(ram_load(l, r, 4, p), 0);
        assert_true(qfile_at_eof(r));
    }
    vm_assert_equal(&src, &tgt);
    assert_int_equal(qfile_close(r), 0);
    fclose(tmp);
    ram_loader_free(l);
    ram_saver_free(s);
    vm_free(&src);
    vm_free(&tgt);
}

static void test_inspect(void **state)
{
    static const uint64_t pages[] = { 10, 4 };
    struct vm src;
    ram_save_opts o = { 1, 0 };
    ram_saver *s;
    ram_loader *l;
    ram_block_counts c;
    struct stream setup, body;
    qfile *w;
    (void)state;

    vm_init(&src, 2, pages);
    fill_mixed(&src);
    assert_int_equal(ram_saver_new(&s, src.b, 2, &o), 0);
    assert_int_equal(ram_loader_new_inspect(&l), 0);
    setup = save_setup(s);
    ram_mark_all_dirty(src.b, 2);
    body = save_dirty(s, 0, NULL, NULL);

    /* Pages before any block list name unknown blocks. */
    assert_int_equal(load_checked(l, body.data, body.len, 4), -ENOENT);
    assert_int_equal(load_stream(l, setup), 0);
    assert_int_equal(ram_loader_nblocks(l), 2);
    assert_int_equal(load_stream(l, body), 0);
    assert_int_equal(ram_loader_counts(l, 0, &c), 0);
    assert_string_equal(c.name, "pc.ram");
    assert_int_equal(c.length, 10 * PS);
    assert_int_equal(c.zero_pages + c.compressed_pages, 10);
    assert_int_equal(c.zero_pages, 3);
    assert_true(c.compressed_bytes > 0);
    assert_int_equal(ram_loader_counts(l, 1, &c), 0);
    assert_string_equal(c.name, "vga.vram");
    assert_int_equal(c.zero_pages + c.compressed_pages, 4);

    /* A different length for a learned block is refused. */
    w = qfile_open_mem("m");
    qfile_put_be64(w, 2 * PS | RAM_FLAG_MEM_SIZE);
    qfile_put_str(w, "pc.ram");
    qfile_put_be64(w, 2 * PS);
    qfile_put_be64(w, RAM_FLAG_EOS);
    assert_int_equal(load_stream(l, take(w)), -EINVAL);

    /* A corrupt XBZRLE page is caught without any memory behind it. */
    w = qfile_open_mem("m");
    put_page_rec(w, PS | RAM_FLAG_XBZRLE, "pc.ram");
    qfile_put_u8(w, 1);
    qfile_put_be16(w, 3);
    qfile_put_buf(w, "\x00\x09z", 3);
    qfile_put_be64(w, RAM_FLAG_EOS);
    assert_int_equal(load_stream(l, take(w)), -EINVAL);

    ram_loader_free(l);
    ram_saver_free(s);
    vm_free(&src);
}

/*
 * QEMU names a block once and continues it in later sections, so CONTINUE
 * refers to the last block named in any earlier body.  VALIDATE of a
 * package runs ahead of APPLY, and each follows its own chain.
 */
static void test_continue_across_sections(void **state)
{
    static const uint64_t pages[] = { 4, 2 };
    struct vm tgt;
    ram_loader *l;
    struct stream a, b, c;
    qfile *w;
    (void)state;

    vm_init(&tgt, 2, pages);
    memset(tgt.b[0].host, 0x11, tgt.b[0].length);
    memset(tgt.b[1].host, 0x22, tgt.b[1].length);
    assert_int_equal(ram_loader_new(&l, tgt.b, 2), 0);

    w = qfile_open_mem("a");               /* names pc.ram */
    put_page_rec(w, RAM_FLAG_ZERO, "pc.ram");
    qfile_put_u8(w, 0);
    qfile_put_be64(w, RAM_FLAG_EOS);
    a = take(w);
    w = qfile_open_mem("b");               /* continues, then names vga.vram */
    put_page_rec(w, 3 * PS | RAM_FLAG_ZERO | RAM_FLAG_CONTINUE, NULL);
    qfile_put_u8(w, 0);
    put_page_rec(w, PS | RAM_FLAG_ZERO, "vga.vram");
    qfile_put_u8(w, 0);
    qfile_put_be64(w, RAM_FLAG_EOS);
    b = take(w);
    w = qfile_open_mem("c");               /* continues vga.vram */
    put_page_rec(w, RAM_FLAG_ZERO | RAM_FLAG_CONTINUE, NULL);
    qfile_put_u8(w, 0);
    qfile_put_be64(w, RAM_FLAG_EOS);
    c = take(w);

    /* One package of two sections: both validated, then both applied. */
    {
        qfile *ra = qfile_open_view(a.data, a.len, "a");
        qfile *rb = qfile_open_view(b.data, b.len, "b");

        assert_int_equal(ram_load(l, ra, 4, SAVEVM_PASS_VALIDATE), 0);
        assert_int_equal(ram_load(l, rb, 4, SAVEVM_PASS_VALIDATE), 0);
        assert_int_equal(tgt.b[0].host[3 * PS], 0x11);
        qfile_rewind(ra);
        qfile_rewind(rb);
        assert_int_equal(ram_load(l, ra, 4, SAVEVM_PASS_APPLY), 0);
        assert_int_equal(ram_load(l, rb, 4, SAVEVM_PASS_APPLY), 0);
        qfile_close(ra);
        qfile_close(rb);
    }
    assert_int_equal(tgt.b[0].host[0], 0);
    assert_int_equal(tgt.b[0].host[3 * PS], 0);
    assert_int_equal(tgt.b[0].host[PS], 0x11);
    assert_int_equal(tgt.b[1].host[PS], 0);

    /* The next package continues the last block applied: vga.vram. */
    assert_int_equal(load_stream(l, c), 0);
    assert_int_equal(tgt.b[1].host[0], 0);
    assert_int_equal(tgt.b[0].host[PS], 0x11);

    /*
     * A unit refused after its VALIDATE named pc.ram (never applied): the
     * next unit's VALIDATE starts again from vga.vram, so a CONTINUE at
     * 3 pages is out of range there, though it would fit pc.ram.
     */
    {
        qfile *ra = qfile_open_view(a.data, a.len, "a");

        assert_int_equal(ram_load(l, ra, 4, SAVEVM_PASS_VALIDATE), 0);
        qfile_close(ra);
    }
    w = qfile_open_mem("d");
    put_page_rec(w, 3 * PS | RAM_FLAG_ZERO | RAM_FLAG_CONTINUE, NULL);
    qfile_put_u8(w, 0);
    qfile_put_be64(w, RAM_FLAG_EOS);
    c = take(w);
    ram_loader_begin_validate(l);
    assert_int_equal(load_stream(l, c), -ERANGE);
    assert_non_null(strstr(last_msg, "\"vga.vram\": page offset 0x3000"));
    assert_int_equal(tgt.b[0].host[3 * PS], 0);

    free(a.data);
    free(b.data);
    ram_loader_free(l);
    vm_free(&tgt);
}

/* A target page mapped read-only and zero must not be written to. */
static void test_zero_page_not_written(void **state)
{
    uint8_t *ro = mmap(NULL, 2 * PS, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
    ram_block b = { "pc.ram", ro, 2 * PS, NULL };
    ram_loader *l;
    qfile *w = qfile_open_mem("m");
    (void)state;

    assert_true(ro != MAP_FAILED);
    assert_int_equal(ram_loader_new(&l, &b, 1), 0);
    put_page_rec(w, RAM_FLAG_ZERO, "pc.ram");
    qfile_put_u8(w, 0);
    put_page_rec(w, PS | RAM_FLAG_ZERO | RAM_FLAG_CONTINUE, NULL);
    qfile_put_u8(w, 0);
    qfile_put_be64(w, RAM_FLAG_EOS);
    assert_int_equal(load_stream(l, take(w)), 0);
    ram_loader_free(l);
    munmap(ro, 2 * PS);
}

/* ---- refusals ---- */

static const uint64_t err_pages[] = { 4, 2 };

static void test_err_version(void **state)
{
    struct vm tgt;
    ram_loader *l;
    (void)state;

    vm_init(&tgt, 2, err_pages);
    assert_int_equal(ram_loader_new(&l, tgt.b, 2), 0);
    assert_int_equal(load_checked(l, (const uint8_t *)"\0\0\0\0\0\0\0\x10", 8,
                                  3), -ENOTSUP);
    assert_non_null(strstr(last_msg, "version 3"));
    assert_int_equal(load_checked(l, (const uint8_t *)"\0\0\0\0\0\0\0\x10", 8,
                                  4), 0);
    ram_loader_free(l);
    vm_free(&tgt);
}

static void test_err_offsets(void **state)
{
    struct vm tgt;
    qfile *w;
    (void)state;

    vm_init(&tgt, 2, err_pages);
    memset(tgt.b[0].host, 0x33, tgt.b[0].length);

    /* Page offset at the block's end. */
    w = qfile_open_mem("m");
    put_page_rec(w, 4 * PS | RAM_FLAG_PAGE, "pc.ram");
    qfile_put_buf(w, page_buf, PS);
    qfile_put_be64(w, RAM_FLAG_EOS);
    expect_refused(&tgt, w, -ERANGE, "\"pc.ram\"", "0x4000");

    /* Far outside, after a good page: nothing of the good page lands. */
    w = qfile_open_mem("m");
    put_page_rec(w, PS | RAM_FLAG_ZERO, "pc.ram");
    qfile_put_u8(w, 0);
    put_page_rec(w, 0x7ffff000 | RAM_FLAG_ZERO | RAM_FLAG_CONTINUE, NULL);
    qfile_put_u8(w, 0);
    qfile_put_be64(w, RAM_FLAG_EOS);
    expect_refused(&tgt, w, -ERANGE, "\"pc.ram\"", "0x7ffff000");

    /* In the second block, its own (smaller) length counts. */
    w = qfile_open_mem("m");
    put_page_rec(w, 2 * PS | RAM_FLAG_ZERO, "vga.vram");
    qfile_put_u8(w, 0);
    qfile_put_be64(w, RAM_FLAG_EOS);
    expect_refused(&tgt, w, -ERANGE, "\"vga.vram\"", "0x2000");

    /* An unaligned offset shows up as bits below the page size. */
    w = qfile_open_mem("m");
    put_page_rec(w, PS | 0x400 | RAM_FLAG_PAGE, "pc.ram");
    qfile_put_buf(w, page_buf, PS);
    qfile_put_be64(w, RAM_FLAG_EOS);
    expect_refused(&tgt, w, -EINVAL, "0x400", "unaligned");
    vm_free(&tgt);
}

static void test_err_blocks(void **state)
{
    struct vm tgt, other;
    static const uint64_t other_pages[] = { 4, 3 };
    qfile *w;
    (void)state;

    vm_init(&tgt, 2, err_pages);
    vm_init(&other, 2, other_pages);

    w = qfile_open_mem("m");
    put_page_rec(w, RAM_FLAG_ZERO, "nosuch.ram");
    qfile_put_u8(w, 0);
    qfile_put_be64(w, RAM_FLAG_EOS);
    expect_refused(&tgt, w, -ENOENT, "\"nosuch.ram\"", NULL);

    w = qfile_open_mem("m");
    put_page_rec(w, PS | RAM_FLAG_ZERO | RAM_FLAG_CONTINUE, NULL);
    qfile_put_u8(w, 0);
    qfile_put_be64(w, RAM_FLAG_EOS);
    expect_refused(&tgt, w, -EINVAL, "no block", "0x1000");

    /* MEM_SIZE: a block of another length, named with both lengths. */
    w = qfile_open_mem("m");
    put_mem_size(w, &other);
    qfile_put_be64(w, RAM_FLAG_EOS);
    expect_refused(&tgt, w, -EINVAL, "\"vga.vram\"", "0x3000, this VM 0x2000");

    /* MEM_SIZE: a block this VM lacks. */
    w = qfile_open_mem("m");
    qfile_put_be64(w, PS | RAM_FLAG_MEM_SIZE);
    qfile_put_str(w, "extra");
    qfile_put_be64(w, PS);
    qfile_put_be64(w, RAM_FLAG_EOS);
    expect_refused(&tgt, w, -ENOENT, "\"extra\"", NULL);

    /* MEM_SIZE: lengths that do not add up to the total. */
    w = qfile_open_mem("m");
    qfile_put_be64(w, 3 * PS | RAM_FLAG_MEM_SIZE);
    qfile_put_str(w, "pc.ram");
    qfile_put_be64(w, 4 * PS);
    qfile_put_be64(w, RAM_FLAG_EOS);
    expect_refused(&tgt, w, -EINVAL, "\"pc.ram\"", "total 0x3000");

    /* MEM_SIZE: a total larger than the list is a truncated list. */
    w = qfile_open_mem("m");
    qfile_put_be64(w, 5 * PS | RAM_FLAG_MEM_SIZE);
    qfile_put_str(w, "pc.ram");
    qfile_put_be64(w, 4 * PS);
    qfile_put_be64(w, RAM_FLAG_EOS);
    expect_refused(&tgt, w, -ENODATA, NULL, NULL);

    vm_free(&tgt);
    vm_free(&other);
}

static void test_err_flags(void **state)
{
    static const uint64_t bad[] = {
        PS | 0x01 | RAM_FLAG_PAGE,              /* obsolete FULL */
        PS | 0x80 | RAM_FLAG_PAGE,              /* HOOK */
        PS | 0x200,                             /* multifd flush */
        PS | 0x800 | RAM_FLAG_ZERO,
    };
    static const char *const bits[] = { "0x1", "0x80", "0x200", "0x800" };
    static const uint64_t combos[] = {
        PS | RAM_FLAG_ZERO | RAM_FLAG_PAGE,
        RAM_FLAG_EOS | RAM_FLAG_CONTINUE,
        RAM_FLAG_EOS | PS,
        RAM_FLAG_MEM_SIZE | RAM_FLAG_CONTINUE,
        RAM_FLAG_CONTINUE,
        0,
    };
    struct vm tgt;
    qfile *w;
    (void)state;

    vm_init(&tgt, 2, err_pages);
    for (size_t i = 0; i < 4; i++) {
        w = qfile_open_mem("m");
        put_page_rec(w, bad[i], "pc.ram");
        qfile_put_buf(w, page_buf, PS);
        qfile_put_be64(w, RAM_FLAG_EOS);
        expect_refused(&tgt, w, -EINVAL, "unknown flags", bits[i]);
    }
    for (size_t i = 0; i < 6; i++) {
        w = qfile_open_mem("m");
        qfile_put_be64(w, combos[i]);
        qfile_put_be64(w, RAM_FLAG_EOS);
        expect_refused(&tgt, w, -EINVAL, "invalid combination", NULL);
    }
    vm_free(&tgt);
}

static void test_err_zero_fill(void **state)
{
    struct vm tgt;
    qfile *w;
    (void)state;

    vm_init(&tgt, 2, err_pages);
    memset(tgt.b[0].host, 0x11, tgt.b[0].length);
    w = qfile_open_mem("m");
    put_page_rec(w, 2 * PS | RAM_FLAG_ZERO, "pc.ram");
    qfile_put_u8(w, 0xcc);
    qfile_put_be64(w, RAM_FLAG_EOS);
    expect_refused(&tgt, w, -EINVAL, "fill byte 0xcc", "0x2000");
    vm_free(&tgt);
}

static void put_compressed(qfile *w, uint32_t len, const void *data)
{
    put_page_rec(w, PS | RAM_FLAG_COMPRESS_PAGE, "pc.ram");
    qfile_put_be32(w, len);
    qfile_put_buf(w, data, len);
    qfile_put_be64(w, RAM_FLAG_EOS);
}

static void test_err_compressed(void **state)
{
    struct vm tgt;
    static uint8_t src[PS + 1], z[PS + 64];
    uLongf zlen;
    qfile *w;
    (void)state;

    vm_init(&tgt, 2, err_pages);
    memset(tgt.b[0].host, 0x22, tgt.b[0].length);
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (uint8_t)(i * 7);

    /* A good one first, so the failures below are about their defect. */
    zlen = sizeof(z);
    assert_int_equal(compress2(z, &zlen, src, PS, 6), Z_OK);
    w = qfile_open_mem("m");
    put_compressed(w, (uint32_t)zlen, z);
    {
        ram_loader *l;

        assert_int_equal(ram_loader_new(&l, tgt.b, 2), 0);
        assert_int_equal(load_stream(l, take(w)), 0);
        assert_memory_equal(tgt.b[0].host + PS, src, PS);
        ram_loader_free(l);
    }

    w = qfile_open_mem("m");
    put_compressed(w, 0, z);
    expect_refused(&tgt, w, -EINVAL, "length 0", "0x1000");

    w = qfile_open_mem("m");
    put_compressed(w, (uint32_t)compressBound(PS) + 1, z);
    expect_refused(&tgt, w, -EINVAL, "\"pc.ram\"", "length");

    w = qfile_open_mem("m");
    z[zlen / 2] ^= 0x55;
    put_compressed(w, (uint32_t)zlen, z);
    expect_refused(&tgt, w, -EINVAL, "\"pc.ram\"", "compressed page at 0x1000");

    w = qfile_open_mem("m");
    put_compressed(w, 7, "garbage");
    expect_refused(&tgt, w, -EINVAL, "compressed page", NULL);

    zlen = sizeof(z);
    assert_int_equal(compress2(z, &zlen, src, PS - 1, 6), Z_OK);
    w = qfile_open_mem("m");
    put_compressed(w, (uint32_t)zlen, z);
    expect_refused(&tgt, w, -EINVAL, "less than a page", NULL);

    zlen = sizeof(z);
    assert_int_equal(compress2(z, &zlen, src, PS + 1, 6), Z_OK);
    w = qfile_open_mem("m");
    put_compressed(w, (uint32_t)zlen, z);
    expect_refused(&tgt, w, -EINVAL, "more than a page", NULL);

    zlen = sizeof(z);
    assert_int_equal(compress2(z, &zlen, src, PS, 6), Z_OK);
    z[zlen] = 0;
    w = qfile_open_mem("m");
    put_compressed(w, (uint32_t)zlen + 1, z);
    expect_refused(&tgt, w, -EINVAL, "after the end", NULL);

    vm_free(&tgt);
}

static void put_xbzrle(qfile *w, uint8_t enc, uint16_t len, const void *data,
                       size_t have)
{
    put_page_rec(w, 3 * PS | RAM_FLAG_XBZRLE, "pc.ram");
    qfile_put_u8(w, enc);
    qfile_put_be16(w, len);
    qfile_put_buf(w, data, have);
    qfile_put_be64(w, RAM_FLAG_EOS);
}

static void test_err_xbzrle(void **state)
{
    struct vm tgt;
    static uint8_t big[PS + 1];
    qfile *w;
    (void)state;

    vm_init(&tgt, 2, err_pages);
    memset(tgt.b[0].host, 0x44, tgt.b[0].length);

    w = qfile_open_mem("m");
    put_xbzrle(w, 2, 3, "\x00\x01z", 3);
    expect_refused(&tgt, w, -EINVAL, "encoding 0x02", "0x3000");

    w = qfile_open_mem("m");
    put_xbzrle(w, 1, PS + 1, big, sizeof(big));
    expect_refused(&tgt, w, -EINVAL, "more than a page", "\"pc.ram\"");

    /* Skip 4095, then two bytes: past the end of the page. */
    w = qfile_open_mem("m");
    put_xbzrle(w, 1, 5, "\xff\x1f\x02zz", 5);
    expect_refused(&tgt, w, -EINVAL, "malformed", "0x3000");

    w = qfile_open_mem("m");
    put_xbzrle(w, 1, 4, "\x00\x05zz", 4);
    expect_refused(&tgt, w, -EINVAL, "malformed", NULL);

    /* The record claims more bytes than the stream has. */
    w = qfile_open_mem("m");
    put_page_rec(w, 3 * PS | RAM_FLAG_XBZRLE, "pc.ram");
    qfile_put_u8(w, 1);
    qfile_put_be16(w, 100);
    qfile_put_buf(w, "\x00\x01z", 3);
    expect_refused(&tgt, w, -ENODATA, NULL, NULL);

    /* A good delta applies against the page already in the target. */
    {
        ram_loader *l;

        w = qfile_open_mem("m");
        put_xbzrle(w, 1, 5, "\x0a\x03xyz", 5);
        assert_int_equal(ram_loader_new(&l, tgt.b, 2), 0);
        assert_int_equal(load_stream(l, take(w)), 0);
        assert_memory_equal(tgt.b[0].host + 3 * PS + 10, "xyz", 3);
        assert_int_equal(tgt.b[0].host[3 * PS + 9], 0x44);
        assert_int_equal(tgt.b[0].host[3 * PS + 13], 0x44);
        ram_loader_free(l);
    }
    vm_free(&tgt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_setup_layout),
        cmocka_unit_test(test_roundtrip_blocks_continue),
        cmocka_unit_test(test_exact_record_bytes),
        cmocka_unit_test(test_partial_and_max_pages),
        cmocka_unit_test(test_compression),
        cmocka_unit_test(test_xbzrle_saves),
        cmocka_unit_test(test_xbzrle_eviction),
        cmocka_unit_test(test_xbzrle_with_compression),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_fd_channel),
        cmocka_unit_test(test_inspect),
        cmocka_unit_test(test_continue_across_sections),
        cmocka_unit_test(test_zero_page_not_written),
        cmocka_unit_test(test_err_version),
        cmocka_unit_test(test_err_offsets),
        cmocka_unit_test(test_err_blocks),
        cmocka_unit_test(test_err_flags),
        cmocka_unit_test(test_err_zero_fill),
        cmocka_unit_test(test_err_compressed),
        cmocka_unit_test(test_err_xbzrle),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
