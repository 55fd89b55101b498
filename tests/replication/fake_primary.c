/*
 * fake_primary: a scripted primary for testing `ftvm secondary`, built on
 * the same APIs the real one uses (vm/, devstate/ registry, checkpoint/
 * packages and trailers), and able to misbehave on purpose.
 *
 *   fake_primary [--net SPEC] [--mem SIZE] [--vm-name NAME] [--disk IMG]
 *                ADDR:PORT
 *                GUEST.elf 'ARGS' CONSOLE_OUT STEP...
 *
 * It boots GUEST in a VM of its own (console captured), connects to the
 * secondary and runs the steps in order:
 *
 *   bringup      header, OPEN_RETURN_PATH, ENABLE_COLO, ftvm-vm, ram START,
 *                PART passes while the guest runs, then checkpoint 1
 *   partial      the bring-up without its checkpoint (nothing to fail over
 *                to yet)
 *   ckpt:N       N checkpoints 20 ms apart, each ACKed before the next
 *   corrupt      one checkpoint with a bit flipped inside: NACK expected
 *   baddisk      (--disk) one checkpoint, sealed, whose chunks are good
 *                but for a last "block" record past the disk's end, as
 *                a buggy primary could write it: NACK expected
 *   badbase      one checkpoint built on the one before the last ACKed
 *   unsealed     one checkpoint without its ftvm-ckpt trailer
 *   nested       one checkpoint with a package inside it
 *   foreign      one checkpoint of another pairing id, then read SHUT and
 *                the close (the secondary ends the stream)
 *   wait         PING every 50 ms until a line arrives on stdin
 *   stall:MS     send nothing for up to MS ms; the secondary should hang up
 *   truncate     half of the next checkpoint's package, then exit
 *   garbage      bytes that are no record, then read SHUT and the close
 *   eof          the stream's EOF (stop-replication), then read the close
 *   drop         the drop notice (ftvm-drop) of its pairing and EOF, then
 *                read the close
 *   drop-foreign the same, of the next generation (not its pairing)
 *   drop-cut     the drop notice, then exit without EOF
 *   colo-in      a COLO input frame (ftvm-colo-in) between packages of
 *                this checkpoint-mode stream, then read SHUT and the close
 *   die          exit at once, as a killed primary does (also the default
 *                end of the script)
 *
 * It draws a pairing id as the real primary does (its VM name "fake"
 * unless --vm-name) and checks that every ACK and NACK carries it.
 * After a refused package the next checkpoint is a full one (base 0), as
 * the protocol asks.  Everything it learns goes to stdout, one line each,
 * flushed: "connected", "ack ID CONSOLE_BYTES" (the console output the
 * guest had produced at that checkpoint), "nack ID REASON", "waiting",
 * "shut CODE", "closed MS" (the secondary hung up MS ms into a stall or
 * after the end), "heartbeats N", "pongs N"; problems as "FAIL ..." with
 * exit status 1.  CONSOLE_OUT receives the guest's whole console when it
 * exits.  Exits 77 without /dev/kvm.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/block.h"
#include "checkpoint/qfile.h"
#include "checkpoint/retpath.h"
#include "devstate/dropnotice.h"
#include "checkpoint/savevm.h"
#include "devstate/trailer.h"
#include "daemon/parse.h"
#include "devstate/registry.h"
#include "vm/colosec.h"
#include "vm/vm.h"
#include "vm/vmshape.h"

#define REPLY_TIMEOUT_MS 5000
#define PING_EVERY_MS 50

typedef struct capture {
    pthread_mutex_t lock;
    char *buf;
    size_t len, cap;
} capture;

/* What the return path brought, collected by the reader thread. */
typedef struct replies {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool closed;
    uint64_t closed_ns;
    retpath_msg last;            /* the last ACK or NACK */
    bool have_last;
    uint64_t heartbeats, pongs;
    int shut;               /* -1 none */
} replies;

typedef struct fp {
    vm *v;
    capture con;
    int fd;
    qfile *out;
    replies rp;
    pthread_t reader;
    vmshape shape;
    uint32_t id_vm, id_pkg, id_ckpt;
    uint64_t next_id, last_acked;
    bool full_next;         /* the next package resends everything */
    uint32_t ping_seq;
    const char *console_out;
    uint64_t flush_ns;      /* when the last flush began */
} fp;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

static void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void save_console(fp *p)
{
    FILE *f = fopen(p->console_out, "wb");
    if (!f)
        return;
    pthread_mutex_lock(&p->con.lock);
    fwrite(p->con.buf ? p->con.buf : "", 1, p->con.len, f);
    pthread_mutex_unlock(&p->con.lock);
    fclose(f);
}

__attribute__((noreturn, format(printf, 2, 3)))
static void die_fail(fp *p, const char *fmt, ...)
{
    va_list ap;
    printf("FAIL ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    if (p)
        save_console(p);
    _exit(1);
}

static int capture_write(void *opaque, const void *data, size_t len)
{
    capture *c = opaque;
    pthread_mutex_lock(&c->lock);
    if (c->len + len > c->cap) {
        size_t cap = (c->len + len) * 2 + 4096;
        char *nb = realloc(c->buf, cap);
        if (!nb) {
            pthread_mutex_unlock(&c->lock);
            return -ENOMEM;
        }
        c->buf = nb;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static size_t console_len(fp *p)
{
    pthread_mutex_lock(&p->con.lock);
    size_t n = p->con.len;
    pthread_mutex_unlock(&p->con.lock);
    return n;
}

/* ---- the return path ---- */

static void *reader_main(void *arg)
{
    fp *p = arg;
    uint8_t buf[8192];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(p->fd, buf + have, sizeof(buf) - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        for (;;) {
            retpath_msg m;
            char err[256];
            int used = retpath_parse(buf, have, &m, err, sizeof(err));
            if (used < 0)
                die_fail(p, "return path: %s", err);
            if (used == 0)
                break;
            pthread_mutex_lock(&p->rp.lock);
            switch (m.type) {
            case RETPATH_HEARTBEAT:
                p->rp.heartbeats++;
                break;
            case RETPATH_PONG:
                p->rp.pongs++;
                break;
            case RETPATH_SHUT:
                p->rp.shut = (int)m.value32;
                break;
            default:
                p->rp.last = m;
                p->rp.have_last = true;
                break;
            }
            pthread_cond_broadcast(&p->rp.cond);
            pthread_mutex_unlock(&p->rp.lock);
            memmove(buf, buf + used, have - (size_t)used);
            have -= (size_t)used;
        }
    }
    pthread_mutex_lock(&p->rp.lock);
    p->rp.closed = true;
    p->rp.closed_ns = now_ns();
    pthread_cond_broadcast(&p->rp.cond);
    pthread_mutex_unlock(&p->rp.lock);
    return NULL;
}

/* The ACK or NACK of checkpoint id; returns true for an ACK. */
static bool await_reply(fp *p, uint64_t id)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += REPLY_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&p->rp.lock);
    while (!(p->rp.have_last && p->rp.last.value64 >= id) && !p->rp.closed)
        if (pthread_cond_timedwait(&p->rp.cond, &p->rp.lock, &dl) ==
            ETIMEDOUT)
            break;
    bool got = p->rp.have_last && p->rp.last.value64 >= id;
    retpath_msg m = p->rp.last;
    pthread_mutex_unlock(&p->rp.lock);
    if (!got)
        die_fail(p, "no answer to checkpoint %" PRIu64, id);
    if (!pairing_equal(&m.pair, &p->shape.pair))
        die_fail(p, "%s %" PRIu64 " of another pairing (%s)",
                 retpath_type_name(m.type), m.value64, m.pair.name);
    if (m.value64 != id && m.type == RETPATH_ACK)
        die_fail(p, "ACK %" PRIu64 " for checkpoint %" PRIu64, m.value64, id);
    if (m.type == RETPATH_NACK)
        out("nack %" PRIu64 " %s", m.value64, m.text);
    return m.type == RETPATH_ACK;
}

/* ---- the stream ---- */

static void flush(fp *p)
{
    p->flush_ns = now_ns();
    if (qfile_flush(p->out) < 0)
        die_fail(p, "sending: %s", qfile_errmsg(p->out));
}

typedef enum pkg_kind {
    PKG_GOOD,
    PKG_CORRUPT,
    PKG_BADBASE,
    PKG_UNSEALED,
    PKG_NESTED,
    PKG_TRUNCATED,
    PKG_FOREIGN,
    PKG_BADDISK,
} pkg_kind;

/*
 * A block PART whose one record is a zero chunk just past the disk's
 * end: well framed, so only the loader's range check refuses it.
 */
static void put_bad_chunk(fp *p, qfile *q)
{
    disk *d = vm_disk(p->v);
    int sid = registry_section_id(vm_registry(p->v), BLOCK_SECTION_IDSTR, 0);
    if (!d || sid < 0)
        die_fail(p, "baddisk: the VM has no disk (--disk)");
    uint64_t sector = disk_chunks(d) * DISK_CHUNK_SECTORS;
    savevm_put_section_part(q, SAVEVM_SECTION_PART, (uint32_t)sid);
    qfile_put_be64(q, sector << 9 | BLOCK_FLAG_DEVICE_BLOCK |
                          BLOCK_FLAG_ZERO_BLOCK);
    qfile_put_u8(q, (uint8_t)strlen(VM_DISK_NAME));
    qfile_put_buf(q, VM_DISK_NAME, strlen(VM_DISK_NAME));
    qfile_put_be64(q, BLOCK_FLAG_EOS);
    savevm_put_footer(q, (uint32_t)sid);
}

/* One checkpoint of the paused guest, sent as kind says. */
static void await_close(fp *p);

static void checkpoint(fp *p, pkg_kind kind)
{
    registry *reg = vm_registry(p->v);
    uint64_t id = ++p->next_id;
    if (p->full_next) {
        size_t nb;
        ram_block *b = vm_ram_blocks(p->v, &nb);
        ram_mark_all_dirty(b, nb);
        ram_saver_drop_cache(vm_ram_saver(p->v));
    }
    trailer_pkg hdr = { .id = id, .base = p->full_next ? 0 : p->last_acked };
    hdr.pair = p->shape.pair;
    if (kind == PKG_BADBASE)
        hdr.base = p->last_acked - 1;
    if (kind == PKG_FOREIGN)
        hdr.pair.id[0] ^= 0x01;
    char perr[512];
    if (vm_pause(p->v, perr, sizeof(perr)) < 0)
        die_fail(p, "%s", perr);
    qfile *q = qfile_open_mem("package");
    qfile_crc_start(q);
    trailer_put_pkg(q, p->id_pkg, &hdr);
    if (kind == PKG_NESTED)
        savevm_put_packaged(q, "\x00", 1);
    if (registry_save_complete(reg, q) < 0)
        die_fail(p, "saving: %s", qfile_errmsg(q));
    if (kind == PKG_BADDISK)
        put_bad_chunk(p, q);
    if (registry_save_devices(reg, q, NULL) < 0)
        die_fail(p, "saving: %s", qfile_errmsg(q));
    if (kind != PKG_UNSEALED)
        trailer_put(q, p->id_ckpt, id);
    savevm_put_eof(q);
    size_t len;
    uint8_t *b = (uint8_t *)qfile_mem_data(q, &len);
    size_t con = console_len(p);
    char err[256];
    if (vm_resume(p->v, err, sizeof(err)) < 0)
        die_fail(p, "vm_resume: %s", err);
    if (kind == PKG_CORRUPT)
        b[len / 2] ^= 0x04;
    if (kind == PKG_TRUNCATED) {
        qfile_put_u8(p->out, SAVEVM_COMMAND);
        qfile_put_be16(p->out, SAVEVM_CMD_PACKAGED);
        qfile_put_be16(p->out, 4);
        qfile_put_be32(p->out, (uint32_t)len);
        qfile_put_buf(p->out, b, len / 2);
        flush(p);
        qfile_close(q);
        return;
    }
    savevm_put_packaged(p->out, b, (uint32_t)len);
    flush(p);
    qfile_close(q);
    if (kind == PKG_FOREIGN) {
        await_close(p);
        return;
    }
    if (await_reply(p, id)) {
        if (kind != PKG_GOOD)
            die_fail(p, "checkpoint %" PRIu64 " (bad on purpose) was ACKed",
                     id);
        p->last_acked = id;
        p->full_next = false;
        out("ack %" PRIu64 " %zu", id, con);
    } else {
        if (kind == PKG_GOOD)
            die_fail(p, "checkpoint %" PRIu64 " was refused", id);
        /* Its pages were taken from the dirty log: send all again. */
        p->full_next = true;
    }
}

static void bringup(fp *p, bool complete)
{
    registry *reg = vm_registry(p->v);
    savevm_put_header(p->out);
    savevm_put_command(p->out, SAVEVM_CMD_OPEN_RETURN_PATH, 0, NULL);
    savevm_put_command(p->out, SAVEVM_CMD_ENABLE_COLO, 0, NULL);
    vmshape_put(p->out, p->id_vm, &p->shape);
    if (registry_save_setup(reg, p->out) < 0)
        die_fail(p, "ram START: %s", qfile_errmsg(p->out));
    flush(p);
    for (int pass = 0; pass < 16; pass++) {
        int r = registry_save_iterate(reg, p->out);
        flush(p);
        ram_save_stats rs;
        vm_get_ram_stats(p->v, &rs);
        if (r < 0)
            die_fail(p, "ram PART: %s", qfile_errmsg(p->out));
        if (r > 0 && rs.normal_pages < 256)
            break;
    }
    if (complete)
        checkpoint(p, PKG_GOOD);
}

static void ping(fp *p)
{
    savevm_put_ping(p->out, ++p->ping_seq);
    flush(p);
}

static void finish(fp *p);

/* Reports a SHUT and the close, and ends like a killed primary. */
static void closed_end(fp *p)
{
    pthread_mutex_lock(&p->rp.lock);
    int shut = p->rp.shut;
    pthread_mutex_unlock(&p->rp.lock);
    if (shut >= 0)
        out("shut %d", shut);
    out("closed");
    finish(p);
}

/* PINGs until a line comes on stdin, or the secondary hangs up. */
static void wait_stdin(fp *p)
{
    char line[64];
    out("waiting");
    for (;;) {
        struct pollfd pfd = { .fd = 0, .events = POLLIN };
        if (poll(&pfd, 1, PING_EVERY_MS) > 0) {
            if (!fgets(line, sizeof(line), stdin))
                return;
            return;
        }
        pthread_mutex_lock(&p->rp.lock);
        bool closed = p->rp.closed;
        pthread_mutex_unlock(&p->rp.lock);
        if (closed)
            closed_end(p);
        ping(p);
    }
}

/*
 * Silence; reports when the secondary hangs up, timed from the start of
 * the last flush: the secondary may have heard those bytes long before
 * this step begins on a slow machine, never before they were sent.
 */
static void stall(fp *p, unsigned ms)
{
    uint64_t t0 = p->flush_ns ? p->flush_ns : now_ns();
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (long)(ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&p->rp.lock);
    while (!p->rp.closed)
        if (pthread_cond_timedwait(&p->rp.cond, &p->rp.lock, &dl) ==
            ETIMEDOUT)
            break;
    bool closed = p->rp.closed;
    uint64_t at = p->rp.closed_ns;
    pthread_mutex_unlock(&p->rp.lock);
    if (closed)
        out("closed %.1f", (at - t0) / 1e6);
}

/* Reads the return path to its end: a SHUT, if any, and the close. */
static void await_close(fp *p)
{
    stall(p, REPLY_TIMEOUT_MS);
    pthread_mutex_lock(&p->rp.lock);
    int shut = p->rp.shut;
    bool closed = p->rp.closed;
    pthread_mutex_unlock(&p->rp.lock);
    if (shut >= 0)
        out("shut %d", shut);
    if (!closed)
        die_fail(p, "the secondary did not close the connection");
}

static int dial(const char *addr)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon)
        return -EINVAL;
    snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
        return -EINVAL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int r = fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 ? -errno
                                                                   : 0;
    freeaddrinfo(ai);
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        return r;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void finish(fp *p)
{
    pthread_mutex_lock(&p->rp.lock);
    out("heartbeats %" PRIu64, p->rp.heartbeats);
    out("pongs %" PRIu64, p->rp.pongs);
    pthread_mutex_unlock(&p->rp.lock);
    save_console(p);
    /* As a killed primary: no EOF, the socket closed by the kernel. */
    _exit(0);
}

int main(int argc, char **argv)
{
    fp p = { .fd = -1, .rp = { .shut = -1 } };
    vm_config cfg;
    char err[512];
    int i = 1;
    const char *vm_name = "fake";

    vm_config_init(&cfg);
    cfg.mem_size = 64ull << 20;
    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (strcmp(argv[i], "--net") == 0)
            cfg.net = argv[i + 1];
        else if (strcmp(argv[i], "--mem") == 0 &&
                 parse_size(argv[i + 1], &cfg.mem_size) == 0)
            continue;
        else if (strcmp(argv[i], "--disk") == 0) {
            if (disk_open(&cfg.disk, argv[i + 1], false, VM_DISK_NAME, err,
                          sizeof(err)) < 0)
                die_fail(NULL, "--disk: %s", err);
        }
        else if (strcmp(argv[i], "--vm-name") == 0 &&
                 strlen(argv[i + 1]) <= PAIRING_NAME_MAX)
            vm_name = argv[i + 1];
        else
            die_fail(NULL, "usage: see the comment at the top");
    }
    if (argc - i < 4)
        die_fail(NULL, "usage: fake_primary [--net SPEC] [--mem SIZE] "
                 "ADDR:PORT GUEST.elf ARGS CONSOLE_OUT STEP...");
    const char *addr = argv[i], *image = argv[i + 1], *args = argv[i + 2];
    p.console_out = argv[i + 3];
    i += 4;
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        printf("SKIP: /dev/kvm is missing or not usable\n");
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&p.con.lock, NULL);
    pthread_mutex_init(&p.rp.lock, NULL);
    pthread_cond_init(&p.rp.cond, NULL);
    cfg.console_fn = capture_write;
    cfg.console_fd = -1;
    cfg.console_opaque = &p.con;
    if (vm_create(&p.v, &cfg, err, sizeof(err)) < 0 ||
        vm_boot(p.v, image, args, err, sizeof(err)) < 0 ||
        vm_start(p.v, err, sizeof(err)) < 0)
        die_fail(NULL, "the VM: %s", err);
    p.shape = (vmshape){ .mem_size = cfg.mem_size, .vcpus = cfg.vcpus,
                         .has_net = cfg.net != NULL,
                         .disk_size = cfg.disk ? disk_size(cfg.disk) : 0 };
    memcpy(p.shape.mac, cfg.mac, 6);
    if (pairing_draw(&p.shape.pair, vm_name, 1) < 0)
        die_fail(NULL, "getrandom");
    uint32_t n = (uint32_t)registry_count(vm_registry(p.v));
    p.id_vm = n;
    p.id_pkg = n + 1;
    p.id_ckpt = n + 2;

    p.fd = dial(addr);
    if (p.fd < 0)
        die_fail(&p, "connecting to %s: %s", addr, strerror(-p.fd));
    p.out = qfile_open_fd(p.fd, QFILE_WRITE, addr);
    if (pthread_create(&p.reader, NULL, reader_main, &p) != 0)
        die_fail(&p, "reader thread");
    out("connected");

    for (; i < argc; i++) {
        const char *s = argv[i];
        unsigned num = 0;
        const char *colon = strchr(s, ':');
        if (colon)
            num = (unsigned)strtoul(colon + 1, NULL, 10);
        if (strcmp(s, "bringup") == 0) {
            bringup(&p, true);
        } else if (strcmp(s, "partial") == 0) {
            bringup(&p, false);
        } else if (strncmp(s, "ckpt:", 5) == 0) {
            for (unsigned k = 0; k < num; k++) {
                sleep_ms(20);
                checkpoint(&p, PKG_GOOD);
            }
        } else if (strcmp(s, "corrupt") == 0) {
            checkpoint(&p, PKG_CORRUPT);
        } else if (strcmp(s, "baddisk") == 0) {
            checkpoint(&p, PKG_BADDISK);
        } else if (strcmp(s, "badbase") == 0) {
            checkpoint(&p, PKG_BADBASE);
        } else if (strcmp(s, "unsealed") == 0) {
            checkpoint(&p, PKG_UNSEALED);
        } else if (strcmp(s, "nested") == 0) {
            checkpoint(&p, PKG_NESTED);
        } else if (strcmp(s, "foreign") == 0) {
            checkpoint(&p, PKG_FOREIGN);
        } else if (strcmp(s, "wait") == 0) {
            wait_stdin(&p);
        } else if (strncmp(s, "stall:", 6) == 0) {
            stall(&p, num);
        } else if (strcmp(s, "truncate") == 0) {
            checkpoint(&p, PKG_TRUNCATED);
            finish(&p);
        } else if (strcmp(s, "garbage") == 0) {
            static const uint8_t junk[] = "\x55this is not a record\n";
            qfile_put_buf(p.out, junk, sizeof(junk));
            flush(&p);
            await_close(&p);
        } else if (strcmp(s, "eof") == 0) {
            savevm_put_eof(p.out);
            flush(&p);
            await_close(&p);
        } else if (strncmp(s, "drop", 4) == 0) {
            /* As primary/package.c's package_drop writes it. */
            dropnotice d;
            dropnotice_make(&d, &p.shape.pair, DROPNOTICE_STOPPED,
                            "the fake primary drops you");
            if (strcmp(s, "drop-foreign") == 0)
                d.pair.generation++;
            dropnotice_put(p.out, p.id_ckpt + 1, &d);
            if (strcmp(s, "drop-cut") == 0) {
                flush(&p);
                finish(&p);     /* no EOF: closed as a killed one is */
            }
            savevm_put_eof(p.out);
            flush(&p);
            await_close(&p);
        } else if (strcmp(s, "colo-in") == 0) {
            /* As a COLO primary mirrors what its NIC received. */
            static const uint8_t frame[60] = { 0xff, 0xff, 0xff, 0xff,
                                               0xff, 0xff };
            colosec_put_input(p.out, colosec_input_section_id(p.id_vm),
                              1, frame, sizeof(frame));
            flush(&p);
            await_close(&p);
        } else if (strcmp(s, "die") == 0) {
            finish(&p);
        } else {
            die_fail(&p, "unknown step '%s'", s);
        }
    }
    finish(&p);
}
