/*
 * block: the disk chunk codec.  The saver reads taken chunks from the
 * image; the loader checks every record, stages chunks in per-chunk
 * buffers (one per chunk, however often a package repeats it) and writes
 * them only when asked.
 */
#include "checkpoint/block.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLAGS_MASK ((uint64_t)DISK_SECTOR_SIZE - 1)
#define KNOWN_FLAGS (BLOCK_FLAG_DEVICE_BLOCK | BLOCK_FLAG_EOS | \
                     BLOCK_FLAG_PROGRESS | BLOCK_FLAG_ZERO_BLOCK)
#define LONG_BITS (sizeof(unsigned long) * CHAR_BIT)

/* ================================ saving ================================ */

void block_save_eos(qfile *f)
{
    qfile_put_be64(f, BLOCK_FLAG_EOS);
}

/* One chunk's record, read from the image now.  0 or -errno (latched). */
static int save_chunk(qfile *f, disk *d, uint64_t c, uint8_t *scratch,
                      block_save_stats *stats)
{
    int err = disk_read_chunk(d, c, scratch);
    bool zero;

    if (err)
        return qfile_fail(f, err, "disk '%s' (%s): reading chunk %" PRIu64
                          " at byte %" PRIu64 ": %s", disk_name(d),
                          disk_path(d), c, c << DISK_CHUNK_BITS,
                          strerror(-err));
    /* The tail past a partial last chunk is zeros (disk_read_chunk). */
    zero = disk_is_zero(scratch, disk_chunk_len(d, c));
    qfile_put_be64(f, (c << DISK_CHUNK_BITS) | BLOCK_FLAG_DEVICE_BLOCK |
                      (zero ? BLOCK_FLAG_ZERO_BLOCK : 0));
    qfile_put_str(f, disk_name(d));
    if (!zero)
        qfile_put_buf(f, scratch, DISK_CHUNK_SIZE);
    if (stats)
        *(zero ? &stats->zero_chunks : &stats->data_chunks) += 1;
    return qfile_error(f);
}

int64_t block_save(qfile *f, disk *d, const unsigned long *taken,
                   uint8_t *scratch, block_save_stats *stats)
{
    uint64_t start = qfile_tell(f);
    uint64_t chunks = disk_chunks(d);
    int64_t sent = 0;

    for (uint64_t c = 0; c < chunks; c++) {
        if (!(taken[c / LONG_BITS] & (1UL << (c % LONG_BITS))))
            continue;
        if (save_chunk(f, d, c, scratch, stats) < 0) {
            /*
             * The stream is broken; give back everything taken (sending
             * a chunk twice is harmless, losing one is not).
             */
            disk_mark_dirty_bits(d, taken);
            return qfile_error(f);
        }
        sent++;
    }
    block_save_eos(f);
    if (stats)
        stats->bytes += qfile_tell(f) - start;
    return qfile_error(f) ? qfile_error(f) : sent;
}

int64_t block_save_dirty(qfile *f, disk *d, uint8_t *scratch,
                         uint64_t max_chunks, block_save_stats *stats)
{
    uint64_t start = qfile_tell(f);
    uint64_t chunks = disk_chunks(d);
    int64_t sent = 0;

    for (uint64_t c = disk_next_dirty(d, 0); c < chunks;
         c = disk_next_dirty(d, c + 1)) {
        if (max_chunks && (uint64_t)sent == max_chunks)
            break;
        if (!disk_test_and_clear(d, c))
            continue;
        if (save_chunk(f, d, c, scratch, stats) < 0) {
            disk_mark_dirty(d, c * DISK_CHUNK_SECTORS, 1);
            return qfile_error(f);
        }
        sent++;
    }
    block_save_eos(f);
    if (stats) {
        stats->bytes += qfile_tell(f) - start;
        stats->remaining = disk_dirty_count(d);
    }
    return qfile_error(f) ? qfile_error(f) : sent;
}

/* ================================ loading =============================== */

/* A chunk in the stage; buf stays with the chunk once it has one. */
struct entry {
    uint32_t disk;
    uint64_t chunk;
    bool zero;
    uint8_t *buf;               /* DISK_CHUNK_SIZE bytes, or NULL */
};

struct ldisk {
    disk *d;                    /* NULL inspecting */
    char name[DISK_NAME_MAX + 1];
    uint64_t data_chunks, zero_chunks;  /* counted by APPLY passes */
    uint64_t chunks;
    uint32_t *slot;             /* per chunk: entry index + 1, 0 = none */
    unsigned long *vbuf;        /* validate: chunks that will have a buf */
};

/*
 * Chunk buffers an emptied stage keeps for the next package, so staging
 * copies into memory already faulted in (bench_disk at 64 MiB: 6.8 GB/s,
 * 2.0 with fresh buffers); at most this many, whatever the package held.
 */
#define POOL_KEEP 64

struct block_loader {
    uint8_t *pool[POOL_KEEP];
    size_t npool;
    bool inspect;
    struct ldisk *disks;
    size_t n;
    struct entry *ents;
    size_t nents, cap;
    uint64_t nbufs;             /* entries with a buf */
    uint64_t max_bufs;          /* the staging bound, in chunks */
    uint64_t vbufs;             /* the validate pass's count of them */
};

int block_loader_new(block_loader **out, disk *const *disks, size_t n,
                     uint64_t max_stage)
{
    block_loader *l;
    uint64_t total = 0;

    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!disks[i] || disk_readonly(disks[i]))
            return -EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(disk_name(disks[i]), disk_name(disks[j])) == 0)
                return -EINVAL;
        total += disk_chunks(disks[i]);
    }
    l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->disks = calloc(n ? n : 1, sizeof(*l->disks));
    if (!l->disks)
        goto nomem;
    l->n = n;
    for (size_t i = 0; i < n; i++) {
        struct ldisk *ld = &l->disks[i];

        ld->d = disks[i];
        snprintf(ld->name, sizeof(ld->name), "%s", disk_name(disks[i]));
        ld->chunks = disk_chunks(disks[i]);
        ld->slot = calloc(ld->chunks, sizeof(*ld->slot));
        ld->vbuf = calloc(disk_bitmap_longs(disks[i]), sizeof(*ld->vbuf));
        if (!ld->slot || !ld->vbuf)
            goto nomem;
    }
    l->max_bufs = max_stage ? max_stage >> DISK_CHUNK_BITS : total;
    if (l->max_bufs > total)
        l->max_bufs = total;
    *out = l;
    return 0;

nomem:
    block_loader_free(l);
    return -ENOMEM;
}

int block_loader_new_inspect(block_loader **out)
{
    block_loader *l = calloc(1, sizeof(*l));

    *out = NULL;
    if (!l)
        return -ENOMEM;
    l->disks = calloc(BLOCK_INSPECT_MAX_DISKS, sizeof(*l->disks));
    if (!l->disks) {
        free(l);
        return -ENOMEM;
    }
    l->inspect = true;
    *out = l;
    return 0;
}

size_t block_loader_ndisks(const block_loader *l)
{
    return l->n;
}

int block_loader_counts(const block_loader *l, size_t i,
                        block_disk_counts *out)
{
    if (i >= l->n)
        return -ENOENT;
    out->name = l->disks[i].name;
    out->data_chunks = l->disks[i].data_chunks;
    out->zero_chunks = l->disks[i].zero_chunks;
    return 0;
}

void block_stage_drop(block_loader *l)
{
    for (size_t i = 0; i < l->nents; i++) {
        struct entry *e = &l->ents[i];

        l->disks[e->disk].slot[e->chunk] = 0;
        if (e->buf && l->npool < POOL_KEEP)
            l->pool[l->npool++] = e->buf;
        else
            free(e->buf);
    }
    l->nents = 0;
    l->nbufs = 0;
    block_loader_begin_validate(l);
}

void block_loader_free(block_loader *l)
{
    if (!l)
        return;
    if (l->disks) {
        block_stage_drop(l);
        for (size_t i = 0; i < l->n; i++) {
            free(l->disks[i].slot);
            free(l->disks[i].vbuf);
        }
    }
    while (l->npool)
        free(l->pool[--l->npool]);
    free(l->ents);
    free(l->disks);
    free(l);
}

void block_loader_begin_validate(block_loader *l)
{
    for (size_t i = 0; i < l->n && !l->inspect; i++)
        memset(l->disks[i].vbuf, 0,
               disk_bitmap_longs(l->disks[i].d) * sizeof(unsigned long));
    for (size_t i = 0; i < l->nents; i++) {
        const struct entry *e = &l->ents[i];

        if (e->buf)
            l->disks[e->disk].vbuf[e->chunk / LONG_BITS] |=
                1UL << (e->chunk % LONG_BITS);
    }
    l->vbufs = l->nbufs;
}

static struct ldisk *find_disk(block_loader *l, const char *name,
                               uint32_t *idx)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->disks[i].name, name) == 0) {
            *idx = (uint32_t)i;
            return &l->disks[i];
        }
    return NULL;
}

/* Inspecting: a disk learned from its first record (any pass). */
static struct ldisk *learn_disk(block_loader *l, qfile *f, uint64_t at,
                                const char *name, uint32_t *idx)
{
    struct ldisk *ld;

    if (!*name)
        return NULL;
    if (l->n == BLOCK_INSPECT_MAX_DISKS) {
        qfile_fail_at(f, at, -E2BIG, "block: disk '%s' would be disk %d; "
                      "at most %d are shown", name,
                      BLOCK_INSPECT_MAX_DISKS + 1, BLOCK_INSPECT_MAX_DISKS);
        return NULL;
    }
    ld = &l->disks[l->n];
    snprintf(ld->name, sizeof(ld->name), "%s", name);
    *idx = (uint32_t)l->n++;
    return ld;
}

/* The validate pass: would this record need a new buffer, and may it? */
static int check_bound(block_loader *l, qfile *f, struct ldisk *ld,
                       uint64_t c, bool zero)
{
    unsigned long bit = 1UL << (c % LONG_BITS);

    if (zero || (ld->vbuf[c / LONG_BITS] & bit))
        return 0;
    if (l->vbufs >= l->max_bufs)
        return qfile_fail(f, -EFBIG,
                          "block: disk '%s': chunk %" PRIu64 " would "
                          "stage more than %" PRIu64 " chunks of data "
                          "(the bound)", disk_name(ld->d), c, l->max_bufs);
    ld->vbuf[c / LONG_BITS] |= bit;
    l->vbufs++;
    return 0;
}

/* The apply pass: the chunk's entry, made if new, with a buffer if data. */
static int stage(block_loader *l, qfile *f, uint32_t di, uint64_t c,
                 bool zero)
{
    struct ldisk *ld = &l->disks[di];
    struct entry *e;

    if (ld->slot[c]) {
        e = &l->ents[ld->slot[c] - 1];
    } else {
        if (l->nents == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 64;
            struct entry *ne = realloc(l->ents, cap * sizeof(*ne));

            if (!ne)
                return qfile_fail(f, -ENOMEM, "block: staging: out of "
                                  "memory");
            l->ents = ne;
            l->cap = cap;
        }
        e = &l->ents[l->nents++];
        *e = (struct entry){ .disk = di, .chunk = c };
        ld->slot[c] = (uint32_t)l->nents;
    }
    e->zero = zero;
    if (zero) {
        ld->zero_chunks++;
        return 0;
    }
    if (!e->buf) {
        if (l->nbufs >= l->max_bufs)
            return qfile_fail(f, -EFBIG, "block: staging over its bound "
                              "(not validated first?)");
        e->buf = l->npool ? l->pool[--l->npool] : malloc(DISK_CHUNK_SIZE);
        if (!e->buf)
            return qfile_fail(f, -ENOMEM, "block: staging: out of memory");
        l->nbufs++;
    }
    qfile_get_buf(f, e->buf, DISK_CHUNK_SIZE);
    if (!qfile_error(f))
        ld->data_chunks++;
    return qfile_error(f);
}

static int load_chunk(block_loader *l, qfile *f, uint64_t at, uint64_t hdr,
                      savevm_pass pass)
{
    uint64_t sector = hdr >> DISK_SECTOR_BITS;
    bool zero = hdr & BLOCK_FLAG_ZERO_BLOCK;
    struct ldisk *ld;
    char name[256];
    uint32_t di = 0;
    uint64_t c;
    int err;

    size_t nlen = qfile_get_str(f, name);
    if (qfile_error(f))
        return qfile_error(f);
    /* "disk0\0..." must not pass for disk0 (a fuzzer found it did). */
    if (strlen(name) != nlen)
        return qfile_fail(f, -EINVAL, "block: record at byte %" PRIu64
                          ": a device name with a NUL byte", at);
    ld = find_disk(l, name, &di);
    if (!ld && l->inspect)
        ld = learn_disk(l, f, at, name, &di);
    if (qfile_error(f))
        return qfile_error(f);
    if (!ld)
        return qfile_fail_at(f, at, -ENOENT,
                             "block: chunk at sector %" PRIu64 " is for "
                             "unknown disk '%s'", sector, name);
    if (ld->d && sector >= disk_sectors(ld->d))
        return qfile_fail_at(f, at, -ERANGE,
                             "block: disk '%s': sector %" PRIu64 " is "
                             "outside the disk (%" PRIu64 " sectors)",
                             name, sector, disk_sectors(ld->d));
    if (sector % DISK_CHUNK_SECTORS)
        return qfile_fail_at(f, at, -EINVAL,
                             "block: disk '%s': sector %" PRIu64 " does "
                             "not start a chunk (every %u sectors)",
                             name, sector, DISK_CHUNK_SECTORS);
    c = sector / DISK_CHUNK_SECTORS;
    if (l->inspect) {
        /* Nothing to stage into: check the data is there, and count. */
        if (!zero)
            qfile_skip(f, DISK_CHUNK_SIZE);
        if (!qfile_error(f) && pass == SAVEVM_PASS_APPLY)
            *(zero ? &ld->zero_chunks : &ld->data_chunks) += 1;
        return qfile_error(f);
    }
    if (pass == SAVEVM_PASS_VALIDATE) {
        err = check_bound(l, f, ld, c, zero);
        if (!err && !zero)
            qfile_skip(f, DISK_CHUNK_SIZE);
        return err ? err : qfile_error(f);
    }
    return stage(l, f, di, c, zero);
}

int block_load(block_loader *l, qfile *f, uint32_t version,
               savevm_pass pass)
{
    if (version != BLOCK_SECTION_VERSION)
        return qfile_fail(f, -ENOTSUP,
                          "block section version %" PRIu32 " is not "
                          "supported (only %u)",
                          version, BLOCK_SECTION_VERSION);
    for (;;) {
        uint64_t at = qfile_tell(f);
        uint64_t hdr = qfile_get_be64(f);
        unsigned flags = (unsigned)(hdr & FLAGS_MASK);
        int err;

        if (qfile_error(f))
            return qfile_error(f);
        if (flags & ~(unsigned)KNOWN_FLAGS)
            return qfile_fail_at(f, at, -EINVAL,
                                 "block: record header 0x%016" PRIx64
                                 " has unknown flags 0x%x", hdr,
                                 flags & ~(unsigned)KNOWN_FLAGS);
        switch (flags) {
        case BLOCK_FLAG_EOS:
            if (hdr != BLOCK_FLAG_EOS)
                break;
            return 0;
        case BLOCK_FLAG_PROGRESS:
            if ((hdr >> DISK_SECTOR_BITS) > 100)
                break;
            continue;
        case BLOCK_FLAG_DEVICE_BLOCK:
        case BLOCK_FLAG_DEVICE_BLOCK | BLOCK_FLAG_ZERO_BLOCK:
            err = load_chunk(l, f, at, hdr, pass);
            if (err)
                return err;
            continue;
        default:
            break;
        }
        return qfile_fail_at(f, at, -EINVAL,
                             "block: record header 0x%016" PRIx64
                             " is no record (flags 0x%x)", hdr, flags);
    }
}

void block_stage_counts_get(const block_loader *l, block_stage_counts *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < l->nents; i++) {
        const struct entry *e = &l->ents[i];

        if (e->zero) {
            out->zero_chunks++;
        } else {
            out->data_chunks++;
            out->data_bytes += disk_chunk_len(l->disks[e->disk].d, e->chunk);
        }
    }
}

int block_apply(block_loader *l, bool flush, char *err, size_t errlen)
{
    for (size_t i = 0; i < l->nents; i++) {
        const struct entry *e = &l->ents[i];
        disk *d = l->disks[e->disk].d;
        uint64_t off = e->chunk << DISK_CHUNK_BITS;
        int rc = e->zero ? disk_zero_chunk(d, e->chunk)
                         : disk_write_bytes(d, off, e->buf,
                                            disk_chunk_len(d, e->chunk));

        if (rc < 0) {
            snprintf(err, errlen, "disk '%s' (%s): writing chunk %" PRIu64
                     " at byte %" PRIu64 ": %s", disk_name(d), disk_path(d),
                     e->chunk, off, strerror(-rc));
            return rc;
        }
        /*
         * As the RAM loader marks the pages it applies: a checkpoint file
         * being written meanwhile (a secondary's, live) sends the chunk
         * again.
         */
        disk_mark_dirty(d, e->chunk * DISK_CHUNK_SECTORS,
                        disk_chunk_len(d, e->chunk) / DISK_SECTOR_SIZE);
    }
    for (size_t i = 0; flush && !l->inspect && i < l->n; i++) {
        int rc = disk_flush(l->disks[i].d);

        if (rc < 0) {
            snprintf(err, errlen, "disk '%s' (%s): flushing: %s",
                     disk_name(l->disks[i].d), disk_path(l->disks[i].d),
                     strerror(-rc));
            return rc;
        }
    }
    block_stage_drop(l);
    return 0;
}
