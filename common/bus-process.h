/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.mycelia.Process1: every daemon's own pid, resident memory and open fds on its object, read
 * from /proc/self when asked. The shim's GET /metrics reads them there because under systemd it
 * cannot read the other daemons' /proc (each unit has PrivateUsers= and ProtectProc=invisible).
 * docs/metrics.md, "Process". */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

typedef struct ProcessSelf {
        uint64_t resident_memory_bytes;
        uint32_t open_fds;
        bool have_rss, have_fds;
} ProcessSelf;

/* This process's RSS (/proc/self/statm) and open fds (/proc/self/fd, not counting the one the
 * listing holds); what cannot be read is left out (have_* false). */
void process_self_sample(ProcessSelf *ret);

/* Adds org.mycelia.Process1 at path: Pid (u, const), ResidentMemoryBytes (t), OpenFds (u). The
 * slot floats: it goes with the bus connection. */
int bus_add_process_interface(sd_bus *bus, const char *path);
