/*
 * Unit tests for vm/precopy's end rule: when the live copy of a running
 * VM's RAM stops, judged from the RAM codec's figures for each pass.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "vm/precopy.h"

/* A pass that sent `normal` pages with data and left `remaining` dirty. */
static bool pass(precopy_stats *st, uint64_t normal, uint64_t remaining)
{
    ram_save_stats rs = { .normal_pages = normal, .remaining = remaining };
    return precopy_account(st, remaining == 0, &rs, 0);
}

/*
 * The small tail of a large sweep does not end it: the guest ran for the
 * whole sweep, and what it dirtied meanwhile is what the pause would copy.
 */
static void test_tail_of_a_big_sweep_goes_on(void **state)
{
    (void)state;
    precopy_stats st;
    precopy_begin(&st, 1u << 20);
    assert_false(pass(&st, 16384, 20000));
    assert_false(pass(&st, 16384, 100));
    assert_false(pass(&st, 100, 0));        /* 32868 pages in the sweep */
    assert_int_equal(st.sweeps, 1);
    assert_int_equal(st.last_sweep_pages, 32868);
    assert_int_equal(st.end, PRECOPY_RUNNING);
    /* The next sweep is small: now it ends. */
    assert_true(pass(&st, 3000, 0));
    assert_int_equal(st.end, PRECOPY_CONVERGED);
    assert_int_equal(st.sweeps, 2);
    assert_int_equal(st.passes, 4);
    assert_int_equal(st.pages, 32868 + 3000);
}

static void test_limit_is_inclusive(void **state)
{
    (void)state;
    precopy_stats st;
    precopy_begin(&st, 1u << 20);
    assert_false(pass(&st, PRECOPY_FINAL_PAGES + 1, 0));
    assert_true(pass(&st, PRECOPY_FINAL_PAGES, 0));
    assert_int_equal(st.end, PRECOPY_CONVERGED);
}

/* Zero and unchanged pages count: the pause has to look at each. */
static void test_every_page_kind_counts(void **state)
{
    (void)state;
    precopy_stats st;
    precopy_begin(&st, 1u << 20);
    ram_save_stats rs = {
        .zero_pages = 1000, .normal_pages = 1000, .compressed_pages = 1000,
        .xbzrle_pages = 1000, .unchanged_pages = 97, .remaining = 0,
    };
    assert_false(precopy_account(&st, 1, &rs, 0));
    assert_int_equal(st.last_sweep_pages, 4097);
    rs.unchanged_pages = 96;
    assert_true(precopy_account(&st, 1, &rs, 0));
    assert_int_equal(st.pages, 4097 + 4096);
}

/* A guest dirtying faster than the sink takes it: the budget ends it. */
static void test_budget(void **state)
{
    (void)state;
    const uint64_t ram = 10000;
    precopy_stats st;
    precopy_begin(&st, ram);
    assert_int_equal(st.budget, ram * PRECOPY_BUDGET_ROUNDS);
    uint64_t passes = 0;
    while (!pass(&st, 5000, 1))
        passes++;
    assert_int_equal(st.end, PRECOPY_BUDGET);
    assert_int_equal(st.pages, ram * PRECOPY_BUDGET_ROUNDS);
    assert_int_equal(passes + 1, ram * PRECOPY_BUDGET_ROUNDS / 5000);
    assert_int_equal(st.sweeps, 0);
}

/*
 * A disk's chunks weigh their bytes in pages: a guest that only writes
 * its disk neither converges on RAM's clean passes nor runs forever.
 */
static void test_disk_chunks_count(void **state)
{
    (void)state;
    precopy_stats st;
    precopy_begin(&st, 1u << 20);
    ram_save_stats rs = { .remaining = 0 };
    /* RAM clean, 17 chunks sent: 4352 pages, over the final sweep. */
    assert_false(precopy_account(&st, 1, &rs, 17));
    assert_int_equal(st.last_sweep_pages, 17 * PRECOPY_PAGES_PER_CHUNK);
    /* 16 chunks: 4096 pages, small enough. */
    assert_true(precopy_account(&st, 1, &rs, 16));
    assert_int_equal(st.end, PRECOPY_CONVERGED);
    /* A disk that never comes clean (iterate_rc 0) meets the budget. */
    precopy_begin(&st, 1000);
    unsigned n = 0;
    while (!precopy_account(&st, 0, &rs, 8))
        n++;
    assert_int_equal(st.end, PRECOPY_BUDGET);
    assert_true(n < 1000 * PRECOPY_BUDGET_ROUNDS / PRECOPY_PAGES_PER_CHUNK);
}

/* Counting restarts with each run. */
static void test_begin_resets(void **state)
{
    (void)state;
    precopy_stats st;
    precopy_begin(&st, 100);
    pass(&st, 50000, 7);
    precopy_begin(&st, 100);
    assert_int_equal(st.pages, 0);
    assert_int_equal(st.sweep_pages, 0);
    assert_int_equal(st.passes, 0);
    assert_int_equal(st.end, PRECOPY_RUNNING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tail_of_a_big_sweep_goes_on),
        cmocka_unit_test(test_limit_is_inclusive),
        cmocka_unit_test(test_every_page_kind_counts),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_disk_chunks_count),
        cmocka_unit_test(test_begin_resets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
