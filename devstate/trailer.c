/* trailer: see trailer.h. */
#include "checkpoint/trailer.h"

#include <errno.h>
#include <inttypes.h>

void trailer_put(qfile *f, uint32_t section_id, uint64_t id)
{
    savevm_put_section_start(f, SAVEVM_SECTION_FULL, section_id, TRAILER_IDSTR,
                             0, TRAILER_VERSION);
    /* The sum covers everything up to here, this section's header too. */
    uint64_t covered = qfile_tell(f);
    uint32_t crc = qfile_crc(f);
    qfile_put_be64(f, id);
    qfile_put_be64(f, covered);
    qfile_put_be32(f, crc);
    savevm_put_footer(f, section_id);
}

int trailer_load(qfile *f, const savevm_section *sec, trailer_info *out)
{
    uint64_t at = qfile_tell(f);
    uint32_t want = qfile_crc(f);
    if (sec->type != SAVEVM_SECTION_FULL ||
        sec->version_id != TRAILER_VERSION || sec->instance_id != 0)
        return qfile_fail(f, -EINVAL,
                          "section '%s': expected a FULL section, "
                          "instance 0, version %u",
                          TRAILER_IDSTR, TRAILER_VERSION);
    out->id = qfile_get_be64(f);
    out->covered = qfile_get_be64(f);
    out->crc = qfile_get_be32(f);
    if (qfile_error(f))
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
    if (sec->type != SAVEVM_SECTION_FULL || sec->version_id != TRAILER_VERSION)
        return qfile_fail(f, -EINVAL,
                          "section '%s': expected a FULL section, "
                          "version %u",
                          TRAILER_IDSTR, TRAILER_VERSION);
    qfile_skip(f, 8 + 8 + 4);
    return qfile_error(f);
}

void trailer_put_pkg(qfile *f, uint32_t section_id, const trailer_pkg *p)
{
    savevm_put_section_start(f, SAVEVM_SECTION_FULL, section_id,
                             TRAILER_PKG_IDSTR, 0, TRAILER_PKG_VERSION);
    qfile_put_be64(f, p->id);
    qfile_put_be64(f, p->base);
    qfile_put_be32(f, p->flags);
    savevm_put_footer(f, section_id);
}

int trailer_load_pkg(qfile *f, const savevm_section *sec, trailer_pkg *out)
{
    if (sec->type != SAVEVM_SECTION_FULL ||
        sec->version_id != TRAILER_PKG_VERSION || sec->instance_id != 0)
        return qfile_fail(f, -EINVAL,
                          "section '%s': expected a FULL section, "
                          "instance 0, version %u",
                          TRAILER_PKG_IDSTR, TRAILER_PKG_VERSION);
    out->id = qfile_get_be64(f);
    out->base = qfile_get_be64(f);
    out->flags = qfile_get_be32(f);
    if (qfile_error(f))
        return qfile_error(f);
    if (out->id == 0 || out->base >= out->id)
        return qfile_fail(f, -EINVAL,
                          "package header: checkpoint %" PRIu64
                          " cannot build on %" PRIu64,
                          out->id, out->base);
    if (out->flags != 0)
        return qfile_fail(f, -ENOTSUP, "package header: unknown flags 0x%x",
                          out->flags);
    return 0;
}
