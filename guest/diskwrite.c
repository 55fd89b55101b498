/*
 * diskwrite: the disk benchmark's workload; writes to the VM's disk at a
 * set rate, as memtouch dirties RAM.
 *
 * Arguments (key=value, all optional):
 *   kib-per-second=N   KiB written per second; 0 = as fast as the disk
 *                      takes them (default 1024)
 *   block-kib=B        KiB per write, 4..1024 (default 64)
 *   report-every=S     seconds between progress lines; 0 = none (default 1)
 *   seconds=S          stop after S seconds; 0 = never (default 0)
 *
 * It writes blocks one after the other from sector 0, round and round
 * over the whole disk, each block's bytes a function of its place and the
 * round (so every write changes what it covers), and flushes after every
 * megabyte.  With a rate, blocks go in bursts at least 1 ms apart.
 *
 * Output:
 *   diskwrite kib-per-second=N block-kib=B disk-mib=D
 *   diskwrite kib=K elapsed_ms=E rate=R        (every S seconds, R KiB/s
 *                                               over the last interval)
 *   diskwrite done kib=K elapsed_ms=E rate=R   (when seconds= is reached)
 *   diskwrite: no disk / write failed: CODE    (status 1)
 */
#include "ftvm.h"

#define MIN_SLEEP_NS 1000000ull
#define SECTOR 512u
#define MAX_BLOCK (1024u * 1024u)
#define FLUSH_EVERY (1024u * 1024u)

static uint8_t block[MAX_BLOCK];

static uint64_t kib_per_second(uint64_t kib, uint64_t ns)
{
    uint64_t ms = ns / 1000000;

    return ms == 0 ? 0 : kib * 1000 / ms;
}

static void fill(uint64_t sector, uint64_t round, uint32_t len)
{
    uint64_t *w = (uint64_t *)block;

    for (uint32_t i = 0; i < len / 8; i += SECTOR / 8)
        w[i] = ftvm_mix64(sector + i / (SECTOR / 8)) ^ round;
}

int main(int argc, char **argv)
{
    static const char *const known[] = {
        "kib-per-second", "block-kib", "report-every", "seconds", NULL,
    };
    uint64_t rate, bkib, report_s, seconds, sectors;
    bool ro;

    if (ftvm_args_check(argc, argv, known) != 0 ||
        ftvm_arg_u64(argc, argv, "kib-per-second", 1024, 0, 1ull << 32,
                     &rate) != 0 ||
        ftvm_arg_u64(argc, argv, "block-kib", 64, 4, 1024, &bkib) != 0 ||
        ftvm_arg_u64(argc, argv, "report-every", 1, 0, 1u << 20,
                     &report_s) != 0 ||
        ftvm_arg_u64(argc, argv, "seconds", 0, 0, 1u << 30, &seconds) != 0)
        return 2;
    if (ftvm_blk_info(&sectors, &ro) != 0 || sectors == 0 || ro) {
        printf("diskwrite: no disk it can write\n");
        return 1;
    }
    uint32_t len = (uint32_t)(bkib * 1024);
    uint64_t per = len / SECTOR;
    /* Blocks per round: whole blocks only. */
    uint64_t nblocks = sectors / per;
    if (nblocks == 0) {
        printf("diskwrite: the disk is smaller than a block\n");
        return 1;
    }
    printf("diskwrite kib-per-second=%lu block-kib=%lu disk-mib=%lu\n",
           (unsigned long)rate, (unsigned long)bkib,
           (unsigned long)(sectors * SECTOR >> 20));

    uint64_t start = ftvm_monotonic_ns();
    uint64_t report_ns = report_s * FTVM_NS_PER_SEC;
    uint64_t end_ns = seconds * FTVM_NS_PER_SEC;
    uint64_t next_report = report_ns, last_report = 0, last_kib = 0;
    uint64_t written = 0, blk = 0, round = 1, since_flush = 0;
    /* The rate in blocks per second, at least one. */
    uint64_t brate = rate ? (rate + bkib - 1) / bkib : 0;
    struct ftvm_pace pace;
    ftvm_pace_init(&pace, brate);

    for (;;) {
        uint64_t now = ftvm_monotonic_ns() - start;

        if (report_ns != 0 && now >= next_report) {
            uint64_t kib = written * bkib;
            printf("diskwrite kib=%lu elapsed_ms=%lu rate=%lu\n",
                   (unsigned long)kib, (unsigned long)(now / 1000000),
                   (unsigned long)kib_per_second(kib - last_kib,
                                                 now - last_report));
            last_report = now;
            last_kib = kib;
            while (next_report <= now)
                next_report += report_ns;
        }
        if (end_ns != 0 && now >= end_ns)
            break;

        uint64_t target = brate != 0 ? ftvm_pace_target(&pace, now, written)
                                     : written + 1;
        while (written < target) {
            fill(blk * per, round, len);
            int64_t r = ftvm_blk_write(blk * per, block, per);
            if (r != 0) {
                printf("diskwrite: write failed: %ld\n", (long)r);
                return 1;
            }
            written++;
            since_flush += len;
            if (since_flush >= FLUSH_EVERY) {
                if (ftvm_blk_flush() != 0) {
                    printf("diskwrite: flush failed\n");
                    return 1;
                }
                since_flush = 0;
            }
            if (++blk == nblocks) {
                blk = 0;
                round++;
            }
        }
        if (brate != 0) {
            uint64_t wake = ftvm_pace_next(&pace, now, written, MIN_SLEEP_NS);
            if (report_ns != 0 && wake > next_report)
                wake = next_report;
            if (end_ns != 0 && wake > end_ns)
                wake = end_ns;
            ftvm_sleep_until(start + wake);
        }
    }
    uint64_t now = ftvm_monotonic_ns() - start;
    printf("diskwrite done kib=%lu elapsed_ms=%lu rate=%lu\n",
           (unsigned long)(written * bkib), (unsigned long)(now / 1000000),
           (unsigned long)kib_per_second(written * bkib, now));
    return 0;
}
