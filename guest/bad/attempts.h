/*
 * The shared driver of the malicious guests: each is a list of attempts,
 * one bad hypercall (or fault) apiece, run in order or one by name.
 */
#ifndef FTVM_GUEST_BAD_ATTEMPTS_H
#define FTVM_GUEST_BAD_ATTEMPTS_H

#include "ftvm.h"

struct attempt {
    const char *name;
    /* Makes the attempt and prints what came back, or returns the ret for
     * the driver to print. */
    int64_t (*run)(void);
    /* The monitor is expected to stop the VM: returning is a failure. */
    bool fatal;
};

/* A value no hypercall returns, to tell "left alone" from an answer. */
#define ATTEMPT_UNTOUCHED 0x7eadbeefll

/*
 * Runs the attempt named by the argument attempt=NAME, or all of them in
 * order.  Before each it prints "PROG attempt=NAME", after each
 * "PROG attempt=NAME ret=N (CODE)", and at the end "PROG done".
 * Returns the exit status: 0, 2 for bad arguments, 3 when a fatal attempt
 * returned.
 */
int attempts_run(int argc, char **argv, const struct attempt *list,
                 size_t n);

/* The first address past the end of guest RAM. */
uint64_t ram_end(void);

/* A 32-bit struct address for a raw hypercall, saturated to 4 GiB - 1. */
uint32_t addr32(uint64_t addr);

#endif
