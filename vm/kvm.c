/*
 * kvm: opening the VM, memory slots, the dirty log, vCPU creation.
 */
#include "vm/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int check_cap(int fd, long cap, const char *name, char *err,
                     size_t errlen)
{
    int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

    if (r > 0)
        return r;
    snprintf(err, errlen, "%s: the host's KVM lacks %s, which ftvm needs",
             KVM_DEVICE, name);
    return -ENOTSUP;
}

/* The supported CPUID, asked for with a table that grows until it fits. */
static int load_cpuid(kvm_vm *k, char *err, size_t errlen)
{
    for (unsigned nent = 64; nent <= 4096; nent *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) +
                                      nent * sizeof(c->entries[0]));
        if (!c)
            return -ENOMEM;
        c->nent = nent;
        if (ioctl(k->sys_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            k->cpuid = c;
            return 0;
        }
        int e = errno;
        free(c);
        if (e != E2BIG) {
            snprintf(err, errlen, "%s: KVM_GET_SUPPORTED_CPUID: %s",
                     KVM_DEVICE, strerror(e));
            return -e;
        }
    }
    snprintf(err, errlen, "%s: KVM_GET_SUPPORTED_CPUID: table too large",
             KVM_DEVICE);
    return -E2BIG;
}

int kvm_open(kvm_vm *k, char *err, size_t errlen)
{
    int rc;

    memset(k, 0, sizeof(*k));
    k->vm_fd = -1;
    k->sys_fd = open(KVM_DEVICE, O_RDWR | O_CLOEXEC);
    if (k->sys_fd < 0) {
        rc = -errno;
        if (rc == -ENOENT)
            snprintf(err, errlen, "%s does not exist: this host offers no "
                     "KVM (is the kvm module loaded, or is this a VM "
                     "without nested virtualisation?)", KVM_DEVICE);
        else
            snprintf(err, errlen, "cannot open %s: %s", KVM_DEVICE,
                     strerror(-rc));
        return rc;
    }
    int api = ioctl(k->sys_fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) {
        snprintf(err, errlen, "%s: API version %d, ftvm speaks %d",
                 KVM_DEVICE, api, KVM_API_VERSION);
        rc = -ENOTSUP;
        goto fail;
    }
    int sz = ioctl(k->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (sz < (int)sizeof(struct kvm_run)) {
        snprintf(err, errlen, "%s: KVM_GET_VCPU_MMAP_SIZE: %s", KVM_DEVICE,
                 sz < 0 ? strerror(errno) : "too small");
        rc = -EIO;
        goto fail;
    }
    k->run_size = (size_t)sz;

    /* KVM_CREATE_VM can see EINTR while the host is busy; retry then. */
    do {
        k->vm_fd = ioctl(k->sys_fd, KVM_CREATE_VM, 0);
    } while (k->vm_fd < 0 && errno == EINTR);
    if (k->vm_fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: KVM_CREATE_VM: %s", KVM_DEVICE,
                 strerror(-rc));
        goto fail;
    }
    static const struct { long cap; const char *name; } required[] = {
        { KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
        { KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
        { KVM_CAP_XSAVE, "KVM_CAP_XSAVE" },
        { KVM_CAP_XCRS, "KVM_CAP_XCRS" },
        { KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS" },
        { KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
    };
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        rc = check_cap(k->vm_fd, required[i].cap, required[i].name, err,
                       errlen);
        if (rc < 0)
            goto fail;
    }

    int manual = ioctl(k->vm_fd, KVM_CHECK_EXTENSION,
                       KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
    if (manual > 0 && (manual & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) {
        struct kvm_enable_cap ec = {
            .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
            .args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE },
        };
        k->manual_dirty = ioctl(k->vm_fd, KVM_ENABLE_CAP, &ec) == 0;
    }

    int xs = ioctl(k->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    k->xsave2 = xs > 0;
    k->xsave_size = xs > (int)sizeof(struct kvm_xsave)
                  ? (uint32_t)xs : (uint32_t)sizeof(struct kvm_xsave);

    rc = load_cpuid(k, err, errlen);
    if (rc < 0)
        goto fail;
    return 0;
fail:
    kvm_close(k);
    return rc;
}

void kvm_close(kvm_vm *k)
{
    if (k->vm_fd >= 0)
        close(k->vm_fd);
    if (k->sys_fd >= 0)
        close(k->sys_fd);
    free(k->cpuid);
    k->cpuid = NULL;
    k->vm_fd = k->sys_fd = -1;
}

int kvm_set_slot(kvm_vm *k, uint32_t slot, uint64_t gpa, void *host,
                 uint64_t len, bool log_dirty)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot,
        .flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0,
        .guest_phys_addr = gpa,
        .memory_size = len,
        .userspace_addr = (uint64_t)(uintptr_t)host,
    };
    return ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

int kvm_dirty_fetch(kvm_vm *k, uint32_t slot, uint64_t npages,
                    unsigned long *bitmap)
{
    struct kvm_dirty_log dl = { .slot = slot, .dirty_bitmap = bitmap };

    if (ioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &dl) < 0)
        return -errno;
    if (!k->manual_dirty)
        return 0;   /* KVM_GET_DIRTY_LOG cleared and re-armed already */

    size_t words = (npages + 8 * sizeof(long) - 1) / (8 * sizeof(long));
    bool any = false;
    for (size_t i = 0; i < words && !any; i++)
        any = bitmap[i] != 0;
    if (!any)
        return 0;
    struct kvm_clear_dirty_log cl = {
        .slot = slot, .first_page = 0, .num_pages = (uint32_t)npages,
        .dirty_bitmap = bitmap,
    };
    return ioctl(k->vm_fd, KVM_CLEAR_DIRTY_LOG, &cl) < 0 ? -errno : 0;
}

int kvm_vcpu_create(kvm_vm *k, unsigned index, int *fd,
                    struct kvm_run **run, char *err, size_t errlen)
{
    int rc;
    int cfd = ioctl(k->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);

    if (cfd < 0) {
        rc = -errno;
        snprintf(err, errlen, "KVM_CREATE_VCPU %u: %s", index,
                 strerror(-rc));
        return rc;
    }
    if (ioctl(cfd, KVM_SET_CPUID2, k->cpuid) < 0) {
        rc = -errno;
        snprintf(err, errlen, "vCPU %u: KVM_SET_CPUID2: %s", index,
                 strerror(-rc));
        close(cfd);
        return rc;
    }
    void *m = mmap(NULL, k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                   cfd, 0);
    if (m == MAP_FAILED) {
        rc = -errno;
        snprintf(err, errlen, "vCPU %u: mapping kvm_run: %s", index,
                 strerror(-rc));
        close(cfd);
        return rc;
    }
    if (k->tsc_khz == 0) {
        int khz = ioctl(cfd, KVM_GET_TSC_KHZ, 0);
        k->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
    }
    *fd = cfd;
    *run = m;
    return 0;
}
