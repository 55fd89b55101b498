/* failover: see failover.h. */
#include "secondary/failover.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "vm/net.h"

/* Gaps between the announce rounds, as QEMU spaces them. */
static const unsigned gap_ms[FAILOVER_ANNOUNCE_ROUNDS - 1] = {50, 150, 250,
                                                              350};

struct failover {
    vm *v;
    struct event *timer;
    uint8_t frame[FAILOVER_RARP_LEN];
    unsigned sent;          /* rounds done */
    unsigned ok;            /* frames the backend took */
};

void failover_rarp_frame(uint8_t out[FAILOVER_RARP_LEN], const uint8_t mac[6])
{
    uint8_t *p = out;
    memset(out, 0, FAILOVER_RARP_LEN);
    memset(p, 0xff, 6);                 /* destination: broadcast */
    memcpy(p + 6, mac, 6);
    p[12] = 0x80, p[13] = 0x35;         /* RARP */
    p += 14;
    p[0] = 0x00, p[1] = 0x01;           /* hardware: Ethernet */
    p[2] = 0x08, p[3] = 0x00;           /* protocol: IPv4 */
    p[4] = 6, p[5] = 4;                 /* address lengths */
    p[6] = 0x00, p[7] = 0x03;           /* reverse request */
    memcpy(p + 8, mac, 6);              /* sender: us, IP 0 */
    memcpy(p + 18, mac, 6);             /* target: us, IP 0 */
}

static void announce(failover *f)
{
    net_dev *n = vm_net(f->v);
    /* On the loop's thread: a backend with no room loses the frame. */
    int r = n ? net_transmit(n, f->frame, sizeof(f->frame), false) : -ENODEV;
    f->sent++;
    if (r == 0)
        f->ok++;
    else if (f->sent == 1)
        log_msg("self-announce frame not sent: %s", strerror(-r));
    if (f->sent < FAILOVER_ANNOUNCE_ROUNDS) {
        unsigned ms = gap_ms[f->sent - 1];
        struct timeval tv = { ms / 1000, (suseconds_t)(ms % 1000) * 1000 };
        event_add(f->timer, &tv);
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    announce(arg);
}

/* The announcer of v's MAC, on base, not yet announcing. */
static failover *announcer(vm *v, struct event_base *base,
                           const uint8_t mac[6], char *err, size_t errlen)
{
    failover *f = calloc(1, sizeof(*f));
    if (!f || !(f->timer = evtimer_new(base, on_timer, f))) {
        free(f);
        snprintf(err, errlen, "failover: out of memory");
        return NULL;
    }
    f->v = v;
    failover_rarp_frame(f->frame, mac);
    return f;
}

int failover_start(failover **out, vm *v, struct event_base *base,
                   const uint8_t mac[6], void (*on_stop)(vm *v, void *arg),
                   void *arg, char *err, size_t errlen)
{
    failover *f = announcer(v, base, mac, err, errlen);
    if (!f)
        return -ENOMEM;
    /*
     * What queued in the backend while nobody read it: copies of what
     * the primary answered (a bridge floods until it learns the MAC).
     */
    if (vm_net(v)) {
        int d = net_rx_discard(vm_net(v));
        if (d > 0)
            log_msg("failover: dropped %d stale frames from the network "
                    "backend", d);
    }
    if (vm_attach(v, base, on_stop, arg) < 0) {
        snprintf(err, errlen, "failover: cannot put the VM on the event "
                 "loop");
        failover_free(f);
        return -ENOMEM;
    }
    if (vm_net(v))
        announce(f);
    int r = vm_start(v, err, errlen);
    if (r < 0) {
        failover_free(f);
        return r;
    }
    *out = f;
    return 0;
}

int failover_announce(failover **out, vm *v, struct event_base *base,
                      const uint8_t mac[6], char *err, size_t errlen)
{
    failover *f = announcer(v, base, mac, err, errlen);
    if (!f)
        return -ENOMEM;
    announce(f);
    *out = f;
    return 0;
}

unsigned failover_announced(const failover *f)
{
    return f->ok;
}

void failover_free(failover *f)
{
    if (!f)
        return;
    event_free(f->timer);
    free(f);
}
