/*
 * virtio_pci: the VIRTIO 1.0 PCI transport, modern only (the spec's
 * 4.1): a PCI function (vendor 0x1af4, device 0x1040 + the device type,
 * revision 1) whose BAR 0 holds the four regions its vendor capabilities
 * point to:
 *
 *   0x0000  common configuration (0x38 bytes: features, status, queues)
 *   0x1000  ISR status (1 byte; reading it clears it and lowers INTx)
 *   0x2000  device configuration (the device's bytes, read-only here)
 *   0x3000  notifications (queue n at n * 4: the device's kick)
 *
 * No MSI-X: the interrupt is INTx# (pin A), level-triggered, raised while
 * the ISR has a bit set (the command register's INTx disable is kept but
 * not obeyed: only a driver using MSI sets it); msix_config and queue_msix_vector read 0xffff
 * (no vector) whatever is written.  Only the 32-bit little-endian accesses
 * a driver makes are decoded; other sizes read zeros and write nothing.
 *
 * The device (virtio_net) embeds this and supplies its features, its
 * configuration bytes and a notify function; the transport owns the
 * queues' configuration and the status, and resets the queues when the
 * driver writes status 0.
 *
 * State (virtio_pci_desc, "virtio-pci" v1): the PCI function, the feature
 * selectors, the driver's features, status, config generation, queue
 * select, the ISR, the interrupt line's level and each queue (virtq).  A
 * load refuses status bits outside VIRTIO 1.0's, driver features the
 * device does not offer, a queue select past the queues, a queue larger
 * than the device's maximum and virtq_check_state's refusals, each named
 * after the device; the machine checks ring addresses against RAM.
 *
 * Not thread-safe: the caller serialises (vm/pc.c's lock).
 */
#ifndef FTVM_DEVICES_VIRTIO_PCI_H
#define FTVM_DEVICES_VIRTIO_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/pci.h"
#include "devices/virtq.h"
#include "devstate/vmstate.h"

#define VIRTIO_PCI_BAR_SIZE   0x4000u
#define VIRTIO_PCI_COMMON     0x0000u
#define VIRTIO_PCI_ISR        0x1000u
#define VIRTIO_PCI_DEVCFG     0x2000u
#define VIRTIO_PCI_NOTIFY     0x3000u
#define VIRTIO_PCI_MAX_QUEUES 2u
#define VIRTIO_PCI_CAPS_LEN   (4 * 16 + 4)

#define VIRTIO_F_VERSION_1    (1ull << 32)

#define VIRTIO_STATUS_ACKNOWLEDGE 1u
#define VIRTIO_STATUS_DRIVER      2u
#define VIRTIO_STATUS_DRIVER_OK   4u
#define VIRTIO_STATUS_FEATURES_OK 8u
#define VIRTIO_STATUS_NEEDS_RESET 0x40u
#define VIRTIO_STATUS_FAILED      0x80u

#define VIRTIO_ISR_QUEUE  1u
#define VIRTIO_ISR_CONFIG 2u

typedef void (*virtio_pci_irq_fn)(void *opaque, bool level);
/* The driver kicked queue q. */
typedef void (*virtio_pci_notify_fn)(void *opaque, unsigned q);

typedef struct virtio_pci {
    pci_func pci;
    uint32_t dfselect, gfselect;
    uint64_t driver_features;
    uint8_t status;
    uint8_t config_generation;
    uint16_t queue_select;
    uint8_t isr;
    bool level;                     /* what irq() was last told */
    virtq q[VIRTIO_PCI_MAX_QUEUES];
    /* Not state: */
    const char *name;
    pci_ident ident;
    uint8_t caps[VIRTIO_PCI_CAPS_LEN];
    uint64_t device_features;
    unsigned nqueues;
    uint16_t queue_max;
    const uint8_t *devcfg;          /* the device's configuration bytes */
    size_t devcfg_len;
    virtio_pci_notify_fn notify;
    void *notify_opaque;
    virtio_pci_irq_fn irq;
    void *irq_opaque;
    virtq_mem mem;
} virtio_pci;

extern const vmstate_desc virtio_pci_desc;

/*
 * Sets up a device named name (in refusals) of virtio type `type` (1: network) and PCI class
 * class_code with nqueues queues of up to queue_max entries each.
 */
void virtio_pci_init(virtio_pci *v, const char *name, uint16_t type,
                     uint32_t class_code,
                     uint64_t features, unsigned nqueues, uint16_t queue_max,
                     const uint8_t *devcfg, size_t devcfg_len,
                     const virtq_mem *mem);
/* A guest's access at off in BAR 0 (len 1, 2, 4 or 8). */
void virtio_pci_mmio(virtio_pci *v, uint64_t off, bool write, uint8_t *data,
                     unsigned len);
/* Whether the driver is running (DRIVER_OK, no NEEDS_RESET or FAILED). */
bool virtio_pci_live(const virtio_pci *v);
/* Queue q, if the driver enabled it and the device is live; else NULL. */
virtq *virtio_pci_queue(virtio_pci *v, unsigned q);
/* Sets ISR bits and raises the line. */
void virtio_pci_interrupt(virtio_pci *v, uint8_t isr_bits);
/* The driver broke a queue's rules: needs a reset (the spec's 2.1.2). */
void virtio_pci_broken(virtio_pci *v);
/* Drives the line to the level the state says (after a load). */
void virtio_pci_sync_irq(virtio_pci *v);

#endif
