/* Unit tests for checkpoint/ckptfile: atomic writes, naming, pruning. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/ckptfile.h"
#include "skips.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/ftvm-ckf-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Entries of d but . and .. (d may be as long as PATH_MAX allows). */
static int count_files(const char *d)
{
    DIR *dp = opendir(d);
    if (!dp)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(dp);
    return n;
}

static void write_one(const char *d, const char *content, char *path_out)
{
    ckptfile_txn *t;
    char err[256];
    assert_int_equal(ckptfile_begin(&t, d, err, sizeof(err)), 0);
    qfile_put_buf(ckptfile_stream(t), content, strlen(content));
    if (path_out)
        strcpy(path_out, ckptfile_path(t));
    assert_int_equal(ckptfile_commit(t, err, sizeof(err)), 0);
}

static void test_sequence_and_latest(void **state)
{
    (void)state;
    char latest[512], p1[512], p2[512];
    assert_int_equal(ckptfile_latest(dir, latest, sizeof(latest)), -ENOENT);
    write_one(dir, "one", p1);
    write_one(dir, "two", p2);
    assert_non_null(strstr(p1, "/ckpt-00000001.ftvm"));
    assert_non_null(strstr(p2, "/ckpt-00000002.ftvm"));
    assert_int_equal(ckptfile_latest(dir, latest, sizeof(latest)), 0);
    assert_string_equal(latest, p2);
    FILE *f = fopen(p2, "r");
    char buf[8] = { 0 };
    assert_int_equal(fread(buf, 1, 7, f), 3);
    fclose(f);
    assert_string_equal(buf, "two");
    struct stat st;
    assert_int_equal(stat(p1, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(count_files(dir), 2);
}

static void test_abort_leaves_nothing(void **state)
{
    (void)state;
    ckptfile_txn *t;
    char err[256];
    assert_int_equal(ckptfile_begin(&t, dir, err, sizeof(err)), 0);
    qfile_put_buf(ckptfile_stream(t), "partial", 7);
    assert_int_equal(count_files(dir), 1);     /* only the temporary */
    ckptfile_abort(t);
    assert_int_equal(count_files(dir), 0);
}

static void test_prune_keeps_newest(void **state)
{
    (void)state;
    for (int i = 0; i < 5; i++)
        write_one(dir, "x", NULL);
    /* A temporary left by a crash is cleaned up too. */
    char stale[512];
    snprintf(stale, sizeof(stale), "%s/.ckpt-00000009.ftvm.tmp", dir);
    fclose(fopen(stale, "w"));
    char other[512];
    snprintf(other, sizeof(other), "%s/notes.txt", dir);
    fclose(fopen(other, "w"));
    assert_int_equal(ckptfile_prune(dir, 3), 3);
    assert_int_equal(count_files(dir), 4);     /* 3 checkpoints + notes */
    char latest[512];
    assert_int_equal(ckptfile_latest(dir, latest, sizeof(latest)), 0);
    assert_non_null(strstr(latest, "ckpt-00000005"));
    char oldest[512];
    snprintf(oldest, sizeof(oldest), "%s/ckpt-00000003.ftvm", dir);
    assert_int_equal(access(oldest, F_OK), 0);
    snprintf(oldest, sizeof(oldest), "%s/ckpt-00000002.ftvm", dir);
    assert_int_equal(access(oldest, F_OK), -1);
    /* Numbering goes on from the highest left. */
    char p[512];
    write_one(dir, "y", p);
    assert_non_null(strstr(p, "ckpt-00000006"));
}

/* The test's chains: a file "base=NAME" is a delta on NAME. */
static int base_in_content(void *opaque, const char *path, char *base,
                           size_t len)
{
    (*(int *)opaque)++;
    char buf[256] = "";
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (strncmp(buf, "unreadable", 10) == 0)
        return -EIO;
    if (strncmp(buf, "base=", 5) != 0)
        return 0;
    snprintf(base, len, "%s", buf + 5);
    return 1;
}

static bool present(unsigned seq)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/ckpt-%08u.ftvm", dir, seq);
    return access(p, F_OK) == 0;
}

static void test_prune_chains(void **state)
{
    (void)state;
    /* 1 whole, 2 on 1, 3 on 2, 4 whole, 5 on 4, 6 whole, 7 on 6. */
    static const char *const files[] = {
        "whole", "base=ckpt-00000001.ftvm", "base=ckpt-00000002.ftvm",
        "whole", "base=ckpt-00000004.ftvm", "whole",
        "base=ckpt-00000006.ftvm",
    };
    for (unsigned i = 0; i < 7; i++)
        write_one(dir, files[i], NULL);
    int asked = 0;
    /* Newest 3: 5, 6, 7; 5 needs 4. */
    assert_int_equal(ckptfile_prune_chains(dir, 3, base_in_content, &asked),
                     3);
    assert_true(asked >= 3);
    for (unsigned s = 1; s <= 7; s++)
        assert_int_equal(present(s), s >= 4);
    /* Newest 1: 7, which needs 6. */
    assert_int_equal(ckptfile_prune_chains(dir, 1, base_in_content, &asked),
                     2);
    for (unsigned s = 1; s <= 7; s++)
        assert_int_equal(present(s), s >= 6);
    /* A base that is no checkpoint of the directory keeps nothing. */
    write_one(dir, "base=../ckpt-00000006.ftvm", NULL);   /* 8 */
    write_one(dir, "base=ckpt-00000007.ftvm", NULL);      /* 9 */
    write_one(dir, "base=notes.txt", NULL);               /* 10 */
    assert_int_equal(ckptfile_prune_chains(dir, 2, base_in_content, &asked),
                     1);
    for (unsigned s = 6; s <= 10; s++)
        assert_int_equal(present(s), s != 8);
    /* Without a callback, as ckptfile_prune: the newest only. */
    assert_int_equal(ckptfile_prune_chains(dir, 1, NULL, NULL), 3);
    assert_true(present(10) && !present(9));
    /* A kept file it cannot read: nothing goes but a stale temporary. */
    write_one(dir, "whole", NULL);                        /* 11 */
    write_one(dir, "unreadable", NULL);                   /* 12 */
    char stale[512];
    snprintf(stale, sizeof(stale), "%s/.ckpt-0123456789abcdef.tmp", dir);
    fclose(fopen(stale, "w"));
    assert_int_equal(ckptfile_prune_chains(dir, 1, base_in_content, &asked),
                     -EIO);
    assert_true(present(10) && present(11) && present(12));
    assert_int_equal(access(stale, F_OK), -1);
}

static void test_single_file(void **state)
{
    (void)state;
    char path[512], err[512];
    snprintf(path, sizeof(path), "%s/vm.ftvm", dir);
    for (int round = 0; round < 2; round++) {
        ckptfile_txn *t;
        assert_int_equal(ckptfile_begin_file(&t, path, err, sizeof(err)), 0);
        assert_string_equal(ckptfile_path(t), path);
        qfile_put_buf(ckptfile_stream(t), round ? "new" : "old", 3);
        /* Until commit the old file (or none) is what is there. */
        assert_int_equal(access(path, F_OK), round ? 0 : -1);
        assert_int_equal(ckptfile_commit(t, err, sizeof(err)), 0);
    }
    FILE *f = fopen(path, "r");
    char buf[4] = { 0 };
    assert_int_equal(fread(buf, 1, 3, f), 3);
    fclose(f);
    assert_string_equal(buf, "new");
    assert_int_equal(count_files(dir), 1);
    ckptfile_txn *t;
    snprintf(path, sizeof(path), "%s/missing/vm.ftvm", dir);
    assert_int_equal(ckptfile_begin_file(&t, path, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/missing"));
}

/* The victim a planted symlink points at: outside the writable dir. */
static void make_victim(char *path, size_t len)
{
    snprintf(path, len, "%s.victim", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("precious", f);
    fclose(f);
}

static void check_victim(const char *path)
{
    char buf[16] = { 0 };
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, sizeof(buf) - 1, f), 8);
    fclose(f);
    assert_string_equal(buf, "precious");
    unlink(path);
}

static void plant(const char *victim, const char *name)
{
    char link[512];
    snprintf(link, sizeof(link), "%s/%s", dir, name);
    assert_int_equal(symlink(victim, link), 0);
}

static void assert_regular(const char *path, const char *content)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    char buf[16] = { 0 };
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, sizeof(buf) - 1, f), strlen(content));
    fclose(f);
    assert_string_equal(buf, content);
}

/*
 * Symlinks planted at every name a writer could know in advance (the
 * final names and the temporary names earlier versions used) are never
 * written through: the target keeps its bytes, the links are replaced.
 */
static void test_planted_symlinks(void **state)
{
    (void)state;
    char victim[512], path[512], err[512];
    make_victim(victim, sizeof(victim));
    plant(victim, "ckpt-00000001.ftvm");
    plant(victim, ".ckpt-00000001.ftvm.tmp");
    plant(victim, ".ckpt-00000002.ftvm.tmp");
    plant(victim, "vm.ftvm");
    plant(victim, "vm.ftvm.tmp");

    char p1[512], latest[512];
    /* A link is not a checkpoint: not the latest, not counted. */
    assert_int_equal(ckptfile_latest(dir, latest, sizeof(latest)), -ENOENT);
    write_one(dir, "guest", p1);
    /* Number 1, in place of the link (replaced, not followed). */
    assert_non_null(strstr(p1, "/ckpt-00000001.ftvm"));
    assert_regular(p1, "guest");
    /* Stale temporaries that are links are left to their owner. */
    assert_int_equal(ckptfile_prune(dir, 1), 0);

    ckptfile_txn *t;
    snprintf(path, sizeof(path), "%s/vm.ftvm", dir);
    assert_int_equal(ckptfile_begin_file(&t, path, err, sizeof(err)), 0);
    qfile_put_buf(ckptfile_stream(t), "ram", 3);
    assert_int_equal(ckptfile_commit(t, err, sizeof(err)), 0);
    assert_regular(path, "ram");
    check_victim(victim);
}

/* Two writers of one file at once use two fresh temporaries. */
static void test_random_temporaries(void **state)
{
    (void)state;
    char path[512], err[512];
    snprintf(path, sizeof(path), "%s/vm.ftvm", dir);
    ckptfile_txn *a, *b;
    assert_int_equal(ckptfile_begin_file(&a, path, err, sizeof(err)), 0);
    assert_int_equal(ckptfile_begin_file(&b, path, err, sizeof(err)), 0);
    assert_int_equal(count_files(dir), 2);
    qfile_put_buf(ckptfile_stream(a), "aaa", 3);
    qfile_put_buf(ckptfile_stream(b), "bbb", 3);
    assert_int_equal(ckptfile_commit(a, err, sizeof(err)), 0);
    assert_int_equal(ckptfile_commit(b, err, sizeof(err)), 0);
    assert_regular(path, "bbb");
    assert_int_equal(count_files(dir), 1);
    /* A failed rename (a directory holds the name) leaves no temporary. */
    snprintf(path, sizeof(path), "%s/sub", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    char inner[600];
    snprintf(inner, sizeof(inner), "%s/x", path);
    fclose(fopen(inner, "w"));
    assert_int_equal(ckptfile_begin_file(&a, path, err, sizeof(err)), 0);
    assert_true(ckptfile_commit(a, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "/sub: rename into place"));
    assert_int_equal(count_files(dir), 2);
}

static void test_bad_directory(void **state)
{
    (void)state;
    char file[512];
    snprintf(file, sizeof(file), "%s/plainfile", dir);
    fclose(fopen(file, "w"));
    ckptfile_txn *t;
    char err[512];
    assert_int_equal(ckptfile_begin(&t, file, err, sizeof(err)), -ENOTDIR);
    assert_non_null(strstr(err, "plainfile"));
    char deep[512];
    snprintf(deep, sizeof(deep), "%s/no/such/dir", dir);
    assert_int_equal(ckptfile_begin(&t, deep, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "no/such/dir"));
}

/*
 * A directory whose path fits in PATH_MAX but whose checkpoint's would
 * not: refused with a message before anything is created, rather than a
 * file whose path (ckptfile_path, for restoring and logging) is cut short.
 */
static void test_path_too_long(void **state)
{
    (void)state;
    static char deep[PATH_MAX];
    char part[201];
    memset(part, 'd', sizeof(part) - 1);
    part[sizeof(part) - 1] = '\0';
    size_t n = (size_t)snprintf(deep, sizeof(deep), "%s", dir);
    /* Each level made while its path fits; the last one 1 byte short of
     * room for "/ckpt-00000001.ftvm". */
    size_t want = PATH_MAX - strlen("/ckpt-00000001" CKPTFILE_SUFFIX);
    while (n < want) {
        size_t k = want - n - 1 < sizeof(part) - 1 ? want - n - 1
                                                    : sizeof(part) - 1;
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "/%.*s", (int)k,
                              part);
        assert_int_equal(mkdir(deep, 0700), 0);
    }
    assert_int_equal(strlen(deep), want);
    ckptfile_txn *t = NULL;
    char err[PATH_MAX + 256];
    assert_int_equal(ckptfile_begin(&t, deep, err, sizeof(err)),
                     -ENAMETOOLONG);
    assert_null(t);
    assert_non_null(strstr(err, "would be longer than"));
    assert_non_null(strstr(err, "ckpt-00000001" CKPTFILE_SUFFIX));
    assert_int_equal(count_files(deep), 0);
    /* One byte shorter fits: the path is whole. */
    deep[--n] = '\0';
    assert_int_equal(mkdir(deep, 0700), 0);
    assert_int_equal(ckptfile_begin(&t, deep, err, sizeof(err)), 0);
    assert_int_equal(strlen(ckptfile_path(t)), PATH_MAX - 1);
    assert_int_equal(strncmp(ckptfile_path(t), deep, n), 0);
    ckptfile_abort(t);
    assert_int_equal(count_files(deep), 0);
}

/*
 * A full disk: a 64 KiB tmpfs in a private mount namespace (root only).
 * The failed checkpoint disappears; the earlier one is intact.
 */
static void test_full_disk(void **state)
{
    (void)state;
    if (geteuid() != 0 || unshare(CLONE_NEWNS) < 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tmpfs", dir, "tmpfs", 0, "size=64k") < 0) {
        print_message("skipped: needs root to mount a small tmpfs\n");
        skip();
    }
    char first[512];
    write_one(dir, "small and safe", first);

    ckptfile_txn *t;
    char err[512];
    assert_int_equal(ckptfile_begin(&t, dir, err, sizeof(err)), 0);
    static char junk[256 * 1024];
    memset(junk, 'j', sizeof(junk));
    qfile_put_buf(ckptfile_stream(t), junk, sizeof(junk));
    assert_int_equal(ckptfile_commit(t, err, sizeof(err)), -ENOSPC);
    assert_non_null(strstr(err, "No space left"));
    assert_int_equal(count_files(dir), 1);
    char latest[512];
    assert_int_equal(ckptfile_latest(dir, latest, sizeof(latest)), 0);
    assert_string_equal(latest, first);
    umount(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sequence_and_latest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_planted_symlinks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_random_temporaries, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_abort_leaves_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_prune_keeps_newest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_prune_chains, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_single_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_too_long, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_full_disk, setup, teardown),
    };
    return skips_run(tests);
}
