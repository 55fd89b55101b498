/* evwait: see evwait.h. */
#include "evwait.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void evwait_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

double evwait_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double evwait_scale(void)
{
    const char *s = getenv("FTVM_TIME_SCALE");
    return s && atof(s) >= 1 ? atof(s) : 1;
}

void evwait_pause(struct event_base *base, double seconds)
{
    struct timeval tv = { (time_t)seconds,
                          (suseconds_t)((seconds - (time_t)seconds) * 1e6) };
    event_base_loopexit(base, &tv);
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
}

void evwait_until(struct event_base *base, bool (*pred)(void *), void *arg,
                  double seconds, const char *what)
{
    double limit = seconds * evwait_scale();
    double deadline = evwait_now() + limit;
    while (!pred(arg)) {
        if (evwait_now() > deadline)
            evwait_die("timed out after %.1f s waiting for %s", limit, what);
        evwait_pause(base, 0.02);
    }
}
