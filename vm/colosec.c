/* colosec: see colosec.h. */
#include "vm/colosec.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>

#include "devstate/vmstate.h"

typedef struct colosec {
    uint32_t mode;
} colosec;

static const vmstate_field colosec_fields[] = {
    { VMSTATE_SCALAR(colosec, mode) },
    VMSTATE_END,
};

static const vmstate_desc colosec_desc = {
    .name = COLOSEC_IDSTR, .version = COLOSEC_VERSION,
    .minimum_version = COLOSEC_VERSION, .size = sizeof(colosec),
    .fields = colosec_fields,
};

void colosec_put(qfile *f, uint32_t section_id, uint32_t mode)
{
    colosec s = { .mode = mode };
    vmstate_save_section(f, section_id, COLOSEC_IDSTR, 0, &colosec_desc, &s,
                         NULL);
}

int colosec_load(qfile *f, const savevm_section *sec, uint32_t *mode)
{
    colosec s = { 0 };
    if (sec->type != SAVEVM_SECTION_FULL || sec->instance_id != 0)
        return qfile_fail(f, -EINVAL, "section '%s': expected a FULL "
                          "section of instance 0", COLOSEC_IDSTR);
    if (vmstate_load(f, &colosec_desc, &s, sec->version_id,
                     SAVEVM_PASS_APPLY) < 0)
        return qfile_error(f);
    if (s.mode > COLOSEC_MODE_COLO)
        return qfile_fail(f, -EINVAL, "section '%s': mode %" PRIu32
                          " (0 checkpoint, 1 COLO)", COLOSEC_IDSTR, s.mode);
    *mode = s.mode;
    return 0;
}

int colosec_describe(json_t *vmdesc_devices)
{
    const colosec any = { .mode = COLOSEC_MODE_COLO };
    return vmstate_describe_section(vmdesc_devices, COLOSEC_IDSTR, 0,
                                    &colosec_desc, &any);
}
