/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-shardd's Manager: opens the store, rebuilds the in-memory indexes from it, serves
 * ShardStore1 (shardd-bus.c) and turns its calls into store writes and index searches. This node
 * holds every shard of its collections for now: placement over the mesh, replication and
 * rebalancing come next (docs/shardd.md, "Where it stands"). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-id128.h>
#include <unistd.h>

#include "bus-names.h"
#include "json-cleanup.h"
#include "json-document.h"
#include "log.h"
#include "shard-placement.h"
#include "shard-request.h"
#include "mesh-http.h"
#include "shardd-manager.h"
#include "shardd-blobs.h"
#include "shardd-client.h"
#include "shardd-gossip.h"
#include "shardd-peer.h"


static uint64_t now_ms(void) {
        return now_realtime_usec() / USEC_PER_MSEC;
}

static void manager_exit(Manager *m, int code) {
        if (m->exit_code == 0)
                m->exit_code = code;
        (void) event_base_loopbreak(m->base);
}

static void sharded_collection_done(ShardedCollection *c) {
        for (unsigned i = 0; c->shards && c->config && i < c->config->n_shards; i++)
                shard_index_free(c->shards[i]);
        free(c->shards);
        free(c->held);
        free(c->ready);
        shard_collection_free(c->config);
        *c = (ShardedCollection) {};
}

ShardedCollection *manager_collection(Manager *m, const char *name) {
        for (size_t i = 0; name && i < m->n_collections; i++)
                if (streq(m->collections[i].config->name, name))
                        return &m->collections[i];
        return NULL;
}

/* A JSON object from the store's bytes (not NUL-terminated), or NULL. */
static json_object *metadata_parse(const char *s, size_t n) {
        json_object *o = NULL;

        if (!s || n == 0 || json_document_parse(s, n, &o) < 0)
                return NULL;
        if (!json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static int index_add_doc(ShardIndex *x, const char *id, const float *embedding, const char *metadata, size_t metadata_size) {
        _cleanup_(json_object_putp) json_object *meta = metadata_parse(metadata, metadata_size);
        int r = shard_index_add(x, id, embedding, meta);

        return r < 0 ? r : 0;
}

typedef struct LoadShard {
        ShardIndex *index;
        float *vec;
        uint64_t n;
        int error;
} LoadShard;

static int load_doc(const ShardDoc *d, void *userdata) {
        LoadShard *l = userdata;
        _cleanup_free_ char *id = strndup(d->id, SHARD_ID_MAX);
        int r;

        if (!id)
                return -ENOMEM;
        shard_doc_embedding(d, l->vec);
        r = index_add_doc(l->index, id, l->vec, d->metadata, d->metadata_size);
        if (r < 0) {
                /* A stored vector the index refuses (zero under cosine cannot be stored): logged,
                 * the rest of the shard still loads. */
                log_warning_errno(r, "Not indexing document '%s': %m", id);
                l->error = r;
                return 0;
        }
        l->n++;
        return 0;
}

/* The collection's indexes, filled from the store. */
static int collection_load(Manager *m, ShardCollection *config, ShardedCollection *ret) {
        ShardedCollection c = { .config = config };
        _cleanup_free_ float *vec = malloc(sizeof(float) * config->dimension);
        int r;

        c.shards = calloc(config->n_shards, sizeof(ShardIndex *));
        c.held = calloc(config->n_shards, sizeof(bool));
        c.ready = calloc(config->n_shards, sizeof(bool));
        if (!c.shards || !vec || !c.held || !c.ready) {
                free(c.shards);
                free(c.held);
                free(c.ready);
                return -ENOMEM;
        }
        /* Until a peer confirms it (or there is no other live holder), a copy from before this
         * start may have missed writes. Held: unknown until the members are read. */
        for (unsigned i = 0; i < config->n_shards; i++) {
                LoadShard l = { .vec = vec };

                r = shard_index_new(config->dimension, config->metric, SHARD_INDEX_ROWS_PER_SHARD, &c.shards[i]);
                if (r < 0)
                        goto fail;
                l.index = c.shards[i];
                r = shard_store_foreach_doc(m->store, config->name, i, NULL, 0, load_doc, &l);
                if (r == -EBADMSG) {
                        /* Damaged values: the store drops them; the other holders have them. */
                        log_error("Shard %u of collection '%s' has damaged documents; rebuilding it.", i, config->name);
                        r = shard_store_shard_rebuild(m->store, config->name, i, NULL);
                        if (r >= 0) {
                                shard_index_free(c.shards[i]);
                                r = shard_index_new(config->dimension, config->metric, SHARD_INDEX_ROWS_PER_SHARD,
                                                    &c.shards[i]);
                                l = (LoadShard) { .vec = vec, .index = c.shards[i] };
                                if (r >= 0)
                                        r = shard_store_foreach_doc(m->store, config->name, i, NULL, 0, load_doc, &l);
                        }
                }
                if (r < 0)
                        goto fail;
                c.n_docs += l.n;
        }
        *ret = c;
        return 0;
fail:
        c.config = NULL;        /* the caller's on failure */
        for (unsigned i = 0; i < config->n_shards; i++)
                shard_index_free(c.shards[i]);
        free(c.shards);
        free(c.held);
        free(c.ready);
        return r;
}

static int collection_append(Manager *m, ShardCollection *config) {
        ShardedCollection *v;
        int r;

        v = reallocarray(m->collections, m->n_collections + 1, sizeof(ShardedCollection));
        if (!v)
                return -ENOMEM;
        m->collections = v;
        r = collection_load(m, config, &m->collections[m->n_collections]);
        if (r < 0)
                return r;
        m->n_collections++;
        return 0;
}

static int collect_name(const ShardCollection *c, void *userdata) {
        char ***names = userdata;
        size_t n = 0;
        char **v;

        while (*names && (*names)[n])
                n++;
        v = reallocarray(*names, n + 2, sizeof(char *));
        if (!v)
                return -ENOMEM;
        *names = v;
        v[n] = strdup(c->name);
        v[n + 1] = NULL;
        return v[n] ? 0 : -ENOMEM;
}

static void strv_freep(char ***v) {
        for (char **p = *v; p && *p; p++)
                free(*p);
        free(*v);
}

/* Every collection of the store, with its indexes. The names first: the store's callbacks must
 * not call into it. */
static int manager_load(Manager *m) {
        __attribute__((cleanup(strv_freep))) char **names = NULL;
        int r;

        r = shard_store_foreach_collection(m->store, collect_name, &names);
        if (r < 0)
                return r;
        for (char **n = names; n && *n; n++) {
                ShardCollection *config = NULL;

                r = shard_store_collection_get(m->store, *n, &config);
                if (r < 0)
                        return r;
                r = collection_append(m, config);
                if (r < 0) {
                        shard_collection_free(config);
                        return r;
                }
                log_info("Collection '%s': %" PRIu64 " documents in %u shards.", config->name,
                         m->collections[m->n_collections - 1].n_docs, config->n_shards);
        }
        return 0;
}

/* Writes the deleted collections out: a temporary file, fsync'd, renamed into place. */
static int manager_deleted_save(Manager *m) {
        _cleanup_free_ char *text = NULL, *path = NULL, *tmp = NULL;
        size_t size;
        FILE *f;
        int r;

        r = shard_deleted_format(&m->deleted, &text, &size);
        if (r < 0)
                return r;
        if (asprintf(&path, "%s/deleted-collections", m->store_path) < 0 ||
            asprintf(&tmp, "%s/.deleted-collections.tmp", m->store_path) < 0)
                return -ENOMEM;
        f = fopen(tmp, "we");
        if (!f)
                return -errno;
        if (fwrite(text, 1, size, f) != size || fflush(f) != 0 || fsync(fileno(f)) < 0) {
                r = -errno;
                (void) fclose(f);
                (void) unlink(tmp);
                return r ?: -EIO;
        }
        if (fclose(f) != 0 || rename(tmp, path) < 0) {
                r = -errno;
                (void) unlink(tmp);
                return r;
        }
        return 0;
}

static int manager_deleted_load(Manager *m) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t size = 0;
        FILE *f;
        int r;

        if (asprintf(&path, "%s/deleted-collections", m->store_path) < 0)
                return -ENOMEM;
        f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? 0 : -errno;
        text = malloc(SHARD_DELETED_MAX * (SHARD_COLLECTION_NAME_MAX + 24));
        if (!text) {
                (void) fclose(f);
                return -ENOMEM;
        }
        size = fread(text, 1, SHARD_DELETED_MAX * (SHARD_COLLECTION_NAME_MAX + 24), f);
        (void) fclose(f);
        r = shard_deleted_parse(&m->deleted, text, size);
        if (r > 0)
                log_warning("Skipped %d unreadable line(s) of %s.", r, path);
        return r < 0 ? r : 0;
}

static void manager_members_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;

        log_info("Shard members: %zu node(s) run shardd.", m->members.n_peers);
        manager_sync_now(m);
}

int manager_new(const MyceliaConfig *config, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        ShardVersion newest;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return log_oom();
        m->config = config;
        r = daemon_loop_new(0, &m->base, &m->loop);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the event loop: %m");
        if (config->shard_count < 1 || config->shard_count > SHARD_COUNT_MAX)
                return log_error_errno(-EINVAL, "[shard] shards must be from 1 to %u.", SHARD_COUNT_MAX);
        if (config->shard_replicas < 1 || config->shard_replicas > SHARD_REPLICAS_MAX)
                return log_error_errno(-EINVAL, "[shard] replicas must be from 1 to %u.", SHARD_REPLICAS_MAX);
        if (config->write_quorum > config->shard_replicas)
                return log_error_errno(-EINVAL, "[shard] write_quorum (%u) cannot be above replicas (%u).",
                                       config->write_quorum, config->shard_replicas);
        r = daemon_node_id_get(config->node_id, config->state_dir, m->node_id);
        if (r < 0)
                return r;
        if (asprintf(&m->store_path, "%s/shards", config->state_dir) < 0)
                return log_oom();
        r = shard_store_open(m->store_path, NULL, &m->store);
        if (r < 0)
                return log_error_errno(r, "Failed to open the shard store in %s: %m", m->store_path);
        /* Writes must stay newer than every stored one, also when the wall clock went back. */
        shard_clock_init(&m->clock, m->node_id);
        r = shard_store_max_version(m->store, &newest);
        /* Observed at its own time, so that a store written under a clock that was later set back
         * still counts (the clock then advances its counter instead of its milliseconds). */
        if (r >= 0)
                (void) shard_clock_observe(&m->clock, &newest, shard_hlc_ms(newest.hlc));
        r = manager_load(m);
        if (r < 0)
                return log_error_errno(r, "Failed to load the collections from %s: %m", m->store_path);
        r = manager_deleted_load(m);
        if (r < 0)
                return log_error_errno(r, "Failed to read the deleted collections in %s: %m", m->store_path);
        LIST_INIT(&m->calls);
        LIST_INIT(&m->queries);
        LIST_INIT(&m->writes);
        LIST_INIT(&m->gets);
        m->members_timer = evtimer_new(m->base, manager_members_timer_cb, m);
        if (!m->members_timer)
                return log_oom();
        r = manager_sync_init(m);
        if (r < 0)
                return log_oom();
        r = manager_blobs_init(m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the blob store in %s/blobs: %m", config->state_dir);
        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        manager_queries_cancel_all(m);
        manager_writes_cancel_all(m);
        manager_gets_cancel_all(m);
        manager_sync_done(m);
        manager_blobs_done(m);
        shard_calls_cancel_all(m);
        shardd_gossip_done(m);
        if (m->members_timer)
                event_free(m->members_timer);
        sd_bus_slot_unref(m->name_slot);
        sd_bus_slot_unref(m->vtable_slot);
        bus_reconnect_free(m->bus_reconnect);
        if (m->peer_http)
                evhttp_free(m->peer_http);
        free(m->peer_address);
        free(m->self_url);
        for (size_t i = 0; i < m->n_collections; i++)
                sharded_collection_done(&m->collections[i]);
        free(m->collections);
        shard_store_free(m->store);
        shard_deleted_done(&m->deleted);
        free(m->store_path);
        daemon_loop_free(m->loop);
        daemon_base_settle(m->base);
        /* Last: every TLS connection (listener, calls) is gone. */
        mesh_credentials_done(&m->creds);
        if (m->base)
                event_base_free(m->base);
        free(m);
        return NULL;
}

/* Takes the socket systemd (or the launcher) passed as "shard", else binds [shard] listen. */
static int manager_listen(Manager *m) {
        char bound[128];
        int fd, r;

        fd = listen_fd_take("shard");
        if (fd == -ENOENT) {
                r = listen_tcp(m->config->shard_listen, &fd);
                if (r < 0)
                        return log_error_errno(r, "Failed to listen on %s ([shard] listen, --shard): %m",
                                               m->config->shard_listen);
        } else if (fd < 0)
                return log_error_errno(fd, "Failed to take the 'shard' socket: %m");
        (void) evutil_make_socket_nonblocking(fd);
        r = sockaddr_format_local(fd, bound, sizeof(bound));
        if (r < 0) {
                (void) close(fd);
                return log_error_errno(r, "Failed to read the address of the 'shard' socket: %m");
        }
        m->peer_http = evhttp_new(m->base);
        m->peer_address = strdup(bound);
        if (!m->peer_http || !m->peer_address) {
                (void) close(fd);
                return log_oom();
        }
        evhttp_set_allowed_methods(m->peer_http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT);
        /* A blob may be larger than any other body; the other routes check their own bound
         * (shardd-peer.c). */
        evhttp_set_max_body_size(m->peer_http, (ev_ssize_t) MIN(MAX((uint64_t) SHARD_PEER_BODY_MAX, m->config->blob_max_size),
                                                                (uint64_t) INT64_MAX));
        evhttp_set_default_content_type(m->peer_http, NULL);
        evhttp_set_gencb(m->peer_http, manager_peer_request, m);
        /* Peers speak TLS with the mesh key (docs/mesh-tls.md); without a key, plain HTTP that
         * is refused anyway. */
        if (m->creds.tls)
                evhttp_set_bevcb(m->peer_http, manager_peer_bev_new, m);
        if (!evhttp_accept_socket_with_handle(m->peer_http, fd)) {
                (void) close(fd);
                return log_error_errno(EIO, "Failed to accept connections on %s: %m", bound);
        }
        log_info("Serving shard transfers on %s.", bound);
        return 0;
}

static int manager_request_name_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        int r;

        r = bus_request_name_result(m->bus, reply, SHARDSTORE1_BUS_NAME);
        if (r < 0)
                manager_exit(m, EXIT_FAILURE);
        if (r <= 0)
                return 0;
        log_info("Serving %s again.", SHARDSTORE1_BUS_NAME);
        daemon_notify_status("Serving collections.");
        return 0;
}

/* A connection to the bus (the first, or a new one after dbus-daemon came back): ShardStore1,
 * its name, gossipd's members. At start the name is ours before READY (the shim may call at
 * once); after a reconnect it is asked for without blocking the listener. */
static int manager_bus_connected(BusEvent *b, sd_bus *bus, bool reconnected, void *userdata) {
        Manager *m = userdata;
        int r;

        m->bus_event = b;
        m->bus = bus;
        if (reconnected)
                log_info("Connected to the bus again; registering %s.", SHARDSTORE1_BUS_NAME);
        r = manager_bus_publish(m);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to add the %s object: %m", SHARDSTORE1_BUS_NAME);
        if (reconnected)
                r = sd_bus_request_name_async(m->bus, &m->name_slot, SHARDSTORE1_BUS_NAME, 0, manager_request_name_cb, m);
        else
                r = sd_bus_request_name(m->bus, SHARDSTORE1_BUS_NAME, 0);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to acquire %s: %m", SHARDSTORE1_BUS_NAME);
        r = shardd_gossip_start(m);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to watch %s on the bus: %m", GOSSIP1_BUS_NAME);
        return 0;
}

/* The store, the indexes, the members last read and the transfer listener go on: peers keep
 * syncing with this node; ShardStore1 is back with the bus. */
static void manager_bus_lost(void *userdata) {
        Manager *m = userdata;

        log_warning("Lost the connection to the bus; serving peers on %s and reconnecting.", m->peer_address);
        shardd_gossip_bus_lost(m);
        m->name_slot = sd_bus_slot_unref(m->name_slot);
        m->vtable_slot = sd_bus_slot_unref(m->vtable_slot);
        m->bus = NULL;
        m->bus_event = NULL;
}

static const BusReconnectOps manager_bus_ops = {
        .connected = manager_bus_connected,
        .lost = manager_bus_lost,
};

int manager_mesh_keys_reload(Manager *m) {
        return mesh_credentials_reload(&m->creds, m->config->state_dir, m->config->mesh_key);
}

int manager_start(Manager *m) {
        int r;

        /* Without the key this node keeps its own shards and serves its own clients, and refuses
         * every peer (nothing unauthenticated crosses the LAN). */
        r = mesh_credentials_load(&m->creds, m->config->state_dir, m->config->mesh_key, MESH_TLS_SHARD);
        if (r == -EIO)
                return r;
        m->have_mesh_key = r >= 0;
        if (!m->have_mesh_key)
                log_notice("No mesh key (%s: %s); shards stay on this node and peers are refused.",
                           strempty(m->config->mesh_key), strerror(-r));
        r = manager_listen(m);
        if (r < 0)
                return r;
        if (asprintf(&m->self_url, "http://%s", m->peer_address) < 0)
                return log_oom();
        r = daemon_bus_connect(m->base, m->config->bus_address, &manager_bus_ops, m, &m->bus_reconnect);
        if (r < 0)
                return r;
        manager_sync_start(m);
        daemon_notify_ready("Serving collections.");
        log_info("Serving %zu collections from %s.", m->n_collections, m->store_path);
        return 0;
}

static void manager_stop_timeout_cb(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;

        log_notice("Stopping: %s call(s) to peers still in flight after %u ms; cutting them.",
                   LIST_EMPTY(&m->calls) ? "no" : "some", (unsigned) (SHARD_STOP_CALLS_USEC / USEC_PER_MSEC));
        (void) event_base_loopbreak(m->base);
}

/* After SIGTERM: no new call to a peer, and the ones in flight finish (for at most
 * SHARD_STOP_CALLS_USEC), so that no TLS connection is torn down under a peer mid-exchange and
 * the peer sees an answer rather than a reset. A second signal ends it at once. */
static void manager_stop_calls(Manager *m) {
        struct timeval tv = usec_to_timeval(SHARD_STOP_CALLS_USEC);
        struct event *timeout;

        m->stopping = true;
        if (LIST_EMPTY(&m->calls))
                return;
        timeout = evtimer_new(m->base, manager_stop_timeout_cb, m);
        if (!timeout || evtimer_add(timeout, &tv) < 0) {
                if (timeout)
                        event_free(timeout);
                return;
        }
        (void) event_base_dispatch(m->base);
        event_free(timeout);
}

int manager_run(Manager *m) {
        if (event_base_dispatch(m->base) < 0)
                return log_error_errno(EIO, "The event loop failed.");
        if (m->exit_code == 0) {
                log_info("Stopping.");
                manager_stop_calls(m);
        }
        return m->exit_code;
}

/* Which shards of c this node holds now (after a collection appears; later, on membership changes). */
static void collection_mark_held(Manager *m, ShardedCollection *c) {
        for (unsigned i = 0; i < c->config->n_shards; i++) {
                const char *holders[SHARD_REPLICAS_MAX];
                size_t n = manager_holders(m, c->config, i, holders);

                c->held[i] = false;
                for (size_t h = 0; h < n; h++)
                        c->held[i] = c->held[i] || streq(holders[h], m->node_id);
        }
}

/* Stores a new collection with config want and makes its indexes. */
static int manager_collection_add(Manager *m, const ShardCollection *want, ShardedCollection **ret) {
        ShardCollection *config = NULL;
        int r;

        r = shard_store_collection_create(m->store, want);
        if (r < 0)
                return r;
        r = shard_store_collection_get(m->store, want->name, &config);
        if (r < 0)
                return r;
        r = collection_append(m, config);
        if (r < 0) {
                shard_collection_free(config);
                return r;
        }
        if (ret)
                *ret = &m->collections[m->n_collections - 1];
        return 0;
}

int manager_collection_create(Manager *m, const char *name, unsigned dimension, ShardMetric metric,
                              const char *model) {
        ShardCollection want = {
                .name = (char *) name,
                .dimension = dimension,
                .metric = metric,
                .model = isempty(model) ? NULL : (char *) model,
                .n_shards = m->config->shard_count,
                .replicas = m->config->shard_replicas,
                .created_ms = now_ms(),
        };
        ShardedCollection *c;
        int r;

        if (manager_collection(m, name))
                return -EEXIST;
        r = manager_collection_add(m, &want, &c);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < c->config->n_shards; i++)
                c->ready[i] = true;     /* nothing was written anywhere yet */
        collection_mark_held(m, c);
        log_info("Created collection '%s' (%u dimensions, %s).", name, dimension,
                 shard_collection_metric_to_string(metric));
        manager_collections_announce(m, c->config, false);
        return 0;
}

int manager_collection_adopt(Manager *m, const ShardCollection *config, bool ready, ShardedCollection **ret) {
        ShardedCollection *c = manager_collection(m, config->name);
        int r;

        if (shard_deleted_contains(&m->deleted, config->name, config->created_ms))
                return -ESTALE;
        if (c) {
                if (c->config->dimension != config->dimension || c->config->metric != config->metric ||
                    c->config->n_shards != config->n_shards)
                        return -EEXIST;
                *ret = c;
                return 0;
        }
        r = manager_collection_add(m, config, ret);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < config->n_shards; i++)
                (*ret)->ready[i] = ready;
        collection_mark_held(m, *ret);
        log_info("Collection '%s' came from a peer (%u dimensions, %s).", config->name, config->dimension,
                 shard_collection_metric_to_string(config->metric));
        return 0;
}

int manager_collection_delete_here(Manager *m, const char *name) {
        ShardedCollection *c = manager_collection(m, name);
        int r;

        if (!c)
                return -ENOENT;
        /* Remembered first: a crash between the two leaves it deleted, never half-remembered. */
        r = shard_deleted_add(&m->deleted, name, c->config->created_ms);
        if (r >= 0)
                r = manager_deleted_save(m);
        if (r < 0)
                log_warning_errno(r, "Cannot remember that collection '%s' was deleted: %m", name);
        r = shard_store_collection_delete(m->store, name);
        if (r < 0)
                return r;
        log_info("Deleted collection '%s'.", name);
        sharded_collection_done(c);
        *c = m->collections[--m->n_collections];
        return 0;
}

void manager_collection_gone(Manager *m, const char *name) {
        if (!manager_collection(m, name))
                return;
        log_notice("Collection '%s' was deleted in the mesh while this node was away; deleting it here.", name);
        (void) manager_collection_delete_here(m, name);
}

int manager_collection_delete(Manager *m, const char *name) {
        _cleanup_free_ char *copy = strdup(name);
        int r;

        if (!copy)
                return -ENOMEM;
        r = manager_collection_delete_here(m, copy);
        if (r < 0)
                return r;
        manager_collections_announce(m, &(ShardCollection) { .name = copy }, true);
        return 0;
}

bool manager_shard_ready(Manager *m, ShardedCollection *c, unsigned shard) {
        const char *holders[SHARD_REPLICAS_MAX];
        size_t n;

        if (c->ready[shard])
                return true;
        n = manager_holders(m, c->config, shard, holders);
        for (size_t h = 0; h < n; h++) {
                const ShardPeer *p = shard_members_find(&m->members, holders[h]);

                if (!streq(holders[h], m->node_id) && p && p->alive)
                        return false;
        }
        return true;
}

size_t manager_holders(Manager *m, const ShardCollection *c, unsigned shard, const char *ret[static SHARD_REPLICAS_MAX]) {
        int n = shard_holders(c->name, shard, m->members.ids, m->members.n_peers, c->replicas, ret);

        return n < 0 ? 0 : (size_t) n;
}

unsigned manager_write_quorum(Manager *m, const ShardCollection *c) {
        unsigned w = m->config->write_quorum ?: MIN(2U, c->replicas);

        return MAX(1U, MIN(w, (unsigned) m->members.n_peers));
}

void manager_members_changed(Manager *m) {
        struct timeval tv = { .tv_usec = 300 * 1000 };

        /* At once, before any search sees the new placement: a shard this node did not hold
         * before must be brought up to date before it answers. */
        for (size_t k = 0; k < m->n_collections; k++) {
                ShardedCollection *c = &m->collections[k];

                for (unsigned i = 0; i < c->config->n_shards; i++) {
                        const char *holders[SHARD_REPLICAS_MAX];
                        size_t n = manager_holders(m, c->config, i, holders);
                        bool held = false;

                        for (size_t h = 0; h < n; h++)
                                held = held || streq(holders[h], m->node_id);
                        if (held && !c->held[i])
                                c->ready[i] = false;
                        c->held[i] = held;
                }
        }

        /* Gossip reports a join or a death as several signals in a row: act once they settled. */
        (void) evtimer_add(m->members_timer, &tv);
}

static int make_id(char **ret) {
        sd_id128_t id;
        int r;

        r = sd_id128_randomize(&id);
        if (r < 0)
                return r;
        *ret = malloc(SD_ID128_STRING_MAX);
        if (!*ret)
                return -ENOMEM;
        sd_id128_to_string(id, *ret);
        return 0;
}

int manager_apply_local(Manager *m, ShardedCollection *c, const ShardChange *changes, size_t n_changes,
                        const ShardSourceCursor *cursor) {
        _cleanup_free_ bool *applied = calloc(n_changes ?: 1, sizeof(bool));
        int r, n;

        if (!applied)
                return -ENOMEM;
        n = shard_store_apply(m->store, c->config->name, changes, n_changes, cursor, applied);
        if (n < 0)
                return n;
        /* On disk. The index follows; a change it refuses (memory) is there after a restart. */
        for (size_t i = 0; i < n_changes; i++) {
                int shard = shard_of(c->config->name, changes[i].id, c->config->n_shards);
                ShardIndex *x = shard >= 0 ? c->shards[shard] : NULL;
                size_t before;

                if (!applied[i] || !x)
                        continue;
                before = shard_index_count(x);
                if (changes[i].op == SHARD_OP_DELETE)
                        r = shard_index_remove(x, changes[i].id);
                else
                        r = index_add_doc(x, changes[i].id, changes[i].embedding, changes[i].metadata,
                                          changes[i].metadata_size);
                if (r < 0 && r != -ENOENT)
                        log_warning_errno(r, "Document '%s' is stored but its index entry is not up to date until a restart: %m",
                                          changes[i].id);
                c->n_docs = c->n_docs + shard_index_count(x) - before;
        }
        return n;
}

int manager_put(Manager *m, ShardedCollection *c, const ShardPutRequest *req, sd_bus_message *reply_to) {
        _cleanup_free_ ShardChange *changes = calloc(req->n_docs, sizeof(ShardChange));
        char **ids = calloc(req->n_docs + 1, sizeof(char *));
        int r;

        if (!changes || !ids) {
                free(ids);
                return -ENOMEM;
        }
        for (size_t i = 0; i < req->n_docs; i++) {
                const ShardPutDoc *d = &req->docs[i];

                r = d->id ? ((ids[i] = strdup(d->id)) ? 0 : -ENOMEM) : make_id(&ids[i]);
                if (r < 0)
                        goto finish;
                /* A zero vector has no direction under cosine: refused before anything is stored. */
                if (c->config->metric == SHARD_METRIC_COSINE) {
                        bool zero = true;

                        for (unsigned k = 0; zero && k < c->config->dimension; k++)
                                zero = d->embedding[k] == 0;
                        if (zero) {
                                r = -EDOM;
                                goto finish;
                        }
                }
                changes[i] = (ShardChange) {
                        .op = SHARD_OP_PUT,
                        .id = ids[i],
                        .version = shard_clock_tick(&m->clock, now_ms()),
                        .embedding = d->embedding,
                        .dimension = c->config->dimension,
                        .text = d->text,
                        .text_size = d->text ? strlen(d->text) : 0,
                        .metadata = d->metadata,
                        .metadata_size = d->metadata ? strlen(d->metadata) : 0,
                };
                r = shard_change_validate(c->config, &changes[i]);
                if (r < 0)
                        goto finish;
        }
        r = manager_write_start(m, c, changes, req->n_docs, ids, reply_to);
finish:
        for (size_t i = 0; i < req->n_docs; i++)
                free(ids[i]);
        free(ids);
        return r;
}

int manager_delete_doc(Manager *m, ShardedCollection *c, const char *id, sd_bus_message *reply_to) {
        ShardChange change = { .op = SHARD_OP_DELETE, .id = id };

        if (isempty(id) || strlen(id) > SHARD_ID_MAX)
                return -ENOENT;
        change.version = shard_clock_tick(&m->clock, now_ms());
        return manager_write_start(m, c, &change, 1, NULL, reply_to);
}

int manager_search_local(Manager *m, ShardedCollection *c, const ShardQueryRequest *q, const bool *shards,
                         ShardAnswer *ret) {
        unsigned n_shards = c->config->n_shards;
        _cleanup_free_ ShardHit *hits = calloc((size_t) n_shards * q->k, sizeof(ShardHit));
        _cleanup_free_ ShardHitList *lists = calloc(n_shards, sizeof(ShardHitList));
        _cleanup_free_ ShardHit *top = calloc(q->k, sizeof(ShardHit));
        size_t n_lists = 0, n_top = 0;
        int r;

        if (!hits || !lists || !top)
                return -ENOMEM;
        for (unsigned i = 0; i < n_shards; i++) {
                ShardIndex *x = c->shards[i];
                size_t n = 0;

                if (!shards[i] || !x || shard_index_count(x) == 0)
                        continue;
                r = shard_index_search(x, q->embedding, 1, q->k, q->filter, hits + (size_t) i * q->k, &n);
                if (r < 0)
                        return r;
                lists[n_lists++] = (ShardHitList) { .hits = hits + (size_t) i * q->k, .n = n };
        }
        if (n_lists > 0) {
                r = shard_hits_merge(lists, n_lists, q->k, top, &n_top);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < n_top; i++) {
                _cleanup_free_ ShardDoc *doc = NULL;

                /* The text is kept in the store only; a document gone meanwhile has none. */
                if (shard_store_get(m->store, c->config->name, top[i].id, 0, &doc) < 0)
                        doc = NULL;
                r = shard_answer_add(ret, top[i].id, doc && doc->text_size > 0 ? doc->text : NULL,
                                     doc ? doc->text_size : 0, top[i].metadata, top[i].score);
                if (r < 0)
                        return r;
        }
        return 0;
}
