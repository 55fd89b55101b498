/* pc: see pc.h. */
#include "vm/pc.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "devices/cmos.h"
#include "devices/i8042.h"
#include "devices/mptable.h"
#include "devices/uart8250.h"

/* The PCI configuration ports that do the reset of `reboot=p`. */
#define RESET_CONTROL_PORT 0xcf9u
#define RESET_CPU          0x04u

struct pc {
    kvm_vm *kvm;
    pthread_mutex_t lock;
    uart8250 uart;
    i8042 kbc;
    cmos rtc;
    hc_console_fn console;
    void *console_opaque;
    uint64_t irq_errors;
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

void pc_free(pc *p)
{
    if (!p)
        return;
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
    (void)p;
    size_t n = mptable_size(ncpus);
    uint8_t *buf = gmem_ptr(g, MPTABLE_ADDR, n);

    if (!buf || mptable_write(buf, n, MPTABLE_ADDR, ncpus) < 0) {
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
    (void)p;
    (void)addr;
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
