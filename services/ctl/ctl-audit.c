/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* myceliactl audit: the shim's audit trail read back from the journal (sd-journal, matched on the
 * trail's MESSAGE_ID), as a table or one JSON object a line. docs/audit.md. */
#include <inttypes.h>
#include <stdio.h>
#include <systemd/sd-journal.h>
#include <time.h>

#include "ctl-table.h"
#include "ctl-time.h"
#include "myceliactl.h"
#include "audit-record.h"

const char *arg_since = NULL;

/* The value of field (without "KEY=") in *ret, malloc()ed; NULL when the entry lacks it. */
static int entry_field(sd_journal *j, const char *key, char **ret) {
        size_t k = strlen(key), len;
        const void *data;
        int r;

        r = sd_journal_get_data(j, key, &data, &len);
        if (r == -ENOENT) {
                *ret = NULL;
                return 0;
        }
        if (r < 0)
                return r;
        if (len < k + 1)
                return -EBADMSG;
        *ret = strndup((const char *) data + k + 1, len - k - 1);
        return *ret ? 0 : -ENOMEM;
}

typedef struct AuditRow {
        usec_t realtime;
        char *node;             /* NODE: the node that wrote it */
        char *token, *client, *endpoint, *model, *entry_node, *served_by, *status, *prompt_tokens,
                *completion_tokens, *duration_ms, *prompt, *prompt_bytes;
} AuditRow;

static void audit_row_done(AuditRow *r) {
        free(r->node);
        free(r->token);
        free(r->client);
        free(r->endpoint);
        free(r->model);
        free(r->entry_node);
        free(r->served_by);
        free(r->status);
        free(r->prompt_tokens);
        free(r->completion_tokens);
        free(r->duration_ms);
        free(r->prompt);
        free(r->prompt_bytes);
        *r = (AuditRow) {};
}

static int audit_row_read(sd_journal *j, AuditRow *row) {
        const struct {
                const char *key;
                char **field;
        } fields[] = {
                { "NODE", &row->node },
                { AUDIT_FIELD_TOKEN, &row->token },
                { AUDIT_FIELD_CLIENT, &row->client },
                { AUDIT_FIELD_ENDPOINT, &row->endpoint },
                { AUDIT_FIELD_MODEL, &row->model },
                { AUDIT_FIELD_ENTRY_NODE, &row->entry_node },
                { AUDIT_FIELD_SERVED_BY, &row->served_by },
                { AUDIT_FIELD_STATUS, &row->status },
                { AUDIT_FIELD_PROMPT_TOKENS, &row->prompt_tokens },
                { AUDIT_FIELD_COMPLETION_TOKENS, &row->completion_tokens },
                { AUDIT_FIELD_DURATION_MS, &row->duration_ms },
                { AUDIT_FIELD_PROMPT, &row->prompt },
                { AUDIT_FIELD_PROMPT_BYTES, &row->prompt_bytes },
        };
        int r;

        r = sd_journal_get_realtime_usec(j, &row->realtime);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                r = entry_field(j, fields[i].key, fields[i].field);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* A number field as JSON: null for "-" or anything that is not a whole number. */
static json_object *json_count(const char *s) {
        char *end;
        long long n;

        if (isempty(s))
                return NULL;
        errno = 0;
        n = strtoll(s, &end, 10);
        if (errno != 0 || *end != '\0' || n < 0)
                return NULL;
        return json_object_new_int64(n);
}

static json_object *json_text(const char *s) {
        return s && !streq(s, "-") ? json_object_new_string(s) : NULL;
}

static void print_json_line(const AuditRow *row) {
        json_object *o = json_object_new_object();
        char when[64];
        time_t t = (time_t) (row->realtime / USEC_PER_SEC);
        struct tm tm;

        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S%z", localtime_r(&t, &tm));
        json_object_object_add(o, "time", json_object_new_string(when));
        json_object_object_add(o, "realtime_usec", json_object_new_int64((int64_t) row->realtime));
        json_object_object_add(o, "node", json_text(row->node));
        json_object_object_add(o, "token", json_text(row->token));
        json_object_object_add(o, "client", json_text(row->client));
        json_object_object_add(o, "endpoint", json_text(row->endpoint));
        json_object_object_add(o, "model", json_text(row->model));
        json_object_object_add(o, "entry_node", json_text(row->entry_node));
        json_object_object_add(o, "served_by", json_text(row->served_by));
        json_object_object_add(o, "status", json_count(row->status));
        json_object_object_add(o, "prompt_tokens", json_count(row->prompt_tokens));
        json_object_object_add(o, "completion_tokens", json_count(row->completion_tokens));
        json_object_object_add(o, "duration_ms", json_count(row->duration_ms));
        if (row->prompt) {
                /* As kept: not necessarily UTF-8, so json-c escapes what it must. */
                json_object_object_add(o, "prompt", json_object_new_string(row->prompt));
                json_object_object_add(o, "prompt_bytes", json_count(row->prompt_bytes));
        }
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}

static int table_add_row(CtlTable *t, const AuditRow *row) {
        char when[32], tokens[48];
        const char *cells[] = { when, row->token, row->client, row->endpoint, row->model, row->entry_node,
                                row->served_by, row->status, tokens, row->duration_ms };
        time_t s = (time_t) (row->realtime / USEC_PER_SEC);
        struct tm tm;
        int r = 0;

        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime_r(&s, &tm));
        snprintf(tokens, sizeof(tokens), "%s+%s", row->prompt_tokens ?: "-", row->completion_tokens ?: "-");
        if (streq(tokens, "-+-"))
                snprintf(tokens, sizeof(tokens), "-");
        for (size_t i = 0; i < ELEMENTSOF(cells) && r >= 0; i++)
                r = ctl_table_add(t, cells[i]);
        return r;
}

int verb_audit(sd_bus *bus, int argc, char **argv) {
        _cleanup_(ctl_table_freep) CtlTable *t = NULL;
        sd_journal *j = NULL;
        usec_t since = 0;
        size_t n = 0;
        int r;

        if (arg_since) {
                r = ctl_time_parse(arg_since, now_realtime_usec(), &since);
                if (r < 0) {
                        fprintf(stderr, "Invalid --since '%s': want \"YYYY-MM-DD HH:MM:SS\", \"YYYY-MM-DD\", \"HH:MM\", "
                                "today, yesterday, @EPOCH, \"-1h\" or \"10min ago\".\n", arg_since);
                        return -EXIT_USAGE;
                }
        }
        r = sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY);
        if (r < 0) {
                fprintf(stderr, "Failed to open the journal: %s\n", strerror(-r));
                return -EXIT_FAILURE;
        }
        /* A kept prompt is up to 64 KiB and its key: read fields whole. */
        r = sd_journal_set_data_threshold(j, 0);
        if (r >= 0)
                r = sd_journal_add_match(j, "MESSAGE_ID=" AUDIT_MESSAGE_ID, 0);
        if (r >= 0)
                r = arg_since ? sd_journal_seek_realtime_usec(j, since) : sd_journal_seek_head(j);
        if (r < 0) {
                fprintf(stderr, "Failed to read the journal: %s\n", strerror(-r));
                sd_journal_close(j);
                return -EXIT_FAILURE;
        }
        if (!arg_json) {
                t = ctl_table_new("TIME", "TOKEN", "CLIENT", "ENDPOINT", "MODEL", "ENTRY", "SERVED-BY", "STATUS",
                                  "TOKENS", "MS", NULL);
                if (!t) {
                        sd_journal_close(j);
                        return -ENOMEM;
                }
                ctl_table_set_max_width(t, 3, 48);
                ctl_table_set_max_width(t, 4, 40);
        }
        while ((r = sd_journal_next(j)) > 0) {
                AuditRow row = {};

                r = audit_row_read(j, &row);
                if (r >= 0 && row.realtime >= since) {
                        if (arg_json)
                                print_json_line(&row);
                        else
                                r = table_add_row(t, &row);
                        n++;
                }
                audit_row_done(&row);
                if (r < 0)
                        break;
        }
        sd_journal_close(j);
        if (r < 0) {
                fprintf(stderr, "Failed to read the journal: %s\n", strerror(-r));
                return -EXIT_FAILURE;
        }
        if (n == 0 && geteuid() != 0)
                fprintf(stderr, "No audit entries found; reading the system journal needs root or the group adm or "
                        "systemd-journal.\n");
        if (arg_json)
                return 0;
        if (n > 0)
                (void) ctl_table_print(t, stdout, arg_legend);
        if (arg_legend)
                printf("%s%zu requests%s%s.\n", n > 0 ? "\n" : "", n, arg_since ? " since " : "", strempty(arg_since));
        return 0;
}
