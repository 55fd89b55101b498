/*
 * ram: the RAM page codec.  The saver walks dirty bitmaps and picks an
 * encoding per page (zero, XBZRLE delta, zlib, plain); the loader checks
 * every record against the blocks it knows before storing anything.
 */
#define ZLIB_CONST
#include "checkpoint/ram.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "checkpoint/xbzrle.h"

#define FLAGS_MASK ((uint64_t)RAM_PAGE_SIZE - 1)
#define KNOWN_FLAGS (RAM_FLAG_ZERO | RAM_FLAG_MEM_SIZE | RAM_FLAG_PAGE | \
                     RAM_FLAG_EOS | RAM_FLAG_CONTINUE | RAM_FLAG_XBZRLE | \
                     RAM_FLAG_COMPRESS_PAGE)
#define LONG_BITS (sizeof(unsigned long) * CHAR_BIT)
/* Inspect mode trusts the stream for its block list; keep that bounded. */
#define MAX_LEARNED_BLOCKS 1024

size_t ram_bitmap_longs(uint64_t length)
{
    uint64_t pages = length >> RAM_PAGE_BITS;

    return (size_t)((pages + LONG_BITS - 1) / LONG_BITS);
}

/* The bits of word w that stand for pages of a block of `pages` pages. */
static unsigned long word_mask(uint64_t pages, size_t w)
{
    uint64_t first = (uint64_t)w * LONG_BITS;

    if (pages - first >= LONG_BITS)
        return ~0UL;
    return (1UL << (pages - first)) - 1;
}

void ram_mark_all_dirty(const ram_block *blocks, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t pages = blocks[i].length >> RAM_PAGE_BITS;
        size_t words = ram_bitmap_longs(blocks[i].length);

        for (size_t w = 0; w < words; w++)
            __atomic_fetch_or(&blocks[i].dirty[w], word_mask(pages, w),
                              __ATOMIC_RELAXED);
    }
}

/*
 * Most pages that are not zero differ from zero in their first bytes, so
 * look there first; for the rest, comparing the page with itself shifted
 * by 16 bytes lets libc's vectorised memcmp do the scan (bench_ram shows
 * it beating a word loop by about 2x on cached pages).
 */
bool ram_page_is_zero(const void *page)
{
    const uint8_t *p = page;
    uint64_t head[2];

    memcpy(head, p, sizeof(head));
    if (head[0] | head[1])
        return false;
    return memcmp(p, p + sizeof(head), RAM_PAGE_SIZE - sizeof(head)) == 0;
}

static bool block_ok(const ram_block *b, bool need_host)
{
    size_t len = b->name ? strlen(b->name) : 0;

    return len > 0 && len <= 255 && b->length &&
           !(b->length & FLAGS_MASK) && (!need_host || b->host);
}

/*
 * Blocks handed to a saver or loader: each well formed with memory behind
 * it (the saver also needs a dirty bitmap), and no name twice.
 */
static int check_blocks(const ram_block *blocks, size_t n, bool need_dirty)
{
    for (size_t i = 0; i < n; i++) {
        if (!block_ok(&blocks[i], true) || (need_dirty && !blocks[i].dirty))
            return -EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(blocks[i].name, blocks[j].name) == 0)
                return -EINVAL;
    }
    return 0;
}

/* ================================ saving ================================ */

struct sblock {
    ram_block b;
    char name[256];
    uint64_t pages;
    uint64_t first;             /* index of its first page among all blocks */
};

/*
 * The XBZRLE cache: the copy of each page the receiver holds, for as many
 * pages as fit.  Direct-mapped on the page's global index, so a lookup is
 * one division and a newer page simply evicts whatever shared its slot.
 */
struct xcache {
    uint64_t slots;
    uint64_t *key;              /* global page index + 1; 0 = empty */
    uint8_t *data;
};

struct ram_saver {
    struct sblock *blocks;
    size_t n;
    const struct sblock *last_sent;   /* for CONTINUE, reset per call */
    int level;
    z_stream zs;
    uint8_t *zbuf;
    struct xcache cache;
    uint8_t *delta;
};

int ram_saver_new(ram_saver **out, const ram_block *blocks, size_t n,
                  const ram_save_opts *opts)
{
    static const ram_save_opts none;
    ram_saver *s;
    uint64_t first = 0;

    *out = NULL;
    if (!opts)
        opts = &none;
    if (opts->compress_level < 0 || opts->compress_level > 9)
        return -EINVAL;
    if (opts->xbzrle_cache && opts->xbzrle_cache < RAM_PAGE_SIZE)
        return -EINVAL;
    if (check_blocks(blocks, n, true) < 0)
        return -EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->blocks = calloc(n ? n : 1, sizeof(*s->blocks));
    if (!s->blocks)
        goto nomem;
    s->n = n;
    for (size_t i = 0; i < n; i++) {
        struct sblock *sb = &s->blocks[i];

        sb->b = blocks[i];
        snprintf(sb->name, sizeof(sb->name), "%s", blocks[i].name);
        sb->b.name = sb->name;
        sb->pages = sb->b.length >> RAM_PAGE_BITS;
        sb->first = first;
        first += sb->pages;
    }

    s->level = opts->compress_level;
    if (s->level) {
        s->zbuf = malloc(compressBound(RAM_PAGE_SIZE));
        if (!s->zbuf || deflateInit(&s->zs, s->level) != Z_OK) {
            free(s->zbuf);
            s->zbuf = NULL;
            goto nomem;
        }
    }
    if (opts->xbzrle_cache) {
        struct xcache *c = &s->cache;

        c->slots = opts->xbzrle_cache / RAM_PAGE_SIZE;
        c->key = calloc(c->slots, sizeof(*c->key));
        c->data = malloc(c->slots * RAM_PAGE_SIZE);
        s->delta = malloc(RAM_PAGE_SIZE);
        if (!c->key || !c->data || !s->delta)
            goto nomem;
    }
    *out = s;
    return 0;

nomem:
    ram_saver_free(s);
    return -ENOMEM;
}

void ram_saver_free(ram_saver *s)
{
    if (!s)
        return;
    if (s->zbuf)
        deflateEnd(&s->zs);
    free(s->zbuf);
    free(s->cache.key);
    free(s->cache.data);
    free(s->delta);
    free(s->blocks);
    free(s);
}

void ram_saver_drop_cache(ram_saver *s)
{
    if (s->cache.key)
        memset(s->cache.key, 0, s->cache.slots * sizeof(*s->cache.key));
}

/* The cached copy of global page g, or NULL. */
static uint8_t *cache_find(struct xcache *c, uint64_t g)
{
    uint64_t slot = g % c->slots;

    return c->key[slot] == g + 1 ? c->data + slot * RAM_PAGE_SIZE : NULL;
}

static void cache_insert(struct xcache *c, uint64_t g, const uint8_t *page)
{
    uint64_t slot = g % c->slots;

    c->key[slot] = g + 1;
    memcpy(c->data + slot * RAM_PAGE_SIZE, page, RAM_PAGE_SIZE);
}

int ram_save_setup(ram_saver *s, qfile *f)
{
    uint64_t total = 0;

    for (size_t i = 0; i < s->n; i++)
        total += s->blocks[i].b.length;
    qfile_put_be64(f, total | RAM_FLAG_MEM_SIZE);
    for (size_t i = 0; i < s->n; i++) {
        qfile_put_str(f, s->blocks[i].name);
        qfile_put_be64(f, s->blocks[i].b.length);
    }
    qfile_put_be64(f, RAM_FLAG_EOS);
    return qfile_error(f);
}

/* A page record's header; the block name only when the block changes. */
static void put_header(ram_saver *s, qfile *f, const struct sblock *sb,
                       uint64_t offset, uint64_t flag)
{
    if (sb == s->last_sent) {
        qfile_put_be64(f, offset | flag | RAM_FLAG_CONTINUE);
        return;
    }
    qfile_put_be64(f, offset | flag);
    qfile_put_str(f, sb->name);
    s->last_sent = sb;
}

/*
 * A page as itself or, when compression is on, as one zlib stream.
 * Returns 1 (one record) or -errno.
 */
static int put_plain(ram_saver *s, qfile *f, const struct sblock *sb,
                     uint64_t offset, const uint8_t *page,
                     ram_save_stats *st)
{
    if (!s->level) {
        put_header(s, f, sb, offset, RAM_FLAG_PAGE);
        qfile_put_iov(f, page, RAM_PAGE_SIZE);
        st->normal_pages++;
        return 1;
    }
    deflateReset(&s->zs);
    s->zs.next_in = page;
    s->zs.avail_in = RAM_PAGE_SIZE;
    s->zs.next_out = s->zbuf;
    s->zs.avail_out = (uInt)compressBound(RAM_PAGE_SIZE);
    if (deflate(&s->zs, Z_FINISH) != Z_STREAM_END)
        return qfile_fail(f, -EIO,
                          "RAM block \"%s\": compressing page at "
                          "0x%" PRIx64 " failed",
                          sb->name, offset);
    put_header(s, f, sb, offset, RAM_FLAG_COMPRESS_PAGE);
    qfile_put_be32(f, (uint32_t)s->zs.total_out);
    qfile_put_buf(f, s->zbuf, s->zs.total_out);
    st->compressed_pages++;
    return 1;
}

/*
 * Sends page p of sb.  Returns 1 when a record went out, 0 when the page
 * equals the receiver's copy, or -errno.
 */
static int save_page(ram_saver *s, qfile *f, const struct sblock *sb,
                     uint64_t p, ram_save_stats *st)
{
    uint64_t offset = p << RAM_PAGE_BITS;
    const uint8_t *page = sb->b.host + offset;
    uint8_t *copy = NULL;
    int n;

    if (ram_page_is_zero(page)) {
        put_header(s, f, sb, offset, RAM_FLAG_ZERO);
        qfile_put_u8(f, 0);
        st->zero_pages++;
        if (s->cache.slots && (copy = cache_find(&s->cache, sb->first + p)))
            memset(copy, 0, RAM_PAGE_SIZE);
        return 1;
    }
    if (!s->cache.slots)
        return put_plain(s, f, sb, offset, page, st);

    copy = cache_find(&s->cache, sb->first + p);
    if (!copy) {
        st->cache_misses++;
        cache_insert(&s->cache, sb->first + p, page);
        return put_plain(s, f, sb, offset, page, st);
    }
    n = xbzrle_encode(copy, page, RAM_PAGE_SIZE, s->delta, RAM_PAGE_SIZE);
    if (n == 0) {
        st->unchanged_pages++;
        return 0;
    }
    memcpy(copy, page, RAM_PAGE_SIZE);
    if (n < 0) {
        st->xbzrle_overflows++;
        return put_plain(s, f, sb, offset, page, st);
    }
    put_header(s, f, sb, offset, RAM_FLAG_XBZRLE);
    qfile_put_u8(f, RAM_XBZRLE_ENCODING);
    qfile_put_be16(f, (uint16_t)n);
    qfile_put_buf(f, s->delta, (size_t)n);
    st->xbzrle_pages++;
    return 1;
}

static uint64_t count_dirty(const ram_saver *s)
{
    uint64_t count = 0;

    for (size_t i = 0; i < s->n; i++) {
        const struct sblock *sb = &s->blocks[i];
        size_t words = ram_bitmap_longs(sb->b.length);

        for (size_t w = 0; w < words; w++)
            count += (uint64_t)__builtin_popcountl(
                __atomic_load_n(&sb->b.dirty[w], __ATOMIC_RELAXED) &
                word_mask(sb->pages, w));
    }
    return count;
}

int64_t ram_save_dirty(ram_saver *s, qfile *f, uint64_t max_pages,
                       ram_save_stats *stats)
{
    ram_save_stats local;
    ram_save_stats *st = stats ? stats : &local;
    uint64_t start = qfile_tell(f);
    uint64_t written = 0;
    bool stopped = false;
    int err = 0;

    memset(st, 0, sizeof(*st));
    s->last_sent = NULL;
    for (size_t i = 0; i < s->n && !stopped && !err; i++) {
        const struct sblock *sb = &s->blocks[i];
        size_t words = ram_bitmap_longs(sb->b.length);

        for (size_t w = 0; w < words && !stopped && !err; w++) {
            unsigned long bits = __atomic_load_n(&sb->b.dirty[w],
                                                 __ATOMIC_RELAXED) &
                                 word_mask(sb->pages, w);

            while (bits) {
                unsigned bit = (unsigned)__builtin_ctzl(bits);
                int r;

                if (max_pages && written == max_pages) {
                    stopped = true;
                    break;
                }
                bits &= bits - 1;
                /* Cleared before the page is read: see ram_block. */
                __atomic_fetch_and(&sb->b.dirty[w], ~(1UL << bit),
                                   __ATOMIC_ACQ_REL);
                r = save_page(s, f, sb, (uint64_t)w * LONG_BITS + bit, st);
                err = r < 0 ? r : qfile_error(f);
                if (err)
                    break;
                written += (uint64_t)r;
            }
        }
    }
    qfile_put_be64(f, RAM_FLAG_EOS);
    st->bytes = qfile_tell(f) - start;
    st->remaining = stopped || qfile_error(f) ? count_dirty(s) : 0;
    err = qfile_error(f);
    return err < 0 ? err : (int64_t)written;
}

/* ================================ loading =============================== */

struct lblock {
    ram_block b;
    char name[256];
    ram_block_counts c;
};

/*
 * The block a CONTINUE record refers to outlives its section: QEMU names a
 * block once and continues it in later sections.  Each pass follows its
 * own chain, so VALIDATE of a package runs ahead of what is applied;
 * ram_loader_begin_validate restarts the VALIDATE chain from the applied
 * one for each unit.
 */
struct ram_loader {
    bool inspect;
    struct lblock *cur[SAVEVM_PASS_APPLY + 1];  /* indexed by savevm_pass */
    struct lblock **blocks;
    size_t n, cap;
    bool inflating;
    z_stream zs;
    uint8_t scratch[RAM_PAGE_SIZE];
};

/* Where a record goes: the block, and the page in it (NULL to discard). */
struct dest {
    struct lblock *lb;
    uint64_t offset;
    uint8_t *page;
};

static int add_block(ram_loader *l, const ram_block *b)
{
    struct lblock *lb;

    if (!block_ok(b, !l->inspect))
        return -EINVAL;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        struct lblock **grown = realloc(l->blocks, cap * sizeof(*grown));

        if (!grown)
            return -ENOMEM;
        l->blocks = grown;
        l->cap = cap;
    }
    lb = calloc(1, sizeof(*lb));
    if (!lb)
        return -ENOMEM;
    lb->b = *b;
    snprintf(lb->name, sizeof(lb->name), "%s", b->name);
    lb->b.name = lb->name;
    lb->c.name = lb->name;
    lb->c.length = b->length;
    l->blocks[l->n++] = lb;
    return 0;
}

static int loader_alloc(ram_loader **out, bool inspect)
{
    ram_loader *l = calloc(1, sizeof(*l));

    *out = l;
    if (!l)
        return -ENOMEM;
    l->inspect = inspect;
    return 0;
}

int ram_loader_new(ram_loader **out, const ram_block *blocks, size_t n)
{
    ram_loader *l;
    int err;

    if (check_blocks(blocks, n, false) < 0) {
        *out = NULL;
        return -EINVAL;
    }
    err = loader_alloc(&l, false);
    for (size_t i = 0; i < n && !err; i++)
        err = add_block(l, &blocks[i]);
    if (err) {
        ram_loader_free(l);
        l = NULL;
    }
    *out = l;
    return err;
}

int ram_loader_new_inspect(ram_loader **out)
{
    return loader_alloc(out, true);
}

void ram_loader_free(ram_loader *l)
{
    if (!l)
        return;
    if (l->inflating)
        inflateEnd(&l->zs);
    for (size_t i = 0; i < l->n; i++)
        free(l->blocks[i]);
    free(l->blocks);
    free(l);
}

void ram_loader_begin_validate(ram_loader *l)
{
    l->cur[SAVEVM_PASS_VALIDATE] = l->cur[SAVEVM_PASS_APPLY];
}

size_t ram_loader_nblocks(const ram_loader *l)
{
    return l->n;
}

int ram_loader_counts(const ram_loader *l, size_t i, ram_block_counts *out)
{
    if (i >= l->n)
        return -ENOENT;
    *out = l->blocks[i]->c;
    return 0;
}

static struct lblock *find_block(const ram_loader *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->blocks[i]->name, name) == 0)
            return l->blocks[i];
    return NULL;
}

/*
 * MEM_SIZE: the sender's blocks, whose lengths add up to total.  Ours
 * must match them; inspecting, they become ours.
 */
static int load_mem_size(ram_loader *l, qfile *f, uint64_t total)
{
    uint64_t left = total;

    while (left) {
        char name[256];
        uint64_t length;
        struct lblock *lb;

        qfile_get_str(f, name);
        length = qfile_get_be64(f);
        if (qfile_error(f))
            return qfile_error(f);
        if (length == 0 || (length & FLAGS_MASK) || length > left)
            return qfile_fail(f, -EINVAL,
                              "RAM block list: block \"%s\" has "
                              "length 0x%" PRIx64 ", which does not fit the "
                              "total 0x%" PRIx64,
                              name, length, total);
        lb = find_block(l, name);
        if (!lb && l->inspect) {
            ram_block b = { .name = name, .length = length };
            int err = l->n < MAX_LEARNED_BLOCKS ? add_block(l, &b) : -E2BIG;

            if (err)
                return qfile_fail(f, err,
                                  "RAM block list: cannot add block "
                                  "\"%s\": %s",
                                  name, strerror(-err));
            lb = l->blocks[l->n - 1];
        }
        if (!lb)
            return qfile_fail(f, -ENOENT,
                              "RAM block list: unknown block "
                              "\"%s\"",
                              name);
        if (lb->b.length != length)
            return qfile_fail(f, -EINVAL,
                              "RAM block \"%s\": stream has length "
                              "0x%" PRIx64 ", this VM 0x%" PRIx64,
                              name, length, lb->b.length);
        left -= length;
    }
    return 0;
}

/* Resolves a page record's block and offset. */
static int find_dest(ram_loader *l, qfile *f, uint64_t hdr, savevm_pass pass,
                     struct dest *d)
{
    uint64_t offset = hdr & ~FLAGS_MASK;
    struct lblock **cur = &l->cur[pass];

    if (hdr & RAM_FLAG_CONTINUE) {
        if (!*cur)
            return qfile_fail(f, -EINVAL,
                              "RAM page at 0x%" PRIx64 " continues "
                              "a block, but no block was named before it",
                              offset);
    } else {
        char name[256];

        qfile_get_str(f, name);
        if (qfile_error(f))
            return qfile_error(f);
        *cur = find_block(l, name);
        if (!*cur)
            return qfile_fail(f, -ENOENT,
                              "RAM page at 0x%" PRIx64 " is for "
                              "unknown block \"%s\"",
                              offset, name);
    }
    if (offset >= (*cur)->b.length)
        return qfile_fail(f, -ERANGE,
                          "RAM block \"%s\": page offset 0x%" PRIx64
                          " is outside the block (length 0x%" PRIx64 ")",
                          (*cur)->name, offset, (*cur)->b.length);
    d->lb = *cur;
    d->offset = offset;
    d->page = pass == SAVEVM_PASS_APPLY && !l->inspect
                  ? (*cur)->b.host + offset
                  : NULL;
    return 0;
}

/* Inflates one zlib stream that must hold exactly one page, into out. */
static int inflate_page(ram_loader *l, const uint8_t *in, uint32_t len,
                        uint8_t *out, const char **why)
{
    int r;

    if (!l->inflating) {
        memset(&l->zs, 0, sizeof(l->zs));
        if (inflateInit(&l->zs) != Z_OK) {
            *why = "cannot set up zlib";
            return -ENOMEM;
        }
        l->inflating = true;
    } else {
        inflateReset(&l->zs);
    }
    l->zs.next_in = in;
    l->zs.avail_in = len;
    l->zs.next_out = out;
    l->zs.avail_out = RAM_PAGE_SIZE;
    r = inflate(&l->zs, Z_FINISH);
    if (r == Z_STREAM_END && l->zs.total_out == RAM_PAGE_SIZE &&
        l->zs.avail_in == 0)
        return 0;
    if (r == Z_STREAM_END)
        *why = l->zs.avail_in ? "bytes after the end of the zlib stream"
                              : "inflates to less than a page";
    else if (l->zs.avail_out == 0)
        *why = "inflates to more than a page";
    else
        *why = l->zs.msg ? l->zs.msg : "corrupt zlib stream";
    return -EINVAL;
}

static int load_compressed(ram_loader *l, qfile *f, const struct dest *d,
                           uint32_t *payload)
{
    uint32_t len = qfile_get_be32(f);
    const uint8_t *in;
    const char *why = NULL;
    int err;

    if (qfile_error(f))
        return qfile_error(f);
    if (len == 0 || len > compressBound(RAM_PAGE_SIZE))
        return qfile_fail(f, -EINVAL,
                          "RAM block \"%s\": compressed page at "
                          "0x%" PRIx64 " has length %" PRIu32
                          " (1..%lu allowed)",
                          d->lb->name, d->offset, len,
                          (unsigned long)compressBound(RAM_PAGE_SIZE));
    in = qfile_get_ptr(f, len);
    if (!in)
        return qfile_error(f);
    err = inflate_page(l, in, len, d->page ? d->page : l->scratch, &why);
    if (err)
        return qfile_fail(
            f, err, "RAM block \"%s\": compressed page at 0x%" PRIx64 ": %s",
            d->lb->name, d->offset, why);
    *payload = len;
    return 0;
}

static int load_xbzrle(qfile *f, const struct dest *d, uint32_t *payload)
{
    uint8_t encoding = qfile_get_u8(f);
    uint16_t len = qfile_get_be16(f);
    const uint8_t *in = NULL;
    int err;

    if (qfile_error(f))
        return qfile_error(f);
    if (encoding != RAM_XBZRLE_ENCODING)
        return qfile_fail(f, -EINVAL,
                          "RAM block \"%s\": XBZRLE page at 0x%" PRIx64
                          " has encoding 0x%02x, not 0x%02x",
                          d->lb->name, d->offset, encoding,
                          RAM_XBZRLE_ENCODING);
    if (len > RAM_PAGE_SIZE)
        return qfile_fail(f, -EINVAL,
                          "RAM block \"%s\": XBZRLE page at 0x%" PRIx64
                          " has length %u, more than a page",
                          d->lb->name, d->offset, len);
    if (len && !(in = qfile_get_ptr(f, len)))
        return qfile_error(f);
    err = d->page ? xbzrle_decode(in, len, d->page, RAM_PAGE_SIZE)
                  : xbzrle_check(in, len, RAM_PAGE_SIZE);
    if (err)
        return qfile_fail(f, err,
                          "RAM block \"%s\": XBZRLE page at 0x%" PRIx64
                          " is malformed or overruns the page",
                          d->lb->name, d->offset);
    *payload = len;
    return 0;
}

/* What APPLY did to a block: its counts, and the page's dirty bit. */
static void note_page(const struct dest *d, unsigned kind, uint32_t payload)
{
    ram_block_counts *c = &d->lb->c;

    switch (kind) {
    case RAM_FLAG_ZERO:
        c->zero_pages++;
        break;
    case RAM_FLAG_PAGE:
        c->normal_pages++;
        break;
    case RAM_FLAG_COMPRESS_PAGE:
        c->compressed_pages++;
        c->compressed_bytes += payload;
        break;
    default:
        c->xbzrle_pages++;
        c->xbzrle_bytes += payload;
        break;
    }
    if (d->page && d->lb->b.dirty) {
        uint64_t p = d->offset >> RAM_PAGE_BITS;

        __atomic_fetch_or(&d->lb->b.dirty[p / LONG_BITS],
                          1UL << (p % LONG_BITS), __ATOMIC_RELEASE);
    }
}

/* One ZERO, PAGE, COMPRESS_PAGE or XBZRLE record after its header. */
static int load_page(ram_loader *l, qfile *f, unsigned kind,
                     const struct dest *d, savevm_pass pass)
{
    uint32_t payload = 0;
    const uint8_t *src;
    uint8_t fill;
    int err = 0;

    switch (kind) {
    case RAM_FLAG_ZERO:
        fill = qfile_get_u8(f);
        if (qfile_error(f))
            return qfile_error(f);
        if (fill)
            return qfile_fail(f, -EINVAL,
                              "RAM block \"%s\": zero page at 0x%" PRIx64
                              " has fill byte 0x%02x",
                              d->lb->name, d->offset, fill);
        /* Leaves untouched memory unallocated when it is already zero. */
        if (d->page && !ram_page_is_zero(d->page))
            memset(d->page, 0, RAM_PAGE_SIZE);
        break;
    case RAM_FLAG_PAGE:
        src = qfile_get_ptr(f, RAM_PAGE_SIZE);
        if (!src)
            return qfile_error(f);
        if (d->page)
            memcpy(d->page, src, RAM_PAGE_SIZE);
        break;
    case RAM_FLAG_COMPRESS_PAGE:
        err = load_compressed(l, f, d, &payload);
        break;
    default:
        err = load_xbzrle(f, d, &payload);
        break;
    }
    if (!err && pass == SAVEVM_PASS_APPLY)
        note_page(d, kind, payload);
    return err;
}

int ram_load(ram_loader *l, qfile *f, uint32_t version, savevm_pass pass)
{
    if (version != RAM_SECTION_VERSION)
        return qfile_fail(f, -ENOTSUP,
                          "RAM section version %" PRIu32 " is not "
                          "supported (only %u)",
                          version, RAM_SECTION_VERSION);
    for (;;) {
        uint64_t hdr = qfile_get_be64(f);
        unsigned flags = (unsigned)(hdr & FLAGS_MASK);
        unsigned kind = flags & ~(unsigned)RAM_FLAG_CONTINUE;
        struct dest d = { .lb = NULL };
        int err;

        if (qfile_error(f))
            return qfile_error(f);
        if (flags & ~(unsigned)KNOWN_FLAGS)
            return qfile_fail(
                f, -EINVAL,
                "RAM record header 0x%016" PRIx64
                " has unknown flags 0x%x (or an unaligned offset)",
                hdr, flags & ~(unsigned)KNOWN_FLAGS);
        switch (kind) {
        case RAM_FLAG_EOS:
            if (hdr != RAM_FLAG_EOS)
                break;
            return 0;
        case RAM_FLAG_MEM_SIZE:
            if (flags & RAM_FLAG_CONTINUE)
                break;
            err = load_mem_size(l, f, hdr & ~FLAGS_MASK);
            if (err)
                return err;
            continue;
        case RAM_FLAG_ZERO:
        case RAM_FLAG_PAGE:
        case RAM_FLAG_COMPRESS_PAGE:
        case RAM_FLAG_XBZRLE:
            err = find_dest(l, f, hdr, pass, &d);
            if (!err)
                err = load_page(l, f, kind, &d, pass);
            if (err)
                return err;
            continue;
        default:
            break;
        }
        return qfile_fail(f, -EINVAL,
                          "RAM record header 0x%016" PRIx64
                          " has an invalid combination of flags 0x%x",
                          hdr, flags);
    }
}
