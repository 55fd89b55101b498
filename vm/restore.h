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
 * runs.  A file whose disk is a delta on earlier files of its directory
 * (docs/checkpoints.md, "Disks: chains of files") needs them: they are
 * found and probed the same way (restore_chain_find) before the image is
 * created, and their chunks written into it (restore_chain_write) before
 * the file itself is loaded.
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
    /* Its place in a chain of files (zero ids, "": the whole image). */
    uint8_t disk_id[VM_DISK_ID_LEN];
    uint8_t disk_base_id[VM_DISK_ID_LEN];
    char disk_base[VM_DISK_BASE_LEN];
} restore_info;

/*
 * A file whose disk is a delta (docs/checkpoints.md, "Disks") needs its
 * bases, in its directory, back to a whole image.  The chain, root
 * first, the file itself last.
 */
typedef struct restore_chain {
    size_t n;
    char (*paths)[4096];
} restore_chain;

/* 0, or -errno with a message naming the file and what is wrong. */
int restore_probe(const char *path, restore_info *out, char *err,
                  size_t errlen);
/*
 * The chain of path (probed as info): each base found by name beside it,
 * probed in full (its checksum too), its id the one the file after it
 * names, its disk of the same size; a cycle or more than
 * VM_DISK_CHAIN_MAX files refused.  Nothing is written.  0, or -errno
 * with a message naming the missing or mismatching file.  A whole file
 * is a chain of one.
 */
int restore_chain_find(const char *path, const restore_info *info,
                       restore_chain *out, char *err, size_t errlen);
void restore_chain_free(restore_chain *c);
/*
 * Writes into d the chunks of every file of c but the last, root first
 * (the last is restore_load's).  0, or -errno with a message.
 */
int restore_chain_write(disk *d, const restore_chain *c, char *err,
                        size_t errlen);
/* Loads path into the paused, never-started v.  0 or -errno + message. */
int restore_load(vm *v, const char *path, char *err, size_t errlen);

#endif
