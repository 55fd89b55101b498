/*
 * vmshape: what a VM is made of (RAM size, vCPUs, a network device and its
 * MAC), as the "ftvm-vm" section a primary sends first, so a secondary can
 * create a VM of the same shape before any state arrives.
 *
 * Body (big-endian): u64 RAM bytes, u32 vCPUs, u8 has a network device,
 * 6 bytes MAC.  FULL section, instance 0, version 1.
 */
#ifndef FTVM_VM_VMSHAPE_H
#define FTVM_VM_VMSHAPE_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/qfile.h"
#include "checkpoint/savevm.h"

#define VMSHAPE_IDSTR "ftvm-vm"
#define VMSHAPE_VERSION 1u

typedef struct vmshape {
    uint64_t mem_size;
    uint32_t vcpus;
    bool has_net;
    uint8_t mac[6];
} vmshape;

void vmshape_put(qfile *f, uint32_t section_id, const vmshape *s);
/* Reads the body and checks it (sizes a VM can have); 0 or -errno. */
int vmshape_load(qfile *f, const savevm_section *sec, vmshape *out);

#endif
