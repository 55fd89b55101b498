/*
 * survivor: a secondary that went live becomes a primary that can be
 * protected again (docs/witness.md, "Re-protection").
 *
 * Every VM the receiver makes has its output routed through output
 * commit from the start (survivor_output, replica.h), so that once it
 * runs here it is a protected_vm (primary/protected_vm.h) like the
 * primary's: not holding while it has no secondary, so output flows at
 * once, as before.  At failover the survivor gets a replicator with no
 * secondary yet (degraded); `protect HOST:PORT` brings one up.  Its
 * pairing keeps the VM's name and continues from the generation it took
 * over: taking over generation G, its first bring-up is G + 1, whose
 * witness key is /ftvm/NAME/G+1/owner.  From then on everything a
 * primary does applies: a lost secondary is claimed (won: degraded;
 * lost: exit 123, held output never released), and the VM's end exits
 * as a primary's would.
 */
#ifndef FTVM_SECONDARY_SURVIVOR_H
#define FTVM_SECONDARY_SURVIVOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "daemon/daemon.h"
#include "daemon/metrics.h"
#include "primary/replicator.h"
#include "secondary/replica.h"
#include "secondary/secondary.h"
#include "vm/vm.h"
#include "vm/vmshape.h"

typedef struct survivor survivor;

/* Before any VM, in process d: the output-commit queue.  0 or -ENOMEM. */
int survivor_new(survivor **out, daemon_process *d);
/* The hooks the receiver's VMs are made with. */
replica_output survivor_output(survivor *sv);
/* The receiver made v with them (on the loop's thread, v not running). */
void survivor_vm(survivor *sv, vm *v);

/*
 * The replicator's options of the survivor of a VM of shape (its pairing
 * the one taken over), from the secondary's own: --witness,
 * --witness-timeout and --witness-tls; --tls-creds and --insecure (not
 * --tls-peer, which names the primary: the new secondary's certificate
 * must name the host protect is given); --heartbeat and
 * --failure-timeout.  The checkpoint interval is the primary's default.
 * The one place they are made.
 */
void survivor_opts(const secondary_opts *o, const vmshape *shape,
                   replicator_opts *out);
/*
 * The VM of survivor_vm went live (failover_start, given
 * survivor_on_stop and sv, has started it): its replicator, no secondary
 * yet.  Just after the vCPUs started rather than before, so that loading
 * the TLS credentials does not lengthen the failover: output is not held
 * without a secondary, and the queue's sinks are set (survivor_vm).
 * Should that fail (no memory), the VM runs on and protect says why.
 */
void survivor_start(survivor *sv, const secondary_opts *o,
                    const vmshape *shape);
/*
 * The live VM's on_stop (arg: the survivor): the process exits as a
 * primary's (protected_vm.h), or as ftvm run's without a replicator.
 */
void survivor_on_stop(vm *v, void *arg);
/* Whether survivor_start has made the replicator. */
bool survivor_live(const survivor *sv);

/*
 * protect HOST:PORT (args' "address"); refused, naming state (the
 * secondary's), unless the VM runs here with its replicator.  0 or
 * -errno + msg.
 */
int survivor_protect(survivor *sv, const char *state, json_t *args,
                     char *err, size_t errlen);
/*
 * set KEY VALUE (checkpoint-interval, heartbeat, failure-timeout) for the
 * live VM's replication; refused as protect is, and for reconnect (a
 * survivor has no --secondary to go back to).
 */
int survivor_set(survivor *sv, const char *state, json_t *args, char *err,
                 size_t errlen);
/*
 * stop-replication of the live VM's replication (EOF to its secondary,
 * the VM runs on); -ENOENT unless live (the caller's own applies).
 */
int survivor_stop(survivor *sv, char *err, size_t errlen);
/* Live: status gets "protection", the fields a primary's status has. */
void survivor_status(survivor *sv, json_t *status);
/* Live: the primary's metric families (ftvm_primary_*). */
void survivor_metrics(survivor *sv, metrics_writer *w);
/* Live: a checkpoint to disk waits while a secondary is set up or active. */
int survivor_may_save(survivor *sv, char *err, size_t errlen);

/* Frees the replicator (before the VM is destroyed), then the rest. */
void survivor_end(survivor *sv);
void survivor_free(survivor *sv);

#endif
