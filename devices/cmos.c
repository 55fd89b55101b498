/* cmos: see cmos.h. */
#include "devices/cmos.h"

#include <errno.h>
#include <time.h>

static uint8_t bcd(int v)
{
    return (uint8_t)(((v / 10) % 10) << 4 | (v % 10));
}

static uint8_t reg(uint8_t index)
{
    time_t now = time(NULL);
    struct tm tm;

    if (index <= 0x09 || index == 0x32)
        gmtime_r(&now, &tm);
    switch (index) {
    case 0x00: return bcd(tm.tm_sec);
    case 0x02: return bcd(tm.tm_min);
    case 0x04: return bcd(tm.tm_hour);
    case 0x06: return bcd(tm.tm_wday + 1);
    case 0x07: return bcd(tm.tm_mday);
    case 0x08: return bcd(tm.tm_mon + 1);
    case 0x09: return bcd(tm.tm_year % 100);
    case 0x32: return bcd((tm.tm_year + 1900) / 100);
    case 0x0a: return 0x26;     /* 32.768 kHz, 1024 Hz; no update running */
    case 0x0b: return 0x02;     /* 24-hour, BCD, no interrupts */
    case 0x0d: return 0x80;     /* the battery is good */
    default: return 0;
    }
}

uint8_t cmos_read(cmos *c, uint16_t port)
{
    return port == CMOS_DATA_PORT ? reg(c->index) : 0xff;
}

void cmos_write(cmos *c, uint16_t port, uint8_t val)
{
    if (port == CMOS_INDEX_PORT)
        c->index = val & 0x7f;  /* bit 7 is the NMI mask */
}

/* ---- state ---- */

static int state_check(qfile *f, const void *obj, uint32_t version)
{
    const cmos *c = obj;

    (void)version;
    if (c->index > 0x7f)
        return qfile_fail(f, -EINVAL, "cmos: index 0x%02x; the CMOS has "
                          "128 bytes", c->index);
    return 0;
}

static const vmstate_field cmos_fields[] = {
    {VMSTATE_SCALAR(cmos, index)},
    VMSTATE_END,
};

const vmstate_desc cmos_desc = {
    .name = "cmos", .version = 1, .minimum_version = 1,
    .size = sizeof(cmos), .fields = cmos_fields, .check = state_check,
};
