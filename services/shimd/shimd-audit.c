/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The audit trail's I/O: reads what a request's entry needs from the libevent request (before it
 * is gone), keeps the body when [audit] content=yes, and writes the entry common/audit-record.c builds to
 * the journal (stderr when not under systemd) through log_record(), whatever the log level. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <inttypes.h>
#include <stdio.h>

#include "api-tokens.h"
#include "evbuffer-util.h"
#include "log.h"
#include "shim-request.h"
#include "shimd-audit.h"

typedef struct ShimAudit {
        bool enabled;
        bool content;
        const char *node_name;
} ShimAudit;

static ShimAudit audit;

void shim_audit_setup(const MyceliaConfig *config) {
        audit.enabled = config->audit_enabled;
        audit.content = config->audit_enabled && config->audit_content;
}

void shim_audit_start(Manager *m) {
        audit.node_name = m->node_name;
        if (!audit.enabled)
                log_notice("No audit trail: [audit] enabled=no.");
        else if (audit.content)
                log_notice("The audit trail keeps each request's body, up to %u bytes ([audit] content=yes).",
                           AUDIT_PROMPT_MAX);
}

void shim_audit_done(void) {
        audit = (ShimAudit) {};
}

/* The body's "model", read in place as routing reads it. */
static void body_model(struct evhttp_request *req, char **ret) {
        struct iovec small[16], *vec, *heap = NULL;
        int n = evbuffer_iovecs(evhttp_request_get_input_buffer(req), small, ELEMENTSOF(small), &vec, &heap);

        if (n > 0)
                (void) shim_request_extract_model(vec, (size_t) n, ret);
        free(heap);
}

static void body_prompt(struct evhttp_request *req, char **ret, size_t *ret_size, size_t *ret_total) {
        struct evbuffer *body = evhttp_request_get_input_buffer(req);
        size_t total = evbuffer_get_length(body), n = MIN(total, (size_t) AUDIT_PROMPT_MAX);
        _cleanup_free_ char *copy = NULL;

        copy = malloc(n + 1);
        if (!copy || evbuffer_copyout(body, copy, n) != (ssize_t) n)
                return;
        if (audit_prompt_field(copy, n, ret, ret_size) < 0)
                return;
        *ret_total = total;
}

static void entry_node_of(ShimListenerKind kind, struct evhttp_request *req, char buf[static 65]) {
        const char *v = kind == SHIM_LISTENER_MESH
                                ? evhttp_find_header(evhttp_request_get_input_headers(req), AUDIT_ENTRY_HEADER)
                                : audit.node_name;

        snprintf(buf, 65, "%s", v ?: "-");
}

void shim_audit_begin(ShimAuditState *a, ShimListenerKind kind, struct evhttp_request *req,
                      const ShimRequestClass *cls, const char *model) {
        if (!audit.enabled) {
                *a = (ShimAuditState) { .done = true };
                return;
        }
        *a = (ShimAuditState) { .begun = true };
        entry_node_of(kind, req, a->entry_node);
        if (!model && cls->routing == SHIM_ROUTING_BY_MODEL)
                body_model(req, &a->model);
        if (audit.content)
                body_prompt(req, &a->prompt_field, &a->prompt_field_size, &a->prompt_total);
}

void shim_audit_forget(ShimAuditState *a) {
        free(a->model);
        free(a->prompt_field);
        *a = (ShimAuditState) { .done = true };
}

static void audit_write(const AuditRecord *r) {
        AuditEntry e;

        if (!audit.enabled)
                return;
        audit_entry_build(&e, r);
        log_record(LOG_INFO, e.fields, e.n_fields, e.message);
}

void shim_audit_end(ShimAuditState *a, const ShimAuditEnd *e) {
        if (a->done)
                return;
        audit_write(&(AuditRecord) {
                .token = e->token,
                .client = e->client,
                .method = e->method,
                .target = e->target,
                .model = e->model ?: a->model,
                .entry_node = a->begun ? a->entry_node : e->listener == SHIM_LISTENER_API ? audit.node_name : NULL,
                .from_peer = e->listener == SHIM_LISTENER_MESH,
                /* None: the shim answered itself (a 404 for a pinned node, say). */
                .served_by = isempty(e->served_by) ? audit.node_name : e->served_by,
                .status = e->status,
                .prompt_tokens = e->stream ? e->stream->prompt_tokens : -1,
                .completion_tokens = e->stream ? e->stream->completion_tokens : -1,
                .duration_usec = now_usec() - e->t_start,
                .prompt_field = a->prompt_field,
                .prompt_field_size = a->prompt_field_size,
                .prompt_total = a->prompt_total,
        });
        shim_audit_forget(a);
}

void shim_audit_request(ShimListenerKind kind, struct evhttp_request *req, int status, const char *model,
                        const char *served_by, usec_t t_start) {
        struct evhttp_connection *evcon = req ? evhttp_request_get_connection(req) : NULL;
        _cleanup_free_ char *prompt = NULL;
        size_t prompt_size = 0, prompt_total = 0;
        char client[80] = "-", entry[65];
        char *host = NULL;
        uint16_t port = 0;

        if (!req || !audit.enabled)
                return;
        if (evcon) {
                evhttp_connection_get_peer(evcon, &host, &port);
                snprintf(client, sizeof(client), "%s:%u", strempty(host), port);
        }
        entry_node_of(kind, req, entry);
        if (audit.content)
                body_prompt(req, &prompt, &prompt_size, &prompt_total);
        audit_write(&(AuditRecord) {
                /* Set by shimd-auth.c once the token was checked (and by the entry node on the
                 * mesh listener); a client's own was removed on arrival. */
                .token = evhttp_find_header(evhttp_request_get_input_headers(req), API_TOKEN_HEADER),
                .client = client,
                .method = shim_method_name(evhttp_request_get_command(req)),
                .target = evhttp_request_get_uri(req),
                .model = model,
                .entry_node = entry,
                .from_peer = kind == SHIM_LISTENER_MESH,
                .served_by = served_by ?: audit.node_name,
                .status = status,
                .prompt_tokens = -1,
                .completion_tokens = -1,
                .duration_usec = t_start ? now_usec() - t_start : 0,
                .prompt_field = prompt,
                .prompt_field_size = prompt_size,
                .prompt_total = prompt_total,
        });
}
