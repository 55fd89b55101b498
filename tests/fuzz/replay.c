/*
 * Runs a fuzz target over files without libFuzzer, so the ordinary and
 * sanitizer test builds replay the seeds (and any crash input someone
 * adds) on every run, each file whole and cut short.
 *
 *     fuzz_replay_TARGET [--seeds DIR] [DIR|FILE]...
 *
 * --seeds DIR: each whole file in DIR must be accepted by the target (a
 * stream that loads, a package that is applied...), not merely survive
 * it: a seed the product's format has left behind fails the test.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzzcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool seeds;

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *nb = realloc(buf, cap);
            if (!nb)
                break;
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    fuzzcheck_seeds = seeds;
    if (seeds)
        fprintf(stderr, "seed %s\n", path);
    LLVMFuzzerTestOneInput(buf, n);
    fuzzcheck_seeds = false;
    /* Every prefix too: truncation is the commonest damage. */
    for (size_t cut = 0; cut < n; cut += 1 + cut / 64)
        LLVMFuzzerTestOneInput(buf, cut);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int files = 0;
    for (int i = 1; i < argc; i++) {
        seeds = strcmp(argv[i], "--seeds") == 0 && i + 1 < argc;
        if (seeds)
            i++;
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            perror(argv[i]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            files += run_file(argv[i]) == 0;
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
            files += run_file(path) == 0;
        }
        if (d)
            closedir(d);
    }
    printf("replayed %d inputs\n", files);
    return files > 0 ? 0 : 1;
}
