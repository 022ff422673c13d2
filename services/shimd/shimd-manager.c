/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Manager: one event_base running the listeners (api, and mesh when configured), the
 * sd-bus connection, the routing cache and the upstream pool, from start to SIGTERM. */
#include <event2/http.h>
#include <event2/util.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "bus-names.h"
#include "log.h"
#include "mesh-http.h"
#include "mesh-key.h"
#include "shimd-audit.h"
#include "shimd-auth.h"
#include "shimd-clients.h"
#include "shimd-collections.h"
#include "shimd-errors.h"
#include "shimd-manager.h"
#include "shimd-bus-reads.h"
#include "shimd-metrics.h"
#include "shimd-status.h"
#include "shimd-proxy.h"
#include "shimd-router-cache.h"
#include "shimd-spread.h"
#include "shimd-upstream.h"

/* Idle keep-alive connections kept per upstream. */
#define UPSTREAM_IDLE_MAX 64

/* The router cache's news that a node left the table or went down, for the proxy. */
static void manager_node_lost(const char *node_id, const char *hostport, bool removed, void *userdata) {
        proxy_node_lost(userdata, node_id, hostport, removed);
}

static int manager_parse_gravity_eps(const char *s, double *ret) {
        char *end = NULL;
        double v;

        if (isempty(s))
                return -EINVAL;
        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || end == s || *end != '\0' || !(v > 0) || v > 10)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* [shim] max_connections for each listener, as far as the fd limit allows: each client
 * connection may hold one upstream connection too (to Ollama or a peer), and both listeners may
 * be full at once. The soft RLIMIT_NOFILE is raised to the hard one first (systemd gives
 * services 1024 soft, 524288 hard: raising is left to the program). */
static void manager_connection_cap(Manager *m) {
        unsigned cap = m->config->max_connections;
        uint64_t soft = 0, room;
        int r;

        r = daemon_fd_limit_raise(&soft);
        if (r < 0)
                log_debug_errno(r, "Failed to raise RLIMIT_NOFILE: %m");
        room = soft > SHIM_FDS_RESERVED ? (soft - SHIM_FDS_RESERVED) / 4 : 1;
        if (soft > 0 && cap > room) {
                log_notice("The file descriptor limit (%" PRIu64 ") allows %" PRIu64 " client connections per listener, "
                           "not %u ([shim] max_connections); raise LimitNOFILE= to allow more.", soft, room, cap);
                cap = (unsigned) room;
        }
        m->api.max_connections = m->mesh.max_connections = MAX(cap, 1U);
}

int manager_new(const MyceliaConfig *config, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        /* The API's tokens and the audit trail check their options first (docs/api-auth.md,
         * docs/audit.md). */
        r = shim_auth_setup(config);
        if (r < 0)
                return r;
        shim_audit_setup(config);

        m = calloc(1, sizeof(*m));
        if (!m)
                return log_oom();
        m->config = config;
        LIST_INIT(&m->requests);
        LIST_INIT(&m->spreads);
        LIST_INIT(&m->collections);
        m->api = (ShimListener) { .manager = m, .kind = SHIM_LISTENER_API };
        m->mesh = (ShimListener) { .manager = m, .kind = SHIM_LISTENER_MESH };

        r = daemon_node_id_get(config->node_id, config->state_dir, m->node_id);
        if (r < 0)
                return r;
        r = node_name_get(config, &m->node_name);
        if (r < 0)
                return log_error_errno(r, "Failed to determine the node name: %m");
        r = manager_parse_gravity_eps(config->gravity_eps, &m->gravity_eps);
        if (r < 0)
                return log_error_errno(r, "Invalid [router] gravity_eps '%s': want a number above 0, at most 10.",
                                       config->gravity_eps);
        r = affinity_index_new(AFFINITY_INDEX_DEFAULT_SIZE, &m->affinity);
        if (r < 0)
                return log_oom();
        r = http_base_url_parse(config->upstream_url, &m->upstream);
        if (r < 0)
                return log_error_errno(r, "Invalid upstream URL '%s' (want http://HOST:PORT): %m", config->upstream_url);

        m->idle_tv = usec_to_timeval(config->idle_timeout);
        m->connect_tv = usec_to_timeval(config->connect_timeout);
        m->upstream_tv = usec_to_timeval(config->upstream_timeout);

        /* The changelist folds the many enable/disable pairs of one loop iteration (evhttp
         * toggles EV_READ/EV_WRITE several times per request) into one epoll_ctl() each. It
         * is unsafe only with dup()ed fds, which we never register. */
        r = daemon_loop_new(EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST, &m->base, &m->loop);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the event loop: %m");
        r = upstream_pool_new(m->base, UPSTREAM_IDLE_MAX, &m->pool);
        if (r < 0)
                return log_oom();
        r = router_cache_new(m, manager_node_lost, m, &m->router);
        if (r < 0)
                return log_oom();
        r = manager_drain_init(m);
        if (r < 0)
                return log_oom();
        r = manager_clients_init(m);
        if (r < 0)
                return log_oom();
        r = metrics_new(&m->metrics);
        if (r < 0)
                return log_oom();
        r = status_new(&m->status);
        if (r < 0)
                return log_oom();
        manager_connection_cap(m);

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        proxy_abort_all(m);
        spread_abort_all(m);
        collections_abort_all(m);
        m->metrics = metrics_free(m, m->metrics);
        m->status = status_free(m, m->status);
        /* evhttp_free() frees the listeners before the connections, whose close callbacks
         * must then not enable them again. */
        m->api.bound = m->mesh.bound = NULL;
        if (m->api.http)
                evhttp_free(m->api.http);
        if (m->mesh.http)
                evhttp_free(m->mesh.http);
        /* After the listeners: freeing their connections runs manager_client_closed_cb(). */
        manager_drain_free(m);
        manager_clients_free(m);
        free(m->api.address);
        free(m->mesh.address);
        m->router = router_cache_free(m->router);
        m->pool = upstream_pool_free(m->pool);
        m->affinity = affinity_index_free(m->affinity);
        free(m->node_name);
        sd_bus_slot_unref(m->gossip_owner_slot);
        sd_bus_slot_unref(m->gossip_keys_slot);
        sd_bus_slot_unref(m->name_slot);
        sd_bus_slot_unref(m->vtable_slot);
        bus_reconnect_free(m->bus_reconnect);
        daemon_loop_free(m->loop);
        daemon_base_settle(m->base);
        /* Last: every TLS connection (pool, clients) is gone. */
        mesh_credentials_done(&m->creds);
        if (m->base)
                event_base_free(m->base);
        shim_auth_done();
        shim_audit_done();
        free(m);
        return NULL;
}

/* Takes the socket systemd passed as fdname, else binds address; an empty address with no
 * socket passed leaves the listener off. */
static int manager_listen(Manager *m, ShimListener *l, const char *fdname, const char *address) {
        char bound[128];
        int fd, r;

        fd = listen_fd_take(fdname);
        l->inherited = fd >= 0;
        if (fd == -ENOENT) {
                if (isempty(address)) {
                        l->address = strdup("");
                        return l->address ? 0 : log_oom();
                }
                r = listen_tcp(address, &fd);
                if (r < 0)
                        return log_error_errno(r, "Failed to listen on %s (%s): %m", address, fdname);
        } else if (fd < 0)
                return log_error_errno(fd, "Failed to take the '%s' socket: %m", fdname);

        (void) evutil_make_socket_nonblocking(fd);
        r = sockaddr_format_local(fd, bound, sizeof(bound));
        if (r < 0) {
                (void) close(fd);
                return log_error_errno(r, "Failed to read the address of the '%s' socket: %m", fdname);
        }

        l->http = evhttp_new(m->base);
        l->address = strdup(bound);
        if (!l->http || !l->address) {
                (void) close(fd);
                return log_oom();
        }
        evhttp_set_gencb(l->http, proxy_handle_request, l);
        /* Counts connections from their accept, for the cap and the request deadline. */
        evhttp_set_bevcb(l->http, manager_client_bev_new, l);
        evhttp_set_allowed_methods(l->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                                    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS);
        evhttp_set_timeout_tv(l->http, &m->idle_tv);
        evhttp_set_max_headers_size(l->http, m->config->max_header_size);
        evhttp_set_max_body_size(l->http, m->config->max_body_size);
        /* Responses carry the upstream's Content-Type or none, never libevent's text/html. */
        evhttp_set_default_content_type(l->http, NULL);

        l->bound = evhttp_accept_socket_with_handle(l->http, fd);
        if (!l->bound) {
                (void) close(fd);
                return log_error_errno(EIO, "Failed to accept connections on %s: %m", bound);
        }
        log_info("Serving the %s API on %s.", fdname, bound);
        return 0;
}

int manager_mesh_keys_reload(Manager *m) {
        return mesh_credentials_reload(&m->creds, m->config->state_dir, m->config->mesh_key);
}

/* The mesh keyring (the mesh key, or the keys gossipd keeps in STATE_DIR/keyring: docs/key-rotation.md)
 * signs what this node forwards and checks what peers forward to it. Without a key the API
 * still serves from the local Ollama (a node is useful alone), nothing is forwarded to peers,
 * and a mesh listener refuses every request (401: no authenticator can be checked), so it is
 * never an open relay. */
static int manager_load_mesh_key(Manager *m) {
        const char *path = m->config->mesh_key;
        int r;

        r = mesh_credentials_load(&m->creds, m->config->state_dir, path, MESH_TLS_API);
        if (r == -EIO)
                return r;
        if (r >= 0) {
                m->have_mesh_key = true;
                log_debug("Mesh keys loaded: %zu key(s).", m->creds.http.n);
                return 0;
        }
        if (m->mesh.http)
                log_error_errno(r, "The mesh listener on %s needs the mesh key, but %s could not be loaded: %m. "
                                "It refuses every request until one is there (myceliactl keygen, or [node] "
                                "mesh_key / --mesh-key) and mycelia-shimd is restarted.",
                                m->mesh.address, isempty(path) ? "(none configured)" : path);
        else
                log_info("No mesh key (%s: %s); requests are not forwarded to peers.",
                         isempty(path) ? "(none)" : path, strerror(-r));
        return 0;
}

/* A connection to the bus (at start, or a new one after dbus-daemon came back or was not there
 * at start): Shim1 and its name, Router1's table (read again: RouterConnected follows), and this
 * shim's addresses for gossipd. */
static int manager_bus_connected(BusEvent *b, sd_bus *bus, bool reconnected, void *userdata) {
        Manager *m = userdata;
        int r;

        m->bus_event = b;
        m->bus = bus;
        if (reconnected)
                log_info("Connected to the bus; registering %s and reading the routing table.", SHIM1_BUS_NAME);
        r = manager_bus_publish(m, reconnected);
        if (r < 0)
                return r;
        r = router_cache_start(m->router);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to subscribe to %s: %m", ROUTER1_BUS_NAME);
        r = manager_gossip_start(m);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to watch %s: %m", GOSSIP1_BUS_NAME);
        if (reconnected)
                /* "Bus lost, reconnecting" (bus-reconnect.c) is over. */
                daemon_notify_status("Serving the Ollama API on %s, upstream %s", m->api.address,
                                     m->config->upstream_url);
        return 0;
}

/* Requests keep being served: routed by the last table the router cache read, or by the local
 * Ollama when it never read one. */
static void manager_bus_lost(void *userdata) {
        Manager *m = userdata;

        log_warning("Lost the D-Bus connection; routing from the last table read and reconnecting.");
        router_cache_bus_lost(m->router);
        bus_reads_bus_lost(m);
        m->gossip_owner_slot = sd_bus_slot_unref(m->gossip_owner_slot);
        m->gossip_keys_slot = sd_bus_slot_unref(m->gossip_keys_slot);
        m->name_slot = sd_bus_slot_unref(m->name_slot);
        m->vtable_slot = sd_bus_slot_unref(m->vtable_slot);
        m->bus = NULL;
        m->bus_event = NULL;
}

static const BusReconnectOps manager_bus_ops = {
        .connected = manager_bus_connected,
        .lost = manager_bus_lost,
};

int manager_start(Manager *m) {
        const MyceliaConfig *c = m->config;
        int r;

        r = manager_listen(m, &m->api, "api", c->api_listen);
        if (r < 0)
                return r;
        r = manager_listen(m, &m->mesh, "mesh", c->mesh_listen);
        if (r < 0)
                return r;
        r = manager_load_mesh_key(m);
        if (r < 0)
                return r;
        /* Both decide from the address the API listener really has. */
        shim_audit_start(m);
        r = shim_auth_start(m);
        if (r < 0)
                return r;

        shim_error_pages_setup(&(ShimErrorPages) {
                .max_body_size = c->max_body_size,
                .max_header_size = c->max_header_size,
                .rejected_too_large = &m->counters.rejected_too_large,
                .served_by = m->node_name,
        });

        r = bus_reconnect_new(m->base, c->bus_address, &manager_bus_ops, m, &m->bus_reconnect);
        if (r < 0)
                return log_oom();
        r = bus_reconnect_start(m->bus_reconnect, true);
        if (r < 0)
                /* Connected, but Shim1 could not be published (its name refused): as before. */
                return r;
        if (!bus_reconnect_is_connected(m->bus_reconnect))
                /* The front door serves without a bus: everything goes to the local Ollama until a
                 * connection is made. */
                log_warning_errno(bus_reconnect_last_error(m->bus_reconnect),
                                  "Failed to connect to D-Bus, running without routing until it is there: %m");

        (void) sd_notifyf(0,
                          "READY=1\n"
                          "STATUS=Serving the Ollama API on %s, upstream %s\n"
                          "X_MYCELIA_API=%s%s%s",
                          m->api.address, c->upstream_url, m->api.address,
                          m->mesh.http ? "\nX_MYCELIA_MESH=" : "", m->mesh.http ? m->mesh.address : "");
        return 0;
}

int manager_run(Manager *m) {
        /* Until SIGTERM or SIGINT (daemon_loop_new() breaks the loop and says STOPPING=1). */
        if (event_base_dispatch(m->base) < 0)
                return log_error_errno(EIO, "Event loop failed.");
        return manager_drain(m);
}

void manager_drain_check(Manager *m) {
        if (m->draining && !m->drained && m->drain_check)
                event_active(m->drain_check, EV_TIMEOUT, 1);
}
