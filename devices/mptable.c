/* mptable: see mptable.h. */
#include "devices/mptable.h"

#include <errno.h>
#include <string.h>

#include "vm/le.h"

#define FLOAT_SIZE  16u
#define HEADER_SIZE 44u
#define CPU_SIZE    20u
#define ENTRY_SIZE  8u

enum { MP_CPU = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_IOINT = 3, MP_LINT = 4 };
enum { INT_INT = 0, INT_NMI = 1, INT_EXTINT = 3 };

#define CPU_ENABLED 0x01u
#define CPU_BSP     0x02u
#define LAPIC_VERSION  0x14u
#define IOAPIC_VERSION 0x11u

static uint8_t checksum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;

    while (n--)
        s = (uint8_t)(s + *p++);
    return (uint8_t)(0x100 - s);
}

/* A PCI interrupt: active high (01), level-triggered (11 << 2). */
#define PCI_IRQ_FLAGS 0x0du
#define PCI_BUS_ID    0u

/* Entries after the processors. */
static unsigned entries(unsigned npci)
{
    return 2 + MPTABLE_ISA_IRQS + 2 + (npci ? 1 + npci : 0);
}

static size_t table_size(unsigned ncpus, unsigned npci)
{
    return HEADER_SIZE + ncpus * CPU_SIZE + entries(npci) * ENTRY_SIZE;
}

size_t mptable_size_pci(unsigned ncpus, unsigned npci)
{
    return FLOAT_SIZE + table_size(ncpus, npci);
}

size_t mptable_size(unsigned ncpus)
{
    return mptable_size_pci(ncpus, 0);
}

/* An I/O or local interrupt entry. */
static uint8_t *put_int(uint8_t *p, uint8_t type, uint8_t kind, uint8_t bus,
                        uint8_t src_irq, uint8_t dst_id, uint8_t dst_pin)
{
    p[0] = type;
    p[1] = kind;
    le_put16(p + 2, 0);        /* polarity and trigger as the bus says */
    p[4] = bus;
    p[5] = src_irq;
    p[6] = dst_id;
    p[7] = dst_pin;
    return p + ENTRY_SIZE;
}

int mptable_write(uint8_t *buf, size_t len, uint32_t gpa, unsigned ncpus)
{
    return mptable_write_pci(buf, len, gpa, ncpus, NULL, 0);
}

int mptable_write_pci(uint8_t *buf, size_t len, uint32_t gpa, unsigned ncpus,
                      const mptable_pci_irq *pci, unsigned npci)
{
    if (ncpus < 1 || ncpus > MPTABLE_MAX_CPUS ||
        npci > MPTABLE_MAX_PCI_IRQS || len < mptable_size_pci(ncpus, npci))
        return -EINVAL;
    for (unsigned i = 0; i < npci; i++)
        if (pci[i].slot >= 32 || pci[i].ioapic_pin < MPTABLE_ISA_IRQS ||
            pci[i].ioapic_pin >= MPTABLE_IOAPIC_PINS)
            return -EINVAL;
    memset(buf, 0, mptable_size_pci(ncpus, npci));

    uint8_t *fp = buf;
    memcpy(fp, "_MP_", 4);
    le_put32(fp + 4, gpa + FLOAT_SIZE);
    fp[8] = 1;
    fp[9] = 4;
    fp[10] = checksum(fp, FLOAT_SIZE);

    uint8_t *t = buf + FLOAT_SIZE, *p = t + HEADER_SIZE;
    for (unsigned i = 0; i < ncpus; i++, p += CPU_SIZE) {
        p[0] = MP_CPU;
        p[1] = (uint8_t)i;
        p[2] = LAPIC_VERSION;
        p[3] = CPU_ENABLED | (i == 0 ? CPU_BSP : 0);
        le_put32(p + 4, 0x600);    /* family 6: only a hint */
        le_put32(p + 8, 0x201);    /* FPU, APIC */
    }
    /*
     * Linux looks a PCI device's interrupt up by taking the MP bus id for
     * the PCI bus number, so the PCI bus is id 0 and ISA comes after it.
     */
    uint8_t isa_id = npci ? 1 : 0;
    if (npci) {
        p[0] = MP_BUS;
        p[1] = PCI_BUS_ID;
        memcpy(p + 2, "PCI   ", 6);
        p += ENTRY_SIZE;
    }
    p[0] = MP_BUS;
    p[1] = isa_id;
    memcpy(p + 2, "ISA   ", 6);
    p += ENTRY_SIZE;
    uint8_t ioapic_id = (uint8_t)ncpus;
    p[0] = MP_IOAPIC;
    p[1] = ioapic_id;
    p[2] = IOAPIC_VERSION;
    p[3] = 0x01;                /* enabled */
    le_put32(p + 4, MPTABLE_IOAPIC_ADDR);
    p += ENTRY_SIZE;
    for (unsigned irq = 0; irq < MPTABLE_ISA_IRQS; irq++)
        p = put_int(p, MP_IOINT, INT_INT, isa_id, (uint8_t)irq, ioapic_id,
                    (uint8_t)irq);
    /* PCI bus 0, INTA# of a slot: source IRQ slot << 2 | (pin - 1). */
    for (unsigned i = 0; i < npci; i++, p += ENTRY_SIZE) {
        put_int(p, MP_IOINT, INT_INT, PCI_BUS_ID, (uint8_t)(pci[i].slot << 2),
                ioapic_id, pci[i].ioapic_pin);
        le_put16(p + 2, PCI_IRQ_FLAGS);
    }
    p = put_int(p, MP_LINT, INT_EXTINT, isa_id, 0, 0xff, 0);
    p = put_int(p, MP_LINT, INT_NMI, isa_id, 0, 0xff, 1);

    size_t tlen = table_size(ncpus, npci);
    memcpy(t, "PCMP", 4);
    le_put16(t + 4, (uint16_t)tlen);
    t[6] = 4;
    memcpy(t + 8, "FTVM    ", 8);
    memcpy(t + 16, "FTVM PC     ", 12);
    le_put16(t + 34, (uint16_t)(ncpus + entries(npci)));
    le_put32(t + 36, MPTABLE_LAPIC_ADDR);
    t[7] = checksum(t, tlen);
    return 0;
}
