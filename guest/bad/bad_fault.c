/*
 * bad_fault: the guest crashes itself, so the monitor sees a dead vCPU.
 *
 * Arguments: attempt=NAME runs one attempt (default: all, in order; the
 * first stops the VM).  There is no guest IDT, so any exception ends in a
 * triple fault (KVM_EXIT_SHUTDOWN) unless the monitor catches it sooner;
 * an access to memory with no RAM behind it may instead reach the monitor
 * as an MMIO exit.  Each should stop the VM with a message, never the host.
 * Attempts:
 *   pagefault     write to 0x400000000000, far above any mapping (#PF)
 *   beyond-ram    read the first byte past the end of RAM
 *   noncanonical  read 0x8000000000000000 (#GP)
 *   hlt           hlt at privilege level 3 (#GP)
 *   cr3           mov %cr3 at privilege level 3 (#GP)
 *   wrmsr         wrmsr at privilege level 3 (#GP)
 *   ud2           an undefined instruction (#UD)
 *   int3          a breakpoint (#BP)
 *   divide        divide by zero (#DE)
 * Output: "bad_fault attempt=NAME expect=stop" before the fault; if the
 * guest survives, "... survived" and exit status 3.
 *
 * The only image with privileged instructions in it: they are the point.
 */
#include "attempts.h"

static int64_t read_at(uint64_t addr)
{
    return *(volatile uint8_t *)(uintptr_t)addr;
}

static int64_t pagefault(void)
{
    *(volatile uint64_t *)(uintptr_t)0x400000000000ull = 1;
    return 0;
}

static int64_t beyond_ram(void)
{
    return read_at(ram_end());
}

static int64_t noncanonical(void)
{
    return read_at(0x8000000000000000ull);
}

static int64_t hlt(void)
{
    __asm__ volatile("hlt");
    return 0;
}

static int64_t cr3(void)
{
    uint64_t v;

    __asm__ volatile("mov %%cr3, %0" : "=r"(v));
    return (int64_t)v;
}

static int64_t wrmsr(void)
{
    /* IA32_TIME_STAMP_COUNTER: a valid MSR, so only privilege faults. */
    __asm__ volatile("wrmsr" : : "c"(0x10), "a"(0), "d"(0));
    return 0;
}

static int64_t ud2(void)
{
    __asm__ volatile("ud2");
    return 0;
}

static int64_t int3(void)
{
    __asm__ volatile("int3");
    return 0;
}

static int64_t divide(void)
{
    volatile uint64_t zero = 0;
    uint64_t q = 1;

    /* In assembly: C division by zero is undefined, gcc could drop it. */
    __asm__ volatile("xor %%edx, %%edx\n\tdivq %1"
                     : "+a"(q) : "r"(zero) : "rdx");
    return (int64_t)q;
}

int main(int argc, char **argv)
{
    static const struct attempt list[] = {
        { "pagefault", pagefault, true },
        { "beyond-ram", beyond_ram, true },
        { "noncanonical", noncanonical, true },
        { "hlt", hlt, true },
        { "cr3", cr3, true },
        { "wrmsr", wrmsr, true },
        { "ud2", ud2, true },
        { "int3", int3, true },
        { "divide", divide, true },
    };

    return attempts_run(argc, argv, list, FTVM_ARRAY_SIZE(list));
}
