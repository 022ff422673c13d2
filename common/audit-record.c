/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Builds one audit entry: the journal fields of docs/audit.md and a message a person can read in
 * journalctl, from a record of plain values. Every text value is cut to AUDIT_VALUE_MAX and
 * has its control characters replaced, so a client's path or model name cannot forge a field or
 * a line; only the prompt, kept on request, goes in as it came. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "audit-record.h"

/* Copies value into dst (size bytes, NUL-terminated), cut at max bytes, control characters and
 * DEL as '?'; "-" for NULL or "". */
static void clean_value(char *dst, size_t size, const char *value, size_t max) {
        size_t n = 0;

        if (isempty(value))
                value = "-";
        for (; value[n] && n < max && n + 1 < size; n++) {
                unsigned char c = (unsigned char) value[n];

                dst[n] = c < 0x20 || c == 0x7f ? '?' : (char) c;
        }
        dst[n] = '\0';
}

_printf_(3, 4)
static void add_field(AuditEntry *e, const char *key, const char *fmt, ...) {
        size_t left = sizeof(e->text) - e->used;
        char *start = e->text + e->used;
        va_list ap;
        int n, k;

        if (e->n_fields >= ELEMENTSOF(e->fields) || left < 2)
                return;
        k = snprintf(start, left, "%s=", key);
        if (k < 0 || (size_t) k >= left)
                return;
        va_start(ap, fmt);
        n = vsnprintf(start + k, left - (size_t) k, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        n = (int) MIN((size_t) n, left - (size_t) k - 1);
        e->fields[e->n_fields++] = (struct iovec) { start, (size_t) (k + n) };
        e->used += (size_t) (k + n) + 1;
}

static void count(char *buf, size_t size, int64_t n) {
        if (n < 0)
                snprintf(buf, size, "-");
        else
                snprintf(buf, size, "%" PRId64, n);
}

void audit_entry_build(AuditEntry *e, const AuditRecord *r) {
        char token[AUDIT_VALUE_MAX + 1], client[AUDIT_VALUE_MAX + 1], method[32],
                path[AUDIT_VALUE_MAX + 1], model[AUDIT_VALUE_MAX + 1], entry[AUDIT_VALUE_MAX + 1],
                served[AUDIT_VALUE_MAX + 1], prompt_n[24], completion_n[24], tokens[64] = "";
        const char *target = strempty(r->target);
        uint64_t ms = r->duration_usec / USEC_PER_MSEC;

        *e = (AuditEntry) {};
        clean_value(token, sizeof(token), r->token, AUDIT_VALUE_MAX);
        clean_value(client, sizeof(client), r->client, AUDIT_VALUE_MAX);
        clean_value(method, sizeof(method), r->method, sizeof(method) - 1);
        /* The path only: a query may carry what was never meant for a log. */
        clean_value(path, sizeof(path), target, MIN(strcspn(target, "?#"), (size_t) AUDIT_VALUE_MAX));
        if (path[0] == '\0')
                clean_value(path, sizeof(path), NULL, 1);
        clean_value(model, sizeof(model), r->model, AUDIT_VALUE_MAX);
        clean_value(entry, sizeof(entry), r->entry_node, AUDIT_VALUE_MAX);
        clean_value(served, sizeof(served), r->served_by, AUDIT_VALUE_MAX);
        count(prompt_n, sizeof(prompt_n), r->prompt_tokens);
        count(completion_n, sizeof(completion_n), r->completion_tokens);

        add_field(e, "MESSAGE_ID", "%s", AUDIT_MESSAGE_ID);
        add_field(e, AUDIT_FIELD_TOKEN, "%s", token);
        add_field(e, AUDIT_FIELD_CLIENT, "%s", client);
        add_field(e, AUDIT_FIELD_ENDPOINT, "%s %s", method, path);
        add_field(e, AUDIT_FIELD_MODEL, "%s", model);
        add_field(e, AUDIT_FIELD_ENTRY_NODE, "%s", entry);
        add_field(e, AUDIT_FIELD_SERVED_BY, "%s", served);
        add_field(e, AUDIT_FIELD_STATUS, "%d", r->status);
        add_field(e, AUDIT_FIELD_PROMPT_TOKENS, "%s", prompt_n);
        add_field(e, AUDIT_FIELD_COMPLETION_TOKENS, "%s", completion_n);
        add_field(e, AUDIT_FIELD_DURATION_MS, "%" PRIu64, ms);
        if (r->prompt_field) {
                add_field(e, AUDIT_FIELD_PROMPT_BYTES, "%zu", r->prompt_total);
                if (e->n_fields < ELEMENTSOF(e->fields))
                        e->fields[e->n_fields++] = (struct iovec) { (void *) r->prompt_field, r->prompt_field_size };
        }

        if (r->prompt_tokens >= 0 || r->completion_tokens >= 0)
                snprintf(tokens, sizeof(tokens), ", %s+%s tokens", r->prompt_tokens >= 0 ? prompt_n : "?",
                         r->completion_tokens >= 0 ? completion_n : "?");
        /* "for ENTRY" on the serving node of a forwarded request. */
        snprintf(e->message, sizeof(e->message), "%s %s%s%s %d via %s%s%s%s, %" PRIu64 " ms (%s%s)", method, path,
                 isempty(r->model) ? "" : " ", isempty(r->model) ? "" : model, r->status, served,
                 r->from_peer ? " for " : "", r->from_peer ? entry : "", tokens, ms,
                 isempty(r->token) ? "no token" : "token ", isempty(r->token) ? "" : token);
}

int audit_prompt_field(const void *body, size_t size, char **ret, size_t *ret_size) {
        static const char key[] = AUDIT_FIELD_PROMPT "=";
        size_t n = MIN(size, (size_t) AUDIT_PROMPT_MAX);
        char *f;

        f = malloc(sizeof(key) - 1 + n + 1);
        if (!f)
                return -ENOMEM;
        memcpy(f, key, sizeof(key) - 1);
        if (n > 0)
                memcpy(f + sizeof(key) - 1, body, n);
        f[sizeof(key) - 1 + n] = '\0';
        *ret = f;
        *ret_size = sizeof(key) - 1 + n;
        return 0;
}
