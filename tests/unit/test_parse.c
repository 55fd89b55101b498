/* Unit tests for daemon/parse: durations, sizes, counts, ADDR:PORT. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "daemon/parse.h"

static void test_duration(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t ns;
    } good[] = {
        { "50ms", 50000000ull }, { "2s", 2000000000ull },
        { "2", 2000000000ull }, { "1.5s", 1500000000ull },
        { "2m", 120000000000ull }, { "2min", 120000000000ull },
        { "1h", 3600000000000ull }, { "1ms", 1000000ull },
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t ns = 0;
        assert_int_equal(parse_duration(good[i].s, &ns), 0);
        assert_int_equal(ns, good[i].ns);
    }
    static const char *const bad[] = {
        "", "ms", "fast", "5 s", "5sec", "-1s", "0", "0ms", "1e400",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ns = 7;
        assert_int_equal(parse_duration(bad[i], &ns), -EINVAL);
        assert_int_equal(ns, 7);
    }
    uint64_t ns = 7;
    /* Below a millisecond, or beyond what fits: out of range. */
    assert_int_equal(parse_duration("0.5ms", &ns), -ERANGE);
    assert_int_equal(parse_duration("1e12h", &ns), -ERANGE);
    assert_int_equal(ns, 7);
}

static void test_size(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t bytes;
    } good[] = {
        { "1048576", 1048576ull }, { "64K", 65536ull }, { "64k", 65536ull },
        { "256M", 256ull << 20 }, { "4G", 4ull << 30 },
        { "4GiB", 4ull << 30 }, { "4GB", 4ull << 30 }, { "0", 0 },
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t b = 1;
        assert_int_equal(parse_size(good[i].s, &b), 0);
        assert_int_equal(b, good[i].bytes);
    }
    static const char *const bad[] = {
        "", "lots", "M", "-1M", " 1M", "1T", "1MM", "1.5G",
        "99999999999999999999", "17179869184G",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t b = 1;
        assert_int_equal(parse_size(bad[i], &b), -EINVAL);
        assert_int_equal(b, 1);
    }
}

static void test_count(void **state)
{
    (void)state;
    long n = 0;
    assert_int_equal(parse_count("3", 1, 9, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(parse_count("-2", -5, 5, &n), 0);
    assert_int_equal(n, -2);
    n = 42;
    assert_int_equal(parse_count("0", 1, 9, &n), -ERANGE);
    assert_int_equal(parse_count("10", 1, 9, &n), -ERANGE);
    assert_int_equal(parse_count("99999999999999999999", 1, 9, &n), -ERANGE);
    assert_int_equal(parse_count("", 1, 9, &n), -EINVAL);
    assert_int_equal(parse_count("x", 1, 9, &n), -EINVAL);
    assert_int_equal(parse_count("3x", 1, 9, &n), -EINVAL);
    assert_int_equal(parse_count(" 3", 1, 9, &n), -EINVAL);
    assert_int_equal(parse_count("+3", 1, 9, &n), -EINVAL);
    assert_int_equal(n, 42);
}

static void test_hostport(void **state)
{
    (void)state;
    char host[64];
    uint16_t port = 0;
    assert_int_equal(parse_hostport("127.0.0.1:7000", host, sizeof(host),
                                    &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 7000);
    assert_int_equal(parse_hostport("[::1]:9100", host, sizeof(host),
                                    &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 9100);
    assert_int_equal(parse_hostport("example.org:0", host, sizeof(host),
                                    &port), 0);
    assert_string_equal(host, "example.org");
    assert_int_equal(port, 0);
    /* An empty host: every address, where the caller allows it. */
    assert_int_equal(parse_hostport(":9100", host, sizeof(host), &port), 0);
    assert_string_equal(host, "");
    assert_int_equal(port, 9100);

    static const char *const bad[] = {
        "nonsense", "host:", "host:x", "host:65536", "host:-1", "::1:7000",
        "[::1]", "[::1]7000", "[]:7000", "[::1:7000", "a:b:c",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        port = 5;
        assert_int_equal(parse_hostport(bad[i], host, sizeof(host), &port),
                         -EINVAL);
        assert_int_equal(port, 5);
    }
    /* A host that does not fit is refused, not cut. */
    char small[4];
    assert_int_equal(parse_hostport("abcd:1", small, sizeof(small), &port),
                     -EINVAL);
    assert_int_equal(parse_hostport("abc:1", small, sizeof(small), &port), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_hostport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
