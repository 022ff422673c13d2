/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The shardd members as gossip tells them; see shard-members.h. Kept sorted by id so that the id
 * list placement takes is the same on every node for the same members. */
#include <stdlib.h>
#include <string.h>

#include "shard-members.h"

void shard_members_done(ShardMembers *m) {
        for (size_t i = 0; i < m->n_peers; i++)
                free(m->peers[i].url);
        free(m->peers);
        free(m->ids);
        *m = (ShardMembers) {};
}

static bool id_valid(const char *id) {
        if (!id || strlen(id) != NODE_ID_LEN)
                return false;
        for (const char *p = id; *p; p++)
                if (!strchr("0123456789abcdef", *p))
                        return false;
        return true;
}

/* The index of id, or where it would go (*ret_found false). */
static size_t members_search(const ShardMembers *m, const char *id, bool *ret_found) {
        size_t lo = 0, hi = m->n_peers;

        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int c = strcmp(m->peers[mid].id, id);

                if (c == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_found = false;
        return lo;
}

/* ids points into peers: rebuilt after every change (peers may have moved). */
static int members_reindex(ShardMembers *m) {
        char **ids = realloc(m->ids, (m->n_peers + 1) * sizeof(char *));

        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_peers; i++)
                ids[i] = m->peers[i].id;
        ids[m->n_peers] = NULL;
        m->ids = ids;
        m->generation++;
        return 1;
}

int shard_members_set(ShardMembers *m, const char *id, const char *url, bool alive) {
        bool found;
        size_t i;
        char *copy;

        if (!id_valid(id) || isempty(url))
                return -EINVAL;
        i = members_search(m, id, &found);
        if (found) {
                ShardPeer *p = &m->peers[i];

                if (p->alive == alive && streq(p->url, url))
                        return 0;
                copy = strdup(url);
                if (!copy)
                        return -ENOMEM;
                free(p->url);
                p->url = copy;
                p->alive = alive;
                return members_reindex(m);
        }
        if (m->n_peers >= SHARD_PEERS_MAX)
                return -E2BIG;
        copy = strdup(url);
        if (!copy)
                return -ENOMEM;
        if (m->n_peers % 16 == 0) {
                ShardPeer *v = realloc(m->peers, (m->n_peers + 16) * sizeof(ShardPeer));

                if (!v) {
                        free(copy);
                        return -ENOMEM;
                }
                m->peers = v;
        }
        memmove(&m->peers[i + 1], &m->peers[i], (m->n_peers - i) * sizeof(ShardPeer));
        m->peers[i] = (ShardPeer) { .url = copy, .alive = alive };
        memcpy(m->peers[i].id, id, NODE_ID_LEN + 1);
        m->n_peers++;
        return members_reindex(m);
}

int shard_members_remove(ShardMembers *m, const char *id) {
        bool found;
        size_t i;

        if (!id)
                return 0;
        i = members_search(m, id, &found);
        if (!found)
                return 0;
        free(m->peers[i].url);
        memmove(&m->peers[i], &m->peers[i + 1], (m->n_peers - i - 1) * sizeof(ShardPeer));
        m->n_peers--;
        return members_reindex(m);
}

const ShardPeer *shard_members_find(const ShardMembers *m, const char *id) {
        bool found;
        size_t i;

        if (!id)
                return NULL;
        i = members_search(m, id, &found);
        return found ? &m->peers[i] : NULL;
}
