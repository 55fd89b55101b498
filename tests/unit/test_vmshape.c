/*
 * Unit tests for vm/vmshape: the "ftvm-vm" section, its bytes, its VM
 * description entry, and what its loader refuses.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm/vm.h"
#include "vm/vmshape.h"

static const vmshape shape = {
    .mem_size = 64 << 20, .vcpus = 2, .has_net = true,
    .mac = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef },
    .pair = { .id = { 0xa0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                      0xaf },
              .name = "web-1", .generation = 0x0102030405060708ull },
    .machine = VM_MACHINE_PC,
    .disk_size = 64ull << 20,
};
/* Where the name starts in the section's bytes. */
#define NAME_AT (21 + 8 + 4 + 1 + 6 + 16)
#define MACHINE_AT (NAME_AT + 64 + 8)
#define DISK_AT (MACHINE_AT + 1)

/* The section as vmshape_put writes it. */
static uint8_t *put(size_t *n)
{
    qfile *f = qfile_open_mem("w");
    vmshape_put(f, 7, &shape);
    const uint8_t *b = qfile_mem_data(f, n);
    uint8_t *copy = malloc(*n);
    memcpy(copy, b, *n);
    qfile_close(f);
    return copy;
}

/* Parses the header of b, then hands its body to vmshape_load. */
static int load(const uint8_t *b, size_t n, uint32_t version, vmshape *out,
                char *msg, size_t msglen)
{
    qfile *r = qfile_open_view(b, n, "r");
    savevm_section sec = {.type = qfile_get_u8(r)};
    sec.section_id = qfile_get_be32(r);
    qfile_get_str(r, sec.idstr);
    sec.instance_id = qfile_get_be32(r);
    qfile_get_be32(r);
    sec.version_id = version;
    int rc = vmshape_load(r, &sec, out);
    if (rc == 0) {
        assert_int_equal(qfile_get_u8(r), SAVEVM_SECTION_FOOTER);
        assert_int_equal(qfile_get_be32(r), 7);
        assert_true(qfile_at_eof(r));
    }
    snprintf(msg, msglen, "%s", qfile_errmsg(r));
    qfile_close(r);
    return rc;
}

static void test_bytes_and_roundtrip(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = put(&n);
    static const uint8_t want[] = {
        0x04, 0, 0, 0, 7, 7, 'f', 't', 'v', 'm', '-', 'v', 'm', 0, 0, 0, 0,
        0, 0, 0, 6,                                 /* header, version 6 */
        0, 0, 0, 0, 0x04, 0, 0, 0,                  /* mem_size */
        0, 0, 0, 2,                                 /* vcpus */
        1,                                          /* has_net */
        0x52, 0x54, 0x00, 0xab, 0xcd, 0xef,         /* mac */
        0xa0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xaf, /* id */
        'w', 'e', 'b', '-', '1', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* name */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        1, 2, 3, 4, 5, 6, 7, 8,                     /* generation */
        1,                                          /* machine: PC */
        0, 0, 0, 0, 0x04, 0, 0, 0,                  /* disk_size */
        0x7e, 0, 0, 0, 7,                           /* footer */
    };
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(b, want, n);
    vmshape got;
    char msg[256];
    assert_int_equal(load(b, n, 6, &got, msg, sizeof(msg)), 0);
    assert_int_equal(got.machine, VM_MACHINE_PC);
    assert_int_equal(got.disk_size, 64ull << 20);
    assert_memory_equal(&got.mem_size, &shape.mem_size, 8);
    assert_int_equal(got.vcpus, 2);
    assert_true(got.has_net);
    assert_memory_equal(got.mac, shape.mac, 6);
    assert_true(pairing_equal(&got.pair, &shape.pair));
    free(b);
}

static void test_refused(void **state)
{
    (void)state;
    size_t n;
    uint8_t *b = put(&n);
    vmshape got;
    char msg[256];
    assert_int_equal(load(b, n, 7, &got, msg, sizeof(msg)), -ENOTSUP);
    assert_non_null(strstr(msg, "'ftvm-vm': version 7 is newer than 6"));
    /* Version 5 had no disk: a VM's disk would be left behind. */
    assert_int_equal(load(b, n, 5, &got, msg, sizeof(msg)), -ENOTSUP);
    assert_non_null(strstr(msg, "'ftvm-vm': version 5 is older than 6"));
    /* Version 4 had no machine: a Linux VM's would be made freestanding. */
    assert_int_equal(load(b, n, 4, &got, msg, sizeof(msg)), -ENOTSUP);
    assert_non_null(strstr(msg, "'ftvm-vm': version 4 is older than 6"));
    /*
     * Version 2 had no generation; a primary of 3 ends a secondary with a
     * bare EOF, never "ftvm-drop": both are refused.
     */
    assert_int_equal(load(b, n, 2, &got, msg, sizeof(msg)), -ENOTSUP);
    assert_non_null(strstr(msg, "'ftvm-vm': version 2 is older than 6"));
    assert_int_equal(load(b, n, 3, &got, msg, sizeof(msg)), -ENOTSUP);
    assert_non_null(strstr(msg, "'ftvm-vm': version 3 is older than 6"));

    b[MACHINE_AT] = 2;          /* no such machine */
    assert_int_equal(load(b, n, 6, &got, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "VM shape: machine 2"));
    b[MACHINE_AT] = 1;
    b[21 + 3] = 1;              /* a Linux guest with 4 GiB + 64 MiB */
    assert_int_equal(load(b, n, 6, &got, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "a Linux guest with 4160 MiB of RAM "
                               "(at most 3072)"));
    b[MACHINE_AT] = 0;          /* fine for a freestanding one */
    assert_int_equal(load(b, n, 6, &got, msg, sizeof(msg)), 0);
    b[DISK_AT + 7] = 1;         /* a disk of 64 MiB + 1 byte */
    assert_int_equal(load(b, n, 6, &got, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "VM shape: a disk of 67108865 bytes"));
    b[DISK_AT + 7] = 0;
    b[DISK_AT + 2] = 2;         /* 2 TiB */
    assert_int_equal(load(b, n, 6, &got, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "(a multiple of 512 up to 1 TiB)"));
    b[DISK_AT + 2] = 0;
    b[21 + 3] = 0;
    b[21 + 12] = 2;             /* has_net */
    assert_int_equal(load(b, n, 6, &got, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "field 'has_net': bool byte 0x02"));
    b[21 + 12] = 0;
    b[21 + 11] = 0;             /* vcpus 0 */
    assert_int_equal(load(b, n, 6, &got, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "VM shape: 0 vCPUs"));
    b[21 + 11] = 2;
    b[21 + 7] = 1;              /* RAM not a multiple of 2 MiB */
    assert_int_equal(load(b, n, 6, &got, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "VM shape: RAM of"));
    b[21 + 7] = 0;
    b[NAME_AT + 3] = '/';       /* a name no key may hold */
    assert_int_equal(load(b, n, 6, &got, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "VM shape: VM name 'web/1': only letters"));
    b[NAME_AT] = 0;             /* none */
    assert_int_equal(load(b, n, 6, &got, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "VM shape: VM name '': 1 to 63"));
    memset(b + NAME_AT, 'a', 64);   /* not terminated */
    assert_int_equal(load(b, n, 6, &got, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "not NUL-terminated"));
    memset(b + NAME_AT, 0, 64);
    memcpy(b + NAME_AT, "web-1", 5);
    memset(b + NAME_AT + 64, 0, 8);     /* generation 0 */
    assert_int_equal(load(b, n, 6, &got, msg, sizeof(msg)), -EINVAL);
    assert_non_null(strstr(msg, "VM shape: pairing of VM 'web-1': "
                               "generation 0"));
    free(b);
}

/* What a package of a VM of a shape may claim to hold. */
static void test_package_bound(void **state)
{
    (void)state;
    vmshape s = shape;
    s.disk_size = 0;
    uint64_t b64 = vmshape_package_bound(&s);
    /* Every page with room for its record header, and device state. */
    assert_true(b64 > s.mem_size + s.mem_size / 4096 * 8);
    assert_true(b64 < s.mem_size * 2);
    s.vcpus = 4;
    assert_true(vmshape_package_bound(&s) > b64);
    /* A disk's every chunk, with its record header. */
    s.vcpus = 2;
    s.disk_size = 64ull << 20;
    assert_true(vmshape_package_bound(&s) > b64 + s.disk_size + 64 * 9);
}

/* The default name, from an image's path. */
static void test_default_name(void **state)
{
    (void)state;
    char n[PAIRING_NAME_MAX + 1], err[160];
    pairing_default_name("guests/counter.elf", n);
    assert_string_equal(n, "counter");
    pairing_default_name("/x/my guest+1.v2.elf", n);
    assert_string_equal(n, "my-guest-1.v2");
    pairing_default_name("/x/.elf", n);
    assert_string_equal(n, ".elf");
    pairing_default_name("", n);
    assert_string_equal(n, PAIRING_DEFAULT_NAME);
    char longname[200];
    memset(longname, 'k', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    pairing_default_name(longname, n);
    assert_int_equal(strlen(n), PAIRING_NAME_MAX);
    assert_int_equal(pairing_check_name(n, err, sizeof(err)), 0);
    assert_int_equal(pairing_check_name(longname, err, sizeof(err)), -EINVAL);
    /* Two draws differ (128 random bits); both keep the name. */
    pairing a, b;
    assert_int_equal(pairing_draw(&a, "vm", 1), 0);
    assert_int_equal(pairing_draw(&b, "vm", 1), 0);
    assert_false(pairing_equal(&a, &b));
    assert_string_equal(a.name, "vm");
    b = a;
    assert_true(pairing_equal(&a, &b));
    /* The name is NUL-padded whole: it goes on the wire as 64 bytes. */
    memset(&b, 0xa5, sizeof(b));
    assert_int_equal(pairing_draw(&b, "vm", 1), 0);
    for (size_t i = 2; i < sizeof(b.name); i++)
        assert_int_equal(b.name[i], 0);
    memset(n, 0xa5, sizeof(n));
    pairing_default_name("dir/abc.elf", n);
    for (size_t i = 3; i < sizeof(n); i++)
        assert_int_equal(n[i], 0);
    /* A new id for the same name, as each bring-up draws. */
    assert_int_equal(pairing_draw(&b, b.name, 1), 0);
    assert_string_equal(b.name, "vm");
    assert_false(pairing_equal(&a, &b));
    b = a;
    b.name[0] = 'w';
    assert_false(pairing_equal(&a, &b));
}

/* The description entry is the table's, as a device's would be. */
static void test_described(void **state)
{
    (void)state;
    json_t *devices = json_array();
    assert_int_equal(vmshape_describe(devices), 0);
    char *text = json_dumps(devices, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text,
        "[{\"name\":\"ftvm-vm\",\"instance_id\":0,\"vmsd_name\":\"ftvm-vm\","
        "\"version\":6,\"fields\":["
        "{\"name\":\"mem_size\",\"type\":\"uint64\",\"size\":8},"
        "{\"name\":\"vcpus\",\"type\":\"uint32\",\"size\":4},"
        "{\"name\":\"has_net\",\"type\":\"bool\",\"size\":1},"
        "{\"name\":\"mac\",\"type\":\"buffer\",\"size\":6},"
        "{\"name\":\"pairing\",\"type\":\"buffer\",\"size\":16},"
        "{\"name\":\"name\",\"type\":\"buffer\",\"size\":64},"
        "{\"name\":\"generation\",\"type\":\"uint64\",\"size\":8},"
        "{\"name\":\"machine\",\"type\":\"uint8\",\"size\":1},"
        "{\"name\":\"disk_size\",\"type\":\"uint64\",\"size\":8}]}]");
    free(text);
    json_decref(devices);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_and_roundtrip),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_described),
        cmocka_unit_test(test_package_bound),
        cmocka_unit_test(test_default_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
