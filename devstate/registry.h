/*
 * registry: every piece of state a VM saves, each as one entry.
 *
 * An entry is either plain device state (a vms description and the object it
 * describes, sent whole in one SECTION_FULL) or live state (RAM) that a
 * provider streams itself in START, PART and END sections through callbacks.
 * Entries are saved by priority, higher first, and in registration order
 * within a priority; section ids count registrations from 0.  For loading,
 * the registry is an sv_target: each section goes to the entry its id string
 * and instance id name, after a version check.
 */
#ifndef FTVM_DEVSTATE_REGISTRY_H
#define FTVM_DEVSTATE_REGISTRY_H

#include <jansson.h>
#include <stdint.h>

#include "checkpoint/qfile.h"
#include "checkpoint/savevm.h"
#include "devstate/vmstate.h"

typedef struct registry registry;

/* Pass as instance_id to take the next free instance of that id string. */
#define REGISTRY_INSTANCE_AUTO UINT32_MAX

/* Priorities: state that others' loading depends on goes first. */
enum {
    REGISTRY_PRIO_DEFAULT = 0,
    REGISTRY_PRIO_RAM = 100,
    REGISTRY_PRIO_DISK = 90,    /* "block": after RAM, before devices */
};

/*
 * Live state callbacks.  Each writes one section body (between header and
 * footer, which the registry writes) and returns 0 or a negative errno,
 * with the message latched on f.
 */
typedef struct registry_live_ops {
    uint32_t version;           /* written in START sections */
    uint32_t minimum_version;   /* oldest a load accepts */
    /* The START body: what the other side needs before any data. */
    int (*save_setup)(qfile *f, void *opaque);
    /* A PART body; returns >0 once it has nothing more to send, else 0. */
    int (*save_iterate)(qfile *f, void *opaque);
    /* The END body, written with the VM paused: the rest. */
    int (*save_complete)(qfile *f, void *opaque);
    /* Any of its sections' bodies, in either pass (see savevm_pass). */
    int (*load)(qfile *f, void *opaque, uint32_t version, savevm_pass pass);
    /*
     * Optional: a unit is about to be validated (savevm_target_ops'
     * begin_validate); state load() keeps for its VALIDATE pass restarts
     * from what its APPLY pass left.
     */
    void (*load_begin_validate)(void *opaque);
} registry_live_ops;

registry *registry_new(void);
void registry_free(registry *r);

/*
 * Registers device state.  idstr is at most 255 bytes; d is checked with
 * vmstate_desc_verify (call it yourself for the reason of an -EINVAL).
 * Returns the section id (>= 0), or -EINVAL, -EEXIST (idstr and instance
 * taken), -ENAMETOOLONG, -ENOMEM.
 */
int registry_add_device(registry *r, const char *idstr, uint32_t instance_id,
                        int priority, const vmstate_desc *d, void *obj);
/* Registers live state; the same returns as registry_add_device. */
int registry_add_live(registry *r, const char *idstr, uint32_t instance_id,
                      int priority, const registry_live_ops *ops,
                      void *opaque);

/* Registered entries, and the instance id an entry got (for AUTO). */
size_t registry_count(const registry *r);
uint32_t registry_instance_id(const registry *r, int section_id);
/* The section id of idstr/instance_id, or -ENOENT. */
int registry_section_id(registry *r, const char *idstr,
                        uint32_t instance_id);

/* ---- saving ---- */

/*
 * Each device entry as a SECTION_FULL.  When vmdesc_devices (a JSON array)
 * is given, a VM description object is appended for each.
 */
int registry_save_devices(registry *r, qfile *f, json_t *vmdesc_devices);

/* Each live entry's START section. */
int registry_save_setup(registry *r, qfile *f);
/*
 * One round of PART sections: entries in order, stopping after the first
 * that still has more to send.  Returns 1 when every entry is done, 0 when
 * some still have data, or a negative errno.  A call after one that
 * returned 1 starts another round with every entry (a running guest keeps
 * dirtying memory, so a caller may want a further pass).
 */
int registry_save_iterate(registry *r, qfile *f);
/* Each live entry's END section. */
int registry_save_complete(registry *r, qfile *f);

/*
 * A whole snapshot: header, live entries' START then END sections, device
 * sections, EOF, then the VM description JSON.
 */
int registry_save_stream(registry *r, qfile *f);

/* ---- loading ---- */

/* Pass the registry as opaque: savevm_loader_new(&registry_target_ops, r,
 * ...). */
extern const savevm_target_ops registry_target_ops;

#endif
