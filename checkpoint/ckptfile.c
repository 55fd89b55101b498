/* ckptfile: see ckptfile.h. */
#include "checkpoint/ckptfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREFIX "ckpt-"
#define TMP_PREFIX ".ckpt-"
#define TMP_SUFFIX ".tmp"

struct ckptfile_txn {
    int dirfd;
    char dir[PATH_MAX];
    char tmp[NAME_MAX + 1];     /* in dir */
    char name[NAME_MAX + 1];    /* the final name, in dir */
    char final[PATH_MAX];       /* dir/name, for messages and callers */
    int fd;
    qfile *f;
    uint64_t seq;
};

/* The sequence number of "ckpt-NNNNNNNN.ftvm", or -1 for any other name. */
static long long seq_of(const char *name)
{
    size_t n = strlen(name), pl = strlen(PREFIX), sl = strlen(CKPTFILE_SUFFIX);
    if (n <= pl + sl || strncmp(name, PREFIX, pl) != 0 ||
        strcmp(name + n - sl, CKPTFILE_SUFFIX) != 0)
        return -1;
    long long v = 0;
    for (size_t i = pl; i < n - sl; i++) {
        if (name[i] < '0' || name[i] > '9' || v > LLONG_MAX / 10 - 10)
            return -1;
        v = v * 10 + (name[i] - '0');
    }
    return v;
}

static bool is_stale_tmp(const char *name)
{
    size_t n = strlen(name), pl = strlen(TMP_PREFIX), sl = strlen(TMP_SUFFIX);
    return n > pl + sl && strncmp(name, TMP_PREFIX, pl) == 0 &&
           strcmp(name + n - sl, TMP_SUFFIX) == 0;
}

/*
 * Only regular files of this process's user are its checkpoints: in a
 * directory others can write, a symlink or someone else's file under a
 * checkpoint's name is neither counted, nor pruned, nor the latest.
 */
static bool ours(DIR *d, const char *name)
{
    struct stat st;
    return fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
           S_ISREG(st.st_mode) && st.st_uid == geteuid();
}

/* Sorted sequence numbers of the checkpoints in dir (caller frees). */
static int list_seqs(const char *dir, long long **out, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    long long *v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s = seq_of(e->d_name);
        if (s < 0 || !ours(d, e->d_name))
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            long long *nv = realloc(v, cap * sizeof(*v));
            if (!nv) {
                free(v);
                closedir(d);
                return -ENOMEM;
            }
            v = nv;
        }
        v[cnt++] = s;
    }
    closedir(d);
    for (size_t i = 1; i < cnt; i++)    /* few files: insertion sort */
        for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
            long long t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    *out = v;
    *n = cnt;
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

static int open_txn(ckptfile_txn **out, const char *dir, const char *name,
                    char *err, size_t errlen);

int ckptfile_begin(ckptfile_txn **out, const char *dir, char *err,
                   size_t errlen)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, errlen, "checkpoint directory %s: %s", dir,
                 strerror(e));
        return -e;
    }
    long long *seqs;
    size_t n;
    int r = list_seqs(dir, &seqs, &n);
    if (r < 0) {
        snprintf(err, errlen, "checkpoint directory %s: %s", dir,
                 strerror(-r));
        return r;
    }
    long long next = n ? seqs[n - 1] + 1 : 1;
    free(seqs);

    char name[NAME_MAX + 1];
    snprintf(name, sizeof(name), PREFIX "%08lld" CKPTFILE_SUFFIX, next);
    r = open_txn(out, dir, name, err, errlen);
    if (r == 0)
        (*out)->seq = (uint64_t)next;
    return r;
}

int ckptfile_begin_file(ckptfile_txn **out, const char *path, char *err,
                        size_t errlen)
{
    char dir[PATH_MAX];
    if ((size_t)snprintf(dir, sizeof(dir), "%s", path) >= sizeof(dir)) {
        snprintf(err, errlen, "%s: path too long", path);
        return -ENAMETOOLONG;
    }
    char *slash = strrchr(dir, '/');
    const char *name = slash ? path + (slash - dir) + 1 : path;
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
        strlen(name) > NAME_MAX) {
        snprintf(err, errlen, "%s: not a file name", path);
        return -EINVAL;
    }
    return open_txn(out, dir, name, err, errlen);
}

/*
 * A name nobody can have prepared: a symlink planted under a name known in
 * advance would otherwise make the process write guest RAM wherever it
 * points, with the process's rights.  O_EXCL|O_NOFOLLOW refuse anything
 * already there, link or not.
 */
static int create_tmp(ckptfile_txn *t)
{
    for (int tries = 0; tries < 16; tries++) {
        uint64_t rnd;
        if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            return -errno;
        snprintf(t->tmp, sizeof(t->tmp), TMP_PREFIX "%016" PRIx64 TMP_SUFFIX,
                 rnd);
        t->fd = openat(t->dirfd, t->tmp,
                       O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                       0600);
        if (t->fd >= 0)
            return 0;
        if (errno != EEXIST)
            return -errno;
    }
    return -EEXIST;
}

static int open_txn(ckptfile_txn **out, const char *dir, const char *name,
                    char *err, size_t errlen)
{
    ckptfile_txn *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    t->fd = -1;
    /*
     * The file is made through dirfd, but its path is what callers get
     * (to restore it, to log it): one that would not fit in PATH_MAX is
     * refused before anything is created, not cut short.
     */
    if ((size_t)snprintf(t->dir, sizeof(t->dir), "%s", dir) >=
            sizeof(t->dir) ||
        (size_t)snprintf(t->name, sizeof(t->name), "%s", name) >=
            sizeof(t->name) ||
        (size_t)snprintf(t->final, sizeof(t->final), "%s%s%s", dir,
                         strcmp(dir, "/") == 0 ? "" : "/", name) >=
            sizeof(t->final)) {
        snprintf(err, errlen, "checkpoint directory %s: the path of %s in "
                 "it would be longer than %d bytes", dir, name, PATH_MAX - 1);
        free(t);
        return -ENAMETOOLONG;
    }
    t->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = t->dirfd < 0 ? -errno : create_tmp(t);
    if (r < 0) {
        snprintf(err, errlen, "%s: %s", t->dirfd < 0 ? dir : t->final,
                 strerror(-r));
        if (t->dirfd >= 0)
            close(t->dirfd);
        free(t);
        return r;
    }
    t->f = qfile_open_fd(t->fd, QFILE_WRITE, t->final);
    if (!t->f) {
        snprintf(err, errlen, "out of memory");
        ckptfile_abort(t);
        return -ENOMEM;
    }
    *out = t;
    return 0;
}

qfile *ckptfile_stream(ckptfile_txn *t)
{
    return t->f;
}
uint64_t ckptfile_seq(const ckptfile_txn *t)
{
    return t->seq;
}
const char *ckptfile_path(const ckptfile_txn *t)
{
    return t->final;
}

void ckptfile_abort(ckptfile_txn *t)
{
    if (!t)
        return;
    qfile_close(t->f);
    if (t->fd >= 0)
        close(t->fd);
    unlinkat(t->dirfd, t->tmp, 0);
    close(t->dirfd);
    free(t);
}

int ckptfile_commit(ckptfile_txn *t, char *err, size_t errlen)
{
    int r = qfile_flush(t->f);
    if (r < 0) {
        snprintf(err, errlen, "%s", qfile_errmsg(t->f));
    } else if (fsync(t->fd) < 0) {
        r = -errno;
        snprintf(err, errlen, "%s: fsync: %s", t->final, strerror(-r));
    }
    if (r == 0) {
        qfile_close(t->f);
        t->f = NULL;
        r = close(t->fd) < 0 ? -errno : 0;
        t->fd = -1;
        if (r < 0)
            snprintf(err, errlen, "%s: close: %s", t->final, strerror(-r));
    }
    /*
     * rename replaces whatever has the final name, a symlink included: the
     * link is replaced, never followed, so its target is left alone.
     */
    if (r == 0 && renameat(t->dirfd, t->tmp, t->dirfd, t->name) < 0) {
        r = -errno;
        snprintf(err, errlen, "%s: rename into place: %s", t->final,
                 strerror(-r));
    }
    if (r < 0) {
        ckptfile_abort(t);
        return r;
    }
    r = fsync(t->dirfd) < 0 ? -errno : 0;
    if (r < 0)
        snprintf(err, errlen, "%s: fsync: %s", t->dir, strerror(-r));
    close(t->dirfd);
    free(t);
    return r;
}

int ckptfile_prune(const char *dir, unsigned keep)
{
    return ckptfile_prune_chains(dir, keep, NULL, NULL);
}

/*
 * Marks in kept[] the files the kept ones depend on, newest first.  0,
 * or base_of's error: then what a kept file needs is not known.
 */
static int keep_bases(const char *dir, const long long *seqs, size_t n,
                      bool *kept, ckptfile_base_fn base_of, void *opaque)
{
    char path[PATH_MAX], base[NAME_MAX + 1];
    for (size_t i = n; i-- > 0;) {
        if (!kept[i])
            continue;
        snprintf(path, sizeof(path), "%s/" PREFIX "%08lld" CKPTFILE_SUFFIX,
                 dir, seqs[i]);
        int r = base_of(opaque, path, base, sizeof(base));
        if (r < 0)
            return r;
        if (r != 1)
            continue;
        long long s = seq_of(base);
        /* Bases are older: going newest first reaches each in turn. */
        for (size_t k = 0; s >= 0 && k < i; k++)
            if (seqs[k] == s)
                kept[k] = true;
    }
    return 0;
}

int ckptfile_prune_chains(const char *dir, unsigned keep,
                          ckptfile_base_fn base_of, void *opaque)
{
    if (keep < 1)
        keep = 1;
    long long *seqs;
    size_t n;
    int r = list_seqs(dir, &seqs, &n);
    if (r < 0)
        return r;
    bool *kept = calloc(n ? n : 1, sizeof(*kept));
    if (!kept) {
        free(seqs);
        return -ENOMEM;
    }
    for (size_t i = n > keep ? n - keep : 0; i < n; i++)
        kept[i] = true;
    /* Unsure what a kept file needs: no checkpoint goes this time. */
    int kr = base_of ? keep_bases(dir, seqs, n, kept, base_of, opaque) : 0;
    int removed = 0;
    char path[PATH_MAX];
    for (size_t i = 0; kr == 0 && i < n; i++) {
        if (kept[i])
            continue;
        snprintf(path, sizeof(path), "%s/" PREFIX "%08lld" CKPTFILE_SUFFIX,
                 dir, seqs[i]);
        if (unlink(path) == 0)
            removed++;
    }
    free(kept);
    free(seqs);

    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!is_stale_tmp(e->d_name) || !ours(d, e->d_name))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (unlink(path) == 0)
            removed++;
    }
    if (d)
        closedir(d);
    if (removed)
        fsync_dir(dir);
    return kr < 0 ? kr : removed;
}

int ckptfile_latest(const char *dir, char *out, size_t outlen)
{
    long long *seqs;
    size_t n;
    int r = list_seqs(dir, &seqs, &n);
    if (r < 0)
        return r;
    if (n == 0) {
        free(seqs);
        return -ENOENT;
    }
    snprintf(out, outlen, "%s/" PREFIX "%08lld" CKPTFILE_SUFFIX, dir,
             seqs[n - 1]);
    free(seqs);
    return 0;
}
