/*
 * primary: `ftvm primary [OPTIONS] GUEST.elf [GUEST ARGS...] --secondary
 * HOST:PORT`, the command line of primary/primary.h.
 */
#include "tools/primary.h"

#include <stdlib.h>

#include "checkpoint/pairing.h"
#include "daemon/exitcode.h"
#include "daemon/log.h"
#include "primary/colo.h"
#include "primary/primary.h"
#include "witness/claim.h"
#include "vm/pc.h"
#include "witness/pool.h"

static const char help[] =
    "usage: ftvm primary [OPTIONS] GUEST.elf [GUEST ARGS...] --secondary "
    "HOST:PORT\n"
    "Runs a guest image in a KVM virtual machine and replicates it to\n"
    "a secondary (ftvm secondary --listen), checkpointing it many\n"
    "times a second; console and network output leave only once the\n"
    "checkpoint that produced them is safe on the secondary.\n"
    "\n"
    "replication:\n"
    "      --secondary HOST:PORT\n"
    "                       the secondary (required; [IPV6]:PORT)\n"
    "      --mode checkpoint|colo\n"
    "                       checkpoint (the default): output waits for\n"
    "                       the next checkpoint's ACK; colo: the\n"
    "                       secondary runs a copy of the VM on the same\n"
    "                       input, console bytes and frames both write\n"
    "                       alike leave at once, a difference forces a\n"
    "                       checkpoint (docs/colo.md)\n"
    "      --compare-timeout TIME\n"
    "                       colo: a console byte or frame the secondary's\n"
    "                       copy has not matched this long forces a\n"
    "                       checkpoint (default 100ms)\n"
    "      --compare-log FILE.pcap\n"
    "                       colo: every pair of frames that differed, in\n"
    "                       a capture file tshark opens (at most 64 MiB)\n"
    "      --checkpoint-interval TIME\n"
    "                       between checkpoints (default 50ms; colo 10s)\n"
    "      --heartbeat TIME PING when idle this long (default 50ms)\n"
    "      --failure-timeout TIME\n"
    "                       nothing heard for this long: the secondary\n"
    "                       is dead (default 300ms)\n"
    "      --reconnect TIME start, and keep running, unprotected when\n"
    "                       the secondary is unreachable or refuses, and\n"
    "                       try it again every TIME (default: exit 120\n"
    "                       unless the first secondary protects the VM;\n"
    "                       a later loss waits for ftvmctl\n"
    "                       attach-secondary)\n"
    "      --stall-timeout TIME\n"
    "                       a package unacknowledged, or a write stuck,\n"
    "                       this long: the secondary is dead (default\n"
    "                       10s)\n"
    "      --vm-name NAME   the VM's name, in every package and answer\n"
    "                       ([A-Za-z0-9._-], 1 to 63; default: the\n"
    "                       image's file name without extension)\n"
    "\n"
    "the witness (docs/witness.md):\n"
    "      --witness URL[,URL...]\n"
    "                       etcd client endpoints (http://HOST:PORT, or\n"
    "                       https:// with --witness-tls): on\n"
    "                       losing a secondary that may have applied a\n"
    "                       checkpoint, hold all output and claim the VM\n"
    "                       there; lost: stop (exit 123); no answer:\n"
    "                       pause the VM until there is one; the first\n"
    "                       pairing's generation is the one above every\n"
    "                       one decided there for --vm-name (read before\n"
    "                       pairing, waiting until it answers); without it\n"
    "                       a stall or a partition can leave both copies\n"
    "                       running\n"
    "      --witness-timeout TIME\n"
    "                       one claim attempt's deadline, and how often\n"
    "                       an unanswered claim is asked again (default\n"
    "                       1s)\n"
    "      --witness-tls DIR\n"
    "                       TLS to etcd: DIR/ca.pem (the members' CA),\n"
    "                       DIR/cert.pem + key.pem (a client certificate,\n"
    "                       if the cluster asks for one)\n"
    "      --standby-pool   whenever running unprotected (the secondary\n"
    "                       lost and the claim won, or unreachable at\n"
    "                       start with --reconnect), pick a standby from\n"
    "                       the witness's pool (ftvm secondary\n"
    "                       --register) and bring it up as the new\n"
    "                       secondary; none free: ask again every second\n"
    "                       (needs --witness)\n"
    "      --pool NAME      the pool ([A-Za-z0-9._-], default \"default\")\n"
    "\n"
    "security (docs/tls.md; one of --tls-creds and --insecure; also for\n"
    "ftvmctl attach-secondary):\n"
    "      --tls-creds DIR  mutual TLS 1.3: ca.pem, cert.pem, key.pem\n"
    "                       (QEMU's tls-creds-x509 layout)\n"
    "      --tls-peer NAME  the name the secondary's certificate must\n"
    "                       carry (default: the host of --secondary)\n"
    "      --insecure       plaintext, to a loopback address only\n";
static const char help_end[] =
    "Exit status as ftvm run's: the guest's halt status, 2 bad command\n"
    "line, 120 setup failed (without --reconnect: the secondary\n"
    "unreachable, or its link lost before it acknowledged a checkpoint,\n"
    "e.g. a refused TLS handshake, or a secondary that refuses this\n"
    "primary's generation; the VM is stopped, the output it held\n"
    "is dropped), 121 the guest broke the ABI, 122 the monitor failed,\n"
    "123 the witness gave the VM to the secondary; this copy stopped\n"
    "without releasing its output, 128+N signal N.\n";

int primary_main(int argc, char **argv)
{
    primary_opts o = { .rep.witness_timeout_ns = CLAIM_DEFAULT_TIMEOUT_NS };
    bool standby_pool = false;
    const char *pool = NULL;
    const char *mode = NULL;
    const options_own own[] = {
        { "secondary", 0, OPTIONS_STRING, &o.rep.secondary },
        { "mode", 0, OPTIONS_STRING, &mode },
        { "compare-log", 0, OPTIONS_STRING, &o.rep.compare_log },
        { "compare-timeout", 0, OPTIONS_DURATION,
          &o.rep.compare_timeout_ns },
        { "checkpoint-interval", 0, OPTIONS_DURATION,
          &o.rep.timing.interval_ns },
        { "heartbeat", 0, OPTIONS_DURATION,
          &o.rep.timing.heartbeat_ns },
        { "failure-timeout", 0, OPTIONS_DURATION,
          &o.rep.timing.failure_ns },
        { "reconnect", 0, OPTIONS_DURATION,
          &o.rep.timing.reconnect_ns },
        { "stall-timeout", 0, OPTIONS_DURATION,
          &o.rep.timing.stall_ns },
        { "tls-creds", 0, OPTIONS_STRING, &o.rep.tls.creds },
        { "tls-peer", 0, OPTIONS_STRING, &o.rep.tls.peer },
        { "insecure", 0, OPTIONS_FLAG, &o.rep.tls.insecure },
        { "vm-name", 0, OPTIONS_STRING, &o.vm_name },
        { "witness", 0, OPTIONS_STRING, &o.rep.witness },
        { "witness-timeout", 0, OPTIONS_DURATION,
          &o.rep.witness_timeout_ns },
        { "witness-tls", 0, OPTIONS_STRING, &o.rep.witness_tls },
        { "standby-pool", 0, OPTIONS_FLAG, &standby_pool },
        { "pool", 0, OPTIONS_STRING, &pool },
        { NULL, 0, OPTIONS_FLAG, NULL },
    };
    const options_command c = {
        .help = help,
        .help_end = help_end,
        .operands = OPTIONS_IMAGE_AND_ARGS,
        .operand = "guest image",
        .own = own,
        .vm = &o.vm,
        .kernel_ok = true,
        .process = &o.process,
    };
    options_found found;

    log_init("ftvm primary");
    if (options_parse(&c, argc, argv, &found) < 0)
        return EXITCODE_USAGE;
    if (found.help)
        return EXITCODE_OK;
    if (!o.rep.secondary) {
        log_msg("no --secondary HOST:PORT given; see ftvm primary --help");
        free(found.guest_args);
        return EXITCODE_USAGE;
    }
    char err[512];
    if (o.vm_name && pairing_check_name(o.vm_name, err, sizeof(err)) < 0) {
        log_msg("--vm-name: %s", err);
        free(found.guest_args);
        return EXITCODE_USAGE;
    }
    if (mode && colo_mode_parse(mode, &o.rep.mode) < 0) {
        log_msg("--mode %s: checkpoint or colo", mode);
        free(found.guest_args);
        return EXITCODE_USAGE;
    }
    if (o.rep.mode == COLO_MODE_COLO && o.vm.kernel) {
        log_msg("--mode colo --kernel: %s", PC_NO_COLO);
        free(found.guest_args);
        return EXITCODE_USAGE;
    }
    if (o.rep.mode == COLO_MODE_COLO && o.vm.has_disk) {
        log_msg("--mode colo --disk: %s", VM_DISK_NO_COLO);
        free(found.guest_args);
        return EXITCODE_USAGE;
    }
    if (o.rep.compare_log && o.rep.mode != COLO_MODE_COLO) {
        log_msg("--compare-log goes with --mode colo");
        free(found.guest_args);
        return EXITCODE_USAGE;
    }
    if (o.rep.mode == COLO_MODE_COLO && !o.rep.timing.interval_ns)
        o.rep.timing.interval_ns = COLO_DEFAULT_INTERVAL_NS;
    if (o.rep.witness_timeout_ns < 1000000) {
        log_msg("--witness-timeout must be at least 1ms");
        free(found.guest_args);
        return EXITCODE_USAGE;
    }
    if (pool && !standby_pool) {
        log_msg("--pool goes with --standby-pool");
        free(found.guest_args);
        return EXITCODE_USAGE;
    }
    if (standby_pool && !o.rep.witness) {
        log_msg("--standby-pool needs --witness (the pool is in etcd)");
        free(found.guest_args);
        return EXITCODE_USAGE;
    }
    if (pool && pool_check_name(pool, err, sizeof(err)) < 0) {
        log_msg("--pool %s", err);
        free(found.guest_args);
        return EXITCODE_USAGE;
    }
    if (standby_pool)
        o.rep.standby_pool = pool ? pool : POOL_DEFAULT_NAME;
    if (tls_opts_check(&o.rep.tls, err, sizeof(err)) < 0) {
        log_msg("%s", err);
        free(found.guest_args);
        return EXITCODE_USAGE;
    }
    o.image = found.operand;
    o.guest_args = found.guest_args;
    int status = primary_run(&o);
    free(found.guest_args);
    return status;
}
