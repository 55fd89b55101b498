/* pcpci: see pcpci.h. */
#include "vm/pcpci.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "devices/pci.h"
#include "devices/virtio_net.h"
#include "devices/virtq.h"
#include "vm/kvm.h"

#define IOAPIC_BASE 0xfec00000u

/* The host bridge: Red Hat's QEMU host bridge id, class host bridge. */
static const pci_ident bridge_ident = {
    .vendor = 0x1b36, .device = 0x0008, .class_code = 0x060000,
};

typedef struct pcpci_state {
    pci_host host;
    pci_func bridge;
    virtio_net net;
    /* Not state: what the check needs. */
    const gmem *gm;
    bool loaded;
} pcpci_state;

struct pcpci {
    pthread_mutex_t lock;
    kvm_vm *kvm;
    gmem *gm;
    net_dev *net;
    pci_host host;
    pci_func bridge;
    virtio_net vnet;
    pcpci_tx_fn tx;
    void *tx_opaque;
    bool frozen;
    uint64_t irq_errors;
    pcpci_state st;
};

static void *mem_ptr(void *opaque, uint64_t gpa, uint64_t len)
{
    return gmem_ptr(opaque, gpa, len);
}

static void mem_dirty(void *opaque, uint64_t gpa, uint64_t len)
{
    gmem_mark_dirty(opaque, gpa, len);
}

static void irq(void *opaque, bool level)
{
    pcpci *p = opaque;
    struct kvm_irq_level l = { .irq = PCPCI_IRQ, .level = level };

    if (ioctl(p->kvm->vm_fd, KVM_IRQ_LINE, &l) < 0)
        p->irq_errors++;
}

static int tx(void *opaque, const void *frame, size_t len)
{
    pcpci *p = opaque;

    return p->tx(p->tx_opaque, frame, len);
}

int pcpci_create(pcpci **out, kvm_vm *k, gmem *g, net_dev *net,
                 const uint8_t mac[6], pcpci_tx_fn tx_fn, void *tx_opaque,
                 char *err, size_t errlen)
{
    pcpci *p = calloc(1, sizeof(*p));

    if (!p || pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        snprintf(err, errlen, "pci: no memory");
        return -ENOMEM;
    }
    p->kvm = k;
    p->gm = g;
    p->net = net;
    p->tx = tx_fn;
    p->tx_opaque = tx_opaque;
    virtq_mem mem = { .ptr = mem_ptr, .dirty = mem_dirty, .opaque = g };
    virtio_net_init(&p->vnet, mac, &mem, tx, p, irq, p);
    /* What firmware would have done: the BAR placed, decoding on. */
    p->vnet.vp.pci.bar0 = PCPCI_MMIO_BASE;
    p->vnet.vp.pci.command = PCI_COMMAND_MEMORY;
    p->vnet.vp.pci.int_line = PCPCI_IRQ;
    pci_func_init(&p->bridge, &bridge_ident);
    pci_host_init(&p->host);
    p->host.slot[0] = &p->bridge;
    p->host.slot[PCPCI_NET_SLOT] = &p->vnet.vp.pci;
    /* The copy a load validates into has the device's constants too. */
    p->st.host = p->host;
    p->st.bridge = p->bridge;
    p->st.net = p->vnet;
    p->st.gm = g;
    *out = p;
    return 0;
}

void pcpci_free(pcpci *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->lock);
    free(p);
}

bool pcpci_io(pcpci *p, uint16_t port, bool out, uint8_t *data,
              unsigned size)
{
    if (!pci_host_claims(port, size))
        return false;
    pthread_mutex_lock(&p->lock);
    pci_host_io(&p->host, port, out, data, size);
    pthread_mutex_unlock(&p->lock);
    return true;
}

/* With the lock held. */
static void deliver(pcpci *p)
{
    static _Thread_local uint8_t buf[NET_FRAME_MAX];

    if (p->frozen || !p->net)
        return;
    while (net_rx_pending(p->net) && virtio_net_rx_ready(&p->vnet)) {
        ssize_t n = net_recv(p->net, buf, sizeof(buf));
        if (n < 0)
            break;
        if ((size_t)n > sizeof(buf))
            continue;               /* truncated by net_recv: dropped */
        if (virtio_net_receive(&p->vnet, buf, (size_t)n) == -EPROTO)
            break;
    }
}

bool pcpci_mmio(pcpci *p, uint64_t addr, bool write, uint8_t *data,
                unsigned len)
{
    uint64_t off;

    pthread_mutex_lock(&p->lock);
    bool hit = pci_func_mmio(&p->vnet.vp.pci, addr, &off);
    if (hit && virtio_net_mmio(&p->vnet, off, write, data, len))
        deliver(p);
    pthread_mutex_unlock(&p->lock);
    return hit;
}

void pcpci_rx(pcpci *p)
{
    pthread_mutex_lock(&p->lock);
    deliver(p);
    pthread_mutex_unlock(&p->lock);
}

/* ---- state ---- */

void *pcpci_state_obj(pcpci *p)
{
    return &p->st;
}

void pcpci_state_fetch(pcpci *p)
{
    pthread_mutex_lock(&p->lock);
    p->st.host.address = p->host.address;
    p->st.bridge = p->bridge;
    p->st.net = p->vnet;
    p->st.loaded = false;
    p->frozen = true;
    pthread_mutex_unlock(&p->lock);
}

bool pcpci_state_loaded(const pcpci *p)
{
    return p->st.loaded;
}

static void set_func(pci_func *f, const pci_func *from)
{
    f->command = from->command;
    f->bar0 = from->bar0;
    f->int_line = from->int_line;
}

void pcpci_state_push(pcpci *p)
{
    const virtio_net *s = &p->st.net;
    virtio_net *n = &p->vnet;

    pthread_mutex_lock(&p->lock);
    p->host.address = p->st.host.address;
    set_func(&p->bridge, &p->st.bridge);
    set_func(&n->vp.pci, &s->vp.pci);
    n->vp.dfselect = s->vp.dfselect;
    n->vp.gfselect = s->vp.gfselect;
    n->vp.driver_features = s->vp.driver_features;
    n->vp.status = s->vp.status;
    n->vp.config_generation = s->vp.config_generation;
    n->vp.queue_select = s->vp.queue_select;
    n->vp.isr = s->vp.isr;
    n->vp.level = s->vp.level;
    memcpy(n->vp.q, s->vp.q, sizeof(n->vp.q));
    memcpy(n->mac, s->mac, sizeof(n->mac));
    n->tx_frames = s->tx_frames;
    n->tx_dropped = s->tx_dropped;
    n->rx_frames = s->rx_frames;
    n->rx_dropped = s->rx_dropped;
    /* KVM's record of the line agrees with the loaded I/O APIC's. */
    virtio_net_loaded(n);
    p->st.loaded = false;
    pthread_mutex_unlock(&p->lock);
}

void pcpci_thaw(pcpci *p)
{
    pthread_mutex_lock(&p->lock);
    p->frozen = false;
    deliver(p);
    pthread_mutex_unlock(&p->lock);
}

static void *check_ptr(void *opaque, uint64_t gpa, uint64_t len)
{
    return gmem_ptr(opaque, gpa, len);
}

static void check_dirty(void *opaque, uint64_t gpa, uint64_t len)
{
    (void)opaque;
    (void)gpa;
    (void)len;
}

static int state_check(qfile *f, const void *obj, uint32_t version)
{
    const pcpci_state *s = obj;
    const virtio_pci *vp = &s->net.vp;
    uint64_t ram = s->gm ? gmem_total(s->gm) : 0;

    (void)version;
    if ((vp->pci.bar0 & (VIRTIO_PCI_BAR_SIZE - 1)) ||
        (vp->pci.bar0 && (vp->pci.bar0 < ram ||
                          vp->pci.bar0 + (uint64_t)VIRTIO_PCI_BAR_SIZE >
                              IOAPIC_BASE)))
        return qfile_fail(f, -EINVAL, "virtio-net: BAR 0 at 0x%08x; it "
                          "must be aligned to 0x%x, above RAM (0x%" PRIx64
                          ") and below the I/O APIC", vp->pci.bar0,
                          VIRTIO_PCI_BAR_SIZE, ram);
    virtq_mem m = { .ptr = check_ptr, .dirty = check_dirty,
                    .opaque = (void *)s->gm };
    for (unsigned i = 0; s->gm && i < VIRTIO_PCI_MAX_QUEUES; i++) {
        char why[192];
        if (vp->q[i].enabled &&
            virtq_check_rings(&vp->q[i], &m, why, sizeof(why)) < 0)
            return qfile_fail(f, -EINVAL, "virtio-net: queue %u: %s", i,
                              why);
    }
    return 0;
}

static int state_post_load(void *obj, uint32_t version)
{
    pcpci_state *s = obj;

    (void)version;
    s->loaded = true;
    return 0;
}

static const vmstate_field state_fields[] = {
    {VMSTATE_STRUCT(pcpci_state, host, pci_host_desc)},
    {VMSTATE_STRUCT(pcpci_state, bridge, pci_func_desc)},
    {VMSTATE_STRUCT(pcpci_state, net, virtio_net_desc)},
    VMSTATE_END,
};

const vmstate_desc pcpci_state_desc = {
    .name = "pci", .version = 1, .minimum_version = 1,
    .size = sizeof(pcpci_state), .fields = state_fields,
    .check = state_check, .post_load = state_post_load,
};
