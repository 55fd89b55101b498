/*
 * savevm: the framing of a checkpoint stream, in QEMU's wire format.
 *
 * A stream is a header, an optional configuration section, then a sequence
 * of sections (device or live state), commands (control messages such as
 * PACKAGED, a nested stream), and EOF, optionally followed by the JSON VM
 * description.  This module writes and parses that framing; what is inside
 * a section belongs to whoever registered it (devstate/, the RAM codec).
 * docs/stream-format.md gives the byte layout.
 */
#ifndef FTVM_CHECKPOINT_SAVEVM_H
#define FTVM_CHECKPOINT_SAVEVM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/qfile.h"

#define SAVEVM_MAGIC 0x5145564du /* "QEVM" */
#define SAVEVM_VERSION 3u
#define SAVEVM_VERSION_COMPAT 2u /* obsolete; recognised only to say so */

typedef enum savevm_type {
    SAVEVM_EOF = 0x00,
    SAVEVM_SECTION_START = 0x01,
    SAVEVM_SECTION_PART = 0x02,
    SAVEVM_SECTION_END = 0x03,
    SAVEVM_SECTION_FULL = 0x04,
    SAVEVM_SUBSECTION = 0x05,
    SAVEVM_VMDESCRIPTION = 0x06,
    SAVEVM_CONFIGURATION = 0x07,
    SAVEVM_COMMAND = 0x08,
    SAVEVM_SECTION_FOOTER = 0x7e,
} savevm_type;

/* QEMU's command numbering (2019 and later). */
typedef enum savevm_cmd {
    SAVEVM_CMD_INVALID = 0,
    SAVEVM_CMD_OPEN_RETURN_PATH = 1,
    SAVEVM_CMD_PING = 2,
    SAVEVM_CMD_POSTCOPY_ADVISE = 3,
    SAVEVM_CMD_POSTCOPY_LISTEN = 4,
    SAVEVM_CMD_POSTCOPY_RUN = 5,
    SAVEVM_CMD_POSTCOPY_RAM_DISCARD = 6,
    SAVEVM_CMD_PACKAGED = 7,
    SAVEVM_CMD_ENABLE_COLO = 8,
    SAVEVM_CMD_POSTCOPY_RESUME = 9,
    SAVEVM_CMD_RECV_BITMAP = 10,
    SAVEVM_CMD_MAX = 11,
} savevm_cmd;

/* Return-path messages (destination to source): be16 type, be16 len, data. */
typedef enum savevm_rp_msg {
    SAVEVM_RP_SHUT = 1,
    SAVEVM_RP_PONG = 2,
} savevm_rp_msg;

/* Name of a command for messages and tools ("PACKAGED"), or NULL. */
const char *savevm_cmd_name(uint16_t cmd);
/* Fixed payload length of a command, or -1 when variable or unknown. */
int savevm_cmd_len(uint16_t cmd);
/* Name of a section type byte ("SECTION_FULL"), or NULL. */
const char *savevm_type_name(uint8_t type);

/* ---- writing ---- */

void savevm_put_header(qfile *f);
/* CONFIGURATION section: the machine type name, as QEMU sends it. */
void savevm_put_config(qfile *f, const char *machine);
/* START or FULL: type, section id, id string, instance id, version. */
void savevm_put_section_start(qfile *f, savevm_type type, uint32_t section_id,
                              const char *idstr, uint32_t instance_id,
                              uint32_t version_id);
/* PART or END: type and section id only. */
void savevm_put_section_part(qfile *f, savevm_type type, uint32_t section_id);
void savevm_put_footer(qfile *f, uint32_t section_id);
void savevm_put_command(qfile *f, savevm_cmd cmd, uint16_t len,
                        const void *data);
void savevm_put_ping(qfile *f, uint32_t value);
/* A PACKAGED command followed by len bytes of nested stream. */
void savevm_put_packaged(qfile *f, const void *buf, uint32_t len);
void savevm_put_eof(qfile *f);
void savevm_put_vmdesc(qfile *f, const char *json, uint32_t len);
void savevm_put_rp_pong(qfile *rp, uint32_t value);

/* ---- loading ---- */

/*
 * A load runs in one of two passes over the same bytes.  VALIDATE parses and
 * checks everything and changes nothing a caller can see; APPLY stores.  A
 * package is always validated in full before it is applied, so a bad one
 * leaves the target exactly as it was.
 */
typedef enum savevm_pass {
    SAVEVM_PASS_VALIDATE,
    SAVEVM_PASS_APPLY,
} savevm_pass;

/* The header of a section, as read (PART/END carry their START's fields). */
typedef struct savevm_section {
    savevm_type type;
    uint32_t section_id;
    char idstr[256];
    uint32_t instance_id;
    uint32_t version_id;
} savevm_section;

/* One record as loaded, for tools that show a stream (ftvm inspect). */
typedef struct savevm_record {
    savevm_type type;
    uint64_t offset;            /* absolute offset of its type byte */
    uint64_t end;               /* just past it (footer, payload included) */
    int depth;                  /* 0 top level, 1 inside a package, ... */
    const savevm_section *section;  /* START/PART/END/FULL */
    uint16_t cmd;               /* COMMAND */
    uint16_t cmd_len;
    uint32_t package_len;       /* PACKAGED */
    savevm_pass pass;
} savevm_record;

/*
 * What a stream is loaded into.  section() reads one section's body (between
 * header and footer); it must consume exactly its bytes, and report problems
 * with qfile_fail() naming the section.  For START/FULL it also decides
 * whether idstr/instance exists and its version is acceptable.  command(), if
 * set, is told of ENABLE_COLO and OPEN_RETURN_PATH (APPLY pass only).
 */
typedef struct savevm_target_ops {
    int (*section)(void *opaque, qfile *f, const savevm_section *sec,
                   savevm_pass pass);
    int (*command)(void *opaque, savevm_cmd cmd);
    /* Optional: told of every record as it is applied (not validated). */
    void (*observe)(void *opaque, const savevm_record *rec);
    /*
     * Optional: the last word after the whole stream validated and before
     * any of it is applied (savevm_load_checked), and in savevm_load_main's
     * APPLY pass after each package validated and before it is applied, with
     * the package's view as f (a required section that never came, say).
     * 0, or an error latched on f with qfile_fail; a package refused here
     * has failed validation (package_failed).
     */
    int (*validated)(void *opaque, qfile *f);
    /*
     * Optional: a package that failed validation (its error is latched on
     * pf).  Returning 0 drops it and goes on with the next record, which
     * is how a replication receiver survives a corrupt checkpoint; without
     * it, or returning an error, the load stops with the package's error.
     */
    int (*package_failed)(void *opaque, qfile *pf);
    /*
     * Optional: a unit (a whole stream in savevm_load_checked, a package in
     * savevm_load_main's APPLY pass, or savevm_load_main's VALIDATE pass)
     * is about to be validated.  State a target carries from one section
     * to the next for the VALIDATE pass (the RAM codec's CONTINUE block)
     * must restart from what has been applied: a unit refused after its
     * validation moved that state never reached the target.
     */
    void (*begin_validate)(void *opaque);
} savevm_target_ops;

/* Why savevm_load_main() stopped without error. */
typedef enum savevm_stop {
    SAVEVM_STOP_EOF, /* an EOF byte */
    SAVEVM_STOP_END, /* the channel ended cleanly between records */
} savevm_stop;

typedef struct savevm_loader savevm_loader;

typedef struct savevm_loader_opts {
    uint32_t max_package;   /* largest PACKAGED accepted; 0 = 1 GiB */
    int max_depth;          /* PACKAGED nesting limit; 0 = 4 */
    bool footers;           /* expect section footers (default true) */
    qfile *return_path;     /* where PING is answered; NULL = none */
    /*
     * Held while a PONG is written, when other threads write to the same
     * return path (a replication receiver's heartbeats); NULL = none.
     */
    pthread_mutex_t *return_path_lock;
} savevm_loader_opts;

/*
 * A loader keeps what outlives one record: which section ids were started
 * (a PART refers to its START, possibly in an earlier package).  As for
 * begin_validate, each unit is validated against the starts applied so
 * far, never against those of a unit that was refused.
 */
savevm_loader *savevm_loader_new(const savevm_target_ops *ops, void *opaque,
                                 const savevm_loader_opts *opts);
void savevm_loader_free(savevm_loader *l);
/*
 * Changes the largest PACKAGED accepted from the next one on (0 = 1 GiB):
 * a receiver that learns what a package can hold part way (the VM's
 * shape) tightens it then.  A package's staging buffer grows with the
 * bytes that arrive, never to its stated length up front.
 */
void savevm_loader_set_max_package(savevm_loader *l, uint32_t max);

/* Reads and checks magic, version and an optional CONFIGURATION section. */
int savevm_load_header(savevm_loader *l, qfile *f);

/*
 * Loads records until EOF (or the clean end of the channel when
 * allow_end).  Nested packages are validated in full, then applied.  Each
 * package is read through a view of its own whose running CRC (qfile_crc)
 * starts at the package's first byte in the validate pass, so that a
 * section in it can check a sum over the package (trailer_load,
 * devstate/trailer.h); the apply pass that follows runs no sum.
 * Returns 0 or the latched negative errno; qfile_errmsg(f) says what and
 * where.
 */
int savevm_load_main(savevm_loader *l, qfile *f, savevm_pass pass,
                     bool allow_end, savevm_stop *why);

/*
 * A whole stream from a rewindable channel (a view or a regular file):
 * header and records validated in full, then rewound and applied.  Nothing
 * reaches the target unless every byte up to EOF is good.
 */
int savevm_load_checked(savevm_loader *l, qfile *f);

/*
 * After EOF: reads an optional VM description (0x06, be32 length, JSON).
 * *json is NULL when the stream has none; otherwise a NUL-terminated copy
 * the caller frees.  Descriptions over 64 MiB are refused.
 */
int savevm_load_vmdesc(qfile *f, char **json, uint32_t *len);

/* Machine name from the CONFIGURATION section, or "" when there was none. */
const char *savevm_loader_machine(const savevm_loader *l);
/* Whether ENABLE_COLO has been seen. */
bool savevm_loader_colo(const savevm_loader *l);

#endif
