/* Unit tests for witness/b64: RFC 4648's vectors, round trips, refusals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "witness/b64.h"

static void test_vectors(void **state)
{
    (void)state;
    static const char *const vec[][2] = {
        { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
        { "foobar", "Zm9vYmFy" },
    };
    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        char *e = b64_encode((const uint8_t *)vec[i][0], strlen(vec[i][0]));
        assert_non_null(e);
        assert_string_equal(e, vec[i][1]);
        free(e);
        uint8_t *d = NULL;
        size_t len = 99;
        assert_int_equal(b64_decode(vec[i][1], 64, &d, &len), 0);
        assert_int_equal(len, strlen(vec[i][0]));
        assert_memory_equal(d, vec[i][0], len);
        free(d);
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    uint8_t buf[300];
    srand(7);
    for (size_t n = 0; n < sizeof(buf); n++) {
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rand();
        char *e = b64_encode(buf, n);
        assert_non_null(e);
        assert_int_equal(strlen(e), (n + 2) / 3 * 4);
        uint8_t *d = NULL;
        size_t len = 0;
        assert_int_equal(b64_decode(e, n, &d, &len), 0);
        assert_int_equal(len, n);
        assert_memory_equal(d, buf, n);
        free(d);
        /* One byte less room than it needs: refused. */
        if (n)
            assert_int_equal(b64_decode(e, n - 1, &d, &len), -1);
        free(e);
    }
}

static void test_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Z", "Zm9v!", "Zm=9", "Zm 9v", "Zm9vY", "\xff\xfe==",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t *d = NULL;
        size_t len = 0;
        assert_int_equal(b64_decode(bad[i], 64, &d, &len), -1);
        assert_null(d);
    }
    /* The URL-safe alphabet and missing padding are accepted. */
    uint8_t *d = NULL;
    size_t len = 0;
    assert_int_equal(b64_decode("-_8", 64, &d, &len), 0);
    assert_int_equal(len, 2);
    assert_int_equal(d[0], 0xfb);
    assert_int_equal(d[1], 0xff);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
