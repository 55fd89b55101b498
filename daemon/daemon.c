/* daemon: see daemon.h. */
#include "daemon/daemon.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/exitcode.h"
#include "daemon/log.h"

struct daemon_process {
    daemon_opts o;
    struct event_base *base;
    struct event *sigs[2];
    control_server *ctl;
    vmctl *vc;
    metrics *metrics;
    vm *v;
    int signal;
    bool exiting;
    int status;
};

static const int signos[2] = { SIGINT, SIGTERM };

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    daemon_process *d = arg;

    (void)what;
    if (!d->signal)
        d->signal = (int)sig;
    if (d->o.on_signal)
        d->o.on_signal(d->o.opaque, (int)sig);
    else
        daemon_exit(d, EXITCODE_SIGNAL + (int)sig);
}

static void collect(void *opaque, metrics_writer *w)
{
    daemon_process *d = opaque;

    metrics_info(w, "ftvm_build_info", "the ftvm version this process runs "
                 "and its role", "version", FTVM_VERSION, "role",
                 d->o.role ? d->o.role : "run", NULL);
    vmctl_metrics(d->vc, w);
    if (d->o.collect)
        d->o.collect(d->o.opaque, w);
}

static struct event_base *new_base(void)
{
    /* The vCPU, checkpoint and replication threads wake the loop. */
    evthread_use_pthreads();
    /* Checkpoint intervals of a few ms need a timer finer than 1 ms. */
    struct event_config *cfg = event_config_new();
    if (!cfg)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

int daemon_new(daemon_process **out, const daemon_opts *o, char *err,
               size_t errlen)
{
    daemon_process *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    d->o = *o;
    d->o.vmctl.role = o->role;
    d->status = EXITCODE_ERROR;     /* a loop that ends by itself */
    /* A console reader, client or peer that goes away must not kill us. */
    signal(SIGPIPE, SIG_IGN);

    int r = -ENOMEM;
    d->base = new_base();
    if (!d->base) {
        snprintf(err, errlen, "cannot create the event loop");
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        d->sigs[i] = evsignal_new(d->base, signos[i], on_signal, d);
        if (!d->sigs[i] || evsignal_add(d->sigs[i], NULL) < 0) {
            snprintf(err, errlen, "cannot watch for signals");
            goto fail;
        }
    }
    if (o->control && (r = control_server_new(&d->ctl, d->base, o->control,
                                              o->role, err, errlen)) < 0)
        goto fail;
    r = vmctl_new(&d->vc, NULL, d->base, d->ctl, &d->o.vmctl, err, errlen);
    if (r < 0)
        goto fail;
    if (o->metrics && (r = metrics_new(&d->metrics, d->base, o->metrics,
                                       collect, d, err, errlen)) < 0)
        goto fail;
    *out = d;
    return 0;
fail:
    daemon_free(d);
    return r;
}

struct event_base *daemon_base(daemon_process *d)
{
    return d->base;
}

control_server *daemon_control(daemon_process *d)
{
    return d->ctl;
}

vmctl *daemon_vmctl(daemon_process *d)
{
    return d->vc;
}

/* The console's writer's word on dropped output, rate-limited there. */
static void console_warn(void *opaque, const char *msg)
{
    (void)opaque;
    log_msg("%s", msg);
}

void daemon_set_vm(daemon_process *d, vm *v)
{
    d->v = v;
    vmctl_set_vm(d->vc, v);
    if (v && vm_console(v))
        conout_set_warn(vm_console(v), console_warn, NULL);
}

int daemon_signal(const daemon_process *d)
{
    return d->signal;
}

void daemon_exit(daemon_process *d, int status)
{
    d->status = status;
    d->exiting = true;
    event_base_loopexit(d->base, NULL);
}

int daemon_run(daemon_process *d)
{
    /* A loop starting clears a loopexit asked for before it. */
    if (!d->exiting)
        event_base_dispatch(d->base);
    /* A checkpoint being written ends (and fails) before the VM goes. */
    while (vmctl_busy(d->vc))
        event_base_loop(d->base, EVLOOP_ONCE);
    return d->status;
}

void daemon_free(daemon_process *d)
{
    if (!d)
        return;
    metrics_free(d->metrics);
    control_server_free(d->ctl);
    vmctl_free(d->vc);
    /* The VM's events live on the base: free the VM first. */
    vm_destroy(d->v);
    for (int i = 0; i < 2; i++)
        if (d->sigs[i])
            event_free(d->sigs[i]);
    if (d->base)
        event_base_free(d->base);
    free(d);
}
