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
#include "devices/virtio_blk.h"
#include "devices/virtio_net.h"
#include "devices/virtq.h"
#include "vm/kvm.h"

#define IOAPIC_BASE 0xfec00000u

_Static_assert(PCPCI_BLK_BAR == PCPCI_NET_BAR + VIRTIO_PCI_BAR_SIZE,
               "virtio-blk's BAR right after virtio-net's");

/* The host bridge: Red Hat's QEMU host bridge id, class host bridge. */
static const pci_ident bridge_ident = {
    .vendor = 0x1b36, .device = 0x0008, .class_code = 0x060000,
};

typedef struct pcpci_state {
    pci_host host;
    pci_func bridge;
    virtio_net net;
    bool has_net;                   /* v2 */
    /* "pci/virtio-blk": */
    uint64_t blk_sectors;           /* nonzero only in a loaded copy */
    virtio_blk blk;
    /* Not state: what the check needs. */
    const gmem *gm;
    bool vm_net;
    uint64_t vm_sectors;            /* the VM's disk's; 0: no disk */
    bool loaded;
} pcpci_state;

struct pcpci {
    pthread_mutex_t lock;
    pthread_mutex_t blk_lock;
    kvm_vm *kvm;
    gmem *gm;
    net_dev *net;
    pci_host host;
    pci_func bridge;
    virtio_net vnet;
    virtio_blk vblk;
    bool has_net, has_blk;
    pcpci_tx_fn tx;
    void *tx_opaque;
    bool frozen;
    uint64_t irq_errors;            /* atomic */
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

static void line(pcpci *p, unsigned pin, bool level)
{
    struct kvm_irq_level l = { .irq = pin, .level = level };

    if (ioctl(p->kvm->vm_fd, KVM_IRQ_LINE, &l) < 0)
        __atomic_fetch_add(&p->irq_errors, 1, __ATOMIC_RELAXED);
}

static void net_irq(void *opaque, bool level)
{
    line(opaque, PCPCI_NET_IRQ, level);
}

static void blk_irq(void *opaque, bool level)
{
    line(opaque, PCPCI_BLK_IRQ, level);
}

static int tx(void *opaque, const void *frame, size_t len)
{
    pcpci *p = opaque;

    return p->tx(p->tx_opaque, frame, len);
}

/* What firmware would have done: the BAR placed, decoding on. */
static void place(pci_func *f, uint32_t bar, uint8_t pin)
{
    f->bar0 = bar;
    f->command = PCI_COMMAND_MEMORY;
    f->int_line = pin;
}

int pcpci_create(pcpci **out, kvm_vm *k, gmem *g, char *err, size_t errlen)
{
    pcpci *p = calloc(1, sizeof(*p));

    if (!p || pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        snprintf(err, errlen, "pci: no memory");
        return -ENOMEM;
    }
    if (pthread_mutex_init(&p->blk_lock, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        snprintf(err, errlen, "pci: no memory");
        return -ENOMEM;
    }
    p->kvm = k;
    p->gm = g;
    virtq_mem mem = { .ptr = mem_ptr, .dirty = mem_dirty, .opaque = g };
    /*
     * Both functions exist in every bus (the state carries virtio-net's
     * either way); only those added are on it.
     */
    static const uint8_t no_mac[6];
    virtio_net_init(&p->vnet, no_mac, &mem, tx, p, net_irq, p);
    place(&p->vnet.vp.pci, PCPCI_NET_BAR, PCPCI_NET_IRQ);
    virtio_blk_init(&p->vblk, NULL, &mem, blk_irq, p);
    place(&p->vblk.vp.pci, PCPCI_BLK_BAR, PCPCI_BLK_IRQ);
    pci_func_init(&p->bridge, &bridge_ident);
    pci_host_init(&p->host);
    p->host.slot[0] = &p->bridge;
    /* The copy a load validates into has the devices' constants too. */
    p->st.host = p->host;
    p->st.bridge = p->bridge;
    p->st.net = p->vnet;
    p->st.blk = p->vblk;
    p->st.gm = g;
    *out = p;
    return 0;
}

int pcpci_add_net(pcpci *p, net_dev *net, const uint8_t mac[6],
                  pcpci_tx_fn tx_fn, void *tx_opaque, char *err,
                  size_t errlen)
{
    if (p->has_net) {
        snprintf(err, errlen, "pci: one network device at most");
        return -EBUSY;
    }
    virtq_mem mem = p->vnet.vp.mem;
    virtio_net_init(&p->vnet, mac, &mem, tx, p, net_irq, p);
    place(&p->vnet.vp.pci, PCPCI_NET_BAR, PCPCI_NET_IRQ);
    p->net = net;
    p->tx = tx_fn;
    p->tx_opaque = tx_opaque;
    p->host.slot[PCPCI_NET_SLOT] = &p->vnet.vp.pci;
    p->has_net = true;
    p->st.net = p->vnet;
    p->st.has_net = p->st.vm_net = true;
    return 0;
}

int pcpci_add_blk(pcpci *p, disk *d, char *err, size_t errlen)
{
    if (p->has_blk) {
        snprintf(err, errlen, "pci: one disk at most");
        return -EBUSY;
    }
    virtq_mem mem = p->vblk.vp.mem;
    virtio_blk_init(&p->vblk, d, &mem, blk_irq, p);
    place(&p->vblk.vp.pci, PCPCI_BLK_BAR, PCPCI_BLK_IRQ);
    p->host.slot[PCPCI_BLK_SLOT] = &p->vblk.vp.pci;
    p->has_blk = true;
    p->st.blk = p->vblk;
    p->st.vm_sectors = disk_sectors(d);
    return 0;
}

bool pcpci_has_net(const pcpci *p)
{
    return p->has_net;
}

bool pcpci_has_blk(const pcpci *p)
{
    return p->has_blk;
}

void pcpci_free(pcpci *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->blk_lock);
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
    if (p->has_net && pci_func_mmio(&p->vnet.vp.pci, addr, &off)) {
        if (virtio_net_mmio(&p->vnet, off, write, data, len))
            deliver(p);
        pthread_mutex_unlock(&p->lock);
        return true;
    }
    /* The BAR under the bus's lock (configuration writes move it), the
       device under the disk's: a request does not hold up the bus. */
    bool blk = p->has_blk && pci_func_mmio(&p->vblk.vp.pci, addr, &off);
    pthread_mutex_unlock(&p->lock);
    if (!blk)
        return false;
    pthread_mutex_lock(&p->blk_lock);
    virtio_blk_mmio(&p->vblk, off, write, data, len);
    pthread_mutex_unlock(&p->blk_lock);
    return true;
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
    pthread_mutex_lock(&p->blk_lock);
    p->st.host.address = p->host.address;
    p->st.bridge = p->bridge;
    p->st.net = p->vnet;
    p->st.blk = p->vblk;
    p->st.loaded = false;
    p->frozen = true;
    pthread_mutex_unlock(&p->blk_lock);
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

/* The transport's registers and queues, not its constants. */
static void set_transport(virtio_pci *v, const virtio_pci *s)
{
    set_func(&v->pci, &s->pci);
    v->dfselect = s->dfselect;
    v->gfselect = s->gfselect;
    v->driver_features = s->driver_features;
    v->status = s->status;
    v->config_generation = s->config_generation;
    v->queue_select = s->queue_select;
    v->isr = s->isr;
    v->level = s->level;
    memcpy(v->q, s->q, sizeof(v->q));
}

void pcpci_state_push(pcpci *p)
{
    const virtio_net *s = &p->st.net;
    virtio_net *n = &p->vnet;

    pthread_mutex_lock(&p->lock);
    pthread_mutex_lock(&p->blk_lock);
    p->host.address = p->st.host.address;
    set_func(&p->bridge, &p->st.bridge);
    if (p->has_net) {
        set_transport(&n->vp, &s->vp);
        memcpy(n->mac, s->mac, sizeof(n->mac));
        n->tx_frames = s->tx_frames;
        n->tx_dropped = s->tx_dropped;
        n->rx_frames = s->rx_frames;
        n->rx_dropped = s->rx_dropped;
        /* KVM's record of the line agrees with the loaded I/O APIC's. */
        virtio_net_loaded(n);
    }
    if (p->has_blk) {
        const virtio_blk *sb = &p->st.blk;
        virtio_blk *b = &p->vblk;
        set_transport(&b->vp, &sb->vp);
        b->reads = sb->reads;
        b->writes = sb->writes;
        b->flushes = sb->flushes;
        b->errors = sb->errors;
        virtio_blk_loaded(b);
    }
    p->st.loaded = false;
    pthread_mutex_unlock(&p->blk_lock);
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

/* A function's BAR and enabled queues, named after it. */
static int check_func(qfile *f, const char *name, const virtio_pci *vp,
                      const gmem *gm)
{
    uint64_t ram = gm ? gmem_total(gm) : 0;

    if ((vp->pci.bar0 & (VIRTIO_PCI_BAR_SIZE - 1)) ||
        (vp->pci.bar0 && (vp->pci.bar0 < ram ||
                          vp->pci.bar0 + (uint64_t)VIRTIO_PCI_BAR_SIZE >
                              IOAPIC_BASE)))
        return qfile_fail(f, -EINVAL, "%s: BAR 0 at 0x%08x; it must be "
                          "aligned to 0x%x, above RAM (0x%" PRIx64 ") and "
                          "below the I/O APIC", name, vp->pci.bar0,
                          VIRTIO_PCI_BAR_SIZE, ram);
    virtq_mem m = { .ptr = check_ptr, .dirty = check_dirty,
                    .opaque = (void *)gm };
    for (unsigned i = 0; gm && i < VIRTIO_PCI_MAX_QUEUES; i++) {
        char why[192];
        if (vp->q[i].enabled &&
            virtq_check_rings(&vp->q[i], &m, why, sizeof(why)) < 0)
            return qfile_fail(f, -EINVAL, "%s: queue %u: %s", name, i, why);
    }
    return 0;
}

static int state_check(qfile *f, const void *obj, uint32_t version)
{
    const pcpci_state *s = obj;
    /* Version 1 was written only by VMs with a network device. */
    bool net = version < 2 || s->has_net;

    if (net != s->vm_net)
        return qfile_fail(f, -EINVAL, "virtio-net: the checkpoint's "
                          "machine has %s network device and this VM %s",
                          net ? "a" : "no",
                          s->vm_net ? "has one" : "has none");
    if (!s->blk_sectors && s->vm_sectors)
        return qfile_fail(f, -EINVAL, "virtio-blk: the checkpoint's "
                          "machine has no disk and this VM has one (%"
                          PRIu64 " sectors)", s->vm_sectors);
    if (s->blk_sectors && !s->vm_sectors)
        return qfile_fail(f, -EINVAL, "virtio-blk: the checkpoint's "
                          "machine has a disk (%" PRIu64 " sectors) and this "
                          "VM has none", s->blk_sectors);
    if (s->blk_sectors != s->vm_sectors)
        return qfile_fail(f, -EINVAL, "virtio-blk: the checkpoint's disk "
                          "has %" PRIu64 " sectors, this VM's %" PRIu64,
                          s->blk_sectors, s->vm_sectors);
    int rc = net ? check_func(f, "virtio-net", &s->net.vp, s->gm) : 0;
    if (rc == 0 && s->vm_sectors)
        rc = check_func(f, "virtio-blk", &s->blk.vp, s->gm);
    return rc;
}

static int state_post_load(void *obj, uint32_t version)
{
    pcpci_state *s = obj;

    (void)version;
    s->blk_sectors = 0;             /* so the next load sees its own */
    s->loaded = true;
    return 0;
}

static bool blk_needed(const void *obj)
{
    return ((const pcpci_state *)obj)->vm_sectors != 0;
}

/*
 * The disk's size goes out with the device: a load sees from it both that
 * the stream had the subsection and that the disk is the same size.
 */
static int blk_pre_save(void *copy)
{
    pcpci_state *s = copy;

    s->blk_sectors = s->vm_sectors;
    return 0;
}

static const vmstate_field blk_fields[] = {
    {VMSTATE_SCALAR(pcpci_state, blk_sectors)},
    {VMSTATE_STRUCT(pcpci_state, blk, virtio_blk_desc)},
    VMSTATE_END,
};

static const vmstate_desc blk_desc = {
    .name = "pci/virtio-blk", .version = 1, .minimum_version = 1,
    .fields = blk_fields, .pre_save = blk_pre_save,
};

static const vmstate_subsection state_subsections[] = {
    {&blk_desc, blk_needed},
    {NULL, NULL},
};

static const vmstate_field state_fields[] = {
    {VMSTATE_STRUCT(pcpci_state, host, pci_host_desc)},
    {VMSTATE_STRUCT(pcpci_state, bridge, pci_func_desc)},
    {VMSTATE_STRUCT(pcpci_state, net, virtio_net_desc)},
    {VMSTATE_SCALAR(pcpci_state, has_net), .version = 2},
    VMSTATE_END,
};

const vmstate_desc pcpci_state_desc = {
    .name = "pci", .version = 2, .minimum_version = 1,
    .size = sizeof(pcpci_state), .fields = state_fields,
    .subsections = state_subsections,
    .check = state_check, .post_load = state_post_load,
};
