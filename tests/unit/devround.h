/*
 * devround: a device's state saved with its description and loaded back
 * (VALIDATE, then APPLY only if that accepted), for the device tests.
 */
#ifndef FTVM_TESTS_UNIT_DEVROUND_H
#define FTVM_TESTS_UNIT_DEVROUND_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devstate/vmstate.h"

/* Saves obj into a malloc'd buffer (*len bytes); NULL if it failed. */
static inline uint8_t *devround_save(const vmstate_desc *d, const void *obj,
                                     size_t *len)
{
    qfile *f = qfile_open_mem("save");
    uint8_t *out = NULL;

    if (f && vmstate_save(f, d, obj, NULL) == 0) {
        const uint8_t *b = qfile_mem_data(f, len);
        out = malloc(*len ? *len : 1);
        if (out)
            memcpy(out, b, *len);
    }
    qfile_close(f);
    return out;
}

/*
 * Loads buf into obj: 0, or the VALIDATE pass's error (obj untouched)
 * with its message in why.
 */
static inline int devround_load(const vmstate_desc *d, void *obj,
                                const uint8_t *buf, size_t len, char *why,
                                size_t whylen)
{
    qfile *f = qfile_open_view(buf, len, "load");
    int rc = vmstate_load(f, d, obj, d->version, SAVEVM_PASS_VALIDATE);
    if (rc < 0)
        snprintf(why, whylen, "%s", qfile_errmsg(f));
    qfile_close(f);
    if (rc < 0)
        return rc;
    f = qfile_open_view(buf, len, "load");
    rc = vmstate_load(f, d, obj, d->version, SAVEVM_PASS_APPLY);
    qfile_close(f);
    return rc;
}

#endif
