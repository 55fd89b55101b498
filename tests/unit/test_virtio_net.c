/*
 * Unit tests for devices/virtio_net (and the pci, virtio_pci and virtq
 * modules under it): a driver's setup through the PCI configuration and
 * BAR 0, a frame each way through guest memory, a hostile driver's
 * rings refused, and the state saved and loaded back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "devices/pci.h"
#include "devices/virtio_net.h"
#include "devround.h"

/* Guest RAM: GUEST_SIZE bytes at GUEST_BASE. */
#define GUEST_BASE 0x100000u
#define GUEST_SIZE 0x10000u
#define DESC   (GUEST_BASE + 0x0000u)  /* each queue's rings, 8 entries */
#define AVAIL  (GUEST_BASE + 0x0100u)
#define USED   (GUEST_BASE + 0x0200u)
#define QSTEP  0x1000u                  /* queue 1's rings after queue 0's */
#define BUF    (GUEST_BASE + 0x8000u)

typedef struct guest {
    uint8_t ram[GUEST_SIZE];
    unsigned dirty;
    uint8_t sent[2048];
    size_t sent_len;
    unsigned sends;
    bool level;
    unsigned raises;
} guest;

static guest g;

static void *ptr(void *opaque, uint64_t gpa, uint64_t len)
{
    guest *x = opaque;
    if (gpa < GUEST_BASE || len > GUEST_SIZE ||
        gpa - GUEST_BASE > GUEST_SIZE - len)
        return NULL;
    return x->ram + (gpa - GUEST_BASE);
}

static void dirty(void *opaque, uint64_t gpa, uint64_t len)
{
    (void)gpa;
    (void)len;
    ((guest *)opaque)->dirty++;
}

static int tx(void *opaque, const void *frame, size_t len)
{
    guest *x = opaque;
    memcpy(x->sent, frame, len);
    x->sent_len = len;
    x->sends++;
    return 0;
}

static void irq(void *opaque, bool level)
{
    guest *x = opaque;
    if (level && !x->level)
        x->raises++;
    x->level = level;
}

static const uint8_t MAC[6] = { 0x02, 0x46, 0x54, 0x56, 0x4d, 0x01 };

static void w(virtio_net *n, uint64_t off, unsigned len, uint32_t v)
{
    uint8_t d[4];
    for (unsigned i = 0; i < 4; i++)
        d[i] = (uint8_t)(v >> (8 * i));
    virtio_net_mmio(n, off, true, d, len);
}

static uint32_t r(virtio_net *n, uint64_t off, unsigned len)
{
    uint8_t d[4] = { 0 };
    virtio_net_mmio(n, off, false, d, len);
    return d[0] | d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

static void put16(uint64_t gpa, uint16_t v)
{
    uint8_t *p = ptr(&g, gpa, 2);
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get16(uint64_t gpa)
{
    uint8_t *p = ptr(&g, gpa, 2);
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(uint64_t gpa)
{
    return get16(gpa) | (uint32_t)get16(gpa + 2) << 16;
}

static void put_desc(unsigned q, unsigned i, uint64_t addr, uint32_t len,
                     uint16_t flags, uint16_t next)
{
    uint8_t *d = ptr(&g, DESC + q * QSTEP + 16u * i, 16);
    for (unsigned k = 0; k < 8; k++)
        d[k] = (uint8_t)(addr >> (8 * k));
    for (unsigned k = 0; k < 4; k++)
        d[8 + k] = (uint8_t)(len >> (8 * k));
    d[12] = (uint8_t)flags;
    d[13] = (uint8_t)(flags >> 8);
    d[14] = (uint8_t)next;
    d[15] = (uint8_t)(next >> 8);
}

/* Makes head available on queue q (its avail idx goes up by one). */
static void make_avail(unsigned q, uint16_t head)
{
    uint64_t av = AVAIL + q * QSTEP;
    uint16_t idx = get16(av + 2);
    put16(av + 4 + 2u * (idx % 8), head);
    put16(av + 2, (uint16_t)(idx + 1));
}

/* What Linux's virtio_pci_modern and virtio_net do, in that order. */
static void driver_setup(virtio_net *n)
{
    memset(&g, 0, sizeof(g));
    virtq_mem mem = { .ptr = ptr, .dirty = dirty, .opaque = &g };
    virtio_net_init(n, MAC, &mem, tx, &g, irq, &g);
    w(n, 0x14, 1, 0);
    w(n, 0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    w(n, 0x00, 4, 1);
    assert_int_equal(r(n, 0x04, 4), 1);     /* VERSION_1 */
    w(n, 0x00, 4, 0);
    assert_int_equal(r(n, 0x04, 4), (1u << 5) | (1u << 16));
    w(n, 0x08, 4, 0);
    w(n, 0x0c, 4, (1u << 5) | (1u << 16));
    w(n, 0x08, 4, 1);
    w(n, 0x0c, 4, 1);
    w(n, 0x14, 1, 0x0b);
    assert_int_equal(r(n, 0x14, 1), 0x0b);  /* FEATURES_OK kept */
    assert_int_equal(r(n, 0x12, 2), 2);     /* num_queues */
    for (unsigned q = 0; q < 2; q++) {
        w(n, 0x16, 2, q);
        assert_int_equal(r(n, 0x18, 2), VIRTIO_NET_QUEUE_MAX);
        w(n, 0x18, 2, 8);
        assert_int_equal(r(n, 0x1a, 2), 0xffff);    /* no MSI-X */
        w(n, 0x20, 4, DESC + q * QSTEP);
        w(n, 0x24, 4, 0);
        w(n, 0x28, 4, AVAIL + q * QSTEP);
        w(n, 0x2c, 4, 0);
        w(n, 0x30, 4, USED + q * QSTEP);
        w(n, 0x34, 4, 0);
        assert_int_equal(r(n, 0x1e, 2), q);         /* notify offset */
        w(n, 0x1c, 2, 1);
        assert_int_equal(r(n, 0x1c, 2), 1);
    }
    w(n, 0x14, 1, 0x0f);
    assert_true(virtio_pci_live(&n->vp));
}

static void test_pci_config(void **state)
{
    (void)state;
    static virtio_net n;
    driver_setup(&n);
    pci_host h;
    pci_host_init(&h);
    h.slot[1] = &n.vp.pci;

    uint8_t d[4] = { 0x00, 0x08, 0x00, 0x80 };      /* 00:01.0, reg 0 */
    pci_host_io(&h, PCI_CONFIG_ADDRESS, true, d, 4);
    pci_host_io(&h, PCI_CONFIG_DATA, false, d, 4);
    assert_int_equal(d[0] | d[1] << 8, 0x1af4);
    assert_int_equal(d[2] | d[3] << 8, 0x1041);
    /* An empty slot reads all ones. */
    uint8_t e[4] = { 0x00, 0x10, 0x00, 0x80 };
    pci_host_io(&h, PCI_CONFIG_ADDRESS, true, e, 4);
    pci_host_io(&h, PCI_CONFIG_DATA + 2, false, e, 2);
    assert_int_equal(e[0] & e[1], 0xff);
    /* The capability list: common, ISR, device, notify (multiplier 4). */
    assert_int_equal(pci_func_read(&n.vp.pci, 0x06, 2) & 0x10, 0x10);
    unsigned at = pci_func_read(&n.vp.pci, 0x34, 1), types[4], k = 0;
    while (at && k < 4) {
        assert_int_equal(pci_func_read(&n.vp.pci, at, 1), 0x09);
        types[k++] = pci_func_read(&n.vp.pci, at + 3, 1);
        if (types[k - 1] == 2)
            assert_int_equal(pci_func_read(&n.vp.pci, at + 16, 4), 4);
        at = pci_func_read(&n.vp.pci, at + 1, 1);
    }
    assert_int_equal(k, 4);
    assert_int_equal(types[0], 1);
    assert_int_equal(types[3], 2);
    /* BAR 0 sizes as hardware does and decodes only with MEMORY on. */
    pci_func_write(&n.vp.pci, 0x10, 4, 0xffffffffu);
    assert_int_equal(pci_func_read(&n.vp.pci, 0x10, 4),
                     ~(VIRTIO_PCI_BAR_SIZE - 1));
    pci_func_write(&n.vp.pci, 0x10, 4, 0xe0000000u);
    uint64_t off;
    assert_false(pci_func_mmio(&n.vp.pci, 0xe0001000u, &off));
    pci_func_write(&n.vp.pci, 0x04, 2, PCI_COMMAND_MEMORY);
    assert_true(pci_func_mmio(&n.vp.pci, 0xe0001000u, &off));
    assert_int_equal(off, 0x1000);
    assert_false(pci_func_mmio(&n.vp.pci, 0xe0004000u, &off));
    /* The MAC and the link in the device configuration. */
    for (unsigned i = 0; i < 6; i++)
        assert_int_equal(r(&n, VIRTIO_PCI_DEVCFG + i, 1), MAC[i]);
    assert_int_equal(r(&n, VIRTIO_PCI_DEVCFG + 6, 2), 1);
}

static void test_receive_and_transmit(void **state)
{
    (void)state;
    static virtio_net n;
    driver_setup(&n);
    uint8_t frame[60];
    for (unsigned i = 0; i < sizeof(frame); i++)
        frame[i] = (uint8_t)(i * 7);

    assert_int_equal(virtio_net_receive(&n, frame, sizeof(frame)), 0);
    put_desc(0, 3, BUF, 1526, 2, 0);            /* device-writable */
    make_avail(0, 3);
    /* The kick of the receive queue says: deliver what was kept. */
    uint8_t k[2] = { 0, 0 };
    assert_true(virtio_net_mmio(&n, VIRTIO_PCI_NOTIFY, true, k, 2));
    assert_true(virtio_net_rx_ready(&n));
    assert_int_equal(virtio_net_receive(&n, frame, sizeof(frame)), 1);
    assert_int_equal(get16(USED + 2), 1);
    assert_int_equal(get32(USED + 4), 3);
    assert_int_equal(get32(USED + 8), 12 + sizeof(frame));
    assert_int_equal(get16(BUF + 10), 1);       /* num_buffers */
    assert_memory_equal(ptr(&g, BUF + 12, sizeof(frame)), frame,
                        sizeof(frame));
    assert_true(g.dirty > 0);
    assert_true(g.level);
    assert_int_equal(r(&n, VIRTIO_PCI_ISR, 1), 1);  /* read clears */
    assert_false(g.level);
    assert_int_equal(r(&n, VIRTIO_PCI_ISR, 1), 0);
    assert_false(virtio_net_rx_ready(&n));

    /* Transmit: the header and the frame in two descriptors. */
    put_desc(1, 0, BUF + 0x1000, 12, 1, 1);
    put_desc(1, 1, BUF + 0x1100, sizeof(frame), 0, 0);
    memcpy(ptr(&g, BUF + 0x1100, sizeof(frame)), frame, sizeof(frame));
    make_avail(1, 0);
    w(&n, VIRTIO_PCI_NOTIFY + 4, 2, 1);
    assert_int_equal(g.sends, 1);
    assert_int_equal(g.sent_len, sizeof(frame));
    assert_memory_equal(g.sent, frame, sizeof(frame));
    assert_int_equal(get16(USED + QSTEP + 2), 1);
    assert_int_equal(n.tx_frames, 1);
    assert_true(g.level);
    /* Reset: status 0 disables the queues; nothing live. */
    w(&n, 0x14, 1, 0);
    assert_false(virtio_pci_live(&n.vp));
    assert_int_equal(virtio_net_receive(&n, frame, sizeof(frame)), 0);
}

static void test_hostile_rings(void **state)
{
    (void)state;
    static virtio_net n;
    uint8_t frame[60] = { 0 };

    /* A chain that loops back on itself. */
    driver_setup(&n);
    put_desc(1, 0, BUF, 12, 1, 1);
    put_desc(1, 1, BUF, 12, 1, 0);
    make_avail(1, 0);
    w(&n, VIRTIO_PCI_NOTIFY + 4, 2, 1);
    assert_int_equal(g.sends, 0);
    assert_true(r(&n, 0x14, 1) & VIRTIO_STATUS_NEEDS_RESET);
    assert_non_null(strstr(n.why, "loop"));
    assert_int_equal(r(&n, VIRTIO_PCI_ISR, 1), VIRTIO_ISR_CONFIG);

    /* The driver's index far ahead of the device's. */
    driver_setup(&n);
    put16(AVAIL + 2, 100);
    assert_int_equal(virtio_net_receive(&n, frame, sizeof(frame)), -EPROTO);
    assert_non_null(strstr(n.why, "ahead"));
    assert_false(virtio_pci_live(&n.vp));

    /* A buffer outside RAM, and a head past the queue. */
    driver_setup(&n);
    put_desc(0, 0, GUEST_BASE + GUEST_SIZE - 8, 64, 2, 0);
    make_avail(0, 0);
    assert_int_equal(virtio_net_receive(&n, frame, sizeof(frame)), -EPROTO);
    assert_non_null(strstr(n.why, "not in RAM"));
    driver_setup(&n);
    make_avail(0, 9);
    assert_int_equal(virtio_net_receive(&n, frame, sizeof(frame)), -EPROTO);
    assert_non_null(strstr(n.why, "chain head 9"));

    /* Rings outside RAM: the queue is not enabled. */
    driver_setup(&n);
    w(&n, 0x14, 1, 0);
    w(&n, 0x14, 1, 3);
    w(&n, 0x16, 2, 0);
    w(&n, 0x20, 4, 0x10);
    w(&n, 0x1c, 2, 1);
    assert_int_equal(r(&n, 0x1c, 2), 0);
    assert_true(r(&n, 0x14, 1) & VIRTIO_STATUS_NEEDS_RESET);
    /* A queue size not a power of two is ignored. */
    w(&n, 0x14, 1, 0);
    w(&n, 0x16, 2, 0);
    w(&n, 0x18, 2, 3);
    assert_int_equal(r(&n, 0x18, 2), VIRTIO_NET_QUEUE_MAX);
}

static void test_state_round_trip(void **state)
{
    (void)state;
    static virtio_net a, b;
    char why[256] = "";
    uint8_t frame[60] = { 1 };

    driver_setup(&a);
    put_desc(0, 0, BUF, 1526, 2, 0);
    make_avail(0, 0);
    assert_int_equal(virtio_net_receive(&a, frame, sizeof(frame)), 1);
    size_t len;
    uint8_t *buf = devround_save(&virtio_net_desc, &a, &len);
    assert_non_null(buf);
    virtq_mem mem = { .ptr = ptr, .dirty = dirty, .opaque = &g };
    virtio_net_init(&b, (const uint8_t[6]){ 0x02 }, &mem, tx, &g, irq, &g);
    assert_int_equal(devround_load(&virtio_net_desc, &b, buf, len, why,
                                   sizeof(why)), 0);
    assert_int_equal(b.vp.status, 0x0f);
    assert_int_equal(b.vp.driver_features, VIRTIO_NET_FEATURES);
    assert_memory_equal(b.mac, MAC, 6);
    assert_int_equal(b.rx_frames, 1);
    assert_true(b.vp.level);
    for (unsigned q = 0; q < 2; q++) {
        assert_int_equal(b.vp.q[q].size, 8);
        assert_true(b.vp.q[q].enabled);
        assert_int_equal(b.vp.q[q].desc, DESC + q * QSTEP);
        assert_int_equal(b.vp.q[q].used, USED + q * QSTEP);
    }
    assert_int_equal(b.vp.q[0].last_avail, 1);
    assert_int_equal(b.vp.q[0].used_idx, 1);
    assert_int_equal(b.vp.pci.bar0, a.vp.pci.bar0);
    free(buf);

    /* Refusals name what is wrong; the target is left as it was. */
    static virtio_net bad;
    struct { const char *want; void (*edit)(virtio_net *); } cases[] = {
        { "virtio-net: queue 1: size 3", NULL },
        { "virtio-net: status 0x3f", NULL },
        { "virtio-net: driver features", NULL },
        { "virtio-net: MAC 03:", NULL },
        { "virtio-net: interrupt line high with ISR 0x00", NULL },
    };
    for (unsigned i = 0; i < 5; i++) {
        bad = a;
        switch (i) {
        case 0: bad.vp.q[1].size = 3; break;
        case 1: bad.vp.status = 0x3f; break;
        case 2: bad.vp.driver_features |= 1ull << 40; break;
        case 3: bad.mac[0] = 0x03; break;
        case 4: bad.vp.isr = 0; bad.vp.level = true; break;
        }
        buf = devround_save(&virtio_net_desc, &bad, &len);
        assert_non_null(buf);
        static virtio_net target;
        target = b;
        assert_int_equal(devround_load(&virtio_net_desc, &target, buf, len,
                                       why, sizeof(why)), -EINVAL);
        if (!strstr(why, cases[i].want))
            fail_msg("case %u: %s", i, why);
        assert_memory_equal(&target, &b, sizeof(b));
        free(buf);
    }
}

static void test_pci_state(void **state)
{
    (void)state;
    static const pci_ident id = { .vendor = 0x1b36, .device = 8,
                                  .class_code = 0x060000 };
    pci_func a, b;
    pci_host h, h2;
    char why[256] = "";
    size_t len;

    pci_func_init(&a, &id);
    pci_func_write(&a, 0x04, 2, 0xffff);    /* only the implemented bits */
    assert_int_equal(a.command, PCI_COMMAND_IO | PCI_COMMAND_MEMORY |
                     PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
    pci_func_write(&a, 0x3c, 1, 16);
    uint8_t *buf = devround_save(&pci_func_desc, &a, &len);
    pci_func_init(&b, &id);
    assert_int_equal(devround_load(&pci_func_desc, &b, buf, len, why,
                                   sizeof(why)), 0);
    assert_int_equal(b.command, a.command);
    assert_int_equal(b.int_line, 16);
    free(buf);
    a.command = 0x8000;
    buf = devround_save(&pci_func_desc, &a, &len);
    assert_int_equal(devround_load(&pci_func_desc, &b, buf, len, why,
                                   sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "command register 0x8000"));
    assert_int_equal(b.int_line, 16);
    free(buf);

    pci_host_init(&h);
    uint8_t d[4] = { 0x3c, 0x08, 0x00, 0x80 };
    pci_host_io(&h, PCI_CONFIG_ADDRESS, true, d, 4);
    buf = devround_save(&pci_host_desc, &h, &len);
    pci_host_init(&h2);
    assert_int_equal(devround_load(&pci_host_desc, &h2, buf, len, why,
                                   sizeof(why)), 0);
    assert_int_equal(h2.address, 0x8000083cu);
    free(buf);
    h.address = 0x80000003u;
    buf = devround_save(&pci_host_desc, &h, &len);
    assert_int_equal(devround_load(&pci_host_desc, &h2, buf, len, why,
                                   sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "reserved bits"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pci_config),
        cmocka_unit_test(test_receive_and_transmit),
        cmocka_unit_test(test_hostile_rings),
        cmocka_unit_test(test_state_round_trip),
        cmocka_unit_test(test_pci_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
