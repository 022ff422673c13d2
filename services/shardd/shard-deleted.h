/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Collections deleted in the mesh, remembered so that a node which was away when one was deleted
 * cannot bring it back: a collection is named by its name and its creation time (created_ms),
 * so one created again under the same name is another. Pure: the text form is kept in a file by
 * shardd-manager.c (docs/shardd.md, "Collections across the mesh"). */
#pragma once

#include "macro.h"

/* Deleted collections remembered; the oldest are forgotten past this. */
#define SHARD_DELETED_MAX 1024

typedef struct ShardDeleted {
        char *name;
        uint64_t created_ms;
} ShardDeleted;

typedef struct ShardDeletedList {
        ShardDeleted *v;        /* oldest first */
        size_t n;
} ShardDeletedList;

void shard_deleted_done(ShardDeletedList *l);
bool shard_deleted_contains(const ShardDeletedList *l, const char *name, uint64_t created_ms);
/* Adds (name, created_ms) unless there; forgets the oldest past SHARD_DELETED_MAX. -ENOMEM. */
int shard_deleted_add(ShardDeletedList *l, const char *name, uint64_t created_ms);
/* One "CREATED_MS NAME\n" line per entry, oldest first; *ret free()d by the caller. */
int shard_deleted_format(const ShardDeletedList *l, char **ret, size_t *ret_size);
/* The entries of that text, added to l. Lines that do not parse (a bad name, a bad number) are
 * skipped; returns how many were. -ENOMEM. */
int shard_deleted_parse(ShardDeletedList *l, const char *text, size_t size);
