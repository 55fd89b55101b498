/*
 * sampler: the values of one timing or size (a checkpoint's pause, an
 * acknowledgement's latency, an output-commit delay, a package's bytes),
 * kept two ways:
 *
 *   - counted into fixed buckets since the process started, for the
 *     Prometheus histograms of daemon/metrics.h.  The bounds are the same
 *     in every process, so buckets add up across VMs and hosts;
 *   - the newest SAMPLER_WINDOW values, for the last, median, 99th
 *     percentile and maximum that `status` reports: they follow what the
 *     service does now rather than since it started.
 *
 * Count, sum and max cover every value.  Not thread-safe: the owner locks
 * if it must, and hands out a sampler_summary, a copy.
 */
#ifndef FTVM_DAEMON_SAMPLER_H
#define FTVM_DAEMON_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#define SAMPLER_WINDOW 512
#define SAMPLER_MAX_BOUNDS 24

/*
 * A histogram's upper bounds (inclusive, ascending; the +Inf bucket is
 * implied) in the unit values are added in, and how many of those units
 * make the base unit the metrics report (1e9: nanoseconds added, seconds
 * reported).  A divisor, not a factor: 1e10 / 1e9 is exactly 10, while
 * 1e10 * 1e-9 is not.
 */
typedef struct sampler_bounds {
    size_t n;
    uint64_t le[SAMPLER_MAX_BOUNDS];
    double per_base;
} sampler_bounds;

/* Nanoseconds, reported in seconds: 100 us to 10 s, 1-2.5-5 steps. */
extern const sampler_bounds sampler_ns;
/* Bytes: 4 KiB to 1 GiB, by 4. */
extern const sampler_bounds sampler_bytes;
/* Counts of pages: 1 to 1Mi (4 GiB of 4 KiB pages), by 4. */
extern const sampler_bounds sampler_pages;

typedef struct sampler {
    const sampler_bounds *bounds;
    uint64_t buckets[SAMPLER_MAX_BOUNDS];   /* values in (le[i-1], le[i]] */
    uint64_t v[SAMPLER_WINDOW];
    size_t n;           /* valid entries in v, up to SAMPLER_WINDOW */
    size_t next;        /* where the next value goes */
    uint64_t count;     /* every value ever added */
    uint64_t last, max;
    double sum;
} sampler;

typedef struct sampler_summary {
    /* Since the start: */
    const sampler_bounds *bounds;
    uint64_t buckets[SAMPLER_MAX_BOUNDS];   /* as in the sampler */
    uint64_t count, max;
    double sum, mean;
    /* Over the window: */
    uint64_t last, p50, p99;
} sampler_summary;

/* bounds (not copied) must outlive s and hold at most SAMPLER_MAX_BOUNDS. */
void sampler_init(sampler *s, const sampler_bounds *bounds);
void sampler_add(sampler *s, uint64_t v);
/* Bounds and buckets, the rest zero while there is no value. */
void sampler_summarize(const sampler *s, sampler_summary *out);
/* Values at or below bound i (i == bounds->n: every value). */
uint64_t sampler_cumulative(const sampler_summary *s, size_t i);

#endif
