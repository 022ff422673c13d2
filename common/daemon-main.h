/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The main() every Mycelia daemon shares: logging, the configuration and its command line, then
 * the daemon's Manager from new to free. A daemon's <name>d.c only says who it is. */
#pragma once

#include "config.h"

/* Each daemon's own Manager (<name>d-manager.h), opaque here: one per executable. */
typedef struct Manager Manager;

typedef struct DaemonSpec {
        const char *program;    /* "mycelia-routerd": the log identifier, --help and --version */
        const char *summary;    /* what --help says the daemon does */

        /* Sets up the Manager with its event loop, no bus, no listening yet; logs what failed. */
        int (*manager_new)(const MyceliaConfig *config, Manager **ret);
        /* Connects the bus, listens; READY=1 follows (here or from the loop). */
        int (*manager_start)(Manager *m);
        /* Runs the loop to its end (SIGTERM/SIGINT or a fatal error) and whatever the daemon does
         * after it; returns 0, an exit status above 0, or negative errno (already logged). */
        int (*manager_run)(Manager *m);
        /* Takes NULL; frees the event loop last. */
        Manager *(*manager_free)(Manager *m);
} DaemonSpec;

/* log_setup(), config_init(), daemon_parse_args() (--help and --version exit successfully), the
 * node's name on every log line, then new, start, run, free, config_done(). Returns the process
 * exit code: what manager_run() returned, EXIT_FAILURE for any negative errno. */
int daemon_main(const DaemonSpec *spec, int argc, char **argv);
