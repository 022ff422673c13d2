/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-node: runs one Mycelia node without systemd (development, containers, tests):
 * a private bus and every daemon of the node, supervised. main() only. Not daemon_main()
 * (common/daemon-main.h): the launcher takes out its own flags, passes the rest on to the
 * daemons, and builds its Manager from ManagerParams rather than from the configuration. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>

#include "build-config.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "node-manager.h"
#include "route-table.h"

/* Put in place of a default before the configuration is read: still there afterwards means
 * neither the file nor a flag set that key, and the launcher picks its own default. */
#define NODE_UNSET "\001unset"

/* A launcher node is for local meshes, demos and tests (systemd's units run real installs):
 * unless told otherwise its gossip is on loopback with a free port, so several nodes share a
 * host and nothing is exposed to the network. */
#define NODE_GOSSIP_DEFAULT "127.0.0.1:0"

static void help(void) {
        printf("Usage: mycelia-node [OPTIONS]\n"
               "\n"
               "Runs one Mycelia node without systemd: a private D-Bus daemon in the state\n"
               "directory and the node's daemons (mycelia-gossipd, mycelia-discoveryd,\n"
               "mycelia-routerd, mycelia-shardd, mycelia-shimd), restarted when they fail.\n"
               "Prints one line on stdout when the node is ready:\n"
               "  mycelia-node: ready api=http://HOST:PORT bus=unix:path=STATE_DIR/bus.sock \\\n"
               "        gossip=ADDR:PORT mesh=ADDR:PORT node=ID shard=ADDR:PORT\n"
               "and stops everything on SIGTERM or SIGINT.\n"
               "\n"
               "Defaults that differ from the daemons' (see docs/launcher.md): --gossip %s,\n"
               "--mesh and --shard on the gossip host with a free port each, --mesh-key\n"
               "%s/mycelia/mesh.key if it exists, else STATE_DIR/mesh.key (created),\n"
               "--mdns no while gossip is on loopback.\n"
               "\n"
               "Launcher options:\n"
               "  --libexec-dir DIR          where the daemons are (default: next to mycelia-node,\n"
               "                             its meson build tree, or %s/mycelia)\n"
               "  --help                     show this help\n"
               "  --version                  show the version\n"
               "\n"
               "Node options, passed unchanged to every daemon:\n",
               NODE_GOSSIP_DEFAULT, SYSCONFDIR, LIBEXECDIR);
        config_help(stdout);
}

/* "127.0.0.1:11436" -> "127.0.0.1:0", "[::1]:7000" -> "[::1]:0": the default of the mesh and
 * shard listeners, on the host gossip listens on. */
static char *address_any_port(const char *addr) {
        const char *colon = strrchr(addr, ':');
        char *s;

        if (!colon)
                return NULL;
        if (asprintf(&s, "%.*s:0", (int) (colon - addr), addr) < 0)
                return NULL;
        return s;
}

/* The address of a listener peers reach (the mesh API, shardd's transfers): the configured one,
 * else, when neither the file nor a flag set it, the gossip host with a free port, so that
 * several launchers share a host and a peer finds it wherever it finds gossip. */
static int listener_address(const char *configured, const char *gossip, char **ret_owned, const char **ret) {
        if (!streq(configured, NODE_UNSET)) {
                *ret = configured;
                return 0;
        }
        *ret_owned = address_any_port(gossip);
        if (!*ret_owned)
                return log_error_errno(EINVAL, "Invalid gossip address '%s'; use ADDR:PORT.", gossip);
        *ret = *ret_owned;
        return 0;
}

static bool address_is_loopback(const char *addr) {
        struct sockaddr_storage sa;
        socklen_t len;

        if (sockaddr_parse(addr, &sa, &len) < 0)
                return false;
        if (sa.ss_family == AF_INET)
                return (ntohl(((struct sockaddr_in *) &sa)->sin_addr.s_addr) >> 24) == 127;
        if (sa.ss_family == AF_INET6)
                return IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *) &sa)->sin6_addr);
        return false;
}

static bool args_have_flag(char **args, int n, const char *flag) {
        size_t len = strlen(flag);

        for (int i = 1; i < n; i++)
                if (strneq(args[i], flag, len) && IN_SET(args[i][len], '\0', '='))
                        return true;
        return false;
}

int main(int argc, char **argv) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_free_ char **pass = NULL;
        _cleanup_free_ int *unknown = NULL;
        _cleanup_(config_done) MyceliaConfig config = {};
        _cleanup_free_ char *mesh_default = NULL, *shard_default = NULL;
        const char *libexec_dir = NULL, *gossip, *mesh, *shard, *mesh_key;
        int n_pass = 0, n_unknown = 0, r;

        log_setup("mycelia-node", LOG_TARGET_AUTO);

        /* Take out what is only ours; everything else is the daemons'. */
        pass = calloc((size_t) argc + 1, sizeof(char *));
        unknown = calloc((size_t) argc + 1, sizeof(int));
        if (!pass || !unknown)
                return log_oom(), EXIT_FAILURE;
        pass[n_pass++] = argv[0];
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];

                if (streq(a, "--help") || streq(a, "-h")) {
                        help();
                        return EXIT_SUCCESS;
                }
                if (streq(a, "--version")) {
                        printf("mycelia-node %s\n", PACKAGE_VERSION);
                        return EXIT_SUCCESS;
                }
                if (streq(a, "--libexec-dir")) {
                        if (i + 1 >= argc) {
                                log_error("--libexec-dir needs a directory.");
                                return EXIT_FAILURE;
                        }
                        libexec_dir = argv[++i];
                        continue;
                }
                if (strneq(a, "--libexec-dir=", strlen("--libexec-dir="))) {
                        libexec_dir = a + strlen("--libexec-dir=");
                        continue;
                }
                /* A flag's value is passed on with its flag, even if it looks like ours. */
                pass[n_pass++] = argv[i];
                if (strneq(a, "--", 2) && !strchr(a, '=') && i + 1 < argc && !strneq(argv[i + 1], "--", 2))
                        pass[n_pass++] = argv[++i];
        }
        pass[n_pass] = NULL;

        config_init(&config);
        (void) config_set(&config, "gossip", "listen", NODE_UNSET);
        (void) config_set(&config, "shim", "mesh", NODE_UNSET);
        (void) config_set(&config, "shard", "listen", NODE_UNSET);
        (void) config_set(&config, "node", "mesh_key", NODE_UNSET);
        r = config_load(&config, n_pass, pass, unknown, &n_unknown);
        if (r == 1) {
                help();
                return EXIT_SUCCESS;
        }
        if (r < 0)
                return EXIT_FAILURE;
        if (n_unknown > 0) {
                log_error("Unknown argument '%s'; see mycelia-node --help.", pass[unknown[0]]);
                return EXIT_FAILURE;
        }
        if (!isempty(config.node_name))
                log_set_node(config.node_name);

        gossip = streq(config.gossip_listen, NODE_UNSET) ? NODE_GOSSIP_DEFAULT : config.gossip_listen;
        if (isempty(gossip)) {
                log_error("--gossip needs ADDR:PORT (port 0 picks a free one).");
                return EXIT_FAILURE;
        }
        /* --mesh "" turns the mesh listener off; shardd has no such switch. */
        if (listener_address(config.mesh_listen, gossip, &mesh_default, &mesh) < 0 ||
            listener_address(config.shard_listen, gossip, &shard_default, &shard) < 0)
                return EXIT_FAILURE;
        if (isempty(shard)) {
                log_error("--shard needs ADDR:PORT (port 0 picks a free one).");
                return EXIT_FAILURE;
        }
        mesh_key = streq(config.mesh_key, NODE_UNSET) ? NULL : config.mesh_key;

        r = manager_new(&(ManagerParams) {
                                .state_dir = config.state_dir,
                                .libexec_dir = libexec_dir,
                                .daemon_args = pass + 1,
                                .n_daemon_args = (size_t) n_pass - 1,
                                .api_listen = config.api_listen,
                                .mesh_listen = mesh,
                                .api_fallback = config.api_listen,
                                .gossip_listen = gossip,
                                .shard_listen = shard,
                                .mesh_key = mesh_key,
                                .node_id = config.node_id,
                                .override_bus = !isempty(config.bus_address),
                                /* mDNS would announce to the LAN a node it cannot reach. */
                                .mdns_off = address_is_loopback(gossip) && !args_have_flag(pass, n_pass, "--mdns"),
                        },
                        &m);
        if (r < 0)
                return EXIT_FAILURE;

        r = manager_start(m);
        if (r < 0)
                return EXIT_FAILURE;

        return manager_run(m);
}
