/*
 * libFuzzer target: the secondary's per-package path, the part of the
 * replication stream a network peer reaches.  Each input gets a fresh
 * secondary: secondary/apply over the fixture's registry (two RAM blocks
 * behind the RAM codec, vCPUs, a console; no KVM), made by a create hook
 * that makes it of "ftvm-vm"'s shape as the receiver does (replica_config),
 * answering on a real connection (secondary/connection) over a socketpair
 * whose other end a thread reads.  The fixture's primary brings it up and
 * sends checkpoint 1 in full (tests/fuzz/pkgstream.c); the input then
 * goes on from there as chunks (tests/fuzz/inputs.h): packages, framed as
 * PACKAGED, or raw top-level records, each fed with apply_load as the
 * receiver feeds the socket.
 *
 * What must hold: every package is answered exactly once, ACK or NACK,
 * and never ends the stream, unless it is of another pairing (then it
 * ends it unanswered); every answer carries the bring-up's pairing; a
 * refused package (or anything that did not
 * end in an ACK) leaves the RAM cache, its dirty bitmaps and the device
 * state exactly as they were; ACKed ids only grow; the ACKs and NACKs on
 * the wire are those apply counted, each readable by the primary; a drop
 * notice ("ftvm-drop") is taken only of the bring-up's pairing, and no
 * package is answered after it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "checkpoint/retpath.h"
#include "secondary/apply.h"
#include "secondary/replica.h"
#include "tests/fuzz/fixture.h"
#include "tests/fuzz/fuzzcheck.h"
#include "tests/fuzz/inputs.h"
#include "tests/fuzz/pkgstream.h"

/* Beyond this, more chunks only copy and compare the state again. */
#define MAX_CHUNKS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * What the primary's end of the socket received, read by a thread of its
 * own (the secondary blocks while the return path is full) and looked at
 * once the secondary has closed it.
 */
typedef struct inbox {
    int fd;
    size_t n;                   /* messages */
    uint64_t acks, nacks, last_ack;
    char bad[300];              /* what was wrong with one, if anything */
} inbox;

typedef struct secondary {
    fixture fx;
    int fds[2];                 /* the secondary's, the primary's */
    connection *conn;
    apply *a;
    inbox in;
    pthread_t reader;
    fx_state last;              /* as the last ACK (or the start) left it */
    bool ended;                 /* apply_load failed: the stream is over */
} secondary;

static struct event_base *base;
static uint8_t *prefix;
static size_t prefix_len;

static void *read_answers(void *arg)
{
    inbox *in = arg;
    uint8_t buf[4 * RETPATH_MSG_MAX];
    size_t len = 0;
    for (;;) {
        ssize_t got = recv(in->fd, buf + len, sizeof(buf) - len, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return NULL;
        len += (size_t)got;
        size_t off = 0;
        retpath_msg m;
        int used;
        char err[256];
        while ((used = retpath_parse(buf + off, len - off, &m, err,
                                     sizeof(err))) > 0) {
            off += (size_t)used;
            in->n++;
            if ((m.type == RETPATH_ACK || m.type == RETPATH_NACK) &&
                !pairing_equal(&m.pair, &pkgstream_shape.pair) &&
                !in->bad[0])
                snprintf(in->bad, sizeof(in->bad), "%s %llu of pairing "
                         "'%s', not the bring-up's",
                         retpath_type_name(m.type),
                         (unsigned long long)m.value64, m.pair.name);
            if (m.type == RETPATH_ACK) {
                if (m.value64 <= in->last_ack && !in->bad[0])
                    snprintf(in->bad, sizeof(in->bad), "ACK %llu after "
                             "ACK %llu", (unsigned long long)m.value64,
                             (unsigned long long)in->last_ack);
                in->last_ack = m.value64;
                in->acks++;
            } else if (m.type == RETPATH_NACK) {
                if (!m.text[0] && !in->bad[0])
                    snprintf(in->bad, sizeof(in->bad), "a NACK without a "
                             "reason");
                in->nacks++;
            }
        }
        if (used < 0) {
            snprintf(in->bad, sizeof(in->bad), "%s", err);
            return NULL;
        }
        memmove(buf, buf + off, len - off);
        len -= off;
    }
}

/* apply's create hook: what secondary/replica.c does, without the VM. */
static int create(void *opaque, qfile *f, const vmshape *shape,
                  registry **reg)
{
    secondary *s = opaque;
    vm_config cfg;
    char err[256];
    int r = replica_config(shape, NULL, NULL, &cfg, err, sizeof(err));
    if (r < 0)
        return qfile_fail(f, r, "%s", err);
    *reg = s->fx.reg;
    return 0;
}

static void open_secondary(secondary *s)
{
    char err[256];
    memset(s, 0, sizeof(*s));
    if (fx_init(&s->fx, 0, 0) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s->fds) < 0)
        fuzzcheck_broken("fuzz_apply: setting up: %s", strerror(errno));
    connection_opts co = { .failure_timeout_ns = 300000000u,
                           .heartbeat_ns = 50000000u };
    if (connection_new(&s->conn, base, s->fds[0], "fuzz-primary", &co, err,
                       sizeof(err)) < 0)
        fuzzcheck_broken("fuzz_apply: %s", err);
    if (apply_new(&s->a, &(apply_opts){ .conn = s->conn, .create = create,
                                        .opaque = s }) < 0)
        fuzzcheck_broken("fuzz_apply: out of memory");
    s->in.fd = s->fds[1];
    if (fx_state_save(&s->fx, &s->last) < 0)
        fuzzcheck_broken("fuzz_apply: out of memory");
    if (pthread_create(&s->reader, NULL, read_answers, &s->in) != 0)
        fuzzcheck_broken("fuzz_apply: no reader thread");
}

/* What went over the wire is what apply counted. */
static void close_secondary(secondary *s)
{
    apply_stats st;
    apply_get_stats(s->a, &st);
    apply_free(s->a);
    connection_free(s->conn);       /* closes fds[0]: the reader sees EOF */
    pthread_join(s->reader, NULL);
    close(s->fds[1]);
    fx_state_free(&s->last);
    fx_free(&s->fx);
    if (s->in.bad[0])
        fuzzcheck_broken("fuzz_apply: the secondary answered what its "
                         "primary cannot take: %s", s->in.bad);
    if (s->in.acks != st.applied || s->in.nacks != st.refused ||
        s->in.last_ack != st.last_id)
        fuzzcheck_broken("fuzz_apply: %llu ACK(s) (the last %llu) and %llu "
                         "NACK(s) sent; applied %llu (the last %llu), "
                         "refused %llu", (unsigned long long)s->in.acks,
                         (unsigned long long)s->in.last_ack,
                         (unsigned long long)s->in.nacks,
                         (unsigned long long)st.applied,
                         (unsigned long long)st.last_id,
                         (unsigned long long)st.refused);
}

/*
 * Feeds one chunk as the receiver feeds what arrives; checks what the
 * secondary did with it (apply's counts: what it sent is checked against
 * them at the end) and what it changed.
 */
static void feed(secondary *s, const uint8_t *b, size_t n, bool header,
                 bool package)
{
    apply_stats was, now;
    apply_get_stats(s->a, &was);
    qfile *v = qfile_open_view(b, n, "fuzz-primary");
    savevm_stop why = SAVEVM_STOP_END;
    int r = header ? apply_load_header(s->a, v) : 0;
    if (r == 0)
        r = apply_load(s->a, v, &why);
    apply_get_stats(s->a, &now);

    uint64_t acks = now.applied - was.applied;
    uint64_t nacks = now.refused - was.refused;
    if (nacks)
        fuzzcheck_refused("fuzz_apply: a checkpoint refused: %s",
                          now.last_refusal);
    if (acks && now.last_id <= was.last_id)
        fuzzcheck_broken("fuzz_apply: checkpoint %llu applied after %llu",
                         (unsigned long long)now.last_id,
                         (unsigned long long)was.last_id);
    if (acks) {
        if (fx_state_save(&s->fx, &s->last) < 0)
            fuzzcheck_broken("fuzz_apply: out of memory");
    } else {
        const char *what = fx_state_diff(&s->fx, &s->last);
        if (what)
            fuzzcheck_broken("fuzz_apply: %s changed without an ACK "
                             "(%llu NACK(s); the stream said: \"%s\")",
                             what, (unsigned long long)nacks,
                             r < 0 ? qfile_errmsg(v) : "");
    }
    /* A drop notice counts only for this pairing, and ends the checkpoints. */
    if (now.dropped && !pairing_equal(&now.drop.pair, &pkgstream_shape.pair))
        fuzzcheck_broken("fuzz_apply: a drop notice of another pairing was "
                         "taken");
    if (was.dropped && (acks || nacks))
        fuzzcheck_broken("fuzz_apply: a package answered after the drop "
                         "notice");
    /*
     * Not a checkpoint of this pair, or one after the drop notice: the
     * stream ends, nothing answered.
     */
    bool foreign = r == -EPROTO && !acks && !nacks &&
                   (strstr(qfile_errmsg(v), "a package of another pairing") ||
                    (was.dropped && strstr(qfile_errmsg(v), "a record after")));
    if (package && !foreign && (acks + nacks != 1 || r < 0))
        fuzzcheck_broken("fuzz_apply: a package answered with %llu ACK(s) "
                         "and %llu NACK(s); the stream %s%s",
                         (unsigned long long)acks, (unsigned long long)nacks,
                         r < 0 ? "ended: " : "went on",
                         r < 0 ? qfile_errmsg(v) : "");
    if (r < 0) {
        if (!qfile_errmsg(v)[0])
            fuzzcheck_broken("fuzz_apply: the stream ended without a "
                             "message");
        fuzzcheck_refused("fuzz_apply: the stream ended: %s",
                          qfile_errmsg(v));
        s->ended = true;
    } else if (why == SAVEVM_STOP_EOF) {
        s->ended = true;        /* the primary's EOF: the receiver stops */
    }
    qfile_close(v);
}

static void init_once(void)
{
    fixture pri;
    qfile *q = qfile_open_mem("bring-up");
    base = event_base_new();
    if (!q || !base || fx_init(&pri, 0, 0) < 0 || pkgstream_start(&pri, q) < 0)
        fuzzcheck_broken("fuzz_apply: the bring-up cannot be written");
    const uint8_t *d = qfile_mem_data(q, &prefix_len);
    prefix = malloc(prefix_len);
    if (!prefix)
        fuzzcheck_broken("fuzz_apply: out of memory");
    memcpy(prefix, d, prefix_len);
    qfile_close(q);
    fx_free(&pri);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static secondary s;
    if (!prefix)
        init_once();
    open_secondary(&s);
    feed(&s, prefix, prefix_len, true, false);
    apply_stats st;
    apply_get_stats(s.a, &st);
    if (st.last_id != 1 || st.refused || s.ended)
        fuzzcheck_broken("fuzz_apply: the bring-up and checkpoint 1 (the "
                         "harness's, not the input's) were not applied: "
                         "%s", st.last_refusal);

    size_t pos = 0;
    for (int k = 0; k < MAX_CHUNKS && !s.ended && size - pos >= 5; k++) {
        bool package = (data[pos] & 1) == APPLY_CHUNK_PACKAGE;
        uint32_t len = (uint32_t)data[pos + 1] << 24 |
                       (uint32_t)data[pos + 2] << 16 |
                       (uint32_t)data[pos + 3] << 8 | data[pos + 4];
        pos += 5;
        if (len > size - pos)
            len = (uint32_t)(size - pos);
        if (!package) {
            feed(&s, data + pos, len, false, false);
        } else {
            qfile *q = qfile_open_mem("package");
            savevm_put_packaged(q, data + pos, len);
            size_t n;
            const uint8_t *b = qfile_mem_data(q, &n);
            feed(&s, b, n, false, true);
            qfile_close(q);
        }
        pos += len;
    }
    close_secondary(&s);
    return 0;
}
