/*
 * vmdesc: building the VM description, and reading device sections with it.
 *
 * The decoder trusts nothing it is given: the JSON comes from a file as much
 * as the bytes do, so every key is type-checked and every read bounded by
 * the channel; problems latch on the qfile naming device and field.
 */
#include "devstate/vmdesc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/savevm.h"

json_t *vmdesc_new(uint32_t page_size)
{
    return json_pack("{s:I, s:[]}", "page_size", (json_int_t)page_size,
                     "devices");
}

json_t *vmdesc_devices(const json_t *vmdesc)
{
    json_t *devs = json_object_get(vmdesc, "devices");
    return json_is_array(devs) ? devs : NULL;
}

json_t *vmdesc_add_device(json_t *devices, const char *idstr,
                          uint32_t instance_id)
{
    json_t *dev = json_pack("{s:s, s:I}", "name", idstr, "instance_id",
                            (json_int_t)instance_id);

    if (!dev || json_array_append_new(devices, dev) < 0)
        return NULL;
    return dev;
}

json_t *vmdesc_find_device(const json_t *vmdesc, const char *idstr,
                           uint32_t instance_id)
{
    size_t i;
    json_t *dev;

    json_array_foreach(vmdesc_devices(vmdesc), i, dev) {
        const char *name = json_string_value(json_object_get(dev, "name"));
        json_t *inst = json_object_get(dev, "instance_id");
        if (name && strcmp(name, idstr) == 0 && json_is_integer(inst) &&
            json_integer_value(inst) == (json_int_t)instance_id)
            return dev;
    }
    return NULL;
}

char *vmdesc_dump(const json_t *vmdesc, size_t *len)
{
    char *s = json_dumps(vmdesc, JSON_COMPACT | JSON_PRESERVE_ORDER);

    if (s && len)
        *len = strlen(s);
    return s;
}

/* ===================================================================== */
/* decoding                                                              */

#define MAX_DEPTH 64
#define MAX_ELEMS (1u << 24)
#define HEX_FULL 64     /* buffers up to this many bytes are shown whole */
#define HEX_HEAD 32     /* longer ones show this many, then their length */

typedef struct dec {
    qfile *f;
    const char *device;
    char path[256];
    size_t path_len;
    int depth;
} dec;

__attribute__((format(printf, 3, 4)))
static int dec_fail(dec *d, int err, const char *fmt, ...)
{
    char msg[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (d->path_len)
        return qfile_fail(d->f, err, "device '%s' field '%s': %s", d->device,
                          d->path, msg);
    return qfile_fail(d->f, err, "device '%s': %s", d->device, msg);
}

__attribute__((format(printf, 2, 3)))
static size_t path_push(dec *d, const char *fmt, ...)
{
    size_t mark = d->path_len;
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(d->path + mark, sizeof(d->path) - mark, fmt, ap);
    va_end(ap);
    if (n > 0)
        d->path_len += (size_t)n;
    if (d->path_len >= sizeof(d->path))
        d->path_len = sizeof(d->path) - 1;
    return mark;
}

static void path_pop(dec *d, size_t mark)
{
    d->path_len = mark;
    d->path[mark] = '\0';
}

/*
 * Every read goes a byte at a time behind a peek, so that a stream cut
 * short is reported by the decoder, which knows the device and field, and
 * not by the channel, which does not.  Speed does not matter here.
 */
static bool dec_read(dec *d, void *buf, size_t len)
{
    uint8_t *p = buf;

    for (size_t i = 0; i < len; i++) {
        if (qfile_peek_u8(d->f) < 0) {
            memset(p + i, 0, len - i);
            dec_fail(d, -ENODATA, "the stream ends %zu bytes into its %zu",
                     i, len);
            return false;
        }
        p[i] = qfile_get_u8(d->f);
    }
    return true;
}

static uint8_t dec_u8(dec *d)
{
    uint8_t b = 0;
    dec_read(d, &b, 1);
    return b;
}

/*
 * QEMU names integers "uint32", "int8", and variants with the
 * same big-endian bytes that only add a check on load: "uint32 equal"
 * (must match the loader's value) and "int32 le" (must be 0..the loader's
 * value; "le" is "less or equal", not an endianness).  Returns the width
 * in bytes, or 0 when type is not an integer.
 */
static size_t int_type(const char *type, bool *is_signed)
{
    const char *p;

    if (strncmp(type, "uint", 4) == 0) {
        *is_signed = false;
        p = type + 4;
    } else if (strncmp(type, "int", 3) == 0) {
        *is_signed = true;
        p = type + 3;
    } else {
        return 0;
    }
    char *end;
    unsigned long bits = strtoul(p, &end, 10);
    if (end == p || (bits != 8 && bits != 16 && bits != 32 && bits != 64))
        return 0;
    if (*end && strcmp(end, " equal") != 0 && strcmp(end, " le") != 0)
        return 0;
    return bits / 8;
}

static json_t *int_value(uint64_t v, size_t width, bool is_signed)
{
    if (is_signed) {
        unsigned shift = (unsigned)(64 - 8 * width);
        return json_integer((json_int_t)((int64_t)(v << shift) >> shift));
    }
    if (v > INT64_MAX) {
        char hex[24];
        snprintf(hex, sizeof(hex), "0x%016" PRIx64, v);
        return json_string(hex);
    }
    return json_integer((json_int_t)v);
}

static json_t *read_int(dec *d, size_t width, bool is_signed)
{
    uint8_t b[8];
    uint64_t v = 0;

    dec_read(d, b, width);
    for (size_t i = 0; i < width; i++)
        v = v << 8 | b[i];
    return int_value(v, width, is_signed);
}

/* Reads len bytes, keeping a hex rendering of (the start of) them. */
static json_t *read_hex(dec *d, uint64_t len)
{
    static const char digits[] = "0123456789abcdef";
    char out[2 * HEX_FULL + 64];
    uint8_t chunk[4096];
    uint64_t done = 0;
    size_t shown = len <= HEX_FULL ? (size_t)len : HEX_HEAD;
    size_t o = 0;

    while (done < len && !qfile_error(d->f)) {
        size_t n = len - done < sizeof(chunk) ? (size_t)(len - done)
                                              : sizeof(chunk);
        dec_read(d, chunk, n);
        for (size_t i = 0; i < n && done + i < shown; i++) {
            out[o++] = digits[chunk[i] >> 4];
            out[o++] = digits[chunk[i] & 15];
        }
        done += n;
    }
    out[o] = '\0';
    if (len > shown)
        snprintf(out + o, sizeof(out) - o, "... (%" PRIu64 " bytes)", len);
    return json_string(out);
}

static int decode_struct(dec *d, const json_t *sdesc, json_t *out,
                         bool top);

/*
 * Whether a struct's size can differ from one save, or one element of an
 * array, to the next: a variable-length field inside it, at any depth.
 * The "size" the description gives is then only the first element's of
 * the save it came with.
 */
static bool has_variable(const json_t *sdesc, int depth)
{
    size_t i;
    json_t *fd;

    if (depth > MAX_DEPTH)
        return true;
    json_array_foreach(json_object_get(sdesc, "fields"), i, fd) {
        const json_t *sub = json_object_get(fd, "struct");
        if (json_object_get(fd, "length_from") ||
            (json_is_object(sub) && has_variable(sub, depth + 1)))
            return true;
    }
    return false;
}

/*
 * A nested struct is described under "struct"; a "tmp" field (a temporary
 * struct QEMU fills from the device) carries its description in
 * the field object itself.
 */
static json_t *read_struct(dec *d, const json_t *fdesc, json_int_t size)
{
    const json_t *sdesc = json_object_get(fdesc, "struct");

    if (!sdesc && json_is_array(json_object_get(fdesc, "fields")))
        sdesc = fdesc;
    if (!json_is_object(sdesc)) {
        dec_fail(d, -EINVAL, "struct without a \"struct\" description");
        return NULL;
    }
    json_t *obj = json_object();
    uint64_t start = qfile_tell(d->f);
    if (!obj || decode_struct(d, sdesc, obj, false) < 0) {
        json_decref(obj);
        return NULL;
    }
    uint64_t used = qfile_tell(d->f) - start;
    if (size >= 0 && used != (uint64_t)size && !has_variable(sdesc, 0)) {
        dec_fail(d, -EINVAL, "struct took %" PRIu64 " bytes, the "
                 "description says %" PRId64, used, (int64_t)size);
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* A counted string ("capability"), when the size agrees with its length. */
static json_t *read_counted_string(dec *d, json_int_t size)
{
    if (size < 1 || size > 256)
        return read_hex(d, size < 0 ? 0 : (uint64_t)size);
    uint8_t len = dec_u8(d);
    if (qfile_error(d->f))
        return NULL;
    if (len + 1 != size) {
        dec_fail(d, -EINVAL, "string of %u bytes in a %" PRId64 "-byte "
                 "field", len, (int64_t)size);
        return NULL;
    }
    char s[256];
    dec_read(d, s, len);
    s[len] = '\0';
    return json_stringn(s, len);
}

/* One element of a field; size is -1 when the description gives none. */
static json_t *read_value(dec *d, const json_t *fdesc, const char *type,
                          json_int_t size)
{
    bool is_signed;
    size_t width = int_type(type, &is_signed);

    if (width) {
        if (size >= 0 && (size_t)size != width) {
            dec_fail(d, -EINVAL, "type '%s' with size %" PRId64, type,
                     (int64_t)size);
            return NULL;
        }
        return read_int(d, width, is_signed);
    }
    if (strcmp(type, "bool") == 0 && size <= 1) {
        uint8_t b = dec_u8(d);
        return b <= 1 ? json_boolean(b) : json_integer(b);
    }
    if (strcmp(type, "timer") == 0 && (size == 8 || size < 0))
        return read_int(d, 8, true);
    if (strcmp(type, "struct") == 0 || json_object_get(fdesc, "struct") ||
        json_is_array(json_object_get(fdesc, "fields")))
        return read_struct(d, fdesc, size);
    if (strcmp(type, "capability") == 0)
        return read_counted_string(d, size);
    if (size < 0) {
        dec_fail(d, -EINVAL, "type '%s' is unknown and has no size", type);
        return NULL;
    }
    return read_hex(d, (uint64_t)size);
}

static json_int_t get_int(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

static int decode_field(dec *d, const json_t *fdesc, json_t *out)
{
    const char *name = json_string_value(json_object_get(fdesc, "name"));
    const char *type = json_string_value(json_object_get(fdesc, "type"));
    json_int_t size = get_int(fdesc, "size");
    json_int_t array_len = get_int(fdesc, "array_len");
    json_int_t index = get_int(fdesc, "index");

    if (!json_is_object(fdesc) || !name)
        return dec_fail(d, -EINVAL, "a field without a name");
    size_t mark = path_push(d, d->path_len ? ".%s" : "%s", name);
    if (!type)
        type = "unknown";

    /*
     * ftvm's extension: the element or byte count is an earlier field's.
     * Elements described one by one ("index") are all read with the first
     * one's layout, so the others' objects are passed over.
     */
    const char *from = json_string_value(json_object_get(fdesc,
                                                         "length_from"));
    if (from) {
        json_int_t n = get_int(out, from);
        if (n < 0 || n > MAX_ELEMS) {
            dec_fail(d, -EINVAL, "length field '%s' is missing or out of "
                     "range", from);
            goto fail;
        }
        if (index > 0) {
            path_pop(d, mark);
            return 0;
        }
        if (array_len == 0 && n > 0) {
            /* The save it came from had none: no layout but the type's. */
            if (strcmp(type, "struct") == 0) {
                dec_fail(d, -ENOENT, "the description comes from a save "
                         "with no element here, so it shows no element's "
                         "layout");
                goto fail;
            }
            size = -1;
        }
        if (index == 0 || array_len >= 0) {
            array_len = n;
            index = -1;
        } else {
            size = n;
        }
    }

    json_t *val;
    if (array_len >= 0) {
        if (array_len > MAX_ELEMS) {
            dec_fail(d, -E2BIG, "array_len %" PRId64 " is beyond reason",
                     (int64_t)array_len);
            goto fail;
        }
        val = json_array();
        for (json_int_t i = 0; val && i < array_len; i++) {
            size_t emark = path_push(d, "[%" PRId64 "]", (int64_t)i);
            json_t *e = read_value(d, fdesc, type, size);
            path_pop(d, emark);
            if (!e || qfile_error(d->f)) {
                json_decref(e);
                json_decref(val);
                goto fail;
            }
            json_array_append_new(val, e);
        }
    } else {
        val = read_value(d, fdesc, type, size);
    }
    if (!val || qfile_error(d->f)) {
        json_decref(val);
        goto fail;
    }

    if (index < 0) {
        json_object_set_new(out, name, val);
    } else {
        /* Elements described one by one come in order under one name. */
        json_t *arr = json_object_get(out, name);
        if (!arr) {
            arr = json_array();
            json_object_set_new(out, name, arr);
        }
        if (!json_is_array(arr) || json_array_size(arr) != (size_t)index) {
            json_decref(val);
            dec_fail(d, -EINVAL, "element %" PRId64 " out of order",
                     (int64_t)index);
            goto fail;
        }
        json_array_append_new(arr, val);
    }
    path_pop(d, mark);
    return 0;
fail:
    path_pop(d, mark);
    /* Reads latch their own messages; what is left is allocation. */
    return dec_fail(d, -ENOMEM, "out of memory");
}

static const json_t *find_sub(const json_t *subs, const char *name)
{
    size_t i;
    json_t *s;

    json_array_foreach(subs, i, s) {
        const char *n = json_string_value(json_object_get(s, "vmsd_name"));
        if (n && strcmp(n, name) == 0)
            return s;
    }
    return NULL;
}

static int decode_subsection(dec *d, const json_t *subs, json_t *out)
{
    char name[256];
    uint8_t version[4];

    dec_u8(d);
    size_t len = dec_u8(d);
    dec_read(d, name, len);
    name[len] = '\0';
    dec_read(d, version, sizeof(version));
    if (qfile_error(d->f))
        return qfile_error(d->f);

    const json_t *sd = find_sub(subs, name);
    if (!sd)
        return dec_fail(d, -ENOENT, "subsection '%s' is not in the "
                        "description", name);
    json_t *obj = json_object();
    if (!obj)
        return dec_fail(d, -ENOMEM, "out of memory");
    json_object_set_new(out, name, obj);
    return decode_struct(d, sd, obj, false);
}

/*
 * The description lists the subsections that were sent, in order.  Inside
 * a struct, what follows may be a field starting with the marker's value,
 * so only the top level checks for subsections the description lacks.
 */
static int decode_struct(dec *d, const json_t *sdesc, json_t *out, bool top)
{
    const json_t *fields = json_object_get(sdesc, "fields");
    const json_t *subs = json_object_get(sdesc, "subsections");
    size_t i;
    json_t *fd;
    int rc = 0;

    if (++d->depth > MAX_DEPTH) {
        rc = dec_fail(d, -ELOOP, "structs nest deeper than %d", MAX_DEPTH);
        goto out;
    }
    json_array_foreach(fields, i, fd) {
        rc = decode_field(d, fd, out);
        if (rc < 0)
            goto out;
    }
    for (i = 0; i < json_array_size(subs); i++) {
        int next = qfile_peek_u8(d->f);
        if (next != SAVEVM_SUBSECTION) {
            const char *n = json_string_value(
                json_object_get(json_array_get(subs, i), "vmsd_name"));
            if (next < 0)
                rc = dec_fail(d, -ENODATA, "the stream ends where "
                              "subsection '%s' was due", n ? n : "?");
            else
                rc = dec_fail(d, -EINVAL, "subsection '%s' missing: found "
                              "byte 0x%02x", n ? n : "?", next);
            goto out;
        }
        rc = decode_subsection(d, subs, out);
        if (rc < 0)
            goto out;
    }
    if (top && qfile_peek_u8(d->f) == SAVEVM_SUBSECTION)
        rc = decode_subsection(d, NULL, out);
out:
    d->depth--;
    return rc < 0 ? rc : qfile_error(d->f);
}

int vmdesc_decode(qfile *f, const json_t *device_desc, json_t **values)
{
    const char *name = json_string_value(json_object_get(device_desc,
                                                         "name"));
    dec d = { .f = f, .device = name ? name : "?" };
    json_t *out = json_object();

    *values = NULL;
    if (!out)
        return qfile_fail(f, -ENOMEM, "device '%s': out of memory", d.device);
    if (!json_is_object(device_desc)) {
        json_decref(out);
        return qfile_fail(f, -EINVAL,
                          "device '%s': description is not an "
                          "object",
                          d.device);
    }
    int rc = decode_struct(&d, device_desc, out, true);
    if (rc < 0) {
        json_decref(out);
        return rc;
    }
    *values = out;
    return 0;
}

/* Searching further back than this would be a description over 64 MiB. */
#define VMDESC_SEARCH (64u << 20)

json_t *vmdesc_find_at_end(const uint8_t *d, size_t len, size_t *at)
{
    if (len < 7)
        return NULL;
    size_t lo = len > VMDESC_SEARCH ? len - VMDESC_SEARCH : 1;
    for (size_t p = len - 6; p >= lo; p--) {
        if (d[p] == SAVEVM_VMDESCRIPTION && d[p - 1] == SAVEVM_EOF &&
            d[p + 5] == '{') {
            uint32_t n = (uint32_t)d[p + 1] << 24 |
                         (uint32_t)d[p + 2] << 16 |
                         (uint32_t)d[p + 3] << 8 | d[p + 4];
            json_t *j = (uint64_t)p + 5 + n == len
                            ? json_loadb((const char *)d + p + 5, n, 0, NULL)
                            : NULL;
            if (j) {
                *at = p;
                return j;
            }
        }
        if (p == lo)
            break;
    }
    return NULL;
}
