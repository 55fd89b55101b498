/*
 * registry: the entries, their save order, and dispatch of loaded sections.
 */
#include "devstate/registry.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "devstate/vmdesc.h"

typedef struct entry {
    char idstr[256];
    uint32_t instance_id;
    uint32_t section_id;
    int priority;
    const vmstate_desc *desc;       /* device state, or NULL for live state */
    void *obj;
    const registry_live_ops *live;
    void *opaque;
    bool live_done;             /* save_iterate said it has no more */
} entry;

struct registry {
    entry *entries;             /* registration order: index = section id */
    size_t *order;              /* save order, indices into entries */
    size_t n, cap;
};

registry *registry_new(void)
{
    return calloc(1, sizeof(registry));
}

void registry_free(registry *r)
{
    if (!r)
        return;
    free(r->entries);
    free(r->order);
    free(r);
}

size_t registry_count(const registry *r)
{
    return r->n;
}

uint32_t registry_instance_id(const registry *r, int section_id)
{
    if (section_id < 0 || (size_t)section_id >= r->n)
        return REGISTRY_INSTANCE_AUTO;
    return r->entries[section_id].instance_id;
}

static entry *find(registry *r, const char *idstr, uint32_t instance_id)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->entries[i].instance_id == instance_id &&
            strcmp(r->entries[i].idstr, idstr) == 0)
            return &r->entries[i];
    return NULL;
}

int registry_section_id(registry *r, const char *idstr, uint32_t instance_id)
{
    entry *e = find(r, idstr, instance_id);
    return e ? (int)e->section_id : -ENOENT;
}

static uint32_t next_instance(registry *r, const char *idstr)
{
    uint32_t next = 0;

    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->entries[i].idstr, idstr) == 0 &&
            r->entries[i].instance_id >= next)
            next = r->entries[i].instance_id + 1;
    return next;
}

static int add(registry *r, const entry *e)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        entry *ne = realloc(r->entries, cap * sizeof(*ne));
        if (!ne)
            return -ENOMEM;
        r->entries = ne;
        size_t *no = realloc(r->order, cap * sizeof(*no));
        if (!no)
            return -ENOMEM;
        r->order = no;
        r->cap = cap;
    }
    size_t id = r->n++;
    r->entries[id] = *e;
    r->entries[id].section_id = (uint32_t)id;

    /* Stable: after every entry of the same or higher priority. */
    size_t pos = id;
    while (pos > 0 && r->entries[r->order[pos - 1]].priority < e->priority) {
        r->order[pos] = r->order[pos - 1];
        pos--;
    }
    r->order[pos] = id;
    return (int)id;
}

static int fill_names(registry *r, entry *e, const char *idstr,
                      uint32_t instance_id)
{
    if (!idstr || !*idstr)
        return -EINVAL;
    if (strlen(idstr) > 255)
        return -ENAMETOOLONG;
    if (instance_id == REGISTRY_INSTANCE_AUTO)
        instance_id = next_instance(r, idstr);
    if (find(r, idstr, instance_id))
        return -EEXIST;
    strcpy(e->idstr, idstr);
    e->instance_id = instance_id;
    return 0;
}

int registry_add_device(registry *r, const char *idstr, uint32_t instance_id,
                        int priority, const vmstate_desc *d, void *obj)
{
    entry e = { .priority = priority, .desc = d, .obj = obj };

    if (!d || !obj || vmstate_desc_verify(d, NULL, 0) < 0)
        return -EINVAL;
    int rc = fill_names(r, &e, idstr, instance_id);
    return rc < 0 ? rc : add(r, &e);
}

int registry_add_live(registry *r, const char *idstr, uint32_t instance_id,
                      int priority, const registry_live_ops *ops, void *opaque)
{
    entry e = { .priority = priority, .live = ops, .opaque = opaque };

    if (!ops || !ops->save_setup || !ops->save_complete || !ops->load ||
        ops->minimum_version > ops->version)
        return -EINVAL;
    int rc = fill_names(r, &e, idstr, instance_id);
    return rc < 0 ? rc : add(r, &e);
}

/* ---- saving ---- */

/* The i-th entry in save order. */
static entry *nth(registry *r, size_t i)
{
    return &r->entries[r->order[i]];
}

int registry_save_devices(registry *r, qfile *f, json_t *vmdesc_devices)
{
    for (size_t i = 0; i < r->n; i++) {
        entry *e = nth(r, i);
        if (!e->desc)
            continue;
        if (vmstate_save_section(f, e->section_id, e->idstr, e->instance_id,
                                 e->desc, e->obj, vmdesc_devices) < 0)
            break;
    }
    return qfile_error(f);
}

/* Wraps a live callback's body in its section header and footer. */
static int live_section(qfile *f, entry *e, savevm_type type,
                        int (*body)(qfile *, void *))
{
    if (type == SAVEVM_SECTION_START)
        savevm_put_section_start(f, type, e->section_id, e->idstr,
                                 e->instance_id, e->live->version);
    else
        savevm_put_section_part(f, type, e->section_id);
    int rc = body(f, e->opaque);
    if (rc < 0)
        return qfile_fail(f, rc,
                          "'%s' instance %" PRIu32 ": saving its %s "
                          "failed",
                          e->idstr, e->instance_id, savevm_type_name(type));
    savevm_put_footer(f, e->section_id);
    int err = qfile_error(f);
    return err < 0 ? err : rc;
}

int registry_save_setup(registry *r, qfile *f)
{
    for (size_t i = 0; i < r->n; i++) {
        entry *e = nth(r, i);
        if (!e->live)
            continue;
        e->live_done = false;
        if (live_section(f, e, SAVEVM_SECTION_START, e->live->save_setup) < 0)
            break;
    }
    return qfile_error(f);
}

int registry_save_iterate(registry *r, qfile *f)
{
    /*
     * Everyone caught up at the last call: a new call asks for another
     * round, since a running guest may have dirtied more in the meantime.
     */
    bool all_done = true;
    for (size_t i = 0; i < r->n; i++) {
        entry *e = nth(r, i);
        if (e->live && e->live->save_iterate && !e->live_done)
            all_done = false;
    }
    for (size_t i = 0; all_done && i < r->n; i++)
        nth(r, i)->live_done = false;

    for (size_t i = 0; i < r->n; i++) {
        entry *e = nth(r, i);
        if (!e->live || e->live_done || !e->live->save_iterate)
            continue;
        int rc = live_section(f, e, SAVEVM_SECTION_PART, e->live->save_iterate);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return 0;   /* the rest waits until this one has caught up */
        e->live_done = true;
    }
    return 1;
}

int registry_save_complete(registry *r, qfile *f)
{
    for (size_t i = 0; i < r->n; i++) {
        entry *e = nth(r, i);
        if (!e->live)
            continue;
        if (live_section(f, e, SAVEVM_SECTION_END, e->live->save_complete) < 0)
            break;
    }
    return qfile_error(f);
}

int registry_save_stream(registry *r, qfile *f)
{
    json_t *vmdesc = vmdesc_new(VMDESC_PAGE_SIZE);

    if (!vmdesc)
        return qfile_fail(f, -ENOMEM, "no memory for the VM description");
    savevm_put_header(f);
    if (registry_save_setup(r, f) == 0 && registry_save_complete(r, f) == 0 &&
        registry_save_devices(r, f, vmdesc_devices(vmdesc)) == 0) {
        savevm_put_eof(f);
        size_t len;
        char *json = vmdesc_dump(vmdesc, &len);
        if (!json || len > UINT32_MAX)
            qfile_fail(f, -ENOMEM, "cannot encode the VM description");
        else
            savevm_put_vmdesc(f, json, (uint32_t)len);
        free(json);
    }
    json_decref(vmdesc);
    return qfile_error(f);
}

/* ---- loading ---- */

static int load_section(void *opaque, qfile *f, const savevm_section *sec,
                        savevm_pass pass)
{
    registry *r = opaque;
    entry *e = find(r, sec->idstr, sec->instance_id);

    if (!e)
        return qfile_fail(f, -ENOENT, "unknown section '%s' instance %" PRIu32,
                          sec->idstr, sec->instance_id);

    uint32_t newest = e->desc ? e->desc->version : e->live->version;
    uint32_t oldest = e->desc ? e->desc->minimum_version
                              : e->live->minimum_version;
    if (sec->version_id > newest)
        return qfile_fail(
            f, -ENOTSUP,
            "section '%s' instance %" PRIu32 ": version %" PRIu32
            " is newer than %" PRIu32 ", the newest this build reads",
            sec->idstr, sec->instance_id, sec->version_id, newest);
    if (sec->version_id < oldest)
        return qfile_fail(
            f, -ENOTSUP,
            "section '%s' instance %" PRIu32 ": version %" PRIu32
            " is older than %" PRIu32 ", the oldest this build reads",
            sec->idstr, sec->instance_id, sec->version_id, oldest);

    if (e->live) {
        int rc = e->live->load(f, e->opaque, sec->version_id, pass);
        if (rc < 0)
            return qfile_fail(
                f, rc, "section '%s' instance %" PRIu32 ": loading failed",
                sec->idstr, sec->instance_id);
        return qfile_error(f);
    }
    if (sec->type != SAVEVM_SECTION_FULL)
        return qfile_fail(f, -EINVAL,
                          "section '%s' instance %" PRIu32 " is "
                          "device state, but came as %s",
                          sec->idstr, sec->instance_id,
                          savevm_type_name(sec->type));
    return vmstate_load(f, e->desc, e->obj, sec->version_id, pass);
}

static void begin_validate(void *opaque)
{
    registry *r = opaque;

    for (size_t i = 0; i < r->n; i++) {
        entry *e = &r->entries[i];
        if (e->live && e->live->load_begin_validate)
            e->live->load_begin_validate(e->opaque);
    }
}

const savevm_target_ops registry_target_ops = {
    .section = load_section,
    .begin_validate = begin_validate,
};
