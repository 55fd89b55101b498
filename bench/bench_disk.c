/*
 * bench_disk: how fast a disk's dirty chunks are taken, encoded as block
 * records, checked, staged and written into another image, beside
 * memcpy, pread and pwrite of the same bytes measured in the same run.
 *
 *   bench_disk [-m MiB] [-n repeats] [-d DIR]
 *
 * Two raw images of m MiB (default 256) in DIR (default $TMPDIR or /tmp),
 * removed at the end.  Rates are GB/s (10^9 bytes) of disk covered by
 * the dirty chunks, best of n (default 5).  take = disk_take_dirty (in
 * microseconds); encode = the take, then block_save into a memory
 * channel (the chunks read from the image, page cache warm); validate / stage = the two
 * passes of block_load from a view over those bytes; apply =
 * block_apply's pwrites (no fdatasync); the last column the same apply
 * with fdatasync.  Cases:
 *
 *   random      every chunk random, all dirty
 *   zero        every chunk zero (a sparse image), all dirty
 *   4k-scatter  one 4 KiB guest write in every other chunk: what 4 KiB
 *               writes cost in a package of 1 MiB chunks
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/block.h"

#define MIB (1024ull * 1024ull)

static double now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double rate(uint64_t bytes, double secs)
{
    return secs > 0 ? (double)bytes / secs / 1e9 : 0;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_disk: %s: %s\n", what, why);
    exit(1);
}

static uint64_t rng = 0x853c49e6748fea9bULL;

static void fill_random(uint8_t *p, size_t len)
{
    for (size_t i = 0; i + 8 <= len; i += 8) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        memcpy(p + i, &rng, 8);
    }
}

static void make_image(const char *path, uint64_t bytes)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

    if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0)
        die(path, strerror(errno));
    close(fd);
}

static disk *open_disk(const char *path)
{
    char err[512];
    disk *d;

    if (disk_open(&d, path, false, "disk0", err, sizeof(err)) < 0)
        die(path, err);
    return d;
}

struct row {
    uint64_t chunks;
    double stream_mib;
    double take_us, encode, validate, stage, apply, apply_sync;
};

typedef void (*dirtier)(disk *d, const uint8_t *src);

static void all_dirty(disk *d, const uint8_t *src)
{
    (void)src;
    disk_mark_all_dirty(d);
}

/* A guest writing 4 KiB into every other chunk. */
static void scatter_4k(disk *d, const uint8_t *src)
{
    for (uint64_t c = 0; c < disk_chunks(d); c += 2)
        if (disk_write(d, c * DISK_CHUNK_SECTORS + 16, src + c * MIB, 8) < 0)
            die("disk_write", "failed");
}

static struct row run_case(disk *src, disk *dst, const uint8_t *buf,
                           dirtier dirty, int reps)
{
    struct row r = { .take_us = 1e30 };
    double best[5] = { 1e30, 1e30, 1e30, 1e30, 1e30 };
    unsigned long *taken = calloc(disk_bitmap_longs(src), sizeof(long));
    uint8_t *scratch = malloc(DISK_CHUNK_SIZE);
    qfile *f = qfile_open_mem("bench");
    block_loader *l;
    char err[512];

    if (!taken || !scratch || block_loader_new(&l, &dst, 1, 0) < 0)
        die("setup", "out of memory");
    for (int rep = 0; rep < reps; rep++) {
        const uint8_t *data;
        size_t len;
        double t0, t1, t2;
        int64_t n;
        qfile *v;

        dirty(src, buf);
        qfile_mem_reset(f);
        t0 = now();
        r.chunks = disk_take_dirty(src, taken);
        t1 = now();
        n = block_save(f, src, taken, scratch, NULL);
        t2 = now();
        if (n < 0)
            die("block_save", qfile_errmsg(f));
        if ((t1 - t0) * 1e6 < r.take_us)
            r.take_us = (t1 - t0) * 1e6;
        if (t2 - t0 < best[0])
            best[0] = t2 - t0;
        data = qfile_mem_data(f, &len);
        r.stream_mib = (double)len / MIB;

        for (int pass = 0; pass < 2; pass++) {
            v = qfile_open_view(data, len, "bench");
            if (pass == 0)
                block_loader_begin_validate(l);
            t0 = now();
            if (block_load(l, v, BLOCK_SECTION_VERSION,
                           pass ? SAVEVM_PASS_APPLY : SAVEVM_PASS_VALIDATE))
                die("block_load", qfile_errmsg(v));
            t1 = now();
            qfile_close(v);
            if (t1 - t0 < best[1 + pass])
                best[1 + pass] = t1 - t0;
        }
        t0 = now();
        if (block_apply(l, rep == reps - 1, err, sizeof(err)) < 0)
            die("block_apply", err);
        t1 = now();
        if (rep < reps - 1 && t1 - t0 < best[3])
            best[3] = t1 - t0;
        if (rep == reps - 1)
            best[4] = t1 - t0;
    }
    {
        uint64_t covered = 0;

        for (uint64_t c = 0; c < disk_chunks(src); c++)
            if (taken[c / (8 * sizeof(long))] &
                (1UL << (c % (8 * sizeof(long)))))
                covered += disk_chunk_len(src, c);
        r.encode = rate(covered, best[0]);
        r.validate = rate(covered, best[1]);
        r.stage = rate(covered, best[2]);
        r.apply = rate(covered, best[3]);
        r.apply_sync = rate(covered, best[4]);
    }
    block_loader_free(l);
    qfile_close(f);
    free(scratch);
    free(taken);
    return r;
}

static void print_row(const char *name, const struct row *r)
{
    printf("%-11s %7llu %10.1f %8.1f %7.2f %9.2f %6.2f %6.2f %11.2f\n", name,
           (unsigned long long)r->chunks, r->stream_mib, r->take_us,
           r->encode, r->validate, r->stage, r->apply, r->apply_sync);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_disk [-m MiB] [-n repeats] [-d DIR]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *dir = getenv("TMPDIR");
    uint64_t bytes = 256 * MIB;
    int reps = 5, opt;
    char spath[4200], dpath[4200];
    double bcopy = 1e30, bread = 1e30, bwrite = 1e30, bsync = 1e30;
    uint8_t *buf, *copy;
    disk *src, *dst;
    struct row r;

    while ((opt = getopt(argc, argv, "m:n:d:")) != -1) {
        char *end;
        unsigned long long v = strtoull(optarg, &end, 10);

        if (opt == 'd') {
            dir = optarg;
            continue;
        }
        if (*end || v == 0)
            usage();
        if (opt == 'm')
            bytes = v * MIB;
        else if (opt == 'n')
            reps = (int)v;
        else
            usage();
    }
    if (optind != argc)
        usage();
    if (!dir || !*dir)
        dir = "/tmp";
    snprintf(spath, sizeof(spath), "%.4000s/bench_disk-src.img", dir);
    snprintf(dpath, sizeof(dpath), "%.4000s/bench_disk-dst.img", dir);
    make_image(spath, bytes);
    make_image(dpath, bytes);
    src = open_disk(spath);
    dst = open_disk(dpath);
    buf = malloc(bytes);
    copy = malloc(bytes);
    if (!buf || !copy)
        die("malloc", "out of memory");
    fill_random(buf, bytes);
    memset(copy, 0, bytes);

    for (int rep = 0; rep < reps; rep++) {
        double t0 = now(), t1;

        memcpy(copy, buf, bytes);
        t1 = now();
        if (t1 - t0 < bcopy)
            bcopy = t1 - t0;
        t0 = now();
        for (uint64_t off = 0; off < bytes; off += MIB)
            if (disk_write_bytes(src, off, buf + off, MIB) < 0)
                die(spath, "pwrite failed");
        t1 = now();
        if (t1 - t0 < bwrite)
            bwrite = t1 - t0;
        if (disk_flush(src) < 0)
            die(spath, "fdatasync failed");
        t1 = now();
        if (t1 - t0 < bsync)
            bsync = t1 - t0;
        t0 = now();
        for (uint64_t c = 0; c < disk_chunks(src); c++)
            if (disk_read_chunk(src, c, copy + c * MIB) < 0)
                die(spath, "pread failed");
        t1 = now();
        if (t1 - t0 < bread)
            bread = t1 - t0;
    }
    printf("bench_disk: %llu MiB images in %s, best of %d, GB/s of disk\n",
           (unsigned long long)(bytes / MIB), dir, reps);
    printf("memcpy %.2f, pread %.2f (page cache), pwrite %.2f (page cache), "
           "pwrite+fdatasync %.2f\n", rate(bytes, bcopy), rate(bytes, bread),
           rate(bytes, bwrite), rate(bytes, bsync));
    printf("%-11s %7s %10s %8s %7s %9s %6s %6s %11s\n", "case", "chunks",
           "stream MiB", "take us", "encode", "validate", "stage", "apply",
           "apply+sync");

    r = run_case(src, dst, buf, all_dirty, reps);
    print_row("random", &r);
    r = run_case(src, dst, buf, scatter_4k, reps);
    print_row("4k-scatter", &r);
    make_image(spath, bytes);       /* all zero, sparse */
    r = run_case(src, dst, buf, all_dirty, reps);
    print_row("zero", &r);

    disk_close(src);
    disk_close(dst);
    unlink(spath);
    unlink(dpath);
    free(buf);
    free(copy);
    return 0;
}
