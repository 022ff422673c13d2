/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-gossipd: SWIM membership of the mesh and the metadata nodes gossip about themselves.
 * main only: configuration, the Manager (which owns the loop and leaves gracefully at its end). */
#include <stdio.h>

#include "daemon.h"
#include "gossipd-manager.h"
#include "log.h"

int main(int argc, char **argv) {
        Manager *m = NULL;
        MyceliaConfig config;
        int r;

        log_setup("mycelia-gossipd", LOG_TARGET_AUTO);
        config_init(&config);

        r = daemon_parse_args("mycelia-gossipd", "Keeps the membership of Mycelia Mesh (SWIM over UDP, sealed with the mesh key) and\n"
                              "serves org.mycelia.Gossip1.", &config, argc, argv);
        if (r != 0) {
                config_done(&config);
                return r > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }

        r = manager_new(&config, &m);
        if (r >= 0)
                r = manager_start(m);
        if (r >= 0)
                r = manager_run(m);
        m = manager_free(m);
        config_done(&config);
        return r < 0 ? EXIT_FAILURE : r;
}
