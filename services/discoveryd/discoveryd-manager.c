/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Wires mycelia-discoveryd together on its event loop: ports to publish (config, then gossipd's
 * LocalNode), the Avahi sightings and the seed rounds feeding the peer table, whose diffs
 * become bus signals. */
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>

#include "daemon.h"
#include "discoveryd-manager.h"
#include "log.h"

/* ---- seeds: numeric ones inline, host names in a thread (getaddrinfo may block) ---- */

typedef struct SeedResult {
        char *host;
        char port[8];
        bool numeric;
        int gai_error;                  /* 0, or EAI_* */
        char **addrs;
        size_t n_addrs;
} SeedResult;

struct SeedJob {
        pthread_t thread;
        pthread_mutex_t lock;
        bool done;                      /* under lock */
        bool abandoned;                 /* under lock: the manager is gone, the thread frees */
        int pipe[2];
        SeedResult *results;
        size_t n_results;
};

static void seed_results_free(SeedResult *r, size_t n) {
        for (size_t i = 0; r && i < n; i++) {
                free(r[i].host);
                for (size_t j = 0; j < r[i].n_addrs; j++)
                        free(r[i].addrs[j]);
                free(r[i].addrs);
        }
        free(r);
}

static void seed_job_free(SeedJob *j) {
        if (!j)
                return;
        seed_results_free(j->results, j->n_results);
        if (j->pipe[0] >= 0)
                close(j->pipe[0]);
        if (j->pipe[1] >= 0)
                close(j->pipe[1]);
        pthread_mutex_destroy(&j->lock);
        free(j);
}

static void seed_resolve_one(SeedResult *r) {
        struct addrinfo hints = {
                .ai_family = AF_UNSPEC,
                .ai_socktype = SOCK_DGRAM,      /* one entry per address */
                /* No AI_ADDRCONFIG: a seed's families do not depend on ours at this moment. */
                .ai_flags = AI_NUMERICSERV | (r->numeric ? AI_NUMERICHOST : 0),
        };
        struct addrinfo *res = NULL;

        r->gai_error = getaddrinfo(r->host, r->port, &hints, &res);
        if (r->gai_error != 0)
                return;
        r->addrs = calloc(PEER_GOSSIP_MAX, sizeof(char *));
        if (!r->addrs) {
                r->gai_error = EAI_MEMORY;
                freeaddrinfo(res);
                return;
        }
        for (struct addrinfo *ai = res; ai && r->n_addrs < PEER_GOSSIP_MAX; ai = ai->ai_next) {
                char buf[SEED_ADDR_STRING_MAX];
                bool dup = false;

                if (seed_format_sockaddr(ai->ai_addr, ai->ai_addrlen, buf, sizeof(buf)) < 0)
                        continue;       /* link-local IPv6 and other unusable ones */
                for (size_t i = 0; i < r->n_addrs; i++)
                        dup = dup || streq(r->addrs[i], buf);
                if (dup)
                        continue;
                r->addrs[r->n_addrs] = strdup(buf);
                if (!r->addrs[r->n_addrs])
                        break;
                r->n_addrs++;
        }
        freeaddrinfo(res);
}

static void *seed_job_thread(void *userdata) {
        SeedJob *j = userdata;
        bool abandoned;

        for (size_t i = 0; i < j->n_results; i++)
                if (!j->results[i].numeric)
                        seed_resolve_one(&j->results[i]);

        pthread_mutex_lock(&j->lock);
        j->done = true;
        abandoned = j->abandoned;
        pthread_mutex_unlock(&j->lock);
        if (abandoned)
                seed_job_free(j);
        else
                (void) write(j->pipe[1], "x", 1);
        return NULL;
}

static void manager_seed_job_abandon(Manager *m) {
        SeedJob *j = TAKE_PTR(m->seed_job);
        bool done;

        if (m->seed_job_event) {
                event_free(m->seed_job_event);
                m->seed_job_event = NULL;
        }
        if (!j)
                return;
        pthread_mutex_lock(&j->lock);
        done = j->done;
        if (!done)
                j->abandoned = true;
        pthread_mutex_unlock(&j->lock);
        if (done) {
                (void) pthread_join(j->thread, NULL);
                seed_job_free(j);
        } else
                /* getaddrinfo cannot be interrupted; the thread frees the job when it returns. */
                (void) pthread_detach(j->thread);
}

static void manager_seeds_apply(Manager *m, SeedResult *results, size_t n) {
        _cleanup_free_ PeerSpec *specs = NULL;
        size_t n_specs = 0;
        int r;

        specs = calloc(MAX(n, 1), sizeof(PeerSpec));
        if (!specs) {
                log_oom();
                return;
        }
        for (size_t i = 0; i < n; i++) {
                const Seed *s = &m->seeds[i];
                PeerSpec spec = { .name = s->spec, .id = "", .mesh = "" };

                if (results[i].gai_error == 0) {
                        spec.gossip = results[i].addrs;
                        spec.n_gossip = results[i].n_addrs;
                        if (spec.n_gossip == 0)
                                log_debug("Seed %s has no usable address (IPv6 link-local ones are skipped).",
                                          s->spec);
                } else {
                        Peer *old = peer_table_find(&m->peers, PEER_SOURCE_SEED, s->spec);

                        /* A name server that does not answer right now is no reason to forget. */
                        if (results[i].gai_error == EAI_AGAIN && old) {
                                spec.gossip = old->gossip;
                                spec.n_gossip = old->n_gossip;
                        }
                        if (m->n_seed_rounds <= 1 || !old)
                                log_warning("Failed to resolve seed %s: %s", s->spec, gai_strerror(results[i].gai_error));
                }
                specs[n_specs++] = spec;
        }
        /* The specs may point into old peers' gossip lists: sync copies before it frees. */
        r = peer_table_sync(&m->peers, PEER_SOURCE_SEED, specs, n_specs);
        if (r < 0)
                log_warning_errno(r, "Failed to store the seeds: %m");
}

static void seed_job_done_cb(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;
        SeedJob *j = TAKE_PTR(m->seed_job);
        char c;

        (void) read(fd, &c, 1);
        event_free(m->seed_job_event);
        m->seed_job_event = NULL;
        (void) pthread_join(j->thread, NULL);
        manager_seeds_apply(m, j->results, j->n_results);
        seed_job_free(j);
}

static void manager_seeds_round(Manager *m) {
        SeedJob *j;
        bool need_thread = false;
        int r;

        if (m->n_seeds == 0 || m->seed_job)
                return;         /* a round still running (slow DNS) covers this one */
        m->n_seed_rounds++;

        j = calloc(1, sizeof(*j));
        if (!j) {
                log_oom();
                return;
        }
        j->pipe[0] = j->pipe[1] = -1;
        pthread_mutex_init(&j->lock, NULL);
        j->results = calloc(m->n_seeds, sizeof(SeedResult));
        if (!j->results) {
                seed_job_free(j);
                log_oom();
                return;
        }
        j->n_results = m->n_seeds;
        for (size_t i = 0; i < m->n_seeds; i++) {
                SeedResult *res = &j->results[i];

                res->host = strdup(m->seeds[i].host);
                if (!res->host) {
                        seed_job_free(j);
                        log_oom();
                        return;
                }
                snprintf(res->port, sizeof(res->port), "%u", m->seeds[i].port);
                res->numeric = m->seeds[i].numeric;
                if (res->numeric)
                        seed_resolve_one(res);  /* AI_NUMERICHOST: never blocks */
                else
                        need_thread = true;
        }
        if (!need_thread) {
                manager_seeds_apply(m, j->results, j->n_results);
                seed_job_free(j);
                return;
        }

        if (pipe2(j->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
                log_warning_errno(errno, "Failed to create a pipe for the seed resolver: %m");
                seed_job_free(j);
                return;
        }
        m->seed_job_event = event_new(m->base, j->pipe[0], EV_READ, seed_job_done_cb, m);
        if (!m->seed_job_event || event_add(m->seed_job_event, NULL) < 0) {
                log_oom();
                if (m->seed_job_event)
                        event_free(m->seed_job_event);
                m->seed_job_event = NULL;
                seed_job_free(j);
                return;
        }
        r = pthread_create(&j->thread, NULL, seed_job_thread, j);
        if (r != 0) {
                log_warning_errno(r, "Failed to start the seed resolver thread: %m");
                event_free(m->seed_job_event);
                m->seed_job_event = NULL;
                seed_job_free(j);
                return;
        }
        m->seed_job = j;
}

static void seed_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        manager_seeds_round(userdata);
}

/* ---- ports and publishing ---- */

static uint16_t port_of(const char *addr_port) {
        uint16_t port = 0;

        if (isempty(addr_port) || seed_split(addr_port, NULL, &port) < 0)
                return 0;
        return port;
}

void manager_get_ports(Manager *m, uint16_t *ret_mesh, uint16_t *ret_gossip) {
        *ret_mesh = m->gossip_mesh_port ?: m->config_mesh_port;
        *ret_gossip = m->gossip_gossip_port ?: m->config_gossip_port;
}

static void manager_update_publish(Manager *m) {
        uint16_t mesh, gossip;

        manager_get_ports(m, &mesh, &gossip);
        if (!m->avahi)
                return;
        if (discovery_avahi_set_service(m->avahi, m->local_name, mesh, gossip) > 0) {
                if (mesh == 0 || gossip == 0)
                        log_info("Not publishing on mDNS yet: %s port unknown (waiting for %s).",
                                 mesh == 0 ? "mesh API" : "gossip", GOSSIP1_BUS_NAME);
                else
                        log_debug("Service to publish: mesh port %u, gossip port %u.", mesh, gossip);
        }
}

static void manager_schedule_local_poll(Manager *m) {
        uint16_t mesh, gossip;
        struct timeval tv;
        usec_t u;

        manager_get_ports(m, &mesh, &gossip);
        u = mesh == 0 || gossip == 0 ? DISCOVERY_LOCAL_POLL_FAST_USEC : DISCOVERY_LOCAL_POLL_SLOW_USEC;
        tv.tv_sec = (time_t) (u / USEC_PER_SEC);
        tv.tv_usec = (suseconds_t) (u % USEC_PER_SEC);
        (void) evtimer_add(m->local_poll_timer, &tv);
}

void manager_set_gossip_ports(Manager *m, uint16_t gossip_port, uint16_t mesh_port) {
        if (gossip_port == m->gossip_gossip_port && mesh_port == m->gossip_mesh_port)
                return;
        log_debug("%s says gossip port %u, mesh port %u.", GOSSIP1_BUS_NAME, gossip_port, mesh_port);
        /* 0 from gossipd (no mesh metadata yet) keeps what we had: it only ever adds. */
        if (gossip_port != 0)
                m->gossip_gossip_port = gossip_port;
        if (mesh_port != 0)
                m->gossip_mesh_port = mesh_port;
        manager_update_publish(m);
}

static void local_poll_cb(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;

        (void) manager_bus_read_local_node(m);
        manager_schedule_local_poll(m);
}

/* ---- peers ---- */

static void manager_peer_event(PeerEvent event, const Peer *p, void *userdata) {
        Manager *m = userdata;
        int r;

        if (event == PEER_DISCOVERED) {
                m->n_discovered_signals++;
                log_info("Peer '%s' (%s%s%s) at gossip %s%s%s.", p->name, peer_source_to_string(p->source),
                         isempty(p->id) ? "" : ", ", strempty(p->id), p->n_gossip > 0 ? p->gossip[0] : "-",
                         isempty(p->mesh) ? "" : ", mesh ", strempty(p->mesh));
        } else {
                m->n_vanished_signals++;
                log_info("Peer '%s' (%s) vanished.", p->name, peer_source_to_string(p->source));
        }
        r = manager_bus_emit_peer(m, event, p);
        if (r < 0)
                log_warning_errno(r, "Failed to emit a peer signal: %m");
}

static void avahi_found(void *userdata, const char *name, const char *key, const char *id, const char *mesh,
                        const char *gossip) {
        Manager *m = userdata;
        char *const g[] = { (char *) gossip };
        int r;

        r = peer_table_put(&m->peers, PEER_SOURCE_MDNS, name, key, id, mesh, g, 1);
        if (r == -E2BIG)
                log_debug("Peer table full (%zu peers); '%s' not kept.", m->peers.n_peers, name);
        else if (r < 0)
                log_warning_errno(r, "Failed to store peer '%s': %m", name);
}

static void avahi_lost(void *userdata, const char *name, const char *key) {
        Manager *m = userdata;

        (void) peer_table_drop(&m->peers, PEER_SOURCE_MDNS, name, key);
}

static void avahi_lost_all(void *userdata) {
        Manager *m = userdata;

        peer_table_drop_source(&m->peers, PEER_SOURCE_MDNS);
}

static const DiscoveryAvahiOps avahi_ops = {
        .found = avahi_found,
        .lost = avahi_lost,
        .lost_all = avahi_lost_all,
};

/* ---- bus name, lifetime ---- */

static void manager_exit(Manager *m, int code) {
        if (m->exit_code == 0)
                m->exit_code = code;
        (void) event_base_loopbreak(m->base);
}

static int manager_request_name_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        char status[256];
        int r;

        r = bus_request_name_result(m->bus, reply, DISCOVERY1_BUS_NAME);
        if (r < 0)
                manager_exit(m, EXIT_FAILURE);
        if (r <= 0)
                return 0;
        snprintf(status, sizeof(status), "Serving; mDNS %s, %zu seed(s)", m->avahi ? "on" : "off", m->n_seeds);
        if (m->ready) {
                log_info("Serving %s again.", DISCOVERY1_BUS_NAME);
                daemon_notify_status("%s", status);
                return 0;
        }
        m->ready = true;
        log_info("Serving %s at %s, node %s (%s); mDNS %s, %zu seed(s).", DISCOVERY1_BUS_NAME,
                 DISCOVERY1_OBJECT_PATH, m->local_name, m->local_id, m->avahi ? "on" : "off", m->n_seeds);
        daemon_notify_ready(status);
        return 0;
}

/* A connection to the bus (the first, or a new one after dbus-daemon came back): Discovery1, the
 * name, gossipd's signals and LocalNode. gossipd re-reads Peers when the name appears. */
static int manager_bus_connected(BusEvent *b, sd_bus *bus, bool reconnected, void *userdata) {
        Manager *m = userdata;
        int r;

        m->bus_event = b;
        m->bus = bus;
        if (reconnected)
                log_info("Connected to the bus again; registering %s.", DISCOVERY1_BUS_NAME);

        r = manager_bus_register(m);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to register %s: %m", DISCOVERY1_OBJECT_PATH);
        r = manager_bus_watch_gossip(m);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to watch %s on the bus: %m", GOSSIP1_BUS_NAME);
        r = sd_bus_request_name_async(m->bus, &m->name_slot, DISCOVERY1_BUS_NAME, 0, manager_request_name_cb, m);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to request the bus name %s: %m", DISCOVERY1_BUS_NAME);
        (void) manager_bus_read_local_node(m);
        return 0;
}

/* Avahi, the seeds and the peer table go on; their signals are not sent until the bus is back. */
static void manager_bus_lost(void *userdata) {
        Manager *m = userdata;

        if (m->ready)
                log_warning("Lost the connection to the bus; discovering on and reconnecting.");
        m->local_node_call = sd_bus_slot_unref(m->local_node_call);
        m->gossip_signal_slot = sd_bus_slot_unref(m->gossip_signal_slot);
        m->gossip_owner_slot = sd_bus_slot_unref(m->gossip_owner_slot);
        m->name_slot = sd_bus_slot_unref(m->name_slot);
        m->vtable_slot = sd_bus_slot_unref(m->vtable_slot);
        m->bus = NULL;
        m->bus_event = NULL;
}

static const BusReconnectOps manager_bus_ops = {
        .connected = manager_bus_connected,
        .lost = manager_bus_lost,
};

int manager_new(const MyceliaConfig *config, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        const char *env;
        size_t bad = 0;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->config = config;
        r = daemon_loop_new(0, &m->base, &m->loop);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the event loop: %m");
        peer_table_init(&m->peers, PEERS_MAX, manager_peer_event, m);

        r = daemon_node_id_get(config->node_id, config->state_dir, m->local_id);
        if (r < 0)
                return r;
        r = node_name_get(config, &m->local_name);
        if (r < 0)
                return log_error_errno(r, "Failed to determine the node name: %m");

        r = seeds_parse(config->seeds, &m->seeds, &m->n_seeds, &bad);
        if (r == -E2BIG)
                return log_error_errno(r, "More than %d seeds ([discovery] seeds, --seed).", SEEDS_MAX);
        if (r < 0)
                return log_error_errno(r, "Invalid seed #%zu in '%s' ([discovery] seeds, --seed); expected HOST:PORT or [IPV6]:PORT.",
                                       bad + 1, strempty(config->seeds));

        m->config_mesh_port = port_of(config->mesh_listen);
        m->config_gossip_port = port_of(isempty(config->gossip_advertise) ? config->gossip_listen
                                                                          : config->gossip_advertise);

        /* avahi-client connects with libdbus to "the system bus", which libdbus takes from
         * DBUS_SYSTEM_BUS_ADDRESS once per process. Our own bus is pinned first, then the variable
         * is pointed at avahi's bus, before any thread exists. */
        env = getenv("DBUS_SYSTEM_BUS_ADDRESS");
        m->bus_address = strdup(!isempty(config->bus_address) ? config->bus_address
                                : !isempty(env)              ? env
                                                             : DISCOVERY_DEFAULT_SYSTEM_BUS);
        if (!m->bus_address)
                return log_oom();
        if (config->mdns && !isempty(config->avahi_bus) && setenv("DBUS_SYSTEM_BUS_ADDRESS", config->avahi_bus, 1) < 0)
                return log_error_errno(errno, "Failed to set DBUS_SYSTEM_BUS_ADDRESS: %m");

        m->seed_timer = event_new(m->base, -1, EV_PERSIST, seed_timer_cb, m);
        m->local_poll_timer = evtimer_new(m->base, local_poll_cb, m);
        if (!m->seed_timer || !m->local_poll_timer)
                return log_oom();

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        manager_seed_job_abandon(m);
        m->avahi = discovery_avahi_free(m->avahi);
        sd_bus_slot_unref(m->local_node_call);
        sd_bus_slot_unref(m->gossip_signal_slot);
        sd_bus_slot_unref(m->gossip_owner_slot);
        sd_bus_slot_unref(m->name_slot);
        sd_bus_slot_unref(m->vtable_slot);
        bus_reconnect_free(m->bus_reconnect);
        if (m->seed_timer)
                event_free(m->seed_timer);
        if (m->local_poll_timer)
                event_free(m->local_poll_timer);
        /* No signals from here on. */
        m->peers.event_fn = NULL;
        peer_table_clear(&m->peers);
        seeds_free(m->seeds, m->n_seeds);
        free(m->bus_address);
        free(m->local_name);
        daemon_loop_free(m->loop);
        if (m->base)
                event_base_free(m->base);
        free(m);
        return NULL;
}

int manager_start(Manager *m) {
        struct timeval tv = { .tv_sec = DISCOVERY_SEED_INTERVAL_USEC / USEC_PER_SEC };
        int r;

        r = daemon_bus_connect(m->base, m->bus_address, &manager_bus_ops, m, &m->bus_reconnect);
        if (r < 0)
                return r;
        manager_schedule_local_poll(m);

        if (m->config->mdns) {
                r = discovery_avahi_new(m->base, m->local_id, &avahi_ops, m, &m->avahi);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up Avahi: %m");
                manager_update_publish(m);
        } else
                log_info("mDNS is off ([discovery] mdns=no).");

        if (m->n_seeds > 0) {
                manager_seeds_round(m);
                if (event_add(m->seed_timer, &tv) < 0)
                        return log_oom();
        }
        return 0;
}

int manager_run(Manager *m) {
        /* Until SIGTERM/SIGINT (daemon_loop_new() breaks the loop and says STOPPING=1) or
         * manager_exit(). */
        if (event_base_dispatch(m->base) < 0)
                return log_error_errno(EIO, "The event loop failed.");
        if (m->exit_code == 0) {
                log_info("Stopping.");
                daemon_notify_stopping();
        }
        return m->exit_code;
}
