/*
 * Unit tests for devices/i8042: the probe's answers and the reset line.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "devices/cmos.h"
#include "devices/i8042.h"
#include "devround.h"

static void test_probe_and_reset(void **state)
{
    (void)state;
    i8042 k;
    i8042_init(&k);

    /* Nothing waiting, input buffer free (what reboot's kb_wait needs). */
    assert_int_equal(i8042_read(&k, 0x64) & 0x03, 0);
    assert_false(i8042_write(&k, 0x64, 0x20));      /* read CTR */
    assert_int_equal(i8042_read(&k, 0x64) & 0x01, 0x01);
    assert_int_equal(i8042_read(&k, 0x60), 0x30);
    assert_false(i8042_write(&k, 0x64, 0x60));      /* write CTR */
    assert_false(i8042_write(&k, 0x60, 0x45));
    assert_false(i8042_write(&k, 0x64, 0x20));
    assert_int_equal(i8042_read(&k, 0x60), 0x45);
    assert_false(i8042_write(&k, 0x64, 0xaa));
    assert_int_equal(i8042_read(&k, 0x60), 0x55);
    assert_false(i8042_write(&k, 0x60, 0xf2));      /* to no keyboard */
    assert_true(i8042_write(&k, 0x64, 0xfe));       /* pulse reset */
    assert_false(i8042_write(&k, 0x64, 0xd1));
    assert_true(i8042_write(&k, 0x60, 0xfe));       /* reset line low */
}

/* The controller's bytes and the CMOS index survive a save and load. */
static void test_state_round_trip(void **state)
{
    (void)state;
    i8042 a, b;
    char why[256] = "";
    i8042_init(&a);
    i8042_init(&b);
    i8042_write(&a, 0x64, 0x60);
    i8042_write(&a, 0x60, 0x47);
    i8042_write(&a, 0x64, 0x20);                    /* CTR waits */
    i8042_write(&a, 0x64, 0xaa);                    /* and 0x55 */
    i8042_write(&a, 0x64, 0xd1);                    /* a command waits */
    size_t len;
    uint8_t *buf = devround_save(&i8042_desc, &a, &len);
    assert_non_null(buf);
    assert_int_equal(devround_load(&i8042_desc, &b, buf, len, why,
                                   sizeof(why)), 0);
    assert_int_equal(i8042_read(&b, 0x60), 0x47);
    assert_int_equal(i8042_read(&b, 0x60), 0x55);
    assert_true(i8042_write(&b, 0x60, 0xfe));       /* 0xd1's data byte */
    /* ctr, outport, pending: a waiting command that takes no data. */
    i8042 before = b;
    buf[2] = 0xaa;
    assert_int_equal(devround_load(&i8042_desc, &b, buf, len, why,
                                   sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "command 0xaa"));
    /* out_len (be32 at byte 3) over the 4 bytes. */
    buf[2] = 0xd1;
    buf[6] = 5;
    assert_true(devround_load(&i8042_desc, &b, buf, len, why,
                              sizeof(why)) < 0);
    assert_memory_equal(&b, &before, sizeof(b));
    free(buf);

    cmos c = { 0 }, d = { 0 };
    cmos_write(&c, 0x70, 0x8b);                     /* NMI bit dropped */
    buf = devround_save(&cmos_desc, &c, &len);
    assert_non_null(buf);
    assert_int_equal(len, 1);
    assert_int_equal(devround_load(&cmos_desc, &d, buf, len, why,
                                   sizeof(why)), 0);
    assert_int_equal(cmos_read(&d, 0x71), 0x02);    /* register B */
    buf[0] = 0x80;
    assert_int_equal(devround_load(&cmos_desc, &d, buf, len, why,
                                   sizeof(why)), -EINVAL);
    assert_int_equal(d.index, 0x0b);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_and_reset),
        cmocka_unit_test(test_state_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
