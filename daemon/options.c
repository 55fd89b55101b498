/* options: see options.h. */
#include "daemon/options.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/parse.h"
#include "vm/net.h"
#include "vm/pc.h"

/* getopt_long's codes for the groups; a command's own come after. */
enum {
    OPT_HELP = 'h',
    OPT_MEM = 'm',
    OPT_VCPUS = 0x100, OPT_NET, OPT_MAC, OPT_COMPRESS,
    OPT_CONTROL, OPT_METRICS,
    OPT_CKDIR, OPT_CKEVERY, OPT_KEEP,
    OPT_KERNEL, OPT_INITRD, OPT_CMDLINE, OPT_DISK,
    OPT_OWN = 0x200,
};

static const struct option vm_longs[] = {
    { "mem", required_argument, NULL, OPT_MEM },
    { "vcpus", required_argument, NULL, OPT_VCPUS },
    { "net", required_argument, NULL, OPT_NET },
    { "mac", required_argument, NULL, OPT_MAC },
    { "compress", required_argument, NULL, OPT_COMPRESS },
    { "disk", required_argument, NULL, OPT_DISK },
    { "kernel", required_argument, NULL, OPT_KERNEL },
    { "initrd", required_argument, NULL, OPT_INITRD },
    { "cmdline", required_argument, NULL, OPT_CMDLINE },
};
static const struct option process_longs[] = {
    { "control", required_argument, NULL, OPT_CONTROL },
    { "metrics", required_argument, NULL, OPT_METRICS },
};
static const struct option checkpoint_longs[] = {
    { "checkpoint-dir", required_argument, NULL, OPT_CKDIR },
    { "checkpoint-every", required_argument, NULL, OPT_CKEVERY },
    { "keep", required_argument, NULL, OPT_KEEP },
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char vm_help[] =
    "the VM:\n"
    "  -m, --mem SIZE       guest RAM: a multiple of 2M from 4M to 64G\n"
    "                       (default 256M)\n"
    "      --vcpus N        vCPUs (default 1; vCPU 0 runs the guest)\n"
    "      --net SPEC       network backend: tap:IFNAME or\n"
    "                       dgram:LOCAL,REMOTE (docs/network.md)\n"
    "      --mac MAC        the guest's MAC (default 02:46:54:56:4d:01)\n"
    "      --compress N     zlib level 1-9 for checkpoint pages (0 off)\n"
    "      --disk FILE[,readonly]\n"
    "                       a raw disk image (a multiple of 512 bytes):\n"
    "                       virtio-blk for a Linux guest, the block\n"
    "                       hypercalls for a guest image; checkpointed\n"
    "                       and replicated with the memory, locked while\n"
    "                       in use (docs/disk-format.md); `ftvm restore`\n"
    "                       writes the saved image into FILE\n";
static const char kernel_help[] =
    "a Linux guest (docs/linux-guests.md), instead of a guest image:\n"
    "      --kernel FILE    boot this bzImage (x86 64-bit boot protocol)\n"
    "                       on a small PC: 8250 console on ttyS0, MP\n"
    "                       table, in-kernel irqchip and PIT; with --net a\n"
    "                       virtio-net device (PCI); at most 3G\n"
    "      --initrd FILE    its initramfs\n"
    "      --cmdline STR    its command line; default:\n"
    "                       " PC_DEFAULT_CMDLINE "\n"
    "                       the guest's reboot (reboot=k) ends the VM\n"
    "                       with status 0; checkpoints (ftvmctl save,\n"
    "                       --checkpoint-dir) restore with `ftvm restore`;\n"
    "                       `ftvm primary` replicates it in checkpoint\n"
    "                       mode (the secondary takes the machine from\n"
    "                       the stream)\n";
static const char process_help[] =
    "the process:\n"
    "      --control PATH   a control socket for ftvmctl (mode 0600)\n"
    "      --metrics [ADDR:]PORT\n"
    "                       Prometheus metrics at /metrics (off unless\n"
    "                       given; PORT is 127.0.0.1, 0.0.0.0:PORT\n"
    "                       every address; docs/metrics.md)\n";
static const char checkpoint_help[] =
    "checkpoints to disk:\n"
    "      --checkpoint-dir DIR\n"
    "                       where checkpoints go (ftvmctl checkpoint)\n"
    "      --checkpoint-every TIME\n"
    "                       write one every TIME\n"
    "      --keep N         keep the newest N checkpoints (default 3)\n"
    "                       and the files their disk needs: with --disk\n"
    "                       a file holds the chunks written since the\n"
    "                       one before, N at most in a chain (the first\n"
    "                       whole), so up to 2N are kept\n";

static void print_help(const options_command *c)
{
    fputs(c->help, stdout);
    if (c->vm)
        printf("\n%s", vm_help);
    if (c->vm && c->kernel_ok)
        printf("\n%s", kernel_help);
    if (c->process)
        printf("\n%s", process_help);
    if (c->checkpoints)
        printf("\n%s", checkpoint_help);
    fputs("\n  -h, --help           this help\n\n"
          "SIZE is bytes, or a number with K, M or G; TIME is e.g. 500ms,\n"
          "2s or 1m.\n", stdout);
    switch (c->operands) {
    case OPTIONS_IMAGE_AND_ARGS:
        printf("Options may come anywhere: the first argument that is not\n"
               "an option is the %s, the others are the guest's\n"
               "arguments; after `--` everything is the guest's, even what\n"
               "begins with '-'.\n", c->operand);
        break;
    case OPTIONS_ONE_OPERAND:
        printf("Options may come before or after the %s; after `--`\n"
               "nothing is an option.\n", c->operand);
        break;
    case OPTIONS_NO_OPERANDS:
        fputs("Options may come in any order.\n", stdout);
        break;
    }
    if (c->help_end)
        printf("\n%s", c->help_end);
}

static int bad_value(const char *name, const char *arg, const char *expected)
{
    log_msg("--%s '%s': expected %s", name, arg, expected);
    return -EINVAL;
}

static int take_count(const char *name, const char *arg, long min, long max,
                      const char *what, long *out)
{
    if (parse_count(arg, min, max, out) == 0)
        return 0;
    log_msg("--%s '%s': expected %s from %ld to %ld", name, arg, what, min,
            max);
    return -EINVAL;
}

static int take_duration(const char *name, const char *arg, uint64_t *ns)
{
    if (parse_duration(arg, ns) == 0)
        return 0;
    return bad_value(name, arg, "a time from 1ms up, such as 50ms or 2s");
}

/* A group's option: 0, -EINVAL after a message, or 1 if not a group's. */
static int take_group(const options_command *c, int opt, const char *arg)
{
    long n;
    int r;
    vm_config *cfg = c->vm ? &c->vm->cfg : NULL;

    switch (opt) {
    case OPT_MEM: {
        char why[160];
        if (parse_size(arg, &cfg->mem_size) < 0)
            return bad_value("mem", arg, "a size such as 256M or 4G");
        if (vm_check_mem_size(cfg->mem_size, why, sizeof(why)) < 0) {
            log_msg("--mem '%s': %s", arg, why);
            return -EINVAL;
        }
        c->vm->mem_given = true;
        return 0;
    }
    case OPT_VCPUS:
        r = take_count("vcpus", arg, 1, VM_MAX_VCPUS, "a count", &n);
        if (r == 0)
            cfg->vcpus = (unsigned)n;
        return r;
    case OPT_NET:
        cfg->net = arg;
        return 0;
    case OPT_MAC:
        if (net_parse_mac(arg, cfg->mac) < 0)
            return bad_value("mac", arg, "six hex bytes such as "
                             "02:00:00:00:00:01");
        return 0;
    case OPT_DISK: {
        char why[256];
        if (c->vm->has_disk) {
            log_msg("--disk '%s': one disk only (--disk was given twice)",
                    arg);
            return -EINVAL;
        }
        if (disk_parse_spec(arg, &c->vm->disk, why, sizeof(why)) < 0) {
            log_msg("%s", why);
            return -EINVAL;
        }
        c->vm->has_disk = true;
        return 0;
    }
    case OPT_COMPRESS:
        r = take_count("compress", arg, 0, 9, "a zlib level", &n);
        if (r == 0)
            cfg->ram_opts.compress_level = (int)n;
        return r;
    case OPT_KERNEL:
    case OPT_INITRD:
    case OPT_CMDLINE: {
        static const char *const names[] = { "kernel", "initrd", "cmdline" };
        const char *name = names[opt - OPT_KERNEL];
        if (!c->kernel_ok) {
            log_msg("--%s: only `ftvm run` and `ftvm primary` boot a "
                    "Linux kernel (`ftvm restore` takes the machine from "
                    "its checkpoint, `ftvm secondary` from the primary's "
                    "stream)", name);
            return -EINVAL;
        }
        if (opt == OPT_KERNEL)
            c->vm->kernel = arg;
        else if (opt == OPT_INITRD)
            c->vm->initrd = arg;
        else
            c->vm->cmdline = arg;
        return 0;
    }
    case OPT_CONTROL:
        c->process->control = arg;
        return 0;
    case OPT_METRICS:
        c->process->metrics = arg;
        return 0;
    case OPT_CKDIR:
        c->checkpoints->checkpoint_dir = arg;
        return 0;
    case OPT_CKEVERY:
        return take_duration("checkpoint-every", arg,
                             &c->checkpoints->checkpoint_every_ns);
    case OPT_KEEP:
        r = take_count("keep", arg, 1, 100000, "a count", &n);
        if (r == 0)
            c->checkpoints->keep = (unsigned)n;
        return r;
    default:
        return 1;
    }
}

static int own_code(const options_own *o, size_t i)
{
    return o->letter ? o->letter : OPT_OWN + (int)i;
}

/* One of the command's own: 0, -EINVAL after a message, or 1 if unknown. */
static int take_own(const options_command *c, int opt, const char *arg)
{
    for (size_t i = 0; c->own && c->own[i].name; i++) {
        const options_own *o = &c->own[i];
        if (own_code(o, i) != opt)
            continue;
        switch (o->kind) {
        case OPTIONS_FLAG:
            *(bool *)o->value = true;
            return 0;
        case OPTIONS_STRING:
            *(const char **)o->value = arg;
            return 0;
        case OPTIONS_DURATION:
            return take_duration(o->name, arg, o->value);
        }
    }
    return 1;
}

static void add_longs(struct option *longs, size_t *n,
                      const struct option *add, size_t count)
{
    memcpy(longs + *n, add, count * sizeof(*add));
    *n += count;
}

/* The getopt_long tables of c: 0 or -ENOMEM.  Free *longs. */
static int tables(const options_command *c, struct option **longs,
                  char *shorts, size_t shortlen)
{
    size_t nown = 0;
    while (c->own && c->own[nown].name)
        nown++;
    size_t cap = COUNT(vm_longs) + COUNT(process_longs) +
                 COUNT(checkpoint_longs) + nown + 2;
    struct option *l = calloc(cap, sizeof(*l));
    if (!l)
        return -ENOMEM;
    size_t n = 0;
    /* '-': operands come back in order, as option 1. */
    snprintf(shorts, shortlen, "-h%s", c->vm ? "m:" : "");
    if (c->vm)
        add_longs(l, &n, vm_longs, COUNT(vm_longs));
    if (c->process)
        add_longs(l, &n, process_longs, COUNT(process_longs));
    if (c->checkpoints)
        add_longs(l, &n, checkpoint_longs, COUNT(checkpoint_longs));
    for (size_t i = 0; i < nown; i++) {
        const options_own *o = &c->own[i];
        bool value = o->kind != OPTIONS_FLAG;
        l[n++] = (struct option){ o->name, value ? required_argument
                                                 : no_argument, NULL,
                                  own_code(o, i) };
        if (o->letter) {
            size_t len = strlen(shorts);
            snprintf(shorts + len, shortlen - len, "%c%s", o->letter,
                     value ? ":" : "");
        }
    }
    l[n++] = (struct option){ "help", no_argument, NULL, OPT_HELP };
    *longs = l;
    return 0;
}

/* The guest's command line: no argument may be empty or hold white space. */
static char *join_args(int argc, char **argv)
{
    size_t len = 1;

    for (int i = 0; i < argc; i++) {
        if (argv[i][strcspn(argv[i], " \t\n")] != '\0' || !argv[i][0]) {
            log_msg("guest argument '%s' is empty or holds white space, "
                    "which the guest would split", argv[i]);
            return NULL;
        }
        len += strlen(argv[i]) + 1;
    }
    char *line = calloc(1, len);
    if (!line)
        log_msg("out of memory");
    for (int i = 0; line && i < argc; i++) {
        if (i)
            strcat(line, " ");
        strcat(line, argv[i]);
    }
    return line;
}

static int check_operands(const options_command *c, int n, char **operands,
                          options_found *found)
{
    const char *who = log_who();

    switch (c->operands) {
    case OPTIONS_NO_OPERANDS:
        if (n > 0) {
            log_msg("unexpected argument '%s'; see %s --help", operands[0],
                    who);
            return -EINVAL;
        }
        return 0;
    case OPTIONS_ONE_OPERAND:
        if (n != 1) {
            if (n == 0)
                log_msg("expected one %s, none given; see %s --help",
                        c->operand, who);
            else
                log_msg("expected one %s; '%s' is extra", c->operand,
                        operands[1]);
            return -EINVAL;
        }
        found->operand = operands[0];
        return 0;
    case OPTIONS_IMAGE_AND_ARGS:
        if (n == 0) {
            log_msg("no %s given; see %s --help", c->operand, who);
            return -EINVAL;
        }
        found->operand = operands[0];
        found->guest_args = join_args(n - 1, operands + 1);
        return found->guest_args ? 0 : -EINVAL;
    }
    return -EINVAL;
}

/* --kernel and what goes with it: a machine of its own, no image. */
static int check_kernel(const options_command *c, int n, char **operands)
{
    options_vm *o = c->vm;

    if (!o->kernel) {
        if (o->initrd || o->cmdline) {
            log_msg("--%s needs --kernel", o->initrd ? "initrd" : "cmdline");
            return -EINVAL;
        }
        return 0;
    }
    if (n > 0) {
        log_msg("--kernel boots a Linux kernel: no %s as well ('%s')",
                c->operand, operands[0]);
        return -EINVAL;
    }
    o->cfg.machine = VM_MACHINE_PC;
    return 0;
}

static void set_defaults(const options_command *c)
{
    if (c->vm) {
        vm_config_init(&c->vm->cfg);
        c->vm->mem_given = false;
        c->vm->kernel = c->vm->initrd = c->vm->cmdline = NULL;
    }
    if (c->process) {
        c->process->control = NULL;
        c->process->metrics = NULL;
    }
    if (c->checkpoints) {
        c->checkpoints->checkpoint_dir = NULL;
        c->checkpoints->checkpoint_every_ns = 0;
        c->checkpoints->keep = 3;
    }
}

int options_parse(const options_command *c, int argc, char **argv,
                  options_found *found)
{
    struct option *longs;
    char shorts[64];
    int n = 0, opt, r;

    *found = (options_found){ 0 };
    set_defaults(c);
    char **operands = calloc((size_t)argc + 1, sizeof(*operands));
    if (!operands || tables(c, &longs, shorts, sizeof(shorts)) < 0) {
        free(operands);
        log_msg("out of memory");
        return -ENOMEM;
    }
    optind = 0;     /* a fresh scan, whoever parsed before */
    opterr = 0;
    r = 0;
    while (r == 0 && (opt = getopt_long(argc, argv, shorts, longs, NULL)) !=
                         -1) {
        if (opt == 1) {
            operands[n++] = optarg;
        } else if (opt == OPT_HELP) {
            print_help(c);
            found->help = true;
            goto out;
        } else if ((r = take_group(c, opt, optarg)) == 1 &&
                   (r = take_own(c, opt, optarg)) == 1) {
            log_msg("unknown option, or one without its value: '%s'; see "
                    "%s --help", argv[optind - 1], log_who());
            r = -EINVAL;
        }
    }
    /* After "--": operands, whatever they look like. */
    while (r == 0 && optind < argc)
        operands[n++] = argv[optind++];
    if (r == 0 && c->checkpoints && c->checkpoints->checkpoint_every_ns &&
        !c->checkpoints->checkpoint_dir) {
        log_msg("--checkpoint-every needs --checkpoint-dir");
        r = -EINVAL;
    }
    if (r == 0 && c->vm)
        r = check_kernel(c, n, operands);
    if (r == 0 && !(c->vm && c->vm->kernel))
        r = check_operands(c, n, operands, found);
out:
    free(longs);
    free(operands);
    return r;
}
