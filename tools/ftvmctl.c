/*
 * ftvmctl: the client of an ftvm process's control socket.
 *
 *     ftvmctl -s SOCK [--json] COMMAND [ARGS...]
 *
 * Sends one request, waits for its reply, prints the result as a table
 * (or as JSON with --json) and exits 0, or prints the error and exits 1.
 * Connection and usage problems exit 2.  Options as for ftvm: anywhere,
 * until `--`.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/ctlclient.h"
#include "daemon/log.h"

static void usage(FILE *out)
{
    fputs("usage: ftvmctl -s SOCKET [--json] COMMAND [ARGS...]\n"
          "\n"
          "Talks to a running ftvm (run, restore, primary or secondary)\n"
          "over its --control socket.  `ftvmctl -s SOCK help` lists what\n"
          "that process accepts.  Common commands:\n"
          "  status                   state, counters and timings\n"
          "  pause | resume           stop or restart the guest's vCPUs\n"
          "  save FILE                write a complete checkpoint to FILE\n"
          "  protect HOST:PORT        a new secondary for a primary, or a\n"
          "                           secondary that took over\n"
          "  quit                     stop the VM and the process\n"
          "Arguments of other commands go as KEY=VALUE.\n"
          "\n"
          "options:\n"
          "  -s, --socket PATH        the control socket (required; or\n"
          "                           FTVM_SOCKET)\n"
          "  -j, --json               print the raw JSON result\n"
          "      --force              failover: go live without the\n"
          "                           witness's agreement (force=true)\n"
          "  -h, --help               this help\n"
          "\n"
          "Options may come anywhere, as for ftvm; after `--` nothing is\n"
          "an option.\n"
          "\n"
          "exit status: 0 done, 1 the process refused the command, 2 bad\n"
          "command line, no connection or no reply.\n", out);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { "force", no_argument, NULL, 'f' },
        { NULL, 0, NULL, 0 },
    };
    const char *sock = getenv("FTVM_SOCKET");
    bool as_json = false, force = false;
    int c;

    log_init("ftvmctl");
    opterr = 0;
    while ((c = getopt_long(argc, argv, "s:jh", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            sock = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        case 'f':
            force = true;
            break;
        case 'h':
            usage(stdout);
            return CTLCLIENT_OK;
        default:
            log_msg("unknown option, or one without its value: '%s'; see "
                    "ftvmctl --help", argv[optind - 1]);
            return CTLCLIENT_FAILED;
        }
    }
    if (!sock || optind >= argc) {
        log_msg(!sock ? "no socket: give -s PATH (or FTVM_SOCKET)"
                      : "no command; see ftvmctl --help");
        return CTLCLIENT_FAILED;
    }
    /* --force is the argument force=true (failover --force). */
    int n = argc - optind - 1;
    char **args = calloc((size_t)n + 2, sizeof(*args));
    if (!args) {
        log_msg("out of memory");
        return CTLCLIENT_FAILED;
    }
    for (int i = 0; i < n; i++)
        args[i] = argv[optind + 1 + i];
    if (force)
        args[n++] = (char *)"force=true";
    int rc = ctlclient_run(sock, argv[optind], n, args, as_json);
    free(args);
    return rc;
}
