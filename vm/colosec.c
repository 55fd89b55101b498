/* colosec: see colosec.h. */
#include "vm/colosec.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <string.h>

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

typedef struct colosec_in {
    uint64_t checkpoint;
    uint16_t len;
    uint8_t frame[COLOSEC_INPUT_FRAME_MAX];
} colosec_in;

static const vmstate_field colosec_in_fields[] = {
    { VMSTATE_SCALAR(colosec_in, checkpoint) },
    { VMSTATE_SCALAR(colosec_in, len) },
    { VMSTATE_BUFFER(colosec_in, frame) },
    VMSTATE_END,
};

static const vmstate_desc colosec_in_desc = {
    .name = COLOSEC_INPUT_IDSTR, .version = COLOSEC_INPUT_VERSION,
    .minimum_version = COLOSEC_INPUT_VERSION, .size = sizeof(colosec_in),
    .fields = colosec_in_fields,
};

typedef struct colosec_rel {
    uint64_t checkpoint;
    uint64_t console;
} colosec_rel;

static const vmstate_field colosec_rel_fields[] = {
    { VMSTATE_SCALAR(colosec_rel, checkpoint) },
    { VMSTATE_SCALAR(colosec_rel, console) },
    VMSTATE_END,
};

static const vmstate_desc colosec_rel_desc = {
    .name = COLOSEC_RELEASE_IDSTR, .version = COLOSEC_RELEASE_VERSION,
    .minimum_version = COLOSEC_RELEASE_VERSION, .size = sizeof(colosec_rel),
    .fields = colosec_rel_fields,
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

uint32_t colosec_input_section_id(uint32_t registry_count)
{
    return registry_count + 4;
}

void colosec_put_input(qfile *f, uint32_t section_id, uint64_t id,
                       const void *frame, size_t len)
{
    if (len < 1 || len > COLOSEC_INPUT_FRAME_MAX) {
        qfile_fail(f, -EINVAL, "section '%s': a frame of %zu bytes (1 to "
                   "%u)", COLOSEC_INPUT_IDSTR, len, COLOSEC_INPUT_FRAME_MAX);
        return;
    }
    /* Zeros past the frame: nothing of this process's memory leaks. */
    colosec_in s = { .checkpoint = id, .len = (uint16_t)len };
    memcpy(s.frame, frame, len);
    vmstate_save_section(f, section_id, COLOSEC_INPUT_IDSTR, 0,
                         &colosec_in_desc, &s, NULL);
}

int colosec_load_input(qfile *f, const savevm_section *sec, uint64_t *id,
                       void *frame, size_t *len)
{
    if (sec->type != SAVEVM_SECTION_FULL || sec->instance_id != 0)
        return qfile_fail(f, -EINVAL, "section '%s': expected a FULL "
                          "section of instance 0, found %s instance %"
                          PRIu32, COLOSEC_INPUT_IDSTR,
                          savevm_type_name(sec->type), sec->instance_id);
    colosec_in s = { 0 };
    if (vmstate_load(f, &colosec_in_desc, &s, sec->version_id,
                     SAVEVM_PASS_APPLY) < 0)
        return qfile_error(f);
    if (s.len < 1 || s.len > COLOSEC_INPUT_FRAME_MAX)
        return qfile_fail(f, -EINVAL, "section '%s': a frame of %u bytes "
                          "(1 to %u)", COLOSEC_INPUT_IDSTR, s.len,
                          COLOSEC_INPUT_FRAME_MAX);
    for (size_t i = s.len; i < sizeof(s.frame); i++)
        if (s.frame[i])
            return qfile_fail(f, -EINVAL, "section '%s': byte %zu past "
                              "the frame's %u is not zero",
                              COLOSEC_INPUT_IDSTR, i, s.len);
    *id = s.checkpoint;
    *len = s.len;
    memcpy(frame, s.frame, s.len);
    return 0;
}

uint32_t colosec_release_section_id(uint32_t registry_count)
{
    return registry_count + 5;
}

void colosec_put_release(qfile *f, uint32_t section_id, uint64_t id,
                         uint64_t console)
{
    colosec_rel s = { .checkpoint = id, .console = console };
    vmstate_save_section(f, section_id, COLOSEC_RELEASE_IDSTR, 0,
                         &colosec_rel_desc, &s, NULL);
}

int colosec_load_release(qfile *f, const savevm_section *sec, uint64_t *id,
                         uint64_t *console)
{
    if (sec->type != SAVEVM_SECTION_FULL || sec->instance_id != 0)
        return qfile_fail(f, -EINVAL, "section '%s': expected a FULL "
                          "section of instance 0, found %s instance %"
                          PRIu32, COLOSEC_RELEASE_IDSTR,
                          savevm_type_name(sec->type), sec->instance_id);
    colosec_rel s = { 0 };
    if (vmstate_load(f, &colosec_rel_desc, &s, sec->version_id,
                     SAVEVM_PASS_APPLY) < 0)
        return qfile_error(f);
    if (s.checkpoint == 0)
        return qfile_fail(f, -EINVAL, "section '%s': checkpoint 0",
                          COLOSEC_RELEASE_IDSTR);
    *id = s.checkpoint;
    *console = s.console;
    return 0;
}

int colosec_describe(json_t *vmdesc_devices)
{
    const colosec any = { .mode = COLOSEC_MODE_COLO };
    static const colosec_in any_in = { .checkpoint = 1, .len = 1 };
    static const colosec_rel any_rel = { .checkpoint = 1 };
    int rc = vmstate_describe_section(vmdesc_devices, COLOSEC_IDSTR, 0,
                                      &colosec_desc, &any);
    if (rc == 0)
        rc = vmstate_describe_section(vmdesc_devices, COLOSEC_INPUT_IDSTR, 0,
                                      &colosec_in_desc, &any_in);
    if (rc == 0)
        rc = vmstate_describe_section(vmdesc_devices, COLOSEC_RELEASE_IDSTR,
                                      0, &colosec_rel_desc, &any_rel);
    return rc;
}
