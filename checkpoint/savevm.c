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
/* What a package's staging buffer grows by at first, and is read by. */
#define STAGE_PIECE (1u << 20)
#define MAX_VMDESC (64u << 20)

/*
 * How a record loop treats what it reads.  The public savevm_pass has two
 * values; internally APPLY splits in two, because a package inside a stream
 * that was already validated in full need not be validated again.
 */
typedef enum loop_mode {
    MODE_VALIDATE,      /* parse and check; change nothing */
    MODE_APPLY_TRUSTED, /* apply; every byte was validated by an earlier pass */
    MODE_APPLY_CHECKED, /* apply records; validate each package before it */
} loop_mode;

/* Started sections, for PART/END lookups. */
typedef struct started {
    savevm_section *v;
    size_t n, cap;
} started;

/*
 * Each pass keeps its own table, as the RAM loader keeps its CONTINUE
 * block: a unit's VALIDATE pass starts from what was applied (begin_unit)
 * and runs ahead of it, so a unit that is refused leaves no trace.
 */
struct savevm_loader {
    savevm_target_ops ops;
    void *opaque;
    savevm_loader_opts opts;
    started tab[SAVEVM_PASS_APPLY + 1];     /* indexed by savevm_pass */
    char machine[256];
    bool colo;
};

static const struct {
    const char *name;
    int len;            /* -1: variable */
} cmd_table[SAVEVM_CMD_MAX] = {
    [SAVEVM_CMD_INVALID] = {"INVALID", -1},
    [SAVEVM_CMD_OPEN_RETURN_PATH] = {"OPEN_RETURN_PATH", 0},
    [SAVEVM_CMD_PING] = {"PING", 4},
    [SAVEVM_CMD_POSTCOPY_ADVISE] = {"POSTCOPY_ADVISE", -1},
    [SAVEVM_CMD_POSTCOPY_LISTEN] = {"POSTCOPY_LISTEN", 0},
    [SAVEVM_CMD_POSTCOPY_RUN] = {"POSTCOPY_RUN", 0},
    [SAVEVM_CMD_POSTCOPY_RAM_DISCARD] = {"POSTCOPY_RAM_DISCARD", -1},
    [SAVEVM_CMD_PACKAGED] = {"PACKAGED", 4},
    [SAVEVM_CMD_ENABLE_COLO] = {"ENABLE_COLO", 0},
    [SAVEVM_CMD_POSTCOPY_RESUME] = {"POSTCOPY_RESUME", 0},
    [SAVEVM_CMD_RECV_BITMAP] = {"RECV_BITMAP", -1},
};

const char *savevm_cmd_name(uint16_t cmd)
{
    return cmd < SAVEVM_CMD_MAX ? cmd_table[cmd].name : NULL;
}

int savevm_cmd_len(uint16_t cmd)
{
    return cmd < SAVEVM_CMD_MAX ? cmd_table[cmd].len : -1;
}

const char *savevm_type_name(uint8_t type)
{
    switch (type) {
    case SAVEVM_EOF:
        return "EOF";
    case SAVEVM_SECTION_START:
        return "SECTION_START";
    case SAVEVM_SECTION_PART:
        return "SECTION_PART";
    case SAVEVM_SECTION_END:
        return "SECTION_END";
    case SAVEVM_SECTION_FULL:
        return "SECTION_FULL";
    case SAVEVM_SUBSECTION:
        return "SUBSECTION";
    case SAVEVM_VMDESCRIPTION:
        return "VMDESCRIPTION";
    case SAVEVM_CONFIGURATION:
        return "CONFIGURATION";
    case SAVEVM_COMMAND:
        return "COMMAND";
    case SAVEVM_SECTION_FOOTER:
        return "SECTION_FOOTER";
    }
    return NULL;
}

/* ---- writing ---- */

void savevm_put_header(qfile *f)
{
    qfile_put_be32(f, SAVEVM_MAGIC);
    qfile_put_be32(f, SAVEVM_VERSION);
}

void savevm_put_config(qfile *f, const char *machine)
{
    uint32_t n = (uint32_t)strlen(machine);
    qfile_put_u8(f, SAVEVM_CONFIGURATION);
    qfile_put_be32(f, n);
    qfile_put_buf(f, machine, n);
}

void savevm_put_section_start(qfile *f, savevm_type type, uint32_t section_id,
                              const char *idstr, uint32_t instance_id,
                              uint32_t version_id)
{
    qfile_put_u8(f, type);
    qfile_put_be32(f, section_id);
    qfile_put_str(f, idstr);
    qfile_put_be32(f, instance_id);
    qfile_put_be32(f, version_id);
}

void savevm_put_section_part(qfile *f, savevm_type type, uint32_t section_id)
{
    qfile_put_u8(f, type);
    qfile_put_be32(f, section_id);
}

void savevm_put_footer(qfile *f, uint32_t section_id)
{
    qfile_put_u8(f, SAVEVM_SECTION_FOOTER);
    qfile_put_be32(f, section_id);
}

void savevm_put_command(qfile *f, savevm_cmd cmd, uint16_t len,
                        const void *data)
{
    qfile_put_u8(f, SAVEVM_COMMAND);
    qfile_put_be16(f, cmd);
    qfile_put_be16(f, len);
    qfile_put_buf(f, data, len);
}

void savevm_put_ping(qfile *f, uint32_t value)
{
    qfile_put_u8(f, SAVEVM_COMMAND);
    qfile_put_be16(f, SAVEVM_CMD_PING);
    qfile_put_be16(f, 4);
    qfile_put_be32(f, value);
}

void savevm_put_packaged(qfile *f, const void *buf, uint32_t len)
{
    qfile_put_u8(f, SAVEVM_COMMAND);
    qfile_put_be16(f, SAVEVM_CMD_PACKAGED);
    qfile_put_be16(f, 4);
    qfile_put_be32(f, len);
    qfile_put_iov(f, buf, len);
}

void savevm_put_eof(qfile *f)
{
    qfile_put_u8(f, SAVEVM_EOF);
}

void savevm_put_vmdesc(qfile *f, const char *json, uint32_t len)
{
    qfile_put_u8(f, SAVEVM_VMDESCRIPTION);
    qfile_put_be32(f, len);
    qfile_put_buf(f, json, len);
}

void savevm_put_rp_pong(qfile *rp, uint32_t value)
{
    qfile_put_be16(rp, SAVEVM_RP_PONG);
    qfile_put_be16(rp, 4);
    qfile_put_be32(rp, value);
}

/* ---- loader state ---- */

savevm_loader *savevm_loader_new(const savevm_target_ops *ops, void *opaque,
                                 const savevm_loader_opts *opts)
{
    savevm_loader *l = calloc(1, sizeof(*l));
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

void savevm_loader_set_max_package(savevm_loader *l, uint32_t max)
{
    l->opts.max_package = max ? max : DEFAULT_MAX_PACKAGE;
}

void savevm_loader_free(savevm_loader *l)
{
    if (!l)
        return;
    for (size_t i = 0; i <= SAVEVM_PASS_APPLY; i++)
        free(l->tab[i].v);
    free(l);
}

const char *savevm_loader_machine(const savevm_loader *l)
{
    return l->machine;
}
bool savevm_loader_colo(const savevm_loader *l)
{
    return l->colo;
}

static savevm_section *find_section(started *t, uint32_t id)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].section_id == id)
            return &t->v[i];
    return NULL;
}

static int grow(started *t, size_t want)
{
    if (want <= t->cap)
        return 0;
    size_t cap = t->cap ? t->cap : 16;
    while (cap < want)
        cap *= 2;
    savevm_section *n = realloc(t->v, cap * sizeof(*n));
    if (!n)
        return -ENOMEM;
    t->v = n;
    t->cap = cap;
    return 0;
}

/*
 * A unit (a whole stream, or a package applied as it arrives) is about to
 * be validated: its VALIDATE pass starts from what has been applied, here
 * and in the target.
 */
static int begin_unit(savevm_loader *l, qfile *f)
{
    started *v = &l->tab[SAVEVM_PASS_VALIDATE];
    const started *a = &l->tab[SAVEVM_PASS_APPLY];
    if (grow(v, a->n) < 0)
        return qfile_fail(f, -ENOMEM, "out of memory for section table");
    if (a->n)
        memcpy(v->v, a->v, a->n * sizeof(*a->v));
    v->n = a->n;
    if (l->ops.begin_validate)
        l->ops.begin_validate(l->opaque);
    return 0;
}

static int remember_section(savevm_loader *l, qfile *f,
                            const savevm_section *sec, savevm_pass pass)
{
    started *t = &l->tab[pass];
    savevm_section *old = find_section(t, sec->section_id);
    if (old) {
        if (strcmp(old->idstr, sec->idstr) != 0 ||
            old->instance_id != sec->instance_id)
            return qfile_fail(f, -EINVAL,
                              "section id %u reused for '%s' instance %u "
                              "(it is '%s' instance %u)",
                              sec->section_id, sec->idstr, sec->instance_id,
                              old->idstr, old->instance_id);
        *old = *sec;
        return 0;
    }
    if (grow(t, t->n + 1) < 0)
        return qfile_fail(f, -ENOMEM, "out of memory for section table");
    t->v[t->n++] = *sec;
    return 0;
}

/* ---- header ---- */

/*
 * QEMU's configuration section is a device-state record: be32
 * name length, the name, then subsections.  We read the ones QEMU
 * defines and refuse others, since we cannot know their length.
 */
static int load_config_subsection(savevm_loader *l, qfile *f)
{
    (void)l;
    char name[256];
    qfile_get_u8(f);
    qfile_get_str(f, name);
    uint32_t version = qfile_get_be32(f);
    if (qfile_error(f))
        return qfile_error(f);
    if (strcmp(name, "configuration/target-page-bits") == 0) {
        uint32_t bits = qfile_get_be32(f);
        if (!qfile_error(f) && bits != 12)
            return qfile_fail(f, -ENOTSUP,
                              "configuration: target page bits %u, this build "
                              "uses 4 KiB pages (12)",
                              bits);
    } else if (strcmp(name, "configuration/capabilities") == 0) {
        uint32_t n = qfile_get_be32(f);
        char cap[256];
        for (uint32_t i = 0; i < n && !qfile_error(f); i++)
            qfile_get_str(f, cap);
    } else if (strcmp(name, "configuration/uuid") == 0) {
        qfile_skip(f, 16);
    } else {
        return qfile_fail(f, -EINVAL,
                          "configuration: unknown subsection '%s' version %u",
                          name, version);
    }
    return qfile_error(f);
}

static int load_config(savevm_loader *l, qfile *f)
{
    uint32_t n = qfile_get_be32(f);
    if (qfile_error(f))
        return qfile_error(f);
    if (n > 255)
        return qfile_fail(
            f, -EINVAL, "configuration: machine name of %u bytes (limit 255)",
            n);
    qfile_get_buf(f, l->machine, n);
    l->machine[qfile_error(f) ? 0 : n] = '\0';
    while (!qfile_error(f) && qfile_peek_u8(f) == SAVEVM_SUBSECTION)
        load_config_subsection(l, f);
    return qfile_error(f);
}

int savevm_load_header(savevm_loader *l, qfile *f)
{
    uint64_t at = qfile_tell(f);
    uint32_t magic = qfile_get_be32(f);
    uint32_t version = qfile_get_be32(f);
    if (qfile_error(f))
        return qfile_error(f);
    if (magic != SAVEVM_MAGIC)
        return qfile_fail_at(f, at, -EINVAL,
                             "not a checkpoint stream: magic 0x%08x, expected "
                             "0x%08x (\"QEVM\")",
                             magic, SAVEVM_MAGIC);
    if (version == SAVEVM_VERSION_COMPAT)
        return qfile_fail_at(f, at + 4, -ENOTSUP,
                             "stream version 2 is the "
                             "obsolete pre-2009 format");
    if (version != SAVEVM_VERSION)
        return qfile_fail_at(f, at + 4, -ENOTSUP,
                             "unsupported stream version "
                             "%u (this build reads %u)",
                             version, SAVEVM_VERSION);
    l->machine[0] = '\0';
    if (qfile_peek_u8(f) == SAVEVM_CONFIGURATION) {
        qfile_get_u8(f);
        return load_config(l, f);
    }
    return qfile_error(f);
}

/* ---- records ---- */

static int load_loop(savevm_loader *l, qfile *f, loop_mode mode,
                     bool allow_end, int depth, savevm_stop *why);

static savevm_pass pass_of(loop_mode mode)
{
    return mode == MODE_VALIDATE ? SAVEVM_PASS_VALIDATE : SAVEVM_PASS_APPLY;
}

static int check_footer(savevm_loader *l, qfile *f, const savevm_section *sec)
{
    if (!l->opts.footers)
        return 0;
    uint8_t mark = qfile_get_u8(f);
    uint32_t id = qfile_get_be32(f);
    if (qfile_error(f))
        return qfile_error(f);
    if (mark != SAVEVM_SECTION_FOOTER)
        return qfile_fail(f, -EINVAL,
                          "section '%s' (id %u): footer missing, found byte "
                          "0x%02x where 0x%02x was expected; the section's "
                          "body does not match its length",
                          sec->idstr, sec->section_id, mark,
                          SAVEVM_SECTION_FOOTER);
    if (id != sec->section_id)
        return qfile_fail(
            f, -EINVAL,
            "section '%s': footer names section id %u, expected %u",
            sec->idstr, id, sec->section_id);
    return 0;
}

static void observe(savevm_loader *l, qfile *f, savevm_record *rec)
{
    if (!l->ops.observe || rec->pass != SAVEVM_PASS_APPLY)
        return;
    rec->end = qfile_base(f) + qfile_tell(f);
    l->ops.observe(l->opaque, rec);
}

static int load_section(savevm_loader *l, qfile *f, uint8_t type,
                        loop_mode mode, savevm_record *rec)
{
    savevm_section sec = {.type = type};
    sec.section_id = qfile_get_be32(f);
    if (type == SAVEVM_SECTION_START || type == SAVEVM_SECTION_FULL) {
        qfile_get_str(f, sec.idstr);
        sec.instance_id = qfile_get_be32(f);
        sec.version_id = qfile_get_be32(f);
        if (qfile_error(f))
            return qfile_error(f);
        if (type == SAVEVM_SECTION_START &&
            remember_section(l, f, &sec, pass_of(mode)) < 0)
            return qfile_error(f);
    } else {
        if (qfile_error(f))
            return qfile_error(f);
        const savevm_section *start =
            find_section(&l->tab[pass_of(mode)], sec.section_id);
        if (!start)
            return qfile_fail(f, -EINVAL,
                              "%s for section id %u, which no SECTION_START "
                              "opened",
                              savevm_type_name(type), sec.section_id);
        sec = *start;
        sec.type = type;
    }
    int r = l->ops.section(l->opaque, f, &sec, pass_of(mode));
    if (r < 0 || qfile_error(f))
        return qfile_error(f) ? qfile_error(f)
                              : qfile_fail(f, r, "section '%s' failed to load",
                                           sec.idstr);
    if (check_footer(l, f, &sec) < 0)
        return qfile_error(f);
    rec->section = &sec;
    observe(l, f, rec);
    return 0;
}

/* One pass over a package: records up to EOF (or its end), then nothing. */
static int package_pass(savevm_loader *l, qfile *pf, loop_mode mode, int depth)
{
    savevm_stop why;
    int r = load_loop(l, pf, mode, true, depth, &why);
    if (r == 0 && why == SAVEVM_STOP_EOF && !qfile_at_eof(pf))
        r = qfile_fail(pf, -EINVAL, "bytes after EOF inside a package");
    return r;
}

/*
 * A package's bytes from a channel, staged in a buffer that grows with
 * what actually arrived: the length alone is a claim (38 bytes can say
 * 4 GiB), so the buffer is at most twice what was read, and only pages
 * written with data are touched.  Read in pieces: a channel cut off ends
 * the read without touching the rest.  NULL with the error latched on f.
 */
static uint8_t *stage(qfile *f, uint32_t len)
{
    uint8_t *buf = NULL;
    size_t cap = 0, got = 0;
    while (got < len) {
        if (got == cap) {
            size_t ncap = cap ? cap * 2 : STAGE_PIECE;
            if (ncap > len)
                ncap = len;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                qfile_fail(f, -ENOMEM, "no memory for a %u-byte package "
                           "(%zu bytes of it arrived)", len, got);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        size_t piece = cap - got < STAGE_PIECE ? cap - got : STAGE_PIECE;
        qfile_get_buf(f, buf + got, piece);
        if (qfile_error(f)) {
            free(buf);
            return NULL;
        }
        got += piece;
    }
    return buf;
}

/*
 * A package is a complete record sequence in a length-prefixed buffer.  It
 * is loaded from its own view, so its errors carry the outer byte offset.
 */
static int load_packaged(savevm_loader *l, qfile *f, loop_mode mode, int depth,
                         savevm_record *rec)
{
    uint32_t len = qfile_get_be32(f);
    if (qfile_error(f))
        return qfile_error(f);
    rec->package_len = len;
    if (len > l->opts.max_package)
        return qfile_fail(f, -EFBIG,
                          "package of %u bytes exceeds the %u-byte limit", len,
                          l->opts.max_package);
    if (depth + 1 > l->opts.max_depth)
        return qfile_fail(f, -ELOOP, "package nested %d deep (limit %d)",
                          depth + 1, l->opts.max_depth);

    uint64_t start = qfile_base(f) + qfile_tell(f);
    uint8_t *copy = NULL;
    const uint8_t *bytes;
    int64_t left = qfile_remaining(f);
    if (left >= 0 && len > (uint64_t)left)
        return qfile_fail(f, -ENODATA,
                          "package of %u bytes, but only %lld "
                          "bytes follow",
                          len, (long long)left);
    if (len <= QFILE_BUF_SIZE || left >= 0)
        bytes = qfile_get_ptr(f, len);
    else
        bytes = copy = stage(f, len);
    if (qfile_error(f)) {
        free(copy);
        return qfile_error(f);
    }

    qfile *pf = qfile_open_view(bytes, len, qfile_name(f));
    if (!pf) {
        free(copy);
        return qfile_fail(f, -ENOMEM, "no memory for a package view");
    }
    qfile_set_base(pf, start);
    /* For a trailer's sum over the package; a rewind restarts it. */
    qfile_crc_start(pf);

    int r = 0;
    if (mode != MODE_APPLY_TRUSTED) {
        /* Inside a stream being validated, the package continues its pass. */
        if (mode == MODE_APPLY_CHECKED)
            r = begin_unit(l, pf);
        if (r == 0)
            r = package_pass(l, pf, MODE_VALIDATE, depth + 1);
        if (r == 0 && mode == MODE_APPLY_CHECKED && l->ops.validated &&
            (r = l->ops.validated(l->opaque, pf)) < 0 && !qfile_error(pf))
            qfile_fail(pf, r, "the package was refused after validation");
        if (r == 0) {
            qfile_rewind(pf);
            /* Validated: summing it again would cost as much as applying. */
            qfile_crc_stop(pf);
        } else if (mode == MODE_APPLY_CHECKED && l->ops.package_failed &&
                   l->ops.package_failed(l->opaque, pf) == 0) {
            qfile_close(pf);
            free(copy);
            return 0;
        }
    }
    if (r == 0 && mode != MODE_VALIDATE)
        r = package_pass(l, pf, MODE_APPLY_TRUSTED, depth + 1);
    if (r < 0)
        qfile_take_error(f, pf);
    qfile_close(pf);
    free(copy);
    if (r < 0)
        return qfile_error(f);
    observe(l, f, rec);
    return 0;
}

static int load_command(savevm_loader *l, qfile *f, loop_mode mode, int depth,
                        savevm_record *rec)
{
    uint16_t cmd = qfile_get_be16(f);
    uint16_t len = qfile_get_be16(f);
    if (qfile_error(f))
        return qfile_error(f);
    rec->cmd = cmd;
    rec->cmd_len = len;
    if (cmd == SAVEVM_CMD_INVALID || cmd >= SAVEVM_CMD_MAX)
        return qfile_fail(f, -EINVAL, "unknown command 0x%04x (length %u)",
                          cmd, len);
    if (cmd_table[cmd].len >= 0 && cmd_table[cmd].len != len)
        return qfile_fail(f, -EINVAL, "command %s with length %u, expected %d",
                          cmd_table[cmd].name, len, cmd_table[cmd].len);
    bool apply = mode != MODE_VALIDATE;
    switch ((savevm_cmd)cmd) {
    case SAVEVM_CMD_PACKAGED:
        return load_packaged(l, f, mode, depth, rec);
    case SAVEVM_CMD_PING: {
        uint32_t v = qfile_get_be32(f);
        if (qfile_error(f))
            return qfile_error(f);
        observe(l, f, rec);
        if (!apply)
            return 0;
        if (!l->opts.return_path)
            return qfile_fail(f, -EINVAL, "PING 0x%x with no return path open",
                              v);
        if (l->opts.return_path_lock)
            pthread_mutex_lock(l->opts.return_path_lock);
        savevm_put_rp_pong(l->opts.return_path, v);
        int fr = qfile_flush(l->opts.return_path);
        if (l->opts.return_path_lock)
            pthread_mutex_unlock(l->opts.return_path_lock);
        if (fr < 0)
            return qfile_fail(f, fr, "answering PING: %s",
                              qfile_errmsg(l->opts.return_path));
        return 0;
    }
    case SAVEVM_CMD_ENABLE_COLO:
    case SAVEVM_CMD_OPEN_RETURN_PATH:
        observe(l, f, rec);
        if (!apply)
            return 0;
        if (cmd == SAVEVM_CMD_ENABLE_COLO)
            l->colo = true;
        if (l->ops.command) {
            int r = l->ops.command(l->opaque, (savevm_cmd)cmd);
            if (r < 0)
                return qfile_fail(f, r, "command %s refused",
                                  cmd_table[cmd].name);
        }
        return 0;
    default:
        return qfile_fail(f, -ENOTSUP, "command %s is not supported by ftvm",
                          cmd_table[cmd].name);
    }
}

static int load_loop(savevm_loader *l, qfile *f, loop_mode mode,
                     bool allow_end, int depth, savevm_stop *why)
{
    for (;;) {
        if (allow_end && qfile_at_eof(f)) {
            *why = SAVEVM_STOP_END;
            return 0;
        }
        savevm_record rec = {.offset = qfile_base(f) + qfile_tell(f),
                             .depth = depth,
                             .pass = pass_of(mode)};
        uint8_t type = qfile_get_u8(f);
        if (qfile_error(f))
            return qfile_error(f);
        rec.type = type;
        int r;
        switch (type) {
        case SAVEVM_SECTION_START:
        case SAVEVM_SECTION_FULL:
        case SAVEVM_SECTION_PART:
        case SAVEVM_SECTION_END:
            r = load_section(l, f, type, mode, &rec);
            break;
        case SAVEVM_COMMAND:
            r = load_command(l, f, mode, depth, &rec);
            break;
        case SAVEVM_EOF:
            observe(l, f, &rec);
            *why = SAVEVM_STOP_EOF;
            return 0;
        default:
            r = qfile_fail(f, -EINVAL, "unknown record type 0x%02x", type);
            break;
        }
        if (r < 0)
            return r;
    }
}

int savevm_load_main(savevm_loader *l, qfile *f, savevm_pass pass,
                     bool allow_end, savevm_stop *why)
{
    savevm_stop dummy;
    loop_mode mode =
        pass == SAVEVM_PASS_VALIDATE ? MODE_VALIDATE : MODE_APPLY_CHECKED;
    if (mode == MODE_VALIDATE && begin_unit(l, f) < 0)
        return qfile_error(f);
    return load_loop(l, f, mode, allow_end, 0, why ? why : &dummy);
}

int savevm_load_vmdesc(qfile *f, char **json, uint32_t *len)
{
    *json = NULL;
    *len = 0;
    if (qfile_peek_u8(f) != SAVEVM_VMDESCRIPTION)
        return qfile_error(f);
    qfile_get_u8(f);
    uint32_t n = qfile_get_be32(f);
    if (qfile_error(f))
        return qfile_error(f);
    if (n > MAX_VMDESC)
        return qfile_fail(f, -EFBIG, "VM description of %u bytes (limit %u)",
                          n, MAX_VMDESC);
    char *s = malloc((size_t)n + 1);
    if (!s)
        return qfile_fail(f, -ENOMEM, "no memory for the VM description");
    qfile_get_buf(f, s, n);
    if (qfile_error(f)) {
        free(s);
        return qfile_error(f);
    }
    s[n] = '\0';
    *json = s;
    *len = n;
    return 0;
}

/* Header, records to EOF, an optional description, and nothing after. */
static int load_whole(savevm_loader *l, qfile *f, loop_mode mode)
{
    savevm_stop why;
    if (savevm_load_header(l, f) < 0)
        return qfile_error(f);
    if (load_loop(l, f, mode, false, 0, &why) < 0)
        return qfile_error(f);
    char *json;
    uint32_t len;
    if (savevm_load_vmdesc(f, &json, &len) < 0)
        return qfile_error(f);
    free(json);
    if (!qfile_at_eof(f) && !qfile_error(f))
        return qfile_fail(f, -EINVAL,
                          "unexpected bytes after the end of the "
                          "stream (record type 0x%02x)",
                          qfile_peek_u8(f));
    return qfile_error(f);
}

int savevm_load_checked(savevm_loader *l, qfile *f)
{
    int r = begin_unit(l, f);
    if (r == 0)
        r = load_whole(l, f, MODE_VALIDATE);
    if (r == 0 && l->ops.validated &&
        (r = l->ops.validated(l->opaque, f)) < 0 && !qfile_error(f))
        qfile_fail(f, r, "the stream was refused after validation");
    if (r < 0)
        return qfile_error(f);
    r = qfile_rewind(f);
    if (r < 0)
        return qfile_fail(f, r,
                          "cannot rewind to apply: the channel is not "
                          "seekable");
    return load_whole(l, f, MODE_APPLY_TRUSTED);
}
