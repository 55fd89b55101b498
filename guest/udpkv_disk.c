/*
 * udpkv's persistence (persist=1): the store kept on the VM's disk.
 *
 * docs/udpkv-protocol.md ("Persistence") has the layout.  In short: a
 * header in sector 0, then UDPKV_KEYS_MAX + 1 slots of three sectors,
 * each empty or holding one key's record with a sequence number.  A PUT
 * writes the new record into a free slot and flushes before it touches
 * the table or replies, then empties the key's old slot; so at every
 * moment the disk holds the key's old record or its new one, and a load
 * that finds both (a crash between the two writes) keeps the higher
 * sequence number.  The spare slot is what makes that possible with a
 * full table.  A DEL empties the slot and flushes before replying.
 *
 * Any I/O error ends the guest (status 1): after a write that may have
 * half happened, the table and the disk could disagree, and a store that
 * answers OK to a write it may not keep is worse than none.
 */
#include "udpkv.h"

#define SECTOR FTVM_BLK_SECTOR_SIZE
#define SLOTS (UDPKV_KEYS_MAX + 1u)
#define REC_SECTORS 3u
#define REC_SIZE (REC_SECTORS * SECTOR)
#define REC_CRC (REC_SIZE - 4)
#define DATA_SECTOR 1u
#define DISK_SECTORS (DATA_SECTOR + SLOTS * REC_SECTORS)
/* Slots read per call at load: as many as fit FTVM_BLK_MAX_SECTORS. */
#define LOAD_BATCH (FTVM_BLK_MAX_SECTORS / REC_SECTORS)

static const char hdr_magic[8] = "UDPKVDB1";
static const char rec_magic[4] = "UKV1";

_Static_assert(16 + UDPKV_KEY_MAX + UDPKV_VALUE_MAX <= REC_CRC,
               "a record fits its slot");

static uint64_t used[(SLOTS + 63) / 64];
static uint64_t seq;                /* the highest on the disk */
static uint32_t next_free;          /* where the search for a slot starts */
static uint8_t rec[REC_SIZE];
static uint8_t sector_buf[SECTOR];

static bool slot_used(uint32_t s)
{
    return used[s / 64] >> (s % 64) & 1;
}

static void slot_set(uint32_t s, bool on)
{
    if (on)
        used[s / 64] |= 1ull << (s % 64);
    else
        used[s / 64] &= ~(1ull << (s % 64));
}

static uint64_t slot_sector(uint32_t s)
{
    return DATA_SECTOR + (uint64_t)s * REC_SECTORS;
}

static void le_put(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t le_get(const uint8_t *p, int bytes)
{
    uint64_t v = 0;

    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static FTVM_NORETURN void io_failed(const char *what, uint64_t sector,
                                    int64_t ret)
{
    printf("udpkv: disk %s at sector %lu failed: %s; stopping, since the "
           "store and the disk may now disagree\n", what,
           (unsigned long)sector, ftvm_strerror(ret));
    ftvm_exit(1);
}

static void write_or_die(uint64_t sector, const void *buf, uint64_t count)
{
    int64_t ret = ftvm_blk_write(sector, buf, count);

    if (ret != 0)
        io_failed("write", sector, ret);
}

static void flush_or_die(void)
{
    int64_t ret = ftvm_blk_flush();

    if (ret != 0)
        io_failed("flush", 0, ret);
}

static void empty_slot(uint32_t s)
{
    memset(sector_buf, 0, SECTOR);
    write_or_die(slot_sector(s), sector_buf, 1);
    slot_set(s, false);
}

/* There is always one: at most UDPKV_KEYS_MAX slots hold a key. */
static uint32_t alloc_slot(void)
{
    for (uint32_t i = 0; i < SLOTS; i++) {
        uint32_t s = (next_free + i) % SLOTS;

        if (!slot_used(s)) {
            next_free = (s + 1) % SLOTS;
            return s;
        }
    }
    printf("udpkv: no free slot on the disk (a bug)\n");
    ftvm_exit(1);
}

static bool printable(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

/* Whether r is a whole record: magic, lengths in bounds, CRC. */
static bool rec_valid(const uint8_t *r)
{
    uint64_t klen = le_get(r + 4, 2), vlen = le_get(r + 6, 2);

    return memcmp(r, rec_magic, 4) == 0 && klen >= 1 &&
           klen <= UDPKV_KEY_MAX && vlen <= UDPKV_VALUE_MAX &&
           printable(r + 16, klen) &&
           ftvm_crc32(0, r, REC_CRC) == le_get(r + REC_CRC, 4);
}

/* Sequence numbers of the loaded records, to settle a key found twice. */
static uint64_t slot_seq[SLOTS];

/* 0, or -1 when the disk holds more keys than the store takes (a disk
 * udpkv did not write: it never keeps more than UDPKV_KEYS_MAX). */
static int load_record(const uint8_t *r, uint32_t s, uint64_t *stale)
{
    size_t klen = le_get(r + 4, 2), vlen = le_get(r + 6, 2);
    uint64_t rseq = le_get(r + 8, 8);
    const char *key = (const char *)r + 16;
    uint32_t other;

    if (rseq > seq)
        seq = rseq;
    if (udpkv_store_tag(key, klen, &other) == 0) {
        /* A PUT cut short between its two writes: the newer one wins. */
        (*stale)++;
        if (slot_seq[other] > rseq) {
            empty_slot(s);
            return 0;
        }
        empty_slot(other);
    }
    if (udpkv_store_put(key, klen, (const char *)r + 80, vlen, s) != 0) {
        printf("udpkv: the disk holds more than %u keys (slot %u); not "
               "loading it\n", UDPKV_KEYS_MAX, s);
        return -1;
    }
    slot_set(s, true);
    slot_seq[s] = rseq;
    return 0;
}

static int load(void)
{
    uint8_t *buf = ftvm_alloc_pages(LOAD_BATCH * REC_SIZE);
    uint64_t bad = 0, stale = 0;

    if (buf == NULL) {
        printf("udpkv: no memory to load the disk\n");
        return -1;
    }
    for (uint32_t s0 = 0; s0 < SLOTS; s0 += LOAD_BATCH) {
        uint32_t n = SLOTS - s0 < LOAD_BATCH ? SLOTS - s0 : LOAD_BATCH;
        int64_t ret = ftvm_blk_read(slot_sector(s0), buf, n * REC_SECTORS);

        if (ret != 0) {
            printf("udpkv: disk read at sector %lu: %s\n",
                   (unsigned long)slot_sector(s0), ftvm_strerror(ret));
            return -1;
        }
        for (uint32_t i = 0; i < n; i++) {
            const uint8_t *r = buf + (size_t)i * REC_SIZE;

            if (memcmp(r, rec_magic, 4) != 0)
                continue;
            if (!rec_valid(r)) {
                /* A record torn by a host crash: its PUT was never
                 * answered, and the key's old record is in another slot. */
                bad++;
                continue;
            }
            if (load_record(r, s0 + i, &stale) != 0)
                return -1;
        }
    }
    if (stale)
        flush_or_die();
    printf("udpkv persist: loaded %lu keys from the disk (%lu torn records "
           "skipped, %lu stale removed)\n",
           (unsigned long)udpkv_store_count(), (unsigned long)bad,
           (unsigned long)stale);
    return 0;
}

/* A disk with a zero sector 0: empty every slot, then write the header. */
static void format(void)
{
    uint8_t *zeros = ftvm_alloc_pages((uint64_t)FTVM_BLK_MAX_SECTORS * SECTOR);

    if (zeros == NULL) {
        printf("udpkv: no memory to format the disk\n");
        ftvm_exit(1);
    }
    for (uint64_t s = DATA_SECTOR; s < DISK_SECTORS;
         s += FTVM_BLK_MAX_SECTORS) {
        uint64_t n = DISK_SECTORS - s;

        write_or_die(s, zeros, n < FTVM_BLK_MAX_SECTORS ? n
                                                        : FTVM_BLK_MAX_SECTORS);
    }
    flush_or_die();
    memset(sector_buf, 0, SECTOR);
    memcpy(sector_buf, hdr_magic, 8);
    le_put(sector_buf + 8, 1, 4);
    le_put(sector_buf + 12, SLOTS, 4);
    le_put(sector_buf + 16, REC_SECTORS, 4);
    le_put(sector_buf + SECTOR - 4, ftvm_crc32(0, sector_buf, SECTOR - 4), 4);
    write_or_die(0, sector_buf, 1);
    flush_or_die();
    printf("udpkv persist: formatted the disk (%u slots)\n", SLOTS);
}

int udpkv_disk_open(void)
{
    uint64_t sectors;
    bool readonly;
    int32_t info = ftvm_blk_info(&sectors, &readonly);

    if (info == FTVM_ENODEV) {
        printf("udpkv: persist=1 needs a disk (ftvm run --disk FILE)\n");
        return -1;
    }
    if (info != 0) {
        printf("udpkv: disk info: %s\n", ftvm_strerror(info));
        return -1;
    }
    if (readonly) {
        printf("udpkv: persist=1 needs a writable disk, not a readonly "
               "one\n");
        return -1;
    }
    if (sectors < DISK_SECTORS) {
        printf("udpkv: persist=1 needs a disk of at least %u sectors "
               "(%u bytes); this one has %lu\n", DISK_SECTORS,
               DISK_SECTORS * SECTOR, (unsigned long)sectors);
        return -1;
    }
    int64_t ret = ftvm_blk_read(0, sector_buf, 1);
    if (ret != 0) {
        printf("udpkv: disk read at sector 0: %s\n", ftvm_strerror(ret));
        return -1;
    }
    bool zero = true;
    for (uint32_t i = 0; i < SECTOR; i++)
        zero = zero && sector_buf[i] == 0;
    if (zero) {
        format();
        return 0;
    }
    if (memcmp(sector_buf, hdr_magic, 8) != 0 ||
        le_get(sector_buf + SECTOR - 4, 4) !=
            ftvm_crc32(0, sector_buf, SECTOR - 4)) {
        printf("udpkv: the disk holds something else (sector 0 is not a "
               "udpkv header); not touching it\n");
        return -1;
    }
    if (le_get(sector_buf + 8, 4) != 1 || le_get(sector_buf + 12, 4) != SLOTS ||
        le_get(sector_buf + 16, 4) != REC_SECTORS) {
        printf("udpkv: the disk's header says version %lu, %lu slots of %lu "
               "sectors; this udpkv reads version 1, %u slots of %u\n",
               (unsigned long)le_get(sector_buf + 8, 4),
               (unsigned long)le_get(sector_buf + 12, 4),
               (unsigned long)le_get(sector_buf + 16, 4), SLOTS,
               REC_SECTORS);
        return -1;
    }
    return load();
}

const char *udpkv_disk_put(const char *key, size_t klen, const char *val,
                           size_t vlen)
{
    uint32_t old;
    bool exists = udpkv_store_tag(key, klen, &old) == 0;

    if (!exists && udpkv_store_count() == UDPKV_KEYS_MAX)
        return "ERR store full";
    uint32_t s = alloc_slot();

    memset(rec, 0, REC_SIZE);
    memcpy(rec, rec_magic, 4);
    le_put(rec + 4, klen, 2);
    le_put(rec + 6, vlen, 2);
    le_put(rec + 8, ++seq, 8);
    memcpy(rec + 16, key, klen);
    memcpy(rec + 80, val, vlen);
    le_put(rec + REC_CRC, ftvm_crc32(0, rec, REC_CRC), 4);
    write_or_die(slot_sector(s), rec, REC_SECTORS);
    flush_or_die();
    slot_set(s, true);
    udpkv_store_put(key, klen, val, vlen, s);
    /* No flush needed: a load that still finds the old record keeps the
     * new one by its sequence number. */
    if (exists)
        empty_slot(old);
    return "OK";
}

const char *udpkv_disk_del(const char *key, size_t klen)
{
    uint32_t s;

    if (udpkv_store_tag(key, klen, &s) != 0)
        return "NOTFOUND";
    empty_slot(s);
    flush_or_die();
    udpkv_store_del(key, klen);
    return "OK";
}
