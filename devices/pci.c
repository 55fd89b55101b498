/* pci: see pci.h. */
#include "devices/pci.h"

#include <errno.h>
#include <string.h>

#define STATUS_CAP_LIST 0x0010u
#define BAR0_OFF        0x10u
#define COMMAND_MASK    (PCI_COMMAND_IO | PCI_COMMAND_MEMORY |              \
                         PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE)
#define ADDR_ENABLE     0x80000000u

void pci_func_init(pci_func *f, const pci_ident *id)
{
    memset(f, 0, sizeof(*f));
    f->id = id;
}

/* The header's dword at off (a multiple of 4). */
static uint32_t dword(const pci_func *f, unsigned off)
{
    const pci_ident *id = f->id;

    switch (off) {
    case 0x00:
        return id->vendor | (uint32_t)id->device << 16;
    case 0x04:
        return f->command |
               (uint32_t)(id->caps_len ? STATUS_CAP_LIST : 0) << 16;
    case 0x08:
        return id->revision | id->class_code << 8;
    case BAR0_OFF:
        return id->bar0_size ? f->bar0 : 0;     /* memory, 32-bit */
    case 0x2c:
        return id->subsys_vendor | (uint32_t)id->subsys << 16;
    case 0x34:
        return id->caps_len ? PCI_CAP_START : 0;
    case 0x3c:
        return f->int_line | (uint32_t)id->int_pin << 8;
    }
    if (off >= PCI_CAP_START && off - PCI_CAP_START < id->caps_len) {
        uint32_t v = 0;
        for (unsigned i = 0; i < 4; i++) {
            size_t k = off - PCI_CAP_START + i;
            if (k < id->caps_len)
                v |= (uint32_t)id->caps[k] << (8 * i);
        }
        return v;
    }
    return 0;
}

uint32_t pci_func_read(const pci_func *f, unsigned off, unsigned size)
{
    uint32_t v = dword(f, off & 0xfcu) >> (8 * (off & 3));

    return size == 4 ? v : v & ((1u << (8 * size)) - 1);
}

void pci_func_write(pci_func *f, unsigned off, unsigned size, uint32_t val)
{
    unsigned shift = 8 * (off & 3);
    uint32_t mask = size == 4 ? ~0u : ((1u << (8 * size)) - 1) << shift;
    uint32_t old = dword(f, off & 0xfcu);
    uint32_t v = (old & ~mask) | ((val << shift) & mask);

    switch (off & 0xfcu) {
    case 0x04:                      /* status bits are RW1C: none kept */
        f->command = (uint16_t)(v & COMMAND_MASK);
        break;
    case BAR0_OFF:
        if (f->id->bar0_size)
            f->bar0 = v & ~(f->id->bar0_size - 1) & ~0xfu;
        break;
    case 0x3c:
        f->int_line = (uint8_t)v;
        break;
    }
}

bool pci_func_mmio(const pci_func *f, uint64_t addr, uint64_t *off)
{
    if (!f->id->bar0_size || !(f->command & PCI_COMMAND_MEMORY) ||
        addr < f->bar0 || addr - f->bar0 >= f->id->bar0_size)
        return false;
    *off = addr - f->bar0;
    return true;
}

void pci_host_init(pci_host *h)
{
    memset(h, 0, sizeof(*h));
}

bool pci_host_claims(uint16_t port, unsigned size)
{
    return (port == PCI_CONFIG_ADDRESS && size == 4) ||
           (port >= PCI_CONFIG_DATA && port < PCI_CONFIG_DATA + 4 &&
            (port & (size - 1)) == 0);
}

/* The function the address register selects, or NULL. */
static pci_func *selected(const pci_host *h)
{
    uint32_t a = h->address;
    unsigned bus = (a >> 16) & 0xff, dev = (a >> 11) & 0x1f,
             fn = (a >> 8) & 7;

    if (!(a & ADDR_ENABLE) || bus != 0 || fn != 0)
        return NULL;
    return h->slot[dev];
}

static uint32_t load(const uint8_t *d, unsigned size)
{
    uint32_t v = 0;

    for (unsigned i = 0; i < size; i++)
        v |= (uint32_t)d[i] << (8 * i);
    return v;
}

static void store(uint8_t *d, unsigned size, uint32_t v)
{
    for (unsigned i = 0; i < size; i++)
        d[i] = (uint8_t)(v >> (8 * i));
}

void pci_host_io(pci_host *h, uint16_t port, bool out, uint8_t *data,
                 unsigned size)
{
    if (port == PCI_CONFIG_ADDRESS) {
        if (out)
            h->address = load(data, 4) & 0x80fffffcu;
        else
            store(data, 4, h->address);
        return;
    }
    pci_func *f = selected(h);
    unsigned off = (h->address & 0xfcu) + (port - PCI_CONFIG_DATA);
    if (out) {
        if (f)
            pci_func_write(f, off, size, load(data, size));
    } else {
        /* No function there: the master abort's all ones. */
        store(data, size, f ? pci_func_read(f, off, size) : 0xffffffffu);
    }
}

/* ---- state ---- */

static int func_check(qfile *f, const void *obj, uint32_t version)
{
    const pci_func *p = obj;

    (void)version;
    if (p->command & ~COMMAND_MASK)
        return qfile_fail(f, -EINVAL, "pci: command register 0x%04x has "
                          "bits no function here implements", p->command);
    if (p->bar0 & 0xfu)
        return qfile_fail(f, -EINVAL, "pci: BAR 0 at 0x%08x is not aligned",
                          p->bar0);
    return 0;
}

static const vmstate_field func_fields[] = {
    {VMSTATE_SCALAR(pci_func, command)},
    {VMSTATE_SCALAR(pci_func, bar0)},
    {VMSTATE_SCALAR(pci_func, int_line)},
    VMSTATE_END,
};

const vmstate_desc pci_func_desc = {
    .name = "pci-func", .version = 1, .minimum_version = 1,
    .size = sizeof(pci_func), .fields = func_fields, .check = func_check,
};

static int host_check(qfile *f, const void *obj, uint32_t version)
{
    const pci_host *h = obj;

    (void)version;
    if (h->address & ~0x80fffffcu)
        return qfile_fail(f, -EINVAL, "pci: address register 0x%08x has "
                          "reserved bits set", h->address);
    return 0;
}

static const vmstate_field host_fields[] = {
    {VMSTATE_SCALAR(pci_host, address)},
    VMSTATE_END,
};

const vmstate_desc pci_host_desc = {
    .name = "pci-host", .version = 1, .minimum_version = 1,
    .size = sizeof(pci_host), .fields = host_fields, .check = host_check,
};
