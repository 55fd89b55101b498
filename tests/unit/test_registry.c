/*
 * Unit tests for devstate/registry: section ids, save order, the live-state
 * callbacks, the sv_target dispatch and its refusals, and a whole snapshot
 * saved and loaded back through savevm's all-or-nothing loader.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "devstate/registry.h"
#include "devstate/vmdesc.h"

typedef struct counter {
    uint32_t value;
    uint8_t tag[4];
} counter;

static const vmstate_field counter_fields[] = {
    {VMSTATE_SCALAR(counter, value)},
    {VMSTATE_BUFFER(counter, tag)},
    VMSTATE_END,
};
static const vmstate_desc counter_desc = {
    .name = "counter", .version = 3, .minimum_version = 2,
    .size = sizeof(counter), .fields = counter_fields,
};

/* A live entry that streams a log of bytes, and records what it is told. */
typedef struct live {
    int setups, iterates, completes, loads;
    int iterate_rounds;     /* rounds before save_iterate says it is done */
    uint32_t last_version;
    savevm_pass last_pass;
    uint8_t got[16];
    size_t ngot;
} live;

static int live_setup(qfile *f, void *opaque)
{
    live *l = opaque;
    l->setups++;
    qfile_put_u8(f, 1);
    qfile_put_u8(f, 'S');
    return 0;
}

static int live_iterate(qfile *f, void *opaque)
{
    live *l = opaque;
    l->iterates++;
    qfile_put_u8(f, 1);
    qfile_put_u8(f, 'I');
    return l->iterates >= l->iterate_rounds ? 1 : 0;
}

static int live_complete(qfile *f, void *opaque)
{
    live *l = opaque;
    l->completes++;
    qfile_put_u8(f, 2);
    qfile_put_u8(f, 'E');
    qfile_put_u8(f, 'E');
    return 0;
}

static int live_load(qfile *f, void *opaque, uint32_t version, savevm_pass pass)
{
    live *l = opaque;
    uint8_t n = qfile_get_u8(f);
    const uint8_t *p = qfile_get_ptr(f, n);
    if (!p)
        return qfile_error(f);
    l->loads++;
    l->last_version = version;
    l->last_pass = pass;
    if (pass == SAVEVM_PASS_APPLY && l->ngot + n <= sizeof(l->got)) {
        memcpy(l->got + l->ngot, p, n);
        l->ngot += n;
    }
    return 0;
}

static const registry_live_ops live_ops = {
    .version = 4, .minimum_version = 4,
    .save_setup = live_setup, .save_iterate = live_iterate,
    .save_complete = live_complete, .load = live_load,
};

/* ---- registration ---- */

static void test_section_ids_and_refusals(void **state)
{
    (void)state;
    registry *r = registry_new();
    counter a = { 0 }, b = { 0 };
    live l = { 0 };

    assert_int_equal(registry_add_device(r, "a", 0, 0, &counter_desc, &a), 0);
    assert_int_equal(
        registry_add_live(r, "ram", 0, REGISTRY_PRIO_RAM, &live_ops, &l), 1);
    assert_int_equal(registry_add_device(r, "a", REGISTRY_INSTANCE_AUTO, 0,
                                         &counter_desc, &b),
                     2);
    assert_int_equal(registry_instance_id(r, 2), 1);
    assert_int_equal(registry_add_device(r, "a", 1, 0, &counter_desc, &b),
                     -EEXIST);
    char longname[300];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(registry_add_device(r, longname, 0, 0, &counter_desc, &b),
                     -ENAMETOOLONG);
    vmstate_desc broken = counter_desc;
    broken.size = 2;
    assert_int_equal(registry_add_device(r, "broken", 0, 0, &broken, &b),
                     -EINVAL);
    registry_live_ops no_load = live_ops;
    no_load.load = NULL;
    assert_int_equal(registry_add_live(r, "x", 0, 0, &no_load, &l), -EINVAL);
    assert_int_equal(registry_count(r), 3);
    registry_free(r);
}

/* Reads one FULL section's framing around a counter body. */
static void expect_full(qfile *f, uint32_t id, const char *idstr,
                        uint32_t inst, uint32_t value)
{
    char name[256];
    assert_int_equal(qfile_get_u8(f), SAVEVM_SECTION_FULL);
    assert_int_equal(qfile_get_be32(f), id);
    qfile_get_str(f, name);
    assert_string_equal(name, idstr);
    assert_int_equal(qfile_get_be32(f), inst);
    assert_int_equal(qfile_get_be32(f), counter_desc.version);
    assert_int_equal(qfile_get_be32(f), value);
    qfile_skip(f, 4);
    assert_int_equal(qfile_get_u8(f), SAVEVM_SECTION_FOOTER);
    assert_int_equal(qfile_get_be32(f), id);
    assert_int_equal(qfile_error(f), 0);
}

static void test_priority_order(void **state)
{
    (void)state;
    registry *r = registry_new();
    counter c[4] = { { 10, "" }, { 11, "" }, { 12, "" }, { 13, "" } };
    static const int prio[4] = { 0, 10, 0, 10 };
    static const char *const names[4] = { "p0a", "p10a", "p0b", "p10b" };
    for (int i = 0; i < 4; i++)
        assert_int_equal(
            registry_add_device(r, names[i], 0, prio[i], &counter_desc, &c[i]),
            i);

    qfile *out = qfile_open_mem("out");
    json_t *devs = json_array();
    assert_int_equal(registry_save_devices(r, out, devs), 0);
    size_t len;
    const uint8_t *p = qfile_mem_data(out, &len);
    qfile *in = qfile_open_view(p, len, "in");
    expect_full(in, 1, "p10a", 0, 11);
    expect_full(in, 3, "p10b", 0, 13);
    expect_full(in, 0, "p0a", 0, 10);
    expect_full(in, 2, "p0b", 0, 12);
    assert_true(qfile_at_eof(in));
    qfile_close(in);

    assert_int_equal(json_array_size(devs), 4);
    json_t *first = json_array_get(devs, 0);
    assert_string_equal(json_string_value(json_object_get(first, "name")),
                        "p10a");
    assert_string_equal(json_string_value(json_object_get(first,
                                                          "vmsd_name")),
                        "counter");
    json_decref(devs);
    qfile_close(out);
    registry_free(r);
}

/* ---- the live entries ---- */

static void test_live_callbacks(void **state)
{
    (void)state;
    registry *r = registry_new();
    live l1 = { .iterate_rounds = 2 }, l2 = { .iterate_rounds = 1 };
    assert_int_equal(registry_add_live(r, "one", 0, 5, &live_ops, &l1), 0);
    assert_int_equal(registry_add_live(r, "two", 0, 5, &live_ops, &l2), 1);

    qfile *f = qfile_open_mem("out");
    assert_int_equal(registry_save_setup(r, f), 0);
    assert_int_equal(l1.setups, 1);
    assert_int_equal(l2.setups, 1);

    /* "one" needs two rounds; "two" waits behind it. */
    assert_int_equal(registry_save_iterate(r, f), 0);
    assert_int_equal(l1.iterates, 1);
    assert_int_equal(l2.iterates, 0);
    assert_int_equal(registry_save_iterate(r, f), 1);
    assert_int_equal(l1.iterates, 2);
    assert_int_equal(l2.iterates, 1);
    /* Everyone caught up: the next call is a new round for both. */
    assert_int_equal(registry_save_iterate(r, f), 1);
    assert_int_equal(l1.iterates, 3);
    assert_int_equal(l2.iterates, 2);

    assert_int_equal(registry_save_complete(r, f), 0);
    assert_int_equal(l1.completes, 1);
    assert_int_equal(l2.completes, 1);

    /* START one, START two, PART one, PART one, PART two, PART one,
     * PART two, END, END. */
    size_t len;
    const uint8_t *p = qfile_mem_data(f, &len);
    static const uint8_t start_one[] = {
        SAVEVM_SECTION_START,
        0,
        0,
        0,
        0,
        3,
        'o',
        'n',
        'e',
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        4,
        1,
        'S',
        SAVEVM_SECTION_FOOTER,
        0,
        0,
        0,
        0,
    };
    assert_memory_equal(p, start_one, sizeof(start_one));
    static const uint8_t part_one[] = {
        SAVEVM_SECTION_PART,   0, 0, 0, 0, 1, 'I',
        SAVEVM_SECTION_FOOTER, 0, 0, 0, 0,
    };
    const uint8_t *parts = p + 2 * sizeof(start_one);
    assert_memory_equal(parts, part_one, sizeof(part_one));
    assert_memory_equal(parts + sizeof(part_one), part_one,
                        sizeof(part_one));
    assert_int_equal(parts[2 * sizeof(part_one) + 4], 1);   /* PART two */
    assert_memory_equal(parts + 3 * sizeof(part_one), part_one,
                        sizeof(part_one));
    assert_int_equal(len, 2 * sizeof(start_one) + 5 * sizeof(part_one) +
                     2 * (sizeof(part_one) + 1));
    qfile_close(f);
    registry_free(r);
}

/* ---- dispatch of loaded sections ---- */

static int call_section(registry *r, const char *idstr, uint32_t inst,
                        uint32_t version, savevm_type type, char *msg,
                        size_t msglen)
{
    static const uint8_t body[8] = { 0, 0, 0, 9, 't', 'a', 'g', '!' };
    qfile *f = qfile_open_view(body, sizeof(body), "in");
    savevm_section sec = {
        .type = type, .instance_id = inst, .version_id = version};
    snprintf(sec.idstr, sizeof(sec.idstr), "%s", idstr);
    int rc = registry_target_ops.section(r, f, &sec, SAVEVM_PASS_APPLY);
    snprintf(msg, msglen, "%s", qfile_errmsg(f));
    qfile_close(f);
    return rc;
}

static void test_dispatch_refusals(void **state)
{
    (void)state;
    registry *r = registry_new();
    counter c = { 0 };
    assert_int_equal(registry_add_device(r, "foo", 2, 0, &counter_desc, &c), 0);
    char msg[600];

    assert_int_equal(
        call_section(r, "foo", 3, 3, SAVEVM_SECTION_FULL, msg, sizeof(msg)),
        -ENOENT);
    assert_non_null(strstr(msg, "unknown section 'foo' instance 3"));
    assert_int_equal(
        call_section(r, "bar", 2, 3, SAVEVM_SECTION_FULL, msg, sizeof(msg)),
        -ENOENT);
    assert_non_null(strstr(msg, "unknown section 'bar' instance 2"));

    assert_int_equal(
        call_section(r, "foo", 2, 4, SAVEVM_SECTION_FULL, msg, sizeof(msg)),
        -ENOTSUP);
    assert_non_null(strstr(msg, "section 'foo' instance 2: version 4 is "
                                "newer than 3"));
    assert_int_equal(
        call_section(r, "foo", 2, 1, SAVEVM_SECTION_FULL, msg, sizeof(msg)),
        -ENOTSUP);
    assert_non_null(strstr(msg, "section 'foo' instance 2: version 1 is "
                                "older than 2"));
    assert_int_equal(
        call_section(r, "foo", 2, 3, SAVEVM_SECTION_START, msg, sizeof(msg)),
        -EINVAL);
    assert_non_null(strstr(msg, "SECTION_START"));
    assert_int_equal(c.value, 0);

    assert_int_equal(
        call_section(r, "foo", 2, 2, SAVEVM_SECTION_FULL, msg, sizeof(msg)),
        0);
    assert_int_equal(c.value, 9);
    assert_memory_equal(c.tag, "tag!", 4);
    registry_free(r);
}

/* ---- a whole snapshot ---- */

typedef struct machine {
    counter a, b, c;
    live ram;
} machine;

static registry *machine_registry(machine *m)
{
    registry *r = registry_new();
    assert_int_equal(
        registry_add_device(r, "timer", 0, 0, &counter_desc, &m->a), 0);
    assert_int_equal(
        registry_add_live(r, "ram", 0, REGISTRY_PRIO_RAM, &live_ops, &m->ram),
        1);
    assert_int_equal(
        registry_add_device(r, "serial", 0, 0, &counter_desc, &m->b), 2);
    assert_int_equal(
        registry_add_device(r, "serial", 1, 0, &counter_desc, &m->c), 3);
    return r;
}

static uint8_t *save_snapshot(machine *m, size_t *len)
{
    registry *r = machine_registry(m);
    qfile *f = qfile_open_mem("snap");
    assert_int_equal(registry_save_stream(r, f), 0);
    const uint8_t *p = qfile_mem_data(f, len);
    uint8_t *copy = malloc(*len);
    memcpy(copy, p, *len);
    qfile_close(f);
    registry_free(r);
    return copy;
}

static void test_stream_roundtrip(void **state)
{
    (void)state;
    machine src = { { 1, "aaaa" }, { 2, "bbbb" }, { 3, "cccc" }, { 0 } };
    size_t len;
    uint8_t *snap = save_snapshot(&src, &len);
    assert_int_equal(src.ram.setups, 1);
    assert_int_equal(src.ram.completes, 1);
    assert_int_equal(src.ram.iterates, 0);

    machine dst = { 0 };
    registry *r = machine_registry(&dst);
    savevm_loader *l = savevm_loader_new(&registry_target_ops, r, NULL);
    qfile *f = qfile_open_view(snap, len, "snap");
    int rc = savevm_load_checked(l, f);
    if (rc)
        fail_msg("%s", qfile_errmsg(f));
    assert_int_equal(dst.a.value, 1);
    assert_memory_equal(dst.b.tag, "bbbb", 4);
    assert_int_equal(dst.c.value, 3);
    assert_int_equal(dst.ram.loads, 4);     /* two sections, two passes */
    assert_int_equal(dst.ram.last_version, 4);
    assert_int_equal(dst.ram.last_pass, SAVEVM_PASS_APPLY);
    assert_int_equal(dst.ram.ngot, 3);
    assert_memory_equal(dst.ram.got, "SEE", 3);
    qfile_close(f);

    /* The description at the end lists the devices in save order. */
    f = qfile_open_view(snap, len, "snap");
    savevm_loader *l2 = savevm_loader_new(&registry_target_ops, r, NULL);
    assert_int_equal(savevm_load_header(l2, f), 0);
    savevm_stop why;
    assert_int_equal(
        savevm_load_main(l2, f, SAVEVM_PASS_VALIDATE, false, &why), 0);
    char *json;
    uint32_t jlen;
    assert_int_equal(savevm_load_vmdesc(f, &json, &jlen), 0);
    assert_non_null(json);
    json_t *vmdesc = json_loads(json, 0, NULL);
    assert_non_null(vmdesc);
    assert_int_equal(json_integer_value(json_object_get(vmdesc,
                                                        "page_size")), 4096);
    json_t *devs = vmdesc_devices(vmdesc);
    assert_int_equal(json_array_size(devs), 3);
    assert_non_null(vmdesc_find_device(vmdesc, "serial", 1));
    assert_null(vmdesc_find_device(vmdesc, "ram", 0));
    json_decref(vmdesc);
    free(json);
    qfile_close(f);
    savevm_loader_free(l2);
    savevm_loader_free(l);
    registry_free(r);
    free(snap);
}

static void test_stream_bad_device_changes_nothing(void **state)
{
    (void)state;
    machine src = { { 1, "aaaa" }, { 2, "bbbb" }, { 3, "cccc" }, { 0 } };
    size_t len;
    uint8_t *snap = save_snapshot(&src, &len);

    /* A loader that lacks serial instance 1 refuses the whole stream. */
    machine dst = { { 7, "zzzz" }, { 8, "yyyy" }, { 9, "xxxx" }, { 0 } };
    registry *r = registry_new();
    assert_int_equal(
        registry_add_device(r, "timer", 0, 0, &counter_desc, &dst.a), 0);
    assert_int_equal(registry_add_live(r, "ram", 0, 0, &live_ops, &dst.ram),
                     1);
    assert_int_equal(
        registry_add_device(r, "serial", 0, 0, &counter_desc, &dst.b), 2);
    savevm_loader *l = savevm_loader_new(&registry_target_ops, r, NULL);
    qfile *f = qfile_open_view(snap, len, "snap");
    assert_int_equal(savevm_load_checked(l, f), -ENOENT);
    assert_non_null(strstr(qfile_errmsg(f), "unknown section 'serial' "
                                            "instance 1"));
    assert_int_equal(dst.a.value, 7);
    assert_int_equal(dst.b.value, 8);
    assert_int_equal(dst.ram.ngot, 0);
    qfile_close(f);
    savevm_loader_free(l);
    registry_free(r);
    free(snap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_section_ids_and_refusals),
        cmocka_unit_test(test_priority_order),
        cmocka_unit_test(test_live_callbacks),
        cmocka_unit_test(test_dispatch_refusals),
        cmocka_unit_test(test_stream_roundtrip),
        cmocka_unit_test(test_stream_bad_device_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
