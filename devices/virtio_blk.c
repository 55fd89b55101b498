/* virtio_blk: see virtio_blk.h. */
#include "devices/virtio_blk.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vm/le.h"

/* QEMU's class for virtio-blk: mass storage, SCSI. */
#define CLASS_STORAGE_SCSI 0x010000u

static void notify(void *opaque, unsigned q);

static void set_config(virtio_blk *b)
{
    memset(b->config, 0, sizeof(b->config));
    le_put64(b->config, b->disk ? disk_sectors(b->disk) : 0);
    le_put32(b->config + 8, VIRTIO_BLK_SIZE_MAX);
    le_put32(b->config + 12, VIRTIO_BLK_SEG_MAX);
    le_put32(b->config + 20, DISK_SECTOR_SIZE);
}

void virtio_blk_init(virtio_blk *b, disk *d, const virtq_mem *mem,
                     virtio_pci_irq_fn irq, void *irq_opaque)
{
    uint64_t features = VIRTIO_BLK_FEATURES;

    memset(b, 0, sizeof(*b));
    b->disk = d;
    if (d && disk_readonly(d))
        features |= VIRTIO_BLK_F_RO;
    set_config(b);
    virtio_pci_init(&b->vp, "virtio-blk", VIRTIO_BLK_TYPE, CLASS_STORAGE_SCSI,
                    features, 1, VIRTIO_BLK_QUEUE_MAX, b->config,
                    sizeof(b->config), mem);
    b->vp.notify = notify;
    b->vp.notify_opaque = b;
    b->vp.irq = irq;
    b->vp.irq_opaque = irq_opaque;
}

void virtio_blk_loaded(virtio_blk *b)
{
    set_config(b);
    b->vp.devcfg = b->config;
    virtio_pci_sync_irq(&b->vp);
}

/* ---- data between the image and the chain's buffers ---- */

/* A walk over one kind (readable or writable) of a chain's bytes. */
typedef struct cursor {
    const virtq_chain *c;
    bool write;
    unsigned i;                     /* segment */
    uint64_t off;                   /* in it */
} cursor;

/* Skips skip bytes of the kind. */
static void cursor_init(cursor *k, const virtq_chain *c, bool write,
                        uint64_t skip)
{
    *k = (cursor){ .c = c, .write = write };
    for (; k->i < c->nseg; k->i++) {
        const virtq_seg *s = &c->seg[k->i];
        if (s->write != write)
            continue;
        if (skip < s->len) {
            k->off = skip;
            return;
        }
        skip -= s->len;
    }
}

/*
 * The next piece, at most max bytes of one segment: its host address
 * (NULL when the kind's bytes ran out or are not in RAM), its gpa and
 * length.
 */
static uint8_t *cursor_next(const virtq_mem *m, cursor *k, uint64_t max,
                            uint64_t *gpa, uint32_t *len)
{
    for (; k->i < k->c->nseg; k->i++, k->off = 0) {
        const virtq_seg *s = &k->c->seg[k->i];
        if (s->write != k->write || k->off >= s->len)
            continue;
        uint64_t n = s->len - k->off;
        if (n > max)
            n = max;
        *gpa = s->gpa + k->off;
        *len = (uint32_t)n;
        k->off += n;
        return m->ptr(m->opaque, *gpa, n);
    }
    return NULL;
}

/*
 * len bytes (a multiple of the sector) between sector on and the
 * chain's bytes from skip on: into the guest's writable ones for IN,
 * from its readable ones for OUT.  Whole sectors of a segment go straight
 * between the file and RAM; a sector a segment boundary splits goes
 * through the bounce buffer.  0 or -errno.
 */
static int transfer(virtio_blk *b, const virtq_chain *c, bool in,
                    uint64_t skip, uint64_t sector, uint64_t len)
{
    const virtq_mem *m = &b->vp.mem;
    uint8_t *bb = b->bounce;
    size_t pos = 0;                 /* bytes of the bounce sector done */
    cursor k;
    int rc = 0;

    cursor_init(&k, c, in, skip);
    while (len > 0) {
        uint64_t gpa;
        uint32_t n;
        uint8_t *p = cursor_next(m, &k, len, &gpa, &n);
        if (!p)
            return -EIO;
        len -= n;
        if (in)
            m->dirty(m->opaque, gpa, n);
        while (n > 0) {
            if (pos == 0 && n >= DISK_SECTOR_SIZE) {
                uint32_t s = n >> DISK_SECTOR_BITS;
                rc = in ? disk_read(b->disk, sector, p, s)
                        : disk_write(b->disk, sector, p, s);
                if (rc < 0)
                    return rc;
                sector += s;
                p += (size_t)s << DISK_SECTOR_BITS;
                n -= s << DISK_SECTOR_BITS;
                continue;
            }
            if (in && pos == 0 && (rc = disk_read(b->disk, sector, bb, 1)) < 0)
                return rc;
            size_t t = DISK_SECTOR_SIZE - pos;
            if (t > n)
                t = n;
            if (in)
                memcpy(p, bb + pos, t);
            else
                memcpy(bb + pos, p, t);
            pos += t;
            p += t;
            n -= (uint32_t)t;
            if (pos < DISK_SECTOR_SIZE)
                continue;
            pos = 0;
            if (!in && (rc = disk_write(b->disk, sector, bb, 1)) < 0)
                return rc;
            sector++;
        }
    }
    return 0;
}

/* Whether len bytes of data from sector on are a request the disk takes. */
static bool data_ok(const virtio_blk *b, uint64_t sector, uint64_t len)
{
    uint64_t n = len >> DISK_SECTOR_BITS;
    uint64_t cap = b->disk ? disk_sectors(b->disk) : 0;

    return (len & (DISK_SECTOR_SIZE - 1)) == 0 && len <= VIRTIO_BLK_REQ_MAX &&
           sector <= cap && n <= cap - sector;
}

/*
 * One request: its status, with *used the bytes written into the
 * chain's writable buffers before the status byte.
 */
static uint8_t serve(virtio_blk *b, const virtq_chain *c, uint32_t *used)
{
    uint8_t hdr[VIRTIO_BLK_HDR_LEN];
    uint64_t data;

    *used = 0;
    if (virtq_read(&b->vp.mem, c, 0, hdr, sizeof(hdr)) < sizeof(hdr) ||
        !b->disk)
        return VIRTIO_BLK_S_IOERR;
    uint32_t type = le_get32(hdr);
    uint64_t sector = le_get64(hdr + 8);

    switch (type) {
    case VIRTIO_BLK_T_IN:
        data = c->writable - 1;
        if (!data_ok(b, sector, data) ||
            transfer(b, c, true, 0, sector, data) < 0)
            return VIRTIO_BLK_S_IOERR;
        b->reads++;
        *used = (uint32_t)data;
        return VIRTIO_BLK_S_OK;
    case VIRTIO_BLK_T_OUT:
        data = c->readable - VIRTIO_BLK_HDR_LEN;
        if (disk_readonly(b->disk) || !data_ok(b, sector, data) ||
            transfer(b, c, false, VIRTIO_BLK_HDR_LEN, sector, data) < 0)
            return VIRTIO_BLK_S_IOERR;
        b->writes++;
        return VIRTIO_BLK_S_OK;
    case VIRTIO_BLK_T_FLUSH:
        if (disk_flush(b->disk) < 0)
            return VIRTIO_BLK_S_IOERR;
        b->flushes++;
        return VIRTIO_BLK_S_OK;
    case VIRTIO_BLK_T_GET_ID: {
        /* 20 bytes, NUL-padded; as many as the buffer holds (as QEMU). */
        uint8_t id[VIRTIO_BLK_ID_BYTES] = { 0 };
        memcpy(id, VIRTIO_BLK_ID, sizeof(VIRTIO_BLK_ID) - 1);
        data = c->writable - 1;
        *used = (uint32_t)virtq_write(&b->vp.mem, c, 0, id,
                                      data < sizeof(id) ? data : sizeof(id));
        return VIRTIO_BLK_S_OK;
    }
    }
    return VIRTIO_BLK_S_UNSUPP;
}

/* Serves what the driver made available on the request queue. */
static void serve_queue(virtio_blk *b)
{
    virtq *q = virtio_pci_queue(&b->vp, 0);
    static _Thread_local virtq_chain c;
    bool pushed = false;
    int rc = 0;

    if (!q)
        return;
    /* One ring's worth a notify: another vCPU refilling the ring must not
       keep this one (and so a pause) here forever. */
    for (unsigned budget = q->size; budget > 0; budget--) {
        rc = virtq_pop(q, &b->vp.mem, &c, b->why, sizeof(b->why));
        if (rc <= 0)
            break;
        if (c.writable == 0) {
            snprintf(b->why, sizeof(b->why), "request %u has no writable "
                     "byte for its status", c.head);
            rc = -EPROTO;
            break;
        }
        uint32_t used;
        uint8_t status = serve(b, &c, &used);
        if (status != VIRTIO_BLK_S_OK)
            b->errors++;
        virtq_write(&b->vp.mem, &c, c.writable - 1, &status, 1);
        if (virtq_push(q, &b->vp.mem, c.head, used + 1) < 0) {
            rc = -EPROTO;
            break;
        }
        pushed = true;
    }
    if (rc < 0)
        virtio_pci_broken(&b->vp);
    if (pushed && virtq_wants_interrupt(q, &b->vp.mem))
        virtio_pci_interrupt(&b->vp, VIRTIO_ISR_QUEUE);
}

static void notify(void *opaque, unsigned q)
{
    if (q == 0)
        serve_queue(opaque);
}

void virtio_blk_mmio(virtio_blk *b, uint64_t off, bool write, uint8_t *data,
                     unsigned len)
{
    virtio_pci_mmio(&b->vp, off, write, data, len);
}

/* ---- state ---- */

static int state_check(qfile *f, const void *obj, uint32_t version)
{
    const virtio_blk *b = obj;

    (void)version;
    if (b->vp.driver_features & ~b->vp.device_features)
        return qfile_fail(f, -EINVAL, "virtio-blk: driver features 0x%016"
                          PRIx64 " beyond those offered (0x%016" PRIx64 ")",
                          b->vp.driver_features, b->vp.device_features);
    return 0;
}

static const vmstate_field virtio_blk_fields[] = {
    {VMSTATE_STRUCT(virtio_blk, vp, virtio_pci_desc)},
    {VMSTATE_SCALAR(virtio_blk, reads)},
    {VMSTATE_SCALAR(virtio_blk, writes)},
    {VMSTATE_SCALAR(virtio_blk, flushes)},
    {VMSTATE_SCALAR(virtio_blk, errors)},
    VMSTATE_END,
};

const vmstate_desc virtio_blk_desc = {
    .name = "virtio-blk", .version = 1, .minimum_version = 1,
    .size = sizeof(virtio_blk), .fields = virtio_blk_fields,
    .check = state_check,
};
