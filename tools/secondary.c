/*
 * secondary: `ftvm secondary --listen ADDR:PORT [OPTIONS]`, the command
 * line of secondary/secondary.h.
 */
#include "tools/secondary.h"

#include "checkpoint/pairing.h"
#include "daemon/exitcode.h"
#include "daemon/log.h"
#include "daemon/options.h"
#include "secondary/enlist.h"
#include "secondary/secondary.h"
#include "witness/claim.h"

static const char help[] =
    "usage: ftvm secondary --listen ADDR:PORT [OPTIONS]\n"
    "Waits for a primary (ftvm primary --secondary ADDR:PORT), keeps\n"
    "its VM as a RAM cache, applying and acknowledging every\n"
    "checkpoint, and fails over when the primary dies or on\n"
    "`ftvmctl failover`: the VM then runs here, its console on\n"
    "stdout, as with ftvm run.\n"
    "\n"
    "replication:\n"
    "      --listen ADDR:PORT\n"
    "                       where the primary connects ([IPV6]:PORT;\n"
    "                       :PORT for every address; port 0: any, the\n"
    "                       log says which)\n"
    "      --net SPEC       the VM's network backend after failover:\n"
    "                       tap:IFNAME or dgram:LOCAL,REMOTE\n"
    "                       (docs/network.md); required if the VM has a\n"
    "                       NIC\n"
    "      --disk FILE      this secondary's copy of the VM's disk,\n"
    "                       required if it has one: made the primary's\n"
    "                       image's size (created if missing) and\n"
    "                       overwritten by the bring-up; its contents\n"
    "                       always match the last checkpoint applied\n"
    "      --failure-timeout TIME\n"
    "                       silence after which the primary is dead\n"
    "                       (default 300ms)\n"
    "      --heartbeat TIME HEARTBEAT when idle this long (default 50ms)\n"
    "      --setup-timeout TIME\n"
    "                       until its first checkpoint is applied, a\n"
    "                       primary must send more than PINGs at least\n"
    "                       this often, or it is dropped (default 20s)\n"
    "      --vm-name NAME   serve only a primary whose --vm-name is NAME\n"
    "\n"
    "after a failover, replicating the VM taken over (ftvmctl protect,\n"
    "--standby-pool), as ftvm primary's options:\n"
    "      --mode checkpoint|colo\n"
    "                       checkpoint (the default) or colo: the new\n"
    "                       secondary runs a copy compared with this one\n"
    "                       (docs/colo.md)\n"
    "      --compare-timeout TIME\n"
    "                       colo's (default 100ms)\n"
    "      --checkpoint-interval TIME\n"
    "                       between checkpoints (default 50ms; colo 10s)\n"
    "      --stall-timeout TIME\n"
    "                       a package unacknowledged this long: the new\n"
    "                       secondary is dead (default 10s)\n"
    "\n"
    "the witness (docs/witness.md):\n"
    "      --witness URL[,URL...]\n"
    "                       etcd client endpoints (http://HOST:PORT, or\n"
    "                       https:// with --witness-tls):\n"
    "                       on losing the primary, go live only after\n"
    "                       winning its pairing's key there; without it a\n"
    "                       stall or a partition can leave both copies\n"
    "                       running\n"
    "      --witness-timeout TIME\n"
    "                       one claim attempt's deadline; with no answer\n"
    "                       the secondary waits and asks again this often\n"
    "                       (default 1s); with it, a primary whose\n"
    "                       generation is not above every one the witness\n"
    "                       decided for its name is refused\n"
    "      --witness-tls DIR\n"
    "                       TLS to etcd: DIR/ca.pem (the members' CA),\n"
    "                       DIR/cert.pem + key.pem (a client certificate,\n"
    "                       if the cluster asks for one)\n"
    "      --register       while waiting for a primary, offer this\n"
    "                       secondary in the witness's standby pool, for\n"
    "                       a primary with --standby-pool to pick; out of\n"
    "                       it once a primary connects (needs --witness)\n"
    "      --standby-pool   once this secondary has taken the VM over,\n"
    "                       whenever it runs unprotected, pick a standby\n"
    "                       from the pool and bring it up as its own\n"
    "                       secondary (as ftvm primary --standby-pool;\n"
    "                       needs --witness)\n"
    "      --pool NAME      the pool ([A-Za-z0-9._-], default \"default\")\n"
    "                       registered in, and picked from\n"
    "      --advertise HOST:PORT\n"
    "                       the address primaries dial (default: the\n"
    "                       --listen address; required when that is\n"
    "                       every address)\n"
    "      --pool-ttl TIME  the registration's lease, kept alive every\n"
    "                       third of it: a standby gone for this long\n"
    "                       leaves the pool (default 5s, whole seconds)\n"
    "\n"
    "security (docs/tls.md; one of --tls-creds and --insecure):\n"
    "      --tls-creds DIR  mutual TLS 1.3: ca.pem, cert.pem, key.pem\n"
    "                       (QEMU's tls-creds-x509 layout); only a\n"
    "                       primary with a certificate of that CA is\n"
    "                       heard\n"
    "      --tls-peer NAME  and only one whose certificate names NAME\n"
    "      --tls-timeout TIME\n"
    "                       a connection's TLS handshake deadline\n"
    "                       (default 5s; at most 4 at once)\n"
    "      --insecure       plaintext, when --listen and the primary\n"
    "                       are loopback addresses only\n";
static const char help_end[] =
    "Checkpoints to disk save the RAM cache at a checkpoint boundary,\n"
    "and after a failover the running VM.\n"
    "\n"
    "After a failover the VM's output goes through output commit and\n"
    "`ftvmctl protect HOST:PORT` gives it a new secondary, as a\n"
    "primary's (docs/witness.md, re-protection; `set` and\n"
    "`stop-replication` then act on that replication): the next\n"
    "generation of the pairing taken over, with this process's\n"
    "--witness, --witness-timeout, --witness-tls, --tls-creds or\n"
    "--insecure, --heartbeat, --failure-timeout, --mode,\n"
    "--compare-timeout, --checkpoint-interval and --stall-timeout (the new\n"
    "secondary's certificate must name the host given; --tls-peer\n"
    "names only the primary).\n"
    "\n"
    "exit status before a failover:\n"
    "  0    replication stopped cleanly (our stop-replication, quit;\n"
    "       the primary's EOF without a drop notice)\n"
    "  2    bad command line\n"
    "  3    the primary was lost before its first checkpoint\n"
    "  4    the primary's stream was refused (SHUT 1 sent)\n"
    "  5    the witness gave the VM to the primary (fenced)\n"
    "  6    the primary dropped this secondary (its stop-replication,\n"
    "       its VM's end, or it gave up on us): it keeps the VM\n"
    "  120  setup failed (listening, control socket)\n"
    "  128+N  stopped by signal N\n"
    "after a failover, ftvm primary's: the guest's halt status, 121,\n"
    "122, 128+N, and 123 when, protected again, the witness gave the\n"
    "VM to the new secondary.\n";

int secondary_main(int argc, char **argv)
{
    secondary_opts o = { .failure_ns = SECONDARY_FAILURE_TIMEOUT_NS,
                         .heartbeat_ns = SECONDARY_HEARTBEAT_NS,
                         .setup_ns = SECONDARY_SETUP_TIMEOUT_NS,
                         .witness_timeout_ns = CLAIM_DEFAULT_TIMEOUT_NS };
    const char *mode = NULL;
    const options_own own[] = {
        { "listen", 0, OPTIONS_STRING, &o.listen },
        { "net", 0, OPTIONS_STRING, &o.net },
        { "disk", 0, OPTIONS_STRING, &o.disk },
        { "failure-timeout", 0, OPTIONS_DURATION, &o.failure_ns },
        { "heartbeat", 0, OPTIONS_DURATION, &o.heartbeat_ns },
        { "tls-creds", 0, OPTIONS_STRING, &o.tls.creds },
        { "tls-peer", 0, OPTIONS_STRING, &o.tls.peer },
        { "tls-timeout", 0, OPTIONS_DURATION, &o.handshake_ns },
        { "insecure", 0, OPTIONS_FLAG, &o.tls.insecure },
        { "setup-timeout", 0, OPTIONS_DURATION, &o.setup_ns },
        { "vm-name", 0, OPTIONS_STRING, &o.vm_name },
        { "witness", 0, OPTIONS_STRING, &o.witness },
        { "witness-timeout", 0, OPTIONS_DURATION, &o.witness_timeout_ns },
        { "witness-tls", 0, OPTIONS_STRING, &o.witness_tls },
        { "register", 0, OPTIONS_FLAG, &o.register_pool },
        { "standby-pool", 0, OPTIONS_FLAG, &o.standby_pool },
        { "pool", 0, OPTIONS_STRING, &o.pool },
        { "advertise", 0, OPTIONS_STRING, &o.advertise },
        { "pool-ttl", 0, OPTIONS_DURATION, &o.pool_ttl_ns },
        { "mode", 0, OPTIONS_STRING, &mode },
        { "compare-timeout", 0, OPTIONS_DURATION, &o.compare_timeout_ns },
        { "checkpoint-interval", 0, OPTIONS_DURATION, &o.interval_ns },
        { "stall-timeout", 0, OPTIONS_DURATION, &o.stall_ns },
        { NULL, 0, OPTIONS_FLAG, NULL },
    };
    const options_command c = {
        .help = help,
        .help_end = help_end,
        .operands = OPTIONS_NO_OPERANDS,
        .own = own,
        .process = &o.process,
        .checkpoints = &o.process.vmctl,
    };
    options_found found;

    log_init("ftvm secondary");
    if (options_parse(&c, argc, argv, &found) < 0)
        return EXITCODE_USAGE;
    if (found.help)
        return EXITCODE_OK;
    if (!o.listen) {
        log_msg("--listen ADDR:PORT is required");
        return EXITCODE_USAGE;
    }
    char err[512];
    if (o.vm_name && pairing_check_name(o.vm_name, err, sizeof(err)) < 0) {
        log_msg("--vm-name: %s", err);
        return EXITCODE_USAGE;
    }
    if (o.witness_timeout_ns < 1000000) {
        log_msg("--witness-timeout must be at least 1ms");
        return EXITCODE_USAGE;
    }
    if ((o.advertise || o.pool_ttl_ns) && !o.register_pool) {
        log_msg("--advertise and --pool-ttl go with --register");
        return EXITCODE_USAGE;
    }
    if (o.pool && !o.register_pool && !o.standby_pool) {
        log_msg("--pool goes with --register or --standby-pool");
        return EXITCODE_USAGE;
    }
    if ((o.register_pool || o.standby_pool) && !o.witness) {
        log_msg("--register and --standby-pool need --witness (the pool is "
                "in etcd)");
        return EXITCODE_USAGE;
    }
    if (o.pool && pool_check_name(o.pool, err, sizeof(err)) < 0) {
        log_msg("--pool %s", err);
        return EXITCODE_USAGE;
    }
    char addr[POOL_ADDR_MAX];
    if (o.advertise && enlist_address(addr, sizeof(addr), o.advertise, "",
                                      err, sizeof(err)) < 0) {
        log_msg("%s", err);
        return EXITCODE_USAGE;
    }
    if (o.pool_ttl_ns && (o.pool_ttl_ns < 1000000000ull ||
                          o.pool_ttl_ns > 3600000000000ull)) {
        log_msg("--pool-ttl: 1s to 1h");
        return EXITCODE_USAGE;
    }
    if (o.setup_ns == 0) {
        log_msg("--setup-timeout must be above 0");
        return EXITCODE_USAGE;
    }
    if (tls_opts_check(&o.tls, err, sizeof(err)) < 0) {
        log_msg("%s", err);
        return EXITCODE_USAGE;
    }
    if (mode && colo_mode_parse(mode, &o.mode) < 0) {
        log_msg("--mode %s: checkpoint or colo", mode);
        return EXITCODE_USAGE;
    }
    if (o.compare_timeout_ns && o.mode != COLO_MODE_COLO) {
        log_msg("--compare-timeout goes with --mode colo");
        return EXITCODE_USAGE;
    }
    if (o.mode == COLO_MODE_COLO && !o.interval_ns)
        o.interval_ns = COLO_DEFAULT_INTERVAL_NS;
    if (o.heartbeat_ns >= o.failure_ns) {
        log_msg("--heartbeat must be shorter than --failure-timeout");
        return EXITCODE_USAGE;
    }
    return secondary_run(&o);
}
