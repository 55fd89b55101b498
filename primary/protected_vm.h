/*
 * protected_vm: a running VM whose output goes through output commit
 * (primary/outqueue.h) and which a replicator (primary/replicator.h)
 * protects, or may protect once it has a secondary.  One mechanism for
 * both processes that run such a VM: the primary (primary/primary.h),
 * and a secondary that went live (secondary/survivor.h), whose VM was
 * created with its output routed here before it ever ran.
 *
 * The order, each before the VM's vCPUs run: protected_vm_new (the
 * queue), protected_vm_route on the VM's configuration, protected_vm_use
 * on the VM made from it, protected_vm_on_stop as the VM's on_stop
 * (vm_attach).  protected_vm_protect (the replicator) comes before the
 * vCPUs run on a primary; a secondary that goes live makes it just after,
 * off the failover's path (its output is not held until a secondary
 * protects it, so nothing depends on the replicator before then).  When the VM
 * stops for good, replication ends as replicator_vm_stopped says and the
 * process exits as a primary does: 120 when its first secondary never
 * protected it (replicator_setup_failed), 123 when the witness gave the
 * VM to the secondary (replicator_fenced), otherwise the VM's status.
 */
#ifndef FTVM_PRIMARY_PROTECTED_VM_H
#define FTVM_PRIMARY_PROTECTED_VM_H

#include <stddef.h>

#include "daemon/daemon.h"
#include "primary/outqueue.h"
#include "primary/replicator.h"
#include "vm/vm.h"

typedef struct protected_vm protected_vm;

/* The output-commit queue, not holding.  0 or -ENOMEM. */
int protected_vm_new(protected_vm **out);
/* Routes cfg's console and network output through the queue. */
void protected_vm_route(protected_vm *p, vm_config *cfg);
/*
 * v was made from a routed configuration: released console bytes go to
 * its console's writer (vm_console), frames to its NIC's backend.  Again
 * for a later VM replaces it.
 */
void protected_vm_use(protected_vm *p, vm *v);
/*
 * Makes the replicator for the VM of protected_vm_use (not yet running,
 * or running with nothing held), in process d
 * (whose control socket's checkpoint to disk holds off a bring-up, see
 * replicator_opts.may_protect; o's may_protect and opaque are set here),
 * and says which witness it claims with, or that there is none.  Nothing
 * is sent before replicator_start.  0 or -errno + msg.
 */
int protected_vm_protect(protected_vm *p, daemon_process *d,
                         replicator_opts *o, char *err, size_t errlen);
/* The replicator, NULL before protected_vm_protect. */
replicator *protected_vm_replicator(const protected_vm *p);
/*
 * The VM's on_stop (vm_attach's; arg the protected_vm): ends replication
 * and then the process (daemon_exit) with the status above.
 */
void protected_vm_on_stop(vm *v, void *arg);
/* Frees the replicator: before the VM is destroyed. */
void protected_vm_end(protected_vm *p);
/* Frees the queue: after the VM is destroyed (its vCPUs write to it). */
void protected_vm_free(protected_vm *p);

#endif
