/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The shim's Manager: owns the event loop, the listeners (api, mesh), the bus connection, the
 * routing cache, the upstream connection pool and the requests in flight. */
#pragma once

#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <sys/time.h>
#include <systemd/sd-bus.h>

#include "bus-event.h"
#include "config.h"
#include "daemon.h"
#include "mesh-auth.h"
#include "mesh-http.h"
#include "mesh-credentials.h"
#include "route-table.h"
#include "shim-affinity.h"
#include "shim-request.h"

typedef struct Manager Manager;
typedef struct RouterCache RouterCache;
typedef struct UpstreamPool UpstreamPool;
typedef struct ProxyRequest ProxyRequest;
typedef struct SpreadRequest SpreadRequest;
typedef struct CollectionRequest CollectionRequest;
typedef struct ShimMetrics ShimMetrics;
typedef struct ShimStatus ShimStatus;
typedef struct BusReads BusReads;

/* File descriptors kept out of the connection cap's budget: the bus, the listeners, the event
 * loop, shardd's and the router's connections, logs. */
#define SHIM_FDS_RESERVED 256U

typedef enum ShimListenerKind {
        SHIM_LISTENER_API,      /* local Ollama clients: requests may be routed to peers */
        SHIM_LISTENER_MESH,     /* forwarded by peers: always served by this node's Ollama */
} ShimListenerKind;

typedef struct ShimListener {
        Manager *manager;
        ShimListenerKind kind;
        struct evhttp *http;
        struct evhttp_bound_socket *bound;
        bool inherited;         /* the socket came from systemd or the launcher, which keep it */
        char *address;          /* "ADDR:PORT" actually bound; "" when off */
        /* The connection cap (shimd-clients.c): connections open, the most allowed, and whether
         * accepting is paused because they are all taken. */
        unsigned n_connections;
        unsigned max_connections;
        bool accept_paused;
} ShimListener;

/* A client connection (shimd-clients.c), from its accept: busy from a request until its reply
 * is written out, else waiting for its (next) request, which must be complete by since +
 * idle_timeout. */
typedef struct ShimClient {
        struct evhttp_connection *evcon;
        ShimListener *listener; /* whose cap it counts in; NULL: not counted */
        usec_t since;           /* accepted, or its last reply written out */
        bool busy;
        bool served;            /* has had a request: a keep-alive connection */
} ShimClient;

/* A connection accepted in this turn of the loop, whose evhttp_connection is not made yet. */
typedef struct ShimAccepted {
        struct bufferevent *bev;        /* a reference of ours until picked up */
        ShimListener *listener;
        usec_t at;
} ShimAccepted;

/* Read on demand over D-Bus (Shim1 properties). */
typedef struct ShimCounters {
        uint64_t requests_total;
        uint64_t requests_failed;
        uint64_t rejected_busy;
        uint64_t rejected_too_large;
        uint64_t rejected_unauthenticated; /* mesh listener: no valid X-Mycelia-Auth */
        uint64_t client_cancelled;
        uint64_t upstream_errors;
        uint64_t cooling_waits;   /* requests that waited for a cooling node to recover */
        uint64_t accept_paused;   /* times a listener reached max_connections */
        uint64_t clients_timed_out; /* connections closed for not sending a whole request in time */
        uint64_t bytes_to_clients;
        /* Not on Shim1 (GET /metrics only): retries before the first byte. */
        uint64_t retries_fresh;         /* the same node on a fresh connection (pooled one closed) */
        uint64_t failovers_failure;     /* another node, after a connection failure */
        uint64_t failovers_status;      /* another node, after a 5xx answer */
        uint64_t resumes;               /* streams continued on another node mid-answer (docs/stream-resume.md) */
} ShimCounters;

struct Manager {
        const MyceliaConfig *config;
        char node_id[NODE_ID_LEN + 1];
        char *node_name;        /* in X-Mycelia-Served-By of what this node's Ollama answers */

        struct event_base *base;
        DaemonLoop *loop;
        BusReconnect *bus_reconnect;    /* the connection, made again after a loss */
        BusEvent *bus_event;    /* borrowed from bus_reconnect; NULL while there is no bus */
        sd_bus *bus;            /* borrowed from bus_event; NULL while there is no bus */
        sd_bus_slot *vtable_slot;
        sd_bus_slot *name_slot; /* the name requested again after a reconnect */

        ShimListener api;
        ShimListener mesh;
        HttpBaseUrl upstream;       /* config->upstream_url, parsed */

        RouterCache *router;
        UpstreamPool *pool;
        /* Context gravity: which node served which context blocks (shim-affinity.h), and the
         * bounded-load slack ([router] gravity_eps). */
        AffinityIndex *affinity;
        double gravity_eps;

        /* From the mesh keyring: signs requests forwarded to peers, checks the mesh listener's
         * (http), and TLS on the mesh listener and to peers' (tls; NULL without a key;
         * docs/mesh-tls.md, docs/key-rotation.md). */
        MeshCredentials creds;
        bool have_mesh_key;

        /* org.mycelia.Gossip1: where this shim's listeners are, published as metadata; its
         * KeysChanged, on which the keyring is read again. */
        sd_bus_slot *gossip_owner_slot;
        sd_bus_slot *gossip_keys_slot;

        LIST_HEAD(, ProxyRequest) requests;
        LIST_HEAD(, SpreadRequest) spreads;     /* shimd-spread.c */
        LIST_HEAD(, CollectionRequest) collections;     /* shimd-collections.c */
        unsigned requests_active;
        uint64_t next_request_id;
        ShimCounters counters;
        ShimMetrics *metrics;   /* requests by endpoint, model, code, node; scrapes (shimd-metrics.c) */
        ShimStatus *status;     /* recent flows; GET /api/mycelia/status (shimd-status.c) */
        LIST_HEAD(, BusReads) bus_reads;        /* properties being read (shimd-bus-reads.c) */
        int router_connected;   /* int, not bool: sd-bus reads "b" properties as int */

        struct timeval idle_tv;
        struct timeval connect_tv;
        struct timeval upstream_tv;

        /* Client connections, indexed by fd (shimd-clients.c). */
        ShimClient *clients;
        size_t n_clients;       /* entries allocated */
        unsigned clients_busy;
        unsigned clients_open;  /* both listeners; read as "u" by Shim1.Connections */
        ShimAccepted *accepted; /* accepted, not yet picked up */
        size_t n_accepted, n_accepted_allocated;
        struct event *accepted_event;
        struct event *clients_timer;    /* the request deadline, checked every second */
        usec_t cap_logged_at;

        /* SIGTERM: the graceful stop (shimd-drain.c, docs/shim-drain.md). */
        bool draining;
        bool drained;           /* nothing left in flight: exit */
        bool drain_expired;     /* drain_timeout passed: the rest was cancelled */
        bool drain_grace_over;  /* and the cancelled replies had their time to go out */
        struct event *drain_timer;
        struct event *drain_check;
};

/* The event loop, the upstream pool, the router cache; no listeners, no bus yet. Logs what
 * failed. */
int manager_new(const MyceliaConfig *config, Manager **ret);
/* Frees the event loop last. */
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Binds or takes the listeners, connects the bus, tells systemd we are ready. */
int manager_start(Manager *m);
/* Runs the loop until SIGTERM/SIGINT, then the drain (manager_drain()); 0 or negative errno. */
int manager_run(Manager *m);

/* A request in flight ended or a client connection went: while draining, see (from the loop)
 * whether that was the last one. */
void manager_drain_check(Manager *m);

/* shimd-drain.c: the graceful stop. After the first SIGTERM/SIGINT: stops accepting, closes
 * idle connections, lets the requests in flight finish for up to drain_timeout, cancels the
 * rest, flushes outcome reports. A second signal ends it at once. */
int manager_drain(Manager *m);
int manager_drain_init(Manager *m);
void manager_drain_free(Manager *m);

/* shimd-bus.c: the Shim1 object and name on m->bus; the name synchronously at start (it is ours
 * before READY), asynchronously after a reconnect (the listeners must not wait). */
int manager_bus_publish(Manager *m, bool reconnected);

/* shimd-gossip.c: publishes "api" and "mesh" now and whenever gossipd (re)appears; called again
 * after each reconnect. */
int manager_gossip_start(Manager *m);
/* Reads the mesh keyring again (gossipd changed it): new signatures and TLS handshakes use it. */
int manager_mesh_keys_reload(Manager *m);
