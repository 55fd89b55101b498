/* Unit tests for checkpoint/xbzrle: known encodings, round trips, bad input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/xbzrle.h"

#define PAGE 4096
#define GUARD 64

/* A small deterministic generator, so failures can be replayed. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void fill_random(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)rnd();
}

/*
 * The format written out the slow, obvious way: maximal runs found byte by
 * byte, with the same two-bytes-of-headroom fit rule.  The real encoder
 * must agree with it on every input, output bytes and -1 alike.
 */
static int naive_encode(const uint8_t *old, const uint8_t *new, size_t len,
                        uint8_t *out, size_t out_max)
{
    size_t i = 0, d = 0;

    while (i < len) {
        size_t skip = 0, count = 0;

        if (d + 2 > out_max)
            return -1;
        while (i < len && old[i] == new[i]) {
            i++;
            skip++;
        }
        if (i == len)
            break;
        if (skip < 128) {
            out[d++] = (uint8_t)skip;
        } else {
            out[d++] = (uint8_t)(0x80 | (skip & 0x7f));
            out[d++] = (uint8_t)(skip >> 7);
        }
        if (d + 2 > out_max)
            return -1;
        while (i + count < len && old[i + count] != new[i + count])
            count++;
        if (count < 128) {
            out[d++] = (uint8_t)count;
        } else {
            out[d++] = (uint8_t)(0x80 | (count & 0x7f));
            out[d++] = (uint8_t)(count >> 7);
        }
        if (d + count > out_max)
            return -1;
        memcpy(out + d, new + i, count);
        d += count;
        i += count;
    }
    return (int)d;
}

static void test_known_encodings(void **state)
{
    uint8_t old[PAGE] = { 0 }, new[PAGE] = { 0 }, out[PAGE];
    (void)state;

    /* Equal buffers encode to nothing. */
    assert_int_equal(xbzrle_encode(old, new, PAGE, out, PAGE), 0);

    /* Three bytes changed at 3: skip 3, count 3, bytes; no trailing run. */
    memcpy(new + 3, "abc", 3);
    assert_int_equal(xbzrle_encode(old, new, 16, out, PAGE), 5);
    assert_memory_equal(out, "\x03\x03" "abc", 5);

    /* The example in docs/ram-format.md. */
    new[200] = 0xee;
    assert_int_equal(xbzrle_encode(old, new, PAGE, out, PAGE), 9);
    assert_memory_equal(out, "\x03\x03" "abc" "\xc2\x01\x01\xee", 9);

    /* A change at byte 0 starts with an empty skip. */
    memset(new, 0, sizeof(new));
    new[0] = 7;
    assert_int_equal(xbzrle_encode(old, new, 16, out, PAGE), 3);
    assert_memory_equal(out, "\x00\x01\x07", 3);

    /* Skips of 128 and more take two uleb128 bytes: 200 = c8 01. */
    memset(new, 0, sizeof(new));
    new[200] = 0xee;
    new[4095] = 0x11;
    /* then skip 4095 - 201 = 3894 = 0xf36: b6 1e */
    assert_int_equal(xbzrle_encode(old, new, PAGE, out, PAGE), 8);
    assert_memory_equal(out, "\xc8\x01\x01\xee" "\xb6\x1e\x01\x11", 8);
}

static void test_known_decodings(void **state)
{
    uint8_t page[16];
    (void)state;

    memset(page, '.', sizeof(page));
    assert_int_equal(xbzrle_decode((const uint8_t *)"\x03\x03"
                                                    "abc"
                                                    "\x02\x01Z",
                                   8, page, sizeof(page)),
                     0);
    assert_memory_equal(page, "...abc..Z.......", 16);

    /* An empty encoding leaves the page as it was. */
    assert_int_equal(xbzrle_decode(NULL, 0, page, sizeof(page)), 0);
    assert_memory_equal(page, "...abc..Z.......", 16);

    /* A change may end exactly at the end of the page. */
    assert_int_equal(
        xbzrle_decode((const uint8_t *)"\x0f\x01!", 3, page, sizeof(page)), 0);
    assert_int_equal(page[15], '!');
}

static void test_identical_and_full_diff(void **state)
{
    static uint8_t old[PAGE], new[PAGE], out[PAGE];
    (void)state;

    fill_random(old, PAGE);
    memcpy(new, old, PAGE);
    assert_int_equal(xbzrle_encode(old, new, PAGE, out, PAGE), 0);

    for (size_t i = 0; i < PAGE; i++)
        new[i] = (uint8_t)~old[i];
    assert_int_equal(xbzrle_encode(old, new, PAGE, out, PAGE), -1);

    /* With room for the headers it fits: skip 0, count 4096, the page. */
    {
        static uint8_t big[PAGE + 8];

        assert_int_equal(xbzrle_encode(old, new, PAGE, big, sizeof(big)),
                         PAGE + 3);
        assert_memory_equal(big, "\x00\x80\x20", 3);
        assert_memory_equal(big + 3, new, PAGE);
    }

    /* Longer buffers than two uleb128 bytes can describe are refused. */
    {
        uint8_t *a = calloc(1, XBZRLE_MAX_LEN + 1),
                *b = calloc(1, XBZRLE_MAX_LEN + 1);

        b[5] = 1;
        assert_int_equal(xbzrle_encode(a, b, XBZRLE_MAX_LEN + 1, out, PAGE),
                         -1);
        assert_int_equal(xbzrle_encode(a, b, XBZRLE_MAX_LEN, out, PAGE), 3);
        free(a);
        free(b);
    }
}

/* Changes new in `runs` random places, each up to maxrun bytes. */
static void scribble(uint8_t *new, size_t len, int runs, size_t maxrun)
{
    for (int r = 0; r < runs; r++) {
        size_t at = rnd() % len, n = 1 + rnd() % maxrun;

        for (size_t i = at; i < len && i < at + n; i++)
            new[i] = (uint8_t)(new[i] + 1 + rnd() % 255);
    }
}

static void roundtrip(const uint8_t *old, const uint8_t *new, size_t len,
                      size_t out_max)
{
    static uint8_t out[3 * PAGE + GUARD], ref[3 * PAGE + GUARD];
    static uint8_t page[PAGE];
    int n, m;

    memset(out + out_max, 0xa5, GUARD);
    n = xbzrle_encode(old, new, len, out, out_max);
    m = naive_encode(old, new, len, ref, out_max);
    assert_int_equal(n, m);
    for (size_t i = 0; i < GUARD; i++)
        assert_int_equal(out[out_max + i], 0xa5);
    if (n < 0)
        return;
    assert_memory_equal(out, ref, (size_t)n);
    memcpy(page, old, len);
    assert_int_equal(xbzrle_check(out, (size_t)n, len), 0);
    assert_int_equal(xbzrle_decode(out, (size_t)n, page, len), 0);
    assert_memory_equal(page, new, len);
}

static void test_random_roundtrips(void **state)
{
    static uint8_t old[PAGE], new[PAGE];
    (void)state;

    for (int iter = 0; iter < 3000; iter++) {
        size_t len = iter % 3 ? PAGE : 1 + rnd() % 200;
        int runs = (int)(rnd() % 64);
        size_t maxrun = 1 + rnd() % (iter % 5 ? 24 : 600);

        fill_random(old, len);
        memcpy(new, old, len);
        scribble(new, len, runs, maxrun);
        roundtrip(old, new, len, PAGE);
        roundtrip(old, new, len, 3 * PAGE);
    }
}

/* Diffs shaped like real memory: counters, zeroed stretches, stripes. */
static void test_structured_roundtrips(void **state)
{
    static uint8_t old[PAGE], new[PAGE];
    (void)state;

    memset(old, 0, PAGE);
    memcpy(new, old, PAGE);
    for (size_t i = 0; i < PAGE; i += 64)
        new[i]++;
    roundtrip(old, new, PAGE, PAGE);

    fill_random(old, PAGE);
    memcpy(new, old, PAGE);
    memset(new + 1000, 0, 300);
    roundtrip(old, new, PAGE, PAGE);

    /* Every other byte differs: runs of one, too big to fit a page. */
    memcpy(new, old, PAGE);
    for (size_t i = 0; i < PAGE; i += 2)
        new[i] ^= 0xff;
    roundtrip(old, new, PAGE, PAGE);
    roundtrip(old, new, PAGE, 3 * PAGE);

    /* Differences in the last bytes, across word boundaries. */
    for (size_t tail = 1; tail < 20; tail++) {
        memcpy(new, old, PAGE);
        for (size_t i = PAGE - tail; i < PAGE; i++)
            new[i] ^= 0x5a;
        roundtrip(old, new, PAGE, PAGE);
    }
}

/* Every output limit gives either the whole encoding or -1, in bounds. */
static void test_fit_limits(void **state)
{
    static uint8_t old[PAGE], new[PAGE];
    (void)state;

    for (int iter = 0; iter < 40; iter++) {
        fill_random(old, PAGE);
        memcpy(new, old, PAGE);
        scribble(new, PAGE, 1 + (int)(rnd() % 8), 40);
        for (size_t max = 0; max < 400; max++)
            roundtrip(old, new, PAGE, max);
    }
}

static void expect_bad(const char *enc, size_t len, size_t page_len)
{
    uint8_t buf[GUARD + 64 + GUARD];

    assert_true(page_len <= 64);
    memset(buf, 0xa5, sizeof(buf));
    assert_int_equal(xbzrle_check((const uint8_t *)enc, len, page_len),
                     -EINVAL);
    assert_int_equal(
        xbzrle_decode((const uint8_t *)enc, len, buf + GUARD, page_len),
        -EINVAL);
    for (size_t i = 0; i < GUARD; i++) {
        assert_int_equal(buf[i], 0xa5);
        assert_int_equal(buf[GUARD + page_len + i], 0xa5);
    }
}

static void test_malformed(void **state)
{
    (void)state;

    expect_bad("\x00", 1, 16);                  /* a lone byte */
    expect_bad("\x00\x00", 2, 16);              /* empty change */
    expect_bad("\x00\x01" "a" "\x00\x01" "b", 6, 16); /* empty later skip */
    expect_bad("\x11\x01" "a", 3, 16);          /* skip past the page */
    expect_bad("\x0f\x02" "ab", 4, 16);         /* change past the page */
    expect_bad("\x00\x05" "ab", 4, 16);         /* change past the input */
    expect_bad("\x80\x80\x01\x01" "a", 5, 16);  /* three-byte uleb128 */
    expect_bad("\x00\x81\x80" "a", 4, 16);      /* three-byte count */
    expect_bad("\x00\x01" "a" "\x01", 4, 16);   /* dangling skip */
    expect_bad("\x00\x01" "a" "\x01\x01", 5, 16); /* count with no bytes */
    expect_bad("\x01", 1, 16);
    expect_bad("\xff\x7f\x01" "a", 4, 64);      /* skip 16383 */
}

/* Random garbage never writes outside the page and check == decode. */
static void test_fuzz_decode(void **state)
{
    static uint8_t in[600], buf[GUARD + 64 + GUARD];
    (void)state;

    for (int iter = 0; iter < 200000; iter++) {
        size_t len = rnd() % 40, page_len = 1 + rnd() % 64;
        int c, d;

        for (size_t i = 0; i < len; i++) {
            uint32_t r = rnd();

            in[i] = (uint8_t)(r & 1 ? r >> 8 & 0x0f : r >> 8);
        }
        memset(buf, 0xa5, sizeof(buf));
        c = xbzrle_check(in, len, page_len);
        d = xbzrle_decode(in, len, buf + GUARD, page_len);
        assert_int_equal(c, d);
        assert_true(d == 0 || d == -EINVAL);
        for (size_t i = 0; i < GUARD; i++) {
            assert_int_equal(buf[i], 0xa5);
            assert_int_equal(buf[GUARD + page_len + i], 0xa5);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_encodings),
        cmocka_unit_test(test_known_decodings),
        cmocka_unit_test(test_identical_and_full_diff),
        cmocka_unit_test(test_random_roundtrips),
        cmocka_unit_test(test_structured_roundtrips),
        cmocka_unit_test(test_fit_limits),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_fuzz_decode),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
