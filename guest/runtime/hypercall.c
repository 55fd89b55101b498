/*
 * One wrapper per hypercall, and the waiting helpers built on the clock and
 * poll calls.  Argument structs live on the stack, which is ordinary RAM
 * the monitor can read and write.
 */
#include "ftvm.h"

int64_t ftvm_console_write(const void *data, uint64_t len)
{
    struct ftvm_hc_console a = {
        .data = (uint64_t)(uintptr_t)data, .len = len, .ret = 0,
    };

    ftvm_hypercall(FTVM_HC_CONSOLE, &a);
    return a.ret;
}

void ftvm_clock(uint64_t *monotonic_ns, uint64_t *wall_ns)
{
    struct ftvm_hc_clock a = { 0 };

    ftvm_hypercall(FTVM_HC_CLOCK, &a);
    if (monotonic_ns)
        *monotonic_ns = a.monotonic_ns;
    if (wall_ns)
        *wall_ns = a.wall_ns;
}

int32_t ftvm_poll(uint64_t deadline_ns, uint32_t *events)
{
    struct ftvm_hc_poll a = { .deadline_ns = deadline_ns };

    ftvm_hypercall(FTVM_HC_POLL, &a);
    if (events)
        *events = a.ret == 0 ? a.events : 0;
    return a.ret;
}

int32_t ftvm_net_info(uint8_t mac[6], uint32_t *mtu)
{
    struct ftvm_hc_net_info a = { .ret = 0 };

    ftvm_hypercall(FTVM_HC_NET_INFO, &a);
    if (a.ret == 0) {
        memcpy(mac, a.mac, 6);
        *mtu = a.mtu;
    }
    return a.ret;
}

int64_t ftvm_net_write(const void *frame, uint64_t len)
{
    struct ftvm_hc_net_write a = {
        .data = (uint64_t)(uintptr_t)frame, .len = len, .ret = 0,
    };

    ftvm_hypercall(FTVM_HC_NET_WRITE, &a);
    return a.ret;
}

int64_t ftvm_net_read(void *buf, uint64_t *len)
{
    struct ftvm_hc_net_read a = {
        .data = (uint64_t)(uintptr_t)buf, .len = *len, .ret = 0,
    };

    ftvm_hypercall(FTVM_HC_NET_READ, &a);
    *len = a.len;
    return a.ret;
}

void ftvm_halt(uint64_t status)
{
    struct ftvm_hc_halt a = { .status = status };

    /* The monitor never resumes a halted VM; if it did, halt again. */
    for (;;)
        ftvm_hypercall(FTVM_HC_HALT, &a);
}

int32_t ftvm_blk_info(uint64_t *sectors, bool *readonly)
{
    struct ftvm_hc_blk_info a = { .ret = 0 };

    ftvm_hypercall(FTVM_HC_BLK_INFO, &a);
    *sectors = a.ret == 0 ? a.sectors : 0;
    *readonly = a.ret == 0 && (a.flags & FTVM_BLK_READONLY);
    return a.ret;
}

static int64_t blk_io(enum ftvm_hc_nr nr, uint64_t sector, uint64_t buf,
                      uint64_t count)
{
    struct ftvm_hc_blk_io a = {
        .sector = sector, .count = count, .data = buf, .ret = 0,
    };

    ftvm_hypercall(nr, &a);
    return a.ret;
}

int64_t ftvm_blk_read(uint64_t sector, void *buf, uint64_t count)
{
    return blk_io(FTVM_HC_BLK_READ, sector, (uint64_t)(uintptr_t)buf, count);
}

int64_t ftvm_blk_write(uint64_t sector, const void *buf, uint64_t count)
{
    return blk_io(FTVM_HC_BLK_WRITE, sector, (uint64_t)(uintptr_t)buf,
                  count);
}

int64_t ftvm_blk_flush(void)
{
    struct ftvm_hc_blk_flush a = { .ret = 0 };

    ftvm_hypercall(FTVM_HC_BLK_FLUSH, &a);
    return a.ret;
}

const char *ftvm_strerror(int64_t ret)
{
    switch (ret) {
    case FTVM_OK: return "OK";
    case FTVM_EFAULT: return "EFAULT";
    case FTVM_EINVAL: return "EINVAL";
    case FTVM_EAGAIN: return "EAGAIN";
    case FTVM_ENODEV: return "ENODEV";
    case FTVM_ENOSPC: return "ENOSPC";
    case FTVM_EROFS: return "EROFS";
    case FTVM_ERANGE: return "ERANGE";
    case FTVM_EIO: return "EIO";
    default: return "?";
    }
}

uint64_t ftvm_monotonic_ns(void)
{
    uint64_t ns;

    ftvm_clock(&ns, NULL);
    return ns;
}

uint64_t ftvm_wall_ns(void)
{
    uint64_t ns;

    ftvm_clock(NULL, &ns);
    return ns;
}

static void drop_frames(void)
{
    uint8_t scrap[64];
    uint64_t len;

    /* A bounded drain: a flood must not keep the sleeper from waking. */
    for (int i = 0; i < 64; i++) {
        len = sizeof(scrap);
        if (ftvm_net_read(scrap, &len) != 0)
            break;
    }
}

void ftvm_sleep_until(uint64_t deadline_ns)
{
    while (ftvm_monotonic_ns() < deadline_ns) {
        uint32_t events;

        if (ftvm_poll(deadline_ns, &events) == 0 && (events & FTVM_POLL_NET))
            drop_frames();
    }
}

void ftvm_sleep_ns(uint64_t ns)
{
    ftvm_sleep_until(ftvm_monotonic_ns() + ns);
}

uint32_t ftvm_wait_events(uint32_t mask, uint64_t deadline_ns)
{
    for (;;) {
        uint32_t events;

        if (ftvm_poll(deadline_ns, &events) == 0 && (events & mask))
            return events & mask;
        if (ftvm_monotonic_ns() >= deadline_ns)
            return 0;
    }
}
