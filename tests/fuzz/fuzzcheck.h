/*
 * fuzzcheck: how a fuzz target reports what it found.  A broken promise
 * aborts, for libFuzzer to save the input; its line ("SUMMARY: fuzz_...")
 * goes where the sanitizers report (libFuzzer's -close_fd_mask=2 silences the product's
 * own logging on stderr, not that).  An input the target does not accept
 * in full is only a failure for the seeds: the replay tool sets
 * fuzzcheck_seeds while it runs them, and then exits non-zero.
 */
#ifndef FTVM_TESTS_FUZZ_FUZZCHECK_H
#define FTVM_TESTS_FUZZ_FUZZCHECK_H

#include <stdbool.h>

extern bool fuzzcheck_seeds;

__attribute__((noreturn, format(printf, 1, 2)))
void fuzzcheck_broken(const char *fmt, ...);
/* The input was refused somewhere: fatal for a seed, normal otherwise. */
__attribute__((format(printf, 1, 2)))
void fuzzcheck_refused(const char *fmt, ...);

#endif
