/*
 * block: the disk chunk codec, in QEMU's "block" section format.
 *
 * The saver turns the chunks a checkpoint took from a disk's dirty bitmap
 * into chunk records (a zero chunk as a record without data), then EOS.
 * The loader checks such records against the disks it knows and stages
 * them in memory, bounded by its caller; block_apply() then writes what is
 * staged into the images.  Staging is what lets a secondary apply a
 * package's disk chunks together with its RAM: nothing reaches an image
 * until the whole package has been read and checked.  The caller frames
 * the records as a section (START/PART/END, version 1).
 * docs/disk-format.md gives the byte layout.
 */
#ifndef FTVM_CHECKPOINT_BLOCK_H
#define FTVM_CHECKPOINT_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/disk.h"
#include "checkpoint/qfile.h"
#include "checkpoint/savevm.h"

#define BLOCK_SECTION_IDSTR "block"
#define BLOCK_SECTION_VERSION 1u

/* Flags in the low 9 bits of a record's be64 header (below the sector). */
enum block_flag {
    BLOCK_FLAG_DEVICE_BLOCK = 0x01,
    BLOCK_FLAG_EOS = 0x02,
    BLOCK_FLAG_PROGRESS = 0x04,
    BLOCK_FLAG_ZERO_BLOCK = 0x08,
};

/* ---- saving ---- */

typedef struct block_save_stats {
    uint64_t zero_chunks;
    uint64_t data_chunks;
    uint64_t bytes;             /* bytes written, EOS included */
    uint64_t remaining;         /* block_save_dirty: chunks still dirty */
} block_save_stats;

/*
 * Writes a record for every chunk set in taken (a bitmap from
 * disk_take_dirty, disk_bitmap_longs words), reading each from the image
 * into scratch (DISK_CHUNK_SIZE bytes, the caller's), then EOS.  Chunks
 * that are all zero go as ZERO records.  Returns the number of chunk
 * records, or -errno with the message latched on f (a read error names
 * the disk and the chunk); after an error, the chunks of taken not yet
 * written are marked dirty again (disk_mark_dirty_bits), so nothing is
 * lost, but the stream is broken.  stats (may be NULL) are added to.
 */
int64_t block_save(qfile *f, disk *d, const unsigned long *taken,
                   uint8_t *scratch, block_save_stats *stats);
/*
 * A live pass (the bring-up, with the guest running): sends up to
 * max_chunks (0 = all) of the disk's dirty chunks in order, clearing each
 * bit just before reading its chunk, then EOS.  A write that lands after
 * a chunk's bit was cleared sets it again, so the chunk goes in a later
 * pass.  Returns the chunk records written, or -errno (the failed chunk
 * is marked dirty again; the stream is broken).
 */
int64_t block_save_dirty(qfile *f, disk *d, uint8_t *scratch,
                         uint64_t max_chunks, block_save_stats *stats);
/* Only EOS: a body with nothing dirty (QEMU's START body is this). */
void block_save_eos(qfile *f);

/* ---- loading ---- */

typedef struct block_loader block_loader;

/*
 * A loader for n caller-owned disks (distinct names; they must outlive
 * it).  max_stage bounds the chunk data it will stage (bytes; a ZERO
 * record takes none), at most the disks' total size: more than that is
 * never needed, since a chunk staged twice takes its place once.  0 means
 * that total.  Returns 0, -EINVAL (a disk twice, a readonly disk) or
 * -ENOMEM.
 */
int block_loader_new(block_loader **out, disk *const *disks, size_t n,
                     uint64_t max_stage);
void block_loader_free(block_loader *l);

/*
 * A loader with no disks, for showing a stream (ftvm inspect): it learns
 * each device name from its first record (at most
 * BLOCK_INSPECT_MAX_DISKS, then -E2BIG), checks every record as far as
 * it can without the images (flags, names, a sector where a chunk
 * starts, the data there, EOS; not the disk's end, which the stream does
 * not carry), counts chunks in APPLY passes and stages nothing.  A name
 * first seen in a unit that was refused stays, with no chunks counted.
 */
#define BLOCK_INSPECT_MAX_DISKS 64
int block_loader_new_inspect(block_loader **out);

/* Chunks loaded per disk, as records said (repeats counted each time). */
typedef struct block_disk_counts {
    const char *name;           /* valid while the loader lives */
    uint64_t data_chunks;
    uint64_t zero_chunks;
} block_disk_counts;

/* Disks the loader knows (inspecting: learned so far). */
size_t block_loader_ndisks(const block_loader *l);
/* Counts for disk i, accumulated over APPLY passes.  0 or -ENOENT. */
int block_loader_counts(const block_loader *l, size_t i,
                        block_disk_counts *out);

/*
 * Reads one block section body, records up to and including EOS; only
 * BLOCK_SECTION_VERSION is accepted.  VALIDATE checks every record and
 * stages nothing; APPLY stages the chunks (a later record of a chunk
 * replaces an earlier one).  Run VALIDATE over the same bytes first: an
 * APPLY that fails part way leaves some of the body staged (drop it with
 * block_stage_drop).  Returns 0 or the negative errno latched on f.
 */
int block_load(block_loader *l, qfile *f, uint32_t version,
               savevm_pass pass);

/*
 * A unit (a stream, a package) is about to be validated: the staging
 * bound is checked from what is staged now, not from where a refused
 * unit's validation left it (savevm_target_ops' begin_validate).
 */
void block_loader_begin_validate(block_loader *l);

/* What is staged now. */
typedef struct block_stage_counts {
    uint64_t zero_chunks;
    uint64_t data_chunks;
    uint64_t data_bytes;        /* bytes of image the data chunks cover */
} block_stage_counts;

void block_stage_counts_get(const block_loader *l, block_stage_counts *out);

/*
 * Writes every staged chunk into its image (pwrite; a ZERO chunk punches
 * a hole or writes zeros), marks it dirty (as the RAM loader marks the
 * pages it applies: a checkpoint file of the image being written
 * meanwhile sends it again) and, when all went well, empties the stage.
 * Returns 0, or -errno with "disk NAME (PATH): writing chunk C at byte
 * OFFSET: REASON" in err; the stage is then kept, so the same apply can
 * run again (every chunk is written whole, so repeating one is harmless)
 * once the cause (ENOSPC, say) is gone.  Until it succeeds, the images
 * are a mix of the old and the staged state.
 */
int block_apply(block_loader *l, bool flush, char *err, size_t errlen);

/* Forgets everything staged (a package refused after it was staged). */
void block_stage_drop(block_loader *l);

#endif
