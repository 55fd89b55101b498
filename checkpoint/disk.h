/*
 * disk: a raw disk image whose writes are tracked for checkpoints.
 *
 * The image is a regular file opened from a `FILE[,readonly]` spec; guest
 * I/O goes through disk_read/disk_write at sector granularity (pread and
 * pwrite), and every write marks the chunks it touched in a dirty bitmap.
 * A checkpoint takes that bitmap and clears it in one step
 * (disk_take_dirty), while vCPU threads keep writing: a write that lands
 * after the take is marked again and goes in the next checkpoint.  The
 * chunk is 1 MiB because the wire format (QEMU's `block` section,
 * checkpoint/block.h) carries whole 1 MiB chunks: a finer bitmap would
 * not make a package smaller.  docs/disk-format.md has the rules.
 */
#ifndef FTVM_CHECKPOINT_DISK_H
#define FTVM_CHECKPOINT_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DISK_SECTOR_BITS 9
#define DISK_SECTOR_SIZE (1u << DISK_SECTOR_BITS)
#define DISK_CHUNK_BITS 20
#define DISK_CHUNK_SIZE (1u << DISK_CHUNK_BITS)
#define DISK_CHUNK_SECTORS (DISK_CHUNK_SIZE / DISK_SECTOR_SIZE)
/*
 * Largest image: 1 TiB.  Keeps the bitmap (128 KiB) and anything sized
 * from the disk's chunk count small, and sector numbers far inside the
 * wire's 55 bits.
 */
#define DISK_MAX_SIZE (1ull << 40)
#define DISK_NAME_MAX 255

typedef struct disk disk;

/* What `--disk FILE[,readonly]` says. */
typedef struct disk_spec {
    char path[4096];
    bool readonly;
} disk_spec;

/*
 * Parses FILE[,readonly].  FILE must not be empty; the only option is
 * `readonly` (a path with a comma cannot be given).  0, or -EINVAL with
 * the reason in err.
 */
int disk_parse_spec(const char *spec, disk_spec *out, char *err,
                    size_t errlen);

/*
 * Opens the image at path (read-write unless readonly) as device name
 * (1..255 bytes: the name the `block` section carries).  The file must be
 * a regular file whose size is a nonzero multiple of 512 up to
 * DISK_MAX_SIZE.  The image is locked (flock: exclusive, or shared when
 * readonly) while open; -EBUSY when another open holds a conflicting
 * lock.  0, or -errno with the reason (naming the path) in err.
 */
int disk_open(disk **out, const char *path, bool readonly, const char *name,
              char *err, size_t errlen);
void disk_close(disk *d);
/*
 * Opens the image at path read-write, made size bytes first: created
 * (mode 0600) if missing, grown or cut if not that size.  For an image
 * whose every byte is about to be written (a secondary's copy, a
 * restore).  It is locked before it is resized, so an image another
 * process has open is refused untouched (-EBUSY).  Else as disk_open.
 */
int disk_open_resized(disk **out, const char *path, uint64_t size,
                      const char *name, char *err, size_t errlen);

const char *disk_name(const disk *d);
const char *disk_path(const disk *d);
bool disk_readonly(const disk *d);
uint64_t disk_size(const disk *d);        /* bytes */
uint64_t disk_sectors(const disk *d);
uint64_t disk_chunks(const disk *d);      /* the last may be partial */
/* Bytes of chunk c inside the image (DISK_CHUNK_SIZE but for the last). */
uint32_t disk_chunk_len(const disk *d, uint64_t c);

/*
 * Sector I/O.  nsectors may be 0; the range must lie inside the disk
 * (-ERANGE otherwise).  Short transfers are retried; an end of file or
 * a failure is -EIO or the call's -errno.  disk_write on a readonly disk
 * is -EROFS.  A write marks its chunks dirty once its bytes are in the
 * file, so a checkpoint that takes the bit reads them.
 */
int disk_read(disk *d, uint64_t sector, void *buf, uint32_t nsectors);
int disk_write(disk *d, uint64_t sector, const void *buf,
               uint32_t nsectors);
/* fdatasync: what a guest's flush asks for.  0 or -errno. */
int disk_flush(disk *d);

/*
 * Raw byte I/O for the codec: whole chunks at chunk offsets, the part
 * inside the image only.  disk_read_chunk zero-fills buf past the end;
 * disk_write_bytes does not mark anything dirty (a loader writes what a
 * peer sent, not what the guest did).
 */
int disk_read_chunk(disk *d, uint64_t c, void *buf);
int disk_write_bytes(disk *d, uint64_t offset, const void *buf, size_t len);
/*
 * Makes chunk c read as zeros: a punched hole where the file system has
 * them (the image stays sparse), else written zeros.  0 or -errno.
 */
int disk_zero_chunk(disk *d, uint64_t c);

/* ---- dirty tracking (any thread) ---- */

/* Words of unsigned long a bitmap of the disk's chunks needs. */
size_t disk_bitmap_longs(const disk *d);
void disk_mark_dirty(disk *d, uint64_t sector, uint64_t nsectors);
/* Every chunk dirty: the bring-up's first pass copies the whole image. */
void disk_mark_all_dirty(disk *d);
/* ORs bits back (chunks a failed save took but did not send). */
void disk_mark_dirty_bits(disk *d, const unsigned long *bits);
/*
 * Moves the dirty bits into out (disk_bitmap_longs words, overwritten)
 * and clears them, word by word with atomic exchanges.  Returns how many
 * chunks were dirty.
 */
uint64_t disk_take_dirty(disk *d, unsigned long *out);
/*
 * The first dirty chunk at or after `from`, or disk_chunks() when none;
 * and clearing one chunk's bit, returning whether it was set.  Together,
 * a live pass (the bring-up) that sends chunks one at a time while the
 * guest writes: a bit cleared before its chunk is read is set again by
 * any write that lands after, and the chunk goes again.
 */
uint64_t disk_next_dirty(const disk *d, uint64_t from);
bool disk_test_and_clear(disk *d, uint64_t c);
/* Chunks dirty now (a snapshot; writers may be adding to it). */
uint64_t disk_dirty_count(const disk *d);

/* Whether len bytes (any length, any alignment) are all zero. */
bool disk_is_zero(const void *buf, size_t len);

#endif
