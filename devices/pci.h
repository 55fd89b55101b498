/*
 * pci: a minimal conventional PCI bus 0 behind configuration mechanism #1
 * (the address register at 0xcf8, the data window at 0xcfc-0xcff), and
 * the type-0 configuration header of its functions.
 *
 * A function is its identity (pci_ident: ids, class, interrupt pin, one
 * 32-bit memory BAR of a power-of-two size, a capability list placed at
 * 0x40) and its state (pci_func: the command register, BAR 0's address,
 * the interrupt line register).  Everything else reads as its identity
 * says or as zero; writes to read-only registers are lost.  BAR 0 sizes
 * as hardware does (all ones written, ~(size - 1) read back).
 *
 * State: pci_func_desc ("pci-func" v1: command, BAR 0, interrupt line;
 * a load refuses command bits a function does not implement and a BAR
 * not aligned to its size) and pci_host_desc ("pci-host" v1: the address
 * register, so a guest paused between the two halves of an access
 * finishes it).
 *
 * Not thread-safe: the caller serialises (vm/pc.c's lock).
 */
#ifndef FTVM_DEVICES_PCI_H
#define FTVM_DEVICES_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devstate/vmstate.h"

#define PCI_CONFIG_ADDRESS 0xcf8u
#define PCI_CONFIG_DATA    0xcfcu
#define PCI_SLOTS          32u
#define PCI_CAP_START      0x40u

#define PCI_COMMAND_IO     0x0001u
#define PCI_COMMAND_MEMORY 0x0002u
#define PCI_COMMAND_MASTER 0x0004u
#define PCI_COMMAND_INTX_DISABLE 0x0400u

typedef struct pci_ident {
    uint16_t vendor, device, subsys_vendor, subsys;
    uint8_t revision;
    uint32_t class_code;            /* base << 16 | sub << 8 | prog-if */
    uint8_t int_pin;                /* 0 none, 1 INTA# */
    uint32_t bar0_size;             /* 0: no BAR; else a power of two */
    const uint8_t *caps;            /* the capability list, at 0x40 */
    size_t caps_len;                /* <= 256 - 0x40 */
} pci_ident;

typedef struct pci_func {
    uint16_t command;
    uint32_t bar0;                  /* address bits only */
    uint8_t int_line;
    const pci_ident *id;            /* not state */
} pci_func;

typedef struct pci_host {
    uint32_t address;               /* 0xcf8 as last written */
    pci_func *slot[PCI_SLOTS];      /* function 0 of each device; not state */
} pci_host;

extern const vmstate_desc pci_func_desc;
extern const vmstate_desc pci_host_desc;

void pci_func_init(pci_func *f, const pci_ident *id);
/* A configuration read of size 1, 2 or 4 at off (aligned to size). */
uint32_t pci_func_read(const pci_func *f, unsigned off, unsigned size);
void pci_func_write(pci_func *f, unsigned off, unsigned size, uint32_t val);
/*
 * Whether the guest-physical addr falls in f's BAR 0 with memory decoding
 * on; *off then is the offset in the BAR.
 */
bool pci_func_mmio(const pci_func *f, uint64_t addr, uint64_t *off);

void pci_host_init(pci_host *h);
/* Whether port is mechanism #1's (0xcf8 as a dword, 0xcfc..0xcff). */
bool pci_host_claims(uint16_t port, unsigned size);
/* A guest's in or out on a port pci_host_claims. */
void pci_host_io(pci_host *h, uint16_t port, bool out, uint8_t *data,
                 unsigned size);

#endif
