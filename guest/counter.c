/*
 * counter: proves that a restored guest got its registers and its memory
 * back.
 *
 * Arguments (key=value, all optional):
 *   rate=HZ            ticks per second (default 10, 1..100000)
 *   count=N            stop after N ticks; 0 = forever (default 0)
 *   area-kib=K         size of the memory area in KiB (default 1024, >= 4)
 *   pages-per-tick=P   pages of the area rewritten each tick (default 8)
 *   noise-every=K      after every K-th tick, a line "noise T" with the
 *                      CPU's time stamp counter: the one output that
 *                      differs between two runs (0 = never, the default;
 *                      COLO's tests use it to force a mismatch)
 *
 * Output:
 *   counter rate=10 count=0 area-kib=1024 pages-per-tick=8 crc 1a2b3c4d
 *   tick 1 crc 89abcdef
 *   tick 2 crc 01234567
 *   ...
 *   counter done ticks=N            (only when count is reached)
 *
 * N counts up by one.  The CRC-32 covers the whole area, which tick N
 * rewrites in P pages picked from N, mixing N into what the pages held
 * before.  So the area after tick N is a function of the arguments and N
 * alone, two runs with the same arguments print the same lines, and a run
 * restored from a checkpoint must print exactly the lines an uninterrupted
 * run prints: a lost register breaks the N sequence, a lost or stale page
 * the CRC.
 */
#include "ftvm.h"

#define WORDS_PER_PAGE (FTVM_PAGE_SIZE / sizeof(uint64_t))

static void fill_area(uint64_t *area, uint64_t words)
{
    struct ftvm_rng rng;

    ftvm_rng_seed(&rng, 0xC0FFEEull);
    for (uint64_t i = 0; i < words; i++)
        area[i] = ftvm_rng_next(&rng);
}

static void evolve(uint64_t *area, uint64_t pages, uint64_t per_tick,
                   uint64_t n)
{
    for (uint64_t k = 0; k < per_tick; k++) {
        uint64_t *page = area + (ftvm_mix64(n * 64 + k) % pages) * WORDS_PER_PAGE;
        uint64_t carry = ftvm_mix64(n ^ (k << 32));

        /* Each word depends on its old value and on the words before it,
         * so a single stale byte anywhere changes the rest of the page. */
        for (uint64_t w = 0; w < WORDS_PER_PAGE; w++) {
            carry = ftvm_mix64(page[w] ^ carry);
            page[w] = carry;
        }
    }
}

int main(int argc, char **argv)
{
    static const char *const known[] = {
        "rate", "count", "area-kib", "pages-per-tick", "noise-every", NULL,
    };
    uint64_t rate, count, area_kib, per_tick, noise;

    if (ftvm_args_check(argc, argv, known) != 0 ||
        ftvm_arg_u64(argc, argv, "rate", 10, 1, 100000, &rate) != 0 ||
        ftvm_arg_u64(argc, argv, "count", 0, 0, UINT64_MAX, &count) != 0 ||
        ftvm_arg_u64(argc, argv, "area-kib", 1024, 4, UINT32_MAX,
                     &area_kib) != 0 ||
        ftvm_arg_u64(argc, argv, "pages-per-tick", 8, 1, 1u << 20,
                     &per_tick) != 0 ||
        ftvm_arg_u64(argc, argv, "noise-every", 0, 0, UINT64_MAX,
                     &noise) != 0)
        return 2;

    uint64_t bytes = area_kib * 1024;
    uint64_t pages = bytes / FTVM_PAGE_SIZE;
    uint64_t *area = ftvm_alloc_pages(bytes);
    if (area == NULL) {
        printf("counter: area-kib=%lu does not fit (%lu KiB free)\n",
               (unsigned long)area_kib,
               (unsigned long)(ftvm_heap_available() / 1024));
        return 1;
    }
    fill_area(area, pages * WORDS_PER_PAGE);
    printf("counter rate=%lu count=%lu area-kib=%lu pages-per-tick=%lu "
           "crc %08x\n", (unsigned long)rate, (unsigned long)count,
           (unsigned long)area_kib, (unsigned long)per_tick,
           ftvm_crc32(0, area, pages * FTVM_PAGE_SIZE));

    uint64_t period = FTVM_NS_PER_SEC / rate;
    uint64_t deadline = ftvm_monotonic_ns();

    for (uint64_t n = 1; count == 0 || n <= count; n++) {
        evolve(area, pages, per_tick, n);
        printf("tick %lu crc %08x\n", (unsigned long)n,
               ftvm_crc32(0, area, pages * FTVM_PAGE_SIZE));
        if (noise && n % noise == 0)
            printf("noise %lu\n", (unsigned long)ftvm_rdtsc());
        if (n == count)
            break;

        /* Keep the rate, but after a long stop (a pause, a restore on
         * another host) go on from now rather than burst to catch up. */
        deadline += period;
        uint64_t now = ftvm_monotonic_ns();
        if (deadline + period < now)
            deadline = now;
        ftvm_sleep_until(deadline);
    }
    printf("counter done ticks=%lu\n", (unsigned long)count);
    return 0;
}
