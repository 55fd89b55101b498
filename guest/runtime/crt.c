/*
 * From the boot info to main(argc, argv), and the page allocator.
 *
 * The boot info and the command line are copied into .bss first: the
 * monitor may have put them anywhere in RAM, including memory the program
 * later takes from ftvm_alloc_pages.
 */
#include "ftvm.h"

#ifndef FTVM_PROG_NAME
#error "FTVM_PROG_NAME must name the program (the build passes -D)"
#endif

#define CMDLINE_MAX 4096
#define ARGS_MAX 64
#define STACK_RESERVE (256u * 1024)

struct ftvm_boot_info ftvm_boot;

static char prog_name[] = FTVM_PROG_NAME;
static char cmdline[CMDLINE_MAX];
static char *args[ARGS_MAX + 1];
static uint64_t heap_next, heap_limit;

extern char _end[];

int main(int argc, char **argv);
FTVM_NORETURN void ftvm_crt_start(const struct ftvm_boot_info *boot,
                                  uint64_t stack_top);

static uint64_t page_up(uint64_t x)
{
    return (x + FTVM_PAGE_SIZE - 1) & ~(uint64_t)(FTVM_PAGE_SIZE - 1);
}

static int split_cmdline(void)
{
    int argc = 0;
    char *p = cmdline;

    args[argc++] = prog_name;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            *p++ = '\0';
        if (*p == '\0')
            break;
        if (argc == ARGS_MAX) {
            printf("%s: more than %d arguments, rest ignored\n",
                   FTVM_PROG_NAME, ARGS_MAX - 1);
            break;
        }
        args[argc++] = p;
        while (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\n')
            p++;
    }
    args[argc] = NULL;
    return argc;
}

void ftvm_crt_start(const struct ftvm_boot_info *boot, uint64_t stack_top)
{
    ftvm_boot = *boot;
    if (ftvm_boot.cmdline != 0) {
        const char *src = (const char *)(uintptr_t)ftvm_boot.cmdline;
        size_t n = strnlen(src, CMDLINE_MAX);

        if (n == CMDLINE_MAX) {
            n = CMDLINE_MAX - 1;
            printf("%s: command line truncated to %d bytes\n",
                   FTVM_PROG_NAME, CMDLINE_MAX - 1);
        }
        memcpy(cmdline, src, n);
    }

    heap_next = page_up((uint64_t)(uintptr_t)_end);
    if (ftvm_boot.image_end > heap_next)
        heap_next = page_up(ftvm_boot.image_end);
    heap_limit = stack_top > STACK_RESERVE ?
        (stack_top - STACK_RESERVE) & ~(uint64_t)(FTVM_PAGE_SIZE - 1) : 0;
    if (heap_limit < heap_next)
        heap_limit = heap_next;

    if (ftvm_boot.abi_version != FTVM_HC_ABI_VERSION) {
        printf("%s: monitor speaks hypercall ABI %lu, this image %d\n",
               FTVM_PROG_NAME, (unsigned long)ftvm_boot.abi_version,
               FTVM_HC_ABI_VERSION);
        ftvm_exit(127);
    }

    int argc = split_cmdline();
    ftvm_exit(main(argc, args));
}

void ftvm_exit(int status)
{
    ftvm_console_flush();
    ftvm_halt((uint64_t)(unsigned)status);
}

void *ftvm_alloc_pages(uint64_t bytes)
{
    uint64_t size = page_up(bytes);

    if (size < bytes || size > heap_limit - heap_next)
        return NULL;
    void *p = (void *)(uintptr_t)heap_next;
    heap_next += size;
    memset(p, 0, size);
    return p;
}

uint64_t ftvm_heap_available(void)
{
    return heap_limit - heap_next;
}
