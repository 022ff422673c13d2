/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A circuit breaker per node: repeated failed requests cool a node down for a backoff, then one
 * outcome decides whether it serves again. Pure: the clock and the jitter are passed in. */
#pragma once

#include "macro.h"

/* Failed outcomes in a row that open a closed breaker. */
#define NODE_BREAKER_FAILURES 3U
/* Cooling after the first opening; doubled for each opening in a row, at most the maximum. */
#define NODE_BREAKER_BACKOFF_MIN_USEC (1 * USEC_PER_SEC)
#define NODE_BREAKER_BACKOFF_MAX_USEC (30 * USEC_PER_SEC)
/* A cooling period is up to this fraction (1/N) shorter than its backoff, so that nodes which
 * failed together do not all come back in the same instant; never longer. */
#define NODE_BREAKER_JITTER_DIVISOR 10U

typedef enum NodeBreakerState {
        NODE_BREAKER_CLOSED,            /* routed to; counting failures in a row */
        NODE_BREAKER_OPEN,              /* cooling: routed around until open_until */
        NODE_BREAKER_HALF_OPEN,         /* routed to again; the next decisive outcome closes or re-opens */
        _NODE_BREAKER_STATE_MAX,
} NodeBreakerState;

/* What one reported outcome says about the node. */
typedef enum NodeOutcome {
        NODE_OUTCOME_SUCCESS,
        NODE_OUTCOME_FAILURE,
        NODE_OUTCOME_NEUTRAL,           /* says nothing about the node: 4xx, the client went away */
} NodeOutcome;

typedef struct NodeBreaker {
        NodeBreakerState state;
        unsigned consecutive_failures;  /* closed: failed outcomes since the last success */
        unsigned openings;              /* openings since the last close; picks the backoff */
        usec_t open_until;              /* open: when it turns half-open */
        usec_t last_change;
        uint64_t n_opened;              /* times opened, in all */
} NodeBreaker;

const char *node_breaker_state_to_string(NodeBreakerState s);

/* Closed, no history. */
void node_breaker_init(NodeBreaker *b, usec_t now);

/* A failure is what upstream_outcome_is_failure() calls one (no status, 5xx, an error string),
 * except what the client caused: any 4xx (499, the client went away before the answer, among
 * them) and an answer cut short because the client disconnected (error "client disconnected",
 * as mycelia-shimd reports it). A 2xx or 3xx without an error is a success. */
NodeOutcome node_outcome_classify(unsigned http_status, const char *error);

/* The cooling period of the n-th opening in a row (n >= 1): min(MIN << (n - 1), MAX), less
 * random modulo a tenth of that plus one. */
usec_t node_breaker_backoff(unsigned openings, uint64_t random);

/* Feeds one outcome. Closed: a failure counts, NODE_BREAKER_FAILURES in a row open it, a
 * success resets the count. Half-open: a success closes it (and resets the backoff), a failure
 * opens it again with the doubled backoff. Open: ignored (requests sent before it opened).
 * Neutral outcomes change nothing. random feeds the jitter. Returns true if the state changed. */
bool node_breaker_record(NodeBreaker *b, NodeOutcome o, usec_t now, uint64_t random);

/* Open and the deadline passed: half-open. Returns true if the state changed. */
bool node_breaker_tick(NodeBreaker *b, usec_t now);

/* open_until while open, USEC_INFINITY otherwise: when node_breaker_tick() has work. */
usec_t node_breaker_next_wakeup(const NodeBreaker *b);

/* Whether requests may go to the node: not while open. */
static inline bool node_breaker_routable(const NodeBreaker *b) {
        return b->state != NODE_BREAKER_OPEN;
}
