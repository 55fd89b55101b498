/* fuzzcheck: see fuzzcheck.h. */
#include "tests/fuzz/fuzzcheck.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

bool fuzzcheck_seeds;

/* Present in sanitizer builds (the libFuzzer one); absent in plain ones. */
extern void __sanitizer_report_error_summary(const char *summary)
    __attribute__((weak));

void fuzzcheck_broken(const char *fmt, ...)
{
    char line[1024] = "SUMMARY: ";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + 9, sizeof(line) - 9, fmt, ap);
    va_end(ap);
    if (__sanitizer_report_error_summary)
        __sanitizer_report_error_summary(line);
    else
        fprintf(stderr, "%s\n", line);
    abort();
}

void fuzzcheck_refused(const char *fmt, ...)
{
    if (!fuzzcheck_seeds)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "seed refused: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}
