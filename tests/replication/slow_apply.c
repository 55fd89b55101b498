/*
 * Test only, for e2e_test.py's failover-slow case: an LD_PRELOAD shim for
 * `ftvm secondary` that makes validating each checkpoint package take
 * FTVM_TEST_SLOW_APPLY_MS milliseconds longer, as applying it would on a
 * loaded or much slower machine.  It waits where a new CRC-32 sum begins
 * (zlib's crc32 called with no buffer), which the loader does once per
 * package before it validates the package; the sums themselves are
 * untouched.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <zlib.h>

uLong crc32(uLong crc, const Bytef *buf, uInt len)
{
    /* zlib's own, found behind this one. */
    static uLong (*real)(uLong, const Bytef *, uInt);
    if (!real)
        real = (uLong (*)(uLong, const Bytef *, uInt))dlsym(RTLD_NEXT,
                                                           "crc32");
    if (!buf) {
        const char *s = getenv("FTVM_TEST_SLOW_APPLY_MS");
        long ms = s ? atol(s) : 0;
        if (ms > 0) {
            struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
            while (nanosleep(&ts, &ts) != 0)
                ;
        }
    }
    return real(crc, buf, len);
}
