/*
 * CRC-32 (IEEE 802.3, zlib's crc32), table driven, one byte a step.  The
 * table is built on first use so the image carries no 1 KiB of constants
 * whose correctness a reader would have to take on trust.
 */
#include "ftvm.h"

static uint32_t table[256];
static bool table_ready;

static void build_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;

        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    table_ready = true;
}

uint32_t ftvm_crc32(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;

    if (!table_ready)
        build_table();
    crc = ~crc;
    while (len-- > 0)
        crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}
