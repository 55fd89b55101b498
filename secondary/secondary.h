/*
 * secondary: the secondary process (`ftvm secondary`), the standby end of
 * replication (docs/replication.md).  It listens for a primary
 * (secondary/listener.h), keeps the primary's VM as a RAM cache through
 * the receiver (secondary/receiver.h), fails over (secondary/failover.h)
 * when the primary dies or an operator says so, and from then on runs the
 * VM as `ftvm run` does.  What each end of a connection leads to is
 * decided in secondary/standby.h.
 */
#ifndef FTVM_SECONDARY_SECONDARY_H
#define FTVM_SECONDARY_SECONDARY_H

#include <stdint.h>

#include "daemon/daemon.h"
#include "daemon/tls.h"
#include "primary/colo.h"

#define SECONDARY_FAILURE_TIMEOUT_NS 300000000u    /* default: 300 ms */
/*
 * Default --setup-timeout: until its first checkpoint is applied, a
 * primary that sends nothing but PINGs for this long is dropped.
 */
#define SECONDARY_SETUP_TIMEOUT_NS 20000000000ull  /* 20 s */
#define SECONDARY_HEARTBEAT_NS 50000000u           /* default: 50 ms */

typedef struct secondary_opts {
    /* ADDR:PORT, [IPV6]:PORT or :PORT; port 0 for any (the log says). */
    const char *listen;
    const char *net;            /* the VM's backend after failover, or NULL */
    const char *disk;           /* --disk: this secondary's image copy */
    uint64_t failure_ns;        /* silence after which the primary is dead */
    uint64_t heartbeat_ns;      /* HEARTBEAT when idle this long */
    /* --tls-creds, --tls-peer, --insecure (daemon/tls.h). */
    tls_opts tls;
    uint64_t handshake_ns;      /* a TLS handshake's deadline; 0: default */
    uint64_t setup_ns;          /* progress this often until checkpoint 1 */
    const char *vm_name;        /* the VM the primary must have; NULL any */
    /* --witness: etcd endpoints, NULL for none; --witness-timeout. */
    const char *witness;
    uint64_t witness_timeout_ns;
    const char *witness_tls;    /* --witness-tls DIR, for https:// */
    /*
     * --register: offer this secondary in the witness's standby pool
     * --pool (NULL: "default") while it waits for a primary, as
     * --advertise (NULL: the listening address), under a lease of
     * --pool-ttl (0: 5 s) kept alive (secondary/enlist.h).
     */
    bool register_pool;
    const char *pool;
    /*
     * --standby-pool: once this secondary has taken the VM over, whenever
     * it runs unprotected, pick a standby from the pool (--pool, NULL:
     * "default") and bring it up (replicator_opts.standby_pool).
     */
    bool standby_pool;
    const char *advertise;
    uint64_t pool_ttl_ns;
    /*
     * Replication of the VM this secondary took over (ftvmctl protect,
     * the standby pool): --mode, --compare-timeout, --checkpoint-interval
     * and --stall-timeout, as ftvm primary's (0: the defaults).
     */
    colo_mode mode;
    uint64_t compare_timeout_ns;
    uint64_t interval_ns;
    uint64_t stall_ns;
    /* --control, --metrics, checkpoints to disk of the cache, then VM. */
    daemon_opts process;
} secondary_opts;

/*
 * Serves until replication ends and, after a failover, until the VM
 * stops; returns the exit status: before a failover 0 (stopped cleanly),
 * secondary/standby.h's 3 and 4, or daemon/exitcode.h's 120 and 128+N;
 * after one, a VM's (daemon/exitcode.h).  With --witness, 5 when the
 * witness gave the VM to the primary.
 */
int secondary_run(secondary_opts *o);

#endif
