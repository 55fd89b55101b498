/*
 * bad_net: network hypercalls with bad buffers and lengths.
 *
 * Run it with a network device (any backend): without one every attempt
 * answers ENODEV, which tests nothing.
 * Arguments: attempt=NAME runs one attempt (default: all, in order).
 * Attempts (the monitor should answer each and go on):
 *   info              NET_INFO, a good call (prints the MTU too)
 *   write-huge-len    NET_WRITE, data in RAM, len = 2^63
 *   write-over-mtu    NET_WRITE, a frame of mtu + 15 bytes (limit mtu + 14)
 *   write-empty       NET_WRITE, len 0
 *   write-past-end    NET_WRITE, data = end of RAM, len 64
 *   write-straddle    NET_WRITE, data = end of RAM - 32, len 64
 *   read-straddle     NET_READ into end of RAM - 100, len 2048
 *   read-past-end     NET_READ into the end of RAM, len 2048
 *   read-huge-len     NET_READ into a buffer in RAM, len = 2^63
 * A read with no frame queued may fairly answer EAGAIN before looking at
 * the buffer; the line shows which.
 * Output: as bad_pointer; "bad_net done" and status 0 at the end.
 */
#include "attempts.h"

static uint8_t frame[16384];
static uint32_t mtu = 1500;

static int64_t net_write(uint64_t data, uint64_t len)
{
    struct ftvm_hc_net_write a = { .data = data, .len = len,
                                   .ret = ATTEMPT_UNTOUCHED };

    ftvm_hypercall(FTVM_HC_NET_WRITE, &a);
    return a.ret;
}

static int64_t net_read(uint64_t data, uint64_t len)
{
    struct ftvm_hc_net_read a = { .data = data, .len = len,
                                  .ret = ATTEMPT_UNTOUCHED };

    ftvm_hypercall(FTVM_HC_NET_READ, &a);
    return a.ret;
}

static uint64_t frame_addr(void)
{
    return (uint64_t)(uintptr_t)frame;
}

static int64_t info(void)
{
    uint8_t mac[6];
    int32_t ret = ftvm_net_info(mac, &mtu);

    if (ret == 0)
        printf("bad_net mtu=%u\n", mtu);
    return ret;
}

static int64_t write_huge_len(void)
{
    return net_write(frame_addr(), 1ull << 63);
}

static int64_t write_over_mtu(void)
{
    uint64_t len = (uint64_t)mtu + 15;

    if (len > sizeof(frame)) {
        printf("bad_net: mtu %u too large for this test\n", mtu);
        return ATTEMPT_UNTOUCHED;
    }
    /* A broadcast frame with a made-up ethertype: harmless if sent. */
    memset(frame, 0xff, 6);
    memset(frame + 6, 0x02, 6);
    frame[12] = 0x88;
    frame[13] = 0xb5;
    return net_write(frame_addr(), len);
}

static int64_t write_empty(void)
{
    return net_write(frame_addr(), 0);
}

static int64_t write_past_end(void)
{
    return net_write(ram_end(), 64);
}

static int64_t write_straddle(void)
{
    return net_write(ram_end() - 32, 64);
}

static int64_t read_straddle(void)
{
    return net_read(ram_end() - 100, 2048);
}

static int64_t read_past_end(void)
{
    return net_read(ram_end(), 2048);
}

static int64_t read_huge_len(void)
{
    return net_read(frame_addr(), 1ull << 63);
}

int main(int argc, char **argv)
{
    static const struct attempt list[] = {
        { "info", info, false },
        { "write-huge-len", write_huge_len, false },
        { "write-over-mtu", write_over_mtu, false },
        { "write-empty", write_empty, false },
        { "write-past-end", write_past_end, false },
        { "write-straddle", write_straddle, false },
        { "read-straddle", read_straddle, false },
        { "read-past-end", read_past_end, false },
        { "read-huge-len", read_huge_len, false },
    };

    return attempts_run(argc, argv, list, FTVM_ARRAY_SIZE(list));
}
