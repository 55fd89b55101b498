/*
 * Unit tests for devices/i8042: the probe's answers and the reset line.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "devices/i8042.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_and_reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
