/*
 * retpath: messages on the return path, from the receiver of a stream
 * back to its sender.
 *
 * QEMU frames each message as be16 type, be16 length, payload,
 * and defines SHUT (1) and PONG (2) among others.  ftvm keeps that framing
 * and adds its replication messages in a range of its own (0x7f01 up), so
 * QEMU's parser would stop at them with "unknown message" rather
 * than misread them.  docs/replication.md has the table.
 */
#ifndef FTVM_CHECKPOINT_RETPATH_H
#define FTVM_CHECKPOINT_RETPATH_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint/pairing.h"
#include "checkpoint/qfile.h"

typedef enum retpath_type {
    RETPATH_SHUT = 1,      /* be32: 0 a clean stop, else an error */
    RETPATH_PONG = 2,      /* be32: the PING's value */
    RETPATH_ACK = 0x7f01,  /* be64 checkpoint id applied, the pairing */
    RETPATH_NACK = 0x7f02, /* be64 id refused, the pairing, a message */
    RETPATH_HEARTBEAT = 0x7f03, /* be64: the receiver's sequence number */
    /*
     * The receiver refuses the pairing itself (before applying anything):
     * laid out as NACK, the be64 the highest generation the witness has
     * decided for the VM's name, then the pairing refused and the reason.
     */
    RETPATH_REFUSE = 0x7f04,
    /*
     * COLO (docs/colo.md): be64 the checkpoint the secondary's running VM
     * last reset to, then 0..RETPATH_COLO_DATA_MAX console bytes it wrote
     * since (in order, continuing the previous message of that id); none:
     * it runs from that checkpoint now.
     */
    RETPATH_COLO_CONSOLE = 0x7f10,
    /*
     * COLO: be64 the checkpoint the secondary's running VM last reset to,
     * then one whole frame it sent since (1..RETPATH_COLO_FRAME_MAX
     * bytes), in the order it sent them.
     */
    RETPATH_COLO_FRAME = 0x7f11,
    /*
     * COLO's exact release (docs/colo.md): be64 checkpoint, be64 offset:
     * the secondary keeps that its SVM's first offset console bytes since
     * that checkpoint are released (the stream's ftvm-colo-rel), so the
     * primary may release them now.
     */
    RETPATH_COLO_RELEASED = 0x7f12,
} retpath_type;

/* Longest payload ftvm sends or accepts: a COLO_FRAME's (8 + a frame). */
#define RETPATH_MSG_MAX 1522
/* ACK's payload, and NACK's before its reason: id, pairing id, name,
 * generation. */
#define RETPATH_ANSWER_LEN (8 + PAIRING_ID_LEN + PAIRING_NAME_MAX + 1 + 8)
/*
 * Longest NACK or REFUSE payload, and COLO_CONSOLE's: what they were
 * before COLO_FRAME raised RETPATH_MSG_MAX, so that their bounds (and a
 * reason's cut) do not change with it.
 */
#define RETPATH_ANSWER_MAX 1024

#define RETPATH_COLO_DATA_MAX (RETPATH_ANSWER_MAX - 8)
/* A whole Ethernet frame without its FCS (vm/net.h's NET_FRAME_MAX). */
#define RETPATH_COLO_FRAME_MAX 1514

typedef struct retpath_msg {
    retpath_type type;
    uint32_t value32;       /* SHUT, PONG */
    /* ACK, NACK, HEARTBEAT, REFUSE, COLO_CONSOLE, COLO_FRAME */
    uint64_t value64;
    pairing pair;           /* ACK, NACK, REFUSE: the pairing it answers */
    /*
     * NACK's, REFUSE's reason, NUL-terminated; COLO_CONSOLE's and
     * COLO_FRAME's len bytes.
     */
    char text[RETPATH_MSG_MAX];
    uint16_t len;           /* COLO_CONSOLE, COLO_FRAME: bytes in text */
    uint64_t offset;        /* COLO_RELEASED */
} retpath_msg;

void retpath_put(qfile *f, const retpath_msg *m);
void retpath_put_ack(qfile *f, uint64_t id, const pairing *pair);
void retpath_put_nack(qfile *f, uint64_t id, const pairing *pair,
                      const char *why);
void retpath_put_refuse(qfile *f, uint64_t decided, const pairing *pair,
                        const char *why);
void retpath_put_heartbeat(qfile *f, uint64_t seq);
void retpath_put_shut(qfile *f, uint32_t code);
/* len is 0..RETPATH_COLO_DATA_MAX. */
void retpath_put_colo_console(qfile *f, uint64_t id, const void *buf,
                              size_t len);
/*
 * len is 1..RETPATH_COLO_FRAME_MAX; anything else is the caller's bug and
 * latches -EINVAL on f (nothing is written).
 */
void retpath_put_colo_released(qfile *f, uint64_t id, uint64_t offset);
void retpath_put_colo_frame(qfile *f, uint64_t id, const void *frame,
                            size_t len);

/*
 * Decodes one message from buf[0..len).  Returns the bytes it used, 0 when
 * more bytes are needed, or -EINVAL for an unknown type, a bad length (a
 * COLO_FRAME of no frame or one over RETPATH_COLO_FRAME_MAX, say) or an
 * ACK/NACK/REFUSE whose VM name is not one (with a message in err).  Whether
 * the pairing is the right one is the caller's to judge.
 */
int retpath_parse(const uint8_t *buf, size_t len, retpath_msg *out, char *err,
                  size_t errlen);

const char *retpath_type_name(uint16_t type);

#endif
