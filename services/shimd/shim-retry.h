/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Where a proxied request goes after a failure before its first response byte, with no I/O:
 * the nodes it was tried on, its retry budget, and the rules (docs/shim-proxy.md, "Retries"). */
#pragma once

#include "route-table.h"

/* A request is tried on at most this many nodes (first choice plus one other), and retried at
 * most SHIM_RETRY_MAX times in all (on another node, and once on a fresh connection). */
#define SHIM_RETRY_MAX_NODES 2
#define SHIM_RETRY_MAX 2

typedef struct ShimRetry {
        char tried[SHIM_RETRY_MAX_NODES][NODE_ID_LEN + 1];
        char *exclude[SHIM_RETRY_MAX_NODES + 1];        /* tried, NULL-terminated (shim_retry_exclude) */
        unsigned n_tried;
        unsigned n_retries;
        bool fresh_retry_done;
} ShimRetry;

/* How the attempt that failed went. */
typedef struct ShimAttemptFailure {
        bool connected;         /* the connection was up: the request may have reached the node */
        bool timed_out;         /* the upstream stayed silent for the upstream timeout */
        bool reused;            /* on a pooled keep-alive connection */
        bool node_lost;         /* cut because its node left the routing table or went down */
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

void shim_retry_init(ShimRetry *r);
/* The next attempt goes to node_id (NULL or "": not a node of the table). */
void shim_retry_target(ShimRetry *r, const char *node_id);
/* After a failure before the first response byte: what to do next. Each call spends one retry
 * of the budget, whatever it answers. */
ShimRetryAction shim_retry_next(ShimRetry *r, const ShimRetryRequest *req, const ShimAttemptFailure *f);
/* The nodes tried so far, NULL-terminated, for the router cache's pick. Valid while r is. */
char *const *shim_retry_exclude(ShimRetry *r);

const char *shim_retry_action_to_string(ShimRetryAction a);
