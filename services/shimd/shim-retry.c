/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The retry rules of the proxy as a pure function of what happened (shim-retry.h): the relay
 * (shimd-proxy.c) does the I/O, this file decides, and test-shim-retry drives it. */
#include <stdio.h>

#include "shim-retry.h"

void shim_retry_init(ShimRetry *r, unsigned max_retries) {
        *r = (ShimRetry) { .max_retries = MIN(max_retries, (unsigned) SHIM_RETRY_MAX_NODES - 1) };
}

void shim_retry_target(ShimRetry *r, const char *node_id) {
        if (isempty(node_id) || r->n_tried >= SHIM_RETRY_MAX_NODES)
                return;
        for (unsigned i = 0; i < r->n_tried; i++)
                if (streq(r->tried[i], node_id))
                        return;
        snprintf(r->tried[r->n_tried++], NODE_ID_LEN + 1, "%s", node_id);
}

ShimRetryAction shim_retry_next(ShimRetry *r, const ShimRetryRequest *req, const ShimAttemptFailure *f) {
        if (++r->n_retries > r->max_retries)
                return SHIM_RETRY_GIVE_UP;
        /* The node answered (a 5xx: busy, or its Ollama failed): only another node can do better. */
        if (f->status)
                return req->routed && r->n_tried < SHIM_RETRY_MAX_NODES ? SHIM_RETRY_OTHER_NODE : SHIM_RETRY_GIVE_UP;
        /* Silence after the request went out is not worth waiting for twice. */
        if (f->timed_out && f->connected)
                return SHIM_RETRY_GIVE_UP;
        /* A pooled keep-alive connection may have been closed by the upstream just before we
         * used it: that says nothing about the node; try it once more on a new connection, if
         * running the request twice is harmless (it may have reached the upstream). */
        if (f->reused && !r->fresh_retry_done && !f->node_lost && req->repeatable) {
                r->fresh_retry_done = true;
                return SHIM_RETRY_FRESH_CONNECTION;
        }
        if (!req->routed || r->n_tried >= SHIM_RETRY_MAX_NODES)
                return SHIM_RETRY_GIVE_UP;
        return SHIM_RETRY_OTHER_NODE;
}

char *const *shim_retry_exclude(ShimRetry *r) {
        for (unsigned i = 0; i < r->n_tried; i++)
                r->exclude[i] = r->tried[i];
        r->exclude[r->n_tried] = NULL;
        return r->exclude;
}

const char *shim_retry_action_to_string(ShimRetryAction a) {
        switch (a) {
        case SHIM_RETRY_GIVE_UP: return "give up";
        case SHIM_RETRY_FRESH_CONNECTION: return "fresh connection";
        case SHIM_RETRY_OTHER_NODE: return "other node";
        }
        return "?";
}
