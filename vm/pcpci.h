/*
 * pcpci: the PC's PCI bus, present when a Linux VM has a network device
 * or a disk: configuration mechanism #1 on ports 0xcf8/0xcfc, a host
 * bridge at 00:00.0, a virtio-net function at 00:01.0
 * (devices/virtio_net.h) with --net and a virtio-blk function at 00:02.0
 * (devices/virtio_blk.h) with --disk.  The "firmware" (this module)
 * places their BAR 0s in the MMIO window above the 3 GiB of RAM and below
 * the I/O APIC, virtio-net's at PCPCI_NET_BAR and virtio-blk's right
 * after it at PCPCI_BLK_BAR (fixed, whichever is present), and wires
 * their INTA# to I/O APIC pins PCPCI_NET_IRQ and PCPCI_BLK_IRQ (the MP
 * table says so; KVM_IRQ_LINE drives them, level-triggered).  Why PCI
 * and not virtio-mmio: docs/linux-guests.md.
 *
 * Transmit runs on the vCPU thread of the guest's kick and never waits:
 * each frame goes to tx(), the VM's transmit hook (output commit on a
 * primary), called with this module's lock held: it must not wait, nor
 * call back into the machine.  Receive: frames the backend queued
 * (net_dev) go into the guest's receive buffers when the loop's notify
 * calls pcpci_rx, or when the guest posts buffers; what finds none stays
 * queued in the net_dev.  Between a pause's state fetch and the resume
 * nothing is delivered, so a checkpoint's RAM and queue indices agree.
 *
 * Disk requests are served on the vCPU thread of the guest's notify,
 * pread/pwrite on the image (virtio_blk.h), under a lock of their own:
 * the loop delivering frames never waits for the disk.  They complete
 * before the notify returns, so a pause finds none in flight.
 *
 * State ("pci" v2, pcpci_state_desc): the address register, the
 * bridge's and the virtio-net function's (virtio_net_desc, its reset
 * state when the VM has no network device), since v2 whether the
 * network device is present (u8), and, only when the VM has a disk, the
 * subsection "pci/virtio-blk" (v1): the disk's size in sectors (u64) and
 * the virtio-blk function (virtio_blk_desc).  A v1 stream (a network
 * device, no disk) still loads.  A load refuses, naming the device, a
 * stream whose network device or disk presence differs from the VM's, a
 * disk of another size, a BAR inside RAM or over the I/O APIC and an
 * enabled queue whose rings are not in RAM, on top of each part's own
 * checks.  docs/linux-guests.md has the layout.
 *
 * Locks: the bus's (configuration, virtio-net; the vCPU threads and the
 * loop reach it) and the disk's (virtio-blk; vCPU threads), taken in
 * that order when both are.
 */
#ifndef FTVM_VM_PCPCI_H
#define FTVM_VM_PCPCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/disk.h"
#include "devstate/vmstate.h"
#include "vm/gmem.h"
#include "vm/kvm.h"
#include "vm/net.h"

#define PCPCI_MMIO_BASE 0xe0000000u
#define PCPCI_NET_SLOT  1u
#define PCPCI_NET_IRQ   16u
#define PCPCI_NET_BAR   PCPCI_MMIO_BASE
#define PCPCI_BLK_SLOT  2u
#define PCPCI_BLK_IRQ   17u
#define PCPCI_BLK_BAR   (PCPCI_MMIO_BASE + 0x4000u)    /* after net's 16 KiB */

typedef int (*pcpci_tx_fn)(void *opaque, const void *frame, size_t len);

typedef struct pcpci pcpci;

/* The bus with its host bridge; the devices come with the next two. */
int pcpci_create(pcpci **out, kvm_vm *k, gmem *g, char *err, size_t errlen);
void pcpci_free(pcpci *p);
/* virtio-net at 00:01.0; before the vCPUs run.  0 or -errno. */
int pcpci_add_net(pcpci *p, net_dev *net, const uint8_t mac[6],
                  pcpci_tx_fn tx, void *tx_opaque, char *err, size_t errlen);
/* virtio-blk at 00:02.0 over d; before the vCPUs run.  0 or -errno. */
int pcpci_add_blk(pcpci *p, disk *d, char *err, size_t errlen);
bool pcpci_has_net(const pcpci *p);
bool pcpci_has_blk(const pcpci *p);

/* A port exit; false if the port is not the bus's. */
bool pcpci_io(pcpci *p, uint16_t port, bool out, uint8_t *data,
              unsigned size);
/* An MMIO exit; false if addr is in no BAR. */
bool pcpci_mmio(pcpci *p, uint64_t addr, bool write, uint8_t *data,
                unsigned len);
/* Delivers the frames the backend queued, as far as buffers allow. */
void pcpci_rx(pcpci *p);

extern const vmstate_desc pcpci_state_desc;
void *pcpci_state_obj(pcpci *p);
/* The live state into the copy; stops delivery until pcpci_thaw. */
void pcpci_state_fetch(pcpci *p);
bool pcpci_state_loaded(const pcpci *p);
/* A loaded copy into the devices; the line to its saved level. */
void pcpci_state_push(pcpci *p);
/* Delivery goes on (and catches up) after a pause. */
void pcpci_thaw(pcpci *p);

#endif
