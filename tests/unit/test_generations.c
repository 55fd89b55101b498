/*
 * Unit tests for witness/generations: which keys are a generation's
 * owner key, and the generation they name.  (The scan itself runs
 * against a real etcd cluster: tests/witness/claim_test.py generations.)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "witness/generations.h"

static void test_of_key(void **state)
{
    (void)state;
    assert_int_equal(generations_of_key("/ftvm/vm-1/1/owner", "vm-1"), 1);
    assert_int_equal(generations_of_key("/ftvm/vm-1/700/owner", "vm-1"),
                     700);
    assert_int_equal(generations_of_key(
                         "/ftvm/vm-1/18446744073709551615/owner", "vm-1"),
                     UINT64_MAX);
    /* Not a generation's owner key: 0. */
    const char *not_keys[] = {
        "/ftvm/vm-1/0/owner",           /* generation 0 is no generation */
        "/ftvm/vm-1/07/owner",          /* a leading zero */
        "/ftvm/vm-1/18446744073709551616/owner",    /* over 64 bits */
        "/ftvm/vm-1//owner",
        "/ftvm/vm-1/7/owner/x",
        "/ftvm/vm-1/7/other",
        "/ftvm/vm-1/7x/owner",
        "/ftvm/vm-12/7/owner",          /* another VM, a longer name */
        "/ftvm/vm/7/owner",
        "/ftvm/vm-1",
        "/xtvm/vm-1/7/owner",
        "",
    };
    for (size_t i = 0; i < sizeof(not_keys) / sizeof(not_keys[0]); i++)
        assert_int_equal(generations_of_key(not_keys[i], "vm-1"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_of_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
