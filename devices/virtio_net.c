/* virtio_net: see virtio_net.h. */
#include "devices/virtio_net.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#define CLASS_ETHERNET 0x020000u
#define LINK_UP        1u

static void notify(void *opaque, unsigned q);

static void set_config(virtio_net *n)
{
    memcpy(n->config, n->mac, 6);
    n->config[6] = LINK_UP;
    n->config[7] = 0;
}

void virtio_net_init(virtio_net *n, const uint8_t mac[6],
                     const virtq_mem *mem, virtio_net_tx_fn tx,
                     void *tx_opaque, virtio_pci_irq_fn irq,
                     void *irq_opaque)
{
    memset(n, 0, sizeof(*n));
    memcpy(n->mac, mac, 6);
    set_config(n);
    virtio_pci_init(&n->vp, "virtio-net", VIRTIO_NET_TYPE, CLASS_ETHERNET,
                    VIRTIO_NET_FEATURES, 2, VIRTIO_NET_QUEUE_MAX, n->config,
                    sizeof(n->config), mem);
    n->vp.notify = notify;
    n->vp.notify_opaque = n;
    n->vp.irq = irq;
    n->vp.irq_opaque = irq_opaque;
    n->tx = tx;
    n->tx_opaque = tx_opaque;
}

void virtio_net_loaded(virtio_net *n)
{
    set_config(n);
    n->vp.devcfg = n->config;
    virtio_pci_sync_irq(&n->vp);
}

static void interrupt(virtio_net *n, virtq *q)
{
    if (virtq_wants_interrupt(q, &n->vp.mem))
        virtio_pci_interrupt(&n->vp, VIRTIO_ISR_QUEUE);
}

static void broken(virtio_net *n)
{
    virtio_pci_broken(&n->vp);
}

/* Sends every chain the driver made available on the transmit queue. */
static void transmit(virtio_net *n)
{
    virtq *q = virtio_pci_queue(&n->vp, VIRTIO_NET_TXQ);
    static _Thread_local virtq_chain c;
    uint8_t frame[VIRTIO_NET_FRAME_MAX];
    bool used = false;
    int rc = 0;

    if (!q)
        return;
    /*
     * At most a few rings' worth a kick: another vCPU refilling the ring
     * must not keep this one (and so a pause) here forever.  The driver
     * kicks again for what it adds after this.
     */
    for (unsigned budget = 4u * q->size; budget > 0; budget--) {
        rc = virtq_pop(q, &n->vp.mem, &c, n->why, sizeof(n->why));
        if (rc <= 0)
            break;
        uint64_t len = c.readable > VIRTIO_NET_HDR_LEN
                           ? c.readable - VIRTIO_NET_HDR_LEN : 0;
        if (len == 0 || len > sizeof(frame)) {
            n->tx_dropped++;
        } else {
            size_t got = virtq_read(&n->vp.mem, &c, VIRTIO_NET_HDR_LEN,
                                    frame, (size_t)len);
            n->tx_frames++;
            n->tx(n->tx_opaque, frame, got);
        }
        if (virtq_push(q, &n->vp.mem, c.head, 0) < 0) {
            rc = -EPROTO;
            break;
        }
        used = true;
    }
    if (rc < 0)
        broken(n);
    if (used)
        interrupt(n, q);
}

static void notify(void *opaque, unsigned q)
{
    virtio_net *n = opaque;

    if (q == VIRTIO_NET_TXQ)
        transmit(n);
}

bool virtio_net_mmio(virtio_net *n, uint64_t off, bool write, uint8_t *data,
                     unsigned len)
{
    virtio_pci_mmio(&n->vp, off, write, data, len);
    return write && off == VIRTIO_PCI_NOTIFY + 4 * VIRTIO_NET_RXQ &&
           virtio_pci_queue(&n->vp, VIRTIO_NET_RXQ);
}

bool virtio_net_rx_ready(virtio_net *n)
{
    virtq *q = virtio_pci_queue(&n->vp, VIRTIO_NET_RXQ);
    static _Thread_local virtq_chain c;

    if (!q)
        return false;
    int rc = virtq_pop(q, &n->vp.mem, &c, n->why, sizeof(n->why));
    if (rc > 0)
        virtq_unpop(q);
    else if (rc < 0)
        broken(n);
    return rc > 0;
}

int virtio_net_receive(virtio_net *n, const void *frame, size_t len)
{
    virtq *q = virtio_pci_queue(&n->vp, VIRTIO_NET_RXQ);
    static _Thread_local virtq_chain c;
    uint8_t hdr[VIRTIO_NET_HDR_LEN] = { 0 };

    if (len == 0 || len > VIRTIO_NET_FRAME_MAX) {
        n->rx_dropped++;
        return -EINVAL;
    }
    if (!q)
        return 0;
    int rc = virtq_pop(q, &n->vp.mem, &c, n->why, sizeof(n->why));
    if (rc < 0) {
        broken(n);
        return rc;
    }
    if (rc == 0)
        return 0;
    if (c.writable < VIRTIO_NET_HDR_LEN + len) {
        /* A buffer this frame does not fit: the frame goes, not it. */
        virtq_unpop(q);
        n->rx_dropped++;
        return -EINVAL;
    }
    hdr[10] = 1;                    /* num_buffers */
    virtq_write(&n->vp.mem, &c, 0, hdr, sizeof(hdr));
    virtq_write(&n->vp.mem, &c, VIRTIO_NET_HDR_LEN, frame, len);
    if (virtq_push(q, &n->vp.mem, c.head,
                   (uint32_t)(VIRTIO_NET_HDR_LEN + len)) < 0) {
        broken(n);
        return -EPROTO;
    }
    n->rx_frames++;
    interrupt(n, q);
    return 1;
}

/* ---- state ---- */

static int state_check(qfile *f, const void *obj, uint32_t version)
{
    const virtio_net *n = obj;

    (void)version;
    if (n->vp.driver_features & ~VIRTIO_NET_FEATURES)
        return qfile_fail(f, -EINVAL, "virtio-net: driver features 0x%016"
                          PRIx64 " beyond those offered (0x%016llx)",
                          n->vp.driver_features,
                          (unsigned long long)VIRTIO_NET_FEATURES);
    if (n->mac[0] & 1)
        return qfile_fail(f, -EINVAL, "virtio-net: MAC "
                          "%02x:%02x:%02x:%02x:%02x:%02x is not unicast",
                          n->mac[0], n->mac[1], n->mac[2], n->mac[3],
                          n->mac[4], n->mac[5]);
    return 0;
}

static const vmstate_field virtio_net_fields[] = {
    {VMSTATE_STRUCT(virtio_net, vp, virtio_pci_desc)},
    {VMSTATE_ARRAY(virtio_net, mac)},
    {VMSTATE_SCALAR(virtio_net, tx_frames)},
    {VMSTATE_SCALAR(virtio_net, tx_dropped)},
    {VMSTATE_SCALAR(virtio_net, rx_frames)},
    {VMSTATE_SCALAR(virtio_net, rx_dropped)},
    VMSTATE_END,
};

const vmstate_desc virtio_net_desc = {
    .name = "virtio-net", .version = 1, .minimum_version = 1,
    .size = sizeof(virtio_net), .fields = virtio_net_fields,
    .check = state_check,
};
