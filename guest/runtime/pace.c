/*
 * pace: events at a set rate per second, for the workloads (memtouch,
 * diskwrite).  The schedule counts from a start point rather than from
 * the last event, so rounding never drifts; and it starts again when the
 * guest fell more than a second behind (the VM was paused or stopped),
 * so a workload does not catch up in one burst.
 */
#include "ftvm.h"

/* How many of rate-per-second events are due after ns nanoseconds,
 * without overflowing 64 bits for any rate and a run of centuries. */
static uint64_t due(uint64_t rate, uint64_t ns)
{
    return ns / FTVM_NS_PER_SEC * rate +
           ns % FTVM_NS_PER_SEC * rate / FTVM_NS_PER_SEC;
}

/* The first time at which k events of rate-per-second are due, in ns. */
static uint64_t due_at(uint64_t rate, uint64_t k)
{
    return k / rate * FTVM_NS_PER_SEC +
           (k % rate * FTVM_NS_PER_SEC + rate - 1) / rate;
}

void ftvm_pace_init(struct ftvm_pace *p, uint64_t rate)
{
    p->rate = rate;
    p->start_ns = 0;
    p->start_count = 0;
}

uint64_t ftvm_pace_target(struct ftvm_pace *p, uint64_t now, uint64_t done)
{
    uint64_t target = p->start_count + due(p->rate, now - p->start_ns);

    if (target - done > p->rate) {
        p->start_ns = now;
        p->start_count = done;
        target = done;
    }
    return target;
}

uint64_t ftvm_pace_next(const struct ftvm_pace *p, uint64_t now,
                        uint64_t done, uint64_t min_ns)
{
    uint64_t wake = p->start_ns + due_at(p->rate, done + 1 - p->start_count);

    return wake < now + min_ns ? now + min_ns : wake;
}
