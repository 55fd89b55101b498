/*
 * bad_struct: hypercalls whose argument struct itself is not in RAM.
 *
 * Arguments: attempt=NAME runs one attempt (default: all, in order; the
 * first stops the VM).
 * Attempts (the monitor cannot even read the struct, so it should stop the
 * VM with a message, and the host process must survive):
 *   outside      console struct at the end of RAM
 *   straddle     console struct 8 bytes before the end of RAM (it is 24)
 *   top          console struct at 0xfffffff8, the last 32-bit address
 *   halt-outside halt struct at the end of RAM
 * Output: "bad_struct attempt=NAME expect=stop" before the attempt.  If the
 * monitor lets the guest go on, "bad_struct attempt=NAME ret=..." and
 * "bad_struct attempt=NAME survived" follow and the exit status is 3.
 */
#include "attempts.h"

static int64_t raw(enum ftvm_hc_nr nr, uint64_t addr)
{
    ftvm_hypercall_port((uint16_t)(FTVM_HC_PORT_BASE + nr), addr32(addr));
    return ATTEMPT_UNTOUCHED;
}

static int64_t outside(void)
{
    return raw(FTVM_HC_CONSOLE, ram_end());
}

static int64_t straddle(void)
{
    return raw(FTVM_HC_CONSOLE, ram_end() - 8);
}

static int64_t top(void)
{
    return raw(FTVM_HC_CONSOLE, 0xfffffff8u);
}

static int64_t halt_outside(void)
{
    return raw(FTVM_HC_HALT, ram_end());
}

int main(int argc, char **argv)
{
    static const struct attempt list[] = {
        { "outside", outside, true },
        { "straddle", straddle, true },
        { "top", top, true },
        { "halt-outside", halt_outside, true },
    };

    return attempts_run(argc, argv, list, FTVM_ARRAY_SIZE(list));
}
