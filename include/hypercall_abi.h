/*
 * The hypercall ABI between ftvm guests and the monitor.
 *
 * Shared, unchanged, by the monitor (vm/) and the freestanding guest
 * runtime (guest/), so it uses nothing but fixed-width types.  A guest
 * makes hypercall N by writing the guest-physical address of its argument
 * struct, as a 32-bit value, to I/O port FTVM_HC_PORT_BASE + N (`outl`).
 * The guest runs at privilege level 3 with IOPL 3, so `out` needs no
 * kernel.  The monitor reads the struct, does the call, writes the results
 * back into the struct, and resumes the guest after the `out` instruction.
 *
 * Every address and length in a struct is untrusted: the monitor checks it
 * against guest RAM and answers FTVM_EFAULT (or stops the VM for a struct
 * it cannot even read).  docs/hypercall-abi.md is the full specification.
 */
#ifndef FTVM_HYPERCALL_ABI_H
#define FTVM_HYPERCALL_ABI_H

#include <stdint.h>

#define FTVM_HC_PORT_BASE 0x500
#define FTVM_HC_ABI_VERSION 1

enum ftvm_hc_nr {
    FTVM_HC_CONSOLE = 1,    /* write bytes to the console */
    FTVM_HC_CLOCK = 2,      /* monotonic and wall clock */
    FTVM_HC_POLL = 3,       /* block until an event or a deadline */
    FTVM_HC_NET_INFO = 4,   /* MAC address and MTU */
    FTVM_HC_NET_WRITE = 5,  /* send one frame */
    FTVM_HC_NET_READ = 6,   /* receive one frame */
    FTVM_HC_HALT = 7,       /* stop the VM with an exit status */
    FTVM_HC_BLK_INFO = 8,   /* the disk's size and flags */
    FTVM_HC_BLK_READ = 9,   /* read sectors into RAM */
    FTVM_HC_BLK_WRITE = 10, /* write sectors from RAM */
    FTVM_HC_BLK_FLUSH = 11, /* make written sectors durable */
    FTVM_HC_MAX = 12,
};

/* Results, in the `ret` field of a struct: 0 or one of these. */
enum ftvm_hc_err {
    FTVM_OK = 0,
    FTVM_EFAULT = -1,       /* an address or length outside guest RAM */
    FTVM_EINVAL = -2,       /* a bad argument (length over a limit...) */
    FTVM_EAGAIN = -3,       /* nothing to read now */
    FTVM_ENODEV = -4,       /* no such device (no network, no disk) */
    FTVM_ENOSPC = -5,       /* the queue is full; try again later */
    FTVM_EROFS = -6,        /* a write to a readonly disk */
    FTVM_ERANGE = -7,       /* sectors outside the disk */
    FTVM_EIO = -8,          /* the host's I/O on the disk image failed */
};

/* FTVM_HC_CONSOLE: writes len bytes at data (at most 64 KiB a call). */
struct ftvm_hc_console {
    uint64_t data;          /* in: guest-physical address */
    uint64_t len;           /* in */
    int64_t ret;            /* out: len on success, else an error */
};

/* FTVM_HC_CLOCK: both clocks, in nanoseconds. */
struct ftvm_hc_clock {
    uint64_t monotonic_ns;  /* out: never goes back, even across restore */
    uint64_t wall_ns;       /* out: since the Unix epoch */
};

/* Event bits for FTVM_HC_POLL. */
#define FTVM_POLL_NET 0x1u  /* a received frame is waiting */

/*
 * FTVM_HC_POLL: blocks until an event or until the monotonic clock reaches
 * deadline_ns (0 = return at once).  The monitor may return early with no
 * events (the VM was paused for a checkpoint, say): guests loop.
 */
struct ftvm_hc_poll {
    uint64_t deadline_ns;   /* in: absolute, on the monotonic clock */
    uint32_t events;        /* out: FTVM_POLL_* bits ready */
    int32_t ret;            /* out */
};

/* FTVM_HC_NET_INFO. */
struct ftvm_hc_net_info {
    uint8_t mac[6];         /* out */
    uint16_t reserved;
    uint32_t mtu;           /* out: largest frame payload, e.g. 1500 */
    int32_t ret;            /* out: FTVM_ENODEV without a network */
};

/* FTVM_HC_NET_WRITE: one Ethernet frame of len bytes (at most mtu + 14). */
struct ftvm_hc_net_write {
    uint64_t data;          /* in */
    uint64_t len;           /* in */
    int64_t ret;            /* out */
};

/*
 * FTVM_HC_NET_READ: the oldest received frame into a buffer of len bytes.
 * len comes back as the frame's length; a frame longer than the buffer is
 * truncated to it and dropped.  FTVM_EAGAIN when none is queued.
 */
struct ftvm_hc_net_read {
    uint64_t data;          /* in */
    uint64_t len;           /* in: buffer size; out: frame length */
    int64_t ret;            /* out */
};

/* FTVM_HC_HALT: the VM stops; the monitor exits with status & 0xff. */
struct ftvm_hc_halt {
    uint64_t status;        /* in */
};

/* The disk: 512-byte sectors, at most FTVM_BLK_MAX_SECTORS (1 MiB) a call. */
#define FTVM_BLK_SECTOR_SIZE 512u
#define FTVM_BLK_MAX_SECTORS 2048u
#define FTVM_BLK_READONLY 0x1u  /* flags: writes fail with FTVM_EROFS */

/* FTVM_HC_BLK_INFO: FTVM_ENODEV (and sectors 0) without a disk. */
struct ftvm_hc_blk_info {
    uint64_t sectors;       /* out: the disk's size in sectors */
    uint32_t sector_size;   /* out: FTVM_BLK_SECTOR_SIZE */
    uint32_t max_sectors;   /* out: FTVM_BLK_MAX_SECTORS, the per-call limit */
    uint32_t flags;         /* out: FTVM_BLK_* */
    int32_t ret;            /* out */
};

/*
 * FTVM_HC_BLK_READ and FTVM_HC_BLK_WRITE: count sectors (0 to
 * max_sectors) from sector on, to or from count * 512 bytes at data.
 * The call has completed when the guest resumes; a write is in the host's
 * page cache (FTVM_HC_BLK_FLUSH makes it durable).
 */
struct ftvm_hc_blk_io {
    uint64_t sector;        /* in */
    uint64_t count;         /* in: sectors */
    uint64_t data;          /* in: guest-physical address */
    int64_t ret;            /* out */
};

/* FTVM_HC_BLK_FLUSH: every completed write is on stable storage. */
struct ftvm_hc_blk_flush {
    int64_t ret;            /* out */
};

/*
 * What the guest finds at entry: %rdi holds the guest-physical address of
 * this struct; %rsp is 16-byte aligned below the top of RAM and below
 * 4 GiB (argument structs on the stack must have 32-bit addresses); all
 * RAM is identity-mapped, writable and executable at privilege level 3.
 * RAM from image_end up to 256 KiB below the initial %rsp is free for the
 * guest: the monitor keeps its boot structures below the image.
 */
struct ftvm_boot_info {
    uint64_t abi_version;   /* FTVM_HC_ABI_VERSION */
    uint64_t mem_size;      /* bytes of guest RAM */
    uint64_t image_end; /* first byte after the loaded image, page aligned */
    uint64_t cmdline;       /* NUL-terminated guest arguments */
};

#endif
