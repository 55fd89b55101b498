/* virtio_pci: see virtio_pci.h. */
#include "devices/virtio_pci.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define VENDOR_VIRTIO      0x1af4u
#define DEVICE_MODERN_BASE 0x1040u
#define CAP_VENDOR         0x09u
#define CAP_COMMON         1u
#define CAP_NOTIFY         2u
#define CAP_ISR            3u
#define CAP_DEVICE         4u
#define NOTIFY_MULTIPLIER  4u
#define NO_VECTOR          0xffffu
#define COMMON_LEN         0x38u
#define STATUS_MASK        0xcfu    /* 1.0's bits: 1, 2, 4, 8, 0x40, 0x80 */

/* One vendor capability (16 bytes, 20 for notify) at caps[at]. */
static unsigned put_cap(uint8_t *caps, unsigned at, uint8_t type,
                        uint32_t offset, uint32_t length, bool last)
{
    uint8_t *c = caps + at;
    unsigned len = type == CAP_NOTIFY ? 20 : 16;

    c[0] = CAP_VENDOR;
    c[1] = last ? 0 : (uint8_t)(PCI_CAP_START + at + len);
    c[2] = (uint8_t)len;
    c[3] = type;
    c[4] = 0;                       /* BAR 0 */
    for (unsigned i = 0; i < 4; i++) {
        c[8 + i] = (uint8_t)(offset >> (8 * i));
        c[12 + i] = (uint8_t)(length >> (8 * i));
        if (type == CAP_NOTIFY)
            c[16 + i] = (uint8_t)(NOTIFY_MULTIPLIER >> (8 * i));
    }
    return at + len;
}

static void reset(virtio_pci *v)
{
    v->dfselect = v->gfselect = 0;
    v->driver_features = 0;
    v->status = 0;
    v->queue_select = 0;
    v->isr = 0;
    for (unsigned i = 0; i < VIRTIO_PCI_MAX_QUEUES; i++)
        virtq_reset(&v->q[i], v->queue_max);
}

void virtio_pci_init(virtio_pci *v, const char *name, uint16_t type,
                     uint32_t class_code,
                     uint64_t features, unsigned nqueues, uint16_t queue_max,
                     const uint8_t *devcfg, size_t devcfg_len,
                     const virtq_mem *mem)
{
    memset(v, 0, sizeof(*v));
    unsigned at = put_cap(v->caps, 0, CAP_COMMON, VIRTIO_PCI_COMMON,
                          COMMON_LEN, false);
    at = put_cap(v->caps, at, CAP_ISR, VIRTIO_PCI_ISR, 1, false);
    at = put_cap(v->caps, at, CAP_DEVICE, VIRTIO_PCI_DEVCFG,
                 (uint32_t)devcfg_len, false);
    at = put_cap(v->caps, at, CAP_NOTIFY, VIRTIO_PCI_NOTIFY,
                 nqueues * NOTIFY_MULTIPLIER, true);
    v->ident = (pci_ident){
        .vendor = VENDOR_VIRTIO, .device = DEVICE_MODERN_BASE + type,
        .subsys_vendor = VENDOR_VIRTIO, .subsys = DEVICE_MODERN_BASE + type,
        .revision = 1, .class_code = class_code, .int_pin = 1,
        .bar0_size = VIRTIO_PCI_BAR_SIZE, .caps = v->caps, .caps_len = at,
    };
    pci_func_init(&v->pci, &v->ident);
    v->device_features = features | VIRTIO_F_VERSION_1;
    v->nqueues = nqueues < VIRTIO_PCI_MAX_QUEUES ? nqueues
                                                 : VIRTIO_PCI_MAX_QUEUES;
    v->queue_max = queue_max;
    v->devcfg = devcfg;
    v->devcfg_len = devcfg_len;
    v->mem = *mem;
    v->name = name;
    reset(v);
}

static void update_irq(virtio_pci *v)
{
    /* INTx only: no MSI to make a driver set INTX_DISABLE. */
    bool level = v->isr != 0;

    if (level != v->level) {
        v->level = level;
        if (v->irq)
            v->irq(v->irq_opaque, level);
    }
}

void virtio_pci_sync_irq(virtio_pci *v)
{
    if (v->irq)
        v->irq(v->irq_opaque, v->level);
}

void virtio_pci_interrupt(virtio_pci *v, uint8_t isr_bits)
{
    v->isr |= isr_bits;
    update_irq(v);
}

void virtio_pci_broken(virtio_pci *v)
{
    if (v->status & VIRTIO_STATUS_NEEDS_RESET)
        return;
    v->status |= VIRTIO_STATUS_NEEDS_RESET;
    v->config_generation++;
    virtio_pci_interrupt(v, VIRTIO_ISR_CONFIG);
}

bool virtio_pci_live(const virtio_pci *v)
{
    return (v->status & VIRTIO_STATUS_DRIVER_OK) &&
           !(v->status & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED));
}

virtq *virtio_pci_queue(virtio_pci *v, unsigned q)
{
    if (q >= v->nqueues || !virtio_pci_live(v) || !v->q[q].enabled)
        return NULL;
    return &v->q[q];
}

static virtq *selected(virtio_pci *v)
{
    return v->queue_select < v->nqueues ? &v->q[v->queue_select] : NULL;
}

static uint32_t common_read(virtio_pci *v, unsigned off)
{
    virtq *q = selected(v);

    switch (off) {
    case 0x00:
        return v->dfselect;
    case 0x04:
        return v->dfselect < 2
            ? (uint32_t)(v->device_features >> (32 * v->dfselect)) : 0;
    case 0x08:
        return v->gfselect;
    case 0x0c:
        return v->gfselect < 2
            ? (uint32_t)(v->driver_features >> (32 * v->gfselect)) : 0;
    case 0x10:                      /* msix_config, num_queues */
        return NO_VECTOR | (uint32_t)v->nqueues << 16;
    case 0x14:                      /* status, generation, queue_select */
        return v->status | (uint32_t)v->config_generation << 8 |
               (uint32_t)v->queue_select << 16;
    case 0x18:                      /* queue_size, queue_msix_vector */
        return (q ? q->size : 0) | (uint32_t)NO_VECTOR << 16;
    case 0x1c:                      /* queue_enable, queue_notify_off */
        return (q ? q->enabled : 0) | (uint32_t)v->queue_select << 16;
    case 0x20: return q ? (uint32_t)q->desc : 0;
    case 0x24: return q ? (uint32_t)(q->desc >> 32) : 0;
    case 0x28: return q ? (uint32_t)q->avail : 0;
    case 0x2c: return q ? (uint32_t)(q->avail >> 32) : 0;
    case 0x30: return q ? (uint32_t)q->used : 0;
    case 0x34: return q ? (uint32_t)(q->used >> 32) : 0;
    }
    return 0;
}

static void set_status(virtio_pci *v, uint8_t s)
{
    if (s == 0) {
        reset(v);
        update_irq(v);
        return;
    }
    /* FEATURES_OK only for a feature set this device offered. */
    if ((s & VIRTIO_STATUS_FEATURES_OK) &&
        !(v->status & VIRTIO_STATUS_FEATURES_OK) &&
        ((v->driver_features & ~v->device_features) ||
         !(v->driver_features & VIRTIO_F_VERSION_1)))
        s &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
    v->status = (uint8_t)((s & STATUS_MASK & ~VIRTIO_STATUS_NEEDS_RESET) |
                          (v->status & VIRTIO_STATUS_NEEDS_RESET));
}

static void set_half(uint64_t *x, bool high, uint32_t val)
{
    if (high)
        *x = (*x & 0xffffffffull) | (uint64_t)val << 32;
    else
        *x = (*x & ~0xffffffffull) | val;
}

/* The 16-bit queue fields are written with 16-bit accesses: width 2. */
static void common_write(virtio_pci *v, unsigned off, unsigned width,
                         uint32_t val)
{
    virtq *q = selected(v);
    /* A queue's setup may change only before DRIVER_OK, while disabled. */
    bool q_open = q && !q->enabled && !(v->status & VIRTIO_STATUS_DRIVER_OK);

    switch (off) {
    case 0x00: v->dfselect = val; break;
    case 0x08: v->gfselect = val; break;
    case 0x0c:
        if (v->gfselect < 2 && !(v->status & VIRTIO_STATUS_FEATURES_OK))
            set_half(&v->driver_features, v->gfselect == 1, val);
        break;
    case 0x14:
        if (width == 1)
            set_status(v, (uint8_t)val);
        break;
    case 0x16: v->queue_select = (uint16_t)val; break;
    case 0x18:
        /* A power of two no larger than the maximum, or ignored. */
        if (q_open && val && val <= v->queue_max && !(val & (val - 1)))
            q->size = (uint16_t)val;
        break;
    case 0x1c:
        if (q_open && val == 1) {
            char why[160];
            if (virtq_check_rings(q, &v->mem, why, sizeof(why)) < 0)
                virtio_pci_broken(v);
            else
                q->enabled = true;
        }
        break;
    case 0x20: if (q_open) set_half(&q->desc, false, val); break;
    case 0x24: if (q_open) set_half(&q->desc, true, val); break;
    case 0x28: if (q_open) set_half(&q->avail, false, val); break;
    case 0x2c: if (q_open) set_half(&q->avail, true, val); break;
    case 0x30: if (q_open) set_half(&q->used, false, val); break;
    case 0x34: if (q_open) set_half(&q->used, true, val); break;
    }
}

static uint32_t load(const uint8_t *d, unsigned len)
{
    uint32_t v = 0;

    for (unsigned i = 0; i < len && i < 4; i++)
        v |= (uint32_t)d[i] << (8 * i);
    return v;
}

static void store(uint8_t *d, unsigned len, uint32_t v)
{
    for (unsigned i = 0; i < len && i < 4; i++)
        d[i] = (uint8_t)(v >> (8 * i));
}

void virtio_pci_mmio(virtio_pci *v, uint64_t off, bool write, uint8_t *data,
                     unsigned len)
{
    if (!write)
        memset(data, 0, len);
    if (len != 1 && len != 2 && len != 4)
        return;
    if (off < VIRTIO_PCI_COMMON + COMMON_LEN) {
        unsigned o = (unsigned)off;
        if (o & (len - 1))
            return;
        if (write) {
            common_write(v, o, len, load(data, len));
        } else {
            uint32_t d = common_read(v, o & ~3u) >> (8 * (o & 3));
            store(data, len, d);
        }
    } else if (off == VIRTIO_PCI_ISR && !write) {
        data[0] = v->isr;
        v->isr = 0;
        update_irq(v);
    } else if (off >= VIRTIO_PCI_DEVCFG &&
               off - VIRTIO_PCI_DEVCFG + len <= v->devcfg_len) {
        if (!write)
            memcpy(data, v->devcfg + (off - VIRTIO_PCI_DEVCFG), len);
    } else if (off >= VIRTIO_PCI_NOTIFY && write &&
               off - VIRTIO_PCI_NOTIFY < v->nqueues * NOTIFY_MULTIPLIER) {
        unsigned q = (unsigned)(off - VIRTIO_PCI_NOTIFY) / NOTIFY_MULTIPLIER;
        if (v->notify && virtio_pci_queue(v, q))
            v->notify(v->notify_opaque, q);
    }
}

/* ---- state ---- */

static int state_check(qfile *f, const void *obj, uint32_t version)
{
    const virtio_pci *v = obj;
    const char *name = v->name ? v->name : "virtio-pci";
    char why[160];

    (void)version;
    for (unsigned i = 0; i < VIRTIO_PCI_MAX_QUEUES; i++) {
        if (virtq_check_state(&v->q[i], why, sizeof(why)) < 0)
            return qfile_fail(f, -EINVAL, "%s: queue %u: %s", name, i, why);
        if (v->q[i].size > v->queue_max)
            return qfile_fail(f, -EINVAL, "%s: queue %u: size %u; this "
                              "device's queues have at most %u", name, i,
                              v->q[i].size, v->queue_max);
    }
    if (v->status & ~STATUS_MASK)
        return qfile_fail(f, -EINVAL, "%s: status 0x%02x has bits "
                          "VIRTIO 1.0 does not define", name, v->status);
    if (v->queue_select > VIRTIO_PCI_MAX_QUEUES * 64u)
        return qfile_fail(f, -EINVAL, "%s: queue select %u", name,
                          v->queue_select);
    if ((v->status & VIRTIO_STATUS_FEATURES_OK) &&
        !(v->driver_features & VIRTIO_F_VERSION_1))
        return qfile_fail(f, -EINVAL, "%s: features accepted "
                          "(0x%016" PRIx64 ") without VIRTIO_F_VERSION_1",
                          name, v->driver_features);
    if (v->level != (v->isr != 0))
        return qfile_fail(f, -EINVAL, "%s: interrupt line %s with "
                          "ISR 0x%02x", name, v->level ? "high" : "low", v->isr);
    if (v->isr & ~(VIRTIO_ISR_QUEUE | VIRTIO_ISR_CONFIG))
        return qfile_fail(f, -EINVAL, "%s: ISR 0x%02x", name, v->isr);
    return 0;
}

static const vmstate_field virtio_pci_fields[] = {
    {VMSTATE_STRUCT(virtio_pci, pci, pci_func_desc)},
    {VMSTATE_SCALAR(virtio_pci, dfselect)},
    {VMSTATE_SCALAR(virtio_pci, gfselect)},
    {VMSTATE_SCALAR(virtio_pci, driver_features)},
    {VMSTATE_SCALAR(virtio_pci, status)},
    {VMSTATE_SCALAR(virtio_pci, config_generation)},
    {VMSTATE_SCALAR(virtio_pci, queue_select)},
    {VMSTATE_SCALAR(virtio_pci, isr)},
    {VMSTATE_SCALAR(virtio_pci, level)},
    {VMSTATE_STRUCT_ARRAY(virtio_pci, q, virtq_desc)},
    VMSTATE_END,
};

const vmstate_desc virtio_pci_desc = {
    .name = "virtio-pci", .version = 1, .minimum_version = 1,
    .size = sizeof(virtio_pci), .fields = virtio_pci_fields,
    .check = state_check,
};
