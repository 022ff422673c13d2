/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Hex digit decoding, shared by the JSON scanners of shimd (model) and routerd (tags). */
#pragma once

/* The value of one hex digit, or -1 when c is not one. */
static inline int unhexchar(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}
