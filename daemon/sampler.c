/* sampler: see sampler.h. */
#include "daemon/sampler.h"

#include <stdlib.h>
#include <string.h>

void sampler_init(sampler *s)
{
    memset(s, 0, sizeof(*s));
}

void sampler_add(sampler *s, uint64_t v)
{
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
    if (!s->n)
        return;
    uint64_t sorted[SAMPLER_WINDOW];
    memcpy(sorted, s->v, s->n * sizeof(sorted[0]));
    qsort(sorted, s->n, sizeof(sorted[0]), cmp_u64);
    out->count = s->count;
    out->last = s->last;
    out->max = s->max;
    out->p50 = rank(sorted, s->n, 0.50);
    out->p99 = rank(sorted, s->n, 0.99);
    out->mean = s->sum / (double)s->count;
}
