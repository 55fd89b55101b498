/* trailer: see trailer.h. */
#include "devstate/trailer.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "devstate/vmdesc.h"
#include "devstate/vmstate.h"

static const vmstate_field trailer_fields[] = {
    { VMSTATE_SCALAR(trailer_info, id) },
    { VMSTATE_SCALAR(trailer_info, covered) },
    { VMSTATE_SCALAR(trailer_info, crc) },
    VMSTATE_END,
};

static const vmstate_desc trailer_desc = {
    .name = TRAILER_IDSTR, .version = TRAILER_VERSION,
    .minimum_version = TRAILER_VERSION, .size = sizeof(trailer_info),
    .fields = trailer_fields,
};

static const vmstate_field pkg_fields[] = {
    { VMSTATE_SCALAR(trailer_pkg, id) },
    { VMSTATE_SCALAR(trailer_pkg, base) },
    { VMSTATE_SCALAR(trailer_pkg, flags) },
    { .name = "pairing", .type = VMSTATE_T_BUFFER,
      .offset = offsetof(trailer_pkg, pair.id), .size = PAIRING_ID_LEN },
    { .name = "name", .type = VMSTATE_T_BUFFER,
      .offset = offsetof(trailer_pkg, pair.name),
      .size = PAIRING_NAME_MAX + 1 },
    { .name = "generation", .type = VMSTATE_T_U64,
      .offset = offsetof(trailer_pkg, pair.generation), .size = 8 },
    VMSTATE_END,
};

static const vmstate_desc pkg_desc = {
    .name = TRAILER_PKG_IDSTR, .version = TRAILER_PKG_VERSION,
    .minimum_version = TRAILER_PKG_VERSION, .size = sizeof(trailer_pkg),
    .fields = pkg_fields,
};

int trailer_put_desc(qfile *f, uint32_t section_id, uint64_t id,
                     json_t *vmdesc_devices)
{
    json_t *jdev = NULL;

    if (vmdesc_devices &&
        !(jdev = vmdesc_add_device(vmdesc_devices, TRAILER_IDSTR, 0)))
        return qfile_fail(f, -ENOMEM, "no memory for the VM description "
                          "of '%s'", TRAILER_IDSTR);
    /*
     * Not vmstate_save_section(): the body is the sum of everything
     * before it, this section's header included, so the header goes first.
     */
    savevm_put_section_start(f, SAVEVM_SECTION_FULL, section_id,
                             TRAILER_IDSTR, 0, trailer_desc.version);
    trailer_info info = { .id = id, .covered = qfile_tell(f),
                          .crc = qfile_crc(f) };
    if (vmstate_save(f, &trailer_desc, &info, jdev) == 0)
        savevm_put_footer(f, section_id);
    return qfile_error(f);
}

void trailer_put(qfile *f, uint32_t section_id, uint64_t id)
{
    trailer_put_desc(f, section_id, id, NULL);
}

/*
 * The header of one of these sections: what a loader read before handing
 * over the body.  The version is vmstate_load()'s to check.
 */
static int check_header(qfile *f, const savevm_section *sec,
                        const char *idstr)
{
    if (sec->type != SAVEVM_SECTION_FULL || sec->instance_id != 0)
        return qfile_fail(f, -EINVAL, "section '%s': expected a FULL "
                          "section of instance 0, found %s instance %" PRIu32,
                          idstr, savevm_type_name(sec->type),
                          sec->instance_id);
    return 0;
}

/*
 * The body goes into the caller's own struct: nothing a target holds is
 * written, so the apply pass is right in either of the loader's passes.
 */
static int load_body(qfile *f, const savevm_section *sec,
                     const vmstate_desc *d, void *out)
{
    if (check_header(f, sec, d->name) < 0)
        return qfile_error(f);
    return vmstate_load(f, d, out, sec->version_id, SAVEVM_PASS_APPLY);
}

int trailer_load(qfile *f, const savevm_section *sec, trailer_info *out)
{
    uint64_t at = qfile_tell(f);
    uint32_t want = qfile_crc(f);

    if (load_body(f, sec, &trailer_desc, out) < 0)
        return qfile_error(f);
    if (out->covered != at)
        return qfile_fail(f, -EBADMSG,
                          "checkpoint %" PRIu64 ": its checksum "
                          "covers %" PRIu64
                          " bytes but the stream has %" PRIu64
                          " before it: bytes were lost or added",
                          out->id, out->covered, at);
    if (out->crc != want)
        return qfile_fail(f, -EBADMSG,
                          "checkpoint %" PRIu64 ": checksum "
                          "mismatch (stored %08" PRIx32 ", computed %08" PRIx32
                          "): the checkpoint is corrupt",
                          out->id, out->crc, want);
    return 0;
}

static uint32_t be32_at(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64_at(const uint8_t *p)
{
    return (uint64_t)be32_at(p) << 32 | be32_at(p + 4);
}

/* type, section id, counted idstr, instance, version */
#define HDR_BYTES (1 + 4 + 1 + sizeof(TRAILER_IDSTR) - 1 + 4 + 4)

uint64_t trailer_body_at_end(size_t end)
{
    return end < 8 + TRAILER_FILE_BYTES + 1
               ? 0 : end - 1 - TRAILER_FILE_BYTES + HDR_BYTES;
}

int trailer_find_end(const uint8_t *d, size_t end, trailer_info *out,
                     uint64_t *body_at, char *err, size_t errlen)
{
    const size_t hdr = HDR_BYTES;

    if (trailer_body_at_end(end) == 0) {
        snprintf(err, errlen, "byte %zu: the stream is too short to end "
                 "with a checkpoint trailer and EOF", end);
        return -EBADMSG;
    }
    if (d[end - 1] != SAVEVM_EOF) {
        snprintf(err, errlen, "byte %zu: expected EOF (0x00) as the "
                 "stream's last byte, found 0x%02x", end - 1, d[end - 1]);
        return -EBADMSG;
    }
    size_t at = end - 1 - TRAILER_FILE_BYTES;
    const uint8_t *p = d + at;
    const uint8_t *foot = p + TRAILER_FILE_BYTES - 5;
    if (p[0] != SAVEVM_SECTION_FULL || p[5] != strlen(TRAILER_IDSTR) ||
        memcmp(p + 6, TRAILER_IDSTR, strlen(TRAILER_IDSTR)) != 0 ||
        be32_at(p + hdr - 8) != 0 || be32_at(p + hdr - 4) !=
        TRAILER_VERSION || foot[0] != SAVEVM_SECTION_FOOTER ||
        be32_at(foot + 1) != be32_at(p + 1)) {
        snprintf(err, errlen, "byte %zu: the last record before EOF is not "
                 "the checkpoint's '%s' trailer: a checkpoint ends with it, "
                 "so that its checksum covers every byte before it", at,
                 TRAILER_IDSTR);
        return -EBADMSG;
    }
    out->id = be64_at(p + hdr);
    out->covered = be64_at(p + hdr + 8);
    out->crc = be32_at(p + hdr + 16);
    if (out->covered != at + hdr) {
        snprintf(err, errlen, "byte %zu: checkpoint %" PRIu64 ": its "
                 "checksum covers %" PRIu64 " bytes, but %zu precede it: "
                 "bytes were lost or added", at + hdr, out->id,
                 out->covered, at + hdr);
        return -EBADMSG;
    }
    *body_at = at + hdr;
    return 0;
}

int trailer_skip(qfile *f, const savevm_section *sec)
{
    trailer_info info;

    return load_body(f, sec, &trailer_desc, &info);
}

void trailer_put_pkg(qfile *f, uint32_t section_id, const trailer_pkg *p)
{
    vmstate_save_section(f, section_id, TRAILER_PKG_IDSTR, 0, &pkg_desc, p,
                         NULL);
}

int trailer_load_pkg(qfile *f, const savevm_section *sec, trailer_pkg *out)
{
    if (load_body(f, sec, &pkg_desc, out) < 0)
        return qfile_error(f);
    if (out->id == 0 || out->base >= out->id)
        return qfile_fail(f, -EINVAL,
                          "package header: checkpoint %" PRIu64
                          " cannot build on %" PRIu64,
                          out->id, out->base);
    if (out->flags != 0)
        return qfile_fail(f, -ENOTSUP, "package header: unknown flags 0x%x",
                          out->flags);
    char why[160];
    if (pairing_check(&out->pair, why, sizeof(why)) < 0)
        return qfile_fail(f, -EINVAL, "package header: %s", why);
    return 0;
}

int trailer_describe_pkg(json_t *vmdesc_devices)
{
    const trailer_pkg any = { .id = 1, .pair.name = PAIRING_DEFAULT_NAME,
                              .pair.generation = 1 };

    return vmstate_describe_section(vmdesc_devices, TRAILER_PKG_IDSTR, 0,
                                    &pkg_desc, &any);
}
