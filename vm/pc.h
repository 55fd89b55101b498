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
 * State ("pc", version 2, pc_state_desc): the PIC pair and the I/O APIC
 * (KVM_GET_IRQCHIP), the PIT (KVM_GET_PIT2), each as KVM's x86 struct
 * with its length, the KVM clock (KVM_GET_CLOCK), and the UART, keyboard
 * controller and CMOS as their own descriptions.  It is read into a copy
 * at every pause (pc_state_fetch), so a save never races the console
 * input the loop thread feeds the live UART, and a load goes into that
 * copy, pushed into KVM and the devices before the vCPUs run again
 * (pc_state_push).  Each vCPU's LAPIC, MP state and MSRs are in its
 * "cpu" entry (vm/vcpu.h, "cpu/pc").
 *
 * A PC machine is replicated in checkpoint mode; COLO mode refuses it
 * (PC_NO_COLO): the secondary's running copy is reset to each checkpoint,
 * and pushing a PC's irqchip, clock and LAPICs into a VM that has run is
 * not built.
 */
#ifndef FTVM_VM_PC_H
#define FTVM_VM_PC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/disk.h"
#include "devstate/vmstate.h"
#include "vm/gmem.h"
#include "vm/hc.h"
#include "vm/kvm.h"
#include "vm/net.h"

/* What every refusal of COLO mode for a PC machine says. */
#define PC_NO_COLO \
    "COLO mode for Linux guests is not supported yet (checkpoint mode is)"

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

typedef int (*pc_tx_fn)(void *opaque, const void *frame, size_t len);
/*
 * Gives the machine its network device (vm/pcpci.h: a PCI bus with a
 * virtio-net function), before the firmware tables are written: frames
 * the guest sends go to tx (which must not wait), frames net queued go
 * to the guest on pc_net_rx.  0, or -errno with a message.
 */
int pc_add_net(pc *p, gmem *g, net_dev *net, const uint8_t mac[6],
               pc_tx_fn tx, void *tx_opaque, char *err, size_t errlen);
/*
 * Gives the machine its disk (vm/pcpci.h: a virtio-blk function on the
 * PCI bus), before the firmware tables are written; the guest's requests
 * are served on its vCPU threads.  0, or -errno with a message.
 */
int pc_add_blk(pc *p, gmem *g, disk *d, char *err, size_t errlen);
/*
 * Whether the machine has its PCI bus (a network device, a disk or both)
 * and so the "pci" section, and that section's object for the registry
 * (NULL without).
 */
bool pc_has_pci(const pc *p);
void *pc_pci_state_obj(pc *p);
/* Frames arrived in net: into the guest's buffers (the loop thread). */
void pc_net_rx(pc *p);
/* The VM runs again: received frames flow again (stopped at a fetch). */
void pc_resume(pc *p);

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

extern const vmstate_desc pc_state_desc;
/* The object pc_state_desc describes, for the registry. */
void *pc_state_obj(pc *p);
/*
 * Reads KVM's clock, irqchip and PIT and the devices' registers into the
 * state copy; with every vCPU out of KVM_RUN, right after the vCPUs'
 * TSCs were read (vcpu_state_refresh): the guest's kvmclock is
 * computed from its TSC, and the two must be saved as of one moment or
 * the guest sees them drift apart across a restore.  Where KVM reads
 * the host's TSC with the clock (KVM_CLOCK_HOST_TSC) and gives vCPU 0's
 * TSC offset (vcpu0_fd), vCPU 0's TSC at the clock's moment is saved with
 * it, exactly; elsewhere tsc_read_ns (mono_ns as vCPU 0's TSC was read,
 * 0: unknown) gives the moment, and the clock is saved as of it.  0, or
 * -errno with a message (and the next save of the copy fails).
 */
int pc_state_fetch(pc *p, int vcpu0_fd, uint64_t tsc_read_ns, char *err,
                   size_t errlen);
/* Marks the copy unsaveable until the next fetch (a vCPU's refresh failed). */
void pc_state_fail(pc *p, int err);
/* Whether a load filled the copy, which pc_state_push has not pushed. */
bool pc_state_loaded(const pc *p);
/*
 * A loaded copy into KVM and the devices, before any vCPU's state is
 * pushed or runs; not the clock.  0, or -errno with a message.
 */
int pc_state_push(pc *p, char *err, size_t errlen);
/*
 * The loaded KVM clock, after the vCPUs' state and before they run, so
 * that clock and TSCs go on from the same moment: with vCPU 0's TSC at
 * the clock saved (version 2, a KVM that gives TSC offsets), the clock
 * set and each of the n vCPUs' TSC offset set to match it exactly;
 * otherwise the saved value plus since_tsc_ns, the time since vCPU 0's
 * TSC was set to its saved value.  0, or -errno with a message.
 */
int pc_state_push_clock(pc *p, const int *vcpu_fds, unsigned n,
                        uint64_t since_tsc_ns, char *err,
                        size_t errlen);

#endif
