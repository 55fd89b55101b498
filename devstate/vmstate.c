/*
 * vmstate: saving and loading a struct through its field table.
 *
 * Save walks the table writing each element and, when asked, records what it
 * wrote as VM description JSON.  Load walks the same table in one of two
 * passes; VALIDATE works on scratch copies so that a stream can be judged in
 * full before anything a caller can see is changed.
 */
#include "devstate/vmstate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devstate/vmdesc.h"

/* Where the walk is, for messages: "'uart' field 'fifo[3].data'". */
typedef struct walk {
    qfile *f;
    const char *where;      /* the description (or subsection) name */
    char path[256];
    size_t path_len;
} walk;

__attribute__((format(printf, 3, 4)))
static int walk_fail(walk *w, int err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (w->path_len)
        return qfile_fail(w->f, err, "'%s' field '%s': %s", w->where, w->path,
                          msg);
    return qfile_fail(w->f, err, "'%s': %s", w->where, msg);
}

/* Appends to the path; returns the mark to give back to path_pop(). */
__attribute__((format(printf, 2, 3)))
static size_t path_push(walk *w, const char *fmt, ...)
{
    size_t mark = w->path_len;
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(w->path + mark, sizeof(w->path) - mark, fmt, ap);
    va_end(ap);
    if (n > 0)
        w->path_len += (size_t)n;
    if (w->path_len >= sizeof(w->path))
        w->path_len = sizeof(w->path) - 1;
    return mark;
}

static void path_pop(walk *w, size_t mark)
{
    w->path_len = mark;
    w->path[mark] = '\0';
}

static size_t push_field(walk *w, const vmstate_field *fd)
{
    return path_push(w, w->path_len ? ".%s" : "%s", fd->name);
}

static bool is_int(vmstate_type t)
{
    return t <= VMSTATE_T_I64;
}

static bool is_signed(vmstate_type t)
{
    return t >= VMSTATE_T_I8 && t <= VMSTATE_T_I64;
}

static size_t int_width(vmstate_type t)
{
    static const size_t width[] = {
        [VMSTATE_T_U8] = 1,  [VMSTATE_T_U16] = 2, [VMSTATE_T_U32] = 4,
        [VMSTATE_T_U64] = 8, [VMSTATE_T_I8] = 1,  [VMSTATE_T_I16] = 2,
        [VMSTATE_T_I32] = 4, [VMSTATE_T_I64] = 8, [VMSTATE_T_BOOL] = 1,
    };
    return t <= VMSTATE_T_BOOL ? width[t] : 0;
}

const char *vmstate_type_name(vmstate_type t)
{
    static const char *const names[] = {
        [VMSTATE_T_U8] = "uint8",       [VMSTATE_T_U16] = "uint16",
        [VMSTATE_T_U32] = "uint32",     [VMSTATE_T_U64] = "uint64",
        [VMSTATE_T_I8] = "int8",        [VMSTATE_T_I16] = "int16",
        [VMSTATE_T_I32] = "int32",      [VMSTATE_T_I64] = "int64",
        [VMSTATE_T_BOOL] = "bool",      [VMSTATE_T_BUFFER] = "buffer",
        [VMSTATE_T_VBUFFER] = "buffer", [VMSTATE_T_STRUCT] = "struct",
    };
    return (size_t)t < sizeof(names) / sizeof(names[0]) ? names[t] : "unknown";
}

/* Integer members are read and written through their exact width. */
static uint64_t mem_get_int(const void *p, vmstate_type t)
{
    switch (t) {
    case VMSTATE_T_U8: {
        uint8_t v;
        memcpy(&v, p, 1);
        return v;
    }
    case VMSTATE_T_U16: {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case VMSTATE_T_U32: {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case VMSTATE_T_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    case VMSTATE_T_I8: {
        int8_t v;
        memcpy(&v, p, 1);
        return (uint64_t)(int64_t)v;
    }
    case VMSTATE_T_I16: {
        int16_t v;
        memcpy(&v, p, 2);
        return (uint64_t)(int64_t)v;
    }
    case VMSTATE_T_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        return (uint64_t)(int64_t)v;
    }
    case VMSTATE_T_I64: {
        int64_t v;
        memcpy(&v, p, 8);
        return (uint64_t)v;
    }
    default: return 0;
    }
}

static void mem_put_int(void *p, vmstate_type t, uint64_t v)
{
    switch (int_width(t)) {
    case 1: { uint8_t x = (uint8_t)v; memcpy(p, &x, 1); break; }
    case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
    case 8: memcpy(p, &v, 8); break;
    }
}

static const vmstate_field *find_field(const vmstate_desc *d, const char *name)
{
    for (const vmstate_field *fd = d->fields; fd && fd->name; fd++)
        if (strcmp(fd->name, name) == 0)
            return fd;
    return NULL;
}

/*
 * How many elements a field has in obj (for a VBUFFER: how many bytes),
 * bounded by its max.  A count that a signed field holds negative is as
 * wrong as one over the max.
 */
static int field_count(walk *w, const vmstate_desc *d, const vmstate_field *fd,
                       const void *obj, uint64_t *n)
{
    if (!fd->count_from) {
        *n = fd->type == VMSTATE_T_VBUFFER ? fd->size
             : fd->count                   ? fd->count
                                           : 1;
        return 0;
    }
    const vmstate_field *cf = find_field(d, fd->count_from);
    if (!cf || !is_int(cf->type))
        return walk_fail(w, -EINVAL, "count field '%s' is not an integer "
                         "of '%s'", fd->count_from, d->name);
    uint64_t v = mem_get_int((const char *)obj + cf->offset, cf->type);
    if (is_signed(cf->type) && (int64_t)v < 0)
        return walk_fail(w, -EINVAL, "count %" PRId64 " from '%s' is "
                         "negative", (int64_t)v, cf->name);
    if (v > fd->max)
        return walk_fail(w, -EINVAL, "count %" PRIu64 " from '%s' is over "
                         "its maximum %" PRIu32, v, cf->name, fd->max);
    *n = v;
    return 0;
}

/*
 * The elements a field walks and, for a VBUFFER (always one element), that
 * element's length in bytes.
 */
static int field_extent(walk *w, const vmstate_desc *d,
                        const vmstate_field *fd, const void *obj, uint64_t *n,
                        uint64_t *bytes)
{
    int rc = field_count(w, d, fd, obj, n);

    *bytes = 0;
    if (rc == 0 && fd->type == VMSTATE_T_VBUFFER) {
        *bytes = *n;
        *n = 1;
    }
    return rc;
}

static bool uses_storage(const vmstate_field *fd, uint64_t n, uint64_t bytes)
{
    return fd->type == VMSTATE_T_VBUFFER ? bytes > 0 : n > 0;
}

/* Elements are named by index in messages, except a buffer's one. */
static size_t push_index(walk *w, const vmstate_field *fd, uint64_t i)
{
    if ((!fd->count && !fd->count_from) || fd->type == VMSTATE_T_VBUFFER)
        return w->path_len;
    return path_push(w, "[%" PRIu64 "]", i);
}

static size_t elem_size(const vmstate_field *fd)
{
    return fd->type == VMSTATE_T_VBUFFER ? 1 : fd->size;
}

/* Bytes of storage the field's elements occupy at most. */
static size_t field_capacity(const vmstate_field *fd)
{
    if (fd->type == VMSTATE_T_VBUFFER)
        return fd->max;
    size_t n = fd->count_from ? fd->max : fd->count ? fd->count : 1;
    return n * fd->size;
}

/* ===================================================================== */
/* saving                                                                */

static int save_struct(walk *w, const vmstate_desc *d, const void *obj,
                       size_t objsize, json_t *jd);

/*
 * QEMU describes an array once, with its length, unless its
 * elements can differ in shape; a struct with subsections can, and so can
 * one with a variable-length member (a queue of frames): each element is
 * then described with its own sizes, so that a reader of QEMU's
 * rules, which reads every element as its description says, reads them.
 */
static bool can_compress(const vmstate_field *fd)
{
    if (fd->type != VMSTATE_T_STRUCT)
        return true;
    if (fd->desc->subsections && fd->desc->subsections[0].desc)
        return false;
    for (const vmstate_field *sf = fd->desc->fields; sf && sf->name; sf++)
        if (sf->count_from || !can_compress(sf))
            return false;
    return true;
}

static int save_elem(walk *w, const vmstate_field *fd, const void *p,
                     uint64_t bytes, json_t *jstruct)
{
    qfile *f = w->f;

    switch (fd->type) {
    case VMSTATE_T_U8:
    case VMSTATE_T_I8:
        qfile_put_u8(f, (uint8_t)mem_get_int(p, fd->type));
        break;
    case VMSTATE_T_U16:
    case VMSTATE_T_I16:
        qfile_put_be16(f, (uint16_t)mem_get_int(p, fd->type));
        break;
    case VMSTATE_T_U32:
    case VMSTATE_T_I32:
        qfile_put_be32(f, (uint32_t)mem_get_int(p, fd->type));
        break;
    case VMSTATE_T_U64:
    case VMSTATE_T_I64:
        qfile_put_be64(f, mem_get_int(p, fd->type));
        break;
    case VMSTATE_T_BOOL:
        qfile_put_u8(f, *(const bool *)p ? 1 : 0);
        break;
    case VMSTATE_T_BUFFER:
        qfile_put_buf(f, p, fd->size);
        break;
    case VMSTATE_T_VBUFFER:
        qfile_put_buf(f, p, bytes);
        break;
    case VMSTATE_T_STRUCT:
        return save_struct(w, fd->desc, p, fd->desc->size, jstruct);
    }
    return qfile_error(f);
}

/* A field object in QEMU's key order: name, array_len|index, type. */
static json_t *desc_field_start(const vmstate_field *fd, uint64_t i,
                                uint64_t n, bool compress, json_t **jstruct)
{
    json_t *jf = json_object();

    json_object_set_new(jf, "name", json_string(fd->name));
    /*
     * A variable array is described by its length field, not by the count
     * it had in this save, so the description also decodes other saves of
     * the same VM (a replication stream carries none of its own): it
     * always has array_len, or index when its elements are described one
     * by one, and the first of those is the layout of every element.
     */
    bool varray = fd->count_from && fd->type != VMSTATE_T_VBUFFER;
    if (n > 1 || varray)
        json_object_set_new(jf, compress ? "array_len" : "index",
                            json_integer((json_int_t)(compress ? n : i)));
    json_object_set_new(jf, "type", json_string(vmstate_type_name(fd->type)));
    if (fd->count_from)
        json_object_set_new(jf, "length_from", json_string(fd->count_from));
    *jstruct = NULL;
    if (fd->type == VMSTATE_T_STRUCT) {
        *jstruct = json_object();
        json_object_set_new(jf, "struct", *jstruct);
    }
    return jf;
}

/*
 * An empty variable array: "array_len": 0, "size": 0.  A struct element
 * gets a description with no fields, since none was written: a reader of
 * QEMU's rules, which reads one element for an array_len of 0,
 * then reads nothing, as it must.
 */
static json_t *desc_empty(const vmstate_field *fd)
{
    json_t *jstruct, *jf = desc_field_start(fd, 0, 0, true, &jstruct);

    if (jstruct) {
        json_object_set_new(jstruct, "vmsd_name",
                            json_string(fd->desc->name));
        json_object_set_new(jstruct, "version",
                            json_integer(fd->desc->version));
        json_object_set_new(jstruct, "fields", json_array());
    }
    json_object_set_new(jf, "size", json_integer(0));
    return jf;
}

static int save_field(walk *w, const vmstate_desc *d, const vmstate_field *fd,
                      const void *obj, json_t *jfields)
{
    size_t mark = push_field(w, fd);
    uint64_t n, bytes;
    int rc = field_extent(w, d, fd, obj, &n, &bytes);
    if (rc < 0)
        goto out;

    const char *base = (const char *)obj + fd->offset;
    if (fd->pointer) {
        base = *(const char *const *)base;
        if (!base && uses_storage(fd, n, bytes)) {
            rc = walk_fail(w, -EFAULT, "pointer to its storage is NULL");
            goto out;
        }
    }

    bool compress = can_compress(fd);
    /* An empty variable array is still described (desc_field_start). */
    if (jfields && n == 0)
        json_array_append_new(jfields, desc_empty(fd));
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        size_t emark = push_index(w, fd, i);
        json_t *jf = NULL, *jstruct = NULL;
        if (jfields && (i == 0 || !compress))
            jf = desc_field_start(fd, i, n, compress, &jstruct);
        uint64_t start = qfile_tell(w->f);
        rc = save_elem(w, fd, base + i * elem_size(fd), bytes, jstruct);
        if (jf) {
            json_object_set_new(
                jf, "size",
                json_integer((json_int_t)(qfile_tell(w->f) - start)));
            json_array_append_new(jfields, jf);
        }
        path_pop(w, emark);
    }
out:
    path_pop(w, mark);
    return rc;
}

static int save_subsection(walk *w, const vmstate_subsection *sub,
                           const void *obj, size_t objsize, json_t *jsubs)
{
    json_t *js = NULL;

    if (jsubs) {
        js = json_object();
        json_array_append_new(jsubs, js);
    }
    qfile_put_u8(w->f, SAVEVM_SUBSECTION);
    qfile_put_str(w->f, sub->desc->name);
    qfile_put_be32(w->f, sub->desc->version);

    const char *outer = w->where;
    w->where = sub->desc->name;
    int rc = save_struct(w, sub->desc, obj, objsize, js);
    w->where = outer;
    return rc;
}

static int save_struct(walk *w, const vmstate_desc *d, const void *obj,
                       size_t objsize, json_t *jd)
{
    void *copy = NULL;
    json_t *jfields = NULL;
    int rc = 0;

    if (d->pre_save) {
        copy = malloc(objsize);
        if (!copy)
            return walk_fail(w, -ENOMEM, "no memory for the pre_save copy");
        memcpy(copy, obj, objsize);
        rc = d->pre_save(copy);
        if (rc < 0) {
            walk_fail(w, rc, "pre_save of '%s' failed: %s", d->name,
                      strerror(-rc));
            goto out;
        }
        obj = copy;
    }
    if (jd) {
        json_object_set_new(jd, "vmsd_name", json_string(d->name));
        json_object_set_new(jd, "version", json_integer(d->version));
        jfields = json_array();
        json_object_set_new(jd, "fields", jfields);
    }
    for (const vmstate_field *fd = d->fields; fd && fd->name && rc == 0; fd++)
        rc = save_field(w, d, fd, obj, jfields);

    json_t *jsubs = NULL;
    for (const vmstate_subsection *sub = d->subsections;
         sub && sub->desc && rc == 0; sub++) {
        if (sub->needed && !sub->needed(obj))
            continue;
        if (jd && !jsubs) {
            jsubs = json_array();
            json_object_set_new(jd, "subsections", jsubs);
        }
        rc = save_subsection(w, sub, obj, objsize, jsubs);
    }
out:
    free(copy);
    return rc < 0 ? rc : qfile_error(w->f);
}

int vmstate_save(qfile *f, const vmstate_desc *d, const void *obj,
                 json_t *desc_out)
{
    walk w = { .f = f, .where = d->name };

    if (qfile_error(f))
        return qfile_error(f);
    return save_struct(&w, d, obj, d->size, desc_out);
}

int vmstate_save_section(qfile *f, uint32_t section_id, const char *idstr,
                         uint32_t instance_id, const vmstate_desc *d,
                         const void *obj, json_t *vmdesc_devices)
{
    json_t *jdev = NULL;

    if (vmdesc_devices &&
        !(jdev = vmdesc_add_device(vmdesc_devices, idstr, instance_id)))
        return qfile_fail(f, -ENOMEM, "no memory for the VM description "
                          "of '%s'", idstr);
    savevm_put_section_start(f, SAVEVM_SECTION_FULL, section_id, idstr,
                             instance_id, d->version);
    if (vmstate_save(f, d, obj, jdev) == 0)
        savevm_put_footer(f, section_id);
    return qfile_error(f);
}

int vmstate_describe_section(json_t *vmdesc_devices, const char *idstr,
                             uint32_t instance_id, const vmstate_desc *d,
                             const void *obj)
{
    /* The bytes go nowhere; saving is how a table describes itself. */
    qfile *scratch = qfile_open_mem(idstr);

    if (!scratch)
        return -ENOMEM;
    int rc = vmstate_save_section(scratch, 0, idstr, instance_id, d, obj,
                                  vmdesc_devices);
    qfile_close(scratch);
    return rc;
}

/* ===================================================================== */
/* loading                                                               */

/* Scratch storage of a VALIDATE pass, freed together at its end. */
typedef struct scratch {
    struct scratch *next;
    _Alignas(max_align_t) unsigned char data[];
} scratch;

/*
 * A subsection header that turned out not to belong to the struct that read
 * it goes back here for an enclosing struct (QEMU peeks instead;
 * our channel peeks one byte, so we read and return).  Every read of a load
 * drains these bytes first.
 */
typedef struct loader {
    walk w;
    savevm_pass pass;
    scratch *arena;
    uint8_t back[2 + 255];
    size_t back_pos, back_len;
} loader;

static void *arena_dup(loader *l, const void *src, size_t len)
{
    scratch *s = malloc(sizeof(*s) + len);

    if (!s)
        return NULL;
    s->next = l->arena;
    l->arena = s;
    memcpy(s->data, src, len);
    return s->data;
}

static void arena_free(loader *l)
{
    while (l->arena) {
        scratch *next = l->arena->next;
        free(l->arena);
        l->arena = next;
    }
}

/*
 * Short reads go a byte at a time behind a one-byte peek, so that a stream
 * cut short names the field it cut; a long buffer is guarded at its start
 * only and otherwise left to the channel's own message.
 */
static void ld_read(loader *l, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len && l->back_pos < l->back_len) {
        *p++ = l->back[l->back_pos++];
        len--;
    }
    while (len) {
        if (qfile_peek_u8(l->w.f) < 0) {
            if (!qfile_error(l->w.f))
                walk_fail(&l->w, -ENODATA, "the stream ends inside it");
            memset(p, 0, len);
            return;
        }
        size_t n = len <= 8 ? 1 : len;
        qfile_get_buf(l->w.f, p, n);
        p += n;
        len -= n;
    }
}

static int ld_peek(loader *l)
{
    if (l->back_pos < l->back_len)
        return l->back[l->back_pos];
    return qfile_peek_u8(l->w.f);
}

static uint64_t ld_get_be(loader *l, size_t width)
{
    uint8_t b[8];
    uint64_t v = 0;

    ld_read(l, b, width);
    for (size_t i = 0; i < width; i++)
        v = v << 8 | b[i];
    return v;
}

/* Puts bytes back in front of whatever is still waiting to be read. */
static void ld_unread(loader *l, const uint8_t *bytes, size_t len)
{
    size_t rest = l->back_len - l->back_pos;

    memmove(l->back + len, l->back + l->back_pos, rest);
    memcpy(l->back, bytes, len);
    l->back_pos = 0;
    l->back_len = len + rest;
}

/*
 * Reads what looks like a subsection header (marker, length, name) into
 * hdr.  If the stream ends first it was not one: the bytes go back and the
 * caller stops looking.  Returns the header's length, or 0.
 */
static size_t ld_try_header(loader *l, uint8_t hdr[2 + 255])
{
    size_t got = 0, want = 2;

    while (got < want && ld_peek(l) >= 0) {
        ld_read(l, &hdr[got++], 1);
        if (got == 2)
            want = 2 + (size_t)hdr[1];
    }
    if (got == want)
        return got;
    ld_unread(l, hdr, got);
    return 0;
}

static int load_struct(loader *l, const vmstate_desc *d, void *obj,
                       size_t objsize, uint32_t version);

static int load_elem(loader *l, const vmstate_field *fd, void *p,
                     uint64_t bytes)
{
    switch (fd->type) {
    case VMSTATE_T_U8:
    case VMSTATE_T_U16:
    case VMSTATE_T_U32:
    case VMSTATE_T_U64:
    case VMSTATE_T_I8:
    case VMSTATE_T_I16:
    case VMSTATE_T_I32:
    case VMSTATE_T_I64:
        mem_put_int(p, fd->type, ld_get_be(l, int_width(fd->type)));
        break;
    case VMSTATE_T_BOOL: {
        uint8_t b;
        ld_read(l, &b, 1);
        if (b > 1 && !qfile_error(l->w.f))
            return walk_fail(&l->w, -EINVAL, "bool byte 0x%02x is not 0 "
                             "or 1", b);
        *(bool *)p = b;
        break;
    }
    case VMSTATE_T_BUFFER:
        ld_read(l, p, fd->size);
        break;
    case VMSTATE_T_VBUFFER:
        ld_read(l, p, bytes);
        break;
    case VMSTATE_T_STRUCT:
        return load_struct(l, fd->desc, p, fd->desc->size, fd->desc->version);
    }
    return qfile_error(l->w.f);
}

/*
 * Finds where the elements live.  In VALIDATE, storage behind a pointer is
 * the device's: the scratch object gets its own copy to load into, so the
 * check hooks see the new bytes and the device's stay as they were.
 */
static int field_storage(loader *l, const vmstate_field *fd, void *obj,
                         bool used, char **base)
{
    char *p = (char *)obj + fd->offset;

    if (!fd->pointer) {
        *base = p;
        return 0;
    }
    char **slot = (char **)p;
    if (!*slot) {
        if (used)
            return walk_fail(&l->w, -EFAULT, "pointer to its storage is "
                             "NULL");
        *base = NULL;
        return 0;
    }
    if (l->pass == SAVEVM_PASS_VALIDATE) {
        char *copy = arena_dup(l, *slot, field_capacity(fd));
        if (!copy)
            return walk_fail(&l->w, -ENOMEM, "no memory to validate it");
        *slot = copy;
    }
    *base = *slot;
    return 0;
}

static int load_field(loader *l, const vmstate_desc *d,
                      const vmstate_field *fd, void *obj)
{
    size_t mark = push_field(&l->w, fd);
    uint64_t n, bytes;
    char *base = NULL;
    int rc = field_extent(&l->w, d, fd, obj, &n, &bytes);

    if (rc == 0)
        rc = field_storage(l, fd, obj, uses_storage(fd, n, bytes), &base);
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        size_t emark = push_index(&l->w, fd, i);
        rc = load_elem(l, fd, base + i * elem_size(fd), bytes);
        path_pop(&l->w, emark);
    }
    path_pop(&l->w, mark);
    return rc;
}

static const vmstate_subsection *find_sub(const vmstate_desc *d,
                                          const char *name)
{
    for (const vmstate_subsection *s = d->subsections; s && s->desc; s++)
        if (strcmp(s->desc->name, name) == 0)
            return s;
    return NULL;
}

/*
 * Subsections follow the fields, each announced by a marker byte.  A name
 * that is neither ours nor prefixed by our name belongs to an enclosing
 * struct (QEMU's convention is "parent/child"), so it goes back.
 */
static int load_subsections(loader *l, const vmstate_desc *d, void *obj,
                            size_t objsize)
{
    while (!qfile_error(l->w.f) && ld_peek(l) == SAVEVM_SUBSECTION) {
        uint8_t hdr[2 + 255];
        char name[256];
        size_t hlen = ld_try_header(l, hdr);

        if (!hlen)
            break;
        memcpy(name, hdr + 2, hlen - 2);
        name[hlen - 2] = '\0';

        const vmstate_subsection *sub = find_sub(d, name);
        if (!sub) {
            if (strncmp(name, d->name, strlen(d->name)) == 0)
                return walk_fail(&l->w, -ENOENT, "unknown subsection '%s'",
                                 name);
            ld_unread(l, hdr, hlen);
            break;
        }

        uint32_t v = (uint32_t)ld_get_be(l, 4);
        const vmstate_desc *sd = sub->desc;
        const char *outer = l->w.where;
        l->w.where = sd->name;
        int rc;
        if (v > sd->version || v < sd->minimum_version)
            rc = walk_fail(&l->w, -ENOTSUP, "subsection version %" PRIu32
                           " is outside %" PRIu32 "..%" PRIu32
                           " that this build reads", v,
                           sd->minimum_version, sd->version);
        else
            rc = load_struct(l, sd, obj, objsize, v);
        l->w.where = outer;
        if (rc < 0)
            return rc;
    }
    return qfile_error(l->w.f);
}

static int load_struct(loader *l, const vmstate_desc *d, void *obj,
                       size_t objsize, uint32_t version)
{
    int rc = 0;

    for (const vmstate_field *fd = d->fields; fd && fd->name && rc == 0; fd++) {
        if (fd->version > version)
            continue;
        rc = load_field(l, d, fd, obj);
    }
    if (rc == 0)
        rc = load_subsections(l, d, obj, objsize);
    if (rc < 0)
        return rc;

    if (l->pass == SAVEVM_PASS_VALIDATE && d->check) {
        rc = d->check(l->w.f, obj, version);
        if (rc < 0)
            return walk_fail(&l->w, rc, "'%s' refused the state: %s",
                             d->name, strerror(-rc));
    } else if (l->pass == SAVEVM_PASS_APPLY && d->post_load) {
        rc = d->post_load(obj, version);
        if (rc < 0)
            return walk_fail(&l->w, rc, "post_load of '%s' failed: %s",
                             d->name, strerror(-rc));
    }
    return qfile_error(l->w.f);
}

/*
 * Bytes handed back up to the top were a subsection header nobody claimed,
 * or the start of one the stream cut short.
 */
static int leftover(loader *l)
{
    const uint8_t *b = l->back + l->back_pos;
    size_t n = l->back_len - l->back_pos;
    char name[256];

    if (n < 2 || n < 2 + (size_t)b[1])
        return walk_fail(&l->w, -ENODATA, "the stream ends inside a "
                         "subsection header");
    memcpy(name, b + 2, b[1]);
    name[b[1]] = '\0';
    return walk_fail(&l->w, -ENOENT, "unknown subsection '%s'", name);
}

int vmstate_load(qfile *f, const vmstate_desc *d, void *obj, uint32_t version,
                 savevm_pass pass)
{
    loader l = { .w = { .f = f, .where = d->name }, .pass = pass };

    if (qfile_error(f))
        return qfile_error(f);
    if (version > d->version)
        return qfile_fail(f, -ENOTSUP,
                          "'%s': version %" PRIu32 " is newer "
                          "than %" PRIu32 ", the newest this build reads",
                          d->name, version, d->version);
    if (version < d->minimum_version)
        return qfile_fail(f, -ENOTSUP,
                          "'%s': version %" PRIu32 " is older "
                          "than %" PRIu32 ", the oldest this build reads",
                          d->name, version, d->minimum_version);

    void *target = obj;
    if (pass == SAVEVM_PASS_VALIDATE) {
        target = arena_dup(&l, obj, d->size);
        if (!target)
            return qfile_fail(f, -ENOMEM, "'%s': no memory to validate it",
                              d->name);
    }
    int rc = load_struct(&l, d, target, d->size, version);
    if (rc == 0 && l.back_pos < l.back_len)
        rc = leftover(&l);
    arena_free(&l);
    return rc < 0 ? rc : qfile_error(f);
}

/* ===================================================================== */
/* checking a description                                                */

#define VERIFY_DEPTH 16

__attribute__((format(printf, 3, 4)))
static int verify_fail(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;

    if (why && whylen) {
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static int verify_desc(const vmstate_desc *d, size_t parent_size, int depth,
                       char *why, size_t whylen);

static int verify_count_from(const vmstate_desc *d, const vmstate_field *fd,
                             char *why, size_t whylen)
{
    if (fd->count)
        return verify_fail(why, whylen, "'%s' field '%s': both count and "
                           "count_from", d->name, fd->name);
    if (!fd->max)
        return verify_fail(why, whylen, "'%s' field '%s': count_from "
                           "without a max", d->name, fd->name);
    for (const vmstate_field *cf = d->fields; cf != fd; cf++) {
        if (strcmp(cf->name, fd->count_from) != 0)
            continue;
        if (!is_int(cf->type) || cf->count || cf->count_from || cf->pointer)
            return verify_fail(why, whylen, "'%s' field '%s': count field "
                               "'%s' is not a single integer", d->name,
                               fd->name, cf->name);
        if (cf->version > fd->version)
            return verify_fail(why, whylen, "'%s' field '%s': count field "
                               "'%s' is newer than it", d->name, fd->name,
                               cf->name);
        return 0;
    }
    return verify_fail(why, whylen, "'%s' field '%s': count field '%s' is "
                       "not an earlier field", d->name, fd->name,
                       fd->count_from);
}

static int verify_field(const vmstate_desc *d, const vmstate_field *fd,
                        size_t objsize, int depth, char *why, size_t whylen)
{
    if ((unsigned)fd->type > VMSTATE_T_STRUCT)
        return verify_fail(why, whylen, "'%s' field '%s': unknown type %d",
                           d->name, fd->name, (int)fd->type);
    if (fd->version > d->version)
        return verify_fail(why, whylen, "'%s' field '%s': version %" PRIu32
                           " is newer than the description's %" PRIu32,
                           d->name, fd->name, fd->version, d->version);
    for (const vmstate_field *o = d->fields; o != fd; o++)
        if (strcmp(o->name, fd->name) == 0)
            return verify_fail(why, whylen, "'%s': field name '%s' is used "
                               "twice", d->name, fd->name);
    if (int_width(fd->type) && fd->size != int_width(fd->type))
        return verify_fail(why, whylen, "'%s' field '%s': %s with size %zu",
                           d->name, fd->name, vmstate_type_name(fd->type),
                           fd->size);
    if (fd->count_from) {
        int rc = verify_count_from(d, fd, why, whylen);
        if (rc < 0)
            return rc;
    }
    switch (fd->type) {
    case VMSTATE_T_BUFFER:
        if (!fd->size)
            return verify_fail(why, whylen, "'%s' field '%s': empty buffer",
                               d->name, fd->name);
        break;
    case VMSTATE_T_VBUFFER:
        if (!fd->count_from || fd->count || fd->max > fd->size)
            return verify_fail(why, whylen, "'%s' field '%s': a variable "
                               "buffer needs count_from and max <= size",
                               d->name, fd->name);
        break;
    case VMSTATE_T_STRUCT:
        if (!fd->desc || fd->size != fd->desc->size)
            return verify_fail(why, whylen, "'%s' field '%s': struct without "
                               "a description of its size", d->name,
                               fd->name);
        if (verify_desc(fd->desc, 0, depth + 1, why, whylen) < 0)
            return -EINVAL;
        break;
    default:
        break;
    }

    size_t extent = sizeof(void *);
    if (!fd->pointer) {
        size_t n = fd->type == VMSTATE_T_VBUFFER ? 1
                   : fd->count_from              ? fd->max
                   : fd->count                   ? fd->count
                                                 : 1;
        if (__builtin_mul_overflow(n, fd->size, &extent))
            extent = SIZE_MAX;
    }
    if (fd->offset > objsize || extent > objsize - fd->offset)
        return verify_fail(why, whylen, "'%s' field '%s': bytes %zu..+%zu "
                           "fall outside the %zu-byte struct", d->name,
                           fd->name, fd->offset, extent, objsize);
    return 0;
}

static int verify_desc(const vmstate_desc *d, size_t parent_size, int depth,
                       char *why, size_t whylen)
{
    if (depth > VERIFY_DEPTH)
        return verify_fail(why, whylen, "descriptions nest deeper than %d",
                           VERIFY_DEPTH);
    if (!d->name || strlen(d->name) > 255)
        return verify_fail(why, whylen, "a description needs a name of at "
                           "most 255 bytes");
    if (d->minimum_version > d->version)
        return verify_fail(why, whylen, "'%s': minimum version %" PRIu32
                           " is above version %" PRIu32, d->name,
                           d->minimum_version, d->version);
    size_t objsize = d->size ? d->size : parent_size;
    if (!objsize)
        return verify_fail(why, whylen, "'%s': no struct size", d->name);

    for (const vmstate_field *fd = d->fields; fd && fd->name; fd++)
        if (verify_field(d, fd, objsize, depth, why, whylen) < 0)
            return -EINVAL;

    for (const vmstate_subsection *s = d->subsections; s && s->desc; s++) {
        for (const vmstate_subsection *o = d->subsections; o != s; o++)
            if (strcmp(o->desc->name, s->desc->name) == 0)
                return verify_fail(why, whylen, "'%s': subsection '%s' is "
                                   "listed twice", d->name, s->desc->name);
        if (s->desc->size && s->desc->size != objsize)
            return verify_fail(why, whylen, "'%s': subsection '%s' describes "
                               "a struct of another size", d->name,
                               s->desc->name);
        if (verify_desc(s->desc, objsize, depth + 1, why, whylen) < 0)
            return -EINVAL;
    }
    return 0;
}

int vmstate_desc_verify(const vmstate_desc *d, char *why, size_t whylen)
{
    if (why && whylen)
        why[0] = '\0';
    if (!d->size)
        return verify_fail(why, whylen, "'%s': no struct size",
                           d->name ? d->name : "?");
    return verify_desc(d, 0, 0, why, whylen);
}
