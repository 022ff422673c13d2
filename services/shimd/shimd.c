/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-shimd: the Ollama-compatible HTTP front door of a Mycelia Mesh node. main() only:
 * daemon_main() (common/daemon-main.h) runs the Manager; the drain is manager_run()'s. */
#include "daemon-main.h"
#include "shimd-manager.h"

int main(int argc, char **argv) {
        static const DaemonSpec spec = {
                .program = "mycelia-shimd",
                .summary = "Serves the Ollama API and forwards each request to the node best placed to answer.",
                .manager_new = manager_new,
                .manager_start = manager_start,
                .manager_run = manager_run,
                .manager_free = manager_free,
        };

        return daemon_main(&spec, argc, argv);
}
