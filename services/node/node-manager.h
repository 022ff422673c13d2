/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The launcher's Manager: the state directory, the private dbus-daemon, the notify socket,
 * the daemons it forks and supervises, all on one libevent loop. */
#pragma once

#include "macro.h"

typedef struct Manager Manager;

typedef struct ManagerParams {
        const char *state_dir;          /* from the configuration; created if missing */
        const char *libexec_dir;        /* --libexec-dir, or NULL to search */
        char *const *daemon_args;       /* flags passed unchanged to every daemon */
        size_t n_daemon_args;
        const char *api_listen;         /* --api: bound here and handed to shimd as fd "api" */
        const char *mesh_listen;        /* --mesh, or empty: handed to shimd as fd "mesh" */
        const char *api_fallback;       /* printed when shimd does not report X_MYCELIA_API */
        const char *gossip_listen;      /* --gossip: UDP and TCP on one port, handed to gossipd as "gossip" */
        const char *shard_listen;       /* --shard: handed to shardd as "shard" */
        const char *mesh_key;           /* --mesh-key, or NULL: the default file if it exists, else
                                         * STATE_DIR/mesh.key (created when missing) */
        const char *node_id;            /* --node-id, or empty: STATE_DIR/node-id (made on first
                                         * start); passed to every daemon, printed when ready */
        bool override_bus;              /* the config named a bus: point the daemons at ours */
        bool mdns_off;                  /* pass --mdns=no to the daemons */
} ManagerParams;

int manager_new(const ManagerParams *p, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Creates the state directory, starts the bus and the first daemon. */
int manager_start(Manager *m);
/* Runs until the node stopped; returns the exit status (0 after SIGTERM/SIGINT, 1 on failure). */
int manager_run(Manager *m);

/* Where a daemon's binary is: libexec_dir when given, else next to our own executable, else
 * its folder in a meson build tree (<exe dir>/../<svc>/), else LIBEXECDIR/mycelia. */
int manager_find_daemon(const char *libexec_dir, const char *svc, char **ret);
