/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A small text table for myceliactl, in the manner of systemd's format-table: columns sized to
 * their widest cell, an optional header (legend), cells past a column's maximum ellipsized. Pure. */
#pragma once

#include <stdint.h>
#include <stdio.h>

#include "macro.h"

#define CTL_TABLE_COLUMNS_MAX 12

typedef struct CtlTable CtlTable;

/* Columns are given as a NULL-terminated list of header names. */
CtlTable *ctl_table_new(const char *first_header, ...) _sentinel_;
CtlTable *ctl_table_free(CtlTable *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(CtlTable *, ctl_table_free);

/* Caps a column's width; longer cells end in "…". 0: no cap. */
void ctl_table_set_max_width(CtlTable *t, size_t column, size_t width);
/* Appends one cell, filling rows left to right. NULL prints as "-". */
int ctl_table_add(CtlTable *t, const char *cell);
int ctl_table_addf(CtlTable *t, const char *fmt, ...) _printf_(2, 3);
size_t ctl_table_rows(const CtlTable *t);
/* Writes the table; the header only when legend is true. Trailing spaces are trimmed. */
int ctl_table_print(const CtlTable *t, FILE *f, bool legend);

/* A size as tables and status lines show it: "312B", "1.5K", "81.2M", ... (powers of 1024, one
 * decimal from K on). Returns buf. */
#define CTL_TABLE_BYTES_MAX 16
char *ctl_table_format_bytes(uint64_t bytes, char buf[static CTL_TABLE_BYTES_MAX]);
