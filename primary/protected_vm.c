/* protected_vm: see protected_vm.h. */
#include "primary/protected_vm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/exitcode.h"
#include "daemon/log.h"
#include "vm/conout.h"
#include "witness/claim.h"

struct protected_vm {
    outqueue *out;
    colo *colo;         /* in front of out's console (COLO mode compares) */
    vm *v;
    daemon_process *d;
    replicator *rep;
};

int protected_vm_new(protected_vm **out)
{
    protected_vm *p = calloc(1, sizeof(*p));
    if (!p || outqueue_new(&p->out) < 0) {
        free(p);
        return -ENOMEM;
    }
    if (colo_new(&p->colo, p->out, 0) < 0) {
        outqueue_free(p->out);
        free(p);
        return -ENOMEM;
    }
    *out = p;
    return 0;
}

void protected_vm_route(protected_vm *p, vm_config *cfg)
{
    /* Into the queue through colo and colonet, which compare only in
       COLO mode. */
    cfg->console_fn = colo_console;
    cfg->console_opaque = p->colo;
    cfg->transmit_fn = colonet_transmit;
    cfg->transmit_opaque = colo_net(p->colo);
}

void protected_vm_use(protected_vm *p, vm *v)
{
    p->v = v;
    /* Released output goes to stdout through the VM's own writer. */
    outqueue_set_console_sink(p->out, conout_console, vm_console(v));
    if (vm_net(v))
        outqueue_set_frame_sink(p->out, outqueue_net_send, vm_net(v));
}

static bool may_protect(void *opaque, char *err, size_t errlen)
{
    protected_vm *p = opaque;

    if (!vmctl_busy(daemon_vmctl(p->d)))
        return true;
    snprintf(err, errlen, "a checkpoint to disk is being written; try "
             "again when it is done");
    return false;
}

int protected_vm_protect(protected_vm *p, daemon_process *d,
                         replicator_opts *o, char *err, size_t errlen)
{
    p->d = d;
    o->may_protect = may_protect;
    o->opaque = p;
    o->colo = p->colo;
    int r = replicator_new(&p->rep, p->v, daemon_base(d), p->out, o, err,
                           errlen);
    if (r < 0)
        return r;
    if (o->witness)
        log_msg("witness: %s (claims as '%s')", o->witness,
                replicator_witness_value(p->rep));
    else
        log_msg("%s", CLAIM_NO_WITNESS);
    return 0;
}

replicator *protected_vm_replicator(const protected_vm *p)
{
    return p->rep;
}

static void on_replication_ended(void *opaque)
{
    protected_vm *p = opaque;

    /* The replicator stopped the VM: it was never protected. */
    if (replicator_setup_failed(p->rep))
        daemon_exit(p->d, EXITCODE_SETUP);
    /* ... or the secondary runs it now. */
    else if (replicator_fenced(p->rep))
        daemon_exit(p->d, EXITCODE_FENCED);
    else
        daemon_exit(p->d, exitcode_vm(p->v, daemon_signal(p->d)));
}

void protected_vm_on_stop(vm *v, void *arg)
{
    protected_vm *p = arg;
    vm_stop_info si;

    if (!p->rep) {              /* stopped before it was protectable */
        daemon_exit(p->d, exitcode_vm(v, daemon_signal(p->d)));
        return;
    }
    vm_get_stop_info(v, &si);
    /*
     * The guest ending (halt, fault) or an operator stopping it ends
     * replication with EOF; the monitor failing is this host's failure,
     * which the secondary is there to take over.
     */
    replicator_vm_stopped(p->rep, si.reason == VM_STOP_ERROR,
                          on_replication_ended, p);
}

void protected_vm_end(protected_vm *p)
{
    if (!p)
        return;
    replicator_free(p->rep);
    p->rep = NULL;
}

void protected_vm_free(protected_vm *p)
{
    if (!p)
        return;
    protected_vm_end(p);
    colo_free(p->colo);
    outqueue_free(p->out);
    free(p);
}
