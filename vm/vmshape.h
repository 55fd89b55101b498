/*
 * vmshape: what a VM is made of (RAM size, vCPUs, a network device and its
 * MAC), as the "ftvm-vm" section a primary sends first, so a secondary can
 * create a VM of the same shape before any state arrives.
 *
 * Body (big-endian): u64 RAM bytes, u32 vCPUs, bool (one byte, 0 or 1)
 * has a network device, 6 bytes MAC, 16 bytes pairing id, 64 bytes VM
 * name (NUL-padded), u64 generation (checkpoint/pairing.h), u8 machine
 * (0 a freestanding guest, 1 a Linux guest's PC: vm_machine), u64 disk
 * bytes (0: no disk; else the "block" section's disk VM_DISK_NAME, a
 * multiple of 512 up to DISK_MAX_SIZE).  FULL section, instance 0,
 * version 6 (5 had no disk, 4 no machine: a secondary of 6 refuses
 * them, as one of 5 refuses 6; a primary of 4 or later
 * ends a live secondary with "ftvm-drop" and reads REFUSE), written and read
 * through a vmstate table that also gives its VM description entry
 * (docs/stream-format.md, "ftvm's own sections").
 */
#ifndef FTVM_VM_VMSHAPE_H
#define FTVM_VM_VMSHAPE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/pairing.h"
#include "checkpoint/qfile.h"
#include "checkpoint/savevm.h"

#define VMSHAPE_IDSTR "ftvm-vm"
#define VMSHAPE_VERSION 6u

typedef struct vmshape {
    uint64_t mem_size;
    uint32_t vcpus;
    bool has_net;
    uint8_t mac[6];
    pairing pair;           /* the bring-up's: every package carries it */
    uint8_t machine;        /* a vm_machine, one byte on the wire */
    uint64_t disk_size;     /* the disk's bytes; 0: none */
} vmshape;

void vmshape_put(qfile *f, uint32_t section_id, const vmshape *s);
/*
 * Appends the entry of "ftvm-vm" to vmdesc_devices without writing one:
 * a checkpoint file describes the sections of a replication stream of the
 * same VM, which carries no description of its own.  0 or -ENOMEM.
 */
int vmshape_describe(json_t *vmdesc_devices);
/*
 * Reads the body and checks it (sizes a VM can have, a key-safe name);
 * 0 or -errno.
 */
int vmshape_load(qfile *f, const savevm_section *sec, vmshape *out);

/*
 * The most a replication package of a VM of this shape can hold: every
 * page of RAM with its record header (a zlib page can come out a little
 * larger than the page), plus a bound for device state per vCPU and for
 * the devices (the network device's queue of received frames), and the
 * disk's chunks with their headers (a package may carry each once).  Far
 * above what a package needs; its point is that a peer's length prefix
 * cannot make the receiver stage more than the VM could ever send.
 */
uint64_t vmshape_package_bound(const vmshape *s);

#endif
