/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the configuration file reader (common/config.c, libinih under it) through the way the
 * daemons use it: config_load() with --config naming a file that holds the input (a memfd,
 * closed at the end of the run). Input: the file. */
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char path[64], *argv[4] = { (char *) "fuzz-config", (char *) "--config", path, NULL };
        int level = log_get_max_level(), fd;
        MyceliaConfig c;

        fd = memfd_create("fuzz-config", MFD_CLOEXEC);
        if (fd < 0)
                return 0;
        if (size > 0 && write(fd, data, size) != (ssize_t) size) {
                close(fd);
                return 0;
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

        config_init(&c);
        (void) config_load(&c, 3, argv, NULL, NULL);
        config_done(&c);
        /* A log_level in the file changes the process's level: put it back. */
        log_set_max_level(level);
        close(fd);
        return 0;
}
