/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-node: runs one Mycelia node without systemd (development, containers, tests):
 * a private bus and every daemon of the node, supervised. main() only. */
#include <stdio.h>

#include "build-config.h"
#include "config.h"
#include "log.h"
#include "node-manager.h"

static void help(void) {
        printf("Usage: mycelia-node [OPTIONS]\n"
               "\n"
               "Runs one Mycelia node without systemd: a private D-Bus daemon in the state\n"
               "directory and the node's daemons (mycelia-routerd, mycelia-shimd), restarted\n"
               "when they fail. Prints one line on stdout when the node is ready:\n"
               "  mycelia-node: ready api=http://HOST:PORT bus=unix:path=STATE_DIR/bus.sock\n"
               "and stops everything on SIGTERM or SIGINT.\n"
               "\n"
               "Launcher options:\n"
               "  --libexec-dir DIR          where the daemons are (default: next to mycelia-node,\n"
               "                             its meson build tree, or %s/mycelia)\n"
               "  --help                     show this help\n"
               "  --version                  show the version\n"
               "\n"
               "Node options, passed unchanged to every daemon:\n",
               LIBEXECDIR);
        config_help(stdout);
}

int main(int argc, char **argv) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_free_ char **pass = NULL;
        _cleanup_free_ int *unknown = NULL;
        _cleanup_(config_done) MyceliaConfig config = {};
        const char *libexec_dir = NULL;
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

        r = manager_new(&(ManagerParams) {
                                .state_dir = config.state_dir,
                                .libexec_dir = libexec_dir,
                                .daemon_args = pass + 1,
                                .n_daemon_args = (size_t) n_pass - 1,
                                .api_listen = config.api_listen,
                                .mesh_listen = config.mesh_listen,
                                .api_fallback = config.api_listen,
                                .override_bus = !isempty(config.bus_address),
                        },
                        &m);
        if (r < 0)
                return EXIT_FAILURE;

        r = manager_start(m);
        if (r < 0)
                return EXIT_FAILURE;

        return manager_run(m);
}
