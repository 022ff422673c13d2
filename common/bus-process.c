/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.mycelia.Process1 on each daemon's object: what /proc/self says, at read time. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "bus-names.h"
#include "bus-process.h"

void process_self_sample(ProcessSelf *ret) {
        unsigned long size, resident;
        FILE *f;
        DIR *d;

        *ret = (ProcessSelf) {};
        f = fopen("/proc/self/statm", "re");
        if (f) {
                if (fscanf(f, "%lu %lu", &size, &resident) == 2) {
                        ret->resident_memory_bytes = (uint64_t) resident * (uint64_t) sysconf(_SC_PAGESIZE);
                        ret->have_rss = true;
                }
                (void) fclose(f);
        }
        d = opendir("/proc/self/fd");
        if (d) {
                struct dirent *de;
                uint32_t n = 0;

                while ((de = readdir(d)))
                        if (de->d_name[0] != '.')
                                n++;
                (void) closedir(d);
                /* The listing's own fd was one of them. */
                ret->open_fds = n > 0 ? n - 1 : 0;
                ret->have_fds = true;
        }
}

static int property_get_pid(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "u", (uint32_t) getpid());
}

static int property_get_rss(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        ProcessSelf s;

        process_self_sample(&s);
        if (!s.have_rss)
                return sd_bus_error_set_errno(error, -EIO);
        return sd_bus_message_append(reply, "t", s.resident_memory_bytes);
}

static int property_get_fds(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        ProcessSelf s;

        process_self_sample(&s);
        if (!s.have_fds)
                return sd_bus_error_set_errno(error, -EIO);
        return sd_bus_message_append(reply, "u", s.open_fds);
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
