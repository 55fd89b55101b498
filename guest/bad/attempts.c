/*
 * The driver shared by the bad_* guests.
 */
#include "attempts.h"

uint64_t ram_end(void)
{
    return ftvm_boot.mem_size;
}

uint32_t addr32(uint64_t addr)
{
    return addr > UINT32_MAX ? UINT32_MAX : (uint32_t)addr;
}

static void print_ret(const char *prog, const char *name, int64_t ret)
{
    if (ret == ATTEMPT_UNTOUCHED)
        printf("%s attempt=%s ret=untouched\n", prog, name);
    else
        printf("%s attempt=%s ret=%ld (%s)\n", prog, name, (long)ret,
               ftvm_strerror(ret));
}

int attempts_run(int argc, char **argv, const struct attempt *list, size_t n)
{
    static const char *const known[] = { "attempt", NULL };
    const char *only = ftvm_arg(argc, argv, "attempt");
    bool matched = false;

    if (ftvm_args_check(argc, argv, known) != 0)
        return 2;
    for (size_t i = 0; i < n; i++) {
        const struct attempt *a = &list[i];

        if (only != NULL && strcmp(only, a->name) != 0)
            continue;
        matched = true;
        printf("%s attempt=%s%s\n", argv[0], a->name,
               a->fatal ? " expect=stop" : "");
        int64_t ret = a->run();
        print_ret(argv[0], a->name, ret);
        if (a->fatal) {
            printf("%s attempt=%s survived\n", argv[0], a->name);
            return 3;
        }
    }
    if (!matched) {
        printf("%s: no attempt named '%s'; there are:", argv[0], only);
        for (size_t i = 0; i < n; i++)
            printf(" %s", list[i].name);
        printf("\n");
        return 2;
    }
    printf("%s done\n", argv[0]);
    return 0;
}
