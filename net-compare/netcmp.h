/*
 * netcmp: COLO's comparison of the two VMs' network output.  The primary
 * VM's frames are held here until the secondary VM produced the same
 * ones; frames are compared per flow (netcmp_frame.h), in order within a
 * flow, and flows do not wait for each other.  The rules per field, the
 * TCP design and the limits are docs/net-compare.md's.
 *
 * The caller feeds frames (netcmp_put) and the passing of time
 * (netcmp_tick), with times it reads from its own clock: nothing here
 * reads a clock, starts a thread or blocks.  What the comparator decides
 * comes out as verdicts (netcmp_next), in the order it decided them:
 *
 *   NETCMP_RELEASE   send v.frame, the primary's, to the world now
 *   NETCMP_MISMATCH  v.frame and v.other (the secondary's) differ in
 *                    v.field: the VMs diverged, take a checkpoint
 *   NETCMP_TIMEOUT   v.frame waited compare_timeout for the secondary:
 *                    take a checkpoint
 *   NETCMP_LIMIT     a queue bound was reached (v.field says which) and a
 *                    frame was refused: take a checkpoint
 *
 * After the checkpoint the caller calls netcmp_reset: the secondary's
 * frames are dropped (its VM now continues from the primary's state) and
 * the primary's are released or kept, as the caller says.  A flow that
 * diverged (mismatch or timeout) compares nothing more until then; its
 * frames stay held, other flows go on.
 *
 * Not thread-safe: one owner (the primary's event loop) calls everything.
 */
#ifndef FTVM_NET_COMPARE_NETCMP_H
#define FTVM_NET_COMPARE_NETCMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net-compare/netcmp_frame.h"

#define NETCMP_FRAME_MAX 1514           /* vm/net.h's NET_FRAME_MAX */

/* Defaults (docs/net-compare.md, "Limits"). */
#define NETCMP_TIMEOUT_NS (100ull * 1000 * 1000)
#define NETCMP_FLOW_FRAMES 1024u        /* per flow and side */
#define NETCMP_FLOW_BYTES (1u << 20)
#define NETCMP_TOTAL_FRAMES 16384u      /* all flows, both sides */
#define NETCMP_TOTAL_BYTES (16u << 20)
#define NETCMP_MAX_FLOWS 4096u

typedef enum netcmp_side {
    NETCMP_PRIMARY,
    NETCMP_SECONDARY,
} netcmp_side;

typedef struct netcmp_opts {
    uint64_t timeout_ns;        /* 0: NETCMP_TIMEOUT_NS */
    uint32_t flow_frames, flow_bytes, total_frames, total_bytes, max_flows;
    /* 0: the defaults above */
    bool no_ack_guard;          /* TCP: release ACKs the secondary has not
                                   reached (docs: "the ACK guard") */
} netcmp_opts;

typedef enum netcmp_verdict_kind {
    NETCMP_RELEASE,
    NETCMP_MISMATCH,
    NETCMP_TIMEOUT,
    NETCMP_LIMIT,
} netcmp_verdict_kind;

/* Why a frame was released. */
typedef enum netcmp_why {
    NETCMP_MATCHED,             /* the secondary produced the same */
    NETCMP_PURE_ACK,            /* TCP, no sequence space: not compared */
    NETCMP_RETRANSMIT,          /* TCP, bytes compared when first sent */
    NETCMP_CHECKPOINT,          /* netcmp_reset(NETCMP_RESET_RELEASE) */
} netcmp_why;

typedef struct netcmp_pkt {
    uint64_t t_ns;              /* netcmp_put's now */
    size_t len;
    uint8_t data[];
} netcmp_pkt;

typedef struct netcmp_verdict {
    netcmp_verdict_kind kind;
    netcmp_why why;             /* RELEASE */
    netcmp_key key;             /* the flow (LIMIT: the frame refused) */
    netcmp_pkt *frame;          /* RELEASE, MISMATCH, TIMEOUT: the
                                   primary's; owned by the verdict */
    netcmp_pkt *other;          /* MISMATCH: the secondary's, if one */
    uint64_t delay_ns;          /* RELEASE: now - frame->t_ns */
    const char *field;          /* MISMATCH: the field; LIMIT: the bound */
} netcmp_verdict;

typedef struct netcmp netcmp;

/* 0 or -ENOMEM. */
int netcmp_new(netcmp **out, const netcmp_opts *opts);
/* Frees everything, held frames and pending verdicts too. */
void netcmp_free(netcmp *nc);

/*
 * One frame from one VM at time now_ns.  0 (taken: verdicts may follow),
 * -EINVAL (empty or over NETCMP_FRAME_MAX), -ENOSPC (a bound: refused,
 * with a NETCMP_LIMIT verdict the first time after a reset) or -ENOMEM.
 * Times must not go backwards.
 */
int netcmp_put(netcmp *nc, netcmp_side side, const void *frame, size_t len,
               uint64_t now_ns);
/* Time passes: a TIMEOUT verdict for each flow whose oldest held frame
   has waited compare_timeout. */
void netcmp_tick(netcmp *nc, uint64_t now_ns);
/*
 * When netcmp_tick next has something to say: the earliest time a held
 * frame times out, for the caller's timer.  false when nothing waits.
 */
bool netcmp_next_timeout(const netcmp *nc, uint64_t *when_ns);
/* The next verdict into *v (to free with netcmp_verdict_done): true, or
   false when there is none. */
bool netcmp_next(netcmp *nc, netcmp_verdict *v);
void netcmp_verdict_done(netcmp_verdict *v);

typedef enum netcmp_reset_mode {
    NETCMP_RESET_RELEASE,       /* every held primary frame is released */
    NETCMP_RESET_KEEP,          /* they stay, compared with what the
                                   secondary sends from now on; their
                                   timeout starts again at now */
} netcmp_reset_mode;
/*
 * After a checkpoint: the secondary's frames are dropped, diverged flows
 * compare again, the bound reached may be reported again, and TCP flows
 * start over (offset 0: the secondary VM is now the primary's copy).
 */
void netcmp_reset(netcmp *nc, netcmp_reset_mode mode, uint64_t now_ns);

/*
 * TCP: the secondary's sequence numbers in flow key are the primary's
 * minus offset (primary = secondary + offset), as QEMU's filter-rewriter
 * keeps it.  The comparator learns it when both VMs open a connection
 * (their SYNs); the caller sets it when it knows better.  The mirror
 * subtracts it from the ACK numbers of what it delivers to the secondary
 * (netcmp_rewrite_to_secondary).  Set: 0, -EINVAL (not a TCP key) or
 * -ENOSPC/-ENOMEM; get: true when the flow has one.
 */
int netcmp_set_tcp_offset(netcmp *nc, const netcmp_key *key, uint32_t offset);
bool netcmp_tcp_offset(const netcmp *nc, const netcmp_key *key,
                       uint32_t *offset);
/*
 * A frame from the world to the VMs, as the secondary's copy: its TCP ACK
 * number (a primary's sequence number) moved into the secondary's space
 * by the offset of the reverse flow (the VMs' replies), the checksum
 * fixed up incrementally.  Returns whether it changed the frame.
 */
bool netcmp_rewrite_to_secondary(const netcmp *nc, uint8_t *frame,
                                 size_t len);

typedef struct netcmp_stats {
    uint64_t frames[2], bytes[2];       /* taken, by side */
    uint64_t invalid, refused[2];       /* -EINVAL, -ENOSPC by side */
    uint64_t malformed[2];              /* taken, classified malformed */
    uint64_t compared;                  /* primary frames whose compare
                                           ended: matched + mismatched */
    uint64_t matched, mismatched, timeouts, limits;
    uint64_t released;                  /* every RELEASE verdict */
    uint64_t released_uncompared;       /* pure ACKs and retransmissions */
    uint64_t released_at_reset;
    uint64_t consumed;                  /* secondary frames used up:
                                           matched, pure ACKs, retransmits */
    uint64_t dropped_at_reset;          /* secondary frames */
    uint64_t held_frames[2], held_bytes[2];     /* now */
    uint64_t flows;                     /* now */
    uint64_t delay_count, delay_sum_ns, delay_max_ns;   /* RELEASE verdicts
                                           but those of a reset */
    uint64_t resets;
} netcmp_stats;
void netcmp_get_stats(const netcmp *nc, netcmp_stats *out);

typedef struct netcmp_flow_info {
    netcmp_key key;
    uint32_t held[2];                   /* frames, by side */
    uint32_t held_bytes[2];
    bool diverged;
} netcmp_flow_info;
/* Calls fn for each flow (in no particular order). */
void netcmp_flows(const netcmp *nc,
                  void (*fn)(void *opaque, const netcmp_flow_info *fi),
                  void *opaque);

const char *netcmp_verdict_name(netcmp_verdict_kind k);
const char *netcmp_why_name(netcmp_why w);

#endif
