/*
 * pc: the machine a Linux guest runs on, beside the freestanding guests'
 * hypercall machine: KVM's in-kernel interrupt controllers (PIC, I/O
 * APIC, a local APIC per vCPU) and PIT, CPUID from the host's supported
 * set with each vCPU's APIC id, an MP table, and the port-I/O devices a
 * PC kernel expects: an 8250 UART on COM1 as the console, the RTC, and
 * the keyboard controller's reset line.  Everything else answers as an
 * empty bus does: reads all ones, writes lost.
 *
 * Created before the vCPUs (the irqchip must be), its I/O dispatched
 * from any vCPU thread and its console input from the loop thread; one
 * lock serialises the devices.
 *
 * Not saved: a checkpoint of a PC machine is refused before anything is
 * written (pc_saving_refused), until its state (LAPIC, irqchip, PIT,
 * MSRs, kvmclock, UART) is carried (issue 11).
 */
#ifndef FTVM_VM_PC_H
#define FTVM_VM_PC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm/gmem.h"
#include "vm/hc.h"
#include "vm/kvm.h"

/* What every refusal to save, replicate or restore a PC machine says. */
#define PC_NO_CHECKPOINTS \
    "checkpoints of Linux guests are not supported yet (issue 11)"

/*
 * The kernel command line when none is given: the console on the UART,
 * reboot through the keyboard controller (which ends the VM), and no
 * probing for a keyboard or mouse that is not there.
 */
#define PC_DEFAULT_CMDLINE \
    "console=ttyS0 reboot=k i8042.noaux i8042.nomux i8042.dumbkbd"

/* KVM's private pages for the TSS and the real-mode identity map (VMX). */
#define PC_IDENTITY_MAP_ADDR 0xfffbc000u
#define PC_TSS_ADDR          0xfffbd000u

typedef struct pc pc;

typedef enum pc_io_result {
    PC_IO_DONE,
    PC_IO_RESET,        /* the guest reset the machine */
} pc_io_result;

/*
 * Sets the platform up on k, before any vCPU exists; console bytes go to
 * console(console_opaque).  0, or -errno with a message.
 */
int pc_create(pc **out, kvm_vm *k, hc_console_fn console,
              void *console_opaque, char *err, size_t errlen);
void pc_free(pc *p);

/* Gives vCPU index (fd) of ncpus its CPUID: APIC id, topology. */
int pc_setup_vcpu(pc *p, int fd, unsigned index, unsigned ncpus, char *err,
                  size_t errlen);
/* Writes the firmware tables (the MP table) for ncpus into g. */
int pc_write_tables(pc *p, gmem *g, unsigned ncpus, char *err,
                    size_t errlen);

/*
 * A port-I/O exit: size 1, 2 or 4 bytes at data (read into it for an
 * `in`).  Runs on a vCPU thread.
 */
pc_io_result pc_io(pc *p, uint16_t port, bool out, uint8_t *data,
                   unsigned size);
/* An MMIO exit outside RAM and the in-kernel devices: an empty bus. */
void pc_mmio(pc *p, uint64_t addr, bool write, uint8_t *data, unsigned len);

/* Console input for the guest; returns how many bytes it took. */
size_t pc_console_input(pc *p, const uint8_t *buf, size_t len);

#endif
