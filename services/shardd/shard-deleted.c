/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The collections deleted in the mesh; see shard-deleted.h. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard-collection.h"
#include "shard-deleted.h"

void shard_deleted_done(ShardDeletedList *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i].name);
        free(l->v);
        *l = (ShardDeletedList) {};
}

bool shard_deleted_contains(const ShardDeletedList *l, const char *name, uint64_t created_ms) {
        for (size_t i = 0; i < l->n; i++)
                if (l->v[i].created_ms == created_ms && streq(l->v[i].name, name))
                        return true;
        return false;
}

int shard_deleted_add(ShardDeletedList *l, const char *name, uint64_t created_ms) {
        ShardDeleted *v;
        char *copy;

        if (shard_deleted_contains(l, name, created_ms))
                return 0;
        copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        if (l->n >= SHARD_DELETED_MAX) {
                free(l->v[0].name);
                memmove(&l->v[0], &l->v[1], (l->n - 1) * sizeof(ShardDeleted));
                l->n--;
        }
        v = reallocarray(l->v, l->n + 1, sizeof(ShardDeleted));
        if (!v) {
                free(copy);
                return -ENOMEM;
        }
        l->v = v;
        l->v[l->n++] = (ShardDeleted) { .name = copy, .created_ms = created_ms };
        return 0;
}

int shard_deleted_format(const ShardDeletedList *l, char **ret, size_t *ret_size) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < l->n; i++)
                fprintf(f, "%" PRIu64 " %s\n", l->v[i].created_ms, l->v[i].name);
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        *ret_size = size;
        return 0;
}

int shard_deleted_parse(ShardDeletedList *l, const char *text, size_t size) {
        int skipped = 0;

        for (size_t at = 0; at < size;) {
                const char *line = text + at, *nl = memchr(line, '\n', size - at);
                size_t len = nl ? (size_t) (nl - line) : size - at;
                char name[SHARD_COLLECTION_NAME_MAX + 1], *end;
                const char *space = memchr(line, ' ', len);
                unsigned long long created;
                int r;

                at += len + 1;
                if (len == 0)
                        continue;
                if (!space || (size_t) (line + len - space - 1) > SHARD_COLLECTION_NAME_MAX || space == line) {
                        skipped++;
                        continue;
                }
                memcpy(name, space + 1, (size_t) (line + len - space - 1));
                name[line + len - space - 1] = '\0';
                errno = 0;
                created = strtoull(line, &end, 10);
                if (errno != 0 || end != space || !shard_collection_name_valid(name)) {
                        skipped++;
                        continue;
                }
                r = shard_deleted_add(l, name, (uint64_t) created);
                if (r < 0)
                        return r;
        }
        return skipped;
}
