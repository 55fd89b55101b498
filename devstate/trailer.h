/*
 * trailer: the sections that frame an ftvm checkpoint.
 *
 * QEMU's format has no checksum, so a flipped bit in a page is loaded as
 * guest memory.  ftvm ends every checkpoint (a file, and each replication
 * package) with a device-state section of its own, "ftvm-ckpt", carrying
 * the checkpoint's id and a CRC-32 of every byte of the stream before the
 * section's body; ftvm's loader refuses a checkpoint whose sum does not
 * match, before anything is applied.  A replication package also opens
 * with "ftvm-pkg", saying which checkpoint it is and which one it builds on.
 *
 * Both bodies are described by vmstate tables (trailer.c), which write and
 * read them and produce their VM description entries, so a reader that
 * follows QEMU's rules decodes them field by field like any device.  Byte
 * layouts: docs/stream-format.md, "ftvm's own sections".
 */
#ifndef FTVM_DEVSTATE_TRAILER_H
#define FTVM_DEVSTATE_TRAILER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/pairing.h"
#include "checkpoint/qfile.h"
#include "checkpoint/savevm.h"

#define TRAILER_IDSTR "ftvm-ckpt"
#define TRAILER_VERSION 1u

/* The body of "ftvm-ckpt", in this order, big-endian: u64, u64, u32. */
typedef struct trailer_info {
    uint64_t id;
    uint64_t covered;   /* bytes the sum covers, from the stream's start */
    uint32_t crc;       /* CRC-32 (zlib's) of those bytes */
} trailer_info;

/*
 * Writes the trailer as a FULL section with its footer.  f must have had
 * qfile_crc_start() called at its first byte.  trailer_put_desc() also
 * appends the section's entry to vmdesc_devices (the "devices" array of
 * a VM description) when it is not NULL.
 */
void trailer_put(qfile *f, uint32_t section_id, uint64_t id);
int trailer_put_desc(qfile *f, uint32_t section_id, uint64_t id,
                     json_t *vmdesc_devices);

/*
 * Reads a trailer's body (the loader has read its header) and checks it
 * against f's running sum, which must have started at the stream's first
 * byte.  0, or -EBADMSG / -EINVAL / -ENOTSUP latched on f with a message.
 */
int trailer_load(qfile *f, const savevm_section *sec, trailer_info *out);
/*
 * Where a checkpoint file's trailer must sit (docs/checkpoints.md): as the
 * last record before the stream's EOF byte, which is the byte just before
 * end (the offset of the VM description, or the length of a stream
 * without one).  Nothing may come between the trailer and EOF: state
 * there would be loaded although no sum covers it.  Checks the framing at
 * that place (a FULL "ftvm-ckpt" section, instance 0, version 1, and its
 * footer) and that the sum claims to cover every byte before its body;
 * the sum itself is checked by trailer_load as the stream is read.  Sets
 * *body_at to the body's offset (where a loader calls trailer_load) and
 * *out to the fields.  0, or -EBADMSG with a message naming the byte in
 * err.
 */
#define TRAILER_FILE_BYTES 48u  /* the section, header to footer */
int trailer_find_end(const uint8_t *d, size_t end, trailer_info *out,
                     uint64_t *body_at, char *err, size_t errlen);
/*
 * The offset of that body for a stream whose end is end, or 0 when it is
 * too short to hold a trailer: for a loader that meets a trailer and must
 * tell whether it is the one that ends the stream.
 */
uint64_t trailer_body_at_end(size_t end);

/*
 * Reads a trailer's body without checking the sum: for the apply pass of
 * a package, whose sum its validate pass checked (savevm.h).
 */
int trailer_skip(qfile *f, const savevm_section *sec);

/*
 * The package header: the first section of every replication package.
 * Body, big-endian: u64 checkpoint id, u64 base id (0: the package needs
 * no earlier state, e.g. a full resend), u32 flags (0), 16 bytes pairing
 * id, 64 bytes VM name (NUL-padded), u64 generation: the bring-up's
 * (checkpoint/pairing.h), which the receiver compares.
 */
#define TRAILER_PKG_IDSTR "ftvm-pkg"
#define TRAILER_PKG_VERSION 3u

typedef struct trailer_pkg {
    uint64_t id;
    uint64_t base;
    uint32_t flags;
    pairing pair;
} trailer_pkg;

void trailer_put_pkg(qfile *f, uint32_t section_id, const trailer_pkg *p);
int trailer_load_pkg(qfile *f, const savevm_section *sec, trailer_pkg *out);
/*
 * Appends the entry of "ftvm-pkg" to vmdesc_devices without writing one:
 * a checkpoint file describes the sections of a replication stream of the
 * same VM, which carries no description of its own.  0 or -ENOMEM.
 */
int trailer_describe_pkg(json_t *vmdesc_devices);

#endif
