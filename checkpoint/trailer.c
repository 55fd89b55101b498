/* trailer: see trailer.h. */
#include "checkpoint/trailer.h"

#include <errno.h>
#include <inttypes.h>

void ckt_put(qfile *f, uint32_t section_id, uint64_t id)
{
    sv_put_section_start(f, SV_SECTION_FULL, section_id, CKT_IDSTR, 0,
                         CKT_VERSION);
    /* The sum covers everything up to here, this section's header too. */
    uint64_t covered = qf_tell(f);
    uint32_t crc = qf_crc(f);
    qf_put_be64(f, id);
    qf_put_be64(f, covered);
    qf_put_be32(f, crc);
    sv_put_footer(f, section_id);
}

int ckt_load(qfile *f, const sv_section *sec, ckt_info *out)
{
    uint64_t at = qf_tell(f);
    uint32_t want = qf_crc(f);
    if (sec->type != SV_SECTION_FULL || sec->version_id != CKT_VERSION ||
        sec->instance_id != 0)
        return qf_fail(f, -EINVAL, "section '%s': expected a FULL section, "
                       "instance 0, version %u", CKT_IDSTR, CKT_VERSION);
    out->id = qf_get_be64(f);
    out->covered = qf_get_be64(f);
    out->crc = qf_get_be32(f);
    if (qf_error(f))
        return qf_error(f);
    if (out->covered != at)
        return qf_fail(f, -EBADMSG, "checkpoint %" PRIu64 ": its checksum "
                       "covers %" PRIu64 " bytes but the stream has %" PRIu64
                       " before it: bytes were lost or added", out->id,
                       out->covered, at);
    if (out->crc != want)
        return qf_fail(f, -EBADMSG, "checkpoint %" PRIu64 ": checksum "
                       "mismatch (stored %08" PRIx32 ", computed %08" PRIx32
                       "): the checkpoint is corrupt", out->id, out->crc,
                       want);
    return 0;
}

int ckt_skip(qfile *f, const sv_section *sec)
{
    if (sec->type != SV_SECTION_FULL || sec->version_id != CKT_VERSION)
        return qf_fail(f, -EINVAL, "section '%s': expected a FULL section, "
                       "version %u", CKT_IDSTR, CKT_VERSION);
    qf_skip(f, 8 + 8 + 4);
    return qf_error(f);
}

void ckt_put_pkg(qfile *f, uint32_t section_id, const ckt_pkg *p)
{
    sv_put_section_start(f, SV_SECTION_FULL, section_id, CKT_PKG_IDSTR, 0,
                         CKT_PKG_VERSION);
    qf_put_be64(f, p->id);
    qf_put_be64(f, p->base);
    qf_put_be32(f, p->flags);
    sv_put_footer(f, section_id);
}

int ckt_load_pkg(qfile *f, const sv_section *sec, ckt_pkg *out)
{
    if (sec->type != SV_SECTION_FULL || sec->version_id != CKT_PKG_VERSION ||
        sec->instance_id != 0)
        return qf_fail(f, -EINVAL, "section '%s': expected a FULL section, "
                       "instance 0, version %u", CKT_PKG_IDSTR,
                       CKT_PKG_VERSION);
    out->id = qf_get_be64(f);
    out->base = qf_get_be64(f);
    out->flags = qf_get_be32(f);
    if (qf_error(f))
        return qf_error(f);
    if (out->id == 0 || out->base >= out->id)
        return qf_fail(f, -EINVAL, "package header: checkpoint %" PRIu64
                       " cannot build on %" PRIu64, out->id, out->base);
    if (out->flags != 0)
        return qf_fail(f, -ENOTSUP, "package header: unknown flags 0x%x",
                       out->flags);
    return 0;
}
