/*
 * udpkv's nondeterministic answers (TIME, RAND): the one output that
 * differs between two copies of the same VM, so COLO's tests can make the
 * primary's and the secondary's VMs diverge on purpose.
 */
#include "udpkv.h"

#define CPUID1_ECX_RDRAND (1u << 30)
/* Intel's advice: RDRAND may come back empty under load; ten tries. */
#define RDRAND_TRIES 10

bool udpkv_has_rdrand(void)
{
    uint32_t a = 1, b, c = 0, d;

    __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    return (c & CPUID1_ECX_RDRAND) != 0;
}

static bool rdrand(uint64_t *out)
{
    for (int i = 0; i < RDRAND_TRIES; i++) {
        uint64_t v;
        uint8_t ok;

        __asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok) : : "cc");
        if (ok) {
            *out = v;
            return true;
        }
    }
    return false;
}

uint64_t udpkv_random(bool use_rdrand)
{
    /* Without RDRAND: the TSC through a mixer, with a counter so two
     * calls within one TSC tick still differ. */
    static uint64_t calls;
    uint64_t v;

    if (use_rdrand && rdrand(&v))
        return v;
    return ftvm_mix64(ftvm_rdtsc() ^ ftvm_mix64(++calls));
}
