/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* daemon_main(): the one main() of routerd, gossipd, discoveryd and shimd. What differs between
 * them lives in their Managers; the launcher (services/node) parses its own command line. */
#include <stdlib.h>

#include "daemon-main.h"
#include "daemon.h"
#include "log.h"

int daemon_main(const DaemonSpec *spec, int argc, char **argv) {
        _cleanup_free_ char *node_name = NULL;
        MyceliaConfig config;
        Manager *m = NULL;
        int r;

        log_setup(spec->program, LOG_TARGET_AUTO);
        config_init(&config);

        r = daemon_parse_args(spec->program, spec->summary, &config, argc, argv);
        if (r != 0) {
                config_done(&config);
                return r > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
        /* Every log line from here on names the node (NODE= in the journal, "@name" on stderr),
         * which tells apart the nodes of a local mesh. Failing to get the name is the Manager's
         * to report: it needs the name too. */
        if (node_name_get(&config, &node_name) >= 0)
                log_set_node(node_name);

        r = spec->manager_new(&config, &m);
        if (r >= 0)
                r = spec->manager_start(m);
        if (r >= 0)
                r = spec->manager_run(m);
        m = spec->manager_free(m);
        config_done(&config);
        return r < 0 ? EXIT_FAILURE : r;
}
