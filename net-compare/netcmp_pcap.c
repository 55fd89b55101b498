/* netcmp_pcap: see netcmp_pcap.h. */
#include "net-compare/netcmp_pcap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcap/pcap.h>

/* A record's header in the file: four 32-bit fields. */
#define RECORD_HEADER 16u
#define FILE_HEADER 24u

struct netcmp_pcap {
    pcap_t *dead;
    pcap_dumper_t *dump;
    uint64_t max_bytes;
    netcmp_pcap_stats st;
};

int netcmp_pcap_open(netcmp_pcap **out, const char *path, uint64_t max_bytes,
                     char *err, size_t errlen)
{
    netcmp_pcap *pc = calloc(1, sizeof(*pc));
    if (!pc) {
        snprintf(err, errlen, "compare log %s: out of memory", path);
        return -ENOMEM;
    }
    pc->max_bytes = max_bytes ? max_bytes : NETCMP_PCAP_MAX_BYTES;
    pc->dead = pcap_open_dead_with_tstamp_precision(
        DLT_EN10MB, NETCMP_FRAME_MAX, PCAP_TSTAMP_PRECISION_NANO);
    if (!pc->dead) {
        snprintf(err, errlen, "compare log %s: pcap_open_dead failed", path);
        free(pc);
        return -ENOMEM;
    }
    errno = 0;
    pc->dump = pcap_dump_open(pc->dead, path);
    if (!pc->dump) {
        int e = errno ? errno : EIO;
        snprintf(err, errlen, "compare log %s: %s", path,
                 pcap_geterr(pc->dead));
        pcap_close(pc->dead);
        free(pc);
        return -e;
    }
    pc->st.bytes = FILE_HEADER;
    *out = pc;
    return 0;
}

static void record(netcmp_pcap *pc, const netcmp_pkt *p, int64_t off)
{
    int64_t t = (int64_t)p->t_ns + off;
    if (t < 0)
        t = 0;
    struct pcap_pkthdr h = {
        .caplen = (bpf_u_int32)p->len,
        .len = (bpf_u_int32)p->len,
    };
    /* With nanosecond precision, tv_usec carries nanoseconds. */
    h.ts.tv_sec = (time_t)(t / 1000000000);
    h.ts.tv_usec = (suseconds_t)(t % 1000000000);
    pcap_dump((u_char *)pc->dump, &h, p->data);
    pc->st.bytes += RECORD_HEADER + p->len;
}

int netcmp_pcap_write(netcmp_pcap *pc, const netcmp_verdict *v,
                      int64_t clock_offset_ns)
{
    if (v->kind != NETCMP_MISMATCH || !v->frame)
        return -EINVAL;
    uint64_t need = RECORD_HEADER + v->frame->len +
                    (v->other ? RECORD_HEADER + v->other->len : 0);
    if (pc->st.bytes + need > pc->max_bytes) {
        pc->st.dropped++;
        return -ENOSPC;
    }
    record(pc, v->frame, clock_offset_ns);
    if (v->other)
        record(pc, v->other, clock_offset_ns);
    pc->st.pairs++;
    return 0;
}

int netcmp_pcap_flush(netcmp_pcap *pc)
{
    return pcap_dump_flush(pc->dump) == 0 ? 0 : -EIO;
}

int netcmp_pcap_close(netcmp_pcap *pc)
{
    if (!pc)
        return 0;
    int r = netcmp_pcap_flush(pc);
    FILE *f = pcap_dump_file(pc->dump);
    if (ferror(f))
        r = -EIO;
    pcap_dump_close(pc->dump);
    pcap_close(pc->dead);
    free(pc);
    return r;
}

void netcmp_pcap_get_stats(const netcmp_pcap *pc, netcmp_pcap_stats *out)
{
    *out = pc->st;
}
