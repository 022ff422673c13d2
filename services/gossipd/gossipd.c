/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-gossipd: SWIM membership of the mesh and the metadata nodes gossip about themselves.
 * main only: configuration, the Manager, the loop, the graceful leave at the end. */
#include <stdio.h>

#include "daemon.h"
#include "gossipd-manager.h"
#include "log.h"

int main(int argc, char **argv) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_(daemon_loop_freep) DaemonLoop *loop = NULL;
        struct event_base *base = NULL;
        MyceliaConfig config;
        int r, exit_code = EXIT_FAILURE;

        log_setup("mycelia-gossipd", LOG_TARGET_AUTO);
        config_init(&config);

        r = daemon_parse_args("mycelia-gossipd", "Keeps the membership of Mycelia Mesh (SWIM over UDP, sealed with the mesh key) and\n"
                              "serves org.mycelia.Gossip1.", &config, argc, argv);
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
        /* SIGTERM, SIGINT or Leave(): peers learn at once that this node left. */
        if (exit_code == 0)
                manager_stop(m);

finish:
        m = manager_free(m);
        loop = daemon_loop_free(loop);
        if (base)
                event_base_free(base);
        config_done(&config);
        return exit_code;
}
