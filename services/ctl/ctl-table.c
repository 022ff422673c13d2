/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Text tables for myceliactl: collects cells, then prints columns padded to the widest cell
 * (counted in UTF-8 code points), with an optional cap that ellipsizes long cells. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "ctl-table.h"

struct CtlTable {
        size_t n_columns;
        char *headers[CTL_TABLE_COLUMNS_MAX];
        size_t max_width[CTL_TABLE_COLUMNS_MAX];
        char **cells;
        size_t n_cells;
        size_t n_allocated;
};

static size_t utf8_width(const char *s) {
        size_t n = 0;

        for (; *s; s++)
                if (((unsigned char) *s & 0xC0) != 0x80)
                        n++;
        return n;
}

/* Byte length of the first `width` code points of s. */
static size_t utf8_prefix(const char *s, size_t width) {
        size_t i = 0, n = 0;

        while (s[i]) {
                if (((unsigned char) s[i] & 0xC0) != 0x80) {
                        if (n == width)
                                break;
                        n++;
                }
                i++;
        }
        return i;
}

CtlTable *ctl_table_new(const char *first_header, ...) {
        CtlTable *t;
        va_list ap;

        t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;
        va_start(ap, first_header);
        for (const char *h = first_header; h; h = va_arg(ap, const char *)) {
                if (t->n_columns >= CTL_TABLE_COLUMNS_MAX || !(t->headers[t->n_columns] = strdup(h))) {
                        va_end(ap);
                        return ctl_table_free(t);
                }
                t->n_columns++;
        }
        va_end(ap);
        if (t->n_columns == 0)
                return ctl_table_free(t);
        return t;
}

CtlTable *ctl_table_free(CtlTable *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_columns; i++)
                free(t->headers[i]);
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
        return NULL;
}

void ctl_table_set_max_width(CtlTable *t, size_t column, size_t width) {
        if (column < t->n_columns)
                t->max_width[column] = width;
}

int ctl_table_add(CtlTable *t, const char *cell) {
        char *copy;

        if (t->n_cells == t->n_allocated) {
                size_t n = MAX(t->n_allocated * 2, (size_t) 32);
                char **c = reallocarray(t->cells, n, sizeof(char *));
                if (!c)
                        return -ENOMEM;
                t->cells = c;
                t->n_allocated = n;
        }
        copy = strdup(cell ?: "-");
        if (!copy)
                return -ENOMEM;
        /* Control characters would break the layout (and a terminal): show them as '?'. */
        for (char *p = copy; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = '?';
        t->cells[t->n_cells++] = copy;
        return 0;
}

int ctl_table_addf(CtlTable *t, const char *fmt, ...) {
        _cleanup_free_ char *s = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        return ctl_table_add(t, s);
}

size_t ctl_table_rows(const CtlTable *t) {
        return (t->n_cells + t->n_columns - 1) / t->n_columns;
}

static size_t cell_width(const CtlTable *t, size_t column, const char *s) {
        size_t w = utf8_width(s);

        if (t->max_width[column] > 0 && w > t->max_width[column])
                return t->max_width[column];
        return w;
}

static void print_cell(const CtlTable *t, FILE *f, size_t column, const char *s, size_t width, bool last) {
        size_t w = utf8_width(s), cap = t->max_width[column];

        if (cap > 0 && w > cap) {
                fprintf(f, "%.*s…", (int) utf8_prefix(s, cap - 1), s);
                w = cap;
        } else
                fputs(s, f);
        if (!last)
                fprintf(f, "%*s", (int) (width - w + 1), "");
}

int ctl_table_print(const CtlTable *t, FILE *f, bool legend) {
        size_t width[CTL_TABLE_COLUMNS_MAX] = {};
        size_t rows = ctl_table_rows(t);

        for (size_t c = 0; c < t->n_columns; c++)
                if (legend)
                        width[c] = cell_width(t, c, t->headers[c]);
        for (size_t i = 0; i < t->n_cells; i++) {
                size_t c = i % t->n_columns;
                width[c] = MAX(width[c], cell_width(t, c, t->cells[i]));
        }

        if (legend)
                for (size_t c = 0; c < t->n_columns; c++) {
                        print_cell(t, f, c, t->headers[c], width[c], c + 1 == t->n_columns);
                        if (c + 1 == t->n_columns)
                                fputc('\n', f);
                }
        for (size_t r = 0; r < rows; r++) {
                /* The last cell printed in a row: missing cells at its end are not padded. */
                size_t last = MIN(t->n_columns, t->n_cells - r * t->n_columns) - 1;
                for (size_t c = 0; c <= last; c++)
                        print_cell(t, f, c, t->cells[r * t->n_columns + c], width[c], c == last);
                fputc('\n', f);
        }
        return ferror(f) ? -EIO : 0;
}

char *ctl_table_format_bytes(uint64_t bytes, char buf[static CTL_TABLE_BYTES_MAX]) {
        static const char units[] = "KMGTPE";
        double v = (double) bytes;
        size_t u = 0;

        if (bytes < 1024) {
                (void) snprintf(buf, CTL_TABLE_BYTES_MAX, "%" PRIu64 "B", bytes);
                return buf;
        }
        /* "1023.9K" would read as more than "1.0M": move up a unit before the rounding does. */
        for (v /= 1024; v >= 1023.95 && units[u + 1]; u++)
                v /= 1024;
        (void) snprintf(buf, CTL_TABLE_BYTES_MAX, "%.1f%c", v, units[u]);
        return buf;
}
