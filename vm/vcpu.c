/*
 * vcpu: creation, state transfer to and from KVM, the state description.
 */
#include "vm/vcpu.h"
#include "vm/mono.h"

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

/*
 * The PC machine's further MSRs.  KVM_SET_MSRS applies them in this
 * order, after the TSC (the base list): the async page fault's interrupt
 * vector before the MSR that enables it with delivery as an interrupt
 * (KVM refuses that enable without the vector), the TSC deadline last,
 * after the TSC it counts in and after KVM_SET_LAPIC (KVM drops a
 * deadline while the LAPIC timer is not in TSC-deadline mode).
 */
static const uint32_t pc_msr_index[VCPU_PC_NMSRS] = {
    0x2ff,                                  /* MTRR default type */
    0x250, 0x258, 0x259,                    /* fixed-range MTRRs */
    0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,
    0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207, /* variable */
    0x208, 0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f,
    0x3a,                                   /* IA32_FEATURE_CONTROL */
    0x48,                                   /* IA32_SPEC_CTRL */
    0x3b,                                   /* IA32_TSC_ADJUST */
    0xda0,                                  /* IA32_XSS */
    0x11, 0x12,                             /* kvmclock, old MSRs */
    0x4b564d00, 0x4b564d01,                 /* WALL_CLOCK_NEW, SYSTEM_TIME_NEW */
    0x4b564d03,                             /* STEAL_TIME */
    0x4b564d04,                             /* PV_EOI_EN */
    0x4b564d05,                             /* POLL_CONTROL */
    0x4b564d06,                             /* ASYNC_PF_INT */
    0x4b564d02,                             /* ASYNC_PF_EN */
    0x6e0,                                  /* IA32_TSC_DEADLINE */
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

typedef struct pc_msr_buf {
    uint32_t nmsrs;
    uint32_t pad;
    struct kvm_msr_entry e[VCPU_PC_NMSRS];
} pc_msr_buf;
_Static_assert(offsetof(pc_msr_buf, e) == offsetof(struct kvm_msrs, entries),
               "pc_msr_buf must lay out as struct kvm_msrs");
_Static_assert(sizeof(struct kvm_lapic_state) == VCPU_LAPIC_SIZE,
               "KVM's LAPIC page");

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

static int set_msr(vcpu *c, uint32_t index, uint64_t v)
{
    msr_buf b = { .nmsrs = 1, .e[0] = { .index = index, .data = v } };

    return ioctl(c->fd, KVM_SET_MSRS, &b) == 1 ? 0 : -EIO;
}

/*
 * Carries only the MSRs this host's KVM both reads and takes back: some
 * read but refuse even their own reset value (IA32_XSS on a nested KVM),
 * and a restore must not fail on what the saving side could not set
 * either.  Writing back a new vCPU's reset value changes nothing.
 */
void vcpu_enable_pc(vcpu *c)
{
    c->pc = true;
    c->pc_msr_supported = 0;
    for (unsigned i = 0; i < VCPU_PC_NMSRS; i++) {
        uint64_t v;
        if (get_msr(c, pc_msr_index[i], &v) == 0 &&
            set_msr(c, pc_msr_index[i], v) == 0)
            c->pc_msr_supported |= 1ull << i;
    }
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

/* "cpu/pc": the LAPIC, MP state, debug registers, the PC's MSRs. */
static int fetch_pc(vcpu *c, char *err, size_t errlen)
{
    vcpu_state *s = &c->state;
    struct kvm_lapic_state lapic;
    struct kvm_mp_state mp;
    struct kvm_debugregs dbg;

    if (ioctl(c->fd, KVM_GET_LAPIC, &lapic) < 0)
        return fail(c, err, errlen, "KVM_GET_LAPIC");
    memcpy(s->lapic, lapic.regs, VCPU_LAPIC_SIZE);
    s->lapic_len = VCPU_LAPIC_SIZE;
    if (ioctl(c->fd, KVM_GET_MP_STATE, &mp) < 0)
        return fail(c, err, errlen, "KVM_GET_MP_STATE");
    s->mp_state = mp.mp_state;
    if (ioctl(c->fd, KVM_GET_DEBUGREGS, &dbg) < 0)
        return fail(c, err, errlen, "KVM_GET_DEBUGREGS");
    for (unsigned i = 0; i < 4; i++)
        s->dr[i] = dbg.db[i];
    s->dr6 = dbg.dr6;
    s->dr7 = dbg.dr7;

    pc_msr_buf b = { .nmsrs = 0 };
    for (unsigned i = 0; i < VCPU_PC_NMSRS; i++)
        if (c->pc_msr_supported & (1ull << i))
            b.e[b.nmsrs++].index = pc_msr_index[i];
    int n = ioctl(c->fd, KVM_GET_MSRS, &b);
    if (n != (int)b.nmsrs)
        return fail(c, err, errlen, "KVM_GET_MSRS, the PC's (%d of %" PRIu32
                    ")", n, b.nmsrs);
    s->pc_msr_mask = c->pc_msr_supported;
    memset(s->pc_msrs, 0, sizeof(s->pc_msrs));
    for (unsigned i = 0, j = 0; i < VCPU_PC_NMSRS; i++)
        if (c->pc_msr_supported & (1ull << i))
            s->pc_msrs[i] = b.e[j++].data;
    return 0;
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
    return c->pc ? fetch_pc(c, err, errlen) : 0;
}

static int push_pc_msrs(vcpu *c, char *err, size_t errlen)
{
    const vcpu_state *s = &c->state;
    pc_msr_buf b = { .nmsrs = 0 };

    for (unsigned i = 0; i < VCPU_PC_NMSRS; i++) {
        if (!(s->pc_msr_mask & c->pc_msr_supported & (1ull << i)))
            continue;
        b.e[b.nmsrs].index = pc_msr_index[i];
        b.e[b.nmsrs++].data = s->pc_msrs[i];
    }
    int n = ioctl(c->fd, KVM_SET_MSRS, &b);
    if (n != (int)b.nmsrs)
        return fail(c, err, errlen, "KVM_SET_MSRS, the PC's: MSR 0x%" PRIx32
                    " (%d of %" PRIu32 ")",
                    n >= 0 && n < (int)b.nmsrs ? b.e[n].index : 0, n,
                    b.nmsrs);
    return 0;
}

/*
 * The order is KVM's: segments and control registers first (they decide
 * the mode everything else is read in), the registers, then for a PC the
 * debug registers and the LAPIC, the MSRs (the TSC before what counts in
 * it), the MP state, and the pending events last.
 */
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
    if (c->pc) {
        /*
         * After KVM_SET_SREGS: the LAPIC takes the APIC base (xAPIC or
         * x2APIC mode) sregs set.  Before the MSRs: the TSC deadline and
         * PV EOI need the LAPIC as it was.
         */
        struct kvm_debugregs dbg = { .dr6 = s->dr6, .dr7 = s->dr7 };
        for (unsigned i = 0; i < 4; i++)
            dbg.db[i] = s->dr[i];
        if (ioctl(c->fd, KVM_SET_DEBUGREGS, &dbg) < 0)
            return fail(c, err, errlen, "KVM_SET_DEBUGREGS");
        struct kvm_lapic_state lapic;
        memcpy(lapic.regs, s->lapic, VCPU_LAPIC_SIZE);
        if (ioctl(c->fd, KVM_SET_LAPIC, &lapic) < 0)
            return fail(c, err, errlen, "KVM_SET_LAPIC");
    }

    msr_buf b = { .nmsrs = 0 };
    for (unsigned i = 0; i < VCPU_NMSRS; i++) {
        if (!(s->msr_mask & c->msr_supported & (1u << i)))
            continue;
        b.e[b.nmsrs].index = msr_index[i];
        b.e[b.nmsrs++].data = s->msrs[i];
    }
    /* The TSC is the list's first: set as the call begins. */
    c->tsc_pushed_ns = mono_ns();
    int n = ioctl(c->fd, KVM_SET_MSRS, &b);
    if (n != (int)b.nmsrs)
        return fail(c, err, errlen, "KVM_SET_MSRS (%d of %" PRIu32 ")", n,
                    b.nmsrs);
    if (c->pc) {
        int rc = push_pc_msrs(c, err, errlen);
        if (rc < 0)
            return rc;
        /*
         * Before the events: KVM refuses an INIT or SIPI wait while an
         * INIT is latched, which the events' SMM part may set.
         */
        struct kvm_mp_state mp = { .mp_state = s->mp_state };
        if (ioctl(c->fd, KVM_SET_MP_STATE, &mp) < 0)
            return fail(c, err, errlen, "KVM_SET_MP_STATE (%" PRIu32 ")",
                        s->mp_state);
    }

    /* Last: KVM_SET_REGS and KVM_SET_SREGS drop or queue events. */
    struct kvm_vcpu_events ev = s->events;
    ev.flags = (ev.flags & KVM_VCPUEVENT_VALID_SMM) | EVENTS_PUSH_FLAGS;
    if (ioctl(c->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
        return fail(c, err, errlen, "KVM_SET_VCPU_EVENTS");
    return 0;
}

int vcpu_state_refresh(vcpu *c, char *err, size_t errlen)
{
    vcpu_state *s = &c->state;

    if (ioctl(c->fd, KVM_GET_VCPU_EVENTS, &s->events) < 0)
        return fail(c, err, errlen, "KVM_GET_VCPU_EVENTS");
    if (c->pc) {
        struct kvm_lapic_state lapic;
        struct kvm_mp_state mp;
        if (ioctl(c->fd, KVM_GET_LAPIC, &lapic) < 0)
            return fail(c, err, errlen, "KVM_GET_LAPIC");
        memcpy(s->lapic, lapic.regs, VCPU_LAPIC_SIZE);
        if (ioctl(c->fd, KVM_GET_MP_STATE, &mp) < 0)
            return fail(c, err, errlen, "KVM_GET_MP_STATE");
        s->mp_state = mp.mp_state;
    }
    if (!(c->msr_supported & (1u << VCPU_MSR_TSC)))
        return 0;
    c->tsc_read_ns = mono_ns();
    if (get_msr(c, msr_index[VCPU_MSR_TSC],
                &c->state.msrs[VCPU_MSR_TSC]) < 0)
        return fail(c, err, errlen, "KVM_GET_MSRS (the TSC)");
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

/* "cpu/pc": checked in the parent's check, which sees it loaded. */
static int pc_check(qfile *f, const vcpu_state *s, const vcpu *c)
{
    if (!c->pc) {
        if (s->lapic_len != 0)
            return qfile_fail(f, -EINVAL, "cpu %u: a Linux guest's vCPU "
                              "('cpu/pc'), but this VM is not a Linux VM",
                              c->index);
        return 0;
    }
    if (s->lapic_len != VCPU_LAPIC_SIZE)
        return qfile_fail(f, -EINVAL, "cpu %u: local APIC state of %" PRIu32
                          " bytes, KVM's is %u%s", c->index, s->lapic_len,
                          VCPU_LAPIC_SIZE, s->lapic_len ? "" :
                          " (no 'cpu/pc' subsection: not a Linux vCPU)");
    if (s->mp_state > KVM_MP_STATE_SIPI_RECEIVED)
        return qfile_fail(f, -EINVAL, "cpu %u: MP state %" PRIu32 " is none "
                          "of an x86 vCPU's (0..%u)", c->index, s->mp_state,
                          KVM_MP_STATE_SIPI_RECEIVED);
    if ((s->dr6 | s->dr7) >> 32)
        return qfile_fail(f, -EINVAL, "cpu %u: DR6 0x%" PRIx64 " or DR7 0x%"
                          PRIx64 " has bits above 31 set", c->index, s->dr6,
                          s->dr7);
    if (s->pc_msr_mask >> VCPU_PC_NMSRS)
        return qfile_fail(f, -EINVAL, "cpu %u: MSR mask 0x%" PRIx64 " names "
                          "MSRs this build does not know", c->index,
                          s->pc_msr_mask);
    uint64_t missing = s->pc_msr_mask & ~c->pc_msr_supported;
    for (unsigned i = 0; i < VCPU_PC_NMSRS; i++)
        if ((missing & (1ull << i)) && s->pc_msrs[i] != 0)
            return qfile_fail(f, -ENOTSUP, "cpu %u: MSR 0x%" PRIx32 " holds "
                              "0x%" PRIx64 ", but this host's KVM cannot set "
                              "it", c->index, pc_msr_index[i], s->pc_msrs[i]);
    return 0;
}

/* Refuses state this host cannot take, before anything is applied. */
static int state_check(qfile *f, const void *obj, uint32_t version)
{
    const vcpu_state *s = obj;
    const vcpu *c = s->owner;

    (void)version;
    int rc = pc_check(f, s, c);
    if (rc < 0)
        return rc;
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

static const vmstate_field pc_fields[] = {
    {VMSTATE_SCALAR(vcpu_state, lapic_len)},
    {VMSTATE_VBUFFER(vcpu_state, lapic, lapic_len)},
    {VMSTATE_SCALAR(vcpu_state, mp_state)},
    {VMSTATE_ARRAY(vcpu_state, dr)},
    {VMSTATE_SCALAR(vcpu_state, dr6)},
    {VMSTATE_SCALAR(vcpu_state, dr7)},
    {VMSTATE_SCALAR(vcpu_state, pc_msr_mask)},
    {VMSTATE_ARRAY(vcpu_state, pc_msrs)},
    VMSTATE_END,
};

static const vmstate_desc pc_desc = {
    .name = "cpu/pc", .version = 1, .minimum_version = 1,
    .size = sizeof(vcpu_state), .fields = pc_fields,
};

static bool pc_needed(const void *obj)
{
    return ((const vcpu_state *)obj)->owner->pc;
}

static const vmstate_subsection state_subsections[] = {
    {&pc_desc, pc_needed},
    {NULL, NULL},
};

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
    .subsections = state_subsections,
    .check = state_check, .post_load = state_post_load,
};
