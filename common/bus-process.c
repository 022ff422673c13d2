/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.mycelia.Process1 on each daemon's object: what /proc/self says, at read time. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "bus-names.h"
#include "bus-process.h"

/* Resident pages (/proc/self/statm) times the page size; false when it cannot be read. */
static bool process_self_rss(uint64_t *ret) {
        unsigned long size, resident;
        bool ok = false;
        FILE *f;

        f = fopen("/proc/self/statm", "re");
        if (f) {
                ok = fscanf(f, "%lu %lu", &size, &resident) == 2;
                (void) fclose(f);
        }
        if (ok)
                *ret = (uint64_t) resident * (uint64_t) sysconf(_SC_PAGESIZE);
        return ok;
}

/* The entries of /proc/self/fd, without the listing's own; false when it cannot be read. */
static bool process_self_fds(uint32_t *ret) {
        struct dirent *de;
        uint32_t n = 0;
        DIR *d;

        d = opendir("/proc/self/fd");
        if (!d)
                return false;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        (void) closedir(d);
        *ret = n > 0 ? n - 1 : 0;
        return true;
}

void process_self_sample(ProcessSelf *ret) {
        *ret = (ProcessSelf) {};
        ret->have_rss = process_self_rss(&ret->resident_memory_bytes);
        ret->have_fds = process_self_fds(&ret->open_fds);
}

static int property_get_pid(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "u", (uint32_t) getpid());
}

/* Each property reads only its own file: GetAll reads each once. */
static int property_get_rss(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        uint64_t rss;

        if (!process_self_rss(&rss))
                return sd_bus_error_set_errno(error, -EIO);
        return sd_bus_message_append(reply, "t", rss);
}

static int property_get_fds(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        uint32_t fds;

        if (!process_self_fds(&fds))
                return sd_bus_error_set_errno(error, -EIO);
        return sd_bus_message_append(reply, "u", fds);
}

static const sd_bus_vtable process_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Pid", "u", property_get_pid, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("ResidentMemoryBytes", "t", property_get_rss, 0, 0),
        SD_BUS_PROPERTY("OpenFds", "u", property_get_fds, 0, 0),
        SD_BUS_VTABLE_END
};

int bus_add_process_interface(sd_bus *bus, const char *path) {
        return sd_bus_add_object_vtable(bus, NULL, path, PROCESS1_INTERFACE, process_vtable, NULL);
}
