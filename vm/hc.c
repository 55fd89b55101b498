/*
 * hc: hypercall handlers and the device state they keep.
 */
#include "vm/hc.h"
#include "vm/mono.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The byte layouts docs/hypercall-abi.md promises. */
_Static_assert(sizeof(struct ftvm_hc_console) == 24, "console struct");
_Static_assert(sizeof(struct ftvm_hc_clock) == 16, "clock struct");
_Static_assert(sizeof(struct ftvm_hc_poll) == 16, "poll struct");
_Static_assert(sizeof(struct ftvm_hc_net_info) == 16, "net_info struct");
_Static_assert(offsetof(struct ftvm_hc_net_info, mtu) == 8, "net_info mtu");
_Static_assert(sizeof(struct ftvm_hc_net_write) == 24, "net_write struct");
_Static_assert(sizeof(struct ftvm_hc_net_read) == 24, "net_read struct");
_Static_assert(sizeof(struct ftvm_hc_halt) == 8, "halt struct");
_Static_assert(sizeof(struct ftvm_hc_blk_info) == 24, "blk_info struct");
_Static_assert(offsetof(struct ftvm_hc_blk_info, flags) == 16, "blk flags");
_Static_assert(sizeof(struct ftvm_hc_blk_io) == 32, "blk_io struct");
_Static_assert(sizeof(struct ftvm_hc_blk_flush) == 8, "blk_flush struct");
_Static_assert(FTVM_BLK_SECTOR_SIZE == DISK_SECTOR_SIZE, "sector size");
_Static_assert(sizeof(struct ftvm_boot_info) == 32, "boot info");

static const char *const hc_names[FTVM_HC_MAX] = {
    [FTVM_HC_CONSOLE] = "CONSOLE", [FTVM_HC_CLOCK] = "CLOCK",
    [FTVM_HC_POLL] = "POLL", [FTVM_HC_NET_INFO] = "NET_INFO",
    [FTVM_HC_NET_WRITE] = "NET_WRITE", [FTVM_HC_NET_READ] = "NET_READ",
    [FTVM_HC_HALT] = "HALT", [FTVM_HC_BLK_INFO] = "BLK_INFO",
    [FTVM_HC_BLK_READ] = "BLK_READ", [FTVM_HC_BLK_WRITE] = "BLK_WRITE",
    [FTVM_HC_BLK_FLUSH] = "BLK_FLUSH",
};

static const uint32_t hc_sizes[FTVM_HC_MAX] = {
    [FTVM_HC_CONSOLE] = sizeof(struct ftvm_hc_console),
    [FTVM_HC_CLOCK] = sizeof(struct ftvm_hc_clock),
    [FTVM_HC_POLL] = sizeof(struct ftvm_hc_poll),
    [FTVM_HC_NET_INFO] = sizeof(struct ftvm_hc_net_info),
    [FTVM_HC_NET_WRITE] = sizeof(struct ftvm_hc_net_write),
    [FTVM_HC_NET_READ] = sizeof(struct ftvm_hc_net_read),
    [FTVM_HC_HALT] = sizeof(struct ftvm_hc_halt),
    [FTVM_HC_BLK_INFO] = sizeof(struct ftvm_hc_blk_info),
    [FTVM_HC_BLK_READ] = sizeof(struct ftvm_hc_blk_io),
    [FTVM_HC_BLK_WRITE] = sizeof(struct ftvm_hc_blk_io),
    [FTVM_HC_BLK_FLUSH] = sizeof(struct ftvm_hc_blk_flush),
};

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t hc_host_ns(void)
{
    return mono_ns();
}

uint64_t hc_clock_now(const hc_dev *h)
{
    return hc_host_ns() + (uint64_t)h->clock_offset;
}

void hc_clock_pause(hc_dev *h)
{
    h->st.clock_ns = hc_clock_now(h);
}

void hc_resume(hc_dev *h)
{
    if (!h->loaded)
        return;
    h->clock_offset = (int64_t)(h->st.clock_ns - hc_host_ns());
    h->loaded = false;
}

int hc_init(hc_dev *h, gmem *g, net_dev *net, const uint8_t mac[6])
{
    memset(h, 0, sizeof(*h));
    h->gm = g;
    h->net = net;
    h->net_st.owner = h;
    memcpy(h->net_st.mac, mac, 6);
    if (net) {
        h->net_st.rxq = calloc(NET_RXQ_MAX, sizeof(hc_frame));
        if (!h->net_st.rxq)
            return -ENOMEM;
    }
    /* The guest's clock counts from its boot. */
    h->clock_offset = -(int64_t)hc_host_ns();
    return 0;
}

void hc_fini(hc_dev *h)
{
    free(h->net_st.rxq);
    h->net_st.rxq = NULL;
}

/* ---- the calls ---- */

static int64_t do_console(hc_dev *h, struct ftvm_hc_console *a)
{
    if (a->len > HC_CONSOLE_MAX)
        return FTVM_EINVAL;
    const void *p = gmem_ptr(h->gm, a->data, a->len);
    if (!p)
        return FTVM_EFAULT;
    if (a->len)
        h->console(h->console_opaque, p, a->len);
    __atomic_fetch_add(&h->st.console_calls, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->st.console_bytes, a->len, __ATOMIC_RELAXED);
    return FTVM_OK;
}

static uint32_t poll_events(hc_dev *h)
{
    return h->net && net_rx_pending(h->net) ? FTVM_POLL_NET : 0;
}

static void do_poll(hc_dev *h, struct ftvm_hc_poll *a)
{
    a->ret = FTVM_OK;
    a->events = poll_events(h);
    if (a->events || a->deadline_ns <= hc_clock_now(h))
        return;
    /* Guest deadline to host time, saturating: ~0 means "no deadline". */
    uint64_t host = a->deadline_ns - (uint64_t)h->clock_offset;
    if (h->clock_offset < 0 && host < a->deadline_ns)
        host = UINT64_MAX;
    h->wait(h->wait_opaque, host);
    a->events = poll_events(h);
}

static void do_net_info(hc_dev *h, struct ftvm_hc_net_info *a)
{
    if (!h->net) {
        a->ret = FTVM_ENODEV;
        return;
    }
    memcpy(a->mac, h->net_st.mac, 6);
    a->mtu = NET_MTU;
    a->ret = FTVM_OK;
}

static int64_t do_net_write(hc_dev *h, struct ftvm_hc_net_write *a)
{
    if (!h->net)
        return FTVM_ENODEV;
    if (a->len == 0 || a->len > NET_FRAME_MAX)
        return FTVM_EINVAL;
    const void *p = gmem_ptr(h->gm, a->data, a->len);
    if (!p)
        return FTVM_EFAULT;
    int rc = h->transmit(h->transmit_opaque, p, a->len);
    if (rc == -ENOSPC)
        return FTVM_ENOSPC;
    if (rc == -EINVAL)
        return FTVM_EINVAL;
    /* Anything else the backend refused is a frame lost on the wire. */
    return FTVM_OK;
}

static int64_t do_net_read(hc_dev *h, struct ftvm_hc_net_read *a)
{
    if (!h->net)
        return FTVM_ENODEV;
    void *p = gmem_ptr(h->gm, a->data, a->len);
    if (!p)
        return FTVM_EFAULT;
    ssize_t n = net_recv(h->net, p, a->len);
    if (n < 0)
        return n == -EAGAIN ? FTVM_EAGAIN : FTVM_EINVAL;
    gmem_mark_dirty(h->gm, a->data,
                    (uint64_t)n < a->len ? (uint64_t)n : a->len);
    a->len = (uint64_t)n;
    return FTVM_OK;
}

/*
 * The block calls do their I/O right here, on the vCPU thread, with
 * pread/pwrite/fdatasync on the local image: the image is a file of this
 * host that no peer controls, and a call moves at most
 * FTVM_BLK_MAX_SECTORS (1 MiB), so one exit's work is bounded.  A pause
 * for a checkpoint waits for the call to finish like any other exit, and
 * the call leaves nothing behind to save: its data is in RAM (marked
 * dirty) or in the image (whose chunks disk_write marked dirty) before
 * the guest resumes.
 */
static void do_blk_info(hc_dev *h, struct ftvm_hc_blk_info *a)
{
    memset(a, 0, sizeof(*a));
    if (!h->disk) {
        a->ret = FTVM_ENODEV;
        return;
    }
    a->sectors = disk_sectors(h->disk);
    a->sector_size = FTVM_BLK_SECTOR_SIZE;
    a->max_sectors = FTVM_BLK_MAX_SECTORS;
    a->flags = disk_readonly(h->disk) ? FTVM_BLK_READONLY : 0;
    a->ret = FTVM_OK;
}

static int64_t blk_errno(int rc)
{
    switch (rc) {
    case 0: return FTVM_OK;
    case -EROFS: return FTVM_EROFS;
    case -ERANGE: return FTVM_ERANGE;
    default: return FTVM_EIO;
    }
}

static int64_t do_blk_io(hc_dev *h, struct ftvm_hc_blk_io *a, bool write)
{
    if (!h->disk)
        return FTVM_ENODEV;
    if (write && disk_readonly(h->disk))
        return FTVM_EROFS;
    if (a->count > FTVM_BLK_MAX_SECTORS)
        return FTVM_EINVAL;
    uint64_t sectors = disk_sectors(h->disk);
    if (a->sector > sectors || a->count > sectors - a->sector)
        return FTVM_ERANGE;
    uint64_t len = a->count * FTVM_BLK_SECTOR_SIZE;
    void *p = gmem_ptr(h->gm, a->data, len);
    if (!p)
        return FTVM_EFAULT;
    if (write)
        return blk_errno(disk_write(h->disk, a->sector, p,
                                    (uint32_t)a->count));
    int rc = disk_read(h->disk, a->sector, p, (uint32_t)a->count);
    /* Even a failed read may have filled part of the buffer. */
    gmem_mark_dirty(h->gm, a->data, len);
    return blk_errno(rc);
}

static int64_t do_blk_flush(hc_dev *h)
{
    if (!h->disk)
        return FTVM_ENODEV;
    return disk_flush(h->disk) == 0 ? FTVM_OK : FTVM_EIO;
}

hc_outcome hc_call(hc_dev *h, unsigned nr, uint32_t arg, char *msg,
                   size_t msglen)
{
    union {
        struct ftvm_hc_console console;
        struct ftvm_hc_clock clock;
        struct ftvm_hc_poll poll;
        struct ftvm_hc_net_info net_info;
        struct ftvm_hc_net_write net_write;
        struct ftvm_hc_net_read net_read;
        struct ftvm_hc_halt halt;
        struct ftvm_hc_blk_info blk_info;
        struct ftvm_hc_blk_io blk_io;
        struct ftvm_hc_blk_flush blk_flush;
    } a;
    uint32_t size = hc_sizes[nr];
    uint8_t *p = gmem_ptr(h->gm, arg, size);

    if (!p) {
        snprintf(msg, msglen, "hypercall %s: its %" PRIu32 "-byte argument "
                 "struct at 0x%" PRIx32 " is not inside guest RAM",
                 hc_names[nr], size, arg);
        return HC_FAULT;
    }
    memcpy(&a, p, size);
    switch (nr) {
    case FTVM_HC_CONSOLE:
        a.console.ret = do_console(h, &a.console);
        break;
    case FTVM_HC_CLOCK:
        a.clock.monotonic_ns = hc_clock_now(h);
        a.clock.wall_ns = clock_ns(CLOCK_REALTIME);
        break;
    case FTVM_HC_POLL:
        do_poll(h, &a.poll);
        break;
    case FTVM_HC_NET_INFO:
        do_net_info(h, &a.net_info);
        break;
    case FTVM_HC_NET_WRITE:
        a.net_write.ret = do_net_write(h, &a.net_write);
        break;
    case FTVM_HC_NET_READ:
        a.net_read.ret = do_net_read(h, &a.net_read);
        break;
    case FTVM_HC_HALT:
        h->st.halt_status = (uint8_t)(a.halt.status & 0xff);
        h->st.halted = true;
        return HC_HALT;
    case FTVM_HC_BLK_INFO:
        do_blk_info(h, &a.blk_info);
        break;
    case FTVM_HC_BLK_READ:
    case FTVM_HC_BLK_WRITE:
        a.blk_io.ret = do_blk_io(h, &a.blk_io, nr == FTVM_HC_BLK_WRITE);
        break;
    case FTVM_HC_BLK_FLUSH:
        a.blk_flush.ret = do_blk_flush(h);
        break;
    }
    memcpy(p, &a, size);
    gmem_mark_dirty(h->gm, arg, size);
    return HC_DONE;
}

/* ---- device state ---- */

static const vmstate_field state_fields[] = {
    {VMSTATE_SCALAR(hc_state, console_calls)},
    {VMSTATE_SCALAR(hc_state, console_bytes)},
    {VMSTATE_SCALAR(hc_state, clock_ns)},
    {VMSTATE_SCALAR(hc_state, halted)},
    {VMSTATE_SCALAR(hc_state, halt_status)},
    VMSTATE_END,
};

static int state_post_load(void *obj, uint32_t version)
{
    hc_dev *h = (hc_dev *)((char *)obj - offsetof(hc_dev, st));

    (void)version;
    h->loaded = true;
    return 0;
}

const vmstate_desc hc_state_desc = {
    .name = "ftvm-dev", .version = 1, .minimum_version = 1,
    .size = sizeof(hc_state), .fields = state_fields,
    .post_load = state_post_load,
};

static const vmstate_field frame_fields[] = {
    {VMSTATE_SCALAR(hc_frame, len)},
    {VMSTATE_VBUFFER(hc_frame, data, len)},
    VMSTATE_END,
};

static const vmstate_desc frame_desc = {
    .name = "ftvm-net/frame", .version = 1, .minimum_version = 1,
    .size = sizeof(hc_frame), .fields = frame_fields,
};

/* The receive queue is the net device's; copy it out for saving. */
static int net_pre_save(void *copy)
{
    hc_net_state *s = copy;
    net_dev *n = s->owner->net;
    size_t count = net_rxq_count(n);

    s->rxq_count = 0;
    for (size_t i = 0; i < count && i < NET_RXQ_MAX; i++) {
        ssize_t len = net_rxq_peek(n, i, s->rxq[i].data, NET_FRAME_MAX);
        if (len < 0 || len > NET_FRAME_MAX)
            break;
        s->rxq[i].len = (uint32_t)len;
        s->rxq_count++;
    }
    return 0;
}

static int net_post_load(void *obj, uint32_t version)
{
    hc_net_state *s = obj;
    net_dev *n = s->owner->net;

    (void)version;
    net_rxq_clear(n);
    for (uint32_t i = 0; i < s->rxq_count; i++) {
        int rc = net_rxq_push(n, s->rxq[i].data, s->rxq[i].len);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int net_check(qfile *f, const void *obj, uint32_t version)
{
    const hc_net_state *s = obj;

    (void)version;
    for (uint32_t i = 0; i < s->rxq_count; i++)
        if (s->rxq[i].len == 0)
            return qfile_fail(
                f, -EINVAL, "ftvm-net: queued frame %" PRIu32 " is empty", i);
    return 0;
}

static const vmstate_field net_fields[] = {
    {VMSTATE_ARRAY(hc_net_state, mac)},
    {VMSTATE_SCALAR(hc_net_state, rxq_count)},
    {VMSTATE_STRUCT_VARRAY_PTR(hc_net_state, rxq, rxq_count, NET_RXQ_MAX,
                               frame_desc)},
    VMSTATE_END,
};

const vmstate_desc hc_net_state_desc = {
    .name = "ftvm-net", .version = 1, .minimum_version = 1,
    .size = sizeof(hc_net_state), .fields = net_fields,
    .pre_save = net_pre_save, .post_load = net_post_load,
    .check = net_check,
};
