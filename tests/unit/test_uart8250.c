/*
 * Unit tests for devices/uart8250: what the guest's driver sees of the
 * registers, the output and the interrupt line.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "devices/uart8250.h"

typedef struct sink {
    char out[64];
    size_t n;
    int edges;          /* 0 -> 1 transitions */
    bool level;
} sink;

static int out(void *opaque, const void *buf, size_t len)
{
    sink *s = opaque;
    memcpy(s->out + s->n, buf, len);
    s->n += len;
    return 0;
}

static void irq(void *opaque, bool level)
{
    sink *s = opaque;
    if (level && !s->level)
        s->edges++;
    s->level = level;
}

static void test_output_and_thri(void **state)
{
    (void)state;
    sink s = { 0 };
    uart8250 u;
    uart8250_init(&u, out, &s, irq, &s);

    assert_int_equal(uart8250_read(&u, 2) & 0x0f, 0x01);   /* no interrupt */
    assert_int_equal(uart8250_read(&u, 5) & 0x60, 0x60);   /* THRE, TEMT */
    uart8250_write(&u, 0, 'h');
    uart8250_write(&u, 0, 'i');
    assert_int_equal(s.n, 2);
    assert_memory_equal(s.out, "hi", 2);
    assert_false(s.level);          /* IER off: no interrupt */

    /* Enabling THRI with THR empty interrupts at once; reading IIR acks. */
    uart8250_write(&u, 1, 0x02);
    assert_true(s.level);
    assert_int_equal(uart8250_read(&u, 2) & 0x0f, 0x02);
    assert_false(s.level);
    assert_int_equal(uart8250_read(&u, 2) & 0x0f, 0x01);
    /* Each byte sent is a fresh edge. */
    uart8250_write(&u, 0, '!');
    assert_true(s.level);
    assert_int_equal(s.edges, 2);
}

static void test_dlab_scratch_fifo(void **state)
{
    (void)state;
    sink s = { 0 };
    uart8250 u;
    uart8250_init(&u, out, &s, irq, &s);

    uart8250_write(&u, 3, 0x83);    /* DLAB, 8 bits */
    uart8250_write(&u, 0, 0x01);
    uart8250_write(&u, 1, 0x00);
    assert_int_equal(uart8250_read(&u, 0), 0x01);
    assert_int_equal(s.n, 0);       /* DLL, not THR */
    uart8250_write(&u, 3, 0x03);
    uart8250_write(&u, 7, 0x5a);
    assert_int_equal(uart8250_read(&u, 7), 0x5a);
    uart8250_write(&u, 2, 0x07);    /* FIFOs on: a 16550A */
    assert_int_equal(uart8250_read(&u, 2) & 0xc0, 0xc0);
}

static void test_loopback_and_input(void **state)
{
    (void)state;
    sink s = { 0 };
    uart8250 u;
    uart8250_init(&u, out, &s, irq, &s);

    uart8250_write(&u, 4, 0x10 | 0x0a);     /* loop, RTS, OUT2 */
    assert_int_equal(uart8250_read(&u, 6) & 0xf0, 0x90);   /* CTS, DCD */
    uart8250_write(&u, 0, 'x');
    assert_int_equal(s.n, 0);
    assert_int_equal(uart8250_read(&u, 5) & 0x01, 0x01);
    assert_int_equal(uart8250_read(&u, 0), 'x');
    uart8250_write(&u, 4, 0x08);

    uart8250_write(&u, 1, 0x01);            /* RDI */
    assert_false(s.level);
    uint8_t in[UART8250_RX_MAX + 10];
    memset(in, 'a', sizeof(in));
    assert_int_equal(uart8250_receive(&u, in, sizeof(in)), UART8250_RX_MAX);
    assert_true(s.level);
    assert_int_equal(uart8250_read(&u, 2) & 0x0f, 0x04);
    for (unsigned i = 0; i < UART8250_RX_MAX; i++)
        assert_int_equal(uart8250_read(&u, 0), 'a');
    assert_false(s.level);
    assert_int_equal(uart8250_read(&u, 5) & 0x01, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_and_thri),
        cmocka_unit_test(test_dlab_scratch_fifo),
        cmocka_unit_test(test_loopback_and_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
