/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-discoveryd: finds the other nodes (mDNS via avahi-daemon, static seeds) and tells
 * gossipd on the bus. main only: configuration, the Manager, the loop. */
#include <stdio.h>

#include "daemon.h"
#include "discoveryd-manager.h"
#include "log.h"

int main(int argc, char **argv) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_(daemon_loop_freep) DaemonLoop *loop = NULL;
        struct event_base *base = NULL;
        MyceliaConfig config;
        int r, exit_code = EXIT_FAILURE;

        log_setup("mycelia-discoveryd", LOG_TARGET_AUTO);
        config_init(&config);

        r = daemon_parse_args("mycelia-discoveryd", "Publishes this node as " DISCOVERY_SERVICE_TYPE " with avahi-daemon, browses for the\n"
                              "others, resolves the static seeds and serves org.mycelia.Discovery1.", &config, argc, argv);
        if (r != 0) {
                exit_code = r > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
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
