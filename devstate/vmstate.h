/*
 * vmstate: a device's state described as a static table of typed fields.
 *
 * A device declares once, next to its struct, which members make up its
 * migratable state, of what type, and from which version on.  The same table
 * drives saving, the two-pass load (VALIDATE on a scratch copy, then APPLY)
 * and the VM description JSON, so the three can never disagree.  The bytes
 * follow QEMU's encoding: integers big-endian, bools one byte,
 * buffers raw, nested structs inline, optional parts as subsections.
 * docs/devstate.md gives the layout byte by byte.
 *
 * A table looks like this:
 *
 *     static const vmstate_field uart_fields[] = {
 *         { VMSTATE_SCALAR(uart, lsr) },
 *         { VMSTATE_ARRAY(uart, scratch) },
 *         { VMSTATE_SCALAR(uart, fifo_len) },
 *         { VMSTATE_VBUFFER(uart, fifo, fifo_len) },
 *         { VMSTATE_SCALAR(uart, divisor), .version = 2 },
 *         VMSTATE_END,
 *     };
 *     const vmstate_desc uart_desc = {
 *         .name = "uart", .version = 2, .minimum_version = 1,
 *         .size = sizeof(uart), .fields = uart_fields,
 *     };
 */
#ifndef FTVM_DEVSTATE_VMSTATE_H
#define FTVM_DEVSTATE_VMSTATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/qfile.h"
#include "checkpoint/savevm.h"

typedef enum vmstate_type {
    VMSTATE_T_U8,
    VMSTATE_T_U16,
    VMSTATE_T_U32,
    VMSTATE_T_U64,
    VMSTATE_T_I8,
    VMSTATE_T_I16,
    VMSTATE_T_I32,
    VMSTATE_T_I64,
    VMSTATE_T_BOOL,
    VMSTATE_T_BUFFER,  /* size bytes, raw */
    VMSTATE_T_VBUFFER, /* count_from bytes (at most max), raw */
    VMSTATE_T_STRUCT,  /* another description, inline */
} vmstate_type;

typedef struct vmstate_desc vmstate_desc;

typedef struct vmstate_field {
    const char *name;
    vmstate_type type;
    size_t offset;
    /*
     * Bytes of one element in memory: the width of an integer, the length
     * of a BUFFER, the capacity of an inline VBUFFER, the struct's size.
     */
    size_t size;
    /* Elements of a fixed array; 0 means a single element, not an array. */
    uint32_t count;
    /*
     * Name of an integer field earlier in the same table holding the number
     * of elements (for a VBUFFER, of bytes); a value above max is refused
     * on save and on load.
     */
    const char *count_from;
    uint32_t max;
    /*
     * The member is a pointer to the elements rather than the elements.
     * The storage belongs to the device and must hold count (or max)
     * elements whenever the field is saved or loaded; vms never allocates
     * or frees it.
     */
    bool pointer;
    const vmstate_desc *desc;   /* VMSTATE_T_STRUCT */
    /* First version of the description carrying this field; 0 = all. */
    uint32_t version;
} vmstate_field;

typedef struct vmstate_subsection {
    const vmstate_desc *desc;
    /* Whether to send it; NULL means always.  Sees the object being saved. */
    bool (*needed)(const void *obj);
} vmstate_subsection;

struct vmstate_desc {
    const char *name; /* at most 255 bytes: it is sent for subsections */
    uint32_t version;
    uint32_t minimum_version;
    /*
     * sizeof the struct described.  Load validates into a scratch copy of
     * this many bytes; arrays of this struct step by it.  A subsection
     * describes the same object as its parent and may leave it 0.
     */
    size_t size;
    const vmstate_field *fields; /* ends with VMSTATE_END */
    const vmstate_subsection
        *subsections; /* ends with { NULL }; may be NULL */
    /*
     * Runs on a private copy of the object just before it is written, so
     * it can fill derived members without touching the live device.
     */
    int (*pre_save)(void *copy);
    /*
     * VALIDATE pass: the fully loaded scratch copy (subsections included).
     * Return 0 to accept, or a negative errno; a hook that knows why calls
     * qfile_fail(f, ...) itself so the message says so.
     */
    int (*check)(qfile *f, const void *obj, uint32_t version);
    /* APPLY pass, after the object and its subsections were stored. */
    int (*post_load)(void *obj, uint32_t version);
};

/* ---- table helpers: each expands to designators inside { } ---- */

#define VMSTATE__TYPE_OF(x)                                                   \
    _Generic((x), uint8_t                                                     \
             : VMSTATE_T_U8, uint16_t                                         \
             : VMSTATE_T_U16, uint32_t                                        \
             : VMSTATE_T_U32, uint64_t                                        \
             : VMSTATE_T_U64, int8_t                                          \
             : VMSTATE_T_I8, int16_t                                          \
             : VMSTATE_T_I16, int32_t                                         \
             : VMSTATE_T_I32, int64_t                                         \
             : VMSTATE_T_I64, bool                                            \
             : VMSTATE_T_BOOL)
#define VMSTATE__M(st, m) (((st *)0)->m)
#define VMSTATE__LEN(st, m)                                                   \
    (sizeof(VMSTATE__M(st, m)) / sizeof(VMSTATE__M(st, m)[0]))

/* An integer or bool member; the wire type follows the C type. */
#define VMSTATE_SCALAR(st, m)                                                 \
    .name = #m, .type = VMSTATE__TYPE_OF(VMSTATE__M(st, m)),                  \
    .offset = offsetof(st, m), .size = sizeof(VMSTATE__M(st, m))
/* A fixed array member of integers or bools: T m[N]. */
#define VMSTATE_ARRAY(st, m)                                                  \
    .name = #m, .type = VMSTATE__TYPE_OF(VMSTATE__M(st, m)[0]),               \
    .offset = offsetof(st, m), .size = sizeof(VMSTATE__M(st, m)[0]),          \
    .count = VMSTATE__LEN(st, m)
/* The first n of an inline array T m[N], n read from member `cnt`. */
#define VMSTATE_VARRAY(st, m, cnt)                                            \
    .name = #m, .type = VMSTATE__TYPE_OF(VMSTATE__M(st, m)[0]),               \
    .offset = offsetof(st, m), .size = sizeof(VMSTATE__M(st, m)[0]),          \
    .count_from = #cnt, .max = VMSTATE__LEN(st, m)
/* The first n of T *m (room for mx), n read from member `cnt`. */
#define VMSTATE_VARRAY_PTR(st, m, cnt, mx)                                    \
    .name = #m, .type = VMSTATE__TYPE_OF(*VMSTATE__M(st, m)),                 \
    .offset = offsetof(st, m), .size = sizeof(*VMSTATE__M(st, m)),            \
    .count_from = #cnt, .max = (mx), .pointer = true
/* uint8_t m[N], all of it. */
#define VMSTATE_BUFFER(st, m)                                                 \
    .name = #m, .type = VMSTATE_T_BUFFER, .offset = offsetof(st, m),          \
    .size = sizeof(VMSTATE__M(st, m))
/* The first len bytes of uint8_t m[N], len read from member `len`. */
#define VMSTATE_VBUFFER(st, m, len)                                           \
    .name = #m, .type = VMSTATE_T_VBUFFER, .offset = offsetof(st, m),         \
    .size = sizeof(VMSTATE__M(st, m)), .count_from = #len,                    \
    .max = sizeof(VMSTATE__M(st, m))
/* The first len bytes of uint8_t *m (room for mx). */
#define VMSTATE_VBUFFER_PTR(st, m, len, mx)                                   \
    .name = #m, .type = VMSTATE_T_VBUFFER, .offset = offsetof(st, m),         \
    .size = (mx), .count_from = #len, .max = (mx), .pointer = true
/* A nested struct member described by d. */
#define VMSTATE_STRUCT(st, m, d)                                              \
    .name = #m, .type = VMSTATE_T_STRUCT, .offset = offsetof(st, m),          \
    .size = sizeof(VMSTATE__M(st, m)), .desc = &(d)
#define VMSTATE_STRUCT_ARRAY(st, m, d)                                        \
    .name = #m, .type = VMSTATE_T_STRUCT, .offset = offsetof(st, m),          \
    .size = sizeof(VMSTATE__M(st, m)[0]), .count = VMSTATE__LEN(st, m),       \
    .desc = &(d)
#define VMSTATE_STRUCT_VARRAY(st, m, cnt, d)                                  \
    .name = #m, .type = VMSTATE_T_STRUCT, .offset = offsetof(st, m),          \
    .size = sizeof(VMSTATE__M(st, m)[0]), .count_from = #cnt,                 \
    .max = VMSTATE__LEN(st, m), .desc = &(d)
#define VMSTATE_STRUCT_VARRAY_PTR(st, m, cnt, mx, d)                          \
    .name = #m, .type = VMSTATE_T_STRUCT, .offset = offsetof(st, m),          \
    .size = sizeof(*VMSTATE__M(st, m)), .count_from = #cnt, .max = (mx),      \
    .pointer = true, .desc = &(d)

#define VMSTATE_END { .name = NULL }

/*
 * Checks a description once, before use: offsets inside the struct, sizes
 * matching types, count_from naming an earlier integer field no newer than
 * its user, unique names, versions in order, nested descriptions too.
 * Returns 0, or -EINVAL with the reason in why.
 */
int vmstate_desc_verify(const vmstate_desc *d, char *why, size_t whylen);

/*
 * Writes obj's fields, then its needed subsections, at d->version.  When
 * desc_out (a JSON object) is given, adds "vmsd_name", "version", "fields"
 * and "subsections" describing exactly what was written.
 */
int vmstate_save(qfile *f, const vmstate_desc *d, const void *obj,
                 json_t *desc_out);

/*
 * Writes obj as one SECTION_FULL: header (idstr, instance_id, d->version),
 * fields and subsections, footer.  When vmdesc_devices (the "devices"
 * array of a VM description) is given, appends the section's entry,
 * built from the same table as the bytes.  Returns 0 or the error latched
 * on f.
 */
int vmstate_save_section(qfile *f, uint32_t section_id, const char *idstr,
                         uint32_t instance_id, const vmstate_desc *d,
                         const void *obj, json_t *vmdesc_devices);

/*
 * Appends to vmdesc_devices the entry that vmstate_save_section() would
 * for obj, without writing a section anywhere: for a section that a
 * stream of another kind carries (see docs/stream-format.md, "ftvm's own
 * sections").  Returns 0, -ENOMEM, or the error saving obj met.
 */
int vmstate_describe_section(json_t *vmdesc_devices, const char *idstr,
                             uint32_t instance_id, const vmstate_desc *d,
                             const void *obj);

/*
 * Reads a state written at `version`.  VALIDATE loads into scratch copies
 * (of the object and of any pointed-to storage) and runs the check hooks;
 * obj and everything it points to stay as they were.  APPLY stores into
 * obj and runs post_load.  Returns 0 or the negative errno latched on f.
 */
int vmstate_load(qfile *f, const vmstate_desc *d, void *obj, uint32_t version,
                 savevm_pass pass);

/* QEMU's type name for a field ("uint32", "buffer", "struct"). */
const char *vmstate_type_name(vmstate_type t);

#endif
