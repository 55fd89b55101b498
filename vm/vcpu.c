/*
 * vcpu: creation, state transfer to and from KVM, the state description.
 */
#include "vm/vcpu.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static const uint32_t msr_index[VCPU_NMSRS] = {
    [VCPU_MSR_TSC] = 0x10,
    [VCPU_MSR_SYSENTER_CS] = 0x174,
    [VCPU_MSR_SYSENTER_ESP] = 0x175,
    [VCPU_MSR_SYSENTER_EIP] = 0x176,
    [VCPU_MSR_PAT] = 0x277,
    [VCPU_MSR_STAR] = 0xc0000081,
    [VCPU_MSR_LSTAR] = 0xc0000082,
    [VCPU_MSR_CSTAR] = 0xc0000083,
    [VCPU_MSR_SFMASK] = 0xc0000084,
    [VCPU_MSR_KERNEL_GS_BASE] = 0xc0000102,
    [VCPU_MSR_TSC_AUX] = 0xc0000103,
    [VCPU_MSR_MISC_ENABLE] = 0x1a0,
};

/* Events whose fields a push always applies. */
#define EVENTS_PUSH_FLAGS (KVM_VCPUEVENT_VALID_NMI_PENDING |            \
                           KVM_VCPUEVENT_VALID_SIPI_VECTOR |            \
                           KVM_VCPUEVENT_VALID_SHADOW)

/* struct kvm_msrs with room for its entries (it ends in a flexible array). */
typedef struct msr_buf {
    uint32_t nmsrs;
    uint32_t pad;
    struct kvm_msr_entry e[VCPU_NMSRS];
} msr_buf;
_Static_assert(offsetof(msr_buf, e) == offsetof(struct kvm_msrs, entries),
               "msr_buf must lay out as struct kvm_msrs");

static int get_msr(vcpu *c, uint32_t index, uint64_t *v)
{
    msr_buf b = { .nmsrs = 1, .e[0].index = index };

    if (ioctl(c->fd, KVM_GET_MSRS, &b) != 1)
        return -EIO;
    *v = b.e[0].data;
    return 0;
}

int vcpu_create(vcpu **out, kvm_vm *k, unsigned index, char *err,
                size_t errlen)
{
    vcpu *c = calloc(1, sizeof(*c));

    if (!c) {
        snprintf(err, errlen, "vCPU %u: no memory", index);
        return -ENOMEM;
    }
    c->index = index;
    c->kvm = k;
    c->state.owner = c;
    int rc = kvm_vcpu_create(k, index, &c->fd, &c->run, err, errlen);
    if (rc < 0) {
        free(c);
        return rc;
    }
    if (k->xsave_size > VCPU_XSAVE_MAX) {
        snprintf(err, errlen, "vCPU %u: the host's XSAVE area is %" PRIu32
                 " bytes, more than the %u ftvm carries", index,
                 k->xsave_size, VCPU_XSAVE_MAX);
        vcpu_destroy(c);
        return -ENOTSUP;
    }
    /* Carry only what this host can read back; a load checks the rest. */
    for (unsigned i = 0; i < VCPU_NMSRS; i++) {
        uint64_t v;
        if (get_msr(c, msr_index[i], &v) == 0)
            c->msr_supported |= 1u << i;
    }
    *out = c;
    return 0;
}

void vcpu_destroy(vcpu *c)
{
    if (!c)
        return;
    munmap(c->run, c->kvm->run_size);
    close(c->fd);
    free(c);
}

__attribute__((format(printf, 4, 5)))
static int fail(vcpu *c, char *err, size_t errlen, const char *fmt, ...)
{
    int e = errno ? errno : EIO;
    char what[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "vCPU %u: %s: %s", c->index, what, strerror(e));
    return -e;
}

int vcpu_state_fetch(vcpu *c, char *err, size_t errlen)
{
    vcpu_state *s = &c->state;

    if (ioctl(c->fd, KVM_GET_REGS, &s->regs) < 0)
        return fail(c, err, errlen, "KVM_GET_REGS");
    if (ioctl(c->fd, KVM_GET_SREGS, &s->sregs) < 0)
        return fail(c, err, errlen, "KVM_GET_SREGS");
    if (ioctl(c->fd, KVM_GET_VCPU_EVENTS, &s->events) < 0)
        return fail(c, err, errlen, "KVM_GET_VCPU_EVENTS");

    struct kvm_xcrs x = { .nr_xcrs = 0 };
    if (ioctl(c->fd, KVM_GET_XCRS, &x) < 0)
        return fail(c, err, errlen, "KVM_GET_XCRS");
    s->xcr0 = 1;
    for (uint32_t i = 0; i < x.nr_xcrs && i < KVM_MAX_XCRS; i++)
        if (x.xcrs[i].xcr == 0)
            s->xcr0 = x.xcrs[i].value;

    memset(s->xsave, 0, sizeof(s->xsave));
    unsigned long req = c->kvm->xsave2 ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
    if (ioctl(c->fd, req, s->xsave) < 0)
        return fail(c, err, errlen, "KVM_GET_XSAVE");
    s->xsave_len = c->kvm->xsave_size;

    msr_buf b = { .nmsrs = 0 };
    for (unsigned i = 0; i < VCPU_NMSRS; i++)
        if (c->msr_supported & (1u << i))
            b.e[b.nmsrs++].index = msr_index[i];
    int n = ioctl(c->fd, KVM_GET_MSRS, &b);
    if (n != (int)b.nmsrs)
        return fail(c, err, errlen, "KVM_GET_MSRS (%d of %" PRIu32 ")", n,
                    b.nmsrs);
    s->msr_mask = c->msr_supported;
    memset(s->msrs, 0, sizeof(s->msrs));
    for (unsigned i = 0, j = 0; i < VCPU_NMSRS; i++)
        if (c->msr_supported & (1u << i))
            s->msrs[i] = b.e[j++].data;
    return 0;
}

int vcpu_state_push(vcpu *c, char *err, size_t errlen)
{
    vcpu_state *s = &c->state;

    if (ioctl(c->fd, KVM_SET_SREGS, &s->sregs) < 0)
        return fail(c, err, errlen, "KVM_SET_SREGS");
    struct kvm_xcrs x = { .nr_xcrs = 1, .xcrs[0] = { .xcr = 0,
                                                     .value = s->xcr0 } };
    if (ioctl(c->fd, KVM_SET_XCRS, &x) < 0)
        return fail(c, err, errlen, "KVM_SET_XCRS (XCR0 0x%" PRIx64 ")",
                    s->xcr0);
    /* The load check made sure the area fits; the rest stays zero. */
    if (s->xsave_len < c->kvm->xsave_size)
        memset(s->xsave + s->xsave_len, 0,
               c->kvm->xsave_size - s->xsave_len);
    if (ioctl(c->fd, KVM_SET_XSAVE, s->xsave) < 0)
        return fail(c, err, errlen, "KVM_SET_XSAVE");
    if (ioctl(c->fd, KVM_SET_REGS, &s->regs) < 0)
        return fail(c, err, errlen, "KVM_SET_REGS");

    msr_buf b = { .nmsrs = 0 };
    for (unsigned i = 0; i < VCPU_NMSRS; i++) {
        if (!(s->msr_mask & c->msr_supported & (1u << i)))
            continue;
        b.e[b.nmsrs].index = msr_index[i];
        b.e[b.nmsrs++].data = s->msrs[i];
    }
    int n = ioctl(c->fd, KVM_SET_MSRS, &b);
    if (n != (int)b.nmsrs)
        return fail(c, err, errlen, "KVM_SET_MSRS (%d of %" PRIu32 ")", n,
                    b.nmsrs);

    struct kvm_vcpu_events ev = s->events;
    ev.flags = (ev.flags & KVM_VCPUEVENT_VALID_SMM) | EVENTS_PUSH_FLAGS;
    if (ioctl(c->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
        return fail(c, err, errlen, "KVM_SET_VCPU_EVENTS");
    return 0;
}

int vcpu_set_boot(vcpu *c, const struct kvm_regs *regs,
                  const struct kvm_sregs *sregs, char *err, size_t errlen)
{
    if (ioctl(c->fd, KVM_SET_SREGS, sregs) < 0)
        return fail(c, err, errlen, "KVM_SET_SREGS");
    if (ioctl(c->fd, KVM_SET_REGS, regs) < 0)
        return fail(c, err, errlen, "KVM_SET_REGS");
    /* x87 and SSE as after FNINIT and a reset MXCSR. */
    struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
    if (ioctl(c->fd, KVM_SET_FPU, &fpu) < 0)
        return fail(c, err, errlen, "KVM_SET_FPU");
    return 0;
}

int vcpu_get_sregs(vcpu *c, struct kvm_sregs *sregs)
{
    return ioctl(c->fd, KVM_GET_SREGS, sregs) < 0 ? -errno : 0;
}

/* ---- the state description ---- */

/* KVM's __u64 is unsigned long long, which VMSTATE_SCALAR's _Generic lacks. */
#define K64(st, m)                                                            \
    .name = #m, .type = VMSTATE_T_U64, .offset = offsetof(st, m),             \
    .size = sizeof(((st *)0)->m)

static const vmstate_field regs_fields[] = {
    {K64(struct kvm_regs, rax)},
    {K64(struct kvm_regs, rbx)},
    {K64(struct kvm_regs, rcx)},
    {K64(struct kvm_regs, rdx)},
    {K64(struct kvm_regs, rsi)},
    {K64(struct kvm_regs, rdi)},
    {K64(struct kvm_regs, rsp)},
    {K64(struct kvm_regs, rbp)},
    {K64(struct kvm_regs, r8)},
    {K64(struct kvm_regs, r9)},
    {K64(struct kvm_regs, r10)},
    {K64(struct kvm_regs, r11)},
    {K64(struct kvm_regs, r12)},
    {K64(struct kvm_regs, r13)},
    {K64(struct kvm_regs, r14)},
    {K64(struct kvm_regs, r15)},
    {K64(struct kvm_regs, rip)},
    {K64(struct kvm_regs, rflags)},
    VMSTATE_END,
};
static const vmstate_desc regs_desc = {
    .name = "cpu/regs", .version = 1, .minimum_version = 1,
    .size = sizeof(struct kvm_regs), .fields = regs_fields,
};

static const vmstate_field seg_fields[] = {
    {K64(struct kvm_segment, base)},
    {VMSTATE_SCALAR(struct kvm_segment, limit)},
    {VMSTATE_SCALAR(struct kvm_segment, selector)},
    {VMSTATE_SCALAR(struct kvm_segment, type)},
    {VMSTATE_SCALAR(struct kvm_segment, present)},
    {VMSTATE_SCALAR(struct kvm_segment, dpl)},
    {VMSTATE_SCALAR(struct kvm_segment, db)},
    {VMSTATE_SCALAR(struct kvm_segment, s)},
    {VMSTATE_SCALAR(struct kvm_segment, l)},
    {VMSTATE_SCALAR(struct kvm_segment, g)},
    {VMSTATE_SCALAR(struct kvm_segment, avl)},
    {VMSTATE_SCALAR(struct kvm_segment, unusable)},
    VMSTATE_END,
};
static const vmstate_desc seg_desc = {
    .name = "cpu/segment", .version = 1, .minimum_version = 1,
    .size = sizeof(struct kvm_segment), .fields = seg_fields,
};

static const vmstate_field dtable_fields[] = {
    {K64(struct kvm_dtable, base)},
    {VMSTATE_SCALAR(struct kvm_dtable, limit)},
    VMSTATE_END,
};
static const vmstate_desc dtable_desc = {
    .name = "cpu/dtable", .version = 1, .minimum_version = 1,
    .size = sizeof(struct kvm_dtable), .fields = dtable_fields,
};

static const vmstate_field sregs_fields[] = {
    {VMSTATE_STRUCT(struct kvm_sregs, cs, seg_desc)},
    {VMSTATE_STRUCT(struct kvm_sregs, ds, seg_desc)},
    {VMSTATE_STRUCT(struct kvm_sregs, es, seg_desc)},
    {VMSTATE_STRUCT(struct kvm_sregs, fs, seg_desc)},
    {VMSTATE_STRUCT(struct kvm_sregs, gs, seg_desc)},
    {VMSTATE_STRUCT(struct kvm_sregs, ss, seg_desc)},
    {VMSTATE_STRUCT(struct kvm_sregs, tr, seg_desc)},
    {VMSTATE_STRUCT(struct kvm_sregs, ldt, seg_desc)},
    {VMSTATE_STRUCT(struct kvm_sregs, gdt, dtable_desc)},
    {VMSTATE_STRUCT(struct kvm_sregs, idt, dtable_desc)},
    {K64(struct kvm_sregs, cr0)},
    {K64(struct kvm_sregs, cr2)},
    {K64(struct kvm_sregs, cr3)},
    {K64(struct kvm_sregs, cr4)},
    {K64(struct kvm_sregs, cr8)},
    {K64(struct kvm_sregs, efer)},
    {K64(struct kvm_sregs, apic_base)},
    {.name = "interrupt_bitmap",
     .type = VMSTATE_T_U64,
     .offset = offsetof(struct kvm_sregs, interrupt_bitmap),
     .size = 8,
     .count = sizeof(((struct kvm_sregs *)0)->interrupt_bitmap) / 8},
    VMSTATE_END,
};
static const vmstate_desc sregs_desc = {
    .name = "cpu/sregs", .version = 1, .minimum_version = 1,
    .size = sizeof(struct kvm_sregs), .fields = sregs_fields,
};

#define EV(m, f)                                                              \
    .name = #m "_" #f,                                                        \
    .type = VMSTATE__TYPE_OF(VMSTATE__M(struct kvm_vcpu_events, m.f)),        \
    .offset = offsetof(struct kvm_vcpu_events, m.f),                          \
    .size = sizeof(VMSTATE__M(struct kvm_vcpu_events, m.f))

static const vmstate_field events_fields[] = {
    {EV(exception, injected)},
    {EV(exception, nr)},
    {EV(exception, has_error_code)},
    {EV(exception, pending)},
    {EV(exception, error_code)},
    {EV(interrupt, injected)},
    {EV(interrupt, nr)},
    {EV(interrupt, soft)},
    {EV(interrupt, shadow)},
    {EV(nmi, injected)},
    {EV(nmi, pending)},
    {EV(nmi, masked)},
    {VMSTATE_SCALAR(struct kvm_vcpu_events, sipi_vector)},
    {VMSTATE_SCALAR(struct kvm_vcpu_events, flags)},
    {EV(smi, smm)},
    {EV(smi, pending)},
    {EV(smi, smm_inside_nmi)},
    {EV(smi, latched_init)},
    {EV(triple_fault, pending)},
    {VMSTATE_SCALAR(struct kvm_vcpu_events, exception_has_payload)},
    {K64(struct kvm_vcpu_events, exception_payload)},
    VMSTATE_END,
};
static const vmstate_desc events_desc = {
    .name = "cpu/events", .version = 1, .minimum_version = 1,
    .size = sizeof(struct kvm_vcpu_events), .fields = events_fields,
};

/* Refuses state this host cannot take, before anything is applied. */
static int state_check(qfile *f, const void *obj, uint32_t version)
{
    const vcpu_state *s = obj;
    const vcpu *c = s->owner;

    (void)version;
    if (s->xsave_len < 576 || s->xsave_len > c->kvm->xsave_size)
        return qfile_fail(f, -EINVAL,
                          "cpu %u: XSAVE area of %" PRIu32
                          " bytes; this host takes 576..%" PRIu32,
                          c->index, s->xsave_len, c->kvm->xsave_size);
    uint32_t missing = s->msr_mask & ~c->msr_supported;
    for (unsigned i = 0; i < VCPU_NMSRS; i++)
        if ((missing & (1u << i)) && s->msrs[i] != 0)
            return qfile_fail(f, -ENOTSUP,
                              "cpu %u: MSR 0x%" PRIx32 " holds "
                              "0x%" PRIx64
                              ", but this host's KVM cannot set it",
                              c->index, msr_index[i], s->msrs[i]);
    bool long_mode = (s->sregs.efer & (1ull << 10)) &&   /* EFER.LMA */
                     (s->sregs.cr0 & (1ull << 31));        /* CR0.PG */
    /*
     * Only vCPU 0 is booted into long mode; the others stay in their reset
     * state (real mode, EFER clear) until the guest starts them, and a
     * checkpoint of a VM with --vcpus N holds them so.
     */
    bool reset = c->index > 0 && !(s->sregs.cr0 & 1) &&    /* CR0.PE */
                 !(s->sregs.efer & (1ull << 8));           /* EFER.LME */
    if (!long_mode && !reset)
        return qfile_fail(f, -EINVAL,
                          "cpu %u: not in 64-bit mode (CR0 0x%" PRIx64
                          ", EFER 0x%" PRIx64 ")",
                          c->index, (uint64_t)s->sregs.cr0,
                          (uint64_t)s->sregs.efer);
    return 0;
}

static int state_post_load(void *obj, uint32_t version)
{
    vcpu_state *s = obj;

    (void)version;
    s->owner->loaded = true;
    return 0;
}

static const vmstate_field state_fields[] = {
    {VMSTATE_STRUCT(vcpu_state, regs, regs_desc)},
    {VMSTATE_STRUCT(vcpu_state, sregs, sregs_desc)},
    {VMSTATE_STRUCT(vcpu_state, events, events_desc)},
    {VMSTATE_SCALAR(vcpu_state, xcr0)},
    {VMSTATE_SCALAR(vcpu_state, msr_mask)},
    {VMSTATE_ARRAY(vcpu_state, msrs)},
    {VMSTATE_SCALAR(vcpu_state, xsave_len)},
    {VMSTATE_VBUFFER(vcpu_state, xsave, xsave_len)},
    VMSTATE_END,
};

const vmstate_desc vcpu_state_desc = {
    .name = "cpu", .version = 1, .minimum_version = 1,
    .size = sizeof(vcpu_state), .fields = state_fields,
    .check = state_check, .post_load = state_post_load,
};
