/* log: see log.h. */
#include "daemon/log.h"

#include <stdarg.h>
#include <stdio.h>

static const char *who = "ftvm";

void log_init(const char *name)
{
    who = name;
}

const char *log_who(void)
{
    return who;
}

void log_msg(const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* One write, so that lines of several threads do not interleave. */
    fprintf(stderr, "%s: %s\n", who, line);
}
