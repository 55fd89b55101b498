/*
 * Unit tests for secondary/apply: what the secondary accepts, refuses and
 * applies, without a VM or a process.  The primary here is the test: its
 * state is tests/fuzz/fixture.c's (two RAM blocks behind the real RAM
 * codec, a few described devices), saved with the registry as the real
 * primary saves it (primary/package.c), into packages the test sends as
 * they are or damaged on purpose.  The secondary is apply over a registry
 * of the same shape, answering on a connection whose other end is the
 * test's, with a clock only the test moves.
 *
 * Each refusal is checked three ways: the NACK names the package and
 * says why, nothing of the package reached the secondary's state, and a
 * full package (base 0) afterwards is applied.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devstate/dropnotice.h"
#include "devstate/trailer.h"
#include "secondary/apply.h"
#include "secondary/replica.h"
#include "tests/fuzz/fixture.h"
#include "tests/unit/peer.h"
#include "vm/colosec.h"
#include "vm/vmshape.h"

#define MS 1000000u
#define TIMEOUT (300 * MS)
#define HEARTBEAT (50 * MS)
#define MARK "ftvm test: a page to damage"

/*
 * A device whose apply takes long: while it is applied, the loop's
 * failure check runs (when slow_conn is set) after twice the timeout.
 */
typedef struct slow_dev {
    uint32_t value;
} slow_dev;

static connection *slow_conn;
static int slow_checks;
static bool slow_ended;

static int slow_post_load(void *obj, uint32_t version)
{
    (void)obj;
    (void)version;
    if (slow_conn) {
        peer_now_ns += 2 * TIMEOUT;
        slow_checks++;
        slow_ended |= connection_check_silence(slow_conn);
    }
    return 0;
}

static const vmstate_field slow_fields[] = {
    {VMSTATE_SCALAR(slow_dev, value)},
    VMSTATE_END,
};

static const vmstate_desc slow_desc = {
    .name = "slow", .version = 1, .minimum_version = 1,
    .size = sizeof(slow_dev), .fields = slow_fields,
    .post_load = slow_post_load,
};

/* One side's VM state. */
typedef struct side {
    fixture fx;
    slow_dev slow;
} side;

typedef struct env {
    peer p;
    side pri, sec;
    apply *a;
    uint32_t n;             /* registry entries: the ids above are ftvm's */
    vmshape shape;          /* what the primary says */
    vmshape got;            /* what the create hook read */
    const char *net;        /* the secondary's --net */
    int creates;
    bool check_in_create;   /* run the failure check while creating */
    uint64_t last_acked;    /* the primary's view */
    unsigned touches;
    int colo;               /* -1: no "ftvm-colo", else its mode */
    /* The colo_input hook's calls: id, length, first byte, and the last
     * checkpoint applied when it came. */
    struct { uint64_t id, applied; size_t len; uint8_t first; } in[16];
    size_t nin;
    /* The colo_release hook's calls. */
    struct { uint64_t id, console; } rel[4];
    size_t nrel;
} env;

/* What kind of package to send. */
typedef enum pkg_kind {
    PKG_GOOD,
    PKG_SECOND_HEADER,      /* "ftvm-pkg" twice */
    PKG_AFTER_TRAILER,      /* device sections after "ftvm-ckpt" */
    PKG_TRAILER_ID,         /* the trailer names the next checkpoint */
    PKG_DAMAGED,            /* a byte of a page flipped after sealing */
    PKG_UNSEALED,           /* no "ftvm-ckpt" */
    PKG_NO_HEADER,          /* no "ftvm-pkg" */
    PKG_NESTED,             /* a package inside */
    PKG_FOREIGN,            /* of another pairing id */
    PKG_OTHER_NAME,         /* of another VM name */
} pkg_kind;

/* ---- both sides ---- */

static void side_init(side *s)
{
    assert_int_equal(fx_init(&s->fx, 0, 0), 0);
    assert_true(registry_add_device(s->fx.reg, "slow", 0,
                                    REGISTRY_PRIO_DEFAULT, &slow_desc,
                                    &s->slow) >= 0);
}

static void assert_same(const side *x, const side *y)
{
    for (int b = 0; b < 2; b++)
        assert_memory_equal(x->fx.mem[b], y->fx.mem[b],
                            x->fx.blocks[b].length);
    for (int i = 0; i < 2; i++) {
        const fx_cpu *c = &x->fx.cpu[i], *d = &y->fx.cpu[i];
        assert_memory_equal(c->regs, d->regs, sizeof(c->regs));
        assert_int_equal(c->rip, d->rip);
        assert_int_equal(c->flags, d->flags);
        assert_int_equal(c->halted, d->halted);
        assert_memory_equal(c->xsave, d->xsave, sizeof(c->xsave));
    }
    assert_int_equal(x->fx.console.seq, y->fx.console.seq);
    assert_int_equal(x->fx.console.last_error, y->fx.console.last_error);
    assert_int_equal(x->fx.console.pending_len, y->fx.console.pending_len);
    assert_memory_equal(x->fx.console.pending, y->fx.console.pending,
                        x->fx.console.pending_len);
    assert_int_equal(x->slow.value, y->slow.value);
}

/* A copy of the secondary's state, to show that a refusal changed none. */
static side *copy_side(const side *s)
{
    side *c = malloc(sizeof(*c));
    assert_non_null(c);
    *c = *s;
    for (int b = 0; b < 2; b++) {
        c->fx.mem[b] = malloc(s->fx.blocks[b].length);
        assert_non_null(c->fx.mem[b]);
        memcpy(c->fx.mem[b], s->fx.mem[b], s->fx.blocks[b].length);
    }
    return c;
}

static void free_copy(side *c)
{
    free(c->fx.mem[0]);
    free(c->fx.mem[1]);
    free(c);
}

static void set_dirty(side *s, int b, uint64_t page)
{
    s->fx.dirty[b][page / LONG_BIT] |= 1ul << (page % LONG_BIT);
}

/* The guest runs: pages, vCPUs and devices change on the primary. */
static void touch(env *e)
{
    side *s = &e->pri;
    unsigned t = ++e->touches;
    uint64_t pages0 = s->fx.blocks[0].length / RAM_PAGE_SIZE;
    uint64_t page = t % pages0;
    uint8_t *p = s->fx.mem[0] + page * RAM_PAGE_SIZE;
    memset(p, (int)(0x10 + t), RAM_PAGE_SIZE);
    snprintf((char *)p + 100, 64, MARK " %u", t);
    set_dirty(s, 0, page);
    s->fx.mem[1][t % 4 * RAM_PAGE_SIZE + 7] = (uint8_t)t;
    set_dirty(s, 1, t % 4);
    s->fx.cpu[0].rip = 0x1000 + t;
    s->fx.cpu[1].regs[3] = t * 3;
    s->fx.console.seq = t;
    /* Never 0: without a subsection the old pending bytes would stay. */
    s->fx.console.pending_len = (uint16_t)(1 + t % 5);
    memset(s->fx.console.pending, 'a' + (int)t % 26, 1 + t % 5);
    s->slow.value = t;
}

/* ---- the stream ---- */

/* Loads what q holds (a header first when asked); 0 or -errno + msg. */
static int feed(env *e, qfile *q, bool header, char *msg, size_t len)
{
    size_t n;
    const uint8_t *d = qfile_mem_data(q, &n);
    qfile *v = qfile_open_view(d, n, "primary");
    savevm_stop why = SAVEVM_STOP_EOF;
    int r = header ? apply_load_header(e->a, v) : 0;
    if (r == 0)
        r = apply_load(e->a, v, &why);
    if (msg)
        snprintf(msg, len, "%s", qfile_errmsg(v));
    if (r == 0)
        assert_int_equal(why, SAVEVM_STOP_END);
    qfile_close(v);
    qfile_close(q);
    return r;
}

static void put_start(env *e, qfile *q)
{
    savevm_put_header(q);
    savevm_put_command(q, SAVEVM_CMD_OPEN_RETURN_PATH, 0, NULL);
    savevm_put_command(q, SAVEVM_CMD_ENABLE_COLO, 0, NULL);
    vmshape_put(q, e->n, &e->shape);
    if (e->colo >= 0)
        colosec_put(q, e->n + 3, (uint32_t)e->colo);
}

/* Header, commands, the VM's shape, and RAM passes until all is sent. */
static void bringup(env *e)
{
    qfile *q = qfile_open_mem("bring-up");
    ram_mark_all_dirty(e->pri.fx.blocks, 2);
    put_start(e, q);
    assert_int_equal(registry_save_setup(e->pri.fx.reg, q), 0);
    while (registry_save_iterate(e->pri.fx.reg, q) == 0)
        ;
    assert_int_equal(qfile_error(q), 0);
    char msg[512];
    if (feed(e, q, true, msg, sizeof(msg)) < 0)
        fail_msg("bring-up: %s", msg);
}

/* Checkpoint id on base as kind says, PACKAGED into out. */
static void put_package(env *e, qfile *out, pkg_kind kind, uint64_t id,
                        uint64_t base)
{
    registry *reg = e->pri.fx.reg;
    trailer_pkg hdr = { .id = id, .base = base, .pair = e->shape.pair };
    if (kind == PKG_FOREIGN)
        hdr.pair.id[15] ^= 1;
    if (kind == PKG_OTHER_NAME)
        hdr.pair.name[0] = 'X';
    qfile *q = qfile_open_mem("package");
    if (base == 0) {
        /* As the primary does for a full package (primary/package.c). */
        ram_mark_all_dirty(e->pri.fx.blocks, 2);
        ram_saver_drop_cache(e->pri.fx.saver);
    }
    if (kind != PKG_NO_HEADER)
        trailer_put_pkg(q, e->n + 1, &hdr);
    if (kind == PKG_SECOND_HEADER)
        trailer_put_pkg(q, e->n + 1, &hdr);
    if (kind == PKG_NESTED)
        savevm_put_packaged(q, "\x00", 1);
    assert_int_equal(registry_save_complete(reg, q), 0);
    assert_int_equal(registry_save_devices(reg, q, NULL), 0);
    qfile_crc_start_mem(q);
    if (kind != PKG_UNSEALED)
        trailer_put(q, e->n + 2, kind == PKG_TRAILER_ID ? id + 1 : id);
    if (kind == PKG_AFTER_TRAILER) {
        e->pri.slow.value += 1000;
        assert_int_equal(registry_save_devices(reg, q, NULL), 0);
    }
    savevm_put_eof(q);
    assert_int_equal(qfile_error(q), 0);
    size_t len;
    uint8_t *d = (uint8_t *)qfile_mem_data(q, &len);
    if (kind == PKG_DAMAGED) {
        /* A bit of a page's data, where only the checksum can see it. */
        uint8_t *at = memmem(d, len, MARK, strlen(MARK));
        assert_non_null(at);
        at[3] ^= 0x04;
    }
    savevm_put_packaged(out, d, (uint32_t)len);
    qfile_close(q);
}

/* The one answer the secondary gave to what it was fed. */
static retpath_msg answer(env *e)
{
    retpath_msg m, extra;
    assert_int_equal(peer_next(&e->p, &m), 1);
    assert_int_equal(peer_next(&e->p, &extra), 0);
    return m;
}

/* Sends a package; returns the answer to it. */
static retpath_msg send_package(env *e, pkg_kind kind, uint64_t id,
                                uint64_t base)
{
    char msg[512];
    qfile *q = qfile_open_mem("primary");
    put_package(e, q, kind, id, base);
    if (feed(e, q, false, msg, sizeof(msg)) < 0)
        fail_msg("checkpoint %llu: the stream stopped: %s",
                 (unsigned long long)id, msg);
    return answer(e);
}

static void expect_ack(env *e, uint64_t id, uint64_t base)
{
    retpath_msg m = send_package(e, PKG_GOOD, id, base);
    if (m.type == RETPATH_NACK)
        fail_msg("checkpoint %llu refused: %s", (unsigned long long)id,
                 m.text);
    assert_int_equal(m.type, RETPATH_ACK);
    assert_int_equal(m.value64, id);
    assert_true(pairing_equal(&m.pair, &e->shape.pair));
    e->last_acked = id;
    assert_same(&e->pri, &e->sec);
}

/*
 * A bad package: NACK id with why in its reason, nothing of it applied,
 * the refusal counted and said.
 */
static void expect_nack(env *e, pkg_kind kind, uint64_t id, uint64_t base,
                        uint64_t nack_id, const char *why)
{
    apply_stats before, after;
    apply_get_stats(e->a, &before);
    side *was = copy_side(&e->sec);
    retpath_msg m = send_package(e, kind, id, base);
    if (m.type == RETPATH_ACK)
        fail_msg("checkpoint %llu was applied; it should be refused (%s)",
                 (unsigned long long)id, why);
    assert_int_equal(m.type, RETPATH_NACK);
    assert_int_equal(m.value64, nack_id);
    assert_true(pairing_equal(&m.pair, &e->shape.pair));
    if (!strstr(m.text, why))
        fail_msg("NACK '%s' does not say '%s'", m.text, why);
    assert_same(was, &e->sec);
    free_copy(was);
    apply_get_stats(e->a, &after);
    assert_int_equal(after.refused, before.refused + 1);
    assert_int_equal(after.applied, before.applied);
    assert_int_equal(after.last_id, before.last_id);
    assert_string_equal(after.last_refusal, m.text);
}

/* ---- set-up ---- */

static int create(void *opaque, qfile *f, const vmshape *shape,
                  registry **reg)
{
    env *e = opaque;
    char err[256];
    vm_config cfg;
    e->creates++;
    if (e->check_in_create) {
        /* Creating a VM of many GiB takes time; not the primary's. */
        peer_now_ns += 2 * TIMEOUT;
        assert_false(connection_check_silence(e->p.conn));
    }
    e->got = *shape;
    int r = replica_config(&e->got, e->net, NULL, &cfg, err, sizeof(err));
    if (r < 0)
        return qfile_fail(f, r, "%s", err);
    *reg = e->sec.fx.reg;
    return 0;
}

/* apply's colo_input hook: what came, checked byte for byte. */
static void got_frame(void *opaque, uint64_t id, const void *frame,
                      size_t len)
{
    env *e = opaque;
    const uint8_t *b = frame;
    for (size_t i = 0; i < len; i++)
        if (b[i] != (uint8_t)(len + i))
            fail_msg("frame of %zu bytes: byte %zu changed", len, i);
    assert_true(e->nin < 16);
    apply_stats st;
    apply_get_stats(e->a, &st);
    e->in[e->nin].id = id;
    e->in[e->nin].len = len;
    e->in[e->nin].first = b[0];
    e->in[e->nin].applied = st.last_id;
    e->nin++;
}

/* apply's colo_release hook. */
static void got_release(void *opaque, uint64_t id, uint64_t console)
{
    env *e = opaque;
    assert_true(e->nrel < 4);
    e->rel[e->nrel].id = id;
    e->rel[e->nrel].console = console;
    e->nrel++;
}

/* The secondary's --vm-name for the next setup (NULL: any). */
static const char *vm_name;

static int setup(void **state)
{
    env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    peer_open(&e->p, TIMEOUT, HEARTBEAT, NULL);
    side_init(&e->pri);
    side_init(&e->sec);
    e->n = (uint32_t)registry_count(e->pri.fx.reg);
    e->colo = -1;
    e->shape = (vmshape){ .mem_size = 4u << 20, .vcpus = 2,
                          .mac = { 2, 0, 0, 0, 0, 1 }, .pair = peer_pair };
    assert_int_equal(apply_new(&e->a, &(apply_opts){ .conn = e->p.conn,
                                                     .create = create,
                                                     .opaque = e,
                                                     .vm_name = vm_name,
                                                     .colo_input =
                                                         got_frame,
                                                     .colo_release =
                                                         got_release }),
                     0);
    slow_conn = NULL;
    slow_checks = 0;
    slow_ended = false;
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    apply_free(e->a);
    peer_close(&e->p);
    fx_free(&e->pri.fx);
    fx_free(&e->sec.fx);
    free(e);
    return 0;
}

/* Brought up, checkpoints 1 (full) and 2 applied, the guest ran on. */
static void active(env *e)
{
    bringup(e);
    touch(e);
    expect_ack(e, 1, 0);
    touch(e);
    expect_ack(e, 2, 1);
    touch(e);
}

/* After a refusal the primary sends the next checkpoint in full. */
static void recovers(env *e, uint64_t id)
{
    touch(e);
    expect_ack(e, id, 0);
    touch(e);
    expect_ack(e, id + 1, id);
}

/* Active at 2; checkpoint 3 (on base) refused; then 4 in full applied. */
static void refused(env *e, pkg_kind kind, uint64_t base, uint64_t nack_id,
                    const char *why)
{
    active(e);
    expect_nack(e, kind, 3, base, nack_id, why);
    recovers(e, 4);
}

/* ---- accepted ---- */

static void test_good_packages(void **state)
{
    env *e = *state;
    e->check_in_create = true;
    bringup(e);
    assert_int_equal(e->creates, 1);
    assert_int_equal(e->got.mem_size, e->shape.mem_size);
    assert_int_equal(e->got.vcpus, 2);
    /* The bring-up's RAM is applied as it comes; nothing is answered. */
    assert_memory_equal(e->sec.fx.mem[0], e->pri.fx.mem[0],
                        e->pri.fx.blocks[0].length);
    retpath_msg m;
    assert_int_equal(peer_next(&e->p, &m), 0);
    apply_stats st;
    apply_get_stats(e->a, &st);
    assert_true(st.have_vm);
    assert_int_equal(st.applied, 0);

    touch(e);
    expect_ack(e, 1, 0);
    for (uint64_t id = 2; id <= 5; id++) {
        touch(e);
        expect_ack(e, id, id - 1);
    }
    apply_get_stats(e->a, &st);
    assert_int_equal(st.applied, 5);
    assert_int_equal(st.last_id, 5);
    assert_int_equal(st.refused, 0);
    assert_true(st.package_bytes_total > st.package_bytes_last);

    /* A PING between packages is answered in stream order. */
    qfile *q = qfile_open_mem("primary");
    savevm_put_ping(q, 77);
    touch(e);
    put_package(e, q, PKG_GOOD, 6, 5);
    assert_int_equal(feed(e, q, false, NULL, 0), 0);
    assert_int_equal(peer_next(&e->p, &m), 1);
    assert_int_equal(m.type, RETPATH_PONG);
    assert_int_equal(m.value32, 77);
    m = answer(e);
    assert_int_equal(m.type, RETPATH_ACK);
    assert_int_equal(m.value64, 6);
    apply_get_stats(e->a, &st);
    assert_int_equal(st.pings, 1);
}

/* Ids may skip (a refused package's id is not reused). */
static void test_newer_id_on_last(void **state)
{
    env *e = *state;
    active(e);
    expect_ack(e, 9, 2);
    touch(e);
    expect_ack(e, 10, 9);
}

/* ---- refused: NACK, nothing applied, then a full package ---- */

static void test_not_newer(void **state)
{
    env *e = *state;
    active(e);
    expect_nack(e, PKG_GOOD, 2, 0, 2,
                "checkpoint 2 is not newer than 2, the last applied");
    expect_nack(e, PKG_GOOD, 1, 0, 1, "is not newer than 2");
    recovers(e, 3);
}

static void test_base_not_last(void **state)
{
    refused(*state, PKG_GOOD, 1, 3,
            "checkpoint 3 builds on 1, but the last checkpoint applied "
            "here is 2");
}

static void test_second_header(void **state)
{
    refused(*state, PKG_SECOND_HEADER, 2, 3,
            "a second 'ftvm-pkg' in one package");
}

static void test_no_header(void **state)
{
    /* A package that cannot name itself is answered NACK 0. */
    refused(*state, PKG_NO_HEADER, 2, 0,
            "a package must open with 'ftvm-pkg'");
}

static void test_section_after_trailer(void **state)
{
    refused(*state, PKG_AFTER_TRAILER, 2, 3,
            "section 'cpu' after the package's trailer");
}

static void test_trailer_id(void **state)
{
    refused(*state, PKG_TRAILER_ID, 2, 3,
            "the trailer of checkpoint 4 in the package of checkpoint 3");
}

static void test_damaged_byte(void **state)
{
    refused(*state, PKG_DAMAGED, 2, 3, "checkpoint 3: checksum mismatch");
}

static void test_no_trailer(void **state)
{
    refused(*state, PKG_UNSEALED, 2, 3,
            "checkpoint 3: no trailer ('ftvm-ckpt') seals the package");
}

static void test_nested(void **state)
{
    refused(*state, PKG_NESTED, 2, 3, "package nested 2 deep (limit 1)");
}

/*
 * Packages in flight on a refused one are refused in turn; the full one
 * the primary sends on the NACK is applied.
 */
static void test_refusals_then_full(void **state)
{
    env *e = *state;
    active(e);
    expect_nack(e, PKG_DAMAGED, 3, 2, 3, "checksum mismatch");
    touch(e);
    expect_nack(e, PKG_GOOD, 4, 3, 4, "builds on 3");
    touch(e);
    expect_nack(e, PKG_GOOD, 5, 4, 5, "builds on 4");
    recovers(e, 6);
    apply_stats st;
    apply_get_stats(e->a, &st);
    assert_int_equal(st.refused, 3);
    assert_int_equal(st.applied, 4);
    assert_int_equal(st.last_id, 7);
}

/* ---- the stream refused: the load stops ---- */

static void test_refused_streams(void **state)
{
    env *e = *state;
    char msg[512];

    /* "ftvm-vm" before the commands that make this a replication stream. */
    qfile *q = qfile_open_mem("primary");
    savevm_put_header(q);
    vmshape_put(q, e->n, &e->shape);
    assert_int_equal(feed(e, q, true, msg, sizeof(msg)), -EPROTO);
    assert_non_null(strstr(msg, "not a replication stream: 'ftvm-vm' "
                                "before OPEN_RETURN_PATH and ENABLE_COLO"));
    assert_int_equal(e->creates, 0);
    teardown(state);

    /* A package before the VM's shape. */
    setup(state);
    e = *state;
    q = qfile_open_mem("primary");
    savevm_put_header(q);
    savevm_put_command(q, SAVEVM_CMD_OPEN_RETURN_PATH, 0, NULL);
    savevm_put_command(q, SAVEVM_CMD_ENABLE_COLO, 0, NULL);
    put_package(e, q, PKG_GOOD, 1, 0);
    assert_true(feed(e, q, true, msg, sizeof(msg)) < 0);
    assert_non_null(strstr(msg, "a package before the VM's shape"));
    teardown(state);

    /* A VM with a NIC needs --net here. */
    setup(state);
    e = *state;
    e->shape.has_net = true;
    q = qfile_open_mem("primary");
    put_start(e, q);
    assert_int_equal(feed(e, q, true, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "the primary's VM has a network device: "
                                "start the secondary with --net"));
    teardown(state);
    setup(state);
    e = *state;
    e->shape.has_net = true;
    e->net = "dgram:127.0.0.1:1,127.0.0.1:2";
    q = qfile_open_mem("primary");
    put_start(e, q);
    assert_int_equal(feed(e, q, true, msg, sizeof(msg)), 0);
    assert_true(e->got.has_net);

    /* The shape cannot change. */
    q = qfile_open_mem("primary");
    vmshape_put(q, e->n, &e->shape);
    assert_int_equal(feed(e, q, false, msg, sizeof(msg)), -EPROTO);
    assert_non_null(strstr(msg, "a second 'ftvm-vm' section"));
    assert_int_equal(e->creates, 1);
}

/* After the first package, state outside a package is refused. */
static void test_section_outside_package(void **state)
{
    env *e = *state;
    char msg[512];
    active(e);
    side *was = copy_side(&e->sec);
    qfile *q = qfile_open_mem("primary");
    assert_int_equal(registry_save_devices(e->pri.fx.reg, q, NULL), 0);
    assert_int_equal(feed(e, q, false, msg, sizeof(msg)), -EPROTO);
    assert_non_null(strstr(msg, "section 'cpu' outside a package after the "
                                "bring-up"));
    assert_same(was, &e->sec);
    free_copy(was);
}

/* ---- liveness ---- */

/* The time a package takes to apply is not the primary's silence. */
static void test_slow_apply_is_not_silence(void **state)
{
    env *e = *state;
    active(e);
    slow_conn = e->p.conn;
    expect_ack(e, 3, 2);
    slow_conn = NULL;
    assert_int_equal(slow_checks, 1);
    assert_false(slow_ended);
    /* Silence counts from the end of the package. */
    peer_now_ns += TIMEOUT - 1;
    assert_false(connection_check_silence(e->p.conn));
    peer_now_ns += 1;
    assert_true(connection_check_silence(e->p.conn));
}

/*
 * A package of another pairing is no checkpoint to refuse: the stream
 * ends (a protocol error), nothing of it applied, no NACK (issue 8).
 */
static void test_foreign_package(void **state)
{
    pkg_kind kinds[] = { PKG_FOREIGN, PKG_OTHER_NAME };
    for (int i = 0; i < 2; i++) {
        env *e = *state;
        char msg[512];
        active(e);
        side *was = copy_side(&e->sec);
        qfile *q = qfile_open_mem("primary");
        put_package(e, q, kinds[i], 3, 2);
        assert_int_equal(feed(e, q, false, msg, sizeof(msg)), -EPROTO);
        assert_non_null(strstr(msg, "checkpoint 3 is of pairing "));
        assert_non_null(strstr(msg, "the bring-up's: a package of another "
                                    "pairing"));
        retpath_msg m;
        assert_int_equal(peer_next(&e->p, &m), 0);
        assert_same(was, &e->sec);
        free_copy(was);
        apply_stats st;
        apply_get_stats(e->a, &st);
        assert_int_equal(st.last_id, 2);
        assert_int_equal(st.refused, 0);
        teardown(state);
        setup(state);
    }
}

/* --vm-name: a primary of another VM is refused before its VM is made. */
static void test_vm_name(void **state)
{
    env *e;
    char msg[512];
    const char *names[] = { "other-vm", "test-vm" };
    for (int i = 0; i < 2; i++) {
        teardown(state);
        vm_name = names[i];
        setup(state);
        vm_name = NULL;
        e = *state;
        qfile *q = qfile_open_mem("primary");
        put_start(e, q);
        int r = feed(e, q, true, msg, sizeof(msg));
        if (i == 0) {
            assert_int_equal(r, -EPERM);
            assert_non_null(strstr(msg, "the primary's VM is 'test-vm', this "
                                        "secondary serves 'other-vm' "
                                        "(--vm-name)"));
            assert_int_equal(e->creates, 0);
        } else {
            assert_int_equal(r, 0);
            assert_int_equal(e->creates, 1);
        }
    }
}

/*
 * What a PACKAGED length may claim: little before the VM's shape, then
 * what a VM of that shape can send (finding 3 of issue 8: 38 bytes made
 * the receiver stage 4 GiB).
 */
static void test_package_bound(void **state)
{
    env *e = *state;
    char msg[512];
    uint8_t be[4];
    qfile *q = qfile_open_mem("primary");
    savevm_put_header(q);
    savevm_put_command(q, SAVEVM_CMD_OPEN_RETURN_PATH, 0, NULL);
    savevm_put_command(q, SAVEVM_CMD_ENABLE_COLO, 0, NULL);
    uint32_t claim = APPLY_PRE_VM_MAX_PACKAGE + 1;
    be[0] = (uint8_t)(claim >> 24), be[1] = (uint8_t)(claim >> 16);
    be[2] = (uint8_t)(claim >> 8), be[3] = (uint8_t)claim;
    savevm_put_command(q, SAVEVM_CMD_PACKAGED, 4, be);
    assert_int_equal(feed(e, q, true, msg, sizeof(msg)), -EFBIG);
    assert_non_null(strstr(msg, "package of 1048577 bytes exceeds the "
                                "1048576-byte limit"));
    teardown(state);

    setup(state);
    e = *state;
    active(e);
    uint64_t bound = vmshape_package_bound(&e->shape);
    assert_true(bound > e->shape.mem_size && bound < UINT32_MAX);
    claim = (uint32_t)bound + 1;
    be[0] = (uint8_t)(claim >> 24), be[1] = (uint8_t)(claim >> 16);
    be[2] = (uint8_t)(claim >> 8), be[3] = (uint8_t)claim;
    q = qfile_open_mem("primary");
    savevm_put_command(q, SAVEVM_CMD_PACKAGED, 4, be);
    assert_int_equal(feed(e, q, false, msg, sizeof(msg)), -EFBIG);
    assert_non_null(strstr(msg, "-byte limit"));
}

/* A package that validated while replication stopped is not applied. */
static void test_stopping(void **state)
{
    env *e = *state;
    active(e);
    side *was = copy_side(&e->sec);
    connection_close(e->p.conn, -1);
    qfile *q = qfile_open_mem("primary");
    put_package(e, q, PKG_GOOD, 3, 2);
    assert_int_equal(feed(e, q, false, NULL, 0), 0);
    assert_same(was, &e->sec);
    free_copy(was);
    apply_stats st;
    apply_get_stats(e->a, &st);
    assert_int_equal(st.last_id, 2);
    assert_non_null(strstr(st.last_refusal, "replication is stopping"));
}

/* ---- the primary's drop notice ---- */

/* Loads q to its end; 0 or -errno + msg, and why it stopped. */
static int feed_end(env *e, qfile *q, savevm_stop *why, char *msg,
                    size_t len)
{
    size_t n;
    const uint8_t *d = qfile_mem_data(q, &n);
    qfile *v = qfile_open_view(d, n, "primary");
    *why = SAVEVM_STOP_END;
    int r = apply_load(e->a, v, why);
    snprintf(msg, len, "%s", qfile_errmsg(v));
    qfile_close(v);
    qfile_close(q);
    return r;
}

static void put_drop(env *e, qfile *q, const dropnotice *d)
{
    dropnotice_put(q, e->n + 3, d);
}

/* Of the bring-up's pairing: kept, then EOF ends the stream cleanly. */
static void test_drop(void **state)
{
    env *e = *state;
    char msg[512];
    savevm_stop why;
    active(e);
    dropnotice d;
    dropnotice_make(&d, &e->shape.pair, DROPNOTICE_STOPPED,
                    "replication stopped\non request");
    qfile *q = qfile_open_mem("primary");
    put_drop(e, q, &d);
    savevm_put_eof(q);
    assert_int_equal(feed_end(e, q, &why, msg, sizeof(msg)), 0);
    assert_int_equal(why, SAVEVM_STOP_EOF);
    apply_stats st;
    apply_get_stats(e->a, &st);
    assert_true(st.dropped);
    assert_int_equal(st.drop.reason, DROPNOTICE_STOPPED);
    /* A control character never reaches a log. */
    assert_string_equal(st.drop.text, "replication stopped?on request");
    assert_true(pairing_equal(&st.drop.pair, &e->shape.pair));
    retpath_msg m;
    assert_int_equal(peer_next(&e->p, &m), 0);      /* nothing answered */
}

/* After the notice only EOF: a package is not applied, nor answered. */
static void test_drop_then_package(void **state)
{
    env *e = *state;
    char msg[512];
    savevm_stop why;
    active(e);
    dropnotice d;
    dropnotice_make(&d, &e->shape.pair, DROPNOTICE_GAVE_UP, "gave up");
    qfile *q = qfile_open_mem("primary");
    put_drop(e, q, &d);
    touch(e);
    side *was = copy_side(&e->sec);
    put_package(e, q, PKG_GOOD, 3, 2);
    assert_int_equal(feed_end(e, q, &why, msg, sizeof(msg)), -EPROTO);
    assert_non_null(strstr(msg, "a record after 'ftvm-drop'"));
    assert_same(was, &e->sec);
    free_copy(was);
    retpath_msg m;
    assert_int_equal(peer_next(&e->p, &m), 0);
    apply_stats st;
    apply_get_stats(e->a, &st);
    assert_true(st.dropped);
    assert_int_equal(st.last_id, 2);
}

/*
 * Of another pairing (id, or generation), before the VM's shape, cut
 * short, or with text that does not end within its bytes: the stream
 * ends as a protocol error and nothing says dropped.
 */
static void test_drop_refused(void **state)
{
    for (int i = 0; i < 6; i++) {
        env *e = *state;
        char msg[512];
        savevm_stop why;
        if (i == 3) {
            qfile *q = qfile_open_mem("primary");
            put_start(e, q);
            assert_int_equal(feed(e, q, true, msg, sizeof(msg)), 0);
        } else {
            active(e);
        }
        dropnotice d;
        dropnotice_make(&d, &e->shape.pair, DROPNOTICE_STOPPED, "x");
        if (i == 0)
            d.pair.id[0] ^= 1;
        if (i == 1)
            d.pair.generation++;
        if (i == 4)
            memset(d.text, 'a', sizeof(d.text));    /* no NUL in 128 */
        if (i == 5)
            d.reason = 0;
        qfile *q = qfile_open_mem("primary");
        if (i == 3) {
            /* Before the VM's shape: a stream of its own. */
            qfile_close(q);
            teardown(state);
            setup(state);
            e = *state;
            q = qfile_open_mem("primary");
            savevm_put_header(q);
            savevm_put_command(q, SAVEVM_CMD_OPEN_RETURN_PATH, 0, NULL);
            savevm_put_command(q, SAVEVM_CMD_ENABLE_COLO, 0, NULL);
            put_drop(e, q, &d);
            assert_true(feed(e, q, true, msg, sizeof(msg)) < 0);
            assert_non_null(strstr(msg, "'ftvm-drop' before the VM's shape"));
        } else if (i == 2) {
            /* Cut inside its text: the stream ends early. */
            put_drop(e, q, &d);
            size_t n;
            const uint8_t *b = qfile_mem_data(q, &n);
            qfile *cut = qfile_open_mem("primary");
            qfile_put_buf(cut, b, n - 60);
            qfile_close(q);
            assert_int_equal(feed_end(e, cut, &why, msg, sizeof(msg)),
                             -ENODATA);
        } else {
            put_drop(e, q, &d);
            savevm_put_eof(q);
            int r = feed_end(e, q, &why, msg, sizeof(msg));
            assert_true(r < 0);
            if (i < 2) {
                assert_int_equal(r, -EPROTO);
                assert_non_null(strstr(msg, "a drop notice of pairing "));
            } else if (i == 4) {
                assert_non_null(strstr(msg, "not NUL-terminated within "
                                            "128 bytes"));
            } else {
                assert_non_null(strstr(msg, "drop notice: reason 0"));
            }
        }
        apply_stats st;
        apply_get_stats(e->a, &st);
        assert_false(st.dropped);
        teardown(state);
        setup(state);
    }
}

/* The text is bounded: a longer one is cut, NUL-padded. */
static void test_drop_text_bound(void **state)
{
    (void)state;
    char long_text[400];
    memset(long_text, 'b', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    dropnotice d;
    dropnotice_make(&d, &peer_pair, DROPNOTICE_GAVE_UP, long_text);
    assert_int_equal(strlen(d.text), DROPNOTICE_TEXT_MAX);
    char rb[32];
    assert_string_equal(dropnotice_reason_name(2, rb, sizeof(rb)),
                        "the VM stopped");
    assert_string_equal(dropnotice_reason_name(77, rb, sizeof(rb)),
                        "reason 77");
}

/* ---- admission (the witness's check of the generation) ---- */

static int admit_rc;

static int admit(void *opaque, const vmshape *shape, uint64_t *decided,
                 char *err, size_t errlen)
{
    (void)opaque;
    *decided = 5;
    snprintf(err, errlen, "primary of generation %llu is older than "
             "generation 5 decided by the witness",
             (unsigned long long)shape->pair.generation);
    return admit_rc;
}

/* Refused: REFUSE with the reason, nothing created; admitted: as ever. */
static void test_admit(void **state)
{
    for (int i = 0; i < 2; i++) {
        env *e = *state;
        char msg[512];
        apply_free(e->a);
        admit_rc = i == 0 ? -EPERM : 0;
        assert_int_equal(apply_new(&e->a, &(apply_opts){
                             .conn = e->p.conn, .create = create,
                             .admit = admit, .opaque = e }), 0);
        qfile *q = qfile_open_mem("primary");
        put_start(e, q);
        int r = feed(e, q, true, msg, sizeof(msg));
        retpath_msg m;
        if (i == 0) {
            assert_int_equal(r, -EPERM);
            assert_non_null(strstr(msg, "primary of generation 1 is older "
                                        "than generation 5 decided"));
            assert_int_equal(e->creates, 0);
            assert_int_equal(peer_next(&e->p, &m), 1);
            assert_int_equal(m.type, RETPATH_REFUSE);
            assert_int_equal(m.value64, 5);
            assert_true(pairing_equal(&m.pair, &e->shape.pair));
            assert_non_null(strstr(m.text, "older than generation 5"));
        } else {
            assert_int_equal(r, 0);
            assert_int_equal(e->creates, 1);
            assert_int_equal(peer_next(&e->p, &m), 0);
        }
        teardown(state);
        setup(state);
    }
}

/* ---- COLO's input frames ---- */

/* A frame of len bytes, byte i being len + i, after checkpoint id. */
static void put_frame(env *e, qfile *q, uint64_t id, size_t len)
{
    uint8_t frame[COLOSEC_INPUT_FRAME_MAX];
    for (size_t i = 0; i < len; i++)
        frame[i] = (uint8_t)(len + i);
    colosec_put_input(q, colosec_input_section_id(e->n), id, frame, len);
}

/*
 * The records in r (closed here) inside package 3 (on 2), sealed: a new
 * stream to feed, as a primary that mixed the two up would send it.
 */
static qfile *in_package(env *e, qfile *r)
{
    size_t rn, n;
    const uint8_t *rd = qfile_mem_data(r, &rn);
    qfile *pkg = qfile_open_mem("package");
    trailer_put_pkg(pkg, e->n + 1, &(trailer_pkg){ .id = 3, .base = 2,
                                                   .pair = e->shape.pair });
    qfile_put_buf(pkg, rd, rn);
    qfile_close(r);
    qfile_crc_start_mem(pkg);
    trailer_put(pkg, e->n + 2, 3);
    savevm_put_eof(pkg);
    const uint8_t *d = qfile_mem_data(pkg, &n);
    qfile *q = qfile_open_mem("primary");
    savevm_put_packaged(q, d, (uint32_t)n);
    qfile_close(pkg);
    return q;
}

/*
 * A COLO stream: frames between packages reach the hook in order, each
 * between the checkpoints around it; they change nothing and need no
 * answer.
 */
static void test_colo_input(void **state)
{
    env *e = *state;
    e->colo = COLOSEC_MODE_COLO;
    active(e);
    side *was = copy_side(&e->sec);
    qfile *q = qfile_open_mem("primary");
    put_frame(e, q, 2, 60);
    put_frame(e, q, 2, COLOSEC_INPUT_FRAME_MAX);
    put_frame(e, q, 2, 1);
    assert_int_equal(feed(e, q, false, NULL, 0), 0);
    retpath_msg m;
    assert_int_equal(peer_next(&e->p, &m), 0);
    assert_same(was, &e->sec);
    free_copy(was);
    q = qfile_open_mem("primary");
    touch(e);
    put_package(e, q, PKG_GOOD, 3, 2);
    put_frame(e, q, 3, 100);
    savevm_put_ping(q, 5);
    put_frame(e, q, 3, 101);
    assert_int_equal(feed(e, q, false, NULL, 0), 0);
    assert_int_equal(peer_next(&e->p, &m), 1);
    assert_int_equal(m.type, RETPATH_ACK);
    assert_int_equal(m.value64, 3);
    m = answer(e);                  /* the PING's, in stream order */
    assert_int_equal(m.type, RETPATH_PONG);
    static const struct { uint64_t id; size_t len; uint64_t applied; }
        want[] = { { 2, 60, 2 }, { 2, 1514, 2 }, { 2, 1, 2 },
                   { 3, 100, 3 }, { 3, 101, 3 } };
    assert_int_equal(e->nin, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(e->in[i].id, want[i].id);
        assert_int_equal(e->in[i].len, want[i].len);
        assert_int_equal(e->in[i].first, (uint8_t)want[i].len);
        assert_int_equal(e->in[i].applied, want[i].applied);
    }
    apply_stats st;
    apply_get_stats(e->a, &st);
    assert_true(st.colo);
    assert_int_equal(st.colo_input_frames, 5);
    assert_int_equal(st.refused, 0);
}

/*
 * A COLO stream that ends in the drop notice: "ftvm-colo" and "ftvm-drop"
 * share section id n + 3 (both FULL, which no PART or END refers to), and
 * frames (n + 4) come between them: all taken, the drop too.
 */
static void test_colo_then_drop(void **state)
{
    env *e = *state;
    char msg[512];
    savevm_stop why;
    e->colo = COLOSEC_MODE_COLO;
    active(e);
    qfile *q = qfile_open_mem("primary");
    put_frame(e, q, 2, 60);
    dropnotice d;
    dropnotice_make(&d, &e->shape.pair, DROPNOTICE_STOPPED, "stopped");
    put_drop(e, q, &d);
    savevm_put_eof(q);
    assert_int_equal(feed_end(e, q, &why, msg, sizeof(msg)), 0);
    assert_int_equal(why, SAVEVM_STOP_EOF);
    apply_stats st;
    apply_get_stats(e->a, &st);
    assert_true(st.colo && st.dropped);
    assert_int_equal(st.colo_input_frames, 1);
    /* After the notice, a frame is a record too many. */
    teardown(state);
    setup(state);
    e = *state;
    e->colo = COLOSEC_MODE_COLO;
    active(e);
    q = qfile_open_mem("primary");
    put_drop(e, q, &d);
    put_frame(e, q, 2, 60);
    assert_int_equal(feed(e, q, false, msg, sizeof(msg)), -EPROTO);
    assert_non_null(strstr(msg, "a record after 'ftvm-drop'"));
    assert_int_equal(e->nin, 0);
}

/* A frame's damage ends the stream, naming the section. */
static void test_colo_input_malformed(void **state)
{
    env *e = *state;
    e->colo = COLOSEC_MODE_COLO;
    active(e);
    qfile *q = qfile_open_mem("primary");
    put_frame(e, q, 2, 60);
    size_t n;
    uint8_t *d = (uint8_t *)qfile_mem_data(q, &n);
    d[n - 5 - 1] = 1;           /* the last byte of its zero padding */
    char msg[512];
    assert_int_equal(feed(e, q, false, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "section 'ftvm-colo-in': byte 1513 past"));
    assert_int_equal(e->nin, 0);
}

/* Where no frame may be: each ends the stream as a protocol error. */
static void test_colo_input_refused(void **state)
{
    env *e = *state;
    char msg[512];

    /* A checkpoint-mode stream (no "ftvm-colo"). */
    active(e);
    qfile *q = qfile_open_mem("primary");
    put_frame(e, q, 2, 60);
    assert_int_equal(feed(e, q, false, msg, sizeof(msg)), -EPROTO);
    assert_non_null(strstr(msg, "'ftvm-colo-in' in a checkpoint-mode "
                                "stream"));
    teardown(state);

    /* "ftvm-colo" saying checkpoint mode is no COLO stream either. */
    setup(state);
    e = *state;
    e->colo = 0;
    active(e);
    q = qfile_open_mem("primary");
    put_frame(e, q, 2, 60);
    assert_int_equal(feed(e, q, false, msg, sizeof(msg)), -EPROTO);
    assert_non_null(strstr(msg, "in a checkpoint-mode stream"));
    teardown(state);

    /* Before the VM's shape. */
    setup(state);
    e = *state;
    q = qfile_open_mem("primary");
    savevm_put_header(q);
    savevm_put_command(q, SAVEVM_CMD_OPEN_RETURN_PATH, 0, NULL);
    savevm_put_command(q, SAVEVM_CMD_ENABLE_COLO, 0, NULL);
    put_frame(e, q, 0, 60);
    assert_int_equal(feed(e, q, true, msg, sizeof(msg)), -EPROTO);
    assert_non_null(strstr(msg, "'ftvm-colo-in' before the VM's shape"));
    assert_int_equal(e->creates, 0);
    teardown(state);

    /* Inside a package: not NACKed as a bad checkpoint, the stream ends. */
    setup(state);
    e = *state;
    e->colo = COLOSEC_MODE_COLO;
    active(e);
    q = qfile_open_mem("primary");
    put_frame(e, q, 2, 60);
    q = in_package(e, q);
    assert_int_equal(feed(e, q, false, msg, sizeof(msg)), -EPROTO);
    assert_non_null(strstr(msg, "'ftvm-colo-in' inside a package"));
    retpath_msg m;
    assert_int_equal(peer_next(&e->p, &m), 0);      /* no NACK */
    assert_int_equal(e->nin, 0);
    apply_stats st;
    apply_get_stats(e->a, &st);
    assert_int_equal(st.refused, 0);
    assert_int_equal(st.colo_input_frames, 0);
}

/*
 * The exact release's record: in a COLO stream it reaches the hook and
 * needs no answer from apply; in a checkpoint-mode stream, or inside a
 * package, it ends the stream as a protocol error, never reaching it.
 */
static void test_colo_release(void **state)
{
    env *e = *state;
    char msg[512];
    e->colo = COLOSEC_MODE_COLO;
    active(e);
    qfile *q = qfile_open_mem("primary");
    colosec_put_release(q, colosec_release_section_id(e->n), 2, 77);
    assert_int_equal(feed(e, q, false, NULL, 0), 0);
    assert_int_equal(e->nrel, 1);
    assert_int_equal(e->rel[0].id, 2);
    assert_int_equal(e->rel[0].console, 77);
    retpath_msg m;
    assert_int_equal(peer_next(&e->p, &m), 0);
    teardown(state);

    setup(state);
    e = *state;
    active(e);
    q = qfile_open_mem("primary");
    colosec_put_release(q, colosec_release_section_id(e->n), 2, 77);
    assert_int_equal(feed(e, q, false, msg, sizeof(msg)), -EPROTO);
    assert_non_null(strstr(msg, "'ftvm-colo-rel' in a checkpoint-mode "
                                "stream"));
    assert_int_equal(e->nrel, 0);
    teardown(state);

    setup(state);
    e = *state;
    e->colo = COLOSEC_MODE_COLO;
    active(e);
    q = qfile_open_mem("primary");
    colosec_put_release(q, colosec_release_section_id(e->n), 2, 77);
    q = in_package(e, q);
    assert_int_equal(feed(e, q, false, msg, sizeof(msg)), -EPROTO);
    assert_non_null(strstr(msg, "'ftvm-colo-rel' inside a package"));
    assert_int_equal(peer_next(&e->p, &m), 0);      /* no NACK */
    assert_int_equal(e->nrel, 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    /* As the process does: a write to a closed socket is an error. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        T(test_good_packages),
        T(test_newer_id_on_last),
        T(test_not_newer),
        T(test_base_not_last),
        T(test_second_header),
        T(test_no_header),
        T(test_section_after_trailer),
        T(test_trailer_id),
        T(test_damaged_byte),
        T(test_no_trailer),
        T(test_nested),
        T(test_refusals_then_full),
        T(test_refused_streams),
        T(test_section_outside_package),
        T(test_slow_apply_is_not_silence),
        T(test_stopping),
        T(test_foreign_package),
        T(test_vm_name),
        T(test_package_bound),
        T(test_drop),
        T(test_drop_then_package),
        T(test_drop_refused),
        T(test_drop_text_bound),
        T(test_admit),
        T(test_colo_input),
        T(test_colo_input_malformed),
        T(test_colo_then_drop),
        T(test_colo_input_refused),
        T(test_colo_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
