/* trailer: see trailer.h. */
#include "devstate/trailer.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>

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
    const trailer_pkg any = { .id = 1, .pair.name = PAIRING_DEFAULT_NAME };

    return vmstate_describe_section(vmdesc_devices, TRAILER_PKG_IDSTR, 0,
                                    &pkg_desc, &any);
}
