/*
 * Test only, for e2e_test.py's slow-link case: an LD_PRELOAD shim that
 * makes every sendmsg(2) of the process wait FTVM_TEST_SLOW_SENDMSG_MS
 * milliseconds first, as a thread descheduled on a loaded machine would.
 * The bytes and the result are untouched.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    static ssize_t (*real)(int, const struct msghdr *, int);
    if (!real)
        real = (ssize_t (*)(int, const struct msghdr *, int))
            dlsym(RTLD_NEXT, "sendmsg");
    const char *s = getenv("FTVM_TEST_SLOW_SENDMSG_MS");
    long ms = s ? atol(s) : 0;
    if (ms > 0) {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) != 0)
            ;
    }
    return real(fd, msg, flags);
}
