/*
 * ram: the RAM page codec, in QEMU's "ram" section format.
 *
 * The saver turns the dirty pages of a set of RAM blocks into page records;
 * the loader checks such records and stores them into another set of blocks
 * (the secondary's RAM cache, or a VM being restored), or only counts them
 * (inspect mode).  The caller frames the records as a section: the body of
 * the section's START is ram_save_setup(), each later PART or END body is
 * one ram_save_dirty().  docs/ram-format.md gives the byte layout.
 */
#ifndef FTVM_CHECKPOINT_RAM_H
#define FTVM_CHECKPOINT_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/qfile.h"
#include "checkpoint/savevm.h"

#define RAM_PAGE_BITS 12
#define RAM_PAGE_SIZE (1u << RAM_PAGE_BITS)
#define RAM_SECTION_VERSION 4u
#define RAM_SECTION_IDSTR "ram"

/* Flags in the low bits of a record's be64 header; the rest is an offset. */
enum ram_flag {
    RAM_FLAG_ZERO = 0x02,
    RAM_FLAG_MEM_SIZE = 0x04,
    RAM_FLAG_PAGE = 0x08,
    RAM_FLAG_EOS = 0x10,
    RAM_FLAG_CONTINUE = 0x20,
    RAM_FLAG_XBZRLE = 0x40,
    RAM_FLAG_COMPRESS_PAGE = 0x100,
};

/* The byte after an XBZRLE header: the only encoding QEMU has. */
#define RAM_XBZRLE_ENCODING 0x01

/*
 * A region of guest RAM, owned by the caller.  dirty has one bit per page
 * (bit p of word p / LONG_BIT), set when the page has to be sent.  The
 * saver needs it; the loader sets bits in it, when present, for every page
 * it stores, so a RAM cache knows what a package touched.  Bits are set
 * and cleared atomically, a page's bit set after the page is stored and
 * cleared before it is read, so that a saver may run on one thread while
 * a loader stores into the same blocks on another (the secondary writing
 * its RAM cache to disk): a page changed under the saver is sent again.
 */
typedef struct ram_block {
    const char *name;           /* at most 255 bytes, unique in a set */
    uint8_t *host;
    uint64_t length;            /* a nonzero multiple of RAM_PAGE_SIZE */
    unsigned long *dirty;
} ram_block;

/* Words of unsigned long a dirty bitmap needs for a block of length. */
size_t ram_bitmap_longs(uint64_t length);
/* Sets every page of every block dirty (a full first pass). */
void ram_mark_all_dirty(const ram_block *blocks, size_t n);
/* Whether a page (RAM_PAGE_SIZE bytes, any alignment) is all zero. */
bool ram_page_is_zero(const void *page);

/* ---- saving ---- */

typedef struct ram_saver ram_saver;

typedef struct ram_save_opts {
    int compress_level;         /* 0 = off, else zlib level 1..9 */
    uint64_t xbzrle_cache;      /* bytes of XBZRLE page cache; 0 = off */
} ram_save_opts;

/* What one ram_save_dirty() did. */
typedef struct ram_save_stats {
    uint64_t zero_pages;
    uint64_t normal_pages;
    uint64_t compressed_pages;
    uint64_t xbzrle_pages;
    uint64_t unchanged_pages;   /* dirty, but equal to what was last sent */
    uint64_t xbzrle_overflows;  /* cached, but the delta was too big */
    uint64_t cache_misses;
    uint64_t bytes;             /* bytes written, EOS included */
    uint64_t remaining;         /* pages still dirty when it returned */
} ram_save_stats;

/*
 * Creates a saver over n blocks (opts may be NULL for defaults).  The
 * block descriptions are copied; the memory and bitmaps they point at must
 * outlive the saver.  Returns 0, -EINVAL for a bad block or option, or
 * -ENOMEM.
 */
int ram_saver_new(ram_saver **out, const ram_block *blocks, size_t n,
                  const ram_save_opts *opts);
void ram_saver_free(ram_saver *s);

/*
 * Forgets every page in the XBZRLE cache.  Needed whenever the receiver
 * may no longer hold exactly what was sent (a new secondary, a package
 * that was not applied), since deltas are made against the cache.
 */
void ram_saver_drop_cache(ram_saver *s);

/* The START body: MEM_SIZE with the block list, then EOS.  0 or -errno. */
int ram_save_setup(ram_saver *s, qfile *f);

/*
 * Sends the dirty pages of every block in order, clearing each bit it
 * sends, then EOS.  Stops after max_pages records (0 = no limit).  Pages
 * go out with qfile_put_iov(): on an fd channel, flush f before the blocks
 * change.  Returns the number of page records written, or -errno; stats
 * (may be NULL) are filled in either way.  After an error the bitmaps and
 * the XBZRLE cache no longer match what the receiver holds: mark all
 * dirty and drop the cache before saving to it again.
 */
int64_t ram_save_dirty(ram_saver *s, qfile *f, uint64_t max_pages,
                       ram_save_stats *stats);

/* ---- loading ---- */

typedef struct ram_loader ram_loader;

/* Pages stored into (or, inspecting, seen for) one block. */
typedef struct ram_block_counts {
    const char *name;           /* valid while the loader lives */
    uint64_t length;
    uint64_t zero_pages;
    uint64_t normal_pages;
    uint64_t compressed_pages;
    uint64_t xbzrle_pages;
    uint64_t compressed_bytes;  /* zlib payload of the compressed pages */
    uint64_t xbzrle_bytes;      /* encoded payload of the XBZRLE pages */
} ram_block_counts;

/*
 * A loader storing into n caller-owned blocks (copied descriptions, as
 * for the saver).  Returns 0, -EINVAL or -ENOMEM.
 */
int ram_loader_new(ram_loader **out, const ram_block *blocks, size_t n);
/*
 * A loader with no memory: it learns the blocks from MEM_SIZE records and
 * checks and counts every page, decoding into scratch space.
 */
int ram_loader_new_inspect(ram_loader **out);
void ram_loader_free(ram_loader *l);

/*
 * Reads one ram section body, records up to and including EOS.  version
 * is the section's; only RAM_SECTION_VERSION is accepted.  A CONTINUE
 * record may refer to a block named in an earlier body, as QEMU writes.
 * VALIDATE checks every record and decodes into scratch space, writing nothing
 * to the blocks; APPLY stores and counts.  APPLY on its own is not atomic: a
 * bad record stops it part way, so run VALIDATE over the same bytes first.
 * Returns 0 or the negative errno latched on f (see docs/ram-format.md).
 */
int ram_load(ram_loader *l, qfile *f, uint32_t version, savevm_pass pass);

/*
 * Each pass follows its own CONTINUE block, so VALIDATE can run ahead of
 * APPLY over a package of several sections.  Call this before validating
 * each unit that is applied or refused as a whole (a stream, a package):
 * its VALIDATE pass then continues the block APPLY last stored into, not
 * one named by a unit that was refused.  (savevm_target_ops'
 * begin_validate is where a loader says so.)
 */
void ram_loader_begin_validate(ram_loader *l);

/* Number of blocks the loader knows (for inspect, learned so far). */
size_t ram_loader_nblocks(const ram_loader *l);
/* Counts for block i, accumulated over APPLY passes.  0 or -ENOENT. */
int ram_loader_counts(const ram_loader *l, size_t i, ram_block_counts *out);

#endif
