/*
 * disklog: appends numbered records to the VM's disk, one per sector, so
 * a test can tell from the image alone which writes reached it.
 *
 * Arguments (key=value, all optional):
 *   count=N    append N records, then exit 0; 0 = until the disk is full
 *              (default 0)
 *   rate=R     records per second (default 10, 1..100000); 0 = as fast as
 *              the disk goes
 *
 * Record N (from 1) is sector N, 512 bytes (little-endian):
 *   0    u8[8]   magic "FTVMDLOG"
 *   8    u64     N
 *   16   u8[492] filler, a function of N (ftvm_mix64), so a record is
 *                not mostly zeros
 *   508  u32     CRC-32 (zlib's) of bytes 0..507
 * Sector 0 is not used.  tests/lib/disklog.py reads an image.
 *
 * At start it reads the disk from sector 1 on and continues after the
 * last record of the valid prefix (record k in sector k, for k = 1, 2,
 * ...), so a boot on a disk that already holds a log extends it.
 *
 * Output:
 *   disklog: disk sectors=S readonly=0|1
 *   disklog: resuming after K          (K = 0 on an empty disk)
 *   disklog: record N                  (after record N's write and flush
 *                                       both succeeded)
 *   disklog: done last=N               (when count is reached; status 0)
 * Failures, each with exit status 1: "disklog: no disk" (ftvm run without
 * --disk), "disklog: write record N: CODE" (EROFS on a readonly disk, EIO),
 * "disklog: flush after record N: CODE", "disklog: read sector S: CODE";
 * a full disk is "disklog: disk full after N" with status 3.
 *
 * So "disklog: record N" on the console promises record N is in the
 * image (flushed) and so is every record before it.
 */
#include "ftvm.h"

#define MAGIC "FTVMDLOG"
#define SECTOR FTVM_BLK_SECTOR_SIZE
#define CRC_OFF (SECTOR - 4)

static uint8_t rec[SECTOR];

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void make_record(uint8_t *r, uint64_t n)
{
    memcpy(r, MAGIC, 8);
    put_u64(r + 8, n);
    for (uint32_t off = 16; off < CRC_OFF; off += 4) {
        uint64_t x = ftvm_mix64(n << 8 | off);

        for (int i = 0; i < 4; i++)
            r[off + i] = (uint8_t)(x >> (8 * i));
    }
    uint32_t crc = ftvm_crc32(0, r, CRC_OFF);
    for (int i = 0; i < 4; i++)
        r[CRC_OFF + i] = (uint8_t)(crc >> (8 * i));
}

static bool valid_record(const uint8_t *r, uint64_t n)
{
    uint32_t crc = (uint32_t)r[CRC_OFF] | (uint32_t)r[CRC_OFF + 1] << 8 |
                   (uint32_t)r[CRC_OFF + 2] << 16 |
                   (uint32_t)r[CRC_OFF + 3] << 24;

    return memcmp(r, MAGIC, 8) == 0 && get_u64(r + 8) == n &&
           ftvm_crc32(0, r, CRC_OFF) == crc;
}

/* The last record of the valid prefix (0: none), or -1 on a read error. */
static int64_t scan(uint64_t sectors)
{
    uint64_t batch = FTVM_BLK_MAX_SECTORS;
    uint8_t *buf = ftvm_alloc_pages(batch * SECTOR);

    if (buf == NULL) {
        printf("disklog: no memory for a %lu-sector buffer\n",
               (unsigned long)batch);
        return -1;
    }
    for (uint64_t s = 1; s < sectors; s += batch) {
        uint64_t n = sectors - s < batch ? sectors - s : batch;
        int64_t ret = ftvm_blk_read(s, buf, n);

        if (ret != 0) {
            printf("disklog: read sector %lu: %s\n", (unsigned long)s,
                   ftvm_strerror(ret));
            return -1;
        }
        for (uint64_t i = 0; i < n; i++)
            if (!valid_record(buf + i * SECTOR, s + i))
                return (int64_t)(s + i - 1);
    }
    return (int64_t)(sectors - 1);
}

int main(int argc, char **argv)
{
    static const char *const known[] = { "count", "rate", NULL };
    uint64_t count, rate, sectors;
    bool readonly;

    if (ftvm_args_check(argc, argv, known) != 0 ||
        ftvm_arg_u64(argc, argv, "count", 0, 0, UINT64_MAX, &count) != 0 ||
        ftvm_arg_u64(argc, argv, "rate", 10, 0, 100000, &rate) != 0)
        return 2;

    int32_t info = ftvm_blk_info(&sectors, &readonly);
    if (info == FTVM_ENODEV) {
        printf("disklog: no disk\n");
        return 1;
    }
    if (info != 0) {
        printf("disklog: disk info: %s\n", ftvm_strerror(info));
        return 1;
    }
    printf("disklog: disk sectors=%lu readonly=%d\n", (unsigned long)sectors,
           readonly ? 1 : 0);

    int64_t last = scan(sectors);
    if (last < 0)
        return 1;
    printf("disklog: resuming after %lu\n", (unsigned long)last);

    uint64_t period = rate ? FTVM_NS_PER_SEC / rate : 0;
    uint64_t deadline = ftvm_monotonic_ns();
    uint64_t n = (uint64_t)last;

    for (uint64_t done = 0; count == 0 || done < count; done++) {
        if (n + 1 >= sectors) {
            printf("disklog: disk full after %lu\n", (unsigned long)n);
            return 3;
        }
        n++;
        make_record(rec, n);
        int64_t ret = ftvm_blk_write(n, rec, 1);
        if (ret != 0) {
            printf("disklog: write record %lu: %s\n", (unsigned long)n,
                   ftvm_strerror(ret));
            return 1;
        }
        ret = ftvm_blk_flush();
        if (ret != 0) {
            printf("disklog: flush after record %lu: %s\n", (unsigned long)n,
                   ftvm_strerror(ret));
            return 1;
        }
        printf("disklog: record %lu\n", (unsigned long)n);
        if (period == 0 || done + 1 == count)
            continue;

        /* As counter.c: keep the pace, but after a long stop (a pause, a
         * failover) go on from now rather than burst to catch up. */
        deadline += period;
        uint64_t now = ftvm_monotonic_ns();
        if (deadline + period < now)
            deadline = now;
        ftvm_sleep_until(deadline);
    }
    printf("disklog: done last=%lu\n", (unsigned long)n);
    return 0;
}
