/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Where a proxied request goes after a failure before its first response byte, with no I/O:
 * the nodes it was tried on, its retry budget, and the rules (docs/shim-proxy.md, "Retries"). */
#pragma once

#include "route-table.h"

/* A request is retried at most max_retries times in all ([router] retries, default 2: on other
 * nodes, and once on a fresh connection), never twice on one node, and tried on at most
 * SHIM_RETRY_MAX_NODES nodes, which bounds the setting. */
#define SHIM_RETRY_MAX_NODES 8
#define SHIM_RETRY_DEFAULT 2

typedef struct ShimRetry {
        char tried[SHIM_RETRY_MAX_NODES][NODE_ID_LEN + 1];
        char *exclude[SHIM_RETRY_MAX_NODES + 1];        /* tried, NULL-terminated (shim_retry_exclude) */
        unsigned n_tried;
        unsigned n_retries;
        unsigned max_retries;
        bool fresh_retry_done;
} ShimRetry;

/* How the attempt that failed went. */
typedef struct ShimAttemptFailure {
        bool connected;         /* the connection was up: the request may have reached the node */
        bool timed_out;         /* the upstream stayed silent for the upstream timeout */
        bool reused;            /* on a pooled keep-alive connection */
        bool node_lost;         /* cut because its node left the routing table or went down */
        bool status;            /* answered with a 5xx before anything reached the client */
} ShimAttemptFailure;

/* What the request may do. */
typedef struct ShimRetryRequest {
        bool repeatable;        /* running it twice is harmless (safe methods, inference) */
        bool routed;            /* routed by model to a node of the table (it can go elsewhere) */
} ShimRetryRequest;

typedef enum ShimRetryAction {
        SHIM_RETRY_GIVE_UP,
        SHIM_RETRY_FRESH_CONNECTION,    /* the same node again, on a new connection */
        SHIM_RETRY_OTHER_NODE,          /* pick again, without the nodes tried (shim_retry_exclude) */
} ShimRetryAction;

/* max_retries above SHIM_RETRY_MAX_NODES - 1 counts as that. */
void shim_retry_init(ShimRetry *r, unsigned max_retries);
/* The next attempt goes to node_id (NULL or "": not a node of the table). */
void shim_retry_target(ShimRetry *r, const char *node_id);
/* After a failure before the first response byte: what to do next. Each call spends one retry
 * of the budget, whatever it answers. */
ShimRetryAction shim_retry_next(ShimRetry *r, const ShimRetryRequest *req, const ShimAttemptFailure *f);
/* The nodes tried so far, NULL-terminated, for the router cache's pick. Valid while r is. */
char *const *shim_retry_exclude(ShimRetry *r);

const char *shim_retry_action_to_string(ShimRetryAction a);
