/*
 * Unit tests for checkpoint/block: chunk records from one real image into
 * another and back to byte-identical files, the sparse bring-up, and every
 * way the loader refuses a body (each leaves the target image and the
 * stage as they were), the staging bound, and a write that fails for
 * want of room (a small tmpfs in a mount namespace of a child process:
 * ENOSPC; a file size limit: EFBIG) reported with the disk, the chunk and
 * the reason, then applied again.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint/block.h"
#include "diskimg.h"
#include "skips.h"

#define MIB (1024u * 1024u)
#define LBITS (sizeof(unsigned long) * CHAR_BIT)
#define SIZE (11 * MIB / 2)            /* 6 chunks, the last half full */

static char err[512];
static uint8_t *scratch;

static disk *open_ok(const char *path, bool ro, const char *name)
{
    disk *d = NULL;

    if (disk_open(&d, path, ro, name, err, sizeof(err)))
        fail_msg("disk_open %s: %s", path, err);
    return d;
}

static unsigned long *take(disk *d)
{
    unsigned long *t = calloc(disk_bitmap_longs(d), sizeof(long));

    assert_non_null(t);
    disk_take_dirty(d, t);
    return t;
}

/* The body of src's chunks in taken, as bytes (len in *len). */
static uint8_t *encode(disk *src, const unsigned long *taken, size_t *len,
                       block_save_stats *st)
{
    qfile *f = qfile_open_mem("body");
    const uint8_t *data;
    uint8_t *copy;

    assert_true(block_save(f, src, taken, scratch, st) >= 0);
    data = qfile_mem_data(f, len);
    copy = malloc(*len);
    memcpy(copy, data, *len);
    qfile_close(f);
    return copy;
}

/*
 * One unit as a receiver runs it: validate all of it, then stage it.
 * Returns 0 or the error, with the message in err.
 */
static int load_unit(block_loader *l, const uint8_t *buf, size_t len)
{
    qfile *f = qfile_open_view(buf, len, "body");
    int rc;

    block_loader_begin_validate(l);
    rc = block_load(l, f, BLOCK_SECTION_VERSION, SAVEVM_PASS_VALIDATE);
    if (!rc && !qfile_at_eof(f))
        rc = qfile_fail(f, -EINVAL, "bytes after EOS");
    snprintf(err, sizeof(err), "%s", qfile_errmsg(f));
    qfile_close(f);
    if (rc)
        return rc;
    f = qfile_open_view(buf, len, "body");
    rc = block_load(l, f, BLOCK_SECTION_VERSION, SAVEVM_PASS_APPLY);
    qfile_close(f);
    assert_int_equal(rc, 0);    /* validated: the apply pass cannot fail */
    return 0;
}

static void assert_same_files(const char *a, const char *b)
{
    size_t la, lb;
    uint8_t *x = diskimg_slurp(a, &la), *y = diskimg_slurp(b, &lb);

    assert_int_equal(la, lb);
    assert_memory_equal(x, y, la);
    free(x);
    free(y);
}

static void test_round_trip_all(void **state)
{
    const char *sp = diskimg_make("src.img", SIZE, 1);
    const char *dp = diskimg_make("dst.img", SIZE, 2);
    disk *src = open_ok(sp, false, "disk0"), *dst = open_ok(dp, false,
                                                            "disk0");
    block_save_stats st = { 0 };
    block_stage_counts sc;
    block_loader *l;
    unsigned long *t;
    uint8_t *body;
    size_t len;

    (void)state;
    memset(scratch, 0, MIB);
    assert_int_equal(disk_write(src, 3 * 2048, scratch, 2048), 0);
    disk_mark_all_dirty(src);
    t = take(src);
    body = encode(src, t, &len, &st);
    assert_int_equal(st.zero_chunks, 1);
    assert_int_equal(st.data_chunks, 5);
    assert_int_equal(st.bytes, len);
    /* 5 data records, 1 zero, EOS: header 8, name 1 + 5, data 1 MiB. */
    assert_int_equal(len, 5 * (14 + MIB) + 14 + 8);

    assert_int_equal(block_loader_new(&l, &dst, 1, 0), 0);
    assert_int_equal(load_unit(l, body, len), 0);
    block_stage_counts_get(l, &sc);
    assert_int_equal(sc.zero_chunks, 1);
    assert_int_equal(sc.data_chunks, 5);
    assert_int_equal(sc.data_bytes, SIZE - MIB);
    assert_int_equal(block_apply(l, true, err, sizeof(err)), 0);
    block_stage_counts_get(l, &sc);
    assert_int_equal(sc.zero_chunks + sc.data_chunks, 0);
    assert_same_files(sp, dp);
    /*
     * Every chunk applied is marked, as the RAM loader marks its pages: a
     * checkpoint file of the copy being written meanwhile sends it again.
     */
    assert_int_equal(disk_dirty_count(dst), 6);
    block_loader_free(l);
    disk_close(src);
    disk_close(dst);
    free(t);
    free(body);
}

/* Guest writes after a full copy: only their chunks travel. */
static void test_round_trip_dirty(void **state)
{
    const char *sp = diskimg_make("src.img", SIZE, 1);
    const char *dp = diskimg_make("dst.img", SIZE, 1);
    disk *src = open_ok(sp, false, "disk0"), *dst = open_ok(dp, false,
                                                            "disk0");
    uint8_t sec[3 * 512];
    block_save_stats st = { 0 };
    block_loader *l;
    unsigned long *t;
    uint8_t *body;
    size_t len;

    (void)state;
    diskimg_fill(sec, sizeof(sec), 77);
    assert_int_equal(disk_write(src, 2048 + 5, sec, 3), 0);
    assert_int_equal(disk_write(src, 5 * 2048 + 1000, sec, 1), 0);
    t = take(src);
    body = encode(src, t, &len, &st);
    assert_int_equal(st.data_chunks, 2);
    assert_int_equal(len, 2 * (14 + MIB) + 8);
    assert_int_equal(block_loader_new(&l, &dst, 1, 0), 0);
    assert_int_equal(load_unit(l, body, len), 0);
    assert_int_equal(block_apply(l, false, err, sizeof(err)), 0);
    assert_same_files(sp, dp);
    /* Nothing dirty: a body of EOS alone. */
    free(t);
    free(body);
    t = take(src);
    body = encode(src, t, &len, NULL);
    assert_int_equal(len, 8);
    assert_int_equal(load_unit(l, body, len), 0);
    assert_int_equal(block_apply(l, false, err, sizeof(err)), 0);
    assert_same_files(sp, dp);
    block_loader_free(l);
    disk_close(src);
    disk_close(dst);
    free(t);
    free(body);
}

/* A hand-made body: records appended to a memory channel. */
static void put_chunk(qfile *f, uint64_t sector, unsigned flags,
                      const char *name, const void *data)
{
    qfile_put_be64(f, sector << DISK_SECTOR_BITS | flags);
    if (name)
        qfile_put_str(f, name);
    if (data)
        qfile_put_buf(f, data, DISK_CHUNK_SIZE);
}

static uint8_t *finish(qfile *f, size_t *len)
{
    const uint8_t *data = qfile_mem_data(f, len);
    uint8_t *copy = malloc(*len ? *len : 1);

    memcpy(copy, data, *len);
    qfile_close(f);
    return copy;
}

/*
 * A chunk sent twice in a package: the later record wins, whether data
 * follows zero or zero data, in one body or across bodies; PROGRESS
 * records, as QEMU's bulk phase writes them, are read past.
 */
static void test_repeats(void **state)
{
    const char *dp = diskimg_make("dst.img", SIZE, 2);
    disk *dst = open_ok(dp, false, "disk0");
    uint8_t *a = malloc(MIB), *b = malloc(MIB), *body, *file;
    block_stage_counts sc;
    block_loader *l;
    qfile *f;
    size_t len, flen;

    (void)state;
    diskimg_fill(a, MIB, 10);
    diskimg_fill(b, MIB, 11);
    assert_int_equal(block_loader_new(&l, &dst, 1, 2 * MIB), 0);
    f = qfile_open_mem("body");
    put_chunk(f, 0, BLOCK_FLAG_PROGRESS, NULL, NULL);
    put_chunk(f, 0, BLOCK_FLAG_DEVICE_BLOCK, "disk0", a);
    put_chunk(f, 0, BLOCK_FLAG_DEVICE_BLOCK | BLOCK_FLAG_ZERO_BLOCK,
              "disk0", NULL);                       /* chunk 0: zero */
    put_chunk(f, 2048, BLOCK_FLAG_DEVICE_BLOCK | BLOCK_FLAG_ZERO_BLOCK,
              "disk0", NULL);
    put_chunk(f, 2048, BLOCK_FLAG_DEVICE_BLOCK, "disk0", a);
    put_chunk(f, 2048, BLOCK_FLAG_DEVICE_BLOCK, "disk0", b);  /* 1: b */
    put_chunk(f, 100, BLOCK_FLAG_PROGRESS, NULL, NULL);
    put_chunk(f, 0, BLOCK_FLAG_EOS, NULL, NULL);
    body = finish(f, &len);
    assert_int_equal(load_unit(l, body, len), 0);
    free(body);
    /* A second body: chunk 5 (partial) from a; chunk 0 data again. */
    f = qfile_open_mem("body");
    put_chunk(f, 5 * 2048, BLOCK_FLAG_DEVICE_BLOCK | BLOCK_FLAG_ZERO_BLOCK,
              "disk0", NULL);
    put_chunk(f, 0, BLOCK_FLAG_DEVICE_BLOCK, "disk0", b);
    put_chunk(f, 0, BLOCK_FLAG_EOS, NULL, NULL);
    body = finish(f, &len);
    assert_int_equal(load_unit(l, body, len), 0);
    block_stage_counts_get(l, &sc);
    assert_int_equal(sc.zero_chunks, 1);
    assert_int_equal(sc.data_chunks, 2);
    assert_int_equal(block_apply(l, false, err, sizeof(err)), 0);
    file = diskimg_slurp(dp, &flen);
    assert_memory_equal(file, b, MIB);
    assert_memory_equal(file + MIB, b, MIB);
    assert_true(disk_is_zero(file + 5 * MIB, MIB / 2));
    free(a);
    a = malloc(SIZE);               /* what dst.img held: chunks 2..4 */
    diskimg_fill(a, SIZE, 2);
    assert_memory_equal(file + 2 * MIB, a + 2 * MIB, 3 * MIB);
    block_loader_free(l);
    disk_close(dst);
    free(file);
    free(a);
    free(b);
    free(body);
}

/* A sparse image travels as ZERO records, and lands sparse. */
static void test_sparse(void **state)
{
    const char *sp = diskimg_make("sparse.img", 64 * MIB, 0);
    const char *dp = diskimg_make("dst64.img", 64 * MIB, 3);
    disk *src = open_ok(sp, false, "disk0"), *dst = open_ok(dp, false,
                                                            "disk0");
    uint8_t sec[512];
    block_save_stats st = { 0 };
    block_loader *l;
    unsigned long *t;
    struct stat s;
    uint8_t *body;
    size_t len;

    (void)state;
    memset(sec, 0x5a, sizeof(sec));
    assert_int_equal(disk_write(src, 40 * 2048 + 7, sec, 1), 0);
    disk_mark_all_dirty(src);
    t = take(src);
    body = encode(src, t, &len, &st);
    assert_int_equal(st.zero_chunks, 63);
    assert_int_equal(st.data_chunks, 1);
    assert_int_equal(len, 63 * 14 + 14 + MIB + 8);
    assert_int_equal(block_loader_new(&l, &dst, 1, MIB), 0);
    assert_int_equal(load_unit(l, body, len), 0);
    assert_int_equal(block_apply(l, true, err, sizeof(err)), 0);
    assert_same_files(sp, dp);
    assert_int_equal(stat(dp, &s), 0);
    print_message("64 MiB image after a sparse copy: %lld KiB allocated\n",
                  (long long)s.st_blocks / 2);
    block_loader_free(l);
    disk_close(src);
    disk_close(dst);
    free(t);
    free(body);
}

/*
 * The bring-up: passes of at most 3 chunks while a writer thread keeps
 * writing, applied on the other side as they come; then the writer stops
 * (the guest paused for the first checkpoint), one last pass sends what
 * is still dirty, and the images are the same.
 */
struct scribbler {
    disk *d;
    int stop;
    unsigned writes;
};

static void *scribble(void *arg)
{
    struct scribbler *s = arg;
    uint64_t x = 88172645463325252ULL;
    uint8_t sec[512];

    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memset(sec, (int)(x >> 56), sizeof(sec));
        if (disk_write(s->d, x % disk_sectors(s->d), sec, 1) < 0)
            abort();
        s->writes++;
    }
    return NULL;
}

static void test_live_bringup(void **state)
{
    const char *sp = diskimg_make("live-src.img", 16 * MIB, 40);
    const char *dp = diskimg_make("live-dst.img", 16 * MIB, 41);
    disk *src = open_ok(sp, false, "disk0"), *dst = open_ok(dp, false,
                                                            "disk0");
    struct scribbler s = { .d = src };
    block_save_stats st = { 0 };
    block_loader *l;
    qfile *f = qfile_open_mem("body");
    pthread_t th;
    int passes = 0;
    int64_t n;

    (void)state;
    /* The last pass may carry every chunk: the bound is the disk. */
    assert_int_equal(block_loader_new(&l, &dst, 1, 0), 0);
    disk_mark_all_dirty(src);
    assert_int_equal(pthread_create(&th, NULL, scribble, &s), 0);
    do {
        const uint8_t *b;
        size_t len;

        qfile_mem_reset(f);
        n = block_save_dirty(f, src, scratch, 3, &st);
        assert_true(n >= 0 && n <= 3);
        b = qfile_mem_data(f, &len);
        assert_int_equal(load_unit(l, b, len), 0);
        assert_int_equal(block_apply(l, false, err, sizeof(err)), 0);
        passes++;
    } while ((passes < 6 || st.remaining > 0) && passes < 1000);
    __atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    qfile_mem_reset(f);
    n = block_save_dirty(f, src, scratch, 0, &st);
    assert_true(n >= 0);
    {
        const uint8_t *b;
        size_t len;

        b = qfile_mem_data(f, &len);
        assert_int_equal(load_unit(l, b, len), 0);
        assert_int_equal(block_apply(l, true, err, sizeof(err)), 0);
    }
    assert_int_equal(st.remaining, 0);
    assert_same_files(sp, dp);
    print_message("%d live passes, %u guest writes, %llu data and %llu "
                  "zero chunks sent, %lld in the last pass\n", passes,
                  s.writes, (unsigned long long)st.data_chunks,
                  (unsigned long long)st.zero_chunks, (long long)n);
    block_loader_free(l);
    qfile_close(f);
    disk_close(src);
    disk_close(dst);
}

/*
 * Through the stream's framing, as a secondary will load it: a block
 * START in the setup, then packages whose PART bodies are validated
 * whole before they are staged; a package with a bad record is dropped
 * (the package_failed hook) and leaves the stage empty; each good one is
 * applied after its load.
 */
static int sec_load(void *opaque, qfile *f, const savevm_section *sec,
                    savevm_pass pass)
{
    if (strcmp(sec->idstr, BLOCK_SECTION_IDSTR) || sec->instance_id)
        return qfile_fail(f, -ENOENT, "no section '%s'", sec->idstr);
    return block_load(opaque, f, sec->version_id, pass);
}

static void sec_begin_validate(void *opaque)
{
    block_loader_begin_validate(opaque);
}

static int dropped;

static int sec_drop(void *opaque, qfile *pf)
{
    (void)opaque;
    snprintf(err, sizeof(err), "%s", qfile_errmsg(pf));
    dropped++;
    return 0;
}

static void load_stream(savevm_loader *sl, qfile *f, bool header)
{
    const uint8_t *b;
    savevm_stop why;
    size_t n;
    qfile *r;

    b = qfile_mem_data(f, &n);
    r = qfile_open_view(b, n, "stream");
    if (header)
        assert_int_equal(savevm_load_header(sl, r), 0);
    if (savevm_load_main(sl, r, SAVEVM_PASS_APPLY, true, &why))
        fail_msg("%s", qfile_errmsg(r));
    qfile_close(r);
    qfile_mem_reset(f);
}

static void put_package(qfile *f, disk *src, const unsigned long *taken,
                        bool bad)
{
    qfile *p = qfile_open_mem("pkg");
    const uint8_t *b;
    size_t n;

    savevm_put_section_part(p, SAVEVM_SECTION_PART, 7);
    if (bad)
        put_chunk(p, 0, BLOCK_FLAG_DEVICE_BLOCK | BLOCK_FLAG_ZERO_BLOCK,
                  "disk0", NULL);
    assert_true(block_save(p, src, taken, scratch, NULL) >= 0);
    if (bad) {
        /* Cut the EOS off and end the body with a chunk of no disk. */
        b = qfile_mem_data(p, &n);
        uint8_t *copy = malloc(n - 8);

        memcpy(copy, b, n - 8);
        qfile_mem_reset(p);
        qfile_put_buf(p, copy, n - 8);
        free(copy);
        put_chunk(p, 0, BLOCK_FLAG_DEVICE_BLOCK | BLOCK_FLAG_ZERO_BLOCK,
                  "nodisk", NULL);
        block_save_eos(p);
    }
    savevm_put_footer(p, 7);
    savevm_put_eof(p);
    b = qfile_mem_data(p, &n);
    savevm_put_packaged(f, b, (uint32_t)n);
    qfile_close(p);
}

static void test_packages(void **state)
{
    const char *sp = diskimg_make("pk-src.img", SIZE, 50);
    const char *dp = diskimg_make("pk-dst.img", SIZE, 50);
    disk *src = open_ok(sp, false, "disk0"), *dst = open_ok(dp, false,
                                                            "disk0");
    const savevm_target_ops ops = { .section = sec_load,
                                    .begin_validate = sec_begin_validate,
                                    .package_failed = sec_drop };
    qfile *f = qfile_open_mem("stream");
    block_stage_counts sc;
    block_loader *l;
    savevm_loader *sl;
    unsigned long *t;
    uint8_t sec[512];

    (void)state;
    assert_int_equal(block_loader_new(&l, &dst, 1, 0), 0);
    sl = savevm_loader_new(&ops, l, NULL);
    savevm_put_header(f);
    savevm_put_section_start(f, SAVEVM_SECTION_START, 7, BLOCK_SECTION_IDSTR,
                             0, BLOCK_SECTION_VERSION);
    block_save_eos(f);
    savevm_put_footer(f, 7);
    load_stream(sl, f, true);

    for (int round = 0; round < 3; round++) {
        memset(sec, 0x30 + round, sizeof(sec));
        assert_int_equal(disk_write(src, (uint64_t)(round * 2) * 2048 + 3,
                                    sec, 1), 0);
        assert_int_equal(disk_write(src, 5 * 2048, sec, 1), 0);
        t = take(src);
        put_package(f, src, t, round == 1);
        load_stream(sl, f, false);
        block_stage_counts_get(l, &sc);
        if (round == 1) {
            /* Dropped whole: nothing staged, the image as it was. */
            assert_int_equal(dropped, 1);
            assert_non_null(strstr(err, "unknown disk 'nodisk'"));
            assert_int_equal(sc.data_chunks + sc.zero_chunks, 0);
            /* The primary sends those chunks again with the next. */
            disk_mark_dirty_bits(src, t);
        } else {
            /* Round 2 carries round 1's chunks 2 and 5 too: 2, 4, 5. */
            assert_int_equal(sc.data_chunks, round == 0 ? 2 : 3);
            assert_int_equal(block_apply(l, true, err, sizeof(err)), 0);
        }
        free(t);
    }
    assert_same_files(sp, dp);
    savevm_loader_free(sl);
    block_loader_free(l);
    qfile_close(f);
    disk_close(src);
    disk_close(dst);
}

/* ------------------------------ refusals ------------------------------ */

struct target {
    const char *path;
    disk *d;
    block_loader *l;
    uint8_t *before;
    size_t len;
};

static void target_open(struct target *t, uint64_t max_stage)
{
    t->path = diskimg_make("target.img", SIZE, 4);
    t->d = open_ok(t->path, false, "disk0");
    assert_int_equal(block_loader_new(&t->l, &t->d, 1, max_stage), 0);
    t->before = diskimg_slurp(t->path, &t->len);
}

/* A refused unit: nothing staged from it, nothing in the image. */
static void assert_untouched(struct target *t)
{
    block_stage_counts sc;
    size_t len;
    uint8_t *now;

    block_stage_counts_get(t->l, &sc);
    assert_int_equal(sc.zero_chunks + sc.data_chunks, 0);
    assert_int_equal(block_apply(t->l, false, err, sizeof(err)), 0);
    now = diskimg_slurp(t->path, &len);
    assert_int_equal(len, t->len);
    assert_memory_equal(now, t->before, len);
    free(now);
}

static void target_close(struct target *t)
{
    block_loader_free(t->l);
    disk_close(t->d);
    free(t->before);
}

/* Loads a one-record body (plus EOS) and expects rc with text in err. */
static void refuse(struct target *t, uint64_t hdr, const char *name,
                   const void *data, int rc, const char *text)
{
    qfile *f = qfile_open_mem("body");
    uint8_t *body;
    size_t len;

    qfile_put_be64(f, hdr);
    if (name)
        qfile_put_str(f, name);
    if (data)
        qfile_put_buf(f, data, DISK_CHUNK_SIZE);
    qfile_put_be64(f, BLOCK_FLAG_EOS);
    body = finish(f, &len);
    assert_int_equal(load_unit(t->l, body, len), rc);
    if (!strstr(err, text))
        fail_msg("header 0x%llx: '%s' lacks '%s'", (unsigned long long)hdr,
                 err, text);
    assert_untouched(t);
    free(body);
}

static void test_refuse_records(void **state)
{
    struct target t;
    uint8_t *data = malloc(MIB);
    const uint64_t D = BLOCK_FLAG_DEVICE_BLOCK, Z = BLOCK_FLAG_ZERO_BLOCK;
    static const unsigned bad_flags[] = { 0x10, 0x20, 0x40, 0x80, 0x100,
                                          0x1f0, 0x11 };

    (void)state;
    diskimg_fill(data, MIB, 5);
    target_open(&t, 0);
    for (size_t i = 0; i < sizeof(bad_flags) / sizeof(bad_flags[0]); i++)
        refuse(&t, bad_flags[i], "disk0", data, -EINVAL, "unknown flags");
    refuse(&t, D | BLOCK_FLAG_EOS, "disk0", data, -EINVAL, "is no record");
    refuse(&t, D | BLOCK_FLAG_PROGRESS, "disk0", data, -EINVAL,
           "is no record");
    refuse(&t, Z, NULL, NULL, -EINVAL, "is no record");
    refuse(&t, BLOCK_FLAG_EOS | Z, NULL, NULL, -EINVAL, "is no record");
    refuse(&t, (uint64_t)1 << 9 | BLOCK_FLAG_EOS, NULL, NULL, -EINVAL,
           "is no record");
    refuse(&t, (uint64_t)101 << 9 | BLOCK_FLAG_PROGRESS, NULL, NULL,
           -EINVAL, "is no record");
    /* Sector outside the disk (the next chunk's, and far away). */
    refuse(&t, (uint64_t)6 * 2048 << 9 | D, "disk0", data, -ERANGE,
           "sector 12288 is outside the disk (11264 sectors)");
    refuse(&t, (uint64_t)1 << 54 << 9 | D | Z, "disk0", NULL, -ERANGE,
           "outside the disk");
    /* Inside, but not where a chunk starts. */
    refuse(&t, (uint64_t)1 << 9 | D, "disk0", data, -EINVAL,
           "sector 1 does not start a chunk");
    refuse(&t, (uint64_t)(2048 + 512) << 9 | D | Z, "disk0", NULL, -EINVAL,
           "does not start a chunk");
    refuse(&t, D, "disk1", data, -ENOENT, "unknown disk 'disk1'");
    refuse(&t, D | Z, "", NULL, -ENOENT, "unknown disk ''");
    /* ZERO carries no data: the data is read as the next header. */
    refuse(&t, D | Z, "disk0", data, -EINVAL, "block: record header");
    /* A good record, then a bad one: the good one is not staged either. */
    {
        qfile *f = qfile_open_mem("body");
        uint8_t *body;
        size_t len;

        put_chunk(f, 0, D, "disk0", data);
        put_chunk(f, 2048, D, "disk9", data);
        put_chunk(f, 0, BLOCK_FLAG_EOS, NULL, NULL);
        body = finish(f, &len);
        assert_int_equal(load_unit(t.l, body, len), -ENOENT);
        assert_untouched(&t);
        free(body);
    }
    target_close(&t);
    free(data);
}

static void test_refuse_version(void **state)
{
    struct target t;
    uint8_t eos[8] = { 0, 0, 0, 0, 0, 0, 0, BLOCK_FLAG_EOS };
    qfile *f;

    (void)state;
    target_open(&t, 0);
    f = qfile_open_view(eos, sizeof(eos), "body");
    assert_int_equal(block_load(t.l, f, 2, SAVEVM_PASS_VALIDATE), -ENOTSUP);
    assert_non_null(strstr(qfile_errmsg(f), "version 2"));
    qfile_close(f);
    f = qfile_open_view(eos, sizeof(eos), "body");
    assert_int_equal(block_load(t.l, f, 1, SAVEVM_PASS_VALIDATE), 0);
    qfile_close(f);
    target_close(&t);
}

/* Every prefix of a good body (no EOS, cut anywhere) is refused. */
static void test_refuse_truncated(void **state)
{
    struct target t;
    uint8_t *data = malloc(MIB), *body;
    qfile *f = qfile_open_mem("body");
    size_t len;

    (void)state;
    diskimg_fill(data, MIB, 6);
    put_chunk(f, 0, BLOCK_FLAG_DEVICE_BLOCK | BLOCK_FLAG_ZERO_BLOCK,
              "disk0", NULL);
    put_chunk(f, 2048, BLOCK_FLAG_DEVICE_BLOCK, "disk0", data);
    put_chunk(f, 50, BLOCK_FLAG_PROGRESS, NULL, NULL);
    put_chunk(f, 0, BLOCK_FLAG_EOS, NULL, NULL);
    body = finish(f, &len);
    target_open(&t, 0);
    for (size_t cut = 0; cut < len; cut++) {
        qfile *v = qfile_open_view(body, cut, "body");
        int rc;

        block_loader_begin_validate(t.l);
        rc = block_load(t.l, v, BLOCK_SECTION_VERSION, SAVEVM_PASS_VALIDATE);
        if (rc != -ENODATA)
            fail_msg("cut at %zu: %d %s", cut, rc, qfile_errmsg(v));
        qfile_close(v);
    }
    assert_untouched(&t);
    assert_int_equal(load_unit(t.l, body, len), 0);
    target_close(&t);
    free(body);
    free(data);
}

/*
 * The staging bound: a body that would stage more chunk data than the
 * caller allows is refused; repeats of one chunk and ZERO records take
 * nothing more; what is staged already counts for the next unit.
 */
static void test_bound(void **state)
{
    struct target t;
    uint8_t *data = malloc(MIB), *body;
    const unsigned D = BLOCK_FLAG_DEVICE_BLOCK, Z = BLOCK_FLAG_ZERO_BLOCK;
    block_loader *l;
    qfile *f;
    size_t len;

    (void)state;
    diskimg_fill(data, MIB, 8);
    target_open(&t, MIB);
    f = qfile_open_mem("body");
    put_chunk(f, 0, D, "disk0", data);
    put_chunk(f, 2048, D, "disk0", data);
    put_chunk(f, 0, BLOCK_FLAG_EOS, NULL, NULL);
    body = finish(f, &len);
    assert_int_equal(load_unit(t.l, body, len), -EFBIG);
    assert_non_null(strstr(err, "more than 1 chunks of data"));
    assert_untouched(&t);
    free(body);

    f = qfile_open_mem("body");
    for (int i = 0; i < 5; i++)
        put_chunk(f, 4096, D, "disk0", data);
    for (uint64_t c = 0; c < 6; c++)
        put_chunk(f, c * 2048, D | Z, "disk0", NULL);
    put_chunk(f, 4096, D, "disk0", data);
    put_chunk(f, 0, BLOCK_FLAG_EOS, NULL, NULL);
    body = finish(f, &len);
    assert_int_equal(load_unit(t.l, body, len), 0);
    free(body);
    /* Staged, not applied: another chunk's data is over the bound. */
    f = qfile_open_mem("body");
    put_chunk(f, 0, D, "disk0", data);
    put_chunk(f, 0, BLOCK_FLAG_EOS, NULL, NULL);
    body = finish(f, &len);
    assert_int_equal(load_unit(t.l, body, len), -EFBIG);
    assert_int_equal(block_apply(t.l, false, err, sizeof(err)), 0);
    assert_int_equal(load_unit(t.l, body, len), 0);
    block_stage_drop(t.l);
    free(body);
    target_close(&t);

    /* The bound is never above the disk's size. */
    target_open(&t, 0);
    assert_int_equal(block_loader_new(&l, &t.d, 1, UINT64_MAX), 0);
    f = qfile_open_mem("body");
    for (uint64_t c = 0; c < 6; c++)
        put_chunk(f, c * 2048, D, "disk0", data);
    put_chunk(f, 0, BLOCK_FLAG_EOS, NULL, NULL);
    body = finish(f, &len);
    assert_int_equal(load_unit(l, body, len), 0);
    block_loader_free(l);
    free(body);
    target_close(&t);
    free(data);
}

/*
 * Inspecting: no images, the names learned from the records, chunks
 * counted per disk, every check that needs no image still made.
 */
static void test_inspect(void **state)
{
    const char *p = diskimg_make("i.img", SIZE, 12);
    disk *d = open_ok(p, false, "virtio0");
    const unsigned D = BLOCK_FLAG_DEVICE_BLOCK, Z = BLOCK_FLAG_ZERO_BLOCK;
    block_disk_counts dc;
    block_stage_counts sc;
    block_loader *l;
    unsigned long *t;
    uint8_t *body;
    qfile *f;
    size_t len;

    (void)state;
    assert_int_equal(block_loader_new_inspect(&l), 0);
    assert_int_equal(block_loader_ndisks(l), 0);
    memset(scratch, 0, MIB);
    assert_int_equal(disk_write(d, 2 * 2048, scratch, 2048), 0);
    disk_mark_all_dirty(d);
    t = take(d);
    body = encode(d, t, &len, NULL);
    assert_int_equal(load_unit(l, body, len), 0);
    free(body);
    f = qfile_open_mem("body");
    put_chunk(f, 1ull << 40, D | Z, "virtio1", NULL);   /* no size known */
    put_chunk(f, 0, D, "virtio0", scratch);
    put_chunk(f, 0, BLOCK_FLAG_EOS, NULL, NULL);
    body = finish(f, &len);
    assert_int_equal(load_unit(l, body, len), 0);
    free(body);
    assert_int_equal(block_loader_ndisks(l), 2);
    assert_int_equal(block_loader_counts(l, 0, &dc), 0);
    assert_string_equal(dc.name, "virtio0");
    assert_int_equal(dc.data_chunks, 6);        /* 5, then 1 again */
    assert_int_equal(dc.zero_chunks, 1);
    assert_int_equal(block_loader_counts(l, 1, &dc), 0);
    assert_string_equal(dc.name, "virtio1");
    assert_int_equal(dc.data_chunks, 0);
    assert_int_equal(dc.zero_chunks, 1);
    assert_int_equal(block_loader_counts(l, 2, &dc), -ENOENT);
    block_stage_counts_get(l, &sc);
    assert_int_equal(sc.zero_chunks + sc.data_chunks, 0);
    assert_int_equal(block_apply(l, true, err, sizeof(err)), 0);

    /* Still refused: alignment, no name, flags, a short chunk. */
    f = qfile_open_mem("body");
    put_chunk(f, 1, D | Z, "virtio0", NULL);
    put_chunk(f, 0, BLOCK_FLAG_EOS, NULL, NULL);
    body = finish(f, &len);
    assert_int_equal(load_unit(l, body, len), -EINVAL);
    free(body);
    f = qfile_open_mem("body");
    put_chunk(f, 0, D | Z, "", NULL);
    put_chunk(f, 0, BLOCK_FLAG_EOS, NULL, NULL);
    body = finish(f, &len);
    assert_int_equal(load_unit(l, body, len), -ENOENT);
    free(body);
    f = qfile_open_mem("body");
    put_chunk(f, 0, D, "virtio0", NULL);
    qfile_put_buf(f, scratch, 1000);
    body = finish(f, &len);
    assert_int_equal(load_unit(l, body, len), -ENODATA);
    free(body);

    /* At most BLOCK_INSPECT_MAX_DISKS names. */
    f = qfile_open_mem("body");
    for (int i = 2; i <= BLOCK_INSPECT_MAX_DISKS; i++) {
        char name[16];

        snprintf(name, sizeof(name), "d%d", i);
        put_chunk(f, 0, D | Z, name, NULL);
    }
    put_chunk(f, 0, BLOCK_FLAG_EOS, NULL, NULL);
    body = finish(f, &len);
    assert_int_equal(load_unit(l, body, len), -E2BIG);
    assert_non_null(strstr(err, "at most 64"));
    assert_int_equal(block_loader_ndisks(l), BLOCK_INSPECT_MAX_DISKS);
    free(body);
    block_loader_free(l);

    /* A loader with disks counts what it staged, too. */
    assert_int_equal(block_loader_new(&l, &d, 1, 0), 0);
    body = encode(d, t, &len, NULL);
    assert_int_equal(load_unit(l, body, len), 0);
    assert_int_equal(block_loader_counts(l, 0, &dc), 0);
    assert_string_equal(dc.name, "virtio0");
    assert_int_equal(dc.data_chunks, 5);
    assert_int_equal(dc.zero_chunks, 1);
    block_loader_free(l);
    disk_close(d);
    free(body);
    free(t);
}

static void test_loader_new(void **state)
{
    const char *p = diskimg_make("a.img", MIB, 0);
    disk *d[2], *ro;
    block_loader *l;

    (void)state;
    d[0] = open_ok(p, false, "disk0");
    d[1] = open_ok(diskimg_make("b.img", MIB, 0), false, "disk0");
    ro = open_ok(diskimg_make("c.img", MIB, 0), true, "disk1");
    assert_int_equal(block_loader_new(&l, d, 2, 0), -EINVAL);
    assert_null(l);
    assert_int_equal(block_loader_new(&l, &ro, 1, 0), -EINVAL);
    assert_int_equal(block_loader_new(&l, d, 1, 0), 0);
    block_loader_free(l);
    disk_close(d[0]);
    disk_close(d[1]);
    disk_close(ro);
}

/* Two disks in one body: each record goes to the disk it names. */
static void test_two_disks(void **state)
{
    const char *s0 = diskimg_make("s0.img", 2 * MIB, 20);
    const char *s1 = diskimg_make("s1.img", 3 * MIB, 21);
    const char *d0 = diskimg_make("d0.img", 2 * MIB, 22);
    const char *d1 = diskimg_make("d1.img", 3 * MIB, 23);
    disk *src[2] = { open_ok(s0, false, "virtio0"),
                     open_ok(s1, false, "virtio1") };
    disk *dst[2] = { open_ok(d0, false, "virtio0"),
                     open_ok(d1, false, "virtio1") };
    qfile *f = qfile_open_mem("body");
    block_loader *l;
    uint8_t *body;
    size_t len;

    (void)state;
    for (int i = 0; i < 2; i++) {
        unsigned long *t;

        disk_mark_all_dirty(src[i]);
        t = take(src[i]);
        assert_true(block_save(f, src[i], t, scratch, NULL) > 0);
        free(t);
    }
    body = finish(f, &len);
    assert_int_equal(block_loader_new(&l, dst, 2, 0), 0);
    /* Two bodies back to back: load each. */
    {
        size_t first = 2 * (8 + 1 + 7 + MIB) + 8;

        assert_int_equal(load_unit(l, body, first), 0);
        assert_int_equal(load_unit(l, body + first, len - first), 0);
    }
    assert_int_equal(block_apply(l, true, err, sizeof(err)), 0);
    assert_same_files(s0, d0);
    assert_same_files(s1, d1);
    block_loader_free(l);
    for (int i = 0; i < 2; i++) {
        disk_close(src[i]);
        disk_close(dst[i]);
    }
    free(body);
}

/* The image shrank under the saver: the error names it, nothing lost. */
static void test_save_read_error(void **state)
{
    const char *p = diskimg_make("shrink.img", 4 * MIB, 9);
    disk *d = open_ok(p, false, "disk0");
    qfile *f = qfile_open_mem("body");
    unsigned long *t;

    (void)state;
    disk_mark_all_dirty(d);
    t = take(d);
    assert_int_equal(truncate(p, 2 * MIB), 0);
    assert_int_equal(block_save(f, d, t, scratch, NULL), -EIO);
    assert_non_null(strstr(qfile_errmsg(f),
                           "reading chunk 2 at byte 2097152"));
    assert_non_null(strstr(qfile_errmsg(f), p));
    assert_int_equal(disk_dirty_count(d), 4);
    qfile_close(f);
    disk_close(d);
    free(t);
}

/* ------------------------------ ENOSPC ------------------------------- */

#define CHILD_SKIP 77

/* A mount namespace of our own with a tmpfs of size MiB at dir. */
static int small_fs(const char *dir, int mib, bool remount)
{
    char opts[64];

    snprintf(opts, sizeof(opts), "size=%dm", mib);
    return mount("tmpfs", dir, "tmpfs", remount ? MS_REMOUNT : 0, opts);
}

static int enter_namespace(void)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    char map[64];
    int fd;

    if (unshare(CLONE_NEWNS) == 0)
        return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
        return -1;
    fd = open("/proc/self/setgroups", O_WRONLY);
    if (fd >= 0) {
        (void)!write(fd, "deny", 4);
        close(fd);
    }
    snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
    fd = open("/proc/self/uid_map", O_WRONLY);
    if (fd < 0 || write(fd, map, strlen(map)) < 0)
        return -1;
    close(fd);
    snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
    fd = open("/proc/self/gid_map", O_WRONLY);
    if (fd < 0 || write(fd, map, strlen(map)) < 0)
        return -1;
    close(fd);
    return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
}

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "child: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    _exit(1); } } while (0)

/*
 * Applies body to an 8 MiB sparse image with room for 3 MiB, expects the
 * failure named with its reason, makes room and applies again.  The room
 * is a 3 MiB tmpfs in a mount namespace of this child (ENOSPC), or, with
 * fsize, a file size limit of 3 MiB (RLIMIT_FSIZE: EFBIG), which needs
 * no privilege.
 */
static int full_child(const char *dir, const uint8_t *body, size_t len,
                      const char *src, bool fsize)
{
    struct rlimit rl;
    char path[8192];
    disk *d = NULL;
    block_loader *l;
    int fd, rc;

    if (!fsize && (enter_namespace() < 0 || small_fs(dir, 3, false) < 0)) {
        fprintf(stderr, "child: no mount namespace: %s\n", strerror(errno));
        return CHILD_SKIP;
    }
    snprintf(path, sizeof(path), "%.4000s/img", dir);
    fd = open(path, O_RDWR | O_CREAT, 0600);
    CHECK(fd >= 0 && ftruncate(fd, 8 * MIB) == 0);     /* sparse: fits */
    close(fd);
    if (fsize) {
        signal(SIGXFSZ, SIG_IGN);
        CHECK(getrlimit(RLIMIT_FSIZE, &rl) == 0);
        rl.rlim_cur = 3 * MIB;
        CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    }
    CHECK(disk_open(&d, path, false, "disk0", err, sizeof(err)) == 0);
    CHECK(block_loader_new(&l, &d, 1, 0) == 0);
    CHECK(load_unit(l, body, len) == 0);
    rc = block_apply(l, true, err, sizeof(err));
    fprintf(stderr, "child: apply with room for 3 MiB: %s\n", err);
    CHECK(rc == (fsize ? -EFBIG : -ENOSPC));
    CHECK(strstr(err, fsize ? "File too large" : "No space left on device"));
    CHECK(strstr(err, "disk 'disk0'") && strstr(err, path));
    CHECK(strstr(err, "writing chunk 3 at byte 3145728") ||
          strstr(err, "writing chunk 2 at byte 2097152"));
    /* The stage is kept: with room, the same apply completes. */
    if (fsize) {
        rl.rlim_cur = rl.rlim_max;
        CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    } else {
        CHECK(small_fs(dir, 16, true) == 0);
    }
    CHECK(block_apply(l, true, err, sizeof(err)) == 0);
    {
        size_t a, b;
        uint8_t *x = diskimg_slurp(path, &a), *y = diskimg_slurp(src, &b);

        CHECK(a == b && memcmp(x, y, a) == 0);
        free(x);
        free(y);
    }
    block_loader_free(l);
    disk_close(d);
    if (fsize)
        unlink(path);
    else
        umount(dir);
    return 0;
}

static void run_full(bool fsize)
{
    const char *sp = diskimg_make("full-src.img", 8 * MIB, 30);
    disk *src = open_ok(sp, false, "disk0");
    char dir[8192], spath[8192];
    unsigned long *t;
    uint8_t *body;
    size_t len;
    pid_t pid;
    int status;

    snprintf(spath, sizeof(spath), "%s", sp);
    snprintf(dir, sizeof(dir), "%s/mnt", diskimg_dir());
    assert_int_equal(mkdir(dir, 0700), 0);
    disk_mark_all_dirty(src);
    t = take(src);
    body = encode(src, t, &len, NULL);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(full_child(dir, body, len, spath, fsize));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    rmdir(dir);
    disk_close(src);
    free(t);
    free(body);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == CHILD_SKIP)
        skip();
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_enospc(void **state)
{
    (void)state;
    run_full(false);
}

static void test_efbig(void **state)
{
    (void)state;
    run_full(true);
}

static int setup(void **state)
{
    (void)state;
    scratch = malloc(DISK_CHUNK_SIZE);
    return scratch ? diskimg_setup() : -1;
}

static int teardown(void **state)
{
    (void)state;
    diskimg_cleanup();
    free(scratch);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_all),
        cmocka_unit_test(test_round_trip_dirty),
        cmocka_unit_test(test_repeats),
        cmocka_unit_test(test_sparse),
        cmocka_unit_test(test_live_bringup),
        cmocka_unit_test(test_packages),
        cmocka_unit_test(test_refuse_records),
        cmocka_unit_test(test_refuse_version),
        cmocka_unit_test(test_refuse_truncated),
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_inspect),
        cmocka_unit_test(test_loader_new),
        cmocka_unit_test(test_two_disks),
        cmocka_unit_test(test_save_read_error),
        cmocka_unit_test(test_enospc),
        cmocka_unit_test(test_efbig),
    };

    return skips_status(cmocka_run_group_tests(tests, setup, teardown));
}
