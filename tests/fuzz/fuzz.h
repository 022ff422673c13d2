/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the fuzz harnesses share: the libFuzzer entry point's prototype, and ways to cut one input
 * into the pieces a parser takes (a C string, lines). Nothing here keeps state between runs. */
#pragma once

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test broke: a crash for libFuzzer and for the replay test
 * alike, whatever NDEBUG says. */
#define fuzz_check(expr)                                                                        \
        do {                                                                                    \
                if (!(expr)) {                                                                  \
                        fprintf(stderr, "%s:%d: fuzz_check(%s) failed\n", __FILE__, __LINE__, #expr); \
                        abort();                                                                \
                }                                                                               \
        } while (0)

/* The input as a NUL-terminated string (embedded NULs cut it short, as they would in a header or
 * a command line). malloc()ed; NULL only when out of memory. */
static inline char *fuzz_strndup(const void *data, size_t size) {
        char *s = malloc(size + 1);

        if (!s)
                return NULL;
        if (size > 0)
                memcpy(s, data, size);
        s[size] = '\0';
        return s;
}

/* Cuts *data at the first '\n': the part before is returned (size in *ret_size), *data and *size
 * move past the newline (or to the end when there is none). */
static inline const uint8_t *fuzz_next_line(const uint8_t **data, size_t *size, size_t *ret_size) {
        const uint8_t *start = *data, *nl = *size > 0 ? memchr(start, '\n', *size) : NULL;
        size_t n = nl ? (size_t) (nl - start) : *size;

        *ret_size = n;
        *data += nl ? n + 1 : n;
        *size -= nl ? n + 1 : n;
        return start;
}
