/*
 * Test only, for pause_test.py: an LD_PRELOAD shim that holds a sendto(2)
 * whose bytes contain "STUCK" for FTVM_TEST_STUCK_SENDTO_MS milliseconds,
 * signals or not, as a send stuck in the kernel would hold a vCPU in the
 * monitor.  It says so on stderr when it starts holding.  The bytes and
 * the result are untouched.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

ssize_t sendto(int fd, const void *buf, size_t len, int flags,
               const struct sockaddr *to, socklen_t tolen)
{
    static ssize_t (*real)(int, const void *, size_t, int,
                           const struct sockaddr *, socklen_t);
    if (!real)
        real = (ssize_t (*)(int, const void *, size_t, int,
                            const struct sockaddr *, socklen_t))
            dlsym(RTLD_NEXT, "sendto");
    const char *s = getenv("FTVM_TEST_STUCK_SENDTO_MS");
    long ms = s ? atol(s) : 0;
    if (ms > 0 && memmem(buf, len, "STUCK", 5)) {
        static const char msg[] = "stuck_sendto: holding a send\n";
        ssize_t w = write(2, msg, sizeof(msg) - 1);
        (void)w;
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) != 0)
            ;
    }
    return real(fd, buf, len, flags, to, tolen);
}
