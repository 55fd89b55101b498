/*
 * mptable: the Intel MultiProcessor Specification 1.4 tables that tell a
 * Linux guest its CPUs (one local APIC each, APIC id = vCPU index, vCPU 0
 * the bootstrap processor), its I/O APIC and how the 16 ISA interrupts
 * reach it.  Why an MP table and not ACPI: docs/linux-guests.md.
 *
 * Layout (little-endian, the specification's; MPTABLE_ADDR is where the
 * guest looks first, the last KiB of base memory):
 *   floating pointer, 16 bytes: "_MP_", u32 table address, u8 length 1,
 *     u8 spec 4, u8 checksum, 5 feature bytes (0: a table is present)
 *   table header, 44 bytes: "PCMP", u16 length, u8 spec 4, u8 checksum,
 *     "FTVM    ", "FTVM PC     ", u32 0, u16 0, u16 entries,
 *     u32 local APIC address, u16 0, u8 0, u8 0
 *   one processor entry (20 bytes) per vCPU, one ISA bus (8), one I/O
 *   APIC (8, id = vCPUs), 16 I/O interrupt entries (8: ISA IRQ n -> I/O
 *   APIC pin n, as KVM's default routing wires them), two local
 *   interrupt entries (8: ExtINT on LINT0, NMI on LINT1).
 *   With PCI (mptable_write_pci): the PCI bus is bus id 0 and ISA id 1
 *   (Linux takes the MP bus id for the PCI bus number), and an I/O
 *   interrupt entry per PCI device follows the ISA interrupts.
 * Both checksums make their structure's bytes sum to zero.
 */
#ifndef FTVM_DEVICES_MPTABLE_H
#define FTVM_DEVICES_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

#define MPTABLE_ADDR        0x9fc00u
#define MPTABLE_LAPIC_ADDR  0xfee00000u
#define MPTABLE_IOAPIC_ADDR 0xfec00000u
#define MPTABLE_ISA_IRQS    16u
#define MPTABLE_MAX_CPUS    254u    /* APIC ids 0..253, the I/O APIC's after */

#define MPTABLE_IOAPIC_PINS 24u     /* KVM's I/O APIC */
#define MPTABLE_MAX_PCI_IRQS 8u

/* INTA# of a device in slot of PCI bus 0, wired to an I/O APIC pin. */
typedef struct mptable_pci_irq {
    uint8_t slot;                   /* < 32 */
    uint8_t ioapic_pin;             /* 16..23: above the ISA pins */
} mptable_pci_irq;

/* Bytes the tables take for ncpus processors (and npci PCI interrupts). */
size_t mptable_size(unsigned ncpus);
size_t mptable_size_pci(unsigned ncpus, unsigned npci);
/*
 * Writes the tables for ncpus (1..MPTABLE_MAX_CPUS) into buf, which the
 * guest sees at guest-physical address gpa, of len bytes; 0, or -EINVAL
 * when they do not fit or ncpus is out of range.
 */
int mptable_write(uint8_t *buf, size_t len, uint32_t gpa, unsigned ncpus);
/*
 * The same with a PCI bus (MP bus id 0, "PCI   ", PCI bus 0) before the
 * ISA bus (then id 1) and, after the ISA interrupts, one I/O interrupt
 * entry per pci[i] (source bus 0, source IRQ slot << 2 for INTA#, active high and
 * level-triggered as KVM_IRQ_LINE drives it); -EINVAL also for a slot or
 * pin out of range or more than MPTABLE_MAX_PCI_IRQS.
 */
int mptable_write_pci(uint8_t *buf, size_t len, uint32_t gpa, unsigned ncpus,
                      const mptable_pci_irq *pci, unsigned npci);

#endif
