/*
 * sampler: the last few hundred values of a timing (a checkpoint's pause,
 * an acknowledgement's latency, an output-commit delay), for the last,
 * median, 99th percentile and maximum that status and metrics report.
 *
 * Percentiles are over the newest SAMPLER_WINDOW samples, so they follow what
 * the service does now rather than since it started; count, sum and max
 * cover every sample.  Not thread-safe: the owner locks if it must.
 */
#ifndef FTVM_DAEMON_SAMPLER_H
#define FTVM_DAEMON_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#define SAMPLER_WINDOW 512

typedef struct sampler {
    uint64_t v[SAMPLER_WINDOW];
    size_t n;           /* valid entries in v, up to SAMPLER_WINDOW */
    size_t next;        /* where the next sample goes */
    uint64_t count;     /* every sample ever added */
    uint64_t last, max;
    double sum;
} sampler;

typedef struct sampler_summary {
    uint64_t count;
    uint64_t last, p50, p99, max;
    double mean;
} sampler_summary;

void sampler_init(sampler *s);
void sampler_add(sampler *s, uint64_t v);
/* All zero while there is no sample. */
void sampler_summarize(const sampler *s, sampler_summary *out);

#endif
