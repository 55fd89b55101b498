#include "diskimg.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[4096];

int diskimg_setup(void)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(dir, sizeof(dir), "%s/ftvm-disk-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

void diskimg_cleanup(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[8192];

    if (!d)
        return;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

const char *diskimg_dir(void)
{
    return dir;
}

void diskimg_fill(void *buf, size_t len, uint32_t seed)
{
    uint64_t s = 0x9e3779b97f4a7c15ULL ^ seed;
    uint8_t *p = buf;

    for (size_t i = 0; i < len; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[i] = (uint8_t)(s >> 24);
    }
}

const char *diskimg_make(const char *name, uint64_t size, uint32_t seed)
{
    static char paths[4][8192];
    static int next;
    char *path = paths[next++ % 4];
    int fd;

    snprintf(path, sizeof(paths[0]), "%s/%s", dir, name);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
        abort();
    if (seed) {
        uint8_t *buf = malloc(size);

        if (!buf)
            abort();
        diskimg_fill(buf, size, seed);
        if (pwrite(fd, buf, size, 0) != (ssize_t)size)
            abort();
        free(buf);
    }
    close(fd);
    return path;
}

uint8_t *diskimg_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;

    if (!f || fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0)
        abort();
    rewind(f);
    buf = malloc(n ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
        abort();
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int diskimg_group_setup(void **state)
{
    (void)state;
    return diskimg_setup();
}

int diskimg_group_teardown(void **state)
{
    (void)state;
    diskimg_cleanup();
    return 0;
}
