/* survivor: see survivor.h. */
#include "secondary/survivor.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/exitcode.h"
#include "daemon/log.h"
#include "primary/outqueue.h"
#include "primary/primary_ctl.h"
#include "primary/protected_vm.h"
#include "witness/pool.h"

struct survivor {
    daemon_process *d;
    protected_vm *pv;
    bool live;
    char error[640];            /* why survivor_start could not */
};

int survivor_new(survivor **out, daemon_process *d)
{
    survivor *sv = calloc(1, sizeof(*sv));
    if (!sv || protected_vm_new(&sv->pv) < 0) {
        free(sv);
        return -ENOMEM;
    }
    sv->d = d;
    *out = sv;
    return 0;
}

replica_output survivor_output(survivor *sv)
{
    vm_config cfg = { 0 };
    protected_vm_route(sv->pv, &cfg);
    return (replica_output){ .console_fn = cfg.console_fn,
                             .console_opaque = cfg.console_opaque,
                             .transmit_fn = cfg.transmit_fn,
                             .transmit_opaque = cfg.transmit_opaque };
}

void survivor_vm(survivor *sv, vm *v)
{
    protected_vm_use(sv->pv, v);
}

void survivor_opts(const secondary_opts *o, const vmshape *shape,
                   replicator_opts *out)
{
    *out = (replicator_opts){
        .secondary = NULL,
        .shape = *shape,
        .timing = { .heartbeat_ns = o->heartbeat_ns,
                    .failure_ns = o->failure_ns,
                    .interval_ns = o->interval_ns,
                    .stall_ns = o->stall_ns,
                    .running = true },
        .mode = o->mode,
        .compare_timeout_ns = o->compare_timeout_ns,
        .tls = { .creds = o->tls.creds, .insecure = o->tls.insecure },
        .witness = o->witness,
        .witness_timeout_ns = o->witness_timeout_ns,
        .witness_tls = o->witness_tls,
        .standby_pool = !o->standby_pool ? NULL
                        : o->pool ? o->pool : POOL_DEFAULT_NAME,
    };
}

static void cannot_protect(survivor *sv, const char *err)
{
    snprintf(sv->error, sizeof(sv->error), "this VM cannot be protected: "
             "%.500s", err);
    log_msg("%s; it runs on unprotected", sv->error);
}

/* Unprotected until a secondary comes (protect, or the standby pool). */
static void start_replicator(void *opaque)
{
    survivor *sv = opaque;
    char err[sizeof(sv->error) - 64];
    if (replicator_start(protected_vm_replicator(sv->pv), err,
                         sizeof(err)) < 0)
        cannot_protect(sv, err);
}

void survivor_start(survivor *sv, const secondary_opts *o,
                    const vmshape *shape)
{
    replicator_opts ro;
    char err[sizeof(sv->error) - 64];
    survivor_opts(o, shape, &ro);
    int r = protected_vm_protect(sv->pv, sv->d, &ro, err, sizeof(err));
    sv->live = r == 0;
    if (r < 0) {
        cannot_protect(sv, err);
        return;
    }
    /*
     * With a witness, the next pairings start above every generation it
     * decided for this VM, as a primary's first does: one decided since
     * this survivor's own (by a pairing it never saw) is never reused.
     */
    if (!o->witness)
        start_replicator(sv);
    else if (replicator_read_generations(protected_vm_replicator(sv->pv),
                                         start_replicator, sv, err,
                                         sizeof(err)) < 0)
        cannot_protect(sv, err);
}

void survivor_on_stop(vm *v, void *arg)
{
    survivor *sv = arg;
    if (sv->live)
        protected_vm_on_stop(v, sv->pv);
    else
        daemon_exit(sv->d, exitcode_vm(v, daemon_signal(sv->d)));
}

bool survivor_live(const survivor *sv)
{
    return sv->live;
}

/* protect's and set's refusal unless the VM runs here, protectable. */
static int refuse(const survivor *sv, const char *cmd, const char *state,
                  char *err, size_t errlen)
{
    if (sv->error[0]) {
        snprintf(err, errlen, "%s", sv->error);
        return -ENOTSUP;
    }
    if (!sv->live) {
        snprintf(err, errlen, "this secondary is not running the VM (%s): "
                 "%s works on a primary, or on a secondary once it has "
                 "taken over", state, cmd);
        return -ENOTSUP;
    }
    return 0;
}

int survivor_protect(survivor *sv, const char *state, json_t *args,
                     char *err, size_t errlen)
{
    int rc = refuse(sv, "protect", state, err, errlen);
    if (rc < 0)
        return rc;
    return primary_ctl_protect(protected_vm_replicator(sv->pv), "protect",
                               args, err, errlen);
}

int survivor_set(survivor *sv, const char *state, json_t *args, char *err,
                 size_t errlen)
{
    int rc = refuse(sv, "set", state, err, errlen);
    if (rc < 0)
        return rc;
    const char *key = json_string_value(json_object_get(args, "key"));
    if (key && strcmp(key, "reconnect") == 0) {
        snprintf(err, errlen, "set reconnect: a secondary that took over "
                 "has no --secondary to go back to; protect HOST:PORT "
                 "brings one up");
        return -EINVAL;
    }
    return primary_ctl_set(protected_vm_replicator(sv->pv), args, err,
                           errlen);
}

int survivor_stop(survivor *sv, char *err, size_t errlen)
{
    if (!sv->live)
        return -ENOENT;
    return replicator_stop(protected_vm_replicator(sv->pv), err, errlen);
}

void survivor_status(survivor *sv, json_t *status)
{
    if (!sv->live)
        return;
    json_t *p = json_object();
    if (!p)
        return;
    primary_ctl_status(protected_vm_replicator(sv->pv), p);
    json_object_set_new(status, "protection", p);
}

void survivor_metrics(survivor *sv, metrics_writer *w)
{
    if (sv->live)
        primary_ctl_metrics(protected_vm_replicator(sv->pv), w);
}

int survivor_may_save(survivor *sv, char *err, size_t errlen)
{
    if (!sv->live)
        return 0;
    return replicator_may_save(protected_vm_replicator(sv->pv), err, errlen);
}

void survivor_end(survivor *sv)
{
    if (sv)
        protected_vm_end(sv->pv);
}

void survivor_free(survivor *sv)
{
    if (!sv)
        return;
    protected_vm_free(sv->pv);
    free(sv);
}
