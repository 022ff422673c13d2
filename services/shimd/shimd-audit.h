/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The audit trail (docs/audit.md): one journal entry, MESSAGE_ID AUDIT_MESSAGE_ID, for each
 * request the shim answers, on the API listener as the entry node and on the mesh listener as
 * the serving node. The record is common/audit-record.c's; this file gathers its values and writes it. */
#pragma once

#include <event2/http.h>

#include "config.h"
#include "audit-record.h"
#include "shim-request.h"
#include "shim-stream.h"
#include "shimd-manager.h"


/* [audit] content. */
void shim_audit_setup(const MyceliaConfig *config);
/* This node's name, for the entries (the Manager's, which outlives every request). */
void shim_audit_start(Manager *m);
void shim_audit_done(void);

/* What a relayed request's entry needs that is read from the request when it arrives: the entry
 * node (a peer's X-Mycelia-Entry on the mesh listener), the model when routing did not read it,
 * the body when [audit] content=yes. Zeroed (calloc) it is "not begun", which is fine too. */
typedef struct ShimAuditState {
        bool begun;
        bool done;
        char entry_node[65];
        char *model;
        char *prompt_field;
        size_t prompt_field_size;
        size_t prompt_total;
} ShimAuditState;

/* model: what routing read from the body already, or NULL. */
void shim_audit_begin(ShimAuditState *a, ShimListenerKind kind, struct evhttp_request *req,
                      const ShimRequestClass *cls, const char *model);

typedef struct ShimAuditEnd {
        ShimListenerKind listener;
        const char *client;
        const char *method;
        const char *target;
        const char *token;
        const char *model;              /* routing's; NULL: the one begin read, if any */
        const char *served_by;
        int status;
        const ShimStream *stream;       /* the token counts; NULL: none */
        usec_t t_start;
} ShimAuditEnd;

/* Writes the entry (once) and frees what begin kept. */
void shim_audit_end(ShimAuditState *a, const ShimAuditEnd *e);
/* Frees what begin kept without an entry: the request was handed on to another part of the shim,
 * which writes its own. */
void shim_audit_forget(ShimAuditState *a);

/* The entry of a request the shim answered itself (401, 403, 503 busy, the collections and blobs
 * APIs, a spread request): everything is read from req, which must still be there; served by
 * this node. */
void shim_audit_request(ShimListenerKind kind, struct evhttp_request *req, int status, const char *model,
                        const char *served_by, usec_t t_start);
