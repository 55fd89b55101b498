/* sampler: see sampler.h. */
#include "daemon/sampler.h"

#include <stdlib.h>
#include <string.h>

const sampler_bounds sampler_ns = {
    .n = 16,
    .le = { 100000, 250000, 500000,
            1000000, 2500000, 5000000,
            10000000, 25000000, 50000000,
            100000000, 250000000, 500000000,
            1000000000, 2500000000, 5000000000, 10000000000 },
    .per_base = 1e9,
};

const sampler_bounds sampler_bytes = {
    .n = 10,
    .le = { 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
            67108864, 268435456, 1073741824 },
    .per_base = 1,
};

const sampler_bounds sampler_pages = {
    .n = 11,
    .le = { 1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576 },
    .per_base = 1,
};

void sampler_init(sampler *s, const sampler_bounds *bounds)
{
    memset(s, 0, sizeof(*s));
    s->bounds = bounds;
}

void sampler_add(sampler *s, uint64_t v)
{
    /* Few bounds: a linear search is as quick as a binary one. */
    size_t n = s->bounds ? s->bounds->n : 0, i = 0;
    while (i < n && v > s->bounds->le[i])
        i++;
    if (i < n)
        s->buckets[i]++;
    s->v[s->next] = v;
    s->next = (s->next + 1) % SAMPLER_WINDOW;
    if (s->n < SAMPLER_WINDOW)
        s->n++;
    s->count++;
    s->last = v;
    if (v > s->max)
        s->max = v;
    s->sum += (double)v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest sample with at least p of them at or below. */
static uint64_t rank(const uint64_t *sorted, size_t n, double p)
{
    size_t k = (size_t)(p * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    return sorted[(k > n ? n : k) - 1];
}

void sampler_summarize(const sampler *s, sampler_summary *out)
{
    memset(out, 0, sizeof(*out));
    out->bounds = s->bounds;
    if (!s->n)
        return;
    memcpy(out->buckets, s->buckets, sizeof(out->buckets));
    uint64_t sorted[SAMPLER_WINDOW];
    memcpy(sorted, s->v, s->n * sizeof(sorted[0]));
    qsort(sorted, s->n, sizeof(sorted[0]), cmp_u64);
    out->count = s->count;
    out->sum = s->sum;
    out->last = s->last;
    out->max = s->max;
    out->p50 = rank(sorted, s->n, 0.50);
    out->p99 = rank(sorted, s->n, 0.99);
    out->mean = s->sum / (double)s->count;
}

uint64_t sampler_cumulative(const sampler_summary *s, size_t i)
{
    if (!s->bounds || i >= s->bounds->n)
        return s->count;
    uint64_t c = 0;
    for (size_t k = 0; k <= i; k++)
        c += s->buckets[k];
    return c;
}
