/* dropnotice: see dropnotice.h. */
#include "devstate/dropnotice.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "devstate/vmstate.h"

static const vmstate_field drop_fields[] = {
    { VMSTATE_SCALAR(dropnotice, reason) },
    { .name = "pairing", .type = VMSTATE_T_BUFFER,
      .offset = offsetof(dropnotice, pair.id), .size = PAIRING_ID_LEN },
    { .name = "name", .type = VMSTATE_T_BUFFER,
      .offset = offsetof(dropnotice, pair.name),
      .size = PAIRING_NAME_MAX + 1 },
    { .name = "generation", .type = VMSTATE_T_U64,
      .offset = offsetof(dropnotice, pair.generation), .size = 8 },
    { .name = "text", .type = VMSTATE_T_BUFFER,
      .offset = offsetof(dropnotice, text), .size = DROPNOTICE_TEXT_MAX + 1 },
    VMSTATE_END,
};

static const vmstate_desc drop_desc = {
    .name = DROPNOTICE_IDSTR, .version = DROPNOTICE_VERSION,
    .minimum_version = DROPNOTICE_VERSION, .size = sizeof(dropnotice),
    .fields = drop_fields,
};

void dropnotice_make(dropnotice *d, const pairing *pair, uint32_t reason,
                     const char *text)
{
    memset(d, 0, sizeof(*d));
    d->reason = reason;
    d->pair = *pair;
    /* NUL-padded on the wire: nothing of this process's memory leaks. */
    snprintf(d->text, sizeof(d->text), "%s", text ? text : "");
}

void dropnotice_put(qfile *f, uint32_t section_id, const dropnotice *d)
{
    vmstate_save_section(f, section_id, DROPNOTICE_IDSTR, 0, &drop_desc, d,
                         NULL);
}

int dropnotice_load(qfile *f, const savevm_section *sec, dropnotice *out)
{
    if (sec->type != SAVEVM_SECTION_FULL || sec->instance_id != 0)
        return qfile_fail(f, -EINVAL, "section '%s': expected a FULL "
                          "section of instance 0, found %s instance %" PRIu32,
                          DROPNOTICE_IDSTR, savevm_type_name(sec->type),
                          sec->instance_id);
    memset(out, 0, sizeof(*out));
    if (vmstate_load(f, &drop_desc, out, sec->version_id,
                     SAVEVM_PASS_APPLY) < 0)
        return qfile_error(f);
    char why[160];
    if (pairing_check(&out->pair, why, sizeof(why)) < 0)
        return qfile_fail(f, -EINVAL, "drop notice: %s", why);
    if (out->reason == 0)
        return qfile_fail(f, -EINVAL, "drop notice: reason 0");
    if (!memchr(out->text, '\0', sizeof(out->text)))
        return qfile_fail(f, -EINVAL, "drop notice: its text is not "
                          "NUL-terminated within %zu bytes",
                          sizeof(out->text));
    for (char *c = out->text; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    return 0;
}

int dropnotice_describe(json_t *vmdesc_devices)
{
    dropnotice any;
    const pairing p = { .name = PAIRING_DEFAULT_NAME, .generation = 1 };
    dropnotice_make(&any, &p, DROPNOTICE_STOPPED, "");
    return vmstate_describe_section(vmdesc_devices, DROPNOTICE_IDSTR, 0,
                                    &drop_desc, &any);
}

const char *dropnotice_reason_name(uint32_t reason, char *buf, size_t len)
{
    switch (reason) {
    case DROPNOTICE_STOPPED:
        return "stop-replication";
    case DROPNOTICE_VM_STOPPED:
        return "the VM stopped";
    case DROPNOTICE_GAVE_UP:
        return "gave up";
    }
    snprintf(buf, len, "reason %" PRIu32, reason);
    return buf;
}
