/*
 * vcpu: one virtual CPU and its architectural state as device state.
 *
 * The state lives in two places: in KVM while the vCPU runs, and in a
 * vcpu_state the save and load code reads and writes.  vcpu_state_fetch
 * copies KVM's into it (the VM is paused, pending I/O completed);
 * vcpu_state_push copies it back (before resuming a VM that was loaded).
 * vcpu_state_desc describes it for devstate: general and segment registers
 * (every field), control registers, EFER, APIC base, GDT/IDT, XCR0, the
 * XSAVE area (FPU, SSE and whatever the host saves), the MSRs a 64-bit
 * guest uses, and pending events.
 *
 * A vCPU of the PC machine (vcpu_enable_pc) carries more, in the "cpu/pc"
 * subsection, sent only for it, so a freestanding guest's "cpu" entry is
 * what it always was (version 1, no subsection) and its old checkpoints
 * load as before: the local APIC's register page (KVM_GET_LAPIC), the MP
 * state (halted, waiting for INIT or SIPI), the debug registers and the
 * MSRs a Linux kernel sets (kvmclock and the other paravirtual ones, TSC
 * deadline, SPEC_CTRL, MTRRs, ...).
 *
 * Time: the guest's TSC is carried by value.  A loaded vCPU's TSC is set
 * to the saved value when it is pushed, so the guest's TSC goes on from
 * where the checkpoint left it, just as the monotonic clock does.
 */
#ifndef FTVM_VM_VCPU_H
#define FTVM_VM_VCPU_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "devstate/vmstate.h"
#include "vm/kvm.h"

/* Room for the XSAVE area; KVM_CAP_XSAVE2 says how much a host uses. */
#define VCPU_XSAVE_MAX 16384u

/* The MSRs carried, in this order on the wire. */
enum vcpu_msr {
    VCPU_MSR_TSC,
    VCPU_MSR_SYSENTER_CS,
    VCPU_MSR_SYSENTER_ESP,
    VCPU_MSR_SYSENTER_EIP,
    VCPU_MSR_PAT,
    VCPU_MSR_STAR,
    VCPU_MSR_LSTAR,
    VCPU_MSR_CSTAR,
    VCPU_MSR_SFMASK,
    VCPU_MSR_KERNEL_GS_BASE,
    VCPU_MSR_TSC_AUX,
    VCPU_MSR_MISC_ENABLE,
    VCPU_NMSRS,
};

/* The PC machine's further MSRs ("cpu/pc"), in this order on the wire. */
#define VCPU_PC_NMSRS 42u

/* KVM's local APIC register page. */
#define VCPU_LAPIC_SIZE 1024u

typedef struct vcpu vcpu;

typedef struct vcpu_state {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_vcpu_events events;
    uint64_t xcr0;
    uint32_t msr_mask;              /* bit i: msrs[i] is carried */
    uint64_t msrs[VCPU_NMSRS];
    uint32_t xsave_len;
    uint8_t xsave[VCPU_XSAVE_MAX];
    /* "cpu/pc": a PC machine's vCPU only. */
    uint32_t lapic_len;             /* VCPU_LAPIC_SIZE; 0: not carried */
    uint8_t lapic[VCPU_LAPIC_SIZE];
    uint32_t mp_state;              /* KVM_MP_STATE_* */
    uint64_t dr[4], dr6, dr7;
    uint64_t pc_msr_mask;           /* bit i: pc_msrs[i] is carried */
    uint64_t pc_msrs[VCPU_PC_NMSRS];
    vcpu *owner;                    /* not state: for the check hook */
} vcpu_state;

struct vcpu {
    unsigned index;
    int fd;
    struct kvm_run *run;
    kvm_vm *kvm;
    uint32_t msr_supported;         /* mask of vcpu_msr KVM can get/set */
    bool pc;                        /* a PC machine's: "cpu/pc" too */
    uint64_t pc_msr_supported;      /* mask of the PC MSRs KVM can get */
    bool loaded;                    /* state was loaded; push before running */
    uint64_t tsc_pushed_ns;         /* mono_ns when the last push set the TSC */
    uint64_t tsc_read_ns;           /* mono_ns when the TSC was last re-read */
    vcpu_state state;
};

extern const vmstate_desc vcpu_state_desc;

/* Creates vCPU index of k.  0, or -errno with a message. */
int vcpu_create(vcpu **out, kvm_vm *k, unsigned index, char *err,
                size_t errlen);
void vcpu_destroy(vcpu *c);
/*
 * Makes c a PC machine's vCPU, after its CPUID is set (which decides
 * the MSRs KVM lets it have): its state carries "cpu/pc" from then on.
 */
void vcpu_enable_pc(vcpu *c);

/* KVM's state into c->state, and back.  0 or -errno with a message. */
int vcpu_state_fetch(vcpu *c, char *err, size_t errlen);
int vcpu_state_push(vcpu *c, char *err, size_t errlen);

/*
 * With every vCPU parked (a vCPU reads its state as it parks, while
 * others may still run), reads again what another vCPU or KVM's
 * irqchip changes under a parked one: a PC vCPU's LAPIC (an IPI, a
 * timer interrupt in its IRR) and MP state (INIT, SIPI), the pending
 * events (an NMI); then the TSC, just before the KVM clock is read, so
 * that the two are saved as of one moment.  Without this a checkpoint
 * can hold an IPI the sender sent and the target never got: an SMP
 * guest restored from it waits for that IPI forever.
 */
int vcpu_state_refresh(vcpu *c, char *err, size_t errlen);

/* Sets the entry state of a booting vCPU (registers, segments, FPU). */
int vcpu_set_boot(vcpu *c, const struct kvm_regs *regs,
                  const struct kvm_sregs *sregs, char *err, size_t errlen);
int vcpu_get_sregs(vcpu *c, struct kvm_sregs *sregs);

#endif
