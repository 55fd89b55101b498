/* log: see log.h. */
#include "daemon/log.h"

#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* A line and its "WHO: " fit in one write a pipe takes whole. */
#define LINE_MAX_BYTES PIPE_BUF

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
    char line[LINE_MAX_BYTES];
    va_list ap;

    int k = snprintf(line, sizeof(line), "%s: ", who);
    if (k < 0 || (size_t)k >= sizeof(line))
        k = 0;
    va_start(ap, fmt);
    vsnprintf(line + k, sizeof(line) - (size_t)k, fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    line[n++] = '\n';      /* in place of the NUL: not a string any more */
    /*
     * One write, so that lines of several threads do not interleave, and
     * only when stderr has room now: an event loop must not wait for a
     * reader of stderr that does not read.  Such a reader loses the line
     * (a pipe with a free slot takes PIPE_BUF bytes without blocking).
     */
    struct pollfd p = { .fd = STDERR_FILENO, .events = POLLOUT };
    if (poll(&p, 1, 0) == 1 && (p.revents & POLLOUT)) {
        ssize_t w = write(STDERR_FILENO, line, n);
        (void)w;
    }
}
