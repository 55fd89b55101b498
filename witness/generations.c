/* generations: see generations.h. */
#include "witness/generations.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct generations {
    etcd *client;
    struct event *retry;
    uint64_t retry_ns;
    char prefix[96];        /* "/ftvm/NAME/" */
    char end[96];           /* "/ftvm/NAME0": '/' + 1 */
    char last[ETCD_MAX_KEY + 1];    /* the last key of the last page */
    int64_t revision;       /* the first page's: every page's */
    uint64_t highest;
    etcd_req *req;
    generations_cb cb;
    void *opaque;
    char name[80];
};

uint64_t generations_of_key(const char *key, const char *name)
{
    size_t nl = strlen(name);
    if (strncmp(key, "/ftvm/", 6) != 0 || strncmp(key + 6, name, nl) != 0 ||
        key[6 + nl] != '/')
        return 0;
    const char *g = key + 7 + nl;
    uint64_t v = 0;
    size_t i = 0;
    for (; g[i] >= '0' && g[i] <= '9'; i++) {
        if (i == 0 && g[i] == '0')
            return 0;
        unsigned d = (unsigned)(g[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    return i && strcmp(g + i, "/owner") == 0 ? v : 0;
}

static void page(generations *g);

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    generations *g = arg;
    g->revision = 0;
    g->highest = 0;
    g->last[0] = '\0';
    page(g);
}

static void failed(generations *g, const char *err)
{
    struct timeval tv = { .tv_sec = (time_t)(g->retry_ns / 1000000000u),
                          .tv_usec = (suseconds_t)(g->retry_ns % 1000000000u
                                                   / 1000) };
    evtimer_add(g->retry, &tv);
    /* Last: the callback may cancel, or free g. */
    g->cb(g->opaque, -EAGAIN, 0, err);
}

static void on_page(void *opaque, const etcd_reply *r)
{
    generations *g = opaque;
    g->req = NULL;
    if (r->status != ETCD_OK) {
        char err[1200];
        snprintf(err, sizeof(err), "reading %s* from the witness: %s",
                 g->prefix, r->err);
        failed(g, err);
        return;
    }
    if (!g->revision)
        g->revision = r->revision;
    for (size_t i = 0; i < r->nkvs; i++) {
        uint64_t v = generations_of_key(r->kvs[i].key, g->name);
        if (v > g->highest)
            g->highest = v;
    }
    if (r->more && r->nkvs) {
        snprintf(g->last, sizeof(g->last), "%s", r->kvs[r->nkvs - 1].key);
        page(g);
        return;
    }
    g->cb(g->opaque, 0, g->highest, NULL);
}

static void page(generations *g)
{
    char err[512];
    bool after = g->last[0] != '\0';
    g->req = etcd_range_keys(g->client, after ? g->last : g->prefix, after,
                             g->end, ETCD_MAX_LIST, g->revision, on_page, g,
                             err, sizeof(err));
    if (!g->req)
        failed(g, err);
}

int generations_new(generations **out, etcd *c, uint64_t retry_ns)
{
    generations *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->client = c;
    g->retry_ns = retry_ns ? retry_ns : 1000000000u;
    g->retry = evtimer_new(etcd_base(c), on_retry, g);
    if (!g->retry) {
        free(g);
        return -ENOMEM;
    }
    *out = g;
    return 0;
}

void generations_cancel(generations *g)
{
    if (!g)
        return;
    etcd_cancel(g->req);
    g->req = NULL;
    evtimer_del(g->retry);
}

void generations_free(generations *g)
{
    if (!g)
        return;
    generations_cancel(g);
    event_free(g->retry);
    free(g);
}

int generations_scan(generations *g, const char *name, generations_cb cb,
                     void *opaque, char *err, size_t errlen)
{
    generations_cancel(g);
    if (strlen(name) >= sizeof(g->name)) {
        snprintf(err, errlen, "VM name '%s' too long", name);
        return -EINVAL;
    }
    snprintf(g->name, sizeof(g->name), "%s", name);
    snprintf(g->prefix, sizeof(g->prefix), "/ftvm/%s/", name);
    snprintf(g->end, sizeof(g->end), "/ftvm/%s0", name);
    g->cb = cb;
    g->opaque = opaque;
    /* From the loop, so that cb never runs from inside this call. */
    struct timeval now = { 0, 0 };
    evtimer_add(g->retry, &now);
    return 0;
}
