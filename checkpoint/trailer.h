/*
 * The trailer moved to devstate/trailer.h: its sections are described
 * state now (vmstate tables).  This name stays only until the files that
 * still include it (primary/package.c, secondary/receiver.c, vm/restore.c,
 * tests/replication/fake_primary.c) include the new one; then it goes.
 */
#include "devstate/trailer.h"
