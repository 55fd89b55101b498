/*
 * pcpci: the PC's PCI bus, present when a Linux VM has a network device:
 * configuration mechanism #1 on ports 0xcf8/0xcfc, a host bridge at
 * 00:00.0 and a virtio-net function at 00:01.0 (devices/virtio_net.h)
 * whose BAR 0 the "firmware" (this module) places at PCPCI_MMIO_BASE,
 * above the 3 GiB of RAM and below the I/O APIC, and whose INTA# is I/O
 * APIC pin PCPCI_IRQ (the MP table says so; KVM_IRQ_LINE drives it, level-
 * triggered).  Why PCI and not virtio-mmio: docs/linux-guests.md.
 *
 * Transmit runs on the vCPU thread of the guest's kick and never waits:
 * each frame goes to tx(), the VM's transmit hook (output commit on a
 * primary), called with this module's lock held: it must not wait, nor
 * call back into the machine.  Receive: frames the backend queued (net_dev) go into the
 * guest's receive buffers when the loop's notify calls pcpci_rx, or when
 * the guest posts buffers; what finds none stays queued in the net_dev.
 * Between a pause's state fetch and the resume nothing is delivered, so
 * a checkpoint's RAM and queue indices agree.
 *
 * State ("pci" v1, pcpci_state_desc): the address register, the bridge's
 * and the virtio-net function's (virtio_net_desc).  A load refuses, naming
 * virtio-net, a BAR inside RAM or over the I/O APIC and an enabled queue
 * whose rings are not in RAM, on top of each part's own checks.
 *
 * Its own lock: the vCPU threads (port and MMIO exits) and the loop
 * (received frames) both reach it.
 */
#ifndef FTVM_VM_PCPCI_H
#define FTVM_VM_PCPCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devstate/vmstate.h"
#include "vm/gmem.h"
#include "vm/kvm.h"
#include "vm/net.h"

#define PCPCI_MMIO_BASE 0xe0000000u
#define PCPCI_NET_SLOT  1u
#define PCPCI_IRQ       16u

typedef int (*pcpci_tx_fn)(void *opaque, const void *frame, size_t len);

typedef struct pcpci pcpci;

int pcpci_create(pcpci **out, kvm_vm *k, gmem *g, net_dev *net,
                 const uint8_t mac[6], pcpci_tx_fn tx, void *tx_opaque,
                 char *err, size_t errlen);
void pcpci_free(pcpci *p);

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
