/*
 * ftvm: the command-line front end.  Each subcommand lives in its own
 * module; this file only parses the command line and dispatches.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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
          "  restore [OPTIONS] CHECKPOINT\n"
          "                            carry a VM on from a checkpoint file\n"
          "  primary GUEST.elf [ARGS...] --secondary HOST:PORT [OPTIONS]\n"
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
          "See README.md and docs/ for the stream format.\n", out);
}

/* Reads all of fd into a malloc'd buffer (for pipes, which cannot map). */
static uint8_t *slurp(int fd, size_t *len)
{
    size_t cap = 1 << 20, n = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        if (n == cap) {
            uint8_t *nb = realloc(b, cap * 2);
            if (!nb)
                break;
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        if (r == 0) {
            *len = n;
            return b;
        }
        n += (size_t)r;
    }
    free(b);
    return NULL;
}

/* A whole input in memory: mapped when it is a file, read when a pipe. */
typedef struct input {
    uint8_t *data;
    size_t len;
    bool mapped;
} input;

static int input_open(input *in, const char *path)
{
    bool from_stdin = strcmp(path, "-") == 0;
    int fd = from_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    *in = (input){ 0 };
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        in->len = (size_t)st.st_size;
        in->data = mmap(NULL, in->len, PROT_READ, MAP_PRIVATE, fd, 0);
        in->mapped = in->data != MAP_FAILED;
        if (!in->mapped)
            in->data = NULL;
    }
    if (!in->mapped)
        in->data = slurp(fd, &in->len);
    int err = errno;
    if (!from_stdin)
        close(fd);
    return in->data ? 0 : -(err ? err : ENOMEM);
}

static void input_close(input *in)
{
    if (in->mapped)
        munmap(in->data, in->len);
    else
        free(in->data);
}

static int cmd_inspect(int argc, char **argv)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { "desc", required_argument, NULL, 'd' },
        { "extract-ram", required_argument, NULL, 'x' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    inspect_opts o = { .format = INSPECT_TEXT };
    const char *desc_path = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "jd:x:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            o.format = INSPECT_JSON;
            break;
        case 'd':
            desc_path = optarg;
            break;
        case 'x':
            o.extract_dir = optarg;
            break;
        case 'h':
            puts("usage: ftvm inspect [--json] [--desc STREAM] "
                 "[--extract-ram DIR] FILE|-\n"
                 "Shows the records, RAM blocks (page counts by encoding),\n"
                 "commands, packages and decoded device fields of a\n"
                 "checkpoint stream (ftvm's or QEMU's).  '-' reads stdin.\n"
                 "  --json         one JSON document instead of tables\n"
                 "  --desc STREAM  decode devices with the VM description\n"
                 "                 of another stream of the same VM (for\n"
                 "                 replication streams, which carry none)\n"
                 "  --extract-ram DIR  write each RAM block, as the stream\n"
                 "                 leaves it, to DIR/BLOCK.bin\n"
                 "Exit status: 0 clean, 1 damaged stream, 2 usage or I/O.");
            return 0;
        default:
            return 2;
        }
    }
    if (optind != argc - 1) {
        fputs("ftvm inspect: expected one FILE (or - for stdin); "
              "see ftvm inspect --help\n", stderr);
        return 2;
    }
    const char *path = argv[optind];
    input in, desc = { 0 };
    int r = input_open(&in, path);
    if (r < 0) {
        fprintf(stderr, "ftvm inspect: %s: %s\n", path, strerror(-r));
        return 2;
    }
    if (desc_path) {
        r = input_open(&desc, desc_path);
        if (r < 0) {
            fprintf(stderr, "ftvm inspect: --desc %s: %s\n", desc_path,
                    strerror(-r));
            input_close(&in);
            return 2;
        }
        o.desc_from = desc.data;
        o.desc_from_len = desc.len;
    }
    r = inspect_show(in.data, in.len, strcmp(path, "-") == 0 ? "stdin" : path,
                     &o, stdout);
    input_close(&in);
    if (desc_path)
        input_close(&desc);
    return r;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
        strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("ftvm %s\n", FTVM_VERSION);
        return 0;
    }
    if (strcmp(cmd, "inspect") == 0)
        return cmd_inspect(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0)
        return run_main(argc - 1, argv + 1);
    if (strcmp(cmd, "restore") == 0)
        return restore_main(argc - 1, argv + 1);
    if (strcmp(cmd, "primary") == 0)
        return primary_main(argc - 1, argv + 1);
    if (strcmp(cmd, "secondary") == 0)
        return secondary_main(argc - 1, argv + 1);
    fprintf(stderr, "ftvm: unknown command '%s'; see ftvm --help\n", cmd);
    return 2;
}
