/*
 * netcmp's insides, shared by netcmp.c (flows, queues, verdicts, bounds)
 * and netcmp_tcp.c (TCP compared over sequence ranges).  Not for users.
 */
#ifndef FTVM_NET_COMPARE_NETCMP_IMPL_H
#define FTVM_NET_COMPARE_NETCMP_IMPL_H

#include "net-compare/netcmp.h"

/* A frame held in a flow's queue. */
typedef struct netcmp_held {
    struct netcmp_held *next;
    netcmp_pkt *pkt;
    netcmp_frame f;
    uint64_t t_wait;            /* its timeout counts from here */
    uint32_t done;              /* TCP: sequence space compared */
    bool complete;              /* primary: may go, in its turn */
    netcmp_why why;             /* and why */
} netcmp_held;

typedef struct netcmp_queue {
    netcmp_held *head, *tail;
    uint32_t n, bytes;
} netcmp_queue;

typedef struct netcmp_flow {
    struct netcmp_flow *next;   /* hash chain */
    netcmp_key key;
    netcmp_queue q[2];          /* by netcmp_side */
    bool diverged;              /* mismatch or timeout: until a reset */
    /* TCP (netcmp_tcp.c): */
    netcmp_held *p_cmp;         /* the first primary frame not complete */
    bool has_cur, has_offset, has_sack;
    uint32_t cur;               /* primary's sequence space compared up to */
    uint32_t offset;            /* primary = secondary + offset */
    uint32_t s_ack;             /* the secondary's highest ACK */
} netcmp_flow;

#define NETCMP_BUCKETS 1024u

struct netcmp {
    netcmp_opts o;
    netcmp_flow *buckets[NETCMP_BUCKETS];
    struct vnode *verdicts, *verdicts_tail;
    bool limit_reported;
    netcmp_stats st;
};

/* For netcmp_tcp.c: */
/* The head of the primary's queue becomes verdict RELEASE. */
void netcmp_release_head(netcmp *nc, netcmp_flow *fl, uint64_t now);
/* The secondary's head is used up. */
void netcmp_consume_head(netcmp *nc, netcmp_flow *fl);
/* p and s (s may be NULL) differ in field: the flow diverged. */
void netcmp_mismatch(netcmp *nc, netcmp_flow *fl, const netcmp_held *p,
                     const netcmp_held *s, const char *field);
/* p's compare ended, why; counted. */
void netcmp_complete(netcmp_held *p, netcmp_why why, netcmp_stats *st);

/* TCP: a secondary segment arrives (true: used up at once, not queued). */
bool netcmp_tcp_secondary(netcmp_flow *fl, const netcmp_frame *f);
/* TCP: compare what both queues hold, release what may go. */
void netcmp_tcp_run(netcmp *nc, netcmp_flow *fl, uint64_t now);
/* TCP: start over after a checkpoint. */
void netcmp_tcp_reset(netcmp_flow *fl);

#endif
