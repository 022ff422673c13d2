/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.mycelia.ShardStore1 on /org/mycelia/ShardStore1: collections and documents for the shim
 * (dbus/org.mycelia.ShardStore1.xml, docs/shardd.md "The bus API"). Documents and queries travel
 * as the JSON the shim's clients sent; errors carry a message a client can read. */
#include <errno.h>
#include <stdlib.h>

#include "bus-names.h"
#include "bus-process.h"
#include "log.h"
#include "shard-digest.h"
#include "shard-request.h"
#include "shardd-blobs.h"
#include "shardd-manager.h"

/* The bus error for a negative errno from the store or a request parser; message: what the client
 * reads (may be NULL: then strerror). */
static int reply_error(sd_bus_error *error, int r, const char *message) {
        const char *name;

        switch (r) {
        case -EINVAL:
        case -EDOM:
                name = SHARDSTORE1_ERROR_INVALID;
                break;
        case -E2BIG:
        case -EDQUOT:
                name = SHARDSTORE1_ERROR_TOO_LARGE;
                break;
        case -ENOENT:
                name = SHARDSTORE1_ERROR_NOT_FOUND;
                break;
        case -EEXIST:
                name = SHARDSTORE1_ERROR_EXISTS;
                break;
        case -EHOSTUNREACH:
                name = SHARDSTORE1_ERROR_UNAVAILABLE;
                message = message ?: "fewer nodes holding these documents are reachable than a write needs; try again";
                break;
        default:
                return sd_bus_error_set_errnof(error, -r, "%s", message ?: strerror(-r));
        }
        return sd_bus_error_set(error, name, message ?: strerror(-r));
}

static bool vector_is_zero(const float *v, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                if (v[i] != 0)
                        return false;
        return true;
}

static ShardedCollection *collection_or_error(Manager *m, const char *name, sd_bus_error *error) {
        ShardedCollection *c = manager_collection(m, name);

        if (!c)
                (void) sd_bus_error_setf(error, SHARDSTORE1_ERROR_NOT_FOUND, "collection \"%s\" not found", name);
        return c;
}

static int method_create_collection(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name, *metric_name, *model;
        ShardMetric metric;
        uint32_t dimension;
        int r;

        r = sd_bus_message_read(msg, "suss", &name, &dimension, &metric_name, &model);
        if (r < 0)
                return r;
        if (!shard_collection_name_valid(name))
                return sd_bus_error_setf(error, SHARDSTORE1_ERROR_INVALID,
                                         "invalid collection name \"%s\": 1 to %u of A-Z a-z 0-9 . _ -, not starting with '.'",
                                         name, SHARD_COLLECTION_NAME_MAX);
        if (dimension < 1 || dimension > SHARD_DIMENSION_MAX)
                return sd_bus_error_setf(error, SHARDSTORE1_ERROR_INVALID, "dimension must be from 1 to %u",
                                         SHARD_DIMENSION_MAX);
        if (shard_collection_metric_from_string(isempty(metric_name) ? "cosine" : metric_name, &metric) < 0)
                return sd_bus_error_setf(error, SHARDSTORE1_ERROR_INVALID, "unknown metric \"%s\": cosine or ip",
                                         metric_name);
        r = manager_collection_create(m, name, dimension, metric, model);
        if (r == -EEXIST)
                return sd_bus_error_setf(error, SHARDSTORE1_ERROR_EXISTS, "collection \"%s\" already exists", name);
        if (r == -EDQUOT)
                return sd_bus_error_set(error, SHARDSTORE1_ERROR_TOO_LARGE, "too many collections");
        if (r < 0)
                return reply_error(error, r, NULL);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_delete_collection(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        const char *name;
        int r;

        r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;
        if (!collection_or_error(userdata, name, error))
                return -ENOENT;
        r = manager_collection_delete(userdata, name);
        if (r < 0)
                return reply_error(error, r, NULL);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_put(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(shard_put_request_done) ShardPutRequest req = {};
        _cleanup_free_ char *message = NULL;
        Manager *m = userdata;
        const char *name, *json;
        ShardedCollection *c;
        int r;

        r = sd_bus_message_read(msg, "ss", &name, &json);
        if (r < 0)
                return r;
        c = collection_or_error(m, name, error);
        if (!c)
                return -ENOENT;
        r = shard_put_request_parse(json, c->config->dimension, &req, &message);
        if (r < 0)
                return reply_error(error, r, message);
        /* Answered once W holders of every shard have the documents (shardd-write.c). */
        r = manager_put(m, c, &req, msg);
        if (r == -EDOM)
                return reply_error(error, r, "a zero vector has no direction: the collection's metric is cosine");
        if (r < 0)
                return reply_error(error, r, NULL);
        return 1;
}

static int method_delete(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        const char *name, *id;
        ShardedCollection *c;
        int r;

        r = sd_bus_message_read(msg, "ss", &name, &id);
        if (r < 0)
                return r;
        c = collection_or_error(userdata, name, error);
        if (!c)
                return -ENOENT;
        r = manager_delete_doc(userdata, c, id, msg);
        if (r == -ENOENT)
                return sd_bus_error_setf(error, SHARDSTORE1_ERROR_NOT_FOUND, "document \"%s\" not found", id);
        if (r < 0)
                return reply_error(error, r, NULL);
        return 1;
}

static int method_get(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name, *id;
        ShardedCollection *c;
        int r;

        r = sd_bus_message_read(msg, "ss", &name, &id);
        if (r < 0)
                return r;
        c = collection_or_error(m, name, error);
        if (!c)
                return -ENOENT;
        if (isempty(id) || strlen(id) > SHARD_ID_MAX)
                return sd_bus_error_setf(error, SHARDSTORE1_ERROR_NOT_FOUND, "document \"%s\" not found", id);
        /* Read from a holder of its shard, this node first (shardd-query.c). */
        r = manager_get_start(m, c, id, msg);
        if (r < 0)
                return reply_error(error, r, NULL);
        return 1;
}

static int method_search(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(shard_query_request_done) ShardQueryRequest q = {};
        _cleanup_free_ char *message = NULL;
        const char *name, *json;
        ShardedCollection *c;
        int r;

        r = sd_bus_message_read(msg, "ss", &name, &json);
        if (r < 0)
                return r;
        c = collection_or_error(userdata, name, error);
        if (!c)
                return -ENOENT;
        r = shard_query_request_parse(json, c->config->dimension, &q, &message);
        if (r < 0)
                return reply_error(error, r, message);
        if (c->config->metric == SHARD_METRIC_COSINE && vector_is_zero(q.embedding, c->config->dimension))
                return reply_error(error, -EINVAL, "a zero query vector has no direction: the collection's metric is cosine");
        /* Answered when every shard has answered (shardd-query.c). */
        r = manager_query_start(userdata, c, json, &q, msg);
        if (r < 0)
                return reply_error(error, r, NULL);
        return 1;
}

/* Blobs (shardd-blobs.c): each answers now, or once the holders it asked answered. */
static int method_put_blob(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        const char *digest;
        int fd, r;

        r = sd_bus_message_read(msg, "sh", &digest, &fd);
        if (r < 0)
                return r;
        return manager_blob_put(userdata, msg, digest, fd, error);
}

/* HasBlob, GetBlob: a digest in, handled by fn. */
static int blob_lookup(sd_bus_message *msg, Manager *m, sd_bus_error *error,
                       int (*fn)(Manager *m, sd_bus_message *msg, const char *digest, sd_bus_error *error)) {
        const char *digest;
        int r;

        r = sd_bus_message_read(msg, "s", &digest);
        if (r < 0)
                return r;
        return fn(m, msg, digest, error);
}

static int method_has_blob(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return blob_lookup(msg, userdata, error, manager_blob_has);
}

static int method_get_blob(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return blob_lookup(msg, userdata, error, manager_blob_get);
}

static int property_get_local_node_id(sd_bus *bus, const char *path, const char *interface, const char *property,
                                      sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "s", m->node_id);
}

/* (name, dimension, metric, model, shards, replicas, documents held here) */
static int property_get_collections(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(sussuut)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_collections; i++) {
                const ShardCollection *c = m->collections[i].config;

                r = sd_bus_message_append(reply, "(sussuut)", c->name, c->dimension,
                                          shard_collection_metric_to_string(c->metric), strempty(c->model), c->n_shards,
                                          c->replicas, m->collections[i].n_docs);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

/* (node id, transfer URL, alive): the nodes that run shardd, this one included. */
static int property_get_nodes(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(ssb)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->members.n_peers; i++) {
                r = sd_bus_message_append(reply, "(ssb)", m->members.peers[i].id, m->members.peers[i].url,
                                          (int) m->members.peers[i].alive);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int property_get_sync(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        ShardSyncStats st = {};
        ShardBlobStats bst = {};
        int r;

        manager_sync_stats(userdata, &st);
        manager_blobs_stats(userdata, &bst);
        r = sd_bus_message_open_container(reply, 'a', "{st}");
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "{st}{st}{st}{st}{st}{st}", "rounds", st.rounds, "transfers_pending",
                                  st.pending, "transfers_done", st.done, "transfers_failed", st.failed, "bytes_moved",
                                  st.bytes_moved, "shards_dropped", st.dropped);
        if (r >= 0)
                r = sd_bus_message_append(reply, "{st}{st}{st}", "blobs_stored", bst.stored, "blobs_pushed", bst.pushed,
                                          "blobs_dropped", bst.dropped);
        if (r >= 0)
                r = sd_bus_message_append(reply, "{st}{st}", "shards_held", st.held, "lag_usec", st.lag_usec);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

typedef struct ShardsReply {
        sd_bus_message *reply;
} ShardsReply;

static int shards_append(const ShardInfo *i, void *userdata) {
        ShardsReply *sr = userdata;
        char digest[SHARD_DIGEST_STRING_MAX];

        int r = sd_bus_message_append(sr->reply, "(utttts)", i->shard, i->n_live, i->n_tombstones, i->bytes, i->head.seq,
                                      shard_digest_to_string(&i->digest, digest));

        /* 0 goes on to the next shard. */
        return r < 0 ? r : 0;
}

static int shards_fill(Manager *m, ShardedCollection *c, sd_bus_message *reply) {
        return shard_store_foreach_shard(m->store, c->config->name, shards_append, &(ShardsReply) { .reply = reply });
}

static int holders_fill(Manager *m, ShardedCollection *c, sd_bus_message *reply) {
        int r = 0;

        for (unsigned i = 0; r >= 0 && i < c->config->n_shards; i++) {
                const char *holders[SHARD_REPLICAS_MAX];
                size_t n = manager_holders(m, c->config, i, holders);

                r = sd_bus_message_open_container(reply, 'r', "uas");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "u", i);
                if (r >= 0)
                        r = sd_bus_message_open_container(reply, 'a', "s");
                for (size_t h = 0; r >= 0 && h < n; h++)
                        r = sd_bus_message_append(reply, "s", holders[h]);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        }
        return r;
}

/* A method taking a collection's name and answering an array of element (its signature), which
 * fill appends. */
static int collection_array_reply(sd_bus_message *msg, Manager *m, sd_bus_error *error, const char *element,
                                  int (*fill)(Manager *m, ShardedCollection *c, sd_bus_message *reply)) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        ShardedCollection *c;
        const char *name;
        int r;

        r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;
        c = collection_or_error(m, name, error);
        if (!c)
                return -ENOENT;
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', element);
        if (r >= 0)
                r = fill(m, c, reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_shards(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return collection_array_reply(msg, userdata, error, "(utttts)", shards_fill);
}

static int method_holders(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return collection_array_reply(msg, userdata, error, "(uas)", holders_fill);
}

static const sd_bus_vtable shardstore_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("LocalNodeId", "s", property_get_local_node_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Collections", "a(sussuut)", property_get_collections, 0, 0),
        SD_BUS_METHOD_WITH_ARGS("CreateCollection",
                                SD_BUS_ARGS("s", name, "u", dimension, "s", metric, "s", model),
                                SD_BUS_NO_RESULT, method_create_collection, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("DeleteCollection", SD_BUS_ARGS("s", name), SD_BUS_NO_RESULT,
                                method_delete_collection, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Put", SD_BUS_ARGS("s", collection, "s", documents), SD_BUS_RESULT("as", ids),
                                method_put, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Get", SD_BUS_ARGS("s", collection, "s", id), SD_BUS_RESULT("s", document),
                                method_get, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Delete", SD_BUS_ARGS("s", collection, "s", id), SD_BUS_NO_RESULT, method_delete,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Search", SD_BUS_ARGS("s", collection, "s", query), SD_BUS_RESULT("s", answer),
                                method_search, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Shards", SD_BUS_ARGS("s", collection),
                                SD_BUS_RESULT("a(utttts)", shards), method_shards, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Holders", SD_BUS_ARGS("s", collection), SD_BUS_RESULT("a(uas)", holders),
                                method_holders, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("PutBlob", SD_BUS_ARGS("s", digest, "h", fd), SD_BUS_NO_RESULT, method_put_blob,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("HasBlob", SD_BUS_ARGS("s", digest), SD_BUS_RESULT("b", stored), method_has_blob,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetBlob", SD_BUS_ARGS("s", digest), SD_BUS_RESULT("h", fd), method_get_blob,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("Rebalanced",
                                SD_BUS_ARGS("t", transfers_done, "t", transfers_failed, "t", bytes_moved, "t",
                                            shards_dropped), 0),
        SD_BUS_PROPERTY("Nodes", "a(ssb)", property_get_nodes, 0, 0),
        SD_BUS_PROPERTY("Sync", "a{st}", property_get_sync, 0, 0),
        SD_BUS_VTABLE_END,
};

int manager_bus_emit_rebalanced(Manager *m, uint64_t done, uint64_t failed, uint64_t bytes, uint64_t dropped) {
        if (!m->bus)
                return 0;
        return sd_bus_emit_signal(m->bus, SHARDSTORE1_OBJECT_PATH, SHARDSTORE1_INTERFACE, "Rebalanced", "tttt", done, failed,
                                  bytes, dropped);
}

int manager_bus_publish(Manager *m) {
        int r;

        r = sd_bus_add_object_vtable(m->bus, &m->vtable_slot, SHARDSTORE1_OBJECT_PATH, SHARDSTORE1_INTERFACE,
                                     shardstore_vtable, m);
        if (r < 0)
                return r;
        return bus_add_process_interface(m->bus, SHARDSTORE1_OBJECT_PATH);
}
