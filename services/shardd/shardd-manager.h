/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-shardd's Manager: its loop, its bus, the LMDB store and one in-memory index per shard
 * of every collection (rebuilt from the store at start). docs/shardd.md. */
#pragma once

#include <event2/event.h>
#include <event2/http.h>
#include <systemd/sd-bus.h>

#include "bus-event.h"
#include "config.h"
#include "mesh-auth.h"
#include "daemon.h"
#include "shard-request.h"
#include "shard-search.h"
#include "shard-store.h"
#include "shard-version.h"

/* A collection as the daemon serves it: its config and one index per shard. */
typedef struct ShardedCollection {
        ShardCollection *config;
        ShardIndex **shards;    /* n_shards; NULL for a shard this node does not hold */
        uint64_t n_docs;
} ShardedCollection;

typedef struct Manager {
        struct event_base *base;
        DaemonLoop *loop;
        const MyceliaConfig *config;
        char node_id[NODE_ID_LEN + 1];
        char *store_path;
        int exit_code;

        BusEvent *bus_event;
        sd_bus *bus;            /* borrowed from bus_event */
        sd_bus_slot *vtable_slot;

        /* The transfer listener for peers' shardd ([shard] listen, or the socket systemd passes
         * as "shard"): its address as bound, and as peers reach it (gossip metadata "shard"). */
        struct evhttp *peer_http;
        char *peer_address;
        MeshAuthKey mesh_auth;
        bool have_mesh_key;
        uint64_t peer_rejected; /* requests refused: no valid X-Mycelia-Auth */

        ShardStore *store;
        ShardClock clock;
        ShardedCollection *collections;
        size_t n_collections;
} Manager;

int manager_new(const MyceliaConfig *config, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);
int manager_start(Manager *m);
int manager_run(Manager *m);

ShardedCollection *manager_collection(Manager *m, const char *name);
/* Creates a collection (and its empty indexes). -EEXIST, -EINVAL, -EDQUOT, store errors. */
int manager_collection_create(Manager *m, const char *name, unsigned dimension, ShardMetric metric,
                              const char *model);
int manager_collection_delete(Manager *m, const char *name);

/* Stores documents and indexes them: the ids (given or made) in *ret_ids, n_docs of them
 * (a NULL-terminated array: free each, then it). -EDOM for a zero vector under cosine; else
 * errors as shard_store_apply(). */
int manager_put(Manager *m, ShardedCollection *c, const ShardPutRequest *req, char ***ret_ids);
int manager_delete_doc(Manager *m, ShardedCollection *c, const char *id);
/* Top k over every shard this node holds, as JSON (shard-request.h). */
int manager_search(Manager *m, ShardedCollection *c, const ShardQueryRequest *q, char **ret_json);

/* shardd-bus.c */
int manager_bus_publish(Manager *m);
