/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-shimd: the Ollama-compatible HTTP front door of a Mycelia Mesh node. main() only:
 * configuration, the Manager, the loop. */
#include <stdio.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "shimd-manager.h"

int main(int argc, char **argv) {
        _cleanup_(manager_freep) Manager *m = NULL;
        MyceliaConfig config;
        int r;
        char hostname[256] = "";

        log_setup("mycelia-shimd", LOG_TARGET_AUTO);
        config_init(&config);
        r = daemon_parse_args("mycelia-shimd",
                              "Serves the Ollama API and forwards each request to the node best placed to answer.",
                              &config, argc, argv);
        if (r != 0) {
                config_done(&config);
                return r > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
        if (isempty(config.node_name))
                (void) gethostname(hostname, sizeof(hostname) - 1);
        log_set_node(isempty(config.node_name) ? hostname : config.node_name);

        r = manager_new(&config, &m);
        if (r >= 0)
                r = manager_start(m);
        if (r >= 0)
                r = manager_run(m);
        m = manager_free(m);
        config_done(&config);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
