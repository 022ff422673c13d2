/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-routerd: the routing table of the mesh and the Route() decision on the bus.
 * main only: daemon_main() (common/daemon-main.h) runs the Manager. */
#include "daemon-main.h"
#include "routerd-manager.h"

int main(int argc, char **argv) {
        static const DaemonSpec spec = {
                .program = "mycelia-routerd",
                .summary = "Keeps the routing table of Mycelia Mesh and serves org.mycelia.Router1.",
                .manager_new = manager_new,
                .manager_start = manager_start,
                .manager_run = manager_run,
                .manager_free = manager_free,
        };

        return daemon_main(&spec, argc, argv);
}
