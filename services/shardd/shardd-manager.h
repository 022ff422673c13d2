/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-shardd's Manager: its loop, its bus, the LMDB store and one in-memory index per shard
 * of every collection (rebuilt from the store at start). docs/shardd.md. */
#pragma once

#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <systemd/sd-bus.h>

#include "bus-event.h"
#include "config.h"
#include "mesh-auth.h"
#include "mesh-http.h"
#include "mesh-credentials.h"
#include "shard-deleted.h"
#include "shard-members.h"
#include "shard-placement.h"
#include "daemon.h"
#include "shard-request.h"
#include "shard-search.h"
#include "shard-store.h"
#include "shard-version.h"

/* Rows one shard's index may hold: a bound on memory (a remote party's writes land here). */
#define SHARD_INDEX_ROWS_PER_SHARD (16U << 20)

/* A collection as the daemon serves it: its config and one index per shard. */
typedef struct ShardedCollection {
        ShardCollection *config;
        ShardIndex **shards;    /* n_shards */
        uint64_t n_docs;
        /* Per shard: this node is one of its holders (as of the last membership change), and its
         * copy here is known complete: it held the shard all along, or another holder finished
         * bringing it up to date (POST /shard/ready). A holder whose copy is not complete is asked
         * last by searches and reads, so a new or returning holder never answers with a partial
         * or stale shard while a complete copy is reachable. */
        bool *held;
        bool *ready;
} ShardedCollection;

/* SIGTERM: calls to peers in flight may finish for this long (manager_run()). */
#define SHARD_STOP_CALLS_USEC (1 * USEC_PER_SEC)

typedef struct Manager {
        struct event_base *base;
        DaemonLoop *loop;
        const MyceliaConfig *config;
        char node_id[NODE_ID_LEN + 1];
        char *store_path;
        int exit_code;

        BusReconnect *bus_reconnect;    /* the connection, made again after a loss */
        BusEvent *bus_event;    /* borrowed from bus_reconnect; NULL while the bus is lost */
        sd_bus *bus;            /* borrowed from bus_event; NULL while the bus is lost */
        sd_bus_slot *vtable_slot;
        sd_bus_slot *name_slot; /* the name requested again after a reconnect */

        /* The transfer listener for peers' shardd ([shard] listen, or the socket systemd passes
         * as "shard"): its address as bound, and as peers reach it (gossip metadata "shard"). */
        struct evhttp *peer_http;
        char *peer_address;
        /* The mesh keyring's authenticator keys and TLS on the transfer listener and to peers'
         * (docs/mesh-tls.md, docs/key-rotation.md); creds.tls NULL without a key. */
        MeshCredentials creds;
        bool have_mesh_key;
        uint64_t peer_rejected; /* requests refused: no valid X-Mycelia-Auth */
        char *self_url;         /* "http://" and peer_address: this node's entry in members */

        /* The nodes that run shardd, this one included (shardd-gossip.c). */
        ShardMembers members;
        sd_bus_slot *gossip_owner_slot;
        sd_bus_slot *gossip_signal_slot;
        sd_bus_slot *gossip_get_slot;
        LIST_HEAD(, ShardCall) calls;           /* to peers, in flight (shardd-client.c) */
        bool stopping;                          /* SIGTERM: no new call; the ones in flight finish */
        LIST_HEAD(, ShardQuery) queries;        /* searches waiting for peers (shardd-query.c) */
        LIST_HEAD(, ShardWrite) writes;         /* writes waiting for their quorum (shardd-write.c) */
        LIST_HEAD(, ShardGet) gets;             /* document reads waiting for a peer (shardd-query.c) */
        struct event *members_timer;            /* placement is checked a moment after a change */
        struct ShardSync *sync;                 /* shardd-sync.c */
        struct ShardBlobs *blobs;               /* shardd-blobs.c */

        ShardStore *store;
        ShardDeletedList deleted;       /* collections deleted in the mesh (STATE_DIR/shards/deleted-collections) */
        ShardClock clock;
        ShardedCollection *collections;
        size_t n_collections;
} Manager;

int manager_new(const MyceliaConfig *config, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);
int manager_start(Manager *m);
/* Reads the mesh keyring again (gossipd changed it): new signatures and TLS handshakes use it. */
int manager_mesh_keys_reload(Manager *m);
int manager_run(Manager *m);

/* Forward declarations of what lives in other files of the daemon. */
typedef struct ShardCall ShardCall;
typedef struct ShardQuery ShardQuery;
typedef struct ShardWrite ShardWrite;
typedef struct ShardGet ShardGet;

ShardedCollection *manager_collection(Manager *m, const char *name);
/* Whether this node's copy of a shard may answer: ready, or no other live holder has one. */
bool manager_shard_ready(Manager *m, ShardedCollection *c, unsigned shard);
/* Gossip brought a change of the shardd members: placement is looked at again shortly. */
void manager_members_changed(Manager *m);
/* The current holders of a shard, best first (rendezvous order); how many (<= replicas). */
size_t manager_holders(Manager *m, const ShardCollection *c, unsigned shard, const char *ret[static SHARD_REPLICAS_MAX]);
/* W for a collection: [shard] write_quorum, else 2 (1 when R is 1), at most the shardd members
 * there are (a mesh of one node cannot hold two copies). */
unsigned manager_write_quorum(Manager *m, const ShardCollection *c);
/* Creates a collection (and its empty indexes). -EEXIST, -EINVAL, -EDQUOT, store errors. */
int manager_collection_create(Manager *m, const char *name, unsigned dimension, ShardMetric metric,
                              const char *model);
/* Deletes here and tells the peers. */
int manager_collection_delete(Manager *m, const char *name);
/* Deletes here only (a peer told us), remembering it as deleted. */
int manager_collection_delete_here(Manager *m, const char *name);
/* A peer answered 410 for this node's collection name: it was deleted in the mesh while this
 * node was away; delete it here too. */
void manager_collection_gone(Manager *m, const char *name);

/* Stores documents on the holders of their shards (shardd-write.c), answering reply_to with
 * their ids (given or made) once W holders of each shard have them. -EDOM for a zero vector under
 * cosine, -EHOSTUNREACH when too few holders are live; else errors as shard_store_apply(). */
int manager_put(Manager *m, ShardedCollection *c, const ShardPutRequest *req, sd_bus_message *reply_to);
/* A delete the same way (a tombstone on the holders). */
int manager_delete_doc(Manager *m, ShardedCollection *c, const char *id, sd_bus_message *reply_to);
/* Tells every peer about a new collection (deleted: true, a deleted one), so that it is known
 * everywhere before any document of it arrives (shardd-sync.c). */
void manager_collections_announce(Manager *m, const ShardCollection *c, bool deleted);
/* Top k of this node's own index over the shards marked in shards (n_shards flags), with each
 * hit's text from the store, appended to ret. */
int manager_search_local(Manager *m, ShardedCollection *c, const ShardQueryRequest *q, const bool *shards,
                         ShardAnswer *ret);

/* shardd-query.c: a search over every shard of the collection, one live holder each, answered
 * on the bus (reply_to) when all have answered. Takes q. */
int manager_query_start(Manager *m, ShardedCollection *c, const char *query_json, ShardQueryRequest *q,
                        sd_bus_message *reply_to);
void manager_queries_cancel_all(Manager *m);
/* One document ({"id", "text", "metadata", "embedding"}) from a holder of its shard, this node
 * first, answered on the bus; NotFound when no live holder has it. */
int manager_get_start(Manager *m, ShardedCollection *c, const char *id, sd_bus_message *reply_to);
void manager_gets_cancel_all(Manager *m);
/* The peer route: GET /shard/get?collection=NAME&id=ID. */
void manager_peer_get(Manager *m, struct evhttp_request *req, const char *collection, const char *id);
/* The peer route: POST /shard/search?collection=NAME. */
void manager_peer_search(Manager *m, struct evhttp_request *req, const char *collection);

/* Applies changes to this node's store and index in one transaction (cursor: a push's position
 * in its source's log, stored with them; may be NULL). Returns how many took effect. */
int manager_apply_local(Manager *m, ShardedCollection *c, const ShardChange *changes, size_t n_changes,
                        const ShardSourceCursor *cursor);
/* The collection config a peer sent: this node's collection of that name when it matches (same
 * dimension and metric), else a new one made with that config. -EEXIST when the name is taken by
 * a collection that does not match, -ESTALE when that collection was deleted in the mesh (the
 * peer is to delete its copy: a 410). ready: a new collection's shards start complete (it came with
 * its creation or a client's write) rather than waiting for a transfer. */
int manager_collection_adopt(Manager *m, const ShardCollection *config, bool ready, ShardedCollection **ret);

/* shardd-write.c: a write of changes to every current holder of their shards, answered on the bus
 * (reply_to, with ids when not NULL, else empty) once W holders of each shard have it on disk.
 * -EHOSTUNREACH before anything is written when some shard has fewer than W live holders. Takes
 * nothing: changes are encoded before it returns. */
int manager_write_start(Manager *m, ShardedCollection *c, const ShardChange *changes, size_t n_changes,
                        char *const *ids, sd_bus_message *reply_to);
void manager_writes_cancel_all(Manager *m);
/* The peer routes: POST /shard/apply?collection=NAME, GET /shard/cursor?collection=&shard=&source=. */
void manager_peer_apply(Manager *m, struct evhttp_request *req, const char *collection);
void manager_peer_cursor(Manager *m, struct evhttp_request *req, const char *collection, const char *shard,
                         const char *source);
/* The body of /shard/apply: the collection's config (JSON, u32 length first) and the wire batch. */
int manager_apply_body(const ShardCollection *c, const uint8_t *batch, size_t batch_size, uint8_t **ret,
                       size_t *ret_size);

/* shardd-sync.c: every holder pushes its log to the other holders of its shards, and a node that
 * is no longer a holder hands its shards over, then drops them (docs/shardd.md, "Rebalancing"). */
typedef struct ShardSyncStats {
        uint64_t rounds, pending, done, failed, bytes_moved, dropped;
        uint64_t held;          /* shards stored here, of every collection (handed-over ones not yet dropped too) */
        uint64_t lag_usec;      /* how long the oldest pending transfer has waited: since its round was planned */
} ShardSyncStats;

int manager_sync_init(Manager *m);
void manager_sync_stats(Manager *m, ShardSyncStats *ret);
void manager_sync_start(Manager *m);
void manager_sync_now(Manager *m);
void manager_sync_done(Manager *m);
/* The peer route: POST /shard/collection?collection=NAME (its config) or &delete=1. */
void manager_peer_collection(Manager *m, struct evhttp_request *req, const char *collection, bool deleted);
/* The peer route: POST /shard/ready?collection=NAME&shard=N: the sender brought this node's copy up
 * to date. */
void manager_peer_ready(Manager *m, struct evhttp_request *req, const char *collection, const char *shard);

/* shardd-bus.c: the ShardStore1 object on m->bus (the name is the manager's). */
int manager_bus_publish(Manager *m);
/* A sync round that had transfers ended: what it did (this round's counts). */
int manager_bus_emit_rebalanced(Manager *m, uint64_t done, uint64_t failed, uint64_t bytes, uint64_t dropped);
