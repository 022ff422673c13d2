/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-shardd: the shard store of Mycelia Mesh, collections of embedded documents.
 * main only: daemon_main() (common/daemon-main.h) runs the Manager. */
#include "daemon-main.h"
#include "shardd-manager.h"

int main(int argc, char **argv) {
        static const DaemonSpec spec = {
                .program = "mycelia-shardd",
                .summary = "Stores collections of embedded documents for Mycelia Mesh and serves org.mycelia.ShardStore1.",
                .manager_new = manager_new,
                .manager_start = manager_start,
                .manager_run = manager_run,
                .manager_free = manager_free,
        };

        return daemon_main(&spec, argc, argv);
}
