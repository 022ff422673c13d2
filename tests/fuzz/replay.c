/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The main() of a harness without libFuzzer: feeds every file of the corpus directories (or files)
 * named on the command line to LLVMFuzzerTestOneInput, so every build replays the corpora. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

static int replay_file(const char *path, unsigned *n) {
        uint8_t *buf = NULL;
        size_t size = 0, alloc = 0;
        int fd;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                fprintf(stderr, "Failed to open %s: %m\n", path);
                return -errno;
        }
        for (;;) {
                ssize_t k;

                if (size == alloc) {
                        uint8_t *p = realloc(buf, alloc = alloc ? alloc * 2 : 4096);

                        if (!p) {
                                free(buf);
                                close(fd);
                                return -ENOMEM;
                        }
                        buf = p;
                }
                k = read(fd, buf + size, alloc - size);
                if (k < 0) {
                        int r = -errno;

                        fprintf(stderr, "Failed to read %s: %m\n", path);
                        free(buf);
                        close(fd);
                        return r;
                }
                if (k == 0)
                        break;
                size += (size_t) k;
        }
        close(fd);

        /* Printed first, so the input that crashes is the last line of the log. */
        printf("replay %s (%zu bytes)\n", path, size);
        fflush(stdout);
        /* An exact copy of the input, so that ASan sees reads past its end. */
        {
                uint8_t *exact = malloc(size > 0 ? size : 1);

                if (!exact) {
                        free(buf);
                        return -ENOMEM;
                }
                if (size > 0)
                        memcpy(exact, buf, size);
                free(buf);
                (void) LLVMFuzzerTestOneInput(exact, size);
                free(exact);
        }
        (*n)++;
        return 0;
}

static int replay_path(const char *path, unsigned *n) {
        struct dirent **entries;
        struct stat st;
        int k, r = 0;

        if (stat(path, &st) < 0) {
                fprintf(stderr, "Failed to stat %s: %m\n", path);
                return -errno;
        }
        if (!S_ISDIR(st.st_mode))
                return replay_file(path, n);

        /* In name order, so two runs replay alike. */
        k = scandir(path, &entries, NULL, alphasort);
        if (k < 0) {
                fprintf(stderr, "Failed to list %s: %m\n", path);
                return -errno;
        }
        for (int i = 0; i < k; i++) {
                char *p = NULL;

                if (entries[i]->d_name[0] != '.' && asprintf(&p, "%s/%s", path, entries[i]->d_name) >= 0) {
                        if (r == 0)
                                r = replay_path(p, n);
                        free(p);
                }
                free(entries[i]);
        }
        free(entries);
        return r;
}

int main(int argc, char **argv) {
        unsigned n = 0;

        if (argc < 2) {
                fprintf(stderr, "Usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
                return EXIT_FAILURE;
        }
        for (int i = 1; i < argc; i++)
                if (replay_path(argv[i], &n) < 0)
                        return EXIT_FAILURE;
        /* A corpus that went missing must not pass by replaying nothing. */
        if (n == 0) {
                fprintf(stderr, "No input found in the corpus given\n");
                return EXIT_FAILURE;
        }
        printf("%u inputs replayed\n", n);
        return EXIT_SUCCESS;
}
