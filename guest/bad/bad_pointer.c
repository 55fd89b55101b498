/*
 * bad_pointer: console writes whose data pointer or length is wrong.
 *
 * Arguments: attempt=NAME runs one attempt (default: all, in order).
 * Attempts (the monitor should answer each, EFAULT or EINVAL, and go on):
 *   control      a good write, so a test knows the console works
 *   past-end     data = end of RAM, len 16
 *   straddle     data = end of RAM - 8, len 16
 *   high         data = 0xffffffffffff0000, len 16
 *   huge-len     data in RAM, len = 2^63
 *   wrap         data in RAM, data + len wraps past 2^64
 *   over-limit   data in RAM, len = 64 KiB + 1 (above the per-call limit)
 *   empty-outside  data past the end of RAM, len 0
 * Output, per attempt: "bad_pointer attempt=NAME" before it and
 * "bad_pointer attempt=NAME ret=N (CODE)" after; "bad_pointer done" at the
 * end; exit status 0.
 */
#include "attempts.h"

static const char control_msg[] = "bad_pointer control write\n";

static int64_t console(uint64_t data, uint64_t len)
{
    struct ftvm_hc_console a = { .data = data, .len = len,
                                 .ret = ATTEMPT_UNTOUCHED };

    ftvm_hypercall(FTVM_HC_CONSOLE, &a);
    return a.ret;
}

static uint64_t msg_addr(void)
{
    return (uint64_t)(uintptr_t)control_msg;
}

static int64_t control(void)
{
    return console(msg_addr(), sizeof(control_msg) - 1);
}

static int64_t past_end(void)
{
    return console(ram_end(), 16);
}

static int64_t straddle(void)
{
    return console(ram_end() - 8, 16);
}

static int64_t high(void)
{
    return console(0xffffffffffff0000ull, 16);
}

static int64_t huge_len(void)
{
    return console(msg_addr(), 1ull << 63);
}

static int64_t wrap(void)
{
    return console(msg_addr(), UINT64_MAX - msg_addr() + 2);
}

static int64_t over_limit(void)
{
    uint64_t len = 64 * 1024 + 1;
    char *buf = ftvm_alloc_pages(len);

    if (buf == NULL) {
        printf("bad_pointer: no memory for over-limit\n");
        return ATTEMPT_UNTOUCHED;
    }
    memset(buf, '.', len);
    buf[len - 1] = '\n';
    return console((uint64_t)(uintptr_t)buf, len);
}

static int64_t empty_outside(void)
{
    return console(ram_end() + FTVM_PAGE_SIZE, 0);
}

int main(int argc, char **argv)
{
    static const struct attempt list[] = {
        { "control", control, false },
        { "past-end", past_end, false },
        { "straddle", straddle, false },
        { "high", high, false },
        { "huge-len", huge_len, false },
        { "wrap", wrap, false },
        { "over-limit", over_limit, false },
        { "empty-outside", empty_outside, false },
    };

    return attempts_run(argc, argv, list, FTVM_ARRAY_SIZE(list));
}
