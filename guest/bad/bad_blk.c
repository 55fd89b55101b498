/*
 * bad_blk: block hypercalls with wrong buffers, sectors and counts.
 *
 * Arguments: attempt=NAME runs one attempt (default: all, in order).
 * Attempts (the monitor answers each with a status and goes on, but for
 * struct-outside, which stops the VM):
 *   info              BLK_INFO; prints "bad_blk sectors=S readonly=R"
 *   read              a good read of sectors 0-1; prints
 *                     "bad_blk read crc=XXXXXXXX" (CRC-32 of the 1024 bytes)
 *   read-outside      buffer at the end of RAM, 1 sector
 *   read-straddle     buffer 512 bytes below the end of RAM, 2 sectors
 *   read-high         buffer at 0xffffffffffff0000
 *   read-past-end     sector = the disk's size, 1 sector
 *   read-straddle-end sector = size - 1, 2 sectors
 *   read-wrap         sector = 2^64 - 1, 2 sectors (sector + count wraps)
 *   read-huge-count   count = 2^63
 *   read-over-limit   count = FTVM_BLK_MAX_SECTORS + 1, buffer big enough
 *   read-empty        count 0 at sector = size (allowed: an empty range)
 *   write-outside     buffer at the end of RAM, 1 sector
 *   write-past-end    sector = size
 *   write-wrap        sector = 2^64 - 1, 2 sectors
 *   write-huge-count  count = 2^63
 *   write             a good write of sector 1: 512 bytes of 0xb1
 *   flush             BLK_FLUSH
 *   struct-outside    BLK_WRITE whose struct is at the end of RAM (fatal)
 * Output: as bad_pointer; "bad_blk done" and status 0 at the end.
 * docs/hypercall-abi.md says which status each should get.
 */
#include "attempts.h"

#define SECTOR FTVM_BLK_SECTOR_SIZE

static uint8_t buf[2 * SECTOR];

static int64_t io(enum ftvm_hc_nr nr, uint64_t sector, uint64_t count,
                  uint64_t data)
{
    struct ftvm_hc_blk_io a = { .sector = sector, .count = count,
                                .data = data, .ret = ATTEMPT_UNTOUCHED };

    ftvm_hypercall(nr, &a);
    return a.ret;
}

static uint64_t buf_addr(void)
{
    return (uint64_t)(uintptr_t)buf;
}

static uint64_t disk_size(void)
{
    uint64_t sectors;
    bool ro;

    ftvm_blk_info(&sectors, &ro);
    return sectors;
}

static int64_t info(void)
{
    struct ftvm_hc_blk_info a = { .ret = ATTEMPT_UNTOUCHED };

    ftvm_hypercall(FTVM_HC_BLK_INFO, &a);
    printf("bad_blk sectors=%lu readonly=%u sector_size=%u max_sectors=%u\n",
           (unsigned long)a.sectors, a.flags & FTVM_BLK_READONLY,
           a.sector_size, a.max_sectors);
    return a.ret;
}

static int64_t read_good(void)
{
    memset(buf, 0, sizeof(buf));
    int64_t ret = io(FTVM_HC_BLK_READ, 0, 2, buf_addr());
    printf("bad_blk read crc=%08x\n", ftvm_crc32(0, buf, sizeof(buf)));
    return ret;
}

static int64_t read_outside(void)
{
    return io(FTVM_HC_BLK_READ, 0, 1, ram_end());
}

static int64_t read_straddle(void)
{
    return io(FTVM_HC_BLK_READ, 0, 2, ram_end() - SECTOR);
}

static int64_t read_high(void)
{
    return io(FTVM_HC_BLK_READ, 0, 1, 0xffffffffffff0000ull);
}

static int64_t read_past_end(void)
{
    return io(FTVM_HC_BLK_READ, disk_size(), 1, buf_addr());
}

static int64_t read_straddle_end(void)
{
    return io(FTVM_HC_BLK_READ, disk_size() - 1, 2, buf_addr());
}

static int64_t read_wrap(void)
{
    return io(FTVM_HC_BLK_READ, UINT64_MAX, 2, buf_addr());
}

static int64_t read_huge_count(void)
{
    return io(FTVM_HC_BLK_READ, 0, 1ull << 63, buf_addr());
}

static int64_t read_over_limit(void)
{
    uint64_t count = FTVM_BLK_MAX_SECTORS + 1;
    void *big = ftvm_alloc_pages(count * SECTOR);

    if (big == NULL) {
        printf("bad_blk: no memory for read-over-limit\n");
        return ATTEMPT_UNTOUCHED;
    }
    return io(FTVM_HC_BLK_READ, 0, count, (uint64_t)(uintptr_t)big);
}

static int64_t read_empty(void)
{
    return io(FTVM_HC_BLK_READ, disk_size(), 0, buf_addr());
}

static int64_t write_outside(void)
{
    return io(FTVM_HC_BLK_WRITE, 0, 1, ram_end());
}

static int64_t write_past_end(void)
{
    return io(FTVM_HC_BLK_WRITE, disk_size(), 1, buf_addr());
}

static int64_t write_wrap(void)
{
    return io(FTVM_HC_BLK_WRITE, UINT64_MAX, 2, buf_addr());
}

static int64_t write_huge_count(void)
{
    return io(FTVM_HC_BLK_WRITE, 0, 1ull << 63, buf_addr());
}

static int64_t write_good(void)
{
    memset(buf, 0xb1, SECTOR);
    return io(FTVM_HC_BLK_WRITE, 1, 1, buf_addr());
}

static int64_t flush(void)
{
    struct ftvm_hc_blk_flush a = { .ret = ATTEMPT_UNTOUCHED };

    ftvm_hypercall(FTVM_HC_BLK_FLUSH, &a);
    return a.ret;
}

static int64_t struct_outside(void)
{
    ftvm_hypercall_port(FTVM_HC_PORT_BASE + FTVM_HC_BLK_WRITE,
                        addr32(ram_end() - 8));
    return ATTEMPT_UNTOUCHED;
}

int main(int argc, char **argv)
{
    static const struct attempt list[] = {
        { "info", info, false },
        { "read", read_good, false },
        { "read-outside", read_outside, false },
        { "read-straddle", read_straddle, false },
        { "read-high", read_high, false },
        { "read-past-end", read_past_end, false },
        { "read-straddle-end", read_straddle_end, false },
        { "read-wrap", read_wrap, false },
        { "read-huge-count", read_huge_count, false },
        { "read-over-limit", read_over_limit, false },
        { "read-empty", read_empty, false },
        { "write-outside", write_outside, false },
        { "write-past-end", write_past_end, false },
        { "write-wrap", write_wrap, false },
        { "write-huge-count", write_huge_count, false },
        { "write", write_good, false },
        { "flush", flush, false },
        { "struct-outside", struct_outside, true },
    };

    return attempts_run(argc, argv, list, FTVM_ARRAY_SIZE(list));
}
