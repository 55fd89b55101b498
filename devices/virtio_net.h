/*
 * virtio_net: a VIRTIO 1.0 network device (the spec's 5.1) on the PCI
 * transport (virtio_pci.h): queue 0 receives, queue 1 transmits, no
 * control queue, no offloads.  Features offered: VIRTIO_F_VERSION_1,
 * VIRTIO_NET_F_MAC (the configuration's MAC) and VIRTIO_NET_F_STATUS (the
 * link, always up).  Every frame is preceded in its buffers by the
 * 12-byte virtio_net_hdr (VERSION_1's, num_buffers included): zeros on
 * receive but num_buffers = 1, ignored on transmit (no checksum or
 * segmentation offload was offered, so the guest's frames are complete).
 *
 * Transmit: a kick on queue 1 sends every chain available, each frame
 * through tx() (the VM's transmit hook, which may hold it for output
 * commit); a frame over NET_FRAME_MAX or empty is dropped and counted, its
 * buffer returned as any.  Receive: virtio_net_receive puts one frame in
 * the next buffer chain of queue 0 if the driver posted one; the caller
 * keeps it otherwise (the backend's queue) and tries again when the
 * driver kicks queue 0 (virtio_net_mmio says so).  A queue the driver
 * broke (virtq.h) sets NEEDS_RESET: the device stops until reset.
 *
 * State (virtio_net_desc, "virtio-net" v1): the transport (virtio_pci),
 * the MAC, the counters.  A load refuses driver features beyond those
 * offered and a MAC that is not a unicast address, naming the device.
 *
 * Not thread-safe: the caller serialises (vm/pc.c's lock).
 */
#ifndef FTVM_DEVICES_VIRTIO_NET_H
#define FTVM_DEVICES_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/virtio_pci.h"
#include "devices/virtq.h"
#include "devstate/vmstate.h"

#define VIRTIO_NET_TYPE      1u
#define VIRTIO_NET_HDR_LEN   12u
#define VIRTIO_NET_FRAME_MAX 1514u
#define VIRTIO_NET_RXQ       0u
#define VIRTIO_NET_TXQ       1u
#define VIRTIO_NET_QUEUE_MAX 256u
#define VIRTIO_NET_F_MAC     (1ull << 5)
#define VIRTIO_NET_F_STATUS  (1ull << 16)
#define VIRTIO_NET_FEATURES  (VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC |       \
                              VIRTIO_NET_F_STATUS)

/* Sends one frame; the device does not look at the result. */
typedef int (*virtio_net_tx_fn)(void *opaque, const void *frame, size_t len);

typedef struct virtio_net {
    virtio_pci vp;
    uint8_t mac[6];
    uint64_t tx_frames, tx_dropped, rx_frames, rx_dropped;
    /* Not state: */
    uint8_t config[8];              /* mac, status (link up) */
    virtio_net_tx_fn tx;
    void *tx_opaque;
    char why[192];                  /* why a queue broke, the last time */
} virtio_net;

extern const vmstate_desc virtio_net_desc;

void virtio_net_init(virtio_net *n, const uint8_t mac[6],
                     const virtq_mem *mem, virtio_net_tx_fn tx,
                     void *tx_opaque, virtio_pci_irq_fn irq,
                     void *irq_opaque);
/*
 * A guest's access at off in BAR 0; true when it was a kick of the
 * receive queue (new buffers: the caller delivers what it kept).
 */
bool virtio_net_mmio(virtio_net *n, uint64_t off, bool write, uint8_t *data,
                     unsigned len);
/*
 * Puts one frame into the guest's next receive buffer: 1 delivered, 0 no
 * buffer posted (keep it), -EINVAL too big or empty (dropped, counted),
 * -EPROTO the queue is broken (n->why says how).
 */
int virtio_net_receive(virtio_net *n, const void *frame, size_t len);
/* Whether a receive buffer is posted now (so a frame would go in). */
bool virtio_net_rx_ready(virtio_net *n);
/* After a load into n: the configuration and the line from the state. */
void virtio_net_loaded(virtio_net *n);

#endif
