/*
 * bench_ram: how fast the RAM page codec encodes and decodes, beside memcpy
 * of the same memory measured in the same run.
 *
 *   bench_ram [-m MiB] [-n repeats]
 *
 * Rates are GB/s (10^9 bytes) of guest memory covered by the dirty pages,
 * best of n runs.  encode = ram_save_dirty() into a memory channel;
 * validate / apply = ram_load() from a view over those bytes.  Cases:
 *
 *   zero        every page zero, all dirty
 *   random      every page random, all dirty
 *   half-zero   pages alternate random and zero, all dirty
 *   half-dirty  every page random, every other page dirty
 *   zlib-1      text-like pages, zlib level 1 (at most 32 MiB of them)
 *   xbzrle      random pages already sent, 16 bytes of each changed
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/ram.h"

#define LBITS (sizeof(unsigned long) * 8)

struct setup {
    uint64_t bytes;
    int reps;
};

static double now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rng = 0x853c49e6748fea9bULL;

static uint64_t rnd64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void fill_random(uint8_t *p, size_t len)
{
    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint64_t v = rnd64();

        memcpy(p + i, &v, 8);
    }
}

static void *map(uint64_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        perror("bench_ram: mmap");
        exit(1);
    }
    memset(p, 0, bytes);        /* fault it in outside the timings */
    return p;
}

static void die(const char *what, int err, qfile *f)
{
    fprintf(stderr, "bench_ram: %s: %s %s\n", what, strerror(-err),
            f ? qfile_errmsg(f) : "");
    exit(1);
}

/* One case: a source and target block and the options to save with. */
struct bcase {
    const char *name;
    ram_block src, tgt;
    ram_save_opts opts;
    void (*prepare)(struct bcase *c, int rep);   /* before each encode */
    void (*dirty)(struct bcase *c);
};

static void all_dirty(struct bcase *c)
{
    ram_mark_all_dirty(&c->src, 1);
}

static void every_other_dirty(struct bcase *c)
{
    size_t words = ram_bitmap_longs(c->src.length);

    for (size_t w = 0; w < words; w++)
        c->src.dirty[w] = (unsigned long)0x5555555555555555ULL;
}

/* Changes 16 bytes of every page, in a different place each run. */
static void scribble(struct bcase *c, int rep)
{
    for (uint64_t off = 0; off < c->src.length; off += RAM_PAGE_SIZE)
        memset(c->src.host + off + (uint64_t)rep * 97 % 4000, rep + 1, 16);
}

struct result {
    uint64_t pages, stream;
    double enc, val, app;
};

static double rate(uint64_t bytes, double secs)
{
    return secs > 0 ? (double)bytes / secs / 1e9 : 0;
}

static struct result run_case(struct bcase *c, int reps)
{
    struct result r = { 0, 0, 1e30, 1e30, 1e30 };
    ram_saver *s;
    ram_loader *l;
    qfile *w = qfile_open_mem("bench");
    ram_save_stats st;
    int err;

    if ((err = ram_saver_new(&s, &c->src, 1, &c->opts)) < 0 ||
        (err = ram_loader_new(&l, &c->tgt, 1)) < 0)
        die("setup", err, NULL);

    /* A first full pass, so XBZRLE has a cache and the target a base. */
    if (c->opts.xbzrle_cache) {
        const uint8_t *data;
        size_t len;
        qfile *v;

        ram_mark_all_dirty(&c->src, 1);
        if (ram_save_dirty(s, w, 0, NULL) < 0)
            die("first pass", qfile_error(w), w);
        data = qfile_mem_data(w, &len);
        v = qfile_open_view(data, len, "first pass");
        if ((err = ram_load(l, v, RAM_SECTION_VERSION, SAVEVM_PASS_APPLY)) < 0)
            die("first pass load", err, v);
        qfile_close(v);
    }

    for (int rep = 0; rep < reps; rep++) {
        const uint8_t *data;
        size_t len;
        double t0, t1;
        int64_t n;

        if (c->prepare)
            c->prepare(c, rep);
        c->dirty(c);
        qfile_mem_reset(w);
        t0 = now();
        n = ram_save_dirty(s, w, 0, &st);
        t1 = now();
        if (n < 0)
            die("save", (int)n, w);
        r.pages = (uint64_t)n + st.unchanged_pages;
        if (t1 - t0 < r.enc)
            r.enc = t1 - t0;
        data = qfile_mem_data(w, &len);
        r.stream = len;

        for (int pass = 0; pass < 2; pass++) {
            qfile *v = qfile_open_view(data, len, "bench view");
            savevm_pass p = pass ? SAVEVM_PASS_APPLY : SAVEVM_PASS_VALIDATE;
            double *best = pass ? &r.app : &r.val;

            t0 = now();
            err = ram_load(l, v, RAM_SECTION_VERSION, p);
            t1 = now();
            if (err < 0)
                die("load", err, v);
            if (t1 - t0 < *best)
                *best = t1 - t0;
            qfile_close(v);
        }
    }
    if (memcmp(c->src.host, c->tgt.host, c->src.length) != 0) {
        fprintf(stderr, "bench_ram: %s: target differs from source\n",
                c->name);
        exit(1);
    }
    qfile_close(w);
    ram_loader_free(l);
    ram_saver_free(s);
    r.enc = rate(r.pages * RAM_PAGE_SIZE, r.enc);
    r.val = rate(r.pages * RAM_PAGE_SIZE, r.val);
    r.app = rate(r.pages * RAM_PAGE_SIZE, r.app);
    return r;
}

static void print_row(const char *name, const struct result *r)
{
    printf("%-11s %8llu %11.1f %8.2f %9.2f %8.2f\n", name,
           (unsigned long long)r->pages, (double)r->stream / (1 << 20),
           r->enc, r->val, r->app);
}

/* The obvious alternative to ram_page_is_zero(), for comparison. */
static bool zero_by_words(const uint8_t *p)
{
    for (size_t i = 0; i < RAM_PAGE_SIZE; i += 64) {
        uint64_t acc = 0, v;

        for (size_t j = 0; j < 64; j += 8) {
            memcpy(&v, p + i + j, 8);
            acc |= v;
        }
        if (acc)
            return false;
    }
    return true;
}

static double time_zero_check(const uint8_t *buf, uint64_t bytes, int reps,
                              bool ours)
{
    double best = 1e30;

    for (int rep = 0; rep < reps; rep++) {
        uint64_t zero = 0;
        double t0 = now();

        for (uint64_t off = 0; off < bytes; off += RAM_PAGE_SIZE)
            zero += ours ? ram_page_is_zero(buf + off)
                         : zero_by_words(buf + off);
        t0 = now() - t0;
        if (zero != bytes / RAM_PAGE_SIZE)
            abort();
        if (t0 < best)
            best = t0;
    }
    return rate(bytes, best);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_ram [-m MiB] [-n repeats]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct setup cfg = { 256ULL << 20, 5 };
    uint8_t *src, *tgt;
    unsigned long *sdirty, *tdirty;
    struct bcase c;
    struct result r;
    double best = 1e30;
    int opt;

    while ((opt = getopt(argc, argv, "m:n:")) != -1) {
        char *end;
        unsigned long long v = strtoull(optarg, &end, 10);

        if (*end || v == 0)
            usage();
        if (opt == 'm')
            cfg.bytes = v << 20;
        else if (opt == 'n')
            cfg.reps = (int)v;
        else
            usage();
    }
    if (optind != argc)
        usage();

    src = map(cfg.bytes);
    tgt = map(cfg.bytes);
    sdirty = calloc(ram_bitmap_longs(cfg.bytes), sizeof(unsigned long));
    tdirty = calloc(ram_bitmap_longs(cfg.bytes), sizeof(unsigned long));
    if (!sdirty || !tdirty)
        die("calloc", -ENOMEM, NULL);

    printf("bench_ram: %llu MiB, best of %d, GB/s of guest memory\n",
           (unsigned long long)(cfg.bytes >> 20), cfg.reps);
    printf("%-11s %8s %11s %8s %9s %8s\n", "case", "pages", "stream MiB",
           "encode", "validate", "apply");

    for (int rep = 0; rep < cfg.reps; rep++) {
        double t0 = now();

        memcpy(tgt, src, cfg.bytes);
        t0 = now() - t0;
        if (t0 < best)
            best = t0;
    }
    printf("%-11s %8llu %11.1f %8.2f %9s %8s\n", "memcpy",
           (unsigned long long)(cfg.bytes / RAM_PAGE_SIZE),
           (double)cfg.bytes / (1 << 20), rate(cfg.bytes, best), "", "");

    memset(&c, 0, sizeof(c));
    c.src = (ram_block){ "pc.ram", src, cfg.bytes, sdirty };
    c.tgt = (ram_block){ "pc.ram", tgt, cfg.bytes, tdirty };
    c.dirty = all_dirty;

    c.name = "zero";
    r = run_case(&c, cfg.reps);
    print_row(c.name, &r);

    fill_random(src, cfg.bytes);
    c.name = "random";
    r = run_case(&c, cfg.reps);
    print_row(c.name, &r);

    for (uint64_t off = RAM_PAGE_SIZE; off < cfg.bytes;
         off += 2 * RAM_PAGE_SIZE)
        memset(src + off, 0, RAM_PAGE_SIZE);
    c.name = "half-zero";
    r = run_case(&c, cfg.reps);
    print_row(c.name, &r);

    /* Only the dirty half travels, so start the target equal. */
    fill_random(src, cfg.bytes);
    memcpy(tgt, src, cfg.bytes);
    c.name = "half-dirty";
    c.dirty = every_other_dirty;
    r = run_case(&c, cfg.reps);
    print_row(c.name, &r);

    {
        uint64_t zbytes = cfg.bytes < (32ULL << 20) ? cfg.bytes : 32ULL << 20;

        for (uint64_t i = 0; i < zbytes; i++)
            src[i] = (uint8_t) "the quick brown fox jumps over "[(i * 7 +
                                                                  i / 4096) %
                                                                 31];
        c.src.length = c.tgt.length = zbytes;
        c.name = "zlib-1";
        c.dirty = all_dirty;
        c.opts.compress_level = 1;
        r = run_case(&c, cfg.reps < 3 ? cfg.reps : 3);
        print_row(c.name, &r);
        c.src.length = c.tgt.length = cfg.bytes;
        c.opts.compress_level = 0;
    }

    fill_random(src, cfg.bytes);
    c.name = "xbzrle";
    c.opts.xbzrle_cache = cfg.bytes;
    c.prepare = scribble;
    r = run_case(&c, cfg.reps);
    print_row(c.name, &r);

    memset(src, 0, cfg.bytes);
    printf("zero-page check on zero memory: ram_page_is_zero %.2f GB/s, "
           "64-bit word loop %.2f GB/s\n",
           time_zero_check(src, cfg.bytes, cfg.reps, true),
           time_zero_check(src, cfg.bytes, cfg.reps, false));
    {
        uint64_t hot = cfg.bytes < (1 << 20) ? cfg.bytes : 1 << 20;
        int reps = cfg.reps * 50;

        printf("  same, 1 MiB in cache:        ram_page_is_zero %.2f GB/s, "
               "64-bit word loop %.2f GB/s\n",
               time_zero_check(src, hot, reps, true),
               time_zero_check(src, hot, reps, false));
    }
    free(sdirty);
    free(tdirty);
    munmap(src, cfg.bytes);
    munmap(tgt, cfg.bytes);
    return 0;
}
