/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-shimd: the Ollama-compatible HTTP front door of a Mycelia Mesh node. main() only:
 * configuration, the Manager, the loop. */
#include <stdio.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "shimd-manager.h"

static void help(void) {
        printf("mycelia-shimd [OPTIONS]\n\n"
               "Serves the Ollama API and forwards each request to the node best placed to answer.\n\n");
        config_help(stdout);
}

int main(int argc, char **argv) {
        _cleanup_(manager_freep) Manager *m = NULL;
        MyceliaConfig config;
        int unknown[argc > 0 ? argc : 1], n_unknown = 0, r;
        char hostname[256] = "";

        log_setup("mycelia-shimd", LOG_TARGET_AUTO);
        config_init(&config);
        r = config_load(&config, argc, argv, unknown, &n_unknown);
        if (r == 1) {
                help();
                config_done(&config);
                return EXIT_SUCCESS;
        }
        if (r < 0) {
                config_done(&config);
                return EXIT_FAILURE;
        }
        if (n_unknown > 0) {
                fprintf(stderr, "Unknown argument '%s', see --help.\n", argv[unknown[0]]);
                config_done(&config);
                return EXIT_FAILURE;
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
