/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-discoveryd: finds the other nodes (mDNS via avahi-daemon, static seeds) and tells
 * gossipd on the bus. main only: daemon_main() (common/daemon-main.h) runs the Manager. */
#include "daemon-main.h"
#include "discoveryd-manager.h"

int main(int argc, char **argv) {
        static const DaemonSpec spec = {
                .program = "mycelia-discoveryd",
                .summary = "Publishes this node as " DISCOVERY_SERVICE_TYPE " with avahi-daemon, browses for the\n"
                           "others, resolves the static seeds and serves org.mycelia.Discovery1.",
                .manager_new = manager_new,
                .manager_start = manager_start,
                .manager_run = manager_run,
                .manager_free = manager_free,
        };

        return daemon_main(&spec, argc, argv);
}
