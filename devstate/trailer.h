/*
 * trailer: the section that seals an ftvm checkpoint.
 *
 * The reference format has no checksum, so a flipped bit in a page is
 * loaded as guest memory.  ftvm ends every checkpoint (a file, and later
 * each replication package) with a device-state section of its own,
 * "ftvm-ckpt", carrying the checkpoint's id and a CRC-32 of every byte of
 * the stream before the section's body.  A reader of the reference format
 * sees one more device section; ftvm's loader refuses a checkpoint whose
 * sum does not match, before anything is applied.
 *
 * Body (big-endian): u64 checkpoint id, u64 bytes covered, u32 CRC-32.
 */
#ifndef FTVM_CHECKPOINT_TRAILER_H
#define FTVM_CHECKPOINT_TRAILER_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/qfile.h"
#include "checkpoint/savevm.h"

#define TRAILER_IDSTR "ftvm-ckpt"
#define TRAILER_VERSION 1u

typedef struct trailer_info {
    uint64_t id;
    uint64_t covered;   /* bytes the sum covers, from the stream's start */
    uint32_t crc;
} trailer_info;

/*
 * Writes the trailer as a FULL section with its footer.  f must have had
 * qfile_crc_start() called at its first byte.
 */
void trailer_put(qfile *f, uint32_t section_id, uint64_t id);

/*
 * Reads a trailer's body (the loader has read its header) and checks it
 * against f's running sum, which must have started at the stream's first
 * byte.  0, or -EBADMSG / -EINVAL latched on f with a message.
 */
int trailer_load(qfile *f, const savevm_section *sec, trailer_info *out);
/*
 * Reads a trailer's body without checking the sum: for the apply pass of
 * a package, whose sum its validate pass checked (savevm.h).
 */
int trailer_skip(qfile *f, const savevm_section *sec);

/*
 * The package header: the first section of every replication package,
 * "ftvm-pkg", saying which checkpoint it is and which one it builds on, so
 * a receiver never applies a package on top of the wrong state.
 *
 * Body (big-endian): u64 checkpoint id, u64 base id (0: the package needs
 * no earlier state, e.g. a full resend), u32 flags (0).
 */
#define TRAILER_PKG_IDSTR "ftvm-pkg"
#define TRAILER_PKG_VERSION 1u

typedef struct trailer_pkg {
    uint64_t id;
    uint64_t base;
    uint32_t flags;
} trailer_pkg;

void trailer_put_pkg(qfile *f, uint32_t section_id, const trailer_pkg *p);
int trailer_load_pkg(qfile *f, const savevm_section *sec, trailer_pkg *out);

#endif
