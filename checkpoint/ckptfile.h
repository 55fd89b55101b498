/*
 * ckptfile: checkpoint files in a directory, written atomically.
 *
 * A checkpoint is written to a temporary file in the target directory,
 * flushed and fsync'ed, renamed to its final name, and the directory is
 * fsync'ed, so after a crash at any moment the directory holds either the
 * previous set of checkpoints or the previous set plus the new one: never a
 * half-written file under a checkpoint's name.  A failed write (a full
 * disk, say) removes the temporary file and leaves the others alone.
 *
 * The temporary file gets a random name (.ckpt-<64 random bits>.tmp) and
 * is created with O_EXCL|O_NOFOLLOW, mode 0600: in a directory others can
 * write, nothing planted there in advance (a symlink to /etc/shadow, say)
 * is opened, truncated or written through.  The rename replaces whatever
 * holds the final name, a symlink included, without following it.
 *
 * Files are named ckpt-NNNNNNNN.ftvm with a sequence number one above the
 * highest already in the directory, so name order is age order.  Only
 * regular files of this process's user count as checkpoints (for the
 * numbering, pruning and the latest): a symlink or another user's file
 * under such a name is not one.
 */
#ifndef FTVM_CHECKPOINT_CKPTFILE_H
#define FTVM_CHECKPOINT_CKPTFILE_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint/qfile.h"

#define CKPTFILE_SUFFIX ".ftvm"

typedef struct ckptfile_txn ckptfile_txn;

/*
 * Starts a checkpoint in dir (created if missing, mode 0700).  Returns 0
 * and the transaction, or -errno with a message naming the path in err.
 */
int ckptfile_begin(ckptfile_txn **out, const char *dir, char *err,
                   size_t errlen);
/*
 * Starts a checkpoint that replaces exactly path on commit (written under
 * a random temporary name beside it).  Same contract as ckptfile_begin.
 */
int ckptfile_begin_file(ckptfile_txn **out, const char *path, char *err,
                        size_t errlen);
/* The channel to write the stream into. */
qfile *ckptfile_stream(ckptfile_txn *t);
/* The checkpoint's sequence number in its directory (0 for a file). */
uint64_t ckptfile_seq(const ckptfile_txn *t);
/* The final path the checkpoint gets on commit. */
const char *ckptfile_path(const ckptfile_txn *t);
/*
 * Flushes, fsyncs, renames into place and fsyncs the directory; frees t.
 * On any failure the temporary file is removed and -errno returned with
 * a message in err (the stream's own message when writing failed).
 */
int ckptfile_commit(ckptfile_txn *t, char *err, size_t errlen);
/* Drops the checkpoint: removes the temporary file, frees t. */
void ckptfile_abort(ckptfile_txn *t);

/*
 * Removes the oldest checkpoints of dir so that keep remain (keep >= 1),
 * and stale temporary files of an earlier crash.  Returns how many files
 * were removed, or -errno.
 */
int ckptfile_prune(const char *dir, unsigned keep);
/*
 * The same, but a file one of the newest keep depends on (its base, the
 * base's base, ...) is kept too: base_of(opaque, path, base, baselen)
 * returns 1 with the base name of the checkpoint at path (a file name in
 * dir), 0 when it has none, or -errno when it cannot tell (the file
 * could not be read): then no checkpoint is removed (stale temporaries
 * are) and that error is returned.  Only checkpoints of dir (regular
 * files of this user named as ckptfile names them) count as bases.
 */
typedef int (*ckptfile_base_fn)(void *opaque, const char *path, char *base,
                                size_t baselen);
int ckptfile_prune_chains(const char *dir, unsigned keep,
                          ckptfile_base_fn base_of, void *opaque);

/*
 * The newest checkpoint in dir, as a path in out; -ENOENT when there is
 * none.
 */
int ckptfile_latest(const char *dir, char *out, size_t outlen);

#endif
