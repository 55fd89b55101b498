/* vmctl: see vmctl.h. */
#include "daemon/vmctl.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/log.h"
#include "vm/mono.h"
#include "vm/snapshot.h"

struct vmctl {
    vm *v;
    struct event_base *base;
    vmctl_opts o;
    vmctl_hooks hooks;
    struct event *timer;
    uint64_t started_ns;

    bool user_paused;       /* the operator holds a pause (vm_pause) */
    snapshot_job *job;      /* the checkpoint being written, or NULL */
    control_req *job_req;   /* who asked for it, if anyone */
    uint64_t ok, failed;
    snapshot_stats last;
    char last_path[4096];
    char last_error[512];
};

static const char *state_name(vm_state s)
{
    switch (s) {
    case VM_CREATED: return "created";
    case VM_RUNNING: return "running";
    case VM_PAUSED: return "paused";
    case VM_STOPPED: return "stopped";
    }
    return "?";
}

static uint64_t ram_bytes(vm *v)
{
    size_t nb;
    ram_block *b = vm_ram_blocks(v, &nb);
    uint64_t mem = 0;
    for (size_t i = 0; i < nb; i++)
        mem += b[i].length;
    return mem;
}

static json_t *snap_json(const snapshot_stats *st, const char *path)
{
    json_t *j = json_pack("{s:s, s:I, s:f, s:f, s:I, s:I, s:I}",
                     "path", path,
                     "bytes", (json_int_t)st->bytes,
                     "total_ms", st->total_ns / 1e6,
                     "pause_ms", st->pause_ns / 1e6,
                     "live_passes", (json_int_t)st->live_passes,
                     "live_pages", (json_int_t)st->live_pages,
                     "final_pages", (json_int_t)st->final_pages);
    /* A delta's base: the file restore needs beside it. */
    if (j && st->disk_base[0])
        json_object_set_new(j, "disk_base", json_string(st->disk_base));
    return j;
}

static void on_snap_done(void *opaque, int rc, const char *path,
                         const char *err, const snapshot_stats *st)
{
    vmctl *c = opaque;
    control_req *req = c->job_req;
    c->job = NULL;
    c->job_req = NULL;
    if (rc < 0) {
        c->failed++;
        snprintf(c->last_error, sizeof(c->last_error), "%s", err);
        log_msg("checkpoint failed: %s", err);
        if (req)
            control_reply_error(req, rc, err);
        return;
    }
    c->ok++;
    c->last = *st;
    snprintf(c->last_path, sizeof(c->last_path), "%s", path);
    log_msg("checkpoint %s: %.1f MiB in %.0f ms, guest paused %.2f ms%s%s",
            path, st->bytes / 1048576.0, st->total_ns / 1e6,
            st->pause_ns / 1e6, st->disk_base[0] ? ", disk on " : "",
            st->disk_base);
    if (req)
        control_reply(req, snap_json(st, path));
}

static int no_vm(char *err, size_t errlen)
{
    snprintf(err, errlen, "there is no VM yet");
    return -ENODEV;
}

static int start_snap(vmctl *c, snapshot_target kind, const char *path,
                      control_req *req, char *err, size_t errlen)
{
    if (c->job) {
        snprintf(err, errlen, "a checkpoint is already being written");
        return -EBUSY;
    }
    if (!c->v)
        return no_vm(err, errlen);
    if (c->hooks.can_save) {
        int r = c->hooks.can_save(c->hooks.opaque, err, errlen);
        if (r < 0)
            return r;
    }
    snapshot_req rq = {
        .kind = kind,
        .path = path,
        .keep = kind == SNAPSHOT_TO_DIR ? c->o.keep : 0,
        .gate = &c->hooks.gate,
    };
    int r = snapshot_start(&c->job, c->v, c->base, &rq, on_snap_done, c, err,
                           errlen);
    if (r == 0) {
        c->job_req = req;
    } else {
        c->failed++;
        snprintf(c->last_error, sizeof(c->last_error), "%s", err);
    }
    return r;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    vmctl *c = arg;
    char err[512];
    if (c->job || !c->v || vm_get_state(c->v) == VM_STOPPED)
        return;
    /* Not yet a VM worth saving (a secondary before its first checkpoint). */
    if (c->hooks.can_save &&
        c->hooks.can_save(c->hooks.opaque, err, sizeof(err)) < 0)
        return;
    if (start_snap(c, SNAPSHOT_TO_DIR, c->o.checkpoint_dir, NULL, err,
                   sizeof(err)) < 0)
        log_msg("checkpoint failed: %s", err);
}

/* ---- control commands ---- */

json_t *vmctl_status(vmctl *c)
{
    const char *role = c->o.role ? c->o.role : "run";
    if (!c->v) {
        json_t *r = json_pack("{s:s, s:f}", "role", role, "uptime_s",
                              (mono_ns() - c->started_ns) / 1e9);
        if (c->hooks.status)
            c->hooks.status(c->hooks.opaque, r);
        return r;
    }
    vm_pause_stats ps;
    vm_get_pause_stats(c->v, &ps);
    json_t *r = json_pack(
        "{s:s, s:s, s:I, s:f, s:f}",
        "role", role, "state", state_name(vm_get_state(c->v)),
        "mem_bytes", (json_int_t)ram_bytes(c->v),
        "uptime_s", (mono_ns() - c->started_ns) / 1e9,
        "guest_clock_s", vm_guest_clock(c->v) / 1e9);
    json_object_set_new(r, "pause", json_pack(
        "{s:I, s:f, s:f}", "count", (json_int_t)ps.pauses,
        "last_ms", ps.last_total_ns / 1e6, "max_ms", ps.max_total_ns / 1e6));
    json_t *ck = json_pack("{s:I, s:I, s:b}", "written", (json_int_t)c->ok,
                           "failed", (json_int_t)c->failed,
                           "in_progress", c->job != NULL);
    if (c->o.checkpoint_dir) {
        json_object_set_new(ck, "dir", json_string(c->o.checkpoint_dir));
        json_object_set_new(ck, "every_s",
                            json_real(c->o.checkpoint_every_ns / 1e9));
        json_object_set_new(ck, "keep", json_integer(c->o.keep));
    }
    if (c->ok)
        json_object_set_new(ck, "last", snap_json(&c->last, c->last_path));
    if (c->last_error[0])
        json_object_set_new(ck, "last_error", json_string(c->last_error));
    json_object_set_new(r, "checkpoints", ck);
    conout *con = vm_console(c->v);
    if (con) {
        conout_stats cs;
        conout_get_stats(con, &cs);
        json_object_set_new(r, "console", json_pack(
            "{s:I, s:I, s:I}",
            "written_bytes", (json_int_t)cs.written_bytes,
            "dropped_bytes", (json_int_t)cs.dropped_bytes,
            "buffered_bytes", (json_int_t)cs.buffered_bytes));
    }
    net_dev *n = vm_net(c->v);
    if (n) {
        net_stats ns;
        net_get_stats(n, &ns);
        json_object_set_new(r, "net", json_pack(
            "{s:I, s:I, s:I, s:I}",
            "rx_frames", (json_int_t)ns.rx_frames,
            "rx_dropped", (json_int_t)ns.rx_dropped,
            "tx_frames", (json_int_t)ns.tx_frames,
            "tx_dropped", (json_int_t)ns.tx_dropped));
    }
    vm_stop_info si;
    vm_get_stop_info(c->v, &si);
    if (si.reason != VM_STOP_NONE)
        json_object_set_new(r, "stopped", json_string(si.msg));
    if (c->hooks.status)
        c->hooks.status(c->hooks.opaque, r);
    return r;
}

void vmctl_metrics(vmctl *c, metrics_writer *w)
{
    const char *vm_states[] = {
        state_name(VM_CREATED), state_name(VM_RUNNING),
        state_name(VM_PAUSED), state_name(VM_STOPPED),
    };
    metrics_gauge(w, "ftvm_uptime_seconds", "time since the process started",
                  (mono_ns() - c->started_ns) / 1e9);
    metrics_counter(w, "ftvm_disk_checkpoints_written_total",
                    "checkpoints written to disk (save, checkpoint, "
                    "--checkpoint-every)", (double)c->ok);
    metrics_counter(w, "ftvm_disk_checkpoints_failed_total",
                    "checkpoints to disk that failed",
                    (double)c->failed);
    metrics_gauge(w, "ftvm_disk_checkpoint_in_progress",
                  "1 while a checkpoint to disk is being written",
                  c->job != NULL);
    if (c->ok) {
        metrics_gauge(w, "ftvm_disk_checkpoint_last_bytes",
                      "size of the last checkpoint written to disk",
                      (double)c->last.bytes);
        metrics_gauge(w, "ftvm_disk_checkpoint_last_duration_seconds",
                      "the last checkpoint to disk, start to file renamed",
                      c->last.total_ns / 1e9);
        metrics_gauge(w, "ftvm_disk_checkpoint_last_pause_seconds",
                      "how long the last checkpoint to disk paused the "
                      "guest", c->last.pause_ns / 1e9);
    }
    if (!c->v)
        return;
    metrics_state(w, "ftvm_vm_state", "the VM's state", vm_states,
                  sizeof(vm_states) / sizeof(vm_states[0]),
                  state_name(vm_get_state(c->v)));
    metrics_gauge(w, "ftvm_vm_memory_bytes", "the guest's RAM",
                  (double)ram_bytes(c->v));
    vm_pause_stats ps;
    vm_get_pause_stats(c->v, &ps);
    metrics_counter(w, "ftvm_vm_pauses_total",
                    "times the vCPUs were stopped (checkpoints, pause)",
                    (double)ps.pauses);
    metrics_gauge(w, "ftvm_vm_last_pause_seconds",
                  "the last pause, from the request until every vCPU was "
                  "parked with its state read", ps.last_total_ns / 1e9);
    metrics_gauge(w, "ftvm_vm_longest_pause_seconds",
                  "the longest such pause since the VM started",
                  ps.max_total_ns / 1e9);
    conout *con = vm_console(c->v);
    if (con) {
        conout_stats cs;
        conout_get_stats(con, &cs);
        metrics_counter(w, "ftvm_console_written_bytes_total",
                        "console bytes of the guest written to stdout",
                        (double)cs.written_bytes);
        metrics_counter(w, "ftvm_console_dropped_bytes_total",
                        "console bytes of the guest dropped: stdout not "
                        "read fast enough (its buffer full), or failed",
                        (double)cs.dropped_bytes);
        metrics_gauge(w, "ftvm_console_buffered_bytes",
                      "console bytes waiting for stdout to take them",
                      (double)cs.buffered_bytes);
    }
    net_dev *n = vm_net(c->v);
    if (!n)
        return;
    net_stats ns;
    net_get_stats(n, &ns);
    metrics_counter(w, "ftvm_net_receive_frames_total",
                    "frames queued for the guest's NIC", (double)ns.rx_frames);
    metrics_counter(w, "ftvm_net_receive_bytes_total",
                    "bytes of the frames queued for the guest's NIC",
                    (double)ns.rx_bytes);
    metrics_counter(w, "ftvm_net_receive_drop_total",
                    "frames for the guest dropped: its receive queue full, "
                    "or empty or oversize", (double)ns.rx_dropped);
    metrics_counter(w, "ftvm_net_transmit_frames_total",
                    "frames from the guest written to the network backend",
                    (double)ns.tx_frames);
    metrics_counter(w, "ftvm_net_transmit_bytes_total",
                    "bytes of the frames written to the network backend",
                    (double)ns.tx_bytes);
    metrics_counter(w, "ftvm_net_transmit_drop_total",
                    "frames from the guest the network backend refused",
                    (double)ns.tx_dropped);
}

static control_outcome cmd_status(void *opaque, control_req *req, json_t *args,
                                  json_t **result, int *rc, char *err,
                                  size_t errlen)
{
    (void)req; (void)args; (void)rc; (void)err; (void)errlen;
    *result = vmctl_status(opaque);
    return CONTROL_DONE;
}

static control_outcome cmd_pause(void *opaque, control_req *req, json_t *args,
                                 json_t **result, int *rc, char *err,
                                 size_t errlen)
{
    (void)req; (void)args; (void)result;
    vmctl *c = opaque;
    if (!c->v) {
        *rc = no_vm(err, errlen);
        return CONTROL_DONE;
    }
    if (c->user_paused || vm_get_state(c->v) == VM_STOPPED) {
        *rc = -EINVAL;
        snprintf(err, errlen, "the VM is %s", c->user_paused ? "already "
                 "paused" : "stopped");
        return CONTROL_DONE;
    }
    *rc = vm_pause(c->v, err, errlen);
    if (*rc == 0)
        c->user_paused = true;
    return CONTROL_DONE;
}

static control_outcome cmd_resume(void *opaque, control_req *req, json_t *args,
                                  json_t **result, int *rc, char *err,
                                  size_t errlen)
{
    (void)req; (void)args; (void)result;
    vmctl *c = opaque;
    if (!c->v) {
        *rc = no_vm(err, errlen);
    } else if (!c->user_paused) {
        *rc = -EINVAL;
        snprintf(err, errlen, "the VM was not paused with pause");
    } else {
        *rc = vm_resume(c->v, err, errlen);
        if (*rc == 0)
            c->user_paused = false;
    }
    return CONTROL_DONE;
}

static control_outcome cmd_save(void *opaque, control_req *req, json_t *args,
                                json_t **result, int *rc, char *err,
                                size_t errlen)
{
    (void)result;
    vmctl *c = opaque;
    const char *file = json_string_value(json_object_get(args, "file"));
    if (!file || !*file) {
        *rc = -EINVAL;
        snprintf(err, errlen, "save needs a file: save FILE");
        return CONTROL_DONE;
    }
    /* This process's working directory is nobody's business but its own. */
    if (file[0] != '/') {
        *rc = -EINVAL;
        snprintf(err, errlen, "save: '%s' is not an absolute path (ftvmctl "
                 "makes FILE absolute; a raw client must)", file);
        return CONTROL_DONE;
    }
    *rc = start_snap(c, SNAPSHOT_TO_FILE, file, req, err, errlen);
    return *rc < 0 ? CONTROL_DONE : CONTROL_DEFERRED;
}

static control_outcome cmd_checkpoint(void *opaque, control_req *req,
                                      json_t *args, json_t **result, int *rc,
                                      char *err, size_t errlen)
{
    (void)args; (void)result;
    vmctl *c = opaque;
    if (!c->o.checkpoint_dir) {
        *rc = -EINVAL;
        snprintf(err, errlen, "no --checkpoint-dir was given; use save FILE");
        return CONTROL_DONE;
    }
    *rc =
        start_snap(c, SNAPSHOT_TO_DIR, c->o.checkpoint_dir, req, err, errlen);
    return *rc < 0 ? CONTROL_DONE : CONTROL_DEFERRED;
}

static control_outcome cmd_quit(void *opaque, control_req *req, json_t *args,
                                json_t **result, int *rc, char *err,
                                size_t errlen)
{
    (void)req; (void)args; (void)result; (void)rc; (void)err; (void)errlen;
    vmctl *c = opaque;
    if (c->hooks.quit)
        c->hooks.quit(c->hooks.opaque);
    else if (c->v)
        vm_stop(c->v);
    return CONTROL_DONE;
}

int vmctl_new(vmctl **out, vm *v, struct event_base *base, control_server *ctl,
              const vmctl_opts *o, char *err, size_t errlen)
{
    vmctl *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->v = v;
    c->base = base;
    c->o = *o;
    if (o->hooks)
        c->hooks = *o->hooks;
    if (c->o.keep < 1)
        c->o.keep = 1;
    c->started_ns = mono_ns();
    if (ctl) {
        control_register(ctl, "status", "state, pauses, checkpoints, network",
                         cmd_status, c);
        control_register(ctl, "pause", "take the vCPUs out of the guest",
                         cmd_pause, c);
        control_register(ctl, "resume", "run the guest again", cmd_resume, c);
        control_register(ctl, "save",
                         "save FILE: a complete checkpoint to FILE", cmd_save,
                         c);
        control_register(ctl, "checkpoint",
                         "a checkpoint into --checkpoint-dir "
                         "now",
                         cmd_checkpoint, c);
        control_register(ctl, "quit", "stop the VM and exit", cmd_quit, c);
    }
    if (o->checkpoint_dir && o->checkpoint_every_ns) {
        c->timer = event_new(base, -1, EV_PERSIST, on_timer, c);
        struct timeval tv = mono_tv(o->checkpoint_every_ns);
        if (!c->timer || event_add(c->timer, &tv) < 0) {
            snprintf(err, errlen, "cannot start the checkpoint timer");
            vmctl_free(c);
            return -ENOMEM;
        }
    }
    *out = c;
    return 0;
}

void vmctl_set_vm(vmctl *c, vm *v)
{
    c->v = v;
}

bool vmctl_busy(const vmctl *c)
{
    return c->job != NULL;
}

void vmctl_free(vmctl *c)
{
    if (!c)
        return;
    if (c->timer)
        event_free(c->timer);
    free(c);
}
