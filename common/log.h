/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging for the daemons: structured journal entries (NODE=, PEER=, REQUEST_ID=, ...) when
 * running under systemd, plain lines on stderr otherwise. Library code logs at debug only. */
#pragma once

#include <sys/uio.h>
#include <syslog.h>

#include "macro.h"

typedef enum LogTarget {
        LOG_TARGET_AUTO,        /* journal if JOURNAL_STREAM/INVOCATION_ID says we run under systemd */
        LOG_TARGET_JOURNAL,
        LOG_TARGET_STDERR,
} LogTarget;

/* identifier: SYSLOG_IDENTIFIER, e.g. "mycelia-shimd"; node: the NODE= field on every entry. */
void log_setup(const char *identifier, LogTarget target);
void log_set_node(const char *node_name);
void log_set_max_level(int level);
int log_get_max_level(void);
/* Parses "debug", "info", "notice", "warning", "err"/"error", "crit" or a number. */
int log_level_from_string(const char *s);

/* Logs and returns -abs(error) (or 0 when error is 0). fields: NULL, or "KEY=value" strings
 * separated by '\n' attached to the journal entry (shown as "KEY=value" on stderr). %m in fmt
 * prints strerror(abs(error)). */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *fields, const char *fmt, ...) _printf_(7, 8);

/* One entry with fields the caller built, each iovec one "KEY=value" (a value may hold any byte,
 * newlines too), written whatever the log level says (the caller decides: the audit trail is a
 * record, not a diagnostic). To the journal as they are, with PRIORITY, SYSLOG_IDENTIFIER and
 * NODE; on stderr as the usual line, then the fields as KEY=value (values with spaces, quotes or
 * other bytes in double quotes, C-escaped, each cut at 1 KiB). */
void log_record(int level, const struct iovec *fields, size_t n_fields, const char *message);

#define log_full_errno(level, error, ...)                                               \
        ({                                                                              \
                int _level_ = (level), _e_ = (error);                                   \
                _level_ <= log_get_max_level()                                          \
                        ? log_internal(_level_, _e_, __FILE__, __LINE__, __func__, NULL, \
                                       __VA_ARGS__)                                     \
                        : -abs(_e_);                                                    \
        })

#define log_fields(level, fields, ...)                                                  \
        ({                                                                              \
                int _lv_ = (level);                                                     \
                _lv_ <= log_get_max_level()                                             \
                        ? log_internal(_lv_, 0, __FILE__, __LINE__, __func__, (fields), \
                                       __VA_ARGS__)                                     \
                        : 0;                                                            \
        })

#define log_full(level, ...) (void) log_full_errno((level), 0, __VA_ARGS__)
#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, (e), __VA_ARGS__)
#define log_notice_errno(e, ...) log_full_errno(LOG_NOTICE, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, (e), __VA_ARGS__)

#define log_oom() log_error_errno(ENOMEM, "Out of memory.")
