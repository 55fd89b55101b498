/*
 * bzimage: loading a Linux kernel (bzImage) with the x86 64-bit boot
 * protocol (Linux's Documentation/x86/boot.rst), and the state its vCPU 0
 * enters it in.  Why this entry and not PVH: docs/linux-guests.md.
 *
 * The protected-mode kernel (the file after its real-mode setup sectors)
 * is loaded at BZIMAGE_KERNEL_ADDR and entered at its 64-bit entry, 0x200
 * further, in long mode, with rsi pointing at the "zero page"
 * (struct boot_params): the file's setup header, the command line's
 * address, the initrd's address and size, and an e820 memory map.  The
 * page tables identity-map the first 4 GiB in 2 MiB pages; the GDT has
 * the flat code (0x10) and data (0x18) segments the protocol names.
 *
 * Guest-physical layout below 1 MiB:
 *   0x0500 GDT          0x7000 zero page      0x9000 PML4
 *   0xa000 PDPT         0xb000..0xefff PDs    0x20000 command line
 *   0x9fc00..0xfffff reserved in the e820 map (the MP table lives there)
 * The initrd goes as high as the kernel allows, page-aligned.
 */
#ifndef FTVM_VM_BZIMAGE_H
#define FTVM_VM_BZIMAGE_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#include "vm/gmem.h"

#define BZIMAGE_KERNEL_ADDR   0x100000u
#define BZIMAGE_ZERO_PAGE     0x7000u
#define BZIMAGE_CMDLINE       0x20000u
#define BZIMAGE_CMDLINE_MAX   0x10000u      /* NUL included */
#define BZIMAGE_RESERVED_LOW  0x9fc00u      /* up to 1 MiB */
/* Files larger than this are no kernel we boot. */
#define BZIMAGE_FILE_MAX      (256u << 20)
/* RAM a Linux guest may have: below the 32-bit PCI/APIC hole. */
#define BZIMAGE_MAX_MEM       (3ull << 30)

typedef struct bzimage_boot {
    const char *kernel;         /* path of the bzImage */
    const char *initrd;         /* path, or NULL */
    const char *cmdline;
} bzimage_boot;

/*
 * Loads b into g (RAM of mem_size bytes at 0) and fills regs and sregs
 * (as KVM_GET_SREGS gave them) for vCPU 0's entry.  0, or -errno with a
 * message naming the file and what is wrong with it.
 */
int bzimage_load(gmem *g, uint64_t mem_size, const bzimage_boot *b,
                 struct kvm_regs *regs, struct kvm_sregs *sregs, char *err,
                 size_t errlen);

#endif
