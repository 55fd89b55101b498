/*
 * Unit tests for devices/mptable: the structures Linux parses, their
 * checksums and bounds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "devices/mptable.h"

static uint8_t sum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    while (n--)
        s = (uint8_t)(s + *p++);
    return s;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void test_two_cpus(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t n = mptable_size(2);

    assert_true(n <= sizeof(buf));
    assert_int_equal(mptable_write(buf, sizeof(buf), MPTABLE_ADDR, 2), 0);
    assert_memory_equal(buf, "_MP_", 4);
    assert_int_equal(get32(buf + 4), MPTABLE_ADDR + 16);
    assert_int_equal(sum(buf, 16), 0);
    const uint8_t *t = buf + 16;
    assert_memory_equal(t, "PCMP", 4);
    size_t tlen = (size_t)(t[4] | t[5] << 8);
    assert_int_equal(16 + tlen, n);
    assert_int_equal(sum(t, tlen), 0);
    assert_int_equal(t[34] | t[35] << 8, 2 + 1 + 1 + 16 + 2);
    assert_int_equal(get32(t + 36), MPTABLE_LAPIC_ADDR);
    /* Two processors, APIC ids 0 and 1, the first the BSP. */
    const uint8_t *c = t + 44;
    assert_int_equal(c[0], 0);
    assert_int_equal(c[1], 0);
    assert_int_equal(c[3], 0x03);
    assert_int_equal(c[20], 0);
    assert_int_equal(c[21], 1);
    assert_int_equal(c[23], 0x01);
    /* The I/O APIC after the bus, its id after the CPUs'. */
    const uint8_t *io = c + 40 + 8;
    assert_int_equal(io[0], 2);
    assert_int_equal(io[1], 2);
    assert_int_equal(get32(io + 4), MPTABLE_IOAPIC_ADDR);
    /* ISA IRQ 4 (the UART) on pin 4. */
    const uint8_t *irq4 = io + 8 + 4 * 8;
    assert_int_equal(irq4[0], 3);
    assert_int_equal(irq4[5], 4);
    assert_int_equal(irq4[7], 4);
}

static void test_pci(void **state)
{
    (void)state;
    uint8_t buf[1024];
    mptable_pci_irq irq = { .slot = 1, .ioapic_pin = 16 };
    size_t n = mptable_size_pci(1, 1);

    assert_int_equal(n, mptable_size(1) + 16);
    assert_int_equal(mptable_write_pci(buf, sizeof(buf), MPTABLE_ADDR, 1,
                                       &irq, 1), 0);
    const uint8_t *t = buf + 16;
    size_t tlen = (size_t)(t[4] | t[5] << 8);
    assert_int_equal(16 + tlen, n);
    assert_int_equal(sum(t, tlen), 0);
    assert_int_equal(t[34] | t[35] << 8, 1 + 2 + 1 + 16 + 1 + 2);
    /* The PCI bus (id 0: Linux's PCI bus number), then ISA (id 1). */
    const uint8_t *bus = t + 44 + 20;
    assert_int_equal(bus[1], 0);
    assert_memory_equal(bus + 2, "PCI   ", 6);
    assert_int_equal(bus[8], 1);
    assert_int_equal(bus[9], 1);
    assert_memory_equal(bus + 10, "ISA   ", 6);
    assert_int_equal(bus[16 + 8 + 4], 1);       /* ISA IRQ 0 from bus 1 */
    /* After the I/O APIC and the 16 ISA entries: slot 1's INTA#. */
    const uint8_t *e = bus + 16 + 8 + 16 * 8;
    assert_int_equal(e[0], 3);
    assert_int_equal(e[2] | e[3] << 8, 0x0d);   /* active high, level */
    assert_int_equal(e[4], 0);
    assert_int_equal(e[5], 1 << 2);
    assert_int_equal(e[6], 1);                  /* the I/O APIC's id */
    assert_int_equal(e[7], 16);
    assert_int_equal(e[8], 4);                  /* then the local ones */
    /* Pins of the ISA range and slots past 31 are refused. */
    irq.ioapic_pin = 4;
    assert_int_equal(mptable_write_pci(buf, sizeof(buf), 0, 1, &irq, 1),
                     -EINVAL);
    irq = (mptable_pci_irq){ .slot = 32, .ioapic_pin = 16 };
    assert_int_equal(mptable_write_pci(buf, sizeof(buf), 0, 1, &irq, 1),
                     -EINVAL);
}

/* The PC with a network device and a disk: slot 1 on pin 16, 2 on 17. */
static void test_pci_two(void **state)
{
    (void)state;
    uint8_t buf[1024];
    const mptable_pci_irq irq[2] = { { .slot = 1, .ioapic_pin = 16 },
                                     { .slot = 2, .ioapic_pin = 17 } };
    size_t n = mptable_size_pci(2, 2);

    assert_int_equal(n, mptable_size(2) + 16 + 8);
    assert_int_equal(mptable_write_pci(buf, sizeof(buf), MPTABLE_ADDR, 2,
                                       irq, 2), 0);
    const uint8_t *t = buf + 16;
    size_t tlen = (size_t)(t[4] | t[5] << 8);
    assert_int_equal(16 + tlen, n);
    assert_int_equal(sum(t, tlen), 0);
    assert_int_equal(sum(buf, 16), 0);
    assert_int_equal(t[34] | t[35] << 8, 2 + 2 + 1 + 16 + 2 + 2);
    const uint8_t *e = t + 44 + 2 * 20 + 16 + 8 + 16 * 8;
    for (unsigned i = 0; i < 2; i++, e += 8) {
        assert_int_equal(e[0], 3);
        assert_int_equal(e[2] | e[3] << 8, 0x0d);
        assert_int_equal(e[4], 0);
        assert_int_equal(e[5], irq[i].slot << 2);
        assert_int_equal(e[6], 2);              /* the I/O APIC's id */
        assert_int_equal(e[7], irq[i].ioapic_pin);
    }
    assert_int_equal(e[0], 4);                  /* then the local ones */
}

static void test_bounds(void **state)
{
    (void)state;
    uint8_t buf[8192];

    assert_int_equal(mptable_write(buf, sizeof(buf), 0, 0), -EINVAL);
    assert_int_equal(mptable_write(buf, sizeof(buf), 0,
                                   MPTABLE_MAX_CPUS + 1), -EINVAL);
    assert_int_equal(mptable_write(buf, mptable_size(4) - 1, 0, 4), -EINVAL);
    assert_int_equal(mptable_write(buf, sizeof(buf), 0, 64), 0);
    assert_int_equal(sum(buf + 16, mptable_size(64) - 16), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_cpus),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_pci),
        cmocka_unit_test(test_pci_two),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
