/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The audit trail's record (docs/audit.md): one journal entry per request the shim answers, its
 * fields and its message built from what the relay knew about the request. Pure: a struct in,
 * "KEY=value" fields and a line of text out; shimd-audit.c writes them. */
#pragma once

#include <sys/uio.h>

#include "macro.h"

/* MESSAGE_ID of every audit entry: journalctl MESSAGE_ID=efa495bb8cd04be794418a911dd693bf. Made
 * once with systemd-id128 new; never change it, readers filter on it. */
#define AUDIT_MESSAGE_ID "efa495bb8cd04be794418a911dd693bf"

#define AUDIT_FIELD_TOKEN "MYCELIA_AUDIT_TOKEN"
#define AUDIT_FIELD_CLIENT "MYCELIA_AUDIT_CLIENT"
#define AUDIT_FIELD_ENDPOINT "MYCELIA_AUDIT_ENDPOINT"
#define AUDIT_FIELD_MODEL "MYCELIA_AUDIT_MODEL"
#define AUDIT_FIELD_ENTRY_NODE "MYCELIA_AUDIT_ENTRY_NODE"
#define AUDIT_FIELD_SERVED_BY "MYCELIA_AUDIT_SERVED_BY"
#define AUDIT_FIELD_STATUS "MYCELIA_AUDIT_STATUS"
#define AUDIT_FIELD_PROMPT_TOKENS "MYCELIA_AUDIT_PROMPT_TOKENS"
#define AUDIT_FIELD_COMPLETION_TOKENS "MYCELIA_AUDIT_COMPLETION_TOKENS"
#define AUDIT_FIELD_DURATION_MS "MYCELIA_AUDIT_DURATION_MS"
#define AUDIT_FIELD_PROMPT "MYCELIA_AUDIT_PROMPT"
#define AUDIT_FIELD_PROMPT_BYTES "MYCELIA_AUDIT_PROMPT_BYTES"

/* The entry node's name, sent with a request forwarded to a peer so that the serving node's
 * entry says where the request came in. Clients' X-Mycelia-* headers never get through. */
#define AUDIT_ENTRY_HEADER "X-Mycelia-Entry"

/* [audit] content=yes: the request body is kept up to this many bytes. */
#define AUDIT_PROMPT_MAX (64U * 1024)
/* Longest value of a text field (a path, a model name, a node name); longer ones are cut. */
#define AUDIT_VALUE_MAX 512

typedef struct AuditRecord {
        const char *token;              /* the token's name; NULL or "": none ("-") */
        const char *client;             /* "ADDR:PORT" of the connection */
        const char *method;
        const char *target;             /* the request target; its query is left out */
        const char *model;              /* NULL: none or unknown ("-") */
        const char *entry_node;
        const char *served_by;          /* the node whose Ollama answered, or which answered itself */
        bool from_peer;                 /* came in on the mesh listener: this node serves it for entry_node */
        int status;
        int64_t prompt_tokens;          /* -1: unknown ("-") */
        int64_t completion_tokens;
        uint64_t duration_usec;
        /* [audit] content=yes: the whole MYCELIA_AUDIT_PROMPT=... field (audit_prompt_field()),
         * and the size of the body it was cut from. NULL: not kept. */
        const char *prompt_field;
        size_t prompt_field_size;
        size_t prompt_total;
} AuditRecord;

#define AUDIT_FIELDS_MAX 16

/* The built entry: fields[] point into text[] (and at the record's prompt field, which must
 * outlive it), each "KEY=value", values free of control characters but the prompt's. */
typedef struct AuditEntry {
        char message[6 * AUDIT_VALUE_MAX + 256];
        struct iovec fields[AUDIT_FIELDS_MAX];
        size_t n_fields;
        char text[AUDIT_FIELDS_MAX * (AUDIT_VALUE_MAX + 48)];
        size_t used;
} AuditEntry;

/* "MYCELIA_AUDIT_PROMPT=" and the first AUDIT_PROMPT_MAX bytes of body, as they are (a
 * journal field may hold any byte). malloc()ed, its size in *ret_size. */
int audit_prompt_field(const void *body, size_t size, char **ret, size_t *ret_size);

/* Fills e from r: MESSAGE_ID, the MYCELIA_AUDIT_* fields and the message, "POST /api/chat
 * llama3.2 200 via kitchen, 12+34 tokens, 850 ms (token alice)". */
void audit_entry_build(AuditEntry *e, const AuditRecord *r);
