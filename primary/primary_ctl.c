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
    json_object_set_new(r, "secondaries", json_integer(st.secondaries));
    json_object_set_new(r, "checkpoint", json_pack(
        "{s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:f}",
        "interval_ms", ms(st.interval_ns),
        "taken", (json_int_t)st.taken, "acked", (json_int_t)st.acked,
        "last_id", (json_int_t)st.last_id,
        "last_acked", (json_int_t)st.last_acked,
        "in_flight", (json_int_t)st.in_flight,
        "full", (json_int_t)st.full, "rate_per_s", st.rate));
    json_object_set_new(r, "pause_ms", timing(&st.pause_ns));
    json_object_set_new(r, "ack_ms", timing(&st.ack_ns));
    json_object_set_new(r, "dirty_pages", counts(&st.pages));
    json_t *bytes = counts(&st.bytes);
    json_object_set_new(bytes, "total", json_integer(st.bytes_total));
    json_object_set_new(r, "package_bytes", bytes);
    json_object_set_new(r, "nacks", json_integer(st.nacks));
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

static control_outcome cmd_set(void *opaque, control_req *req, json_t *args,
                               json_t **result, int *rc, char *err,
                               size_t errlen)
{
    (void)req; (void)result;
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
        *rc = -EINVAL;
        snprintf(err, errlen, "set needs a key and a value: set "
                 "checkpoint-interval 20ms");
        return CONTROL_DONE;
    }
    bool off = strcmp(value, "0") == 0 || strcmp(value, "off") == 0;
    if (!(off && strcmp(key, "reconnect") == 0) &&
        parse_duration(value, &ns) < 0) {
        *rc = -EINVAL;
        snprintf(err, errlen, "set %s: '%s' is not a time such as 20ms or "
                 "2s", key, value);
        return CONTROL_DONE;
    }
    *rc = replicator_set(opaque, key, ns, err, errlen);
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

static control_outcome cmd_attach(void *opaque, control_req *req, json_t *args,
                                  json_t **result, int *rc, char *err,
                                  size_t errlen)
{
    (void)req; (void)result;
    const char *addr = json_string_value(json_object_get(args, "address"));
    if (!addr || !*addr) {
        *rc = -EINVAL;
        snprintf(err, errlen, "attach-secondary needs an address: "
                 "attach-secondary HOST:PORT");
        return CONTROL_DONE;
    }
    *rc = replicator_attach(opaque, addr, err, errlen);
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
                             "HOST:PORT: bring a new secondary up",
                             cmd_attach, rep);
    return r;
}

const metrics_hint primary_ctl_metric_hints[] = {
    {"checkpoint.taken", "checkpoints_taken_total", METRICS_COUNTER, 0,
     "checkpoints taken and sent, all secondaries"},
    {"checkpoint.acked", "checkpoints_acked_total", METRICS_COUNTER, 0,
     "checkpoints the secondary acknowledged"},
    {"checkpoint.full", "checkpoints_full_total", METRICS_COUNTER, 0,
     "checkpoints sent in full after a NACK or an error"},
    {"checkpoint.rate_per_s", NULL, METRICS_GAUGE, 0,
     "checkpoints per second, over the last 2 s"},
    {"nacks", "nacks_total", METRICS_COUNTER, 0,
     "packages the secondary refused"},
    {"package_bytes.total", "package_bytes_total", METRICS_COUNTER, 0,
     "bytes of checkpoint packages sent"},
    {"output.frames_refused", "frames_refused_total", METRICS_COUNTER, 0,
     "frames refused while output commit held its maximum"},
    {"heartbeat.pings", "pings_total", METRICS_COUNTER, 0,
     "PINGs sent on an idle stream"},
    {"heartbeat.pongs", "pongs_total", METRICS_COUNTER, 0, "PONGs received"},
    {"heartbeat.received", "heartbeats_total", METRICS_COUNTER, 0,
     "HEARTBEATs received from the secondary"},
    {"pause_ms.p99", NULL, METRICS_GAUGE, 0,
     "99th percentile guest pause per checkpoint, recent, ms"},
    {"ack_ms.p99", NULL, METRICS_GAUGE, 0,
     "99th percentile package-sent-to-ACK latency, recent, ms"},
    {"output.commit_delay_ms.p99", NULL, METRICS_GAUGE, 0,
     "99th percentile output-commit delay (console writes and frames), "
     "recent, ms"},
    {"heartbeat.last_heard_ms", NULL, METRICS_GAUGE, 0,
     "ms since the secondary was last heard from"},
    {"state", NULL, METRICS_GAUGE, 0,
     "replication state: setup, active, degraded or stopped"},
    {NULL, NULL, METRICS_GAUGE, 0, NULL},
};
