/*
 * savevm: stream framing and the record loop.  See savevm.h and
 * docs/stream-format.md.
 */
#include "checkpoint/savevm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_PACKAGE (1u << 30)
#define DEFAULT_MAX_DEPTH 4
#define MAX_VMDESC (64u << 20)

/*
 * How a record loop treats what it reads.  The public sv_pass has two
 * values; internally APPLY splits in two, because a package inside a stream
 * that was already validated in full need not be validated again.
 */
typedef enum loop_mode {
    MODE_VALIDATE,      /* parse and check; change nothing */
    MODE_APPLY_TRUSTED, /* apply; every byte was validated by an earlier pass */
    MODE_APPLY_CHECKED, /* apply records; validate each package before it */
} loop_mode;

struct sv_loader {
    sv_target_ops ops;
    void *opaque;
    sv_loader_opts opts;
    sv_section *sections;   /* started sections, for PART/END lookups */
    size_t nsections;
    size_t cap;
    char machine[256];
    bool colo;
};

static const struct {
    const char *name;
    int len;            /* -1: variable */
} cmd_table[SV_CMD_MAX] = {
    [SV_CMD_INVALID] = { "INVALID", -1 },
    [SV_CMD_OPEN_RETURN_PATH] = { "OPEN_RETURN_PATH", 0 },
    [SV_CMD_PING] = { "PING", 4 },
    [SV_CMD_POSTCOPY_ADVISE] = { "POSTCOPY_ADVISE", -1 },
    [SV_CMD_POSTCOPY_LISTEN] = { "POSTCOPY_LISTEN", 0 },
    [SV_CMD_POSTCOPY_RUN] = { "POSTCOPY_RUN", 0 },
    [SV_CMD_POSTCOPY_RAM_DISCARD] = { "POSTCOPY_RAM_DISCARD", -1 },
    [SV_CMD_PACKAGED] = { "PACKAGED", 4 },
    [SV_CMD_ENABLE_COLO] = { "ENABLE_COLO", 0 },
    [SV_CMD_POSTCOPY_RESUME] = { "POSTCOPY_RESUME", 0 },
    [SV_CMD_RECV_BITMAP] = { "RECV_BITMAP", -1 },
};

const char *sv_cmd_name(uint16_t cmd)
{
    return cmd < SV_CMD_MAX ? cmd_table[cmd].name : NULL;
}

int sv_cmd_len(uint16_t cmd)
{
    return cmd < SV_CMD_MAX ? cmd_table[cmd].len : -1;
}

const char *sv_type_name(uint8_t type)
{
    switch (type) {
    case SV_EOF: return "EOF";
    case SV_SECTION_START: return "SECTION_START";
    case SV_SECTION_PART: return "SECTION_PART";
    case SV_SECTION_END: return "SECTION_END";
    case SV_SECTION_FULL: return "SECTION_FULL";
    case SV_SUBSECTION: return "SUBSECTION";
    case SV_VMDESCRIPTION: return "VMDESCRIPTION";
    case SV_CONFIGURATION: return "CONFIGURATION";
    case SV_COMMAND: return "COMMAND";
    case SV_SECTION_FOOTER: return "SECTION_FOOTER";
    }
    return NULL;
}

/* ---- writing ---- */

void sv_put_header(qfile *f)
{
    qf_put_be32(f, SV_MAGIC);
    qf_put_be32(f, SV_VERSION);
}

void sv_put_config(qfile *f, const char *machine)
{
    uint32_t n = (uint32_t)strlen(machine);
    qf_put_u8(f, SV_CONFIGURATION);
    qf_put_be32(f, n);
    qf_put_buf(f, machine, n);
}

void sv_put_section_start(qfile *f, sv_type type, uint32_t section_id,
                          const char *idstr, uint32_t instance_id,
                          uint32_t version_id)
{
    qf_put_u8(f, type);
    qf_put_be32(f, section_id);
    qf_put_str(f, idstr);
    qf_put_be32(f, instance_id);
    qf_put_be32(f, version_id);
}

void sv_put_section_part(qfile *f, sv_type type, uint32_t section_id)
{
    qf_put_u8(f, type);
    qf_put_be32(f, section_id);
}

void sv_put_footer(qfile *f, uint32_t section_id)
{
    qf_put_u8(f, SV_SECTION_FOOTER);
    qf_put_be32(f, section_id);
}

void sv_put_command(qfile *f, sv_cmd cmd, uint16_t len, const void *data)
{
    qf_put_u8(f, SV_COMMAND);
    qf_put_be16(f, cmd);
    qf_put_be16(f, len);
    qf_put_buf(f, data, len);
}

void sv_put_ping(qfile *f, uint32_t value)
{
    qf_put_u8(f, SV_COMMAND);
    qf_put_be16(f, SV_CMD_PING);
    qf_put_be16(f, 4);
    qf_put_be32(f, value);
}

void sv_put_packaged(qfile *f, const void *buf, uint32_t len)
{
    qf_put_u8(f, SV_COMMAND);
    qf_put_be16(f, SV_CMD_PACKAGED);
    qf_put_be16(f, 4);
    qf_put_be32(f, len);
    qf_put_iov(f, buf, len);
}

void sv_put_eof(qfile *f)
{
    qf_put_u8(f, SV_EOF);
}

void sv_put_vmdesc(qfile *f, const char *json, uint32_t len)
{
    qf_put_u8(f, SV_VMDESCRIPTION);
    qf_put_be32(f, len);
    qf_put_buf(f, json, len);
}

void sv_put_rp_pong(qfile *rp, uint32_t value)
{
    qf_put_be16(rp, SV_RP_PONG);
    qf_put_be16(rp, 4);
    qf_put_be32(rp, value);
}

/* ---- loader state ---- */

sv_loader *sv_loader_new(const sv_target_ops *ops, void *opaque,
                         const sv_loader_opts *opts)
{
    sv_loader *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->ops = *ops;
    l->opaque = opaque;
    if (opts) {
        l->opts = *opts;
    } else {
        l->opts.footers = true;
    }
    if (!l->opts.max_package)
        l->opts.max_package = DEFAULT_MAX_PACKAGE;
    if (!l->opts.max_depth)
        l->opts.max_depth = DEFAULT_MAX_DEPTH;
    return l;
}

void sv_loader_free(sv_loader *l)
{
    if (!l)
        return;
    free(l->sections);
    free(l);
}

const char *sv_loader_machine(const sv_loader *l) { return l->machine; }
bool sv_loader_colo(const sv_loader *l) { return l->colo; }

static sv_section *find_section(sv_loader *l, uint32_t id)
{
    for (size_t i = 0; i < l->nsections; i++)
        if (l->sections[i].section_id == id)
            return &l->sections[i];
    return NULL;
}

static int remember_section(sv_loader *l, qfile *f, const sv_section *sec)
{
    sv_section *old = find_section(l, sec->section_id);
    if (old) {
        if (strcmp(old->idstr, sec->idstr) != 0 ||
            old->instance_id != sec->instance_id)
            return qf_fail(f, -EINVAL,
                           "section id %u reused for '%s' instance %u "
                           "(it is '%s' instance %u)",
                           sec->section_id, sec->idstr, sec->instance_id,
                           old->idstr, old->instance_id);
        *old = *sec;
        return 0;
    }
    if (l->nsections == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        sv_section *n = realloc(l->sections, cap * sizeof(*n));
        if (!n)
            return qf_fail(f, -ENOMEM, "out of memory for section table");
        l->sections = n;
        l->cap = cap;
    }
    l->sections[l->nsections++] = *sec;
    return 0;
}

/* ---- header ---- */

/*
 * The reference's configuration section is a device-state record: be32
 * name length, the name, then subsections.  We read the ones the reference
 * defines and refuse others, since we cannot know their length.
 */
static int load_config_subsection(sv_loader *l, qfile *f)
{
    (void)l;
    char name[256];
    qf_get_u8(f);
    qf_get_str(f, name);
    uint32_t version = qf_get_be32(f);
    if (qf_error(f))
        return qf_error(f);
    if (strcmp(name, "configuration/target-page-bits") == 0) {
        uint32_t bits = qf_get_be32(f);
        if (!qf_error(f) && bits != 12)
            return qf_fail(f, -ENOTSUP,
                           "configuration: target page bits %u, this build "
                           "uses 4 KiB pages (12)", bits);
    } else if (strcmp(name, "configuration/capabilities") == 0) {
        uint32_t n = qf_get_be32(f);
        char cap[256];
        for (uint32_t i = 0; i < n && !qf_error(f); i++)
            qf_get_str(f, cap);
    } else if (strcmp(name, "configuration/uuid") == 0) {
        qf_skip(f, 16);
    } else {
        return qf_fail(f, -EINVAL,
                       "configuration: unknown subsection '%s' version %u",
                       name, version);
    }
    return qf_error(f);
}

static int load_config(sv_loader *l, qfile *f)
{
    uint32_t n = qf_get_be32(f);
    if (qf_error(f))
        return qf_error(f);
    if (n > 255)
        return qf_fail(f, -EINVAL,
                       "configuration: machine name of %u bytes (limit 255)", n);
    qf_get_buf(f, l->machine, n);
    l->machine[qf_error(f) ? 0 : n] = '\0';
    while (!qf_error(f) && qf_peek_u8(f) == SV_SUBSECTION)
        load_config_subsection(l, f);
    return qf_error(f);
}

int sv_load_header(sv_loader *l, qfile *f)
{
    uint64_t at = qf_tell(f);
    uint32_t magic = qf_get_be32(f);
    uint32_t version = qf_get_be32(f);
    if (qf_error(f))
        return qf_error(f);
    if (magic != SV_MAGIC)
        return qf_fail_at(f, at, -EINVAL,
                          "not a checkpoint stream: magic 0x%08x, expected "
                          "0x%08x (\"QEVM\")", magic, SV_MAGIC);
    if (version == SV_VERSION_COMPAT)
        return qf_fail_at(f, at + 4, -ENOTSUP, "stream version 2 is the "
                          "obsolete pre-2009 format");
    if (version != SV_VERSION)
        return qf_fail_at(f, at + 4, -ENOTSUP, "unsupported stream version "
                          "%u (this build reads %u)", version, SV_VERSION);
    l->machine[0] = '\0';
    if (qf_peek_u8(f) == SV_CONFIGURATION) {
        qf_get_u8(f);
        return load_config(l, f);
    }
    return qf_error(f);
}

/* ---- records ---- */

static int load_loop(sv_loader *l, qfile *f, loop_mode mode, bool allow_end,
                     int depth, sv_stop *why);

static sv_pass pass_of(loop_mode mode)
{
    return mode == MODE_VALIDATE ? SV_PASS_VALIDATE : SV_PASS_APPLY;
}

static int check_footer(sv_loader *l, qfile *f, const sv_section *sec)
{
    if (!l->opts.footers)
        return 0;
    uint8_t mark = qf_get_u8(f);
    uint32_t id = qf_get_be32(f);
    if (qf_error(f))
        return qf_error(f);
    if (mark != SV_SECTION_FOOTER)
        return qf_fail(f, -EINVAL,
                       "section '%s' (id %u): footer missing, found byte "
                       "0x%02x where 0x%02x was expected; the section's "
                       "body does not match its length",
                       sec->idstr, sec->section_id, mark, SV_SECTION_FOOTER);
    if (id != sec->section_id)
        return qf_fail(f, -EINVAL,
                       "section '%s': footer names section id %u, expected %u",
                       sec->idstr, id, sec->section_id);
    return 0;
}

static void observe(sv_loader *l, qfile *f, sv_record *rec)
{
    if (!l->ops.observe || rec->pass != SV_PASS_APPLY)
        return;
    rec->end = qf_base(f) + qf_tell(f);
    l->ops.observe(l->opaque, rec);
}

static int load_section(sv_loader *l, qfile *f, uint8_t type, loop_mode mode,
                        sv_record *rec)
{
    sv_section sec = { .type = type };
    sec.section_id = qf_get_be32(f);
    if (type == SV_SECTION_START || type == SV_SECTION_FULL) {
        qf_get_str(f, sec.idstr);
        sec.instance_id = qf_get_be32(f);
        sec.version_id = qf_get_be32(f);
        if (qf_error(f))
            return qf_error(f);
        if (type == SV_SECTION_START && remember_section(l, f, &sec) < 0)
            return qf_error(f);
    } else {
        if (qf_error(f))
            return qf_error(f);
        const sv_section *start = find_section(l, sec.section_id);
        if (!start)
            return qf_fail(f, -EINVAL,
                           "%s for section id %u, which no SECTION_START "
                           "opened", sv_type_name(type), sec.section_id);
        sec = *start;
        sec.type = type;
    }
    int r = l->ops.section(l->opaque, f, &sec, pass_of(mode));
    if (r < 0 || qf_error(f))
        return qf_error(f) ? qf_error(f)
                           : qf_fail(f, r, "section '%s' failed to load",
                                     sec.idstr);
    if (check_footer(l, f, &sec) < 0)
        return qf_error(f);
    rec->section = &sec;
    observe(l, f, rec);
    return 0;
}

/* One pass over a package: records up to EOF (or its end), then nothing. */
static int package_pass(sv_loader *l, qfile *pf, loop_mode mode, int depth)
{
    sv_stop why;
    int r = load_loop(l, pf, mode, true, depth, &why);
    if (r == 0 && why == SV_STOP_EOF && !qf_at_eof(pf))
        r = qf_fail(pf, -EINVAL, "bytes after EOF inside a package");
    return r;
}

/*
 * A package is a complete record sequence in a length-prefixed buffer.  It
 * is loaded from its own view, so its errors carry the outer byte offset.
 */
static int load_packaged(sv_loader *l, qfile *f, loop_mode mode, int depth,
                         sv_record *rec)
{
    uint32_t len = qf_get_be32(f);
    if (qf_error(f))
        return qf_error(f);
    rec->package_len = len;
    if (len > l->opts.max_package)
        return qf_fail(f, -EFBIG,
                       "package of %u bytes exceeds the %u-byte limit",
                       len, l->opts.max_package);
    if (depth + 1 > l->opts.max_depth)
        return qf_fail(f, -ELOOP,
                       "package nested %d deep (limit %d)", depth + 1,
                       l->opts.max_depth);

    uint64_t start = qf_base(f) + qf_tell(f);
    uint8_t *copy = NULL;
    const uint8_t *bytes;
    int64_t left = qf_remaining(f);
    if (left >= 0 && len > (uint64_t)left)
        return qf_fail(f, -ENODATA, "package of %u bytes, but only %lld "
                       "bytes follow", len, (long long)left);
    if (len <= QF_BUF_SIZE || left >= 0) {
        bytes = qf_get_ptr(f, len);
    } else {
        copy = malloc(len);
        if (!copy)
            return qf_fail(f, -ENOMEM, "no memory for a %u-byte package", len);
        qf_get_buf(f, copy, len);
        bytes = copy;
    }
    if (qf_error(f)) {
        free(copy);
        return qf_error(f);
    }

    qfile *pf = qf_open_view(bytes, len, qf_name(f));
    if (!pf) {
        free(copy);
        return qf_fail(f, -ENOMEM, "no memory for a package view");
    }
    qf_set_base(pf, start);
    /* For a trailer's sum over the package; a rewind restarts it. */
    qf_crc_start(pf);

    int r = 0;
    size_t sections_before = l->nsections;
    if (mode != MODE_APPLY_TRUSTED) {
        r = package_pass(l, pf, MODE_VALIDATE, depth + 1);
        /* Starts seen while validating become real only when applied. */
        l->nsections = sections_before;
        if (r == 0 && mode == MODE_APPLY_CHECKED && l->ops.validated &&
            (r = l->ops.validated(l->opaque, pf)) < 0 && !qf_error(pf))
            qf_fail(pf, r, "the package was refused after validation");
        if (r == 0) {
            qf_rewind(pf);
            /* Validated: summing it again would cost as much as applying. */
            qf_crc_stop(pf);
        } else if (mode == MODE_APPLY_CHECKED && l->ops.package_failed &&
                   l->ops.package_failed(l->opaque, pf) == 0) {
            qf_close(pf);
            free(copy);
            return 0;
        }
    }
    if (r == 0 && mode != MODE_VALIDATE)
        r = package_pass(l, pf, MODE_APPLY_TRUSTED, depth + 1);
    if (r < 0)
        qf_take_error(f, pf);
    qf_close(pf);
    free(copy);
    if (r < 0)
        return qf_error(f);
    observe(l, f, rec);
    return 0;
}

static int load_command(sv_loader *l, qfile *f, loop_mode mode, int depth,
                        sv_record *rec)
{
    uint16_t cmd = qf_get_be16(f);
    uint16_t len = qf_get_be16(f);
    if (qf_error(f))
        return qf_error(f);
    rec->cmd = cmd;
    rec->cmd_len = len;
    if (cmd == SV_CMD_INVALID || cmd >= SV_CMD_MAX)
        return qf_fail(f, -EINVAL, "unknown command 0x%04x (length %u)",
                       cmd, len);
    if (cmd_table[cmd].len >= 0 && cmd_table[cmd].len != len)
        return qf_fail(f, -EINVAL,
                       "command %s with length %u, expected %d",
                       cmd_table[cmd].name, len, cmd_table[cmd].len);
    bool apply = mode != MODE_VALIDATE;
    switch ((sv_cmd)cmd) {
    case SV_CMD_PACKAGED:
        return load_packaged(l, f, mode, depth, rec);
    case SV_CMD_PING: {
        uint32_t v = qf_get_be32(f);
        if (qf_error(f))
            return qf_error(f);
        observe(l, f, rec);
        if (!apply)
            return 0;
        if (!l->opts.return_path)
            return qf_fail(f, -EINVAL, "PING 0x%x with no return path open",
                           v);
        if (l->opts.return_path_lock)
            pthread_mutex_lock(l->opts.return_path_lock);
        sv_put_rp_pong(l->opts.return_path, v);
        int fr = qf_flush(l->opts.return_path);
        if (l->opts.return_path_lock)
            pthread_mutex_unlock(l->opts.return_path_lock);
        if (fr < 0)
            return qf_fail(f, fr, "answering PING: %s",
                           qf_errmsg(l->opts.return_path));
        return 0;
    }
    case SV_CMD_ENABLE_COLO:
    case SV_CMD_OPEN_RETURN_PATH:
        observe(l, f, rec);
        if (!apply)
            return 0;
        if (cmd == SV_CMD_ENABLE_COLO)
            l->colo = true;
        if (l->ops.command) {
            int r = l->ops.command(l->opaque, (sv_cmd)cmd);
            if (r < 0)
                return qf_fail(f, r, "command %s refused",
                               cmd_table[cmd].name);
        }
        return 0;
    default:
        return qf_fail(f, -ENOTSUP, "command %s is not supported by ftvm",
                       cmd_table[cmd].name);
    }
}

static int load_loop(sv_loader *l, qfile *f, loop_mode mode, bool allow_end,
                     int depth, sv_stop *why)
{
    for (;;) {
        if (allow_end && qf_at_eof(f)) {
            *why = SV_STOP_END;
            return 0;
        }
        sv_record rec = { .offset = qf_base(f) + qf_tell(f), .depth = depth,
                          .pass = pass_of(mode) };
        uint8_t type = qf_get_u8(f);
        if (qf_error(f))
            return qf_error(f);
        rec.type = type;
        int r;
        switch (type) {
        case SV_SECTION_START:
        case SV_SECTION_FULL:
        case SV_SECTION_PART:
        case SV_SECTION_END:
            r = load_section(l, f, type, mode, &rec);
            break;
        case SV_COMMAND:
            r = load_command(l, f, mode, depth, &rec);
            break;
        case SV_EOF:
            observe(l, f, &rec);
            *why = SV_STOP_EOF;
            return 0;
        default:
            r = qf_fail(f, -EINVAL, "unknown record type 0x%02x", type);
            break;
        }
        if (r < 0)
            return r;
    }
}

int sv_load_main(sv_loader *l, qfile *f, sv_pass pass, bool allow_end,
                 sv_stop *why)
{
    sv_stop dummy;
    loop_mode mode = pass == SV_PASS_VALIDATE ? MODE_VALIDATE
                                              : MODE_APPLY_CHECKED;
    size_t sections_before = l->nsections;
    int r = load_loop(l, f, mode, allow_end, 0, why ? why : &dummy);
    if (mode == MODE_VALIDATE)
        l->nsections = sections_before;
    return r;
}

int sv_load_vmdesc(qfile *f, char **json, uint32_t *len)
{
    *json = NULL;
    *len = 0;
    if (qf_peek_u8(f) != SV_VMDESCRIPTION)
        return qf_error(f);
    qf_get_u8(f);
    uint32_t n = qf_get_be32(f);
    if (qf_error(f))
        return qf_error(f);
    if (n > MAX_VMDESC)
        return qf_fail(f, -EFBIG, "VM description of %u bytes (limit %u)",
                       n, MAX_VMDESC);
    char *s = malloc((size_t)n + 1);
    if (!s)
        return qf_fail(f, -ENOMEM, "no memory for the VM description");
    qf_get_buf(f, s, n);
    if (qf_error(f)) {
        free(s);
        return qf_error(f);
    }
    s[n] = '\0';
    *json = s;
    *len = n;
    return 0;
}

/* Header, records to EOF, an optional description, and nothing after. */
static int load_whole(sv_loader *l, qfile *f, loop_mode mode)
{
    sv_stop why;
    if (sv_load_header(l, f) < 0)
        return qf_error(f);
    if (load_loop(l, f, mode, false, 0, &why) < 0)
        return qf_error(f);
    char *json;
    uint32_t len;
    if (sv_load_vmdesc(f, &json, &len) < 0)
        return qf_error(f);
    free(json);
    if (!qf_at_eof(f) && !qf_error(f))
        return qf_fail(f, -EINVAL, "unexpected bytes after the end of the "
                       "stream (record type 0x%02x)", qf_peek_u8(f));
    return qf_error(f);
}

int sv_load_checked(sv_loader *l, qfile *f)
{
    size_t sections_before = l->nsections;
    int r = load_whole(l, f, MODE_VALIDATE);
    l->nsections = sections_before;
    if (r == 0 && l->ops.validated && (r = l->ops.validated(l->opaque, f)) < 0
        && !qf_error(f))
        qf_fail(f, r, "the stream was refused after validation");
    if (r < 0)
        return qf_error(f);
    r = qf_rewind(f);
    if (r < 0)
        return qf_fail(f, r, "cannot rewind to apply: the channel is not "
                       "seekable");
    return load_whole(l, f, MODE_APPLY_TRUSTED);
}
