/* mono: see mono.h. */
#include "vm/mono.h"

#include <time.h>

uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct timeval mono_tv(uint64_t ns)
{
    return (struct timeval){ .tv_sec = (time_t)(ns / 1000000000u),
                             .tv_usec = (suseconds_t)(ns % 1000000000u
                                                      / 1000) };
}
