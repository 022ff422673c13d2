/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Manager of mycelia-discoveryd: owns the event loop and its bus connection, the peer
 * table, the Avahi side (publish, browse) and the periodic resolution of the static seeds. */
#pragma once

#include <pthread.h>
#include <event2/event.h>
#include <systemd/sd-bus.h>

#include "bus-event.h"
#include "bus-names.h"
#include "config.h"
#include "daemon.h"
#include "discoveryd-avahi.h"
#include "gossip-member.h"
#include "peers.h"
#include "seeds.h"

/* Seeds are resolved again this often (DNS names may move). */
#define DISCOVERY_SEED_INTERVAL_USEC (60 * USEC_PER_SEC)
/* LocalNode of gossipd is read this often while a port is unknown, and then now and then. */
#define DISCOVERY_LOCAL_POLL_FAST_USEC (1 * USEC_PER_SEC)
#define DISCOVERY_LOCAL_POLL_SLOW_USEC (30 * USEC_PER_SEC)
/* The default of sd-bus and libdbus for the system bus. */
#define DISCOVERY_DEFAULT_SYSTEM_BUS "unix:path=/run/dbus/system_bus_socket"

typedef struct SeedJob SeedJob;

typedef struct Manager {
        struct event_base *base;
        DaemonLoop *loop;
        const MyceliaConfig *config;
        char local_id[33];
        char *local_name;
        char *bus_address;              /* our own bus, fixed before DBUS_SYSTEM_BUS_ADDRESS is changed */

        BusReconnect *bus_reconnect;    /* the connection, made again after a loss */
        BusEvent *bus_event;            /* borrowed from bus_reconnect; NULL while the bus is lost */
        sd_bus *bus;                    /* borrowed from bus_event; NULL while the bus is lost */
        sd_bus_slot *vtable_slot;
        sd_bus_slot *name_slot;
        sd_bus_slot *gossip_owner_slot;
        sd_bus_slot *gossip_signal_slot;
        sd_bus_slot *local_node_call;
        struct event *local_poll_timer;
        bool ready;

        PeerTable peers;
        DiscoveryAvahi *avahi;

        /* Ports to publish: from the configuration, overridden by what gossipd says. */
        uint16_t config_mesh_port, config_gossip_port;
        uint16_t gossip_mesh_port, gossip_gossip_port;

        Seed *seeds;
        size_t n_seeds;
        struct event *seed_timer;
        SeedJob *seed_job;              /* a resolution round of host-name seeds in a thread */
        struct event *seed_job_event;
        uint64_t n_seed_rounds;

        uint64_t n_discovered_signals;
        uint64_t n_vanished_signals;
        int exit_code;
} Manager;

/* The event loop, the peer table, the seeds; no bus, no Avahi yet. Logs what failed. */
int manager_new(const MyceliaConfig *config, Manager **ret);
/* Frees the event loop last. */
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);
/* Connects to the bus, serves Discovery1, requests the name (READY follows), starts Avahi and
 * the seed rounds. */
int manager_start(Manager *m);
/* Runs the loop until SIGTERM/SIGINT (0, and STOPPING=1) or losing the name to another process
 * (EXIT_FAILURE). A lost bus is not the end: Avahi and the seeds go on filling the peer table,
 * and the connection, name and subscriptions are made again when the bus is back. */
int manager_run(Manager *m);

/* What gossipd's LocalNode says (0: unknown). Republishes when the result changed. */
void manager_set_gossip_ports(Manager *m, uint16_t gossip_port, uint16_t mesh_port);
/* Ports that would be published now (0: unknown). */
void manager_get_ports(Manager *m, uint16_t *ret_mesh, uint16_t *ret_gossip);

/* discoveryd-bus.c */
int manager_bus_register(Manager *m);
int manager_bus_emit_peer(Manager *m, PeerEvent event, const Peer *p);
int manager_bus_watch_gossip(Manager *m);
int manager_bus_read_local_node(Manager *m);
