/*
 * bad_number: port I/O to ports and in sizes that are not hypercalls.
 *
 * Arguments: attempt=NAME runs one attempt (default: all, in order).
 * Each out passes the address of a valid console struct whose ret holds a
 * marker, so the output shows whether the monitor wrote an answer
 * ("ret=-2 (EINVAL)") or left the struct alone ("ret=untouched").
 * Attempts:
 *   nr-zero      outl to FTVM_HC_PORT_BASE + 0
 *   nr-max       outl to FTVM_HC_PORT_BASE + FTVM_HC_MAX
 *   nr-99        outl to FTVM_HC_PORT_BASE + 99
 *   below-base   outl to FTVM_HC_PORT_BASE - 1
 *   serial       outl to 0x3f8 (COM1, which ftvm does not emulate)
 *   outb         outb (1 byte) to the console port
 *   outw         outw (2 bytes) to the console port
 *   inl          inl from the console port; ret is the value read
 * The monitor may refuse these by stopping the VM instead: then the last
 * line is "bad_number attempt=NAME" with no ret line after it.
 * Output: as bad_pointer; "bad_number done" and status 0 at the end.
 */
#include "attempts.h"

#define CONSOLE_PORT (FTVM_HC_PORT_BASE + FTVM_HC_CONSOLE)

static const char msg[] = "bad_number: this should not be printed\n";
static struct ftvm_hc_console arg;

static uint32_t prepared(void)
{
    arg.data = (uint64_t)(uintptr_t)msg;
    arg.len = sizeof(msg) - 1;
    arg.ret = ATTEMPT_UNTOUCHED;
    return (uint32_t)(uintptr_t)&arg;
}

static int64_t out_port(uint16_t port)
{
    ftvm_hypercall_port(port, prepared());
    return arg.ret;
}

static int64_t nr_zero(void)
{
    return out_port(FTVM_HC_PORT_BASE);
}

static int64_t nr_max(void)
{
    return out_port(FTVM_HC_PORT_BASE + FTVM_HC_MAX);
}

static int64_t nr_99(void)
{
    return out_port(FTVM_HC_PORT_BASE + 99);
}

static int64_t below_base(void)
{
    return out_port(FTVM_HC_PORT_BASE - 1);
}

static int64_t serial(void)
{
    return out_port(0x3f8);
}

static int64_t outb(void)
{
    uint8_t v = (uint8_t)prepared();

    __asm__ volatile("outb %0, %1"
                     : : "a"(v), "Nd"((uint16_t)CONSOLE_PORT) : "memory");
    return arg.ret;
}

static int64_t outw(void)
{
    uint16_t v = (uint16_t)prepared();

    __asm__ volatile("outw %0, %1"
                     : : "a"(v), "Nd"((uint16_t)CONSOLE_PORT) : "memory");
    return arg.ret;
}

static int64_t inl(void)
{
    uint32_t v;

    __asm__ volatile("inl %1, %0"
                     : "=a"(v) : "Nd"((uint16_t)CONSOLE_PORT) : "memory");
    return v;
}

int main(int argc, char **argv)
{
    static const struct attempt list[] = {
        { "nr-zero", nr_zero, false },
        { "nr-max", nr_max, false },
        { "nr-99", nr_99, false },
        { "below-base", below_base, false },
        { "serial", serial, false },
        { "outb", outb, false },
        { "outw", outw, false },
        { "inl", inl, false },
    };

    return attempts_run(argc, argv, list, FTVM_ARRAY_SIZE(list));
}
