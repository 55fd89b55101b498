/*
 * kvm: the thin layer over /dev/kvm that the rest of vm/ builds on.
 *
 * One kvm_vm per process: the system fd, the VM fd, and what the host
 * offers that the monitor depends on (immediate exit, manual dirty-log
 * protection, the XSAVE size, the supported CPUID).  Every function returns
 * 0 or a negative errno; the ones that can fail for a reason a person must
 * see write it into err.
 */
#ifndef FTVM_VM_KVM_H
#define FTVM_VM_KVM_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVM_DEVICE "/dev/kvm"

typedef struct kvm_vm {
    int sys_fd;
    int vm_fd;
    size_t run_size;            /* bytes of each vCPU's kvm_run mapping */
    /* KVM_GET_DIRTY_LOG leaves the log alone; KVM_CLEAR_DIRTY_LOG resets. */
    bool manual_dirty;
    bool xsave2;                /* KVM_GET_XSAVE2 exists */
    uint32_t xsave_size;        /* bytes KVM_GET_XSAVE(2) fills */
    uint32_t tsc_khz;           /* 0 when the host does not say */
    struct kvm_cpuid2 *cpuid;   /* what vCPUs are given */
} kvm_vm;

/*
 * Opens /dev/kvm and creates a VM.  Fails with a message saying what is
 * missing: the device, permission to use it, or a capability.
 */
int kvm_open(kvm_vm *k, char *err, size_t errlen);
void kvm_close(kvm_vm *k);

/* Maps host memory at gpa as slot, logging dirty pages when asked. */
int kvm_set_slot(kvm_vm *k, uint32_t slot, uint64_t gpa, void *host,
                 uint64_t len, bool log_dirty);

/*
 * The pages of slot written since the last call, into bitmap (one bit per
 * page, words of unsigned long), and re-arms logging for them.
 */
int kvm_dirty_fetch(kvm_vm *k, uint32_t slot, uint64_t npages,
                    unsigned long *bitmap);

/* Creates vCPU index with the supported CPUID and maps its kvm_run. */
int kvm_vcpu_create(kvm_vm *k, unsigned index, int *fd,
                    struct kvm_run **run, char *err, size_t errlen);

#endif
