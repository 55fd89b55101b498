/*
 * netcmp_pcap: the frames of mismatch verdicts written to a capture file
 * (pcap, Ethernet, nanosecond timestamps, through libpcap), for
 * `--compare-log FILE.pcap`: each pair as two packets, the primary's
 * frame, then the secondary's, which tshark and Wireshark open.
 *
 * The file is bounded: past max_bytes no pair is written (counted in
 * dropped), so a guest that diverges on every packet cannot fill the
 * disk.  Writes go through stdio's buffer to a local file, never to a
 * peer; netcmp_pcap_flush pushes them out (after each checkpoint, say).
 *
 * Built only with libpcap (meson's optional dependency); netcmp_pcap_open
 * says so otherwise.
 */
#ifndef FTVM_NET_COMPARE_NETCMP_PCAP_H
#define FTVM_NET_COMPARE_NETCMP_PCAP_H

#include <stddef.h>
#include <stdint.h>

#include "net-compare/netcmp.h"

#define NETCMP_PCAP_MAX_BYTES (64ull << 20)

typedef struct netcmp_pcap netcmp_pcap;

/*
 * Creates (or truncates) path.  max_bytes 0: NETCMP_PCAP_MAX_BYTES.
 * 0, or a negative errno and a message naming the file and the cause.
 */
int netcmp_pcap_open(netcmp_pcap **out, const char *path, uint64_t max_bytes,
                     char *err, size_t errlen);
/*
 * Writes a NETCMP_MISMATCH verdict's two frames, stamped with their
 * netcmp_put times plus clock_offset_ns (the caller's clock to the
 * realtime clock, for a capture people read).  0; -ENOSPC past
 * max_bytes (the pair is dropped, counted); -EINVAL for another verdict.
 */
int netcmp_pcap_write(netcmp_pcap *pc, const netcmp_verdict *v,
                      int64_t clock_offset_ns);
/* 0 or -EIO. */
int netcmp_pcap_flush(netcmp_pcap *pc);
/* Flushes and closes; 0 or -EIO. */
int netcmp_pcap_close(netcmp_pcap *pc);

typedef struct netcmp_pcap_stats {
    uint64_t pairs, bytes, dropped;
} netcmp_pcap_stats;
void netcmp_pcap_get_stats(const netcmp_pcap *pc, netcmp_pcap_stats *out);

#endif
