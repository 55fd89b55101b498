/* Unit tests for daemon/sampler: last, percentiles, max over a window. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "daemon/sampler.h"

static void test_empty(void **state)
{
    (void)state;
    sampler s;
    sampler_summary sum;
    sampler_init(&s);
    sampler_summarize(&s, &sum);
    assert_int_equal(sum.count, 0);
    assert_int_equal(sum.p99, 0);
}

static void test_percentiles(void **state)
{
    (void)state;
    sampler s;
    sampler_summary sum;
    sampler_init(&s);
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
}

/* Percentiles follow the newest samples; max and count keep all. */
static void test_window(void **state)
{
    (void)state;
    sampler s;
    sampler_summary sum;
    sampler_init(&s);
    sampler_add(&s, 1000000);
    for (int i = 0; i < SAMPLER_WINDOW; i++)
        sampler_add(&s, 7);
    sampler_summarize(&s, &sum);
    assert_int_equal(sum.count, SAMPLER_WINDOW + 1);
    assert_int_equal(sum.p99, 7);
    assert_int_equal(sum.max, 1000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
