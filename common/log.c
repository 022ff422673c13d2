/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The journal or stderr, decided once at start-up. Journal entries carry MESSAGE, PRIORITY,
 * CODE_FILE/LINE/FUNC, ERRNO, SYSLOG_IDENTIFIER, NODE and whatever fields the caller adds. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "log.h"

#define LOG_MAX_FIELDS 16

static const char *log_identifier = "mycelia";
static char log_node[128];
static bool log_to_journal;
static int log_max_level = LOG_INFO;

void log_setup(const char *identifier, LogTarget target) {
        const char *e;

        if (identifier)
                log_identifier = identifier;

        if (target == LOG_TARGET_AUTO)
                target = (getenv("JOURNAL_STREAM") || getenv("INVOCATION_ID")) ? LOG_TARGET_JOURNAL
                                                                                : LOG_TARGET_STDERR;
        log_to_journal = target == LOG_TARGET_JOURNAL;

        e = getenv("MYCELIA_LOG_LEVEL");
        if (e) {
                int l = log_level_from_string(e);
                if (l >= 0)
                        log_max_level = l;
        }
}

void log_set_node(const char *node_name) {
        snprintf(log_node, sizeof(log_node), "%s", strempty(node_name));
}

void log_set_max_level(int level) {
        log_max_level = level;
}

int log_get_max_level(void) {
        return log_max_level;
}

int log_level_from_string(const char *s) {
        static const char *const names[] = {
                [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit",
                [LOG_ERR] = "err",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
                [LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
        };
        char *end;
        long n;

        if (isempty(s))
                return -EINVAL;
        if (streq(s, "error"))
                return LOG_ERR;
        if (streq(s, "warn"))
                return LOG_WARNING;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (streq(s, names[i]))
                        return (int) i;
        errno = 0;
        n = strtol(s, &end, 10);
        if (errno != 0 || *end || n < 0 || n > LOG_DEBUG)
                return -EINVAL;
        return (int) n;
}

static const char *const level_prefix[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",  [LOG_ERR] = "error",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

static void log_write_journal(int level, int error, const char *file, int line, const char *func,
                              const char *fields, const char *message) {
        char prio[32], code_line[48], err[32], node[160], ident[160], code_file[512], code_func[256];
        char msg_buf[4096 + 8];
        struct iovec iov[9 + LOG_MAX_FIELDS];
        char field_copy[2048];
        size_t n = 0;

        snprintf(msg_buf, sizeof(msg_buf), "MESSAGE=%s", message);
        snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
        snprintf(code_file, sizeof(code_file), "CODE_FILE=%s", file);
        snprintf(code_line, sizeof(code_line), "CODE_LINE=%d", line);
        snprintf(code_func, sizeof(code_func), "CODE_FUNC=%s", func);
        snprintf(ident, sizeof(ident), "SYSLOG_IDENTIFIER=%s", log_identifier);

        iov[n++] = (struct iovec) { msg_buf, strlen(msg_buf) };
        iov[n++] = (struct iovec) { prio, strlen(prio) };
        iov[n++] = (struct iovec) { code_file, strlen(code_file) };
        iov[n++] = (struct iovec) { code_line, strlen(code_line) };
        iov[n++] = (struct iovec) { code_func, strlen(code_func) };
        iov[n++] = (struct iovec) { ident, strlen(ident) };
        if (error != 0) {
                snprintf(err, sizeof(err), "ERRNO=%d", abs(error));
                iov[n++] = (struct iovec) { err, strlen(err) };
        }
        if (log_node[0]) {
                snprintf(node, sizeof(node), "NODE=%s", log_node);
                iov[n++] = (struct iovec) { node, strlen(node) };
        }
        if (fields) {
                char *p, *save = NULL;

                snprintf(field_copy, sizeof(field_copy), "%s", fields);
                for (p = strtok_r(field_copy, "\n", &save); p && n < ELEMENTSOF(iov);
                     p = strtok_r(NULL, "\n", &save))
                        iov[n++] = (struct iovec) { p, strlen(p) };
        }

        (void) sd_journal_sendv(iov, (int) n);
}

static void log_write_stderr(int level, const char *fields, const char *message) {
        char extra[1024] = "";

        if (fields) {
                size_t j = 0;

                /* Fields become " [KEY=value KEY=value]" on one line. */
                extra[j++] = ' ';
                extra[j++] = '[';
                for (const char *p = fields; *p && j < sizeof(extra) - 2; p++)
                        extra[j++] = *p == '\n' ? ' ' : *p;
                extra[j++] = ']';
                extra[j] = '\0';
        }

        fprintf(stderr, "%s%s%s: %s: %s%s\n", log_identifier, log_node[0] ? "@" : "", log_node,
                level_prefix[level & LOG_PRIMASK], message, extra);
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *fields, const char *fmt, ...) {
        char message[4096];
        int saved_errno = errno;
        va_list ap;

        /* %m prints the error we were given, not whatever errno happens to hold. */
        errno = abs(error);
        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);

        if (log_to_journal)
                log_write_journal(level, error, file, line, func, fields, message);
        else
                log_write_stderr(level, fields, message);

        errno = saved_errno;
        return -abs(error);
}

/* Appends s to buf (at *j, size bytes in all, one left for the NUL) as a logfmt value. */
static void record_value_append(char *buf, size_t size, size_t *j, const char *v, size_t n) {
        static const size_t value_max = 1024;
        bool quote = n == 0;

        for (size_t i = 0; i < n && !quote; i++) {
                unsigned char c = (unsigned char) v[i];
                quote = c <= ' ' || c == '"' || c == '\\' || c >= 0x7f;
        }
        if (n > value_max)
                n = value_max;
#define PUT(ch) do { if (*j + 1 < size) buf[(*j)++] = (ch); } while (0)
        if (quote)
                PUT('"');
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) v[i];

                if (!quote)
                        PUT((char) c);
                else if (c == '"' || c == '\\') {
                        PUT('\\');
                        PUT((char) c);
                } else if (c == '\n') {
                        PUT('\\');
                        PUT('n');
                } else if (c < ' ' || c == 0x7f) {
                        char hex[5];

                        snprintf(hex, sizeof(hex), "\\x%02x", c);
                        for (const char *h = hex; *h; h++)
                                PUT(*h);
                } else
                        PUT((char) c);
        }
        if (quote)
                PUT('"');
#undef PUT
        buf[*j] = '\0';
}

void log_record(int level, const struct iovec *fields, size_t n_fields, const char *message) {
        int saved_errno = errno;

        if (log_to_journal) {
                _cleanup_free_ struct iovec *iov = NULL;
                char msg[4096 + 8], prio[32], node[160], ident[160];
                size_t n = 0;

                iov = calloc(n_fields + 4, sizeof(struct iovec));
                if (!iov)
                        return;
                snprintf(msg, sizeof(msg), "MESSAGE=%s", message);
                snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
                snprintf(ident, sizeof(ident), "SYSLOG_IDENTIFIER=%s", log_identifier);
                iov[n++] = (struct iovec) { msg, strlen(msg) };
                iov[n++] = (struct iovec) { prio, strlen(prio) };
                iov[n++] = (struct iovec) { ident, strlen(ident) };
                if (log_node[0]) {
                        snprintf(node, sizeof(node), "NODE=%s", log_node);
                        iov[n++] = (struct iovec) { node, strlen(node) };
                }
                for (size_t i = 0; i < n_fields; i++)
                        iov[n++] = fields[i];
                (void) sd_journal_sendv(iov, (int) n);
        } else {
                _cleanup_free_ char *line = NULL;
                size_t size = 256 + strlen(message), j = 0;

                for (size_t i = 0; i < n_fields; i++)
                        size += MIN(fields[i].iov_len, (size_t) 1024) * 4 + 4;
                line = malloc(size);
                if (!line)
                        return;
                j = (size_t) snprintf(line, size, "%s%s%s: %s: %s", log_identifier, log_node[0] ? "@" : "", log_node,
                                      level_prefix[level & LOG_PRIMASK], message);
                for (size_t i = 0; i < n_fields && j + 3 < size; i++) {
                        const char *f = fields[i].iov_base, *eq = memchr(f, '=', fields[i].iov_len);
                        size_t key = eq ? (size_t) (eq - f) : fields[i].iov_len;

                        line[j++] = ' ';
                        if (i == 0)
                                line[j++] = '[';
                        for (size_t k = 0; k < key && j + 1 < size; k++)
                                line[j++] = f[k];
                        if (j + 1 < size)
                                line[j++] = '=';
                        line[j] = '\0';
                        if (eq)
                                record_value_append(line, size, &j, eq + 1, fields[i].iov_len - key - 1);
                }
                fprintf(stderr, "%s%s\n", line, n_fields > 0 ? "]" : "");
        }
        errno = saved_errno;
}

