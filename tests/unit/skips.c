#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "skips.h"

static int skipped;

void skips_skip(const char *file, int line)
{
    skipped++;
    _skip(file, line);
}

int skips_status(int failed)
{
    if (failed)
        return failed;
    if (skipped) {
        printf("%d case%s skipped: exiting %d (skipped)\n", skipped,
               skipped == 1 ? "" : "s", SKIPS_EXIT_SKIPPED);
        return SKIPS_EXIT_SKIPPED;
    }
    return 0;
}
