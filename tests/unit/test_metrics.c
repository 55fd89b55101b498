/*
 * Unit tests for daemon/metrics' writer: the exposition text of each
 * call, cumulative histogram buckets whose +Inf equals the count,
 * escaping, and the names it refuses.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/metrics.h"

static metrics_writer *w;

static int setup(void **state)
{
    (void)state;
    w = metrics_writer_new();
    return w ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    metrics_writer_free(w);
    return 0;
}

static void expect_text(const char *want)
{
    const char *err = "unset";
    const char *got = metrics_writer_text(w, &err);
    assert_null(err);
    assert_non_null(got);
    assert_string_equal(got, want);
}

static void expect_refused(const char *what)
{
    const char *err = NULL;
    assert_null(metrics_writer_text(w, &err));
    assert_non_null(err);
    assert_non_null(strstr(err, what));
}

static void test_empty(void **state)
{
    (void)state;
    expect_text("");
}

static void test_counter(void **state)
{
    (void)state;
    metrics_counter(w, "ftvm_x_total", "things done", 42);
    metrics_counter(w, "ftvm_big_total", "a large one", 1e15);
    expect_text("# HELP ftvm_x_total things done\n"
                "# TYPE ftvm_x_total counter\n"
                "ftvm_x_total 42\n"
                "# HELP ftvm_big_total a large one\n"
                "# TYPE ftvm_big_total counter\n"
                "ftvm_big_total 1000000000000000\n");
}

static void test_gauge(void **state)
{
    (void)state;
    metrics_gauge(w, "ftvm_y_seconds", "a time", 0.0125);
    metrics_gauge(w, "ftvm_z", "small", 1e-7);
    expect_text("# HELP ftvm_y_seconds a time\n"
                "# TYPE ftvm_y_seconds gauge\n"
                "ftvm_y_seconds 0.0125\n"
                "# HELP ftvm_z small\n"
                "# TYPE ftvm_z gauge\n"
                "ftvm_z 1e-07\n");
}

static void test_state(void **state)
{
    (void)state;
    const char *states[] = { "setup", "active", "stopped" };
    metrics_state(w, "ftvm_s_state", "where it is", states, 3, "active");
    metrics_state(w, "ftvm_t_state", "none current", states, 2, "other");
    expect_text("# HELP ftvm_s_state where it is\n"
                "# TYPE ftvm_s_state gauge\n"
                "ftvm_s_state{state=\"setup\"} 0\n"
                "ftvm_s_state{state=\"active\"} 1\n"
                "ftvm_s_state{state=\"stopped\"} 0\n"
                "# HELP ftvm_t_state none current\n"
                "# TYPE ftvm_t_state gauge\n"
                "ftvm_t_state{state=\"setup\"} 0\n"
                "ftvm_t_state{state=\"active\"} 0\n");
}

static void test_info(void **state)
{
    (void)state;
    metrics_info(w, "ftvm_build_info", "what runs", "version", "0.1.0",
                 "role", "run", NULL);
    expect_text("# HELP ftvm_build_info what runs\n"
                "# TYPE ftvm_build_info gauge\n"
                "ftvm_build_info{version=\"0.1.0\",role=\"run\"} 1\n");
}

/* Label values escape \, " and newline; HELP escapes \ and newline. */
static void test_escaping(void **state)
{
    (void)state;
    metrics_info(w, "ftvm_e_info", "back\\slash \"quoted\"\nnext line",
                 "v", "a\\b\"c\nd", NULL);
    expect_text("# HELP ftvm_e_info back\\\\slash \"quoted\"\\nnext line\n"
                "# TYPE ftvm_e_info gauge\n"
                "ftvm_e_info{v=\"a\\\\b\\\"c\\nd\"} 1\n");
}

static const sampler_bounds ms = {
    .n = 3, .le = { 1000000, 2500000, 10000000 }, .per_base = 1e9,
};

static void test_histogram(void **state)
{
    (void)state;
    sampler s;
    sampler_summary sum;
    sampler_init(&s, &ms);
    /* 0.5 ms twice, 2.5 ms (on the bound), 5 ms, 20 ms (over all). */
    const uint64_t v[] = { 500000, 500000, 2500000, 5000000, 20000000 };
    for (size_t i = 0; i < 5; i++)
        sampler_add(&s, v[i]);
    sampler_summarize(&s, &sum);
    metrics_histogram(w, "ftvm_h_seconds", "a latency", &sum);
    expect_text("# HELP ftvm_h_seconds a latency\n"
                "# TYPE ftvm_h_seconds histogram\n"
                "ftvm_h_seconds_bucket{le=\"0.001\"} 2\n"
                "ftvm_h_seconds_bucket{le=\"0.0025\"} 3\n"
                "ftvm_h_seconds_bucket{le=\"0.01\"} 4\n"
                "ftvm_h_seconds_bucket{le=\"+Inf\"} 5\n"
                "ftvm_h_seconds_sum 0.0285\n"
                "ftvm_h_seconds_count 5\n");
}

/* Every shared bound prints as a short number, the same in every process. */
static void test_histogram_bounds(void **state)
{
    (void)state;
    sampler s;
    sampler_summary sum;
    sampler_init(&s, &sampler_ns);
    sampler_summarize(&s, &sum);
    metrics_histogram(w, "ftvm_empty_seconds", "nothing yet", &sum);
    const char *t = metrics_writer_text(w, NULL);
    assert_non_null(t);
    assert_non_null(strstr(t, "_bucket{le=\"0.0001\"} 0\n"));
    assert_non_null(strstr(t, "_bucket{le=\"0.00025\"} 0\n"));
    assert_non_null(strstr(t, "_bucket{le=\"10\"} 0\n"));
    assert_non_null(strstr(t, "ftvm_empty_seconds_bucket{le=\"+Inf\"} 0\n"
                              "ftvm_empty_seconds_sum 0\n"
                              "ftvm_empty_seconds_count 0\n"));
    /* Bucket counts never go down. */
    unsigned long long prev = 0, n;
    int buckets = 0;
    for (const char *p = t; (p = strstr(p, "_bucket{le=\"")); buckets++) {
        p = strstr(p, "} ");
        n = strtoull(p + 2, NULL, 10);
        assert_true(n >= prev);
        prev = n;
    }
    assert_int_equal(buckets, (int)sampler_ns.n + 1);
}

static void test_bad_names(void **state)
{
    (void)state;
    metrics_counter(w, "ftvm_no_suffix", "x", 1);
    expect_refused("_total");
}

static void test_bad_name_chars(void **state)
{
    (void)state;
    metrics_gauge(w, "ftvm_ok", "fine", 1);
    metrics_gauge(w, "9lives", "x", 1);
    metrics_gauge(w, "ftvm-dash", "x", 1);     /* the first is kept */
    expect_refused("'9lives'");
}

static void test_bad_info(void **state)
{
    (void)state;
    metrics_info(w, "ftvm_build", "x", "version", "1", NULL);
    expect_refused("_info");
}

static void test_bad_label(void **state)
{
    (void)state;
    metrics_info(w, "ftvm_l_info", "x", "__reserved", "1", NULL);
    expect_refused("label");
}

/* A summary from a sampler given no bounds has no buckets to print. */
static void test_histogram_no_bounds(void **state)
{
    (void)state;
    sampler s;
    sampler_summary sum;
    sampler_init(&s, NULL);
    sampler_add(&s, 1);
    sampler_summarize(&s, &sum);
    metrics_histogram(w, "ftvm_nb_seconds", "x", &sum);
    expect_refused("no bounds");
}

static void test_special_values(void **state)
{
    (void)state;
    metrics_gauge(w, "ftvm_nan", "x", 0.0 / 0.0);
    metrics_gauge(w, "ftvm_inf", "x", 1.0 / 0.0);
    metrics_gauge(w, "ftvm_neg", "x", -2.5);
    const char *t = metrics_writer_text(w, NULL);
    assert_non_null(t);
    assert_non_null(strstr(t, "\nftvm_nan NaN\n"));
    assert_non_null(strstr(t, "\nftvm_inf +Inf\n"));
    assert_non_null(strstr(t, "\nftvm_neg -2.5\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gauge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram_bounds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_name_chars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_label, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram_no_bounds, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_special_values, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
