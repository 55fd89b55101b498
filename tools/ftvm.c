/*
 * ftvm: the command-line front end.  Each command's command line is
 * parsed in its own file here and handed to the module that does the
 * work; this file dispatches, and holds inspect's.
 */
#include <stdio.h>
#include <string.h>

#include "daemon/exitcode.h"
#include "daemon/log.h"
#include "daemon/options.h"
#include "devstate/inspect.h"
#include "tools/primary.h"
#include "tools/run.h"
#include "tools/secondary.h"

#ifndef FTVM_VERSION
#define FTVM_VERSION "dev"
#endif

static void usage(FILE *out)
{
    fputs("usage: ftvm COMMAND [OPTIONS]\n"
          "\n"
          "commands:\n"
          "  run [OPTIONS] GUEST.elf [ARGS...]\n"
          "                            run a guest image in a VM\n"
          "  run [OPTIONS] --kernel BZIMAGE [--initrd FILE]\n"
          "                            boot a Linux kernel in a VM\n"
          "  restore [OPTIONS] CHECKPOINT\n"
          "                            carry a VM on from a checkpoint file\n"
          "  primary [OPTIONS] GUEST.elf [ARGS...] --secondary HOST:PORT\n"
          "                            run a guest replicated to a "
          "secondary\n"
          "  secondary --listen ADDR:PORT [OPTIONS]\n"
          "                            stand by for a primary, fail over\n"
          "  inspect [--json] [--desc S] FILE|-\n"
          "                            show what a checkpoint stream holds\n"
          "\n"
          "options:\n"
          "  -h, --help                this help\n"
          "  -V, --version             the version\n"
          "\n"
          "Every command takes its options anywhere on its command line\n"
          "(GNU style); `--` ends them.  `ftvm COMMAND --help` says more.\n"
          "See README.md and docs/ for the stream format.\n", out);
}

static int inspect_main(int argc, char **argv)
{
    inspect_opts o = { .format = INSPECT_TEXT };
    bool json = false;
    const char *desc = NULL;
    const options_own own[] = {
        { "json", 'j', OPTIONS_FLAG, &json },
        { "desc", 'd', OPTIONS_STRING, &desc },
        { "extract-ram", 'x', OPTIONS_STRING, &o.extract_dir },
        { NULL, 0, OPTIONS_FLAG, NULL },
    };
    const options_command c = {
        .help = "usage: ftvm inspect [--json] [--desc STREAM] "
                "[--extract-ram DIR] FILE|-\n"
                "Shows the records, RAM blocks (page counts by encoding),\n"
                "commands, packages and decoded device fields of a\n"
                "checkpoint stream (ftvm's or QEMU's).  '-' reads stdin.\n"
                "\n"
                "  -j, --json           one JSON document instead of tables\n"
                "  -d, --desc STREAM    decode devices with the VM\n"
                "                       description of another stream of the\n"
                "                       same VM (for replication streams,\n"
                "                       which carry none)\n"
                "  -x, --extract-ram DIR\n"
                "                       write each RAM block, as the stream\n"
                "                       leaves it, to DIR/BLOCK.bin\n",
        .help_end = "Exit status: 0 clean, 1 damaged stream, 2 usage or "
                    "I/O.\n",
        .operands = OPTIONS_ONE_OPERAND,
        .operand = "FILE (or - for stdin)",
        .own = own,
    };
    options_found found;
    char err[512];

    log_init("ftvm inspect");
    if (options_parse(&c, argc, argv, &found) < 0)
        return EXITCODE_USAGE;
    if (found.help)
        return EXITCODE_OK;
    if (json)
        o.format = INSPECT_JSON;
    int r = inspect_file(found.operand, desc, &o, stdout, err, sizeof(err));
    if (*err)
        log_msg("%s", err);
    return r;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXITCODE_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
        strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXITCODE_OK;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("ftvm %s\n", FTVM_VERSION);
        return EXITCODE_OK;
    }
    if (strcmp(cmd, "inspect") == 0)
        return inspect_main(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0)
        return run_main(argc - 1, argv + 1);
    if (strcmp(cmd, "restore") == 0)
        return restore_main(argc - 1, argv + 1);
    if (strcmp(cmd, "primary") == 0)
        return primary_main(argc - 1, argv + 1);
    if (strcmp(cmd, "secondary") == 0)
        return secondary_main(argc - 1, argv + 1);
    log_msg("unknown command '%s'; see ftvm --help", cmd);
    return EXITCODE_USAGE;
}
