/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-gossipd: SWIM membership of the mesh and the metadata nodes gossip about themselves.
 * main only: daemon_main() (common/daemon-main.h) runs the Manager; the graceful leave at the
 * end is manager_run()'s. */
#include "daemon-main.h"
#include "gossipd-manager.h"

int main(int argc, char **argv) {
        static const DaemonSpec spec = {
                .program = "mycelia-gossipd",
                .summary = "Keeps the membership of Mycelia Mesh (SWIM over UDP, sealed with the mesh key) and\n"
                           "serves org.mycelia.Gossip1.",
                .manager_new = manager_new,
                .manager_start = manager_start,
                .manager_run = manager_run,
                .manager_free = manager_free,
        };

        return daemon_main(&spec, argc, argv);
}
