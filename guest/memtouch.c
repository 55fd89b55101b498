/*
 * memtouch: the benchmark workload; dirties guest pages at a set rate.
 *
 * Arguments (key=value, all optional):
 *   pages-per-second=N   pages dirtied per second; 0 = as fast as possible
 *                        (default 0)
 *   working-set-mib=M    size of the memory walked, in MiB (default 16)
 *   report-every=S       seconds between progress lines; 0 = none
 *                        (default 1)
 *   seconds=S            stop after S seconds; 0 = never (default 0)
 *
 * It walks the working set page by page, round and round, writing one
 * 8-byte value per page: enough for the dirty log to count the page.  The
 * value changes every round, so a checkpoint's delta encoding sees real
 * changes too.  With a rate, pages are written in bursts at least 1 ms
 * apart (a wait per page would cost more exits than the writes).
 *
 * Output:
 *   memtouch pages-per-second=N working-set-mib=M report-every=S seconds=T
 *   memtouch pages=P elapsed_ms=E rate=R       (every S seconds)
 *   memtouch done pages=P elapsed_ms=E rate=R  (when seconds= is reached)
 * P counts pages written since the start, E is milliseconds since the
 * start, R is pages per second over the last report interval (over the
 * whole run on the done line).
 */
#include "ftvm.h"

#define MIN_SLEEP_NS 1000000ull
#define WORDS_PER_PAGE (FTVM_PAGE_SIZE / sizeof(uint64_t))
/* In free-running mode, how many pages between looks at the clock. */
#define FREE_RUN_BATCH 4096

static uint64_t per_second(uint64_t pages, uint64_t ns)
{
    uint64_t ms = ns / 1000000;

    return ms == 0 ? 0 : pages * 1000 / ms;
}

int main(int argc, char **argv)
{
    static const char *const known[] = {
        "pages-per-second", "working-set-mib", "report-every", "seconds",
        NULL,
    };
    uint64_t rate, mib, report_s, seconds;

    if (ftvm_args_check(argc, argv, known) != 0 ||
        ftvm_arg_u64(argc, argv, "pages-per-second", 0, 0, 1ull << 32,
                     &rate) != 0 ||
        ftvm_arg_u64(argc, argv, "working-set-mib", 16, 1, 1u << 20,
                     &mib) != 0 ||
        ftvm_arg_u64(argc, argv, "report-every", 1, 0, 1u << 20,
                     &report_s) != 0 ||
        ftvm_arg_u64(argc, argv, "seconds", 0, 0, 1u << 30, &seconds) != 0)
        return 2;

    uint64_t *set = ftvm_alloc_pages(mib << 20);
    if (set == NULL) {
        printf("memtouch: working-set-mib=%lu does not fit (%lu MiB free)\n",
               (unsigned long)mib,
               (unsigned long)(ftvm_heap_available() >> 20));
        return 1;
    }
    uint64_t npages = (mib << 20) / FTVM_PAGE_SIZE;

    printf("memtouch pages-per-second=%lu working-set-mib=%lu "
           "report-every=%lu seconds=%lu\n", (unsigned long)rate,
           (unsigned long)mib, (unsigned long)report_s,
           (unsigned long)seconds);

    uint64_t start = ftvm_monotonic_ns();
    uint64_t report_ns = report_s * FTVM_NS_PER_SEC;
    uint64_t end_ns = seconds * FTVM_NS_PER_SEC;
    uint64_t next_report = report_ns;
    uint64_t last_report = 0, last_pages = 0;
    uint64_t touched = 0, page = 0, round = 1;
    struct ftvm_pace pace;
    ftvm_pace_init(&pace, rate);

    for (;;) {
        uint64_t now = ftvm_monotonic_ns() - start;

        if (report_ns != 0 && now >= next_report) {
            printf("memtouch pages=%lu elapsed_ms=%lu rate=%lu\n",
                   (unsigned long)touched, (unsigned long)(now / 1000000),
                   (unsigned long)per_second(touched - last_pages,
                                             now - last_report));
            last_report = now;
            last_pages = touched;
            /* Skip reports missed during a long stop instead of
             * printing them all at once. */
            while (next_report <= now)
                next_report += report_ns;
        }
        if (end_ns != 0 && now >= end_ns)
            break;

        uint64_t target = rate != 0 ? ftvm_pace_target(&pace, now, touched)
                                    : touched + FREE_RUN_BATCH;
        while (touched < target) {
            set[page * WORDS_PER_PAGE + round % WORDS_PER_PAGE] = round;
            touched++;
            if (++page == npages) {
                page = 0;
                round++;
            }
        }

        if (rate != 0) {
            uint64_t wake = ftvm_pace_next(&pace, now, touched, MIN_SLEEP_NS);

            if (report_ns != 0 && wake > next_report)
                wake = next_report;
            if (end_ns != 0 && wake > end_ns)
                wake = end_ns;
            ftvm_sleep_until(start + wake);
        }
    }

    uint64_t now = ftvm_monotonic_ns() - start;
    printf("memtouch done pages=%lu elapsed_ms=%lu rate=%lu\n",
           (unsigned long)touched, (unsigned long)(now / 1000000),
           (unsigned long)per_second(touched, now));
    return 0;
}
