/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/audit-record.c: the fields of an audit entry and their order, "-"
 * for what is not known, the query left out of the endpoint, control characters and long values
 * made harmless, the message, and the prompt kept only when given. */
#include <stdio.h>

#include "audit-record.h"
#include "unit-test.h"

/* The value of field key in e, NUL-terminated in buf; NULL when absent. */
static const char *field(const AuditEntry *e, const char *key, char *buf, size_t size) {
        size_t k = strlen(key);

        for (size_t i = 0; i < e->n_fields; i++) {
                const char *f = e->fields[i].iov_base;
                size_t n = e->fields[i].iov_len;

                if (n > k && strneq(f, key, k) && f[k] == '=') {
                        snprintf(buf, size, "%.*s", (int) (n - k - 1), f + k + 1);
                        return buf;
                }
        }
        return NULL;
}

static const AuditRecord chat = {
        .token = "alice",
        .client = "192.168.1.7:51234",
        .method = "POST",
        .target = "/api/chat",
        .model = "llama3.2",
        .entry_node = "kitchen",
        .served_by = "attic",
        .status = 200,
        .prompt_tokens = 12,
        .completion_tokens = 34,
        .duration_usec = 850 * USEC_PER_MSEC + 999,
};

START_TEST(test_fields) {
        static const char *const keys[] = {
                "MESSAGE_ID", "MYCELIA_AUDIT_TOKEN", "MYCELIA_AUDIT_CLIENT", "MYCELIA_AUDIT_ENDPOINT",
                "MYCELIA_AUDIT_MODEL", "MYCELIA_AUDIT_ENTRY_NODE", "MYCELIA_AUDIT_SERVED_BY", "MYCELIA_AUDIT_STATUS",
                "MYCELIA_AUDIT_PROMPT_TOKENS", "MYCELIA_AUDIT_COMPLETION_TOKENS", "MYCELIA_AUDIT_DURATION_MS",
        };
        static const char *const values[] = {
                "efa495bb8cd04be794418a911dd693bf", "alice", "192.168.1.7:51234", "POST /api/chat", "llama3.2",
                "kitchen", "attic", "200", "12", "34", "850",
        };
        AuditEntry e;
        char buf[1024];

        audit_entry_build(&e, &chat);
        ck_assert_uint_eq(e.n_fields, ELEMENTSOF(keys));
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                ck_assert_ptr_nonnull(field(&e, keys[i], buf, sizeof(buf)));
                ck_assert_str_eq(buf, values[i]);
        }
        ck_assert_str_eq(e.message, "POST /api/chat llama3.2 200 via attic, 12+34 tokens, 850 ms (token alice)");
        ck_assert_ptr_null(field(&e, AUDIT_FIELD_PROMPT, buf, sizeof(buf)));
}
END_TEST

START_TEST(test_unknowns_and_serving_node) {
        AuditEntry e;
        char buf[1024];

        audit_entry_build(&e, &(AuditRecord) {
                .client = "10.0.0.2:40000", .method = "GET", .target = "/api/tags?verbose=1&key=secret",
                .entry_node = "kitchen", .served_by = "kitchen", .status = 401,
                .prompt_tokens = -1, .completion_tokens = -1, .duration_usec = 0 });
        ck_assert_str_eq(field(&e, AUDIT_FIELD_TOKEN, buf, sizeof(buf)), "-");
        ck_assert_str_eq(field(&e, AUDIT_FIELD_MODEL, buf, sizeof(buf)), "-");
        ck_assert_str_eq(field(&e, AUDIT_FIELD_ENDPOINT, buf, sizeof(buf)), "GET /api/tags");
        ck_assert_str_eq(field(&e, AUDIT_FIELD_PROMPT_TOKENS, buf, sizeof(buf)), "-");
        ck_assert_str_eq(field(&e, AUDIT_FIELD_COMPLETION_TOKENS, buf, sizeof(buf)), "-");
        ck_assert_str_eq(e.message, "GET /api/tags 401 via kitchen, 0 ms (no token)");

        /* On the node that served it for another: "for ENTRY"; one count known. */
        audit_entry_build(&e, &(AuditRecord) {
                .token = "alice", .client = "10.0.0.1:5000", .method = "POST", .target = "/api/embed",
                .model = "nomic-embed-text", .entry_node = "kitchen", .served_by = "attic", .from_peer = true,
                .status = 200, .prompt_tokens = 9, .completion_tokens = -1, .duration_usec = 3 * USEC_PER_MSEC });
        ck_assert_str_eq(e.message, "POST /api/embed nomic-embed-text 200 via attic for kitchen, 9+? tokens, 3 ms "
                                    "(token alice)");
        /* Nothing at all. */
        audit_entry_build(&e, &(AuditRecord) { .prompt_tokens = -1, .completion_tokens = -1 });
        ck_assert_str_eq(field(&e, AUDIT_FIELD_ENDPOINT, buf, sizeof(buf)), "- -");
        ck_assert_str_eq(field(&e, AUDIT_FIELD_CLIENT, buf, sizeof(buf)), "-");
}
END_TEST

START_TEST(test_values_are_made_harmless) {
        char model[3 * AUDIT_VALUE_MAX], buf[4 * AUDIT_VALUE_MAX];
        AuditEntry e;

        memset(model, 'm', sizeof(model) - 1);
        model[sizeof(model) - 1] = '\0';
        audit_entry_build(&e, &(AuditRecord) {
                .token = "bob", .client = "c", .method = "POST",
                .target = "/api/chat\nMYCELIA_AUDIT_TOKEN=root", .model = model,
                .entry_node = "a\r\nb", .served_by = "x\x7fy", .status = 200,
                .prompt_tokens = -1, .completion_tokens = -1 });
        /* A newline would end the field on stderr and forge another in the message. */
        ck_assert_str_eq(field(&e, AUDIT_FIELD_ENDPOINT, buf, sizeof(buf)), "POST /api/chat?MYCELIA_AUDIT_TOKEN=root");
        ck_assert_str_eq(field(&e, AUDIT_FIELD_ENTRY_NODE, buf, sizeof(buf)), "a??b");
        ck_assert_str_eq(field(&e, AUDIT_FIELD_SERVED_BY, buf, sizeof(buf)), "x?y");
        ck_assert_uint_eq(strlen(field(&e, AUDIT_FIELD_MODEL, buf, sizeof(buf))), AUDIT_VALUE_MAX);
        for (size_t i = 0; i < e.n_fields; i++)
                for (size_t k = 0; k < e.fields[i].iov_len; k++)
                        ck_assert_int_ge(((const unsigned char *) e.fields[i].iov_base)[k], 0x20);
        ck_assert_ptr_null(strchr(e.message, '\n'));
        ck_assert_str_eq(field(&e, AUDIT_FIELD_TOKEN, buf, sizeof(buf)), "bob");
}
END_TEST

START_TEST(test_prompt_kept_when_given) {
        _cleanup_free_ char *f = NULL, *big_field = NULL, *big = NULL;
        static const char body[] = "{\"model\":\"m\",\"prompt\":\"line1\nline2\"}";
        size_t size, big_size;
        AuditRecord r = chat;
        AuditEntry e;
        char buf[256];

        ck_assert_int_eq(audit_prompt_field(body, sizeof(body) - 1, &f, &size), 0);
        ck_assert_uint_eq(size, strlen(AUDIT_FIELD_PROMPT "=") + sizeof(body) - 1);
        r.prompt_field = f;
        r.prompt_field_size = size;
        r.prompt_total = sizeof(body) - 1;
        audit_entry_build(&e, &r);
        ck_assert_uint_eq(e.n_fields, 13);
        ck_assert_int_eq(atoi(field(&e, AUDIT_FIELD_PROMPT_BYTES, buf, sizeof(buf))), (int) sizeof(body) - 1);
        /* As it came, newline included: the journal keeps any byte. */
        ck_assert_ptr_eq(e.fields[12].iov_base, f);
        ck_assert_uint_eq(e.fields[12].iov_len, size);
        ck_assert_int_eq(memcmp((char *) e.fields[12].iov_base + strlen(AUDIT_FIELD_PROMPT "="), body,
                                sizeof(body) - 1), 0);

        /* Bounded. */
        big = malloc(3 * AUDIT_PROMPT_MAX);
        memset(big, 'x', 3 * AUDIT_PROMPT_MAX);
        ck_assert_int_eq(audit_prompt_field(big, 3 * AUDIT_PROMPT_MAX, &big_field, &big_size), 0);
        ck_assert_uint_eq(big_size, strlen(AUDIT_FIELD_PROMPT "=") + AUDIT_PROMPT_MAX);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shim-audit");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_fields);
        tcase_add_test(tc, test_unknowns_and_serving_node);
        tcase_add_test(tc, test_values_are_made_harmless);
        tcase_add_test(tc, test_prompt_kept_when_given);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
