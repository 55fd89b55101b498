/*
 * restore: bringing a VM back from a checkpoint file.
 *
 * First the file is probed for the shape of the VM it holds (RAM size,
 * vCPUs, a network device, the machine: a Linux VM's has a "pc" entry;
 * a disk, whose size only its "ftvm-disk" section says, so a VM with a
 * disk has its whole file walked, validated) so that a matching VM can be
 * created; then it
 * is loaded into that VM's registry, validated in full before a byte of
 * the VM changes.  A damaged, truncated or foreign file, or one whose RAM
 * size differs from what the user asked for, is refused before any VM
 * runs.
 */
#ifndef FTVM_VM_RESTORE_H
#define FTVM_VM_RESTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm/vm.h"

typedef struct restore_info {
    uint64_t mem_size;
    unsigned vcpus;
    bool has_net;
    vm_machine machine;     /* VM_MACHINE_PC when it has a "pc" section */
    uint64_t disk_size;     /* its "ftvm-disk"'s, 0 without a disk */
} restore_info;

/* 0, or -errno with a message naming the file and what is wrong. */
int restore_probe(const char *path, restore_info *out, char *err,
                  size_t errlen);
/* Loads path into the paused, never-started v.  0 or -errno + message. */
int restore_load(vm *v, const char *path, char *err, size_t errlen);

#endif
