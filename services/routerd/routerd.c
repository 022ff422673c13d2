/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-routerd: the routing table of the mesh and the Route() decision on the bus.
 * main only: configuration, the Manager (which owns the loop). */
#include <stdio.h>

#include "daemon.h"
#include "log.h"
#include "routerd-manager.h"

int main(int argc, char **argv) {
        Manager *m = NULL;
        MyceliaConfig config;
        int r;

        log_setup("mycelia-routerd", LOG_TARGET_AUTO);
        config_init(&config);

        r = daemon_parse_args("mycelia-routerd", "Keeps the routing table of Mycelia Mesh and serves org.mycelia.Router1.", &config, argc, argv);
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
