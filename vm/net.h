/*
 * net: the host side of a guest's network device.
 *
 * A backend moves Ethernet frames between the guest and the host: a TAP
 * device (`tap:IFNAME`) or a datagram socket (`dgram:LOCAL,REMOTE`, UDP
 * `HOST:PORT` or UNIX socket paths), which wires two monitors together or
 * a test to a monitor, or nothing (`none`): a NIC whose host side another
 * device holds for now (COLO's secondary VM, docs/colo.md), which gets
 * one with net_take_backend.  Frames the guest sends go to the VM's
 * transmit hook (vm_config.transmit_fn): without one, to net_transmit;
 * the primary's hook holds them for output commit (primary/outqueue.h)
 * and sends them with net_transmit once released.  Frames from the host
 * wait in a bounded receive queue until the guest reads them.
 *
 * Threads: vCPU threads call net_transmit / net_recv / net_rx_pending;
 * the event-loop thread calls net_rx_pump when net_fd() is readable.  All
 * entry points are safe to call concurrently, except net_take_backend
 * (see there).
 */
#ifndef FTVM_VM_NET_H
#define FTVM_VM_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NET_MTU 1500
#define NET_FRAME_MAX (NET_MTU + 14)    /* Ethernet header, no FCS */

#define NET_RXQ_MAX 256                 /* received frames waiting */

typedef struct net_dev net_dev;

/*
 * Opens a backend from a spec: "tap:ftvm0" (the caller creates the
 * interface and brings it up), "dgram:127.0.0.1:7001,127.0.0.1:7002" or
 * "dgram:[::1]:7001,[::1]:7002" (UDP, numeric addresses, LOCAL first),
 * "dgram:/run/a.sock,/run/b.sock" (UNIX datagram sockets), or "none" (no
 * host side: net_fd is -1, net_rx_pump and net_rx_discard return 0,
 * net_transmit drops every frame with -ENETDOWN; the receive queue works
 * as for any backend).  On failure returns a negative errno and writes
 * a message naming the spec and the cause.
 */
int net_open(net_dev **out, const char *spec, char *err, size_t errlen);
void net_close(net_dev *n);

/* Parses "02:00:00:00:00:01"; 0 or -EINVAL. */
int net_parse_mac(const char *s, uint8_t mac[6]);

/* The fd the event loop watches for incoming frames; -1 for "none". */
int net_fd(const net_dev *n);
/*
 * Moves src's host side (its fd, kind, REMOTE and the UNIX path it bound,
 * removed at close by whoever then holds it) to dst, whose backend must be
 * "none" (else -EBUSY); src is left with "none".  Receive queues, notify
 * and tap callbacks and counters stay with their devices.  0, -EBUSY, or
 * -EINVAL (NULL, or dst == src).  The caller makes sure no net_transmit,
 * net_rx_pump or net_rx_discard runs on either device during the call,
 * and that an event loop watching src's fd stops before (the fd is
 * dst's afterwards: watch it for dst).
 */
int net_take_backend(net_dev *dst, net_dev *src);
/*
 * Reads every frame waiting on the fd into the receive queue (at most a
 * few thousand a call, so a flood cannot starve the loop; the fd then
 * stays readable).  Frames over NET_FRAME_MAX, empty ones, UDP datagrams
 * not from REMOTE and frames finding the queue full are dropped and
 * counted in rx_dropped.  Returns the number of frames queued or -errno.
 */
int net_rx_pump(net_dev *n);
/*
 * Calls fn(opaque) after a net_rx_pump that queued at least one frame, on
 * the pump's thread with no lock of n held (so fn may take the monitor's
 * own lock and signal the vCPU waiting in FTVM_HC_POLL).  fn must not call
 * net_rx_pump.  NULL removes it.
 */
void net_set_rx_notify(net_dev *n, void (*fn)(void *opaque), void *opaque);
/*
 * Calls fn(opaque, frame, len) from net_rx_pump, on the pump's thread, for
 * each frame it appended to the receive queue (not for frames it dropped),
 * in the order they were appended, with no lock of n held, before the rx
 * notify; the frame is valid only during the call.  So the primary sees
 * every frame its NIC receives (to mirror it).  Frames put in by
 * net_rx_deliver or net_rxq_push do not pass through it.  fn must not call
 * net_rx_pump.  NULL removes it.  Set it before the pump first runs: a
 * pump already running may still miss or call the old one.
 */
void net_set_rx_tap(net_dev *n,
                    void (*fn)(void *opaque, const void *frame, size_t len),
                    void *opaque);
/*
 * Reads and drops every frame waiting on the backend's fd right now (at
 * most as many as one net_rx_pump reads), counted in rx_discarded: frames
 * that queued up in a TAP nobody read are stale and must not reach a guest
 * taking over (failover).  The number dropped, or -errno; 0 for "none".
 */
int net_rx_discard(net_dev *n);
/*
 * Appends a frame to the receive queue as if the backend had received it
 * (counted in rx_frames/rx_bytes; a full queue drops it, counted in
 * rx_dropped): 0, -EINVAL (empty or oversize), -ENOSPC.  Neither the rx
 * tap nor the rx notify is called: waking the reader is the caller's
 * (vm_net_deliver does both).  Any thread.
 */
int net_rx_deliver(net_dev *n, const void *frame, size_t len);
/* Whether a received frame is queued for the guest. */
bool net_rx_pending(net_dev *n);
/*
 * Pops the oldest received frame into buf (cap bytes).  Returns the frame's
 * length (which may exceed cap: the frame is then truncated and dropped),
 * or -EAGAIN when none is queued.
 */
ssize_t net_recv(net_dev *n, void *buf, size_t cap);
/*
 * Sends one frame (len <= NET_FRAME_MAX) to the backend ("none": dropped,
 * counted in tx_dropped, -ENETDOWN).  A datagram socket waits a little
 * for room (10 ms) when may_wait, else not at all.
 * 0, -EINVAL for an empty or oversize frame, or the backend's error
 * (-EAGAIN: no room), counted in tx_dropped: a frame the backend refuses
 * is lost, as on a wire.
 */
int net_transmit(net_dev *n, const void *frame, size_t len, bool may_wait);

typedef struct net_stats {
    uint64_t rx_frames, rx_bytes, rx_dropped;
    uint64_t rx_discarded;              /* by net_rx_discard */
    uint64_t tx_frames, tx_bytes, tx_dropped;
} net_stats;
void net_get_stats(net_dev *n, net_stats *out);

/*
 * The receive queue is guest-visible device state: frames that arrived
 * before a checkpoint and were not yet read must reach the restored guest.
 * net_rxq_save/load are called with the VM paused; see vm/ for the
 * device-state description that carries them.
 */
size_t net_rxq_count(net_dev *n);
/* Copies queued frame i (oldest first) out; returns its length or -ENOENT. */
ssize_t net_rxq_peek(net_dev *n, size_t i, void *buf, size_t cap);
/* Appends a frame to the receive queue (restore): 0, -EINVAL or -ENOSPC. */
int net_rxq_push(net_dev *n, const void *frame, size_t len);
void net_rxq_clear(net_dev *n);

#endif
