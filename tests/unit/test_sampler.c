/*
 * Unit tests for daemon/sampler: the histogram's buckets since the start,
 * and last, percentiles, max over the window.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "daemon/sampler.h"

static const sampler_bounds tens = {
    .n = 3, .le = { 10, 20, 30 }, .per_base = 1,
};

static void test_empty(void **state)
{
    (void)state;
    sampler s;
    sampler_summary sum;
    sampler_init(&s, &tens);
    sampler_summarize(&s, &sum);
    assert_int_equal(sum.count, 0);
    assert_int_equal(sum.p99, 0);
    assert_ptr_equal(sum.bounds, &tens);
    for (size_t i = 0; i <= tens.n; i++)
        assert_int_equal(sampler_cumulative(&sum, i), 0);
}

static void test_percentiles(void **state)
{
    (void)state;
    sampler s;
    sampler_summary sum;
    sampler_init(&s, &tens);
    /* 1..100 in a shuffled order. */
    for (uint64_t i = 0; i < 100; i++)
        sampler_add(&s, (i * 37) % 100 + 1);
    sampler_summarize(&s, &sum);
    assert_int_equal(sum.count, 100);
    assert_int_equal(sum.p50, 50);
    assert_int_equal(sum.p99, 99);
    assert_int_equal(sum.max, 100);
    assert_int_equal(sum.last, (99 * 37) % 100 + 1);
    assert_true(sum.mean > 50.49 && sum.mean < 50.51);
    assert_true(sum.sum == 5050.0);
}

/* A bound is inclusive: 10 is in le=10, 11 in le=20, 31 only in +Inf. */
static void test_buckets(void **state)
{
    (void)state;
    sampler s;
    sampler_summary sum;
    sampler_init(&s, &tens);
    const uint64_t v[] = { 0, 10, 11, 20, 20, 25, 30, 31, 1000 };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        sampler_add(&s, v[i]);
    sampler_summarize(&s, &sum);
    assert_int_equal(sum.buckets[0], 2);
    assert_int_equal(sum.buckets[1], 3);
    assert_int_equal(sum.buckets[2], 2);
    assert_int_equal(sampler_cumulative(&sum, 0), 2);
    assert_int_equal(sampler_cumulative(&sum, 1), 5);
    assert_int_equal(sampler_cumulative(&sum, 2), 7);
    assert_int_equal(sampler_cumulative(&sum, 3), 9);     /* +Inf */
    assert_int_equal(sum.count, 9);
}

/* Percentiles follow the newest samples; max, count and buckets keep all. */
static void test_window(void **state)
{
    (void)state;
    sampler s;
    sampler_summary sum;
    sampler_init(&s, &tens);
    sampler_add(&s, 1000000);
    for (int i = 0; i < SAMPLER_WINDOW; i++)
        sampler_add(&s, 7);
    sampler_summarize(&s, &sum);
    assert_int_equal(sum.count, SAMPLER_WINDOW + 1);
    assert_int_equal(sum.p99, 7);
    assert_int_equal(sum.max, 1000000);
    assert_int_equal(sampler_cumulative(&sum, 0), SAMPLER_WINDOW);
    assert_int_equal(sampler_cumulative(&sum, tens.n), SAMPLER_WINDOW + 1);
}

/* The shared bounds ascend and fit; a time's unit turns ns into seconds. */
static void test_shared_bounds(void **state)
{
    (void)state;
    const sampler_bounds *all[] = { &sampler_ns, &sampler_bytes,
                                    &sampler_pages };
    for (size_t k = 0; k < 3; k++) {
        assert_true(all[k]->n > 0 && all[k]->n <= SAMPLER_MAX_BOUNDS);
        for (size_t i = 1; i < all[k]->n; i++)
            assert_true(all[k]->le[i] > all[k]->le[i - 1]);
    }
    assert_true(sampler_ns.le[0] / sampler_ns.per_base == 0.0001);
    assert_true(sampler_ns.le[sampler_ns.n - 1] / sampler_ns.per_base == 10.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_shared_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
