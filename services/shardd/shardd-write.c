/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Writes across the mesh (docs/shardd.md, "Writes"): the node a client's write reaches sends each
 * change to every current holder of its shard (itself at once, each peer one /shard/apply with
 * all of that peer's changes) and answers the client once W holders of every shard touched have
 * committed them. Fewer than W live holders for some shard: refused before anything is written.
 * Holders that miss a write get it later from the others' logs (shardd-sync.c). Also the
 * receiving side: /shard/apply and /shard/cursor. */
#include <endian.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "bus-names.h"
#include "log.h"
#include "shard-wire.h"
#include "shardd-client.h"
#include "shardd-manager.h"
#include "shardd-reply.h"

#define WRITE_PEER_TIMEOUT_USEC (30 * USEC_PER_SEC)

typedef struct WritePart {
        ShardWrite *write;
        ShardCall *call;
        char node_id[NODE_ID_LEN + 1];
        bool *shards;           /* the shards this part carries changes of */
} WritePart;

struct ShardWrite {
        Manager *m;
        LIST_ENTRY(ShardWrite) link;
        char *collection;
        sd_bus_message *reply_to;       /* NULL once answered */
        char **ids;                     /* the reply's, NULL-terminated; NULL: reply empty */
        unsigned n_shards;
        unsigned quorum;
        unsigned *acks;                 /* per shard: holders that committed */
        bool *touched;                  /* per shard: the write has changes there */
        WritePart *parts;
        size_t n_parts, n_pending;
};

static void write_free(ShardWrite *w) {
        LIST_REMOVE(w, link);
        for (size_t i = 0; i < w->n_parts; i++) {
                shard_call_cancel(w->parts[i].call);
                free(w->parts[i].shards);
        }
        free(w->parts);
        free(w->acks);
        free(w->touched);
        for (char **p = w->ids; p && *p; p++)
                free(*p);
        free(w->ids);
        sd_bus_message_unref(w->reply_to);
        free(w->collection);
        free(w);
}

static bool write_quorum_reached(const ShardWrite *w) {
        for (unsigned i = 0; i < w->n_shards; i++)
                if (w->touched[i] && w->acks[i] < w->quorum)
                        return false;
        return true;
}

static void write_reply(ShardWrite *w) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        if (!w->reply_to)
                return;
        if (write_quorum_reached(w)) {
                r = sd_bus_message_new_method_return(w->reply_to, &reply);
                if (r >= 0 && w->ids)
                        r = sd_bus_message_append_strv(reply, w->ids);
                if (r >= 0)
                        r = sd_bus_send(NULL, reply, NULL);
                if (r < 0)
                        log_warning_errno(r, "Failed to answer a write: %m");
        } else {
                unsigned least = UINT_MAX;

                for (unsigned i = 0; i < w->n_shards; i++)
                        if (w->touched[i])
                                least = MIN(least, w->acks[i]);
                log_warning("Write to '%s' reached %u of the %u holders it needs for some shard.", w->collection,
                            least, w->quorum);
                (void) sd_bus_reply_method_errorf(w->reply_to, SHARDSTORE1_ERROR_UNAVAILABLE,
                                                  "only %u of the %u copies a write needs could be made; try again",
                                                  least, w->quorum);
        }
        w->reply_to = sd_bus_message_unref(w->reply_to);
}

static void write_part_cb(ShardCall *call, int status, struct evbuffer *body, void *userdata) {
        WritePart *p = userdata;
        ShardWrite *w = p->write;

        p->call = NULL;
        if (status == 200) {
                for (unsigned i = 0; i < w->n_shards; i++)
                        if (p->shards[i])
                                w->acks[i]++;
        } else if (status == 410)
                /* Deleted in the mesh while this node was away: the write cannot be acknowledged. */
                manager_collection_gone(w->m, w->collection);
        else
                log_notice("Write to '%s': node %s did not take it (%d); it catches up from the others later.",
                           w->collection, p->node_id, status);
        w->n_pending--;
        if (w->reply_to && (write_quorum_reached(w) || w->n_pending == 0))
                write_reply(w);
        if (w->n_pending == 0)
                write_free(w);
}

int manager_apply_body(const ShardCollection *c, const uint8_t *batch, size_t batch_size, uint8_t **ret,
                       size_t *ret_size) {
        _cleanup_free_ char *config = NULL;
        size_t config_size;
        uint32_t le;
        uint8_t *b;
        int r;

        r = shard_collection_to_json(c, &config, &config_size);
        if (r < 0)
                return r;
        b = malloc(4 + config_size + batch_size);
        if (!b)
                return -ENOMEM;
        le = htole32((uint32_t) config_size);
        memcpy(b, &le, 4);
        memcpy(b + 4, config, config_size);
        memcpy(b + 4 + config_size, batch, batch_size);
        *ret = b;
        *ret_size = 4 + config_size + batch_size;
        return 0;
}

/* Sends node's changes (those with targets[i] set) as one batch. */
static int write_send(ShardWrite *w, ShardedCollection *c, const ShardPeer *peer, const ShardChange *changes,
                      size_t n_changes, const bool *mine) {
        _cleanup_free_ ShardChange *subset = calloc(n_changes, sizeof(ShardChange));
        _cleanup_free_ uint8_t *batch = NULL, *body = NULL;
        _cleanup_free_ char *target = NULL;
        size_t n = 0, batch_size, body_size;
        WritePart *p = &w->parts[w->n_parts];
        int r;

        if (!subset)
                return -ENOMEM;
        *p = (WritePart) { .write = w, .shards = calloc(w->n_shards, sizeof(bool)) };
        if (!p->shards)
                return -ENOMEM;
        for (size_t i = 0; i < n_changes; i++)
                if (mine[i]) {
                        subset[n++] = changes[i];
                        p->shards[shard_of(c->config->name, changes[i].id, c->config->n_shards)] = true;
                }
        r = shard_wire_batch_encode(c->config->name, NULL, subset, n, &batch, &batch_size);
        if (r >= 0)
                r = manager_apply_body(c->config, batch, batch_size, &body, &body_size);
        if (r >= 0 && asprintf(&target, "/shard/apply?collection=%s", c->config->name) < 0)
                r = -ENOMEM;
        if (r >= 0)
                r = shard_call(w->m, peer->id, peer->url, EVHTTP_REQ_POST, target, body, body_size,
                               WRITE_PEER_TIMEOUT_USEC, write_part_cb, p, &p->call);
        if (r < 0) {
                free(p->shards);
                return r;
        }
        snprintf(p->node_id, sizeof(p->node_id), "%s", peer->id);
        w->n_parts++;
        w->n_pending++;
        return 0;
}

int manager_write_start(Manager *m, ShardedCollection *c, const ShardChange *changes, size_t n_changes,
                        char *const *ids, sd_bus_message *reply_to) {
        unsigned n_shards = c->config->n_shards, quorum = manager_write_quorum(m, c->config);
        _cleanup_free_ const char *(*holders)[SHARD_REPLICAS_MAX] = calloc(n_shards, sizeof(*holders));
        _cleanup_free_ size_t *n_holders = calloc(n_shards, sizeof(size_t));
        _cleanup_free_ bool *mine = calloc(n_changes, sizeof(bool));
        ShardWrite *w;
        int r;

        if (!holders || !n_holders || !mine)
                return -ENOMEM;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        *w = (ShardWrite) { .m = m, .n_shards = n_shards, .quorum = quorum };
        LIST_INSERT_HEAD(&m->writes, w, link);
        w->collection = strdup(c->config->name);
        w->acks = calloc(n_shards, sizeof(unsigned));
        w->touched = calloc(n_shards, sizeof(bool));
        w->parts = calloc(m->members.n_peers, sizeof(WritePart));
        if (!w->collection || !w->acks || !w->touched || !w->parts) {
                write_free(w);
                return -ENOMEM;
        }
        /* Refused before anything is written when a shard has too few live holders. */
        for (size_t i = 0; i < n_changes; i++) {
                int s = shard_of(c->config->name, changes[i].id, n_shards);
                unsigned alive = 0;

                if (s < 0) {
                        write_free(w);
                        return s;
                }
                if (w->touched[s])
                        continue;
                w->touched[s] = true;
                n_holders[s] = manager_holders(m, c->config, (unsigned) s, holders[s]);
                for (size_t h = 0; h < n_holders[s]; h++) {
                        const ShardPeer *p = shard_members_find(&m->members, holders[s][h]);

                        alive += p && p->alive;
                }
                if (alive < quorum) {
                        write_free(w);
                        return -EHOSTUNREACH;
                }
        }
        /* Each member that holds some of the shards gets its changes. */
        for (size_t k = 0; k < m->members.n_peers; k++) {
                const ShardPeer *peer = &m->members.peers[k];
                bool any = false;

                for (size_t i = 0; i < n_changes; i++) {
                        int s = shard_of(c->config->name, changes[i].id, n_shards);

                        mine[i] = false;
                        for (size_t h = 0; h < n_holders[s]; h++)
                                if (streq(holders[s][h], peer->id))
                                        mine[i] = any = true;
                }
                if (!any || !peer->alive)
                        continue;
                if (streq(peer->id, m->node_id)) {
                        _cleanup_free_ ShardChange *subset = calloc(n_changes, sizeof(ShardChange));
                        size_t n = 0;

                        if (!subset) {
                                write_free(w);
                                return -ENOMEM;
                        }
                        for (size_t i = 0; i < n_changes; i++)
                                if (mine[i])
                                        subset[n++] = changes[i];
                        r = manager_apply_local(m, c, subset, n, NULL);
                        if (r < 0) {
                                /* This node's own store failed: nothing is acknowledged. */
                                write_free(w);
                                return r;
                        }
                        for (unsigned s = 0; s < n_shards; s++)
                                for (size_t h = 0; h < n_holders[s]; h++)
                                        if (w->touched[s] && streq(holders[s][h], peer->id))
                                                w->acks[s]++;
                        continue;
                }
                r = write_send(w, c, peer, changes, n_changes, mine);
                if (r < 0)
                        log_notice_errno(r, "Write to '%s': cannot send to node %s: %m", c->config->name, peer->id);
        }
        if (ids) {
                size_t n = 0;

                while (ids[n])
                        n++;
                w->ids = calloc(n + 1, sizeof(char *));
                for (size_t i = 0; w->ids && i < n; i++)
                        if (!(w->ids[i] = strdup(ids[i]))) {
                                write_free(w);
                                return -ENOMEM;
                        }
                if (!w->ids) {
                        write_free(w);
                        return -ENOMEM;
                }
        }
        w->reply_to = sd_bus_message_ref(reply_to);
        if (write_quorum_reached(w) || w->n_pending == 0)
                write_reply(w);
        if (w->n_pending == 0)
                write_free(w);
        return 0;
}

void manager_writes_cancel_all(Manager *m) {
        while (!LIST_EMPTY(&m->writes)) {
                ShardWrite *w = LIST_FIRST(&m->writes);

                if (w->reply_to)
                        (void) sd_bus_reply_method_errorf(w->reply_to, SHARDSTORE1_ERROR_UNAVAILABLE,
                                                          "the shard store is stopping; the write may be incomplete");
                write_free(w);
        }
}

void manager_peer_apply(Manager *m, struct evhttp_request *req, const char *collection) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t size = evbuffer_get_length(in);
        const uint8_t *data = evbuffer_pullup(in, -1);
        _cleanup_(shard_collection_freep) ShardCollection *config = NULL;
        _cleanup_(shard_wire_batch_done) ShardWireBatch batch = {};
        ShardedCollection *c;
        uint32_t config_size;
        char answer[64];
        int r;

        if (!data || size < 4) {
                shard_peer_reply_error(req, 400, "Bad Request", "malformed apply");
                return;
        }
        memcpy(&config_size, data, 4);
        config_size = le32toh(config_size);
        if (config_size > size - 4 ||
            shard_collection_from_json(collection, strlen(collection), (const char *) data + 4, config_size, &config) < 0 ||
            shard_wire_batch_decode(data + 4 + config_size, size - 4 - config_size, &batch) < 0 ||
            !streq(batch.collection, collection)) {
                shard_peer_reply_error(req, 400, "Bad Request", "malformed apply");
                return;
        }
        /* A client's write (no cursor) may create it complete; a transfer brings an incomplete one. */
        r = manager_collection_adopt(m, config, !batch.has_cursor, &c);
        if (r == -ESTALE) {
                shard_peer_reply_error(req, 410, "Gone", "collection deleted");
                return;
        }
        if (r < 0) {
                log_warning_errno(r, "A peer sent changes for collection '%s', which does not match this node's: %m",
                                  collection);
                shard_peer_reply_error(req, 409, "Conflict", "collection differs");
                return;
        }
        r = manager_apply_local(m, c, batch.changes, batch.n_changes, batch.has_cursor ? &batch.cursor : NULL);
        if (r < 0) {
                log_warning_errno(r, "Failed to apply %zu changes a peer sent for '%s': %m", batch.n_changes, collection);
                shard_peer_reply_error(req, r == -EINVAL || r == -E2BIG ? 400 : 500, "Error", "not applied");
                return;
        }
        snprintf(answer, sizeof(answer), "{\"applied\":%d}", r);
        shard_peer_reply_json(req, answer);
}

void manager_peer_cursor(Manager *m, struct evhttp_request *req, const char *collection, const char *shard_s,
                         const char *source) {
        ShardCursor cursor = {};
        ShardInfo info = {};
        char answer[192], digest[33];
        unsigned shard;
        int r;

        if (!shard_s || !source || sscanf(shard_s, "%u", &shard) != 1) {
                shard_peer_reply_error(req, 400, "Bad Request", "malformed cursor request");
                return;
        }
        /* Unknown collection or shard: from the start (the first apply brings the collection). */
        if (manager_collection(m, collection)) {
                r = shard_store_cursor_get(m->store, collection, shard, source, &cursor);
                if (r < 0 && r != -ENOENT) {
                        shard_peer_reply_error(req, 500, "Error", "cursor unreadable");
                        return;
                }
                if (shard_store_shard_info(m->store, collection, shard, &info) < 0)
                        info = (ShardInfo) {};
        }
        snprintf(answer, sizeof(answer), "{\"log_id\":%" PRIu64 ",\"seq\":%" PRIu64 ",\"digest\":\"%s\"}", cursor.log_id,
                 cursor.seq, shard_digest_to_string(&info.digest, digest));
        shard_peer_reply_json(req, answer);
}
