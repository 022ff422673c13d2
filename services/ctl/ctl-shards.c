/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* myceliactl shards: what this node's mycelia-shardd keeps (its collections, its shard members,
 * the sync counters) and, for one collection, where each shard lives and what is stored here. */
#include <inttypes.h>
#include <stdio.h>

#include "bus-event.h"
#include "bus-names.h"
#include "ctl-nodes.h"
#include "ctl-table.h"
#include "myceliactl.h"

/* One entry of ShardStore1.Collections: (name, dimension, metric, model, shards, replicas,
 * documents held here). The strings stay in the reply, as in all of these. */
typedef struct CtlCollection {
        const char *name, *metric, *model;
        uint32_t dimension, n_shards, replicas;
        uint64_t n_docs;
} CtlCollection;

/* One entry of ShardStore1.Nodes: (node id, transfer URL, alive; false: suspect). */
typedef struct CtlShardNode {
        const char *id, *url;
        int alive;
} CtlShardNode;

/* One entry of ShardStore1.Sync. */
typedef struct CtlSyncCounter {
        const char *key;
        uint64_t value;
} CtlSyncCounter;

/* One entry of ShardStore1.Shards(collection): a shard this node stores. */
typedef struct CtlStoredShard {
        uint32_t shard;
        uint64_t n_live, n_tombstones, bytes, log_head;
        const char *digest;
} CtlStoredShard;

/* shardd keeps at most 8 copies of a shard (SHARD_REPLICAS_MAX); more holders would be skipped. */
#define CTL_HOLDERS_MAX 8

/* One entry of ShardStore1.Holders(collection): (shard, holder node ids, best first). */
typedef struct CtlHolders {
        uint32_t shard;
        const char *ids[CTL_HOLDERS_MAX];
        size_t n_ids;
} CtlHolders;

/* What both views name nodes and collections by. */
typedef struct CtlShardsContext {
        char *local_id;
        sd_bus_message *members_reply, *collections_reply;
        GossipMember *members;
        size_t n_members;
        CtlCollection *collections;
        size_t n_collections;
} CtlShardsContext;

static void ctl_shards_context_done(CtlShardsContext *c) {
        free(c->local_id);
        sd_bus_message_unref(c->members_reply);
        sd_bus_message_unref(c->collections_reply);
        free(c->members);
        free(c->collections);
}

/* Element readers for shardstore_read_array(): 1 read, 0 the end of the array, or -errno. */
static int read_collection(sd_bus_message *m, void *e) {
        CtlCollection *c = e;

        return sd_bus_message_read(m, "(sussuut)", &c->name, &c->dimension, &c->metric, &c->model, &c->n_shards,
                                   &c->replicas, &c->n_docs);
}

static int read_shard_node(sd_bus_message *m, void *e) {
        CtlShardNode *n = e;

        return sd_bus_message_read(m, "(ssb)", &n->id, &n->url, &n->alive);
}

static int read_sync_counter(sd_bus_message *m, void *e) {
        CtlSyncCounter *s = e;

        return sd_bus_message_read(m, "{st}", &s->key, &s->value);
}

static int read_stored_shard(sd_bus_message *m, void *e) {
        CtlStoredShard *s = e;

        return sd_bus_message_read(m, "(utttts)", &s->shard, &s->n_live, &s->n_tombstones, &s->bytes, &s->log_head,
                                   &s->digest);
}

static int read_holders(sd_bus_message *m, void *e) {
        CtlHolders *h = e;
        int r;

        r = sd_bus_message_enter_container(m, 'r', "uas");
        if (r <= 0)
                return r;
        r = sd_bus_message_read(m, "u", &h->shard);
        if (r >= 0)
                r = bus_message_read_strv_bounded(m, h->ids, CTL_HOLDERS_MAX, &h->n_ids, NULL);
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        return r < 0 ? r : 1;
}

/* Reads the array ShardStore1's member returns: the property member, or with collection the
 * method member called with it; an element of contents, size bytes, per read_one call. The
 * strings stay in *ret_reply. Failures are reported; returns the exit code, negated. */
static int shardstore_read_array(sd_bus *bus, const char *member, const char *collection, const char *contents,
                                 size_t size, int (*read_one)(sd_bus_message *m, void *e),
                                 sd_bus_message **ret_reply, void *ret, size_t *ret_n) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ void *list = NULL;
        char type[32];
        size_t n = 0;
        int r;

        (void) snprintf(type, sizeof(type), "a%s", contents);
        if (collection)
                r = sd_bus_call_method(bus, SHARDSTORE1_BUS_NAME, SHARDSTORE1_OBJECT_PATH, SHARDSTORE1_INTERFACE,
                                       member, &error, &reply, "s", collection);
        else
                r = sd_bus_get_property(bus, SHARDSTORE1_BUS_NAME, SHARDSTORE1_OBJECT_PATH, SHARDSTORE1_INTERFACE,
                                        member, &error, &reply, type);
        if (r < 0)
                return call_failed(SHARDSTORE1_BUS_NAME, &error, r);
        r = sd_bus_message_enter_container(reply, 'a', contents);
        while (r >= 0) {
                void *nl = reallocarray(list, n + 1, size);

                if (!nl) {
                        r = -ENOMEM;
                        break;
                }
                list = nl;
                memset((char *) list + n * size, 0, size);
                r = read_one(reply, (char *) list + n * size);
                if (r <= 0)
                        break;
                n++;
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0) {
                fprintf(stderr, "Failed to parse ShardStore1.%s: %s\n", member, strerror(-r));
                return -EXIT_FAILURE;
        }
        *ret_reply = TAKE_PTR(reply);
        *(void **) ret = TAKE_PTR(list);
        *ret_n = n;
        return 0;
}

/* The counters of ShardStore1.Sync the Sync: and Blobs: lines put in words; any other is
 * printed by its name, so a newer shardd's counters are not hidden. */
static const char *const sync_worded[] = {
        "rounds", "transfers_pending", "transfers_done", "transfers_failed", "bytes_moved", "shards_dropped",
        "blobs_stored", "blobs_pushed", "blobs_dropped",
};

static const CtlSyncCounter *find_sync_counter(const CtlSyncCounter *l, size_t n, const char *key) {
        for (size_t i = 0; i < n; i++)
                if (streq(l[i].key, key))
                        return &l[i];
        return NULL;
}

static uint64_t sync_counter(const CtlSyncCounter *l, size_t n, const char *key) {
        const CtlSyncCounter *s = find_sync_counter(l, n, key);

        return s ? s->value : 0;
}

static bool sync_counter_worded(const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(sync_worded); i++)
                if (streq(sync_worded[i], key))
                        return true;
        return false;
}

static const CtlCollection *find_collection(const CtlShardsContext *c, const char *name) {
        for (size_t i = 0; i < c->n_collections; i++)
                if (streq(c->collections[i].name, name))
                        return &c->collections[i];
        return NULL;
}

static const CtlStoredShard *find_stored(const CtlStoredShard *l, size_t n, uint32_t shard) {
        for (size_t i = 0; i < n; i++)
                if (l[i].shard == shard)
                        return &l[i];
        return NULL;
}

static json_object *json_collection(const CtlCollection *c) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "name", json_object_new_string(c->name));
        json_object_object_add(o, "dimension", json_object_new_int64(c->dimension));
        json_object_object_add(o, "metric", json_object_new_string(c->metric));
        json_object_object_add(o, "model", isempty(c->model) ? NULL : json_object_new_string(c->model));
        json_object_object_add(o, "shards", json_object_new_int64(c->n_shards));
        json_object_object_add(o, "replicas", json_object_new_int64(c->replicas));
        json_object_object_add(o, "documents", json_object_new_int64((int64_t) c->n_docs));
        return o;
}

/* {"id", "name", "local"}: a node by id, named as ctl_nodes_name() does (null when it cannot). */
static json_object *json_node_ref(const CtlShardsContext *c, const char *id) {
        json_object *o = json_object_new_object();
        const char *name = ctl_nodes_name(c->members, c->n_members, id);

        json_object_object_add(o, "id", json_object_new_string(id));
        json_object_object_add(o, "name", name ? json_object_new_string(name) : NULL);
        json_object_object_add(o, "local", json_object_new_boolean(streq_ptr(id, c->local_id)));
        return o;
}

static int print_overview(const CtlShardsContext *c, const CtlShardNode *nodes, size_t n_nodes,
                          const CtlSyncCounter *sync, size_t n_sync) {
        _cleanup_(ctl_table_freep) CtlTable *t = NULL;
        char bytes[CTL_TABLE_BYTES_MAX];

        for (size_t i = 0; i < n_nodes; i++) {
                const char *name = ctl_nodes_name(c->members, c->n_members, nodes[i].id);

                printf("%12s %s (%.*s) %s %s%s\n", i == 0 ? "Nodes:" : "", name ?: "?", CTL_NODE_ID_SHOWN,
                       nodes[i].id, nodes[i].url, nodes[i].alive ? "alive" : "suspect",
                       streq_ptr(nodes[i].id, c->local_id) ? ", this node" : "");
        }
        printf("%12s %" PRIu64 " rounds; transfers %" PRIu64 " pending, %" PRIu64 " done, %" PRIu64
               " failed; %s moved; %" PRIu64 " shards dropped", "Sync:", sync_counter(sync, n_sync, "rounds"),
               sync_counter(sync, n_sync, "transfers_pending"), sync_counter(sync, n_sync, "transfers_done"),
               sync_counter(sync, n_sync, "transfers_failed"),
               ctl_table_format_bytes(sync_counter(sync, n_sync, "bytes_moved"), bytes),
               sync_counter(sync, n_sync, "shards_dropped"));
        for (size_t i = 0; i < n_sync; i++)
                if (!sync_counter_worded(sync[i].key))
                        printf("; %s %" PRIu64, sync[i].key, sync[i].value);
        putchar('\n');
        if (find_sync_counter(sync, n_sync, "blobs_stored"))
                printf("%12s %" PRIu64 " stored here, %" PRIu64 " pushed, %" PRIu64 " dropped\n", "Blobs:",
                       sync_counter(sync, n_sync, "blobs_stored"), sync_counter(sync, n_sync, "blobs_pushed"),
                       sync_counter(sync, n_sync, "blobs_dropped"));

        t = ctl_table_new("NAME", "DIMENSION", "METRIC", "MODEL", "SHARDS", "REPLICAS", "DOCS-HERE", NULL);
        if (!t)
                return -ENOMEM;
        ctl_table_set_max_width(t, 3, 60);
        for (size_t i = 0; i < c->n_collections; i++) {
                const CtlCollection *col = &c->collections[i];

                ctl_table_add(t, col->name);
                ctl_table_addf(t, "%" PRIu32, col->dimension);
                ctl_table_add(t, col->metric);
                ctl_table_add(t, isempty(col->model) ? NULL : col->model);
                ctl_table_addf(t, "%" PRIu32, col->n_shards);
                ctl_table_addf(t, "%" PRIu32, col->replicas);
                ctl_table_addf(t, "%" PRIu64, col->n_docs);
        }
        putchar('\n');
        ctl_table_print(t, stdout, arg_legend);
        if (arg_legend)
                printf("\n%zu collections listed.\n", c->n_collections);
        return 0;
}

static int show_overview(sd_bus *bus, const CtlShardsContext *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *nodes_reply = NULL, *sync_reply = NULL;
        _cleanup_free_ CtlShardNode *nodes = NULL;
        _cleanup_free_ CtlSyncCounter *sync = NULL;
        size_t n_nodes = 0, n_sync = 0;
        int r;

        r = shardstore_read_array(bus, "Nodes", NULL, "(ssb)", sizeof(CtlShardNode), read_shard_node, &nodes_reply,
                                  &nodes, &n_nodes);
        if (r >= 0)
                r = shardstore_read_array(bus, "Sync", NULL, "{st}", sizeof(CtlSyncCounter), read_sync_counter,
                                          &sync_reply, &sync, &n_sync);
        if (r < 0)
                return r;

        if (arg_json) {
                json_object *o = json_object_new_object(), *na = json_object_new_array();
                json_object *so = json_object_new_object(), *ca = json_object_new_array();

                for (size_t i = 0; i < n_nodes; i++) {
                        json_object *n = json_node_ref(c, nodes[i].id);

                        json_object_object_add(n, "url", json_object_new_string(nodes[i].url));
                        json_object_object_add(n, "state", json_object_new_string(nodes[i].alive ? "alive" : "suspect"));
                        json_object_array_add(na, n);
                }
                for (size_t i = 0; i < n_sync; i++)
                        json_object_object_add(so, sync[i].key, json_object_new_int64((int64_t) sync[i].value));
                for (size_t i = 0; i < c->n_collections; i++)
                        json_object_array_add(ca, json_collection(&c->collections[i]));
                json_object_object_add(o, "id", json_object_new_string(c->local_id));
                json_object_object_add(o, "nodes", na);
                json_object_object_add(o, "sync", so);
                json_object_object_add(o, "collections", ca);
                return json_print(o);
        }
        return print_overview(c, nodes, n_nodes, sync, n_sync);
}

static int print_collection(const CtlShardsContext *c, const CtlCollection *col, const CtlHolders *holders,
                            size_t n_holders, const CtlStoredShard *stored, size_t n_stored) {
        _cleanup_(ctl_table_freep) CtlTable *t = NULL;
        size_t n_here = 0;

        if (col)
                printf("%12s %s (dimension %" PRIu32 ", %s%s%s), %" PRIu32 " shards, %" PRIu32 " replicas, %" PRIu64
                       " documents here\n\n", "Collection:", col->name, col->dimension, col->metric,
                       isempty(col->model) ? "" : ", model ", strempty(col->model), col->n_shards, col->replicas,
                       col->n_docs);

        t = ctl_table_new("SHARD", "HOLDERS", "DOCS", "TOMBSTONES", "BYTES", "LOG-HEAD", "DIGEST", NULL);
        if (!t)
                return -ENOMEM;
        ctl_table_set_max_width(t, 1, 60);
        for (size_t i = 0; i < n_holders; i++) {
                const CtlStoredShard *s = find_stored(stored, n_stored, holders[i].shard);
                _cleanup_free_ char *names = ctl_nodes_join(holders[i].ids, holders[i].n_ids,
                                                            c->local_id, c->members, c->n_members);
                char bytes[CTL_TABLE_BYTES_MAX];

                ctl_table_addf(t, "%" PRIu32, holders[i].shard);
                ctl_table_add(t, isempty(names) ? NULL : names);
                if (!s) {
                        for (size_t k = 0; k < 5; k++)
                                ctl_table_add(t, NULL);
                        continue;
                }
                n_here++;
                ctl_table_addf(t, "%" PRIu64, s->n_live);
                ctl_table_addf(t, "%" PRIu64, s->n_tombstones);
                ctl_table_add(t, ctl_table_format_bytes(s->bytes, bytes));
                ctl_table_addf(t, "%" PRIu64, s->log_head);
                ctl_table_addf(t, "%.12s", s->digest);
        }
        ctl_table_print(t, stdout, arg_legend);
        if (arg_legend)
                printf("\n%zu shards, %zu stored here; * marks this node.\n", n_holders, n_here);
        return 0;
}

static int show_collection(sd_bus *bus, const CtlShardsContext *c, const char *name) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *holders_reply = NULL, *stored_reply = NULL;
        _cleanup_free_ CtlStoredShard *stored = NULL;
        _cleanup_free_ CtlHolders *holders = NULL;
        size_t n_holders = 0, n_stored = 0;
        const CtlCollection *col = find_collection(c, name);
        int r;

        /* An unknown collection: shardd's NotFound says so. */
        r = shardstore_read_array(bus, "Holders", name, "(uas)", sizeof(CtlHolders), read_holders, &holders_reply,
                                  &holders, &n_holders);
        if (r >= 0)
                r = shardstore_read_array(bus, "Shards", name, "(utttts)", sizeof(CtlStoredShard), read_stored_shard,
                                          &stored_reply, &stored, &n_stored);
        if (r < 0)
                return r;

        if (arg_json) {
                json_object *o = json_object_new_object(), *sa = json_object_new_array();

                for (size_t i = 0; i < n_holders; i++) {
                        const CtlStoredShard *s = find_stored(stored, n_stored, holders[i].shard);
                        json_object *so = json_object_new_object(), *ha = json_object_new_array();

                        for (size_t h = 0; h < holders[i].n_ids; h++)
                                json_object_array_add(ha, json_node_ref(c, holders[i].ids[h]));
                        json_object_object_add(so, "shard", json_object_new_int64(holders[i].shard));
                        json_object_object_add(so, "holders", ha);
                        json_object_object_add(so, "stored", json_object_new_boolean(s != NULL));
                        json_object_object_add(so, "documents", s ? json_object_new_int64((int64_t) s->n_live) : NULL);
                        json_object_object_add(so, "tombstones",
                                               s ? json_object_new_int64((int64_t) s->n_tombstones) : NULL);
                        json_object_object_add(so, "bytes", s ? json_object_new_int64((int64_t) s->bytes) : NULL);
                        json_object_object_add(so, "log_head", s ? json_object_new_int64((int64_t) s->log_head) : NULL);
                        json_object_object_add(so, "digest", s ? json_object_new_string(s->digest) : NULL);
                        json_object_array_add(sa, so);
                }
                json_object_object_add(o, "id", json_object_new_string(c->local_id));
                json_object_object_add(o, "collection", col ? json_collection(col) : NULL);
                json_object_object_add(o, "shards", sa);
                return json_print(o);
        }
        return print_collection(c, col, holders, n_holders, stored, n_stored);
}

int verb_shards(sd_bus *bus, int argc, char **argv) {
        _cleanup_(ctl_shards_context_done) CtlShardsContext c = {};
        int r;

        /* The first read says whether shardd runs at all. */
        r = get_string_property(bus, SHARDSTORE1_BUS_NAME, SHARDSTORE1_OBJECT_PATH, "LocalNodeId", &c.local_id);
        if (r < 0)
                return r;
        r = shardstore_read_array(bus, "Collections", NULL, "(sussuut)", sizeof(CtlCollection), read_collection,
                                  &c.collections_reply, &c.collections, &c.n_collections);
        if (r < 0)
                return r;
        /* Names are a courtesy: without gossipd the nodes go by their ids. */
        if (name_has_owner(bus, GOSSIP1_BUS_NAME))
                (void) get_members(bus, &c.members_reply, &c.members, &c.n_members);

        r = argc > 1 ? show_collection(bus, &c, argv[1]) : show_overview(bus, &c);
        if (r == -ENOMEM) {
                fprintf(stderr, "Out of memory.\n");
                return -EXIT_FAILURE;
        }
        return r;
}
