/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-discoveryd: finds the other nodes (mDNS via avahi-daemon, static seeds) and tells
 * gossipd on the bus. main only: configuration, the Manager (which owns the loop). */
#include <stdio.h>

#include "daemon.h"
#include "discoveryd-manager.h"
#include "log.h"

int main(int argc, char **argv) {
        Manager *m = NULL;
        MyceliaConfig config;
        int r;

        log_setup("mycelia-discoveryd", LOG_TARGET_AUTO);
        config_init(&config);

        r = daemon_parse_args("mycelia-discoveryd", "Publishes this node as " DISCOVERY_SERVICE_TYPE " with avahi-daemon, browses for the\n"
                              "others, resolves the static seeds and serves org.mycelia.Discovery1.", &config, argc, argv);
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
