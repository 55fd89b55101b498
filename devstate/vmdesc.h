/*
 * vmdesc: the VM description, a JSON account of the device sections of a
 * stream, sent after its EOF so that tools can read device state without
 * knowing the devices.
 *
 * The shape is QEMU's, so its tools read ours and ours read its:
 *
 *   {"page_size": 4096,
 *    "devices": [{"name": IDSTR, "instance_id": N,
 *                 "vmsd_name": NAME, "version": V,
 *                 "fields": [{"name": F, "type": T, "size": BYTES}, ...],
 *                 "subsections": [{"vmsd_name": ..., "version": ...,
 *                                  "fields": [...]}, ...]}, ...]}
 *
 * vmstate_save() fills each device object while it writes the section, so the
 * description says what was written, not what could have been.
 */
#ifndef FTVM_DEVSTATE_VMDESC_H
#define FTVM_DEVSTATE_VMDESC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/qfile.h"

#define VMDESC_PAGE_SIZE 4096u

/* A new description with no devices yet. */
json_t *vmdesc_new(uint32_t page_size);
/* Its "devices" array (borrowed), or NULL when there is none. */
json_t *vmdesc_devices(const json_t *vmdesc);
/*
 * Appends {"name": idstr, "instance_id": instance_id} to a devices array and
 * returns it (borrowed) for vmstate_save() to complete.
 */
json_t *vmdesc_add_device(json_t *devices, const char *idstr,
                          uint32_t instance_id);
/* The device object for idstr/instance_id (borrowed), or NULL. */
json_t *vmdesc_find_device(const json_t *vmdesc, const char *idstr,
                           uint32_t instance_id);
/* Compact JSON text (malloc'd, NUL-terminated) and its length, or NULL. */
char *vmdesc_dump(const json_t *vmdesc, size_t *len);

/*
 * The description of a complete stream held in memory: it sits after the
 * final EOF as 0x00, 0x06, be32 length, JSON, ending exactly at the end.
 * Scanning back for a length that lands on the end finds it without
 * parsing device sections, whose lengths only the description knows.
 * Returns the parsed JSON and its record's offset in *at, or NULL.
 */
json_t *vmdesc_find_at_end(const uint8_t *data, size_t len, size_t *at);

/*
 * Reads one device section's body from f, guided by a device object of a
 * VM description (ours or QEMU's), and returns in *values an
 * object of field name to value: integers as numbers (unsigned 64-bit
 * values above INT64_MAX as "0x..." strings), bools as booleans, buffers as
 * hex strings (long ones cut short, with their length), arrays as arrays,
 * structs as objects, subsections as objects under their names.  Types it
 * does not know are read as "size" bytes of hex.  Returns 0, or the negative
 * errno latched on f with a message naming the device and field.
 */
int vmdesc_decode(qfile *f, const json_t *device_desc, json_t **values);

#endif
