/*
 * The trailer moved to devstate/trailer.h: its sections are described
 * state now (vmstate tables).  This name stays only until the files that
 * still include it (tools/, secondary/receiver.c, tests/replication/) are
 * changed to the new one; then it goes.
 */
#include "devstate/trailer.h"
