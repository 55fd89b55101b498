/*
 * virtio_blk: a VIRTIO 1.0 block device (the spec's 5.2) on the PCI
 * transport (virtio_pci.h) over a raw image (checkpoint/disk.h): one
 * request queue, 512-byte sectors.  Features offered: VIRTIO_F_VERSION_1,
 * VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE,
 * VIRTIO_BLK_F_FLUSH, and VIRTIO_BLK_F_RO when the image is readonly.
 * The configuration space (24 bytes, little-endian): capacity in sectors
 * (u64), size_max (u32), seg_max (u32), a zero geometry (4 bytes, not
 * offered), blk_size 512 (u32).
 *
 * A request is a header (u32 type, u32 reserved, u64 sector) in the
 * chain's readable bytes, then the data (readable for OUT, writable for
 * IN and GET_ID), then the status byte: the chain's last writable byte.
 * VIRTIO 1.0 lets the driver split these across descriptors as it likes
 * (no framing is assumed: a header and its data may share one).  Served:
 * IN (pread into the guest's buffers), OUT (pwrite from them, which marks
 * the image's dirty chunks), FLUSH (fdatasync) and GET_ID (20 bytes,
 * VIRTIO_BLK_ID); any other type is answered VIRTIO_BLK_S_UNSUPP.
 * Answered VIRTIO_BLK_S_IOERR: a header shorter than 16 bytes, data not
 * a multiple of 512 bytes or longer than VIRTIO_BLK_REQ_MAX, a sector
 * range past the image's end, an OUT on a readonly image, and an I/O
 * error.  A chain with no writable byte (nowhere to put a status) breaks
 * the queue, as does anything virtq refuses (a buffer not wholly in RAM,
 * a loop, a head past the queue): virtq checks every descriptor before
 * the device sees the chain, so the monitor never touches memory outside
 * RAM, and the device sets NEEDS_RESET and stops until the driver resets.
 *
 * Requests are served synchronously on the vCPU thread of the guest's
 * queue notify, as kvmtool and early Firecracker do: pread/pwrite on a
 * local image, straight between the file and guest RAM (a sector that a
 * descriptor boundary splits goes through a one-sector bounce buffer),
 * completed into the used ring before the interrupt is raised and the
 * notify returns.  So no request is ever in flight when the vCPUs are
 * paused for a checkpoint: the device's state is only its registers.
 * A request's data is at most seg_max (128) segments of size_max
 * (64 KiB) each: VIRTIO_BLK_REQ_MAX, 8 MiB.  The bound is what keeps a
 * vCPU (and so a checkpoint's pause, which waits for every vCPU to leave
 * KVM_RUN) from being held for long by one request; Linux's requests
 * stay under it (128 segments, and its max_sectors default of at most
 * 1280 KiB), and 128 + 2 descriptors fit a 256-entry queue without
 * indirect descriptors.  A notify serves at most a queue's worth of
 * requests; the driver notifies again for what it adds after.
 *
 * State (virtio_blk_desc, "virtio-blk" v1): the transport (virtio_pci)
 * and the request counters.  A load refuses driver features beyond
 * those offered (VIRTIO_BLK_F_RO's presence follows the image), naming
 * the device.
 *
 * Not thread-safe: the caller serialises (vm/pcpci.c's disk lock).
 */
#ifndef FTVM_DEVICES_VIRTIO_BLK_H
#define FTVM_DEVICES_VIRTIO_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/disk.h"
#include "devices/virtio_pci.h"
#include "devices/virtq.h"
#include "devstate/vmstate.h"

#define VIRTIO_BLK_TYPE       2u
#define VIRTIO_BLK_QUEUE_MAX  256u
#define VIRTIO_BLK_HDR_LEN    16u
#define VIRTIO_BLK_SEG_MAX    128u
#define VIRTIO_BLK_SIZE_MAX   (64u * 1024u)
#define VIRTIO_BLK_REQ_MAX    ((uint64_t)VIRTIO_BLK_SEG_MAX *               \
                               VIRTIO_BLK_SIZE_MAX)
#define VIRTIO_BLK_CONFIG_LEN 24u
#define VIRTIO_BLK_ID_BYTES   20u
#define VIRTIO_BLK_ID         "ftvm-disk0"

#define VIRTIO_BLK_F_SIZE_MAX (1ull << 1)
#define VIRTIO_BLK_F_SEG_MAX  (1ull << 2)
#define VIRTIO_BLK_F_RO       (1ull << 5)
#define VIRTIO_BLK_F_BLK_SIZE (1ull << 6)
#define VIRTIO_BLK_F_FLUSH    (1ull << 9)
#define VIRTIO_BLK_FEATURES   (VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_SIZE_MAX | \
                               VIRTIO_BLK_F_SEG_MAX |                       \
                               VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH)

#define VIRTIO_BLK_T_IN     0u
#define VIRTIO_BLK_T_OUT    1u
#define VIRTIO_BLK_T_FLUSH  4u
#define VIRTIO_BLK_T_GET_ID 8u

#define VIRTIO_BLK_S_OK     0u
#define VIRTIO_BLK_S_IOERR  1u
#define VIRTIO_BLK_S_UNSUPP 2u

typedef struct virtio_blk {
    virtio_pci vp;
    uint64_t reads, writes, flushes, errors;    /* requests answered */
    /* Not state: */
    disk *disk;
    uint8_t config[VIRTIO_BLK_CONFIG_LEN];
    uint8_t bounce[DISK_SECTOR_SIZE];
    char why[192];                  /* why a queue broke, the last time */
} virtio_blk;

extern const vmstate_desc virtio_blk_desc;

/*
 * Sets up the device over d (NULL: a device with no image, whose state
 * only is used: a capacity of 0 and every request an I/O error).
 */
void virtio_blk_init(virtio_blk *b, disk *d, const virtq_mem *mem,
                     virtio_pci_irq_fn irq, void *irq_opaque);
/* A guest's access at off in BAR 0 (a notify serves the queue). */
void virtio_blk_mmio(virtio_blk *b, uint64_t off, bool write, uint8_t *data,
                     unsigned len);
/* After a load into b: the configuration and the line from the state. */
void virtio_blk_loaded(virtio_blk *b);

#endif
