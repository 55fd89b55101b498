/* primary_ctl: see primary_ctl.h; docs/replication.md lists the fields. */
#include "primary/primary_ctl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/parse.h"

static double ms(uint64_t ns)
{
    return ns / 1e6;
}

static json_t *timing(const sampler_summary *s)
{
    return json_pack("{s:f, s:f, s:f, s:f}", "last", ms(s->last),
                     "p50", ms(s->p50), "p99", ms(s->p99), "max", ms(s->max));
}

static json_t *counts(const sampler_summary *s)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "last", (json_int_t)s->last,
                     "p50", (json_int_t)s->p50, "p99", (json_int_t)s->p99,
                     "max", (json_int_t)s->max);
}

void primary_ctl_status(replicator *rep, json_t *r)
{
    replicator_status st;
    replicator_get_status(rep, &st);
    /* vmctl's "state" is the VM's; a primary's is replication's. */
    json_t *vs = json_object_get(r, "state");
    if (vs)
        json_object_set(r, "vm_state", vs);
    /* Its "checkpoints" are to disk (save FILE). */
    json_t *disk = json_object_get(r, "checkpoints");
    if (disk) {
        json_object_set(r, "disk_checkpoints", disk);
        json_object_del(r, "checkpoints");
    }
    json_object_set_new(r, "state",
                        json_string(protection_state_name(st.state)));
    json_object_set_new(r, "secondary", json_string(st.secondary));
    json_object_set_new(r, "vm_name", json_string(st.pair.name));
    char pair[96];
    json_object_set_new(r, "pairing",
                        json_string(pairing_str(&st.pair, pair, sizeof(pair))));
    json_object_set_new(r, "secondaries", json_integer(st.secondaries));
    json_object_set_new(r, "witness", replicator_witness_status(rep));
    json_t *pool = replicator_pool_status(rep);
    if (pool)
        json_object_set_new(r, "standby_pool", pool);
    json_object_set_new(r, "checkpoint", json_pack(
        "{s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:f}",
        "interval_ms", ms(st.interval_ns),
        "taken", (json_int_t)st.taken, "acked", (json_int_t)st.acked,
        "last_id", (json_int_t)st.last_id,
        "last_acked", (json_int_t)st.last_acked,
        "in_flight", (json_int_t)st.in_flight,
        "full", (json_int_t)st.full, "rate_per_s", st.rate));
    json_t *causes = json_object();
    for (int c = 0; c < COLO_CAUSE_N; c++)
        json_object_set_new(causes, colo_cause_name(c),
                            json_integer((json_int_t)st.causes[c]));
    json_object_set_new(json_object_get(r, "checkpoint"), "causes", causes);
    json_object_set_new(r, "mode", json_string(colo_mode_name(st.mode)));
    if (st.mode == COLO_MODE_COLO)
        json_object_set_new(r, "colo", json_pack(
            "{s:f, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
            "compare_timeout_ms", ms(st.compare_timeout_ns),
            "epoch", (json_int_t)st.colo.epoch,
            "diverged", st.colo.diverged,
            "pending_primary_bytes", (json_int_t)st.colo.pending_primary,
            "pending_secondary_bytes",
            (json_int_t)st.colo.pending_secondary,
            "matched_bytes", (json_int_t)st.colo.matched_bytes,
            "released_bytes", (json_int_t)st.colo.released_bytes,
            "secondary_bytes", (json_int_t)st.colo.secondary_bytes,
            "ignored_bytes", (json_int_t)st.colo.ignored_bytes,
            "mismatches", (json_int_t)st.colo.mismatches,
            "timeouts", (json_int_t)st.colo.timeouts));
    if (st.mode == COLO_MODE_COLO && replicator_colonet(rep))
        json_object_set_new(json_object_get(r, "colo"), "net",
                            colonet_status(replicator_colonet(rep)));
    json_object_set_new(r, "pause_ms", timing(&st.pause_ns));
    json_object_set_new(r, "ack_ms", timing(&st.ack_ns));
    json_object_set_new(r, "dirty_pages", counts(&st.pages));
    json_t *bytes = counts(&st.bytes);
    json_object_set_new(bytes, "total", json_integer(st.bytes_total));
    json_object_set_new(r, "package_bytes", bytes);
    json_object_set_new(r, "nacks", json_integer(st.nacks));
    json_object_set_new(r, "foreign_answers",
                        json_integer(st.foreign_answers));
    const outqueue_stats *o = &st.output;
    json_t *out = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:b}",
        "held_bytes", (json_int_t)(o->held_console_bytes +
                                   o->held_frame_bytes),
        "held_frames", (json_int_t)o->held_frames,
        "console_held_bytes", (json_int_t)o->held_console_bytes,
        "console_written_bytes", (json_int_t)o->console_written_bytes,
        "console_dropped_bytes", (json_int_t)o->console_dropped_bytes,
        "frames_refused", (json_int_t)o->frames_refused,
        "holding", o->holding);
    json_object_set_new(out, "commit_delay_ms", timing(&o->delay_ns));
    json_object_set_new(r, "output", out);
    /* The NIC holds nothing itself: its held frames are the queue's. */
    json_t *net = json_object_get(r, "net");
    if (net) {
        json_object_set_new(net, "held_frames",
                            json_integer((json_int_t)o->held_frames));
        json_object_set_new(net, "held_bytes",
                            json_integer((json_int_t)o->held_frame_bytes));
    }
    json_object_set_new(r, "heartbeat", json_pack(
        "{s:f, s:f, s:f, s:I, s:I, s:I}",
        "interval_ms", ms(st.heartbeat_ns),
        "failure_timeout_ms", ms(st.failure_ns),
        "last_heard_ms", ms(st.last_heard_ns),
        "pings", (json_int_t)st.pings, "pongs", (json_int_t)st.pongs,
        "received", (json_int_t)st.heartbeats));
    json_object_set_new(r, "reconnect_s", json_real(st.reconnect_ns / 1e9));
    json_object_set_new(r, "bringup", json_pack(
        "{s:I, s:I, s:I, s:f}", "bytes", (json_int_t)st.bringup.bytes,
        "passes", (json_int_t)st.bringup.passes,
        "pages", (json_int_t)st.bringup.pages, "ms", ms(st.bringup.ns)));
    json_object_set_new(r, "last_error", json_string(st.last_error));
    struct disk *img = vm_disk(replicator_vm(rep));
    if (img) {
        block_save_stats ds;
        vm_get_disk_stats(replicator_vm(rep), &ds);
        json_object_set_new(r, "disk", json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:I}", "path", disk_path(img),
            "bytes", (json_int_t)disk_size(img),
            "dirty_chunks", (json_int_t)disk_dirty_count(img),
            "data_chunks_sent", (json_int_t)ds.data_chunks,
            "zero_chunks_sent", (json_int_t)ds.zero_chunks,
            "bytes_sent", (json_int_t)ds.bytes));
    }
}

static void checkpoint_done(void *opaque, int rc, uint64_t id,
                            const char *err)
{
    control_req *req = opaque;
    if (rc < 0)
        control_reply_error(req, rc, err);
    else
        control_reply(req, json_pack("{s:I}", "id", (json_int_t)id));
}

static control_outcome cmd_checkpoint(void *opaque, control_req *req,
                                      json_t *args, json_t **result, int *rc,
                                      char *err, size_t errlen)
{
    (void)args; (void)result;
    *rc = replicator_checkpoint(opaque, checkpoint_done, req, err, errlen);
    return *rc < 0 ? CONTROL_DONE : CONTROL_DEFERRED;
}

int primary_ctl_set(replicator *rep, json_t *args, char *err,
                    size_t errlen)
{
    const char *key = json_string_value(json_object_get(args, "key"));
    json_t *jv = json_object_get(args, "value");
    char value[64];
    if (json_is_integer(jv))
        snprintf(value, sizeof(value), "%lld",
                 (long long)json_integer_value(jv));
    else
        snprintf(value, sizeof(value), "%s",
                 json_is_string(jv) ? json_string_value(jv) : "");
    uint64_t ns = 0;
    if (!key || !value[0]) {
        snprintf(err, errlen, "set needs a key and a value: set "
                 "checkpoint-interval 20ms");
        return -EINVAL;
    }
    bool off = strcmp(value, "0") == 0 || strcmp(value, "off") == 0;
    if (!(off && strcmp(key, "reconnect") == 0) &&
        parse_duration(value, &ns) < 0) {
        snprintf(err, errlen, "set %s: '%s' is not a time such as 20ms or "
                 "2s", key, value);
        return -EINVAL;
    }
    return replicator_set(rep, key, ns, err, errlen);
}

static control_outcome cmd_set(void *opaque, control_req *req, json_t *args,
                               json_t **result, int *rc, char *err,
                               size_t errlen)
{
    (void)req; (void)result;
    *rc = primary_ctl_set(opaque, args, err, errlen);
    return CONTROL_DONE;
}

static control_outcome cmd_stop(void *opaque, control_req *req, json_t *args,
                                json_t **result, int *rc, char *err,
                                size_t errlen)
{
    (void)req; (void)args; (void)result;
    *rc = replicator_stop(opaque, err, errlen);
    return CONTROL_DONE;
}

int primary_ctl_protect(replicator *rep, const char *cmd, json_t *args,
                        char *err, size_t errlen)
{
    const char *addr = json_string_value(json_object_get(args, "address"));
    if (!addr || !*addr) {
        snprintf(err, errlen, "%s needs an address: %s HOST:PORT", cmd, cmd);
        return -EINVAL;
    }
    return replicator_attach(rep, addr, err, errlen);
}

static control_outcome cmd_protect(void *opaque, control_req *req,
                                   json_t *args, json_t **result, int *rc,
                                   char *err, size_t errlen)
{
    (void)req; (void)result;
    *rc = primary_ctl_protect(opaque, "protect", args, err, errlen);
    return CONTROL_DONE;
}

static control_outcome cmd_attach(void *opaque, control_req *req, json_t *args,
                                  json_t **result, int *rc, char *err,
                                  size_t errlen)
{
    (void)req; (void)result;
    *rc = primary_ctl_protect(opaque, "attach-secondary", args, err, errlen);
    return CONTROL_DONE;
}

int primary_ctl_register(control_server *ctl, replicator *rep)
{
    int r = control_register(ctl, "checkpoint",
                             "a replication checkpoint now; "
                             "answers once the secondary has it",
                             cmd_checkpoint, rep);
    if (r == 0)
        r = control_register(ctl, "set",
                             "set KEY VALUE: checkpoint-interval, "
                             "heartbeat, failure-timeout, reconnect",
                             cmd_set, rep);
    if (r == 0)
        r = control_register(ctl, "stop-replication",
                             "EOF to the secondary; "
                             "run on unprotected",
                             cmd_stop, rep);
    if (r == 0)
        r = control_register(ctl, "attach-secondary",
                             "attach-secondary "
                             "HOST:PORT: protect's older name",
                             cmd_attach, rep);
    if (r == 0)
        r = control_register(ctl, "protect",
                             "protect HOST:PORT: bring a new secondary up "
                             "(degraded or stopped only)",
                             cmd_protect, rep);
    return r;
}

void primary_ctl_metrics(replicator *rep, metrics_writer *w)
{
    if (!rep)
        return;
    replicator_status st;
    replicator_get_status(rep, &st);
    const char *states[] = {
        protection_state_name(PROTECTION_SETUP),
        protection_state_name(PROTECTION_ACTIVE),
        protection_state_name(PROTECTION_DEGRADED),
        protection_state_name(PROTECTION_STOPPED),
        protection_state_name(PROTECTION_CLAIMING),
        protection_state_name(PROTECTION_FENCED),
        protection_state_name(PROTECTION_SETUP_FAILED),
    };
    metrics_state(w, "ftvm_primary_state",
                  "replication: setup, active, degraded (running "
                  "unprotected), stopped, claiming (asking the witness), "
                  "fenced or setup-failed", states,
                  sizeof(states) / sizeof(states[0]),
                  protection_state_name(st.state));
    metrics_counter(w, "ftvm_primary_secondaries_total",
                    "secondaries brought up, or tried", st.secondaries);
    metrics_counter(w, "ftvm_primary_checkpoints_taken_total",
                    "checkpoints taken and sent, all secondaries", st.taken);
    metrics_counter(w, "ftvm_primary_checkpoints_acked_total",
                    "checkpoints a secondary acknowledged", st.acked);
    metrics_counter(w, "ftvm_primary_checkpoints_full_total",
                    "checkpoints sent in full after a NACK or an error",
                    st.full);
    metrics_counter(w, "ftvm_primary_nacks_total",
                    "packages a secondary refused", st.nacks);
    metrics_gauge(w, "ftvm_primary_checkpoints_in_flight",
                  "checkpoints sent and not yet acknowledged", st.in_flight);
    metrics_gauge(w, "ftvm_primary_last_checkpoint_id",
                  "the last checkpoint sent to this secondary", st.last_id);
    metrics_gauge(w, "ftvm_primary_last_acked_checkpoint_id",
                  "the last checkpoint this secondary acknowledged",
                  st.last_acked);
    metrics_gauge(w, "ftvm_primary_checkpoint_interval_seconds",
                  "time between checkpoints", st.interval_ns / 1e9);
    metrics_histogram(w, "ftvm_primary_checkpoint_pause_seconds",
                      "how long each checkpoint paused the guest",
                      &st.pause_ns);
    metrics_histogram(w, "ftvm_primary_checkpoint_ack_seconds",
                      "from a package sent to its ACK", &st.ack_ns);
    metrics_histogram(w, "ftvm_primary_checkpoint_dirty_pages",
                      "RAM pages a checkpoint carried", &st.pages);
    metrics_histogram(w, "ftvm_primary_package_size_bytes",
                      "size of each checkpoint package", &st.bytes);
    metrics_counter(w, "ftvm_primary_package_bytes_total",
                    "bytes of checkpoint packages sent, all secondaries",
                    st.bytes_total);
    const outqueue_stats *o = &st.output;
    metrics_gauge(w, "ftvm_primary_output_holding",
                  "1 while output waits for the checkpoint that covers it",
                  o->holding);
    metrics_gauge(w, "ftvm_primary_output_held_console_bytes",
                  "console bytes held for output commit",
                  o->held_console_bytes);
    metrics_gauge(w, "ftvm_primary_output_held_frames",
                  "network frames held for output commit", o->held_frames);
    metrics_gauge(w, "ftvm_primary_output_held_frame_bytes",
                  "bytes of the network frames held", o->held_frame_bytes);
    metrics_counter(w, "ftvm_primary_output_console_written_bytes_total",
                    "console bytes released to the console's writer "
                    "(ftvm_console_*)", o->console_written_bytes);
    metrics_counter(w, "ftvm_primary_output_console_dropped_bytes_total",
                    "console bytes dropped while held: over the bounds",
                    o->console_dropped_bytes);
    metrics_counter(w, "ftvm_primary_output_frames_sent_total",
                    "network frames released to the network",
                    o->frames_sent);
    metrics_counter(w, "ftvm_primary_output_frames_refused_total",
                    "network frames refused while output commit held its "
                    "maximum", o->frames_refused);
    metrics_histogram(w, "ftvm_primary_output_commit_delay_seconds",
                      "how long console writes and frames were held before "
                      "their release", &o->delay_ns);
    metrics_gauge(w, "ftvm_primary_heartbeat_interval_seconds",
                  "heartbeat interval", st.heartbeat_ns / 1e9);
    metrics_gauge(w, "ftvm_primary_failure_timeout_seconds",
                  "silence after which the secondary is lost",
                  st.failure_ns / 1e9);
    metrics_gauge(w, "ftvm_primary_reconnect_interval_seconds",
                  "time between attempts to reach a lost secondary (0: off)",
                  st.reconnect_ns / 1e9);
    metrics_gauge(w, "ftvm_primary_last_heard_seconds",
                  "time since the secondary last sent anything (0: no "
                  "connection)", st.last_heard_ns / 1e9);
    for (int c = 0; c < COLO_CAUSE_N; c++) {
        char name[96], help[128];
        snprintf(name, sizeof(name), "ftvm_primary_checkpoints_%s_total",
                 colo_cause_name(c));
        snprintf(help, sizeof(help), "checkpoints taken, cause: %s",
                 colo_cause_name(c));
        metrics_counter(w, name, help, st.causes[c]);
    }
    if (st.mode == COLO_MODE_COLO) {
        metrics_counter(w, "ftvm_primary_colo_matched_bytes_total",
                        "console bytes released by comparison (COLO)",
                        st.colo.matched_bytes);
        metrics_counter(w, "ftvm_primary_colo_mismatches_total",
                        "console comparisons that diverged (COLO)",
                        st.colo.mismatches);
        metrics_counter(w, "ftvm_primary_colo_timeouts_total",
                        "console bytes unmatched for the compare timeout "
                        "(COLO)", st.colo.timeouts);
        metrics_gauge(w, "ftvm_primary_colo_pending_bytes",
                      "the primary's console bytes waiting for the "
                      "secondary's (COLO)", st.colo.pending_primary);
        if (replicator_colonet(rep))
            colonet_metrics(replicator_colonet(rep), w);
    }
    metrics_counter(w, "ftvm_primary_pings_total",
                    "PINGs sent on an idle stream", st.pings);
    metrics_counter(w, "ftvm_primary_pongs_total", "PONGs received",
                    st.pongs);
    metrics_counter(w, "ftvm_primary_heartbeats_received_total",
                    "HEARTBEATs received from a secondary", st.heartbeats);
    metrics_gauge(w, "ftvm_primary_bringup_bytes",
                  "bytes the last bring-up sent", st.bringup.bytes);
    metrics_gauge(w, "ftvm_primary_bringup_passes",
                  "RAM passes of the last bring-up", st.bringup.passes);
    metrics_gauge(w, "ftvm_primary_bringup_pages",
                  "RAM pages the last bring-up sent", st.bringup.pages);
    metrics_gauge(w, "ftvm_primary_bringup_duration_seconds",
                  "how long the last bring-up took to write the VM out",
                  st.bringup.ns / 1e9);
}
