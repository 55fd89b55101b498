/* pc: see pc.h. */
#include "vm/pc.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "devices/cmos.h"
#include "devices/i8042.h"
#include "devices/mptable.h"
#include "devices/uart8250.h"
#include "vm/mono.h"
#include "vm/pcpci.h"

/* The PCI configuration ports that do the reset of `reboot=p`. */
#define RESET_CONTROL_PORT 0xcf9u
#define RESET_CPU          0x04u

/* KVM's structs as its x86 ioctls lay them out, each with its length. */
typedef struct pc_state {
    uint32_t pic_master_len;
    uint8_t pic_master[sizeof(struct kvm_pic_state)];
    uint32_t pic_slave_len;
    uint8_t pic_slave[sizeof(struct kvm_pic_state)];
    uint32_t ioapic_len;
    uint8_t ioapic[sizeof(struct kvm_ioapic_state)];
    uint32_t pit_len;
    uint8_t pit[sizeof(struct kvm_pit_state2)];
    uint64_t clock;                 /* KVM_GET_CLOCK's, ns */
    uint64_t clock_tsc;             /* vCPU 0's TSC at that clock; 0: not
                                       known (version 1) */
    uart8250 uart;
    i8042 kbc;
    cmos rtc;
    /* Not state: */
    int fetch_error;                /* the last fetch's, 0 if it worked */
    bool loaded;
} pc_state;

struct pc {
    kvm_vm *kvm;
    pc_state st;
    pthread_mutex_t lock;
    uart8250 uart;
    i8042 kbc;
    cmos rtc;
    hc_console_fn console;
    void *console_opaque;
    uint64_t irq_errors;
    pcpci *pci;                     /* NULL: no network device or disk */
};

static int uart_out(void *opaque, const void *buf, size_t len)
{
    pc *p = opaque;

    return p->console(p->console_opaque, buf, len);
}

static void uart_irq(void *opaque, bool level)
{
    pc *p = opaque;
    struct kvm_irq_level l = { .irq = UART8250_COM1_IRQ, .level = level };

    if (ioctl(p->kvm->vm_fd, KVM_IRQ_LINE, &l) < 0)
        p->irq_errors++;
}

static int vm_ioctl(kvm_vm *k, unsigned long req, void *arg, const char *name,
                    char *err, size_t errlen)
{
    if (ioctl(k->vm_fd, req, arg) == 0)
        return 0;
    int e = errno;
    snprintf(err, errlen, "%s: %s: %s", KVM_DEVICE, name, strerror(e));
    return -e;
}

int pc_create(pc **out, kvm_vm *k, hc_console_fn console,
              void *console_opaque, char *err, size_t errlen)
{
    int rc;

    if (ioctl(k->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP) <= 0 ||
        ioctl(k->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_PIT2) <= 0) {
        snprintf(err, errlen, "%s: the host's KVM has no in-kernel irqchip "
                 "or PIT, which a Linux guest needs", KVM_DEVICE);
        return -ENOTSUP;
    }
    uint64_t idmap = PC_IDENTITY_MAP_ADDR;
    rc = vm_ioctl(k, KVM_SET_IDENTITY_MAP_ADDR, &idmap,
                  "KVM_SET_IDENTITY_MAP_ADDR", err, errlen);
    if (rc == 0 && ioctl(k->vm_fd, KVM_SET_TSS_ADDR,
                         (unsigned long)PC_TSS_ADDR) < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: KVM_SET_TSS_ADDR: %s", KVM_DEVICE,
                 strerror(-rc));
    }
    if (rc == 0)
        rc = vm_ioctl(k, KVM_CREATE_IRQCHIP, NULL, "KVM_CREATE_IRQCHIP", err,
                      errlen);
    /* Port 0x61 (the speaker gate the PIT's channel 2 uses) in KVM too. */
    struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
    if (rc == 0)
        rc = vm_ioctl(k, KVM_CREATE_PIT2, &pit, "KVM_CREATE_PIT2", err,
                      errlen);
    if (rc < 0)
        return rc;
    pc *p = calloc(1, sizeof(*p));
    if (!p || pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        snprintf(err, errlen, "pc: no memory");
        return -ENOMEM;
    }
    p->kvm = k;
    p->console = console;
    p->console_opaque = console_opaque;
    uart8250_init(&p->uart, uart_out, p, uart_irq, p);
    i8042_init(&p->kbc);
    *out = p;
    return 0;
}

/* The PCI bus, made by the first device that needs it. */
static int need_pci(pc *p, gmem *g, char *err, size_t errlen)
{
    return p->pci ? 0 : pcpci_create(&p->pci, p->kvm, g, err, errlen);
}

int pc_add_net(pc *p, gmem *g, net_dev *net, const uint8_t mac[6],
               pc_tx_fn tx, void *tx_opaque, char *err, size_t errlen)
{
    int rc = need_pci(p, g, err, errlen);

    return rc < 0 ? rc : pcpci_add_net(p->pci, net, mac, tx, tx_opaque, err,
                                       errlen);
}

int pc_add_blk(pc *p, gmem *g, disk *d, char *err, size_t errlen)
{
    int rc = need_pci(p, g, err, errlen);

    return rc < 0 ? rc : pcpci_add_blk(p->pci, d, err, errlen);
}

bool pc_has_pci(const pc *p)
{
    return p->pci != NULL;
}

void *pc_pci_state_obj(pc *p)
{
    return p->pci ? pcpci_state_obj(p->pci) : NULL;
}

void pc_net_rx(pc *p)
{
    if (p->pci)
        pcpci_rx(p->pci);
}

void pc_resume(pc *p)
{
    if (p->pci)
        pcpci_thaw(p->pci);
}

void pc_free(pc *p)
{
    if (!p)
        return;
    pcpci_free(p->pci);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Every subleaf of function fn. */
static void each(struct kvm_cpuid2 *c, uint32_t fn,
                 void (*set)(struct kvm_cpuid_entry2 *e, unsigned index,
                             unsigned ncpus),
                 unsigned index, unsigned ncpus)
{
    for (uint32_t i = 0; i < c->nent; i++)
        if (c->entries[i].function == fn)
            set(&c->entries[i], index, ncpus);
}

static void set_leaf1(struct kvm_cpuid_entry2 *e, unsigned index,
                      unsigned ncpus)
{
    (void)ncpus;
    e->ebx = (e->ebx & 0x00ffffffu) | (uint32_t)index << 24;
    e->ecx |= 1u << 31;             /* running under a hypervisor */
}

static void set_x2apic_id(struct kvm_cpuid_entry2 *e, unsigned index,
                          unsigned ncpus)
{
    (void)ncpus;
    e->edx = index;
}

static void set_amd_ext_apic_id(struct kvm_cpuid_entry2 *e, unsigned index,
                                unsigned ncpus)
{
    (void)ncpus;
    e->eax = index;
}

int pc_setup_vcpu(pc *p, int fd, unsigned index, unsigned ncpus, char *err,
                  size_t errlen)
{
    const struct kvm_cpuid2 *src = p->kvm->cpuid;
    size_t sz = sizeof(*src) + src->nent * sizeof(src->entries[0]);
    struct kvm_cpuid2 *c = malloc(sz);

    if (!c) {
        snprintf(err, errlen, "vCPU %u: no memory for its CPUID", index);
        return -ENOMEM;
    }
    memcpy(c, src, sz);
    each(c, 0x1, set_leaf1, index, ncpus);
    each(c, 0xb, set_x2apic_id, index, ncpus);
    each(c, 0x1f, set_x2apic_id, index, ncpus);
    each(c, 0x8000001e, set_amd_ext_apic_id, index, ncpus);
    int rc = 0;
    if (ioctl(fd, KVM_SET_CPUID2, c) < 0) {
        rc = -errno;
        snprintf(err, errlen, "vCPU %u: KVM_SET_CPUID2: %s", index,
                 strerror(-rc));
    }
    free(c);
    return rc;
}

int pc_write_tables(pc *p, gmem *g, unsigned ncpus, char *err, size_t errlen)
{
    mptable_pci_irq irq[2];
    unsigned npci = 0;

    if (p->pci && pcpci_has_net(p->pci))
        irq[npci++] = (mptable_pci_irq){ .slot = PCPCI_NET_SLOT,
                                         .ioapic_pin = PCPCI_NET_IRQ };
    if (p->pci && pcpci_has_blk(p->pci))
        irq[npci++] = (mptable_pci_irq){ .slot = PCPCI_BLK_SLOT,
                                         .ioapic_pin = PCPCI_BLK_IRQ };
    size_t n = mptable_size_pci(ncpus, npci);
    uint8_t *buf = gmem_ptr(g, MPTABLE_ADDR, n);

    if (!buf ||
        mptable_write_pci(buf, n, MPTABLE_ADDR, ncpus, irq, npci) < 0) {
        snprintf(err, errlen, "pc: an MP table for %u vCPUs does not fit "
                 "below 1 MiB", ncpus);
        return -EINVAL;
    }
    return 0;
}

/* One byte of port I/O, with the lock held. */
static pc_io_result io_byte(pc *p, uint16_t port, bool out, uint8_t *b)
{
    if (port >= UART8250_COM1_BASE &&
        port < UART8250_COM1_BASE + UART8250_PORTS) {
        if (out)
            uart8250_write(&p->uart, port - UART8250_COM1_BASE, *b);
        else
            *b = uart8250_read(&p->uart, port - UART8250_COM1_BASE);
    } else if (port == I8042_DATA_PORT || port == I8042_COMMAND_PORT) {
        if (!out)
            *b = i8042_read(&p->kbc, port);
        else if (i8042_write(&p->kbc, port, *b))
            return PC_IO_RESET;
    } else if (port == CMOS_INDEX_PORT || port == CMOS_DATA_PORT) {
        if (out)
            cmos_write(&p->rtc, port, *b);
        else
            *b = cmos_read(&p->rtc, port);
    } else if (port == RESET_CONTROL_PORT && out && (*b & RESET_CPU)) {
        return PC_IO_RESET;
    } else if (!out) {
        *b = 0xff;
    }
    return PC_IO_DONE;
}

pc_io_result pc_io(pc *p, uint16_t port, bool out, uint8_t *data,
                   unsigned size)
{
    pc_io_result r = PC_IO_DONE;

    if (p->pci && pcpci_io(p->pci, port, out, data, size))
        return PC_IO_DONE;
    /*
     * Every device here has byte registers; a wider access is to ports
     * with nothing behind them (PCI's 0xcf8 probe, which must not reach
     * the reset control at 0xcf9).
     */
    if (size != 1) {
        if (!out)
            memset(data, 0xff, size);
        return PC_IO_DONE;
    }
    pthread_mutex_lock(&p->lock);
    r = io_byte(p, port, out, data);
    pthread_mutex_unlock(&p->lock);
    return r;
}

void pc_mmio(pc *p, uint64_t addr, bool write, uint8_t *data, unsigned len)
{
    if (p->pci && pcpci_mmio(p->pci, addr, write, data, len))
        return;
    if (!write)
        memset(data, 0xff, len);
}

size_t pc_console_input(pc *p, const uint8_t *buf, size_t len)
{
    pthread_mutex_lock(&p->lock);
    size_t n = uart8250_receive(&p->uart, buf, len);
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* ---- state ---- */

static int vm_fail(pc *p, const char *name, char *err, size_t errlen)
{
    int e = errno ? errno : EIO;
    (void)p;
    snprintf(err, errlen, "pc: %s: %s", name, strerror(e));
    return -e;
}

/* KVM's three interrupt controllers, in the order the state keeps them. */
static void irqchip_ids(struct kvm_irqchip chip[3])
{
    static const uint32_t ids[3] = { KVM_IRQCHIP_PIC_MASTER,
                                     KVM_IRQCHIP_PIC_SLAVE,
                                     KVM_IRQCHIP_IOAPIC };
    for (unsigned i = 0; i < 3; i++)
        chip[i] = (struct kvm_irqchip){ .chip_id = ids[i] };
}

/*
 * A vCPU's TSC offset (guest TSC = host TSC + offset: ftvm never scales
 * the TSC), KVM_VCPU_TSC_OFFSET (Linux 5.16): read or written exactly,
 * where writing the TSC MSR lands at whatever moment the ioctl runs.
 */
static int tsc_offset(int vcpu_fd, uint64_t *ofs, bool set)
{
    struct kvm_device_attr a = { .group = KVM_VCPU_TSC_CTRL,
                                 .attr = KVM_VCPU_TSC_OFFSET,
                                 .addr = (uint64_t)(uintptr_t)ofs };
    return ioctl(vcpu_fd, set ? KVM_SET_DEVICE_ATTR : KVM_GET_DEVICE_ATTR,
                 &a) < 0 ? -errno : 0;
}

int pc_state_fetch(pc *p, int vcpu0_fd, uint64_t tsc_read_ns, char *err,
                   size_t errlen)
{
    pc_state *s = &p->st;
    struct kvm_irqchip chip[3];
    irqchip_ids(chip);
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clock = { 0 };
    uint64_t ofs;

    s->fetch_error = -EIO;
    /* First: the caller has just read the TSCs. */
    uint64_t t = mono_ns();
    if (ioctl(p->kvm->vm_fd, KVM_GET_CLOCK, &clock) < 0)
        return s->fetch_error = vm_fail(p, "KVM_GET_CLOCK", err, errlen);
    s->clock_tsc = 0;
    if ((clock.flags & KVM_CLOCK_HOST_TSC) &&
        tsc_offset(vcpu0_fd, &ofs, false) == 0) {
        /* KVM read the clock and the host's TSC together: exact. */
        s->clock_tsc = clock.host_tsc + ofs;
    } else if (tsc_read_ns && tsc_read_ns < t &&
               t - tsc_read_ns < clock.clock) {
        /* As of the TSC's moment (microseconds before, more nested). */
        clock.clock -= t - tsc_read_ns;
    }
    for (unsigned i = 0; i < 3; i++)
        if (ioctl(p->kvm->vm_fd, KVM_GET_IRQCHIP, &chip[i]) < 0)
            return s->fetch_error = vm_fail(p, "KVM_GET_IRQCHIP", err,
                                            errlen);
    if (ioctl(p->kvm->vm_fd, KVM_GET_PIT2, &pit) < 0)
        return s->fetch_error = vm_fail(p, "KVM_GET_PIT2", err, errlen);
    memcpy(s->pic_master, &chip[0].chip.pic, sizeof(s->pic_master));
    memcpy(s->pic_slave, &chip[1].chip.pic, sizeof(s->pic_slave));
    memcpy(s->ioapic, &chip[2].chip.ioapic, sizeof(s->ioapic));
    memcpy(s->pit, &pit, sizeof(s->pit));
    s->pic_master_len = s->pic_slave_len = sizeof(s->pic_master);
    s->ioapic_len = sizeof(s->ioapic);
    s->pit_len = sizeof(s->pit);
    s->clock = clock.clock;
    pthread_mutex_lock(&p->lock);
    s->uart = p->uart;
    s->kbc = p->kbc;
    s->rtc = p->rtc;
    pthread_mutex_unlock(&p->lock);
    if (p->pci)
        pcpci_state_fetch(p->pci);
    s->fetch_error = 0;
    s->loaded = false;
    return 0;
}

void pc_state_fail(pc *p, int err)
{
    p->st.fetch_error = err;
}

bool pc_state_loaded(const pc *p)
{
    return p->st.loaded;
}

/*
 * Before the vCPUs' state (vm.c pushes this first): the interrupt
 * controllers must be as they were when a LAPIC is loaded and the first
 * vCPU runs.
 */
int pc_state_push(pc *p, char *err, size_t errlen)
{
    pc_state *s = &p->st;
    struct kvm_irqchip chip[3];
    irqchip_ids(chip);
    struct kvm_pit_state2 pit;

    if (p->pci && !pcpci_state_loaded(p->pci)) {
        snprintf(err, errlen, "pc: the checkpoint has no 'pci' section (the "
                 "virtio-net and virtio-blk devices) for this VM's network "
                 "device or disk");
        return -EINVAL;
    }
    memcpy(&chip[0].chip.pic, s->pic_master, sizeof(s->pic_master));
    memcpy(&chip[1].chip.pic, s->pic_slave, sizeof(s->pic_slave));
    memcpy(&chip[2].chip.ioapic, s->ioapic, sizeof(s->ioapic));
    memcpy(&pit, s->pit, sizeof(pit));
    for (unsigned i = 0; i < 3; i++)
        if (ioctl(p->kvm->vm_fd, KVM_SET_IRQCHIP, &chip[i]) < 0)
            return vm_fail(p, "KVM_SET_IRQCHIP", err, errlen);
    if (ioctl(p->kvm->vm_fd, KVM_SET_PIT2, &pit) < 0)
        return vm_fail(p, "KVM_SET_PIT2", err, errlen);
    pthread_mutex_lock(&p->lock);
    uart8250 live = p->uart;
    p->uart = s->uart;
    p->uart.out = live.out;
    p->uart.out_opaque = live.out_opaque;
    p->uart.irq = live.irq;
    p->uart.irq_opaque = live.irq_opaque;
    p->kbc = s->kbc;
    p->rtc = s->rtc;
    /*
     * The irqchip came back with the line's level in it; drive it once
     * more so KVM's record of this source's level agrees (a level the
     * UART holds high would otherwise never be lowered).  At worst the
     * guest sees one spurious UART interrupt, which its driver ignores.
     */
    uart_irq(p, p->uart.level);
    pthread_mutex_unlock(&p->lock);
    if (p->pci)
        pcpci_state_push(p->pci);
    return 0;
}

/*
 * KVM publishes the clock to the guest with the TSC it reads at the next
 * entry (KVM_REQ_CLOCK_UPDATE), so setting it after the vCPUs' state is
 * in time; setting it as of the TSC's moment keeps the guest's kvm-clock
 * and TSC clocksources agreeing (a gap of milliseconds between the two
 * made the guest's watchdog mark the TSC unstable).
 */
/*
 * Exact: the clock set to its saved value, then read back with the host
 * TSC of that moment, and every vCPU's TSC offset set so that its TSC
 * there is the saved one plus the clock's advance since (one rate: a
 * guest's TSCs run together).  -ENOTSUP where KVM cannot say the host
 * TSC or take an offset.
 */
static int push_clock_exact(pc *p, const int *vcpu_fds, unsigned n,
                            char *err, size_t errlen)
{
    struct kvm_clock_data c = { .clock = p->st.clock };

    if (ioctl(p->kvm->vm_fd, KVM_SET_CLOCK, &c) < 0)
        return vm_fail(p, "KVM_SET_CLOCK", err, errlen);
    c = (struct kvm_clock_data){ 0 };
    if (ioctl(p->kvm->vm_fd, KVM_GET_CLOCK, &c) < 0)
        return vm_fail(p, "KVM_GET_CLOCK", err, errlen);
    int khz = ioctl(vcpu_fds[0], KVM_GET_TSC_KHZ, 0);
    if (!(c.flags & KVM_CLOCK_HOST_TSC) || khz <= 0 || c.clock < p->st.clock)
        return -ENOTSUP;
    uint64_t ticks = (c.clock - p->st.clock) * (uint64_t)khz / 1000000u;
    uint64_t ofs = p->st.clock_tsc + ticks - c.host_tsc;
    for (unsigned i = 0; i < n; i++) {
        int rc = tsc_offset(vcpu_fds[i], &ofs, true);
        if (rc == -ENXIO || rc == -EINVAL || rc == -ENOTTY)
            return i == 0 ? -ENOTSUP : vm_fail(p, "KVM_VCPU_TSC_OFFSET",
                                                err, errlen);
        if (rc < 0)
            return vm_fail(p, "KVM_VCPU_TSC_OFFSET", err, errlen);
    }
    return 0;
}

int pc_state_push_clock(pc *p, const int *vcpu_fds, unsigned n,
                        uint64_t since_tsc_ns, char *err, size_t errlen)
{
    int rc = p->st.clock_tsc ? push_clock_exact(p, vcpu_fds, n, err, errlen)
                             : -ENOTSUP;
    if (rc == -ENOTSUP) {
        /* As of vCPU 0's TSC write, timed as its ioctl began. */
        struct kvm_clock_data clock = { .clock = p->st.clock + since_tsc_ns };
        rc = ioctl(p->kvm->vm_fd, KVM_SET_CLOCK, &clock) < 0
                 ? vm_fail(p, "KVM_SET_CLOCK", err, errlen) : 0;
    }
    if (rc == 0)
        p->st.loaded = false;
    return rc;
}

void *pc_state_obj(pc *p)
{
    return &p->st;
}

static int state_pre_save(void *copy)
{
    pc_state *s = copy;
    return s->fetch_error < 0 ? s->fetch_error
                              : s->ioapic_len ? 0 : -ENODATA;
}

static int check_len(qfile *f, const char *what, uint32_t len, size_t want)
{
    if (len == want)
        return 0;
    return qfile_fail(f, -EINVAL, "pc: %s state of %" PRIu32 " bytes; KVM's "
                      "is %zu", what, len, want);
}

static int state_check(qfile *f, const void *obj, uint32_t version)
{
    const pc_state *s = obj;
    int rc;

    (void)version;
    if ((rc = check_len(f, "PIC (master)", s->pic_master_len,
                        sizeof(s->pic_master))) < 0 ||
        (rc = check_len(f, "PIC (slave)", s->pic_slave_len,
                        sizeof(s->pic_slave))) < 0 ||
        (rc = check_len(f, "I/O APIC", s->ioapic_len,
                        sizeof(s->ioapic))) < 0 ||
        (rc = check_len(f, "PIT", s->pit_len, sizeof(s->pit))) < 0)
        return rc;
    struct kvm_ioapic_state io;
    memcpy(&io, s->ioapic, sizeof(io));
    if (io.base_address != 0xfec00000u)
        return qfile_fail(f, -EINVAL, "pc: the I/O APIC at 0x%llx; this "
                          "machine's is at 0xfec00000",
                          (unsigned long long)io.base_address);
    struct kvm_pit_state2 pit;
    memcpy(&pit, s->pit, sizeof(pit));
    for (unsigned i = 0; i < 3; i++) {
        const struct kvm_pit_channel_state *c = &pit.channels[i];
        /* KVM's reset leaves a channel never programmed at mode 0xff. */
        if ((c->mode > 5 && c->mode != 0xff) || c->rw_mode > 3 ||
            c->count > 0x10000)
            return qfile_fail(f, -EINVAL, "pc: PIT channel %u: mode %u, "
                              "access %u, count %u: not an 8254's", i,
                              c->mode, c->rw_mode, c->count);
    }
    return 0;
}

static int state_post_load(void *obj, uint32_t version)
{
    pc_state *s = obj;

    (void)version;
    s->loaded = true;
    s->fetch_error = 0;
    return 0;
}

static const vmstate_field state_fields[] = {
    {VMSTATE_SCALAR(pc_state, pic_master_len)},
    {VMSTATE_VBUFFER(pc_state, pic_master, pic_master_len)},
    {VMSTATE_SCALAR(pc_state, pic_slave_len)},
    {VMSTATE_VBUFFER(pc_state, pic_slave, pic_slave_len)},
    {VMSTATE_SCALAR(pc_state, ioapic_len)},
    {VMSTATE_VBUFFER(pc_state, ioapic, ioapic_len)},
    {VMSTATE_SCALAR(pc_state, pit_len)},
    {VMSTATE_VBUFFER(pc_state, pit, pit_len)},
    {VMSTATE_SCALAR(pc_state, clock)},
    {VMSTATE_SCALAR(pc_state, clock_tsc), .version = 2},
    {VMSTATE_STRUCT(pc_state, uart, uart8250_desc)},
    {VMSTATE_STRUCT(pc_state, kbc, i8042_desc)},
    {VMSTATE_STRUCT(pc_state, rtc, cmos_desc)},
    VMSTATE_END,
};

const vmstate_desc pc_state_desc = {
    .name = "pc", .version = 2, .minimum_version = 1,
    .size = sizeof(pc_state), .fields = state_fields,
    .pre_save = state_pre_save, .check = state_check,
    .post_load = state_post_load,
};
