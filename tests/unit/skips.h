/*
 * skips: a unit test that skips a case says so to meson.  cmocka's skip()
 * counts the case as neither passed nor failed and the program still
 * exits 0, which meson reports as a pass; a program that skipped a case
 * and failed none exits 77 instead, meson's "skipped".  Include after
 * <cmocka.h>; then skip() records the skip, and main returns
 * skips_run(tests).
 */
#ifndef FTVM_TESTS_UNIT_SKIPS_H
#define FTVM_TESTS_UNIT_SKIPS_H

#define SKIPS_EXIT_SKIPPED 77

/* Records that the running case skipped, then skips it (never returns). */
void skips_skip(const char *file, int line);

/* The exit status for cmocka's count of failed cases. */
int skips_status(int failed);

#undef skip
#define skip() skips_skip(__FILE__, __LINE__)

#define skips_run(tests) \
    skips_status(cmocka_run_group_tests((tests), NULL, NULL))

#endif
