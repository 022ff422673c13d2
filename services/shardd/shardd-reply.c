/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The answers of shardd's transfer listener: an error object or a JSON body. A leaf every route
 * file uses (the listener dispatches to them; they answer through this, not through it). */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <string.h>

#include "shardd-reply.h"

void shard_peer_reply_error(struct evhttp_request *req, int status, const char *reason, const char *message) {
        struct evbuffer *b = evbuffer_new();

        if (!b) {
                evhttp_send_error(req, status, reason);
                return;
        }
        (void) evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
        /* message is ours (never a peer's bytes): no escaping needed beyond what it holds. */
        (void) evbuffer_add_printf(b, "{\"error\":\"%s\"}", message);
        evhttp_send_reply(req, status, reason, b);
        evbuffer_free(b);
}

void shard_peer_reply_json(struct evhttp_request *req, const char *json) {
        struct evbuffer *out = evbuffer_new();

        if (!out) {
                shard_peer_reply_error(req, 500, "Internal Server Error", "out of memory");
                return;
        }
        (void) evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
        (void) evbuffer_add(out, json, strlen(json));
        evhttp_send_reply(req, 200, "OK", out);
        evbuffer_free(out);
}

