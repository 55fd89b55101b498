/*
 * boot: the machine state a guest starts in, built by the monitor.
 *
 * Guests run at privilege level 3 (docs/hypercall-abi.md says why), so the
 * monitor does what a kernel would: identity page tables over all RAM in
 * 2 MiB pages, a GDT with user segments, a TSS whose I/O permission bitmap
 * opens every port (some nested hypervisors ignore IOPL for the guest's
 * user mode, the bitmap they honour), and an IDT whose exception handlers
 * report the exception to the monitor through BOOT_EXC_PORT.  All of it
 * sits below BOOT_IMAGE_BASE, where guests never load.
 */
#ifndef FTVM_VM_BOOT_H
#define FTVM_VM_BOOT_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm/elfload.h"
#include "vm/gmem.h"

/* Guest-physical layout of the first MiB. */
#define BOOT_GDT            0x1000u
#define BOOT_IDT            0x1800u
#define BOOT_TSS            0x2000u     /* 104 bytes + I/O bitmap + 0xff */
#define BOOT_EXC_STUBS      0x5000u     /* 16 bytes per vector */
#define BOOT_INFO           0x6000u
#define BOOT_CMDLINE        0x7000u
#define BOOT_EXC_STACK_TOP  0x10000u    /* privilege level 0 stack */
#define BOOT_PML4           0x10000u
#define BOOT_PDPT           0x11000u
#define BOOT_PD             0x12000u    /* one page per GiB of RAM */
#define BOOT_IMAGE_BASE     0x100000u

#define BOOT_CMDLINE_MAX    4096u       /* NUL included */
#define BOOT_STACK_RESERVE  (64u * 1024)
/*
 * The initial stack ends at the top of RAM or at 4 GiB, whichever is
 * lower: hypercalls pass 32-bit struct addresses, and guests keep their
 * argument structs on the stack.
 */
#define BOOT_STACK_TOP_MAX  (4ull << 30)
#define BOOT_MIN_MEM        (4ull << 20)
#define BOOT_MAX_MEM        (64ull << 30)
#define BOOT_MEM_ALIGN      (2ull << 20)

/* Where the exception handlers report: eax = vector, at level 0 only. */
#define BOOT_EXC_PORT       0x4f0u
#define BOOT_EXC_VECTORS    32u

/* Selectors the guest runs with. */
#define BOOT_SEL_KCODE      0x08u
#define BOOT_SEL_UDATA      0x23u
#define BOOT_SEL_UCODE      0x2bu
#define BOOT_SEL_TSS        0x30u

/* Where the initial stack of a guest with mem_size bytes of RAM ends. */
uint64_t boot_stack_top(uint64_t mem_size);

/*
 * Writes the tables, the boot info and the command line into g (RAM of
 * mem_size bytes at address 0) and sets the registers for entry at
 * img->entry.  sregs comes in as KVM_GET_SREGS gave it (APIC base and the
 * like are kept).  0, or -errno with a message (a command line too long).
 */
int boot_setup(gmem *g, uint64_t mem_size, const elfload_image *img,
               const char *cmdline, bool nx, struct kvm_regs *regs,
               struct kvm_sregs *sregs, char *err, size_t errlen);

/*
 * Describes the exception a handler reported (vector in eax, the CPU's
 * frame on the level-0 stack at regs->rsp) for a person:
 * "CPU exception #PF (page fault) at rip 0x..., error code 0x6, address
 * 0x...".  The frame is guest memory and checked like any other.
 */
void boot_describe_exception(const gmem *g, const struct kvm_regs *regs,
                             const struct kvm_sregs *sregs, char *msg,
                             size_t msglen);

#endif
