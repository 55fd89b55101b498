/*
 * inspect: see inspect.h.  One JSON tree holds what was found; --json
 * prints it as it is, the text renderer below turns it into tables.
 */
#include "devstate/inspect.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/block.h"
#include "checkpoint/ckptfile.h"
#include "checkpoint/qfile.h"
#include "checkpoint/ram.h"
#include "checkpoint/savevm.h"
#include "devstate/trailer.h"
#include "devstate/vmdesc.h"

typedef struct inspector {
    json_t *vmdesc;         /* the stream's description, or NULL */
    ram_loader *ram;        /* created at the first ram section */
    block_loader *block;    /* ... and block section */
    json_t *records;        /* NULL: not collected (extraction pass) */
    json_t *devices;
    json_t *seals;          /* ftvm-ckpt trailers checked */
    /*
     * Trailers a validate pass checked, by the offset of their body: the
     * apply pass of a package that follows runs no sum to check them by.
     */
    json_t *checked;
    /*
     * The stream at the top level, and where its EOF byte must be: a
     * trailer there is a checkpoint file's, whose place is fixed.
     */
    const qfile *top;
    size_t end;
} inspector;

static json_t *find_device(const inspector *in, const savevm_section *sec)
{
    json_t *devs = json_object_get(in->vmdesc, "devices");
    size_t i;
    json_t *dev;
    json_array_foreach(devs, i, dev) {
        const char *name = json_string_value(json_object_get(dev, "name"));
        json_int_t inst = json_integer_value(json_object_get(dev,
                                                             "instance_id"));
        if (name && strcmp(name, sec->idstr) == 0 &&
            inst == (json_int_t)sec->instance_id)
            return dev;
    }
    return NULL;
}

/*
 * A trailer at the top level is seen once, in the apply pass, with the
 * stream's sum running; one in a package is checked in the package's
 * validate pass, and only read in its apply pass.
 */
static int on_trailer(inspector *in, qfile *f, const savevm_section *sec,
                      savevm_pass pass)
{
    char key[32];
    /*
     * A checkpoint file's trailer is its last record before EOF: one
     * anywhere else would vouch for less than what follows it.
     */
    uint64_t want = trailer_body_at_end(in->end);
    if (f == in->top && qfile_tell(f) != want)
        return qfile_fail(f, -EBADMSG,
                          "a '%s' section that is not the checkpoint's "
                          "last record before EOF (its body would be at "
                          "byte %" PRIu64 "): what follows it is not "
                          "covered by its checksum", TRAILER_IDSTR, want);
    snprintf(key, sizeof(key), "%" PRIu64, qfile_base(f) + qfile_tell(f));
    json_t *seen = json_object_get(in->checked, key);
    json_t *seal;
    if (seen && pass == SAVEVM_PASS_APPLY) {
        if (trailer_skip(f, sec) < 0)
            return qfile_error(f);
        seal = json_incref(seen);
    } else {
        trailer_info ci;
        if (trailer_load(f, sec, &ci) < 0)
            return qfile_error(f);
        seal = json_pack("{s:I, s:I, s:s}", "checkpoint_id",
                         (json_int_t)ci.id, "bytes_covered",
                         (json_int_t)ci.covered, "checksum", "ok");
    }
    if (!seal)
        return qfile_fail(f, -ENOMEM, "out of memory");
    if (pass == SAVEVM_PASS_VALIDATE) {
        if (!in->checked)
            in->checked = json_object();
        if (!in->checked || json_object_set_new(in->checked, key, seal) < 0)
            return qfile_fail(f, -ENOMEM, "out of memory");
    } else if (in->seals) {
        json_array_append_new(in->seals, seal);
    } else {
        json_decref(seal);
    }
    return 0;
}

static int on_section(void *opaque, qfile *f, const savevm_section *sec,
                      savevm_pass pass)
{
    inspector *in = opaque;
    if (strcmp(sec->idstr, RAM_SECTION_IDSTR) == 0) {
        if (!in->ram && ram_loader_new_inspect(&in->ram) < 0)
            return qfile_fail(f, -ENOMEM, "no memory for the RAM inspector");
        return ram_load(in->ram, f, sec->version_id, pass);
    }
    if (strcmp(sec->idstr, BLOCK_SECTION_IDSTR) == 0) {
        if (!in->block && block_loader_new_inspect(&in->block) < 0)
            return qfile_fail(f, -ENOMEM, "no memory for the disk inspector");
        return block_load(in->block, f, sec->version_id, pass);
    }
    if (strcmp(sec->idstr, TRAILER_IDSTR) == 0)
        return on_trailer(in, f, sec, pass);
    if (sec->type != SAVEVM_SECTION_FULL)
        return qfile_fail(f, -ENOTSUP,
                          "section '%s' instance %u is live state ftvm does "
                          "not know; cannot read past it",
                          sec->idstr, sec->instance_id);
    json_t *dev = in->vmdesc ? find_device(in, sec) : NULL;
    if (!dev)
        return qfile_fail(
            f, -ENOENT,
            "section '%s' instance %u: %s; its length is unknown, "
            "so the stream cannot be read past it",
            sec->idstr, sec->instance_id,
            in->vmdesc ? "not in the VM description"
                       : "the stream has no VM description");
    json_t *values = NULL;
    int r = vmdesc_decode(f, dev, &values);
    if (r < 0)
        return r;
    if (pass == SAVEVM_PASS_APPLY && in->devices) {
        json_array_append_new(in->devices, json_pack(
            "{s:s, s:I, s:I, s:o}", "name", sec->idstr,
            "instance_id", (json_int_t)sec->instance_id,
            "version", (json_int_t)sec->version_id, "fields", values));
    } else {
        json_decref(values);
    }
    return 0;
}

static void on_record(void *opaque, const savevm_record *rec)
{
    inspector *in = opaque;
    if (!in->records)
        return;
    json_t *r =
        json_pack("{s:I, s:I, s:i, s:s}", "offset", (json_int_t)rec->offset,
                  "size", (json_int_t)(rec->end - rec->offset), "depth",
                  rec->depth, "type", savevm_type_name(rec->type));
    if (rec->section) {
        json_object_set_new(r, "section_id",
                            json_integer(rec->section->section_id));
        json_object_set_new(r, "idstr", json_string(rec->section->idstr));
        json_object_set_new(r, "instance_id",
                            json_integer(rec->section->instance_id));
        json_object_set_new(r, "version",
                            json_integer(rec->section->version_id));
    }
    if (rec->type == SAVEVM_COMMAND) {
        const char *name = savevm_cmd_name(rec->cmd);
        json_object_set_new(r, "command", json_string(name ? name : "?"));
        if (rec->cmd == SAVEVM_CMD_PACKAGED)
            json_object_set_new(r, "package_bytes",
                                json_integer(rec->package_len));
    }
    json_array_append_new(in->records, r);
}

static void on_begin_validate(void *opaque)
{
    inspector *in = opaque;
    if (in->ram)
        ram_loader_begin_validate(in->ram);
    if (in->block)
        block_loader_begin_validate(in->block);
}

static const savevm_target_ops inspect_ops = {
    .section = on_section,
    .observe = on_record,
    .begin_validate = on_begin_validate,
};

static json_t *ram_summary(const ram_loader *l)
{
    json_t *blocks = json_array();
    for (size_t i = 0; l && i < ram_loader_nblocks(l); i++) {
        ram_block_counts c;
        if (ram_loader_counts(l, i, &c) < 0)
            continue;
        json_array_append_new(blocks, json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
            "name", c.name, "length", (json_int_t)c.length,
            "zero_pages", (json_int_t)c.zero_pages,
            "normal_pages", (json_int_t)c.normal_pages,
            "compressed_pages", (json_int_t)c.compressed_pages,
            "xbzrle_pages", (json_int_t)c.xbzrle_pages,
            "compressed_bytes", (json_int_t)c.compressed_bytes,
            "xbzrle_bytes", (json_int_t)c.xbzrle_bytes));
    }
    return blocks;
}

static json_t *disk_summary(const block_loader *l)
{
    json_t *disks = json_array();
    for (size_t i = 0; l && i < block_loader_ndisks(l); i++) {
        block_disk_counts c;
        if (block_loader_counts(l, i, &c) < 0)
            continue;
        json_array_append_new(disks, json_pack(
            "{s:s, s:I, s:I, s:I}", "name", c.name, "chunk_bytes",
            (json_int_t)DISK_CHUNK_SIZE, "data_chunks",
            (json_int_t)c.data_chunks, "zero_chunks",
            (json_int_t)c.zero_chunks));
    }
    return disks;
}

/* Walks the stream; fills result, returns 0 or the stream's error. */
/*
 * A loader over the inspector.  A replication stream's PINGs are answered
 * on a return path; here it is a memory channel nobody reads.
 */
static savevm_loader *new_loader(inspector *in, qfile **pongs)
{
    *pongs = qfile_open_mem("return path");
    savevm_loader_opts o = { .footers = true, .return_path = *pongs };
    savevm_loader *l = *pongs ? savevm_loader_new(&inspect_ops, in, &o)
                              : NULL;
    if (!l) {
        qfile_close(*pongs);
        *pongs = NULL;
    }
    return l;
}

static int walk(inspector *in, qfile *f, json_t *result, size_t vmdesc_at)
{
    qfile *pongs;
    savevm_loader *l = new_loader(in, &pongs);
    if (!l)
        return qfile_fail(f, -ENOMEM, "no memory for the loader");
    int r = savevm_load_header(l, f);
    json_object_set_new(result, "version",
                        r == 0 ? json_integer(SAVEVM_VERSION) : json_null());
    json_object_set_new(result, "machine",
                        json_string(savevm_loader_machine(l)));
    savevm_stop why = SAVEVM_STOP_END;
    if (r == 0)
        r = savevm_load_main(l, f, SAVEVM_PASS_APPLY, true, &why);
    if (r == 0 && why == SAVEVM_STOP_END) {
        json_object_set_new(result, "complete", json_false());
        r = qfile_fail(f, -ENODATA,
                       "the stream ends without EOF: truncated, "
                       "or a live stream cut between records");
    }
    if (r == 0 && why == SAVEVM_STOP_EOF) {
        json_object_set_new(result, "complete", json_true());
        if (in->vmdesc) {
            if (qfile_tell(f) != vmdesc_at)
                r = qfile_fail(f, -EINVAL,
                               "stream ends at byte %" PRIu64
                               " but the VM description starts at %zu",
                               qfile_tell(f), vmdesc_at);
        } else if (!qfile_at_eof(f)) {
            r = qfile_fail(f, -EINVAL, "unexpected bytes after EOF (0x%02x)",
                           qfile_peek_u8(f));
        }
    }
    json_object_set_new(result, "colo", json_boolean(savevm_loader_colo(l)));
    savevm_loader_free(l);
    qfile_close(pongs);
    return r;
}

static void render_text(json_t *res, FILE *out);

/*
 * Loads the stream's RAM into memory of the sizes the first walk learned
 * and writes each block to DIR/NAME.bin ('/' in names becomes '_'): the
 * guest's memory as the stream leaves it, for comparing and debugging.
 */
static int extract_ram(const inspector *seen, const uint8_t *data,
                       size_t len, const char *name, const char *dir,
                       json_t *result)
{
    size_t n = ram_loader_nblocks(seen->ram);
    ram_block *blocks = calloc(n ? n : 1, sizeof(*blocks));
    ram_block_counts *counts = calloc(n ? n : 1, sizeof(*counts));
    int r = blocks && counts ? 0 : -ENOMEM;
    for (size_t i = 0; i < n && r == 0; i++) {
        ram_loader_counts(seen->ram, i, &counts[i]);
        blocks[i].name = counts[i].name;
        blocks[i].length = counts[i].length;
        blocks[i].host = calloc(1, counts[i].length);
        if (!blocks[i].host)
            r = -ENOMEM;
    }
    inspector in = { .vmdesc = seen->vmdesc };
    if (r == 0)
        r = ram_loader_new(&in.ram, blocks, n);
    qfile *f = r == 0 ? qfile_open_view(data, len, name) : NULL;
    if (f)
        qfile_crc_start(f);
    qfile *pongs = NULL;
    savevm_loader *l = f ? new_loader(&in, &pongs) : NULL;
    if (r == 0 && (!f || !l))
        r = -ENOMEM;
    if (r == 0 && (r = savevm_load_header(l, f)) == 0)
        r = savevm_load_main(l, f, SAVEVM_PASS_APPLY, true, NULL);
    if (r < 0 && f)
        fprintf(stderr, "inspect: extracting RAM: %s\n", qfile_errmsg(f));

    json_t *files = json_array();
    for (size_t i = 0; i < n && r == 0; i++) {
        char path[4096], fname[300];
        snprintf(fname, sizeof(fname), "%s.bin", blocks[i].name);
        for (char *c = fname; *c; c++)
            if (*c == '/')
                *c = '_';
        snprintf(path, sizeof(path), "%s/%s", dir, fname);
        /* Written as checkpoints are: nothing planted in dir is followed. */
        ckptfile_txn *t;
        char werr[512];
        r = ckptfile_begin_file(&t, path, werr, sizeof(werr));
        if (r == 0) {
            qfile_put_buf(ckptfile_stream(t), blocks[i].host,
                          blocks[i].length);
            r = ckptfile_commit(t, werr, sizeof(werr));
        }
        if (r < 0)
            fprintf(stderr, "inspect: %s\n", werr);
        json_array_append_new(files, json_pack("{s:s, s:s}", "block",
                                               blocks[i].name, "file", path));
    }
    json_object_set_new(result, "extracted", files);
    savevm_loader_free(l);
    qfile_close(pongs);
    qfile_close(f);
    ram_loader_free(in.ram);
    json_decref(in.checked);
    for (size_t i = 0; blocks && i < n; i++)
        free(blocks[i].host);
    free(blocks);
    free(counts);
    return r;
}

int inspect_show(const uint8_t *data, size_t len, const char *name,
                 const inspect_opts *opts, FILE *out)
{
    inspector in = { .records = json_array(), .devices = json_array(),
                     .seals = json_array() };
    size_t vmdesc_at = len;
    in.vmdesc = vmdesc_find_at_end(data, len, &vmdesc_at);
    if (opts->desc_from) {
        size_t at;
        json_decref(in.vmdesc);
        in.vmdesc = vmdesc_find_at_end(opts->desc_from,
                                       opts->desc_from_len, &at);
        if (!in.vmdesc) {
            fprintf(stderr, "inspect: the --desc stream ends with no VM "
                    "description\n");
            json_decref(in.records);
            json_decref(in.devices);
            return 2;
        }
    }

    json_t *res = json_pack("{s:s, s:I}", "file", name,
                            "bytes", (json_int_t)len);
    if (!res || !in.records || !in.devices)
        return 2;
    qfile *f = qfile_open_view(data, vmdesc_at, name);
    if (!f)
        return 2;
    qfile_crc_start(f);
    in.top = f;
    in.end = vmdesc_at;
    int r = walk(&in, f, res, vmdesc_at);
    int xr = 0;
    if (r == 0 && opts->extract_dir && in.ram)
        xr = extract_ram(&in, data, vmdesc_at, name, opts->extract_dir, res);

    json_object_set_new(res, "vmdesc_bytes",
                        json_integer(vmdesc_at < len ? (json_int_t)(len -
                                                       vmdesc_at - 5) : 0));
    json_object_set_new(res, "vmdesc_from",
                        json_string(opts->desc_from ? "--desc" : "stream"));
    json_object_set_new(res, "records", in.records);
    json_object_set_new(res, "ram_blocks", ram_summary(in.ram));
    json_object_set_new(res, "disks", disk_summary(in.block));
    json_object_set_new(res, "devices", in.devices);
    json_object_set_new(res, "checkpoints", in.seals);
    json_object_set_new(res, "error",
                        r == 0 ? json_null()
                               : json_pack("{s:i, s:s, s:s, s:I}", "code", -r,
                                           "errno", strerror(-r), "message",
                                           qfile_errmsg(f), "offset",
                                           (json_int_t)qfile_error_offset(f)));
    qfile_close(f);

    if (opts->format == INSPECT_JSON) {
        json_dumpf(res, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', out);
    } else {
        render_text(res, out);
    }
    json_decref(res);
    json_decref(in.vmdesc);
    json_decref(in.checked);
    ram_loader_free(in.ram);
    block_loader_free(in.block);
    return r < 0 ? 1 : xr < 0 ? 2 : 0;
}

/* ---- input ---- */

/* Reads all of fd into a malloc'd buffer (for pipes, which cannot map). */
static uint8_t *slurp(int fd, size_t *len)
{
    size_t cap = 1 << 20, n = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        if (n == cap) {
            uint8_t *nb = realloc(b, cap * 2);
            if (!nb)
                break;
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        if (r == 0) {
            *len = n;
            return b;
        }
        n += (size_t)r;
    }
    free(b);
    return NULL;
}

/* A whole input in memory: mapped when it is a file, read when a pipe. */
typedef struct input {
    uint8_t *data;
    size_t len;
    bool mapped;
} input;

static int input_open(input *in, const char *path)
{
    bool from_stdin = strcmp(path, "-") == 0;
    int fd = from_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    *in = (input){ 0 };
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        in->len = (size_t)st.st_size;
        in->data = mmap(NULL, in->len, PROT_READ, MAP_PRIVATE, fd, 0);
        in->mapped = in->data != MAP_FAILED;
        if (!in->mapped)
            in->data = NULL;
    }
    if (!in->mapped)
        in->data = slurp(fd, &in->len);
    int err = errno;
    if (!from_stdin)
        close(fd);
    return in->data ? 0 : -(err ? err : ENOMEM);
}

static void input_close(input *in)
{
    if (in->mapped)
        munmap(in->data, in->len);
    else
        free(in->data);
}

int inspect_file(const char *path, const char *desc_path,
                 const inspect_opts *opts, FILE *out, char *err,
                 size_t errlen)
{
    input in, desc = { 0 };
    inspect_opts o = *opts;

    *err = '\0';
    int r = input_open(&in, path);
    if (r < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(-r));
        return 2;
    }
    if (desc_path) {
        r = input_open(&desc, desc_path);
        if (r < 0) {
            snprintf(err, errlen, "--desc %s: %s", desc_path, strerror(-r));
            input_close(&in);
            return 2;
        }
        o.desc_from = desc.data;
        o.desc_from_len = desc.len;
    }
    r = inspect_show(in.data, in.len, strcmp(path, "-") == 0 ? "stdin" : path,
                     &o, out);
    input_close(&in);
    if (desc_path)
        input_close(&desc);
    return r;
}

/* ---- text ---- */

static json_int_t geti(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static const char *gets(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void print_value(FILE *out, json_t *v, int indent);

/* Short arrays of numbers stay on one line; long ones are cut. */
static void print_array(FILE *out, json_t *v, int indent)
{
    size_t n = json_array_size(v);
    bool scalars = true;
    for (size_t i = 0; i < n && scalars; i++)
        scalars = !json_is_object(json_array_get(v, i)) &&
                  !json_is_array(json_array_get(v, i));
    if (!scalars) {
        for (size_t i = 0; i < n; i++) {
            fprintf(out, "\n%*s[%zu]", indent, "", i);
            print_value(out, json_array_get(v, i), indent + 2);
        }
        return;
    }
    fputs(" [", out);
    for (size_t i = 0; i < n && i < 16; i++) {
        char *s = json_dumps(json_array_get(v, i), JSON_ENCODE_ANY);
        fprintf(out, "%s%s", i ? " " : "", s ? s : "?");
        free(s);
    }
    if (n > 16)
        fprintf(out, " ... %zu more", n - 16);
    fputs("]", out);
}

static void print_value(FILE *out, json_t *v, int indent)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            fprintf(out, "\n%*s%s:", indent, "", k);
            print_value(out, x, indent + 2);
        }
    } else if (json_is_array(v)) {
        print_array(out, v, indent);
    } else {
        char *s = json_dumps(v, JSON_ENCODE_ANY);
        fprintf(out, " %s", s ? s : "?");
        free(s);
    }
}

static void render_records(json_t *res, FILE *out)
{
    fprintf(out, "\nrecords:\n  %10s %10s  %-*s %4s  %-24s %4s %4s\n",
            "offset", "size", 16, "record", "id", "section", "inst", "ver");
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(res, "records"), i, r) {
        int depth = (int)geti(r, "depth");
        char kind[40];
        snprintf(kind, sizeof(kind), "%*s%s", 2 * depth, "", gets(r, "type"));
        fprintf(out, "  %10" JSON_INTEGER_FORMAT " %10" JSON_INTEGER_FORMAT
                "  %-16s", geti(r, "offset"), geti(r, "size"), kind);
        if (json_object_get(r, "idstr"))
            fprintf(out, " %4" JSON_INTEGER_FORMAT "  %-24s %4"
                    JSON_INTEGER_FORMAT " %4" JSON_INTEGER_FORMAT,
                    geti(r, "section_id"), gets(r, "idstr"),
                    geti(r, "instance_id"), geti(r, "version"));
        else if (json_object_get(r, "command"))
            fprintf(out, "       %s", gets(r, "command"));
        if (json_object_get(r, "package_bytes"))
            fprintf(out, " (%" JSON_INTEGER_FORMAT " bytes)",
                    geti(r, "package_bytes"));
        fputc('\n', out);
    }
}

static void render_ram(json_t *res, FILE *out)
{
    json_t *blocks = json_object_get(res, "ram_blocks");
    if (json_array_size(blocks) == 0)
        return;
    fprintf(out, "\nRAM blocks (page records by encoding):\n"
            "  %-28s %12s %9s %9s %10s %8s %12s\n", "block", "bytes", "zero",
            "normal", "compressed", "xbzrle", "zlib bytes");
    json_int_t tot[6] = { 0 };
    static const char *const keys[6] = {
        "length", "zero_pages", "normal_pages", "compressed_pages",
        "xbzrle_pages", "compressed_bytes",
    };
    size_t i;
    json_t *b;
    json_array_foreach(blocks, i, b) {
        fprintf(out, "  %-28s", gets(b, "name"));
        for (int k = 0; k < 6; k++) {
            static const int w[6] = { 12, 9, 9, 10, 8, 12 };
            fprintf(out, " %*" JSON_INTEGER_FORMAT, w[k], geti(b, keys[k]));
            tot[k] += geti(b, keys[k]);
        }
        fputc('\n', out);
    }
    fprintf(out, "  %-28s %12" JSON_INTEGER_FORMAT " %9" JSON_INTEGER_FORMAT
            " %9" JSON_INTEGER_FORMAT " %10" JSON_INTEGER_FORMAT " %8"
            JSON_INTEGER_FORMAT " %12" JSON_INTEGER_FORMAT "\n", "total",
            tot[0], tot[1], tot[2], tot[3], tot[4], tot[5]);
}

/*
 * A checkpoint file's place in a chain ("ftvm-disk" version 2, whose
 * fields are shown below as hex): the base's name as text.
 */
static void render_chain(json_t *res, FILE *out)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(res, "devices"), i, d) {
        json_t *f = json_object_get(d, "fields");
        const char *hex = gets(f, "base");
        if (strcmp(gets(d, "name"), "ftvm-disk") != 0 || !*gets(f, "id"))
            continue;
        char base[65] = "";
        size_t n = 0;
        unsigned b;
        size_t len = strlen(hex);
        while (n < 64 && 2 * n + 2 <= len &&
               sscanf(hex + 2 * n, "%2x", &b) == 1 &&
               b >= 0x20 && b < 0x7f)
            base[n++] = (char)b;
        base[n] = '\0';
        if (*base)
            fprintf(out, "  this file %s: the changes since %s (id %s)\n",
                    gets(f, "id"), base, gets(f, "base_id"));
        else
            fprintf(out, "  this file %s: the whole image\n", gets(f, "id"));
    }
}

static void render_disks(json_t *res, FILE *out)
{
    json_t *disks = json_object_get(res, "disks");
    if (json_array_size(disks) == 0)
        return;
    fprintf(out, "\ndisks (1 MiB chunk records, repeats counted):\n"
            "  %-28s %12s %12s\n", "disk", "data", "zero");
    size_t i;
    json_t *d;
    json_array_foreach(disks, i, d)
        fprintf(out, "  %-28s %12" JSON_INTEGER_FORMAT " %12"
                JSON_INTEGER_FORMAT "\n", gets(d, "name"),
                geti(d, "data_chunks"), geti(d, "zero_chunks"));
    render_chain(res, out);
}

static void render_text(json_t *res, FILE *out)
{
    fprintf(out, "%s: %" JSON_INTEGER_FORMAT " bytes", gets(res, "file"),
            geti(res, "bytes"));
    if (json_is_integer(json_object_get(res, "version")))
        fprintf(out, ", stream version %" JSON_INTEGER_FORMAT,
                geti(res, "version"));
    if (*gets(res, "machine"))
        fprintf(out, ", machine %s", gets(res, "machine"));
    if (json_is_true(json_object_get(res, "colo")))
        fputs(", COLO enabled", out);
    fputc('\n', out);
    json_int_t vd = geti(res, "vmdesc_bytes");
    if (strcmp(gets(res, "vmdesc_from"), "--desc") == 0)
        fputs("VM description: taken from the --desc stream\n", out);
    else if (vd)
        fprintf(out, "VM description: %" JSON_INTEGER_FORMAT " bytes of JSON\n",
                vd);
    else
        fputs("VM description: none (device sections cannot be decoded)\n",
              out);
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(res, "checkpoints"), i, d)
        fprintf(out, "checkpoint %" JSON_INTEGER_FORMAT ": checksum ok over "
                "%" JSON_INTEGER_FORMAT " bytes\n",
                geti(d, "checkpoint_id"), geti(d, "bytes_covered"));
    render_records(res, out);
    render_ram(res, out);
    render_disks(res, out);

    json_t *devs = json_object_get(res, "devices");
    if (json_array_size(devs) > 0)
        fputs("\ndevices:\n", out);
    json_array_foreach(devs, i, d) {
        fprintf(out, "  %s (instance %" JSON_INTEGER_FORMAT ", version %"
                JSON_INTEGER_FORMAT "):", gets(d, "name"),
                geti(d, "instance_id"), geti(d, "version"));
        print_value(out, json_object_get(d, "fields"), 4);
        fputc('\n', out);
    }

    json_t *err = json_object_get(res, "error");
    if (json_is_object(err))
        fprintf(out, "\nerror at byte %" JSON_INTEGER_FORMAT ": %s (%s)\n",
                geti(err, "offset"), gets(err, "message"), gets(err, "errno"));
}
