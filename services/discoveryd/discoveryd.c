/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-discoveryd: finds the other nodes (mDNS via avahi-daemon, static seeds) and tells
 * gossipd on the bus. main only: configuration, the Manager, the loop. */
#include <stdio.h>

#include "daemon.h"
#include "discoveryd-manager.h"
#include "log.h"

static void help(void) {
        printf("mycelia-discoveryd [OPTIONS]\n\n"
               "Publishes this node as %s with avahi-daemon, browses for the others, resolves the\n"
               "static seeds and serves org.mycelia.Discovery1.\n\n"
               "  -h --help                  show this help\n"
               "     --version                show the version\n",
               DISCOVERY_SERVICE_TYPE);
        config_help(stdout);
}

int main(int argc, char **argv) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_(daemon_loop_freep) DaemonLoop *loop = NULL;
        _cleanup_free_ int *unknown = NULL;
        struct event_base *base = NULL;
        MyceliaConfig config;
        int n_unknown = 0, r, exit_code = EXIT_FAILURE;

        log_setup("mycelia-discoveryd", LOG_TARGET_AUTO);
        config_init(&config);

        unknown = calloc(argc > 0 ? argc : 1, sizeof(int));
        if (!unknown) {
                log_oom();
                goto finish;
        }
        r = config_load(&config, argc, argv, unknown, &n_unknown);
        if (r == 1) {
                help();
                exit_code = EXIT_SUCCESS;
                goto finish;
        }
        if (r < 0)
                goto finish;
        for (int i = 0; i < n_unknown; i++) {
                if (streq(argv[unknown[i]], "--version")) {
                        printf("mycelia-discoveryd %s\n", PACKAGE_VERSION);
                        exit_code = EXIT_SUCCESS;
                        goto finish;
                }
        }
        if (n_unknown > 0) {
                log_error("Unknown argument '%s'; see --help.", argv[unknown[0]]);
                goto finish;
        }

        base = event_base_new();
        if (!base) {
                log_oom();
                goto finish;
        }
        r = daemon_loop_new(base, &loop);
        if (r < 0) {
                log_error_errno(r, "Failed to set up the event loop: %m");
                goto finish;
        }
        r = manager_new(base, &config, &m);
        if (r < 0)
                goto finish;
        r = manager_start(m);
        if (r < 0)
                goto finish;

        if (event_base_dispatch(base) < 0) {
                log_error("The event loop failed.");
                goto finish;
        }
        exit_code = m->exit_code;
        if (exit_code == 0) {
                log_info("Stopping.");
                daemon_notify_stopping();
        }

finish:
        m = manager_free(m);
        loop = daemon_loop_free(loop);
        if (base)
                event_base_free(base);
        config_done(&config);
        return exit_code;
}
