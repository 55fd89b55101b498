/*
 * udpkv's store: a fixed open-addressing hash table in .bss.
 *
 * Linear probing with backward-shift deletion: removing a key moves later
 * entries of its probe run back, so there are no tombstones and a table
 * that sees endless PUT/DEL churn never silts up.
 */
#include "udpkv.h"

#define MASK (UDPKV_SLOTS - 1)

_Static_assert((UDPKV_SLOTS & MASK) == 0, "slot count is a power of two");

struct entry {
    uint32_t hash;
    uint32_t tag;
    uint16_t klen;
    uint16_t vlen;
    bool used;
    char key[UDPKV_KEY_MAX];
    char val[UDPKV_VALUE_MAX];
};

static struct entry table[UDPKV_SLOTS];
static size_t count;

/* FNV-1a: short keys, no adversary worth a keyed hash. */
static uint32_t hash_key(const char *key, size_t klen)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < klen; i++) {
        h ^= (uint8_t)key[i];
        h *= 16777619u;
    }
    return h;
}

/* The slot holding key, or the empty slot where it would go. */
static uint32_t probe(const char *key, size_t klen, uint32_t h, bool *found)
{
    uint32_t i = h & MASK;

    /* Ends: count < UDPKV_SLOTS, so some slot is empty. */
    while (table[i].used) {
        if (table[i].hash == h && table[i].klen == klen &&
            memcmp(table[i].key, key, klen) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & MASK;
    }
    *found = false;
    return i;
}

int udpkv_store_put(const char *key, size_t klen, const char *val,
                    size_t vlen, uint32_t tag)
{
    uint32_t h = hash_key(key, klen);
    bool found;
    uint32_t i = probe(key, klen, h, &found);
    struct entry *e = &table[i];

    if (!found) {
        if (count == UDPKV_KEYS_MAX)
            return -1;
        count++;
        e->used = true;
        e->hash = h;
        e->klen = (uint16_t)klen;
        memcpy(e->key, key, klen);
    }
    e->vlen = (uint16_t)vlen;
    e->tag = tag;
    memcpy(e->val, val, vlen);
    return 0;
}

int udpkv_store_tag(const char *key, size_t klen, uint32_t *tag)
{
    bool found;
    uint32_t i = probe(key, klen, hash_key(key, klen), &found);

    if (!found)
        return -1;
    *tag = table[i].tag;
    return 0;
}

int udpkv_store_get(const char *key, size_t klen, const char **val,
                    size_t *vlen)
{
    bool found;
    uint32_t i = probe(key, klen, hash_key(key, klen), &found);

    if (!found)
        return -1;
    *val = table[i].val;
    *vlen = table[i].vlen;
    return 0;
}

int udpkv_store_del(const char *key, size_t klen)
{
    bool found;
    uint32_t hole = probe(key, klen, hash_key(key, klen), &found);

    if (!found)
        return -1;
    table[hole].used = false;
    count--;

    for (uint32_t j = (hole + 1) & MASK; table[j].used; j = (j + 1) & MASK) {
        uint32_t home = table[j].hash & MASK;

        /* Entry j may fill the hole only if the hole is on its probe path,
         * from its home slot to j; otherwise a lookup would miss it. */
        if (((j - home) & MASK) >= ((j - hole) & MASK)) {
            table[hole] = table[j];
            table[j].used = false;
            hole = j;
        }
    }
    return 0;
}

size_t udpkv_store_count(void)
{
    return count;
}
