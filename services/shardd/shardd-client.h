/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Requests from this node's shardd to a peer's transfer listener, signed with the mesh key: one
 * libevent HTTP request each, bounded answer, one callback. */
#pragma once

#include <event2/buffer.h>
#include <event2/http.h>

#include "macro.h"
#include "node-id.h"

typedef struct Manager Manager;
typedef struct ShardCall ShardCall;

/* The answer: status 0 when none came (refused, reset, timed out, too large); body: the answer's
 * bytes (borrowed for the call). The call is freed after the callback returns. */
typedef void (*ShardCallFn)(ShardCall *call, int status, struct evbuffer *body, void *userdata);

/* What a call sends. */
typedef struct ShardCallRequest {
        enum evhttp_cmd_type method;    /* GET, HEAD, POST or PUT */
        const char *target;             /* "/shard/...?..." */
        const void *body;               /* may be NULL */
        size_t body_size;
        bool body_by_reference;         /* not copied: body lives until the callback ran or the call was cancelled */
        usec_t timeout;
        uint64_t answer_max;            /* the largest answer taken; 0: SHARD_CALL_ANSWER_MAX */
} ShardCallRequest;

/* Sends req to the peer node_id at url ("http://HOST:PORT"), signed for it. -ENOKEY without a
 * mesh key. */
int shard_call_send(Manager *m, const char *node_id, const char *url, const ShardCallRequest *req, ShardCallFn fn,
                    void *userdata, ShardCall **ret);
/* The common case: method (GET or POST) target with body (copied; may be NULL). */
int shard_call(Manager *m, const char *node_id, const char *url, enum evhttp_cmd_type method, const char *target,
               const void *body, size_t body_size, usec_t timeout, ShardCallFn fn, void *userdata, ShardCall **ret);
/* Cancels a call: its callback never runs. */
void shard_call_cancel(ShardCall *call);
/* Cancels every call in flight (shutdown). */
void shard_calls_cancel_all(Manager *m);

/* Largest answer a peer may send. */
#define SHARD_CALL_ANSWER_MAX (256U << 20)
