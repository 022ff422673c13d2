/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Closed, open (cooling) and half-open for one node, from the outcomes the shim reports. A node
 * is judged by requests, not by probes: its Ollama may list models and still fail to serve. */
#include <limits.h>

#include "node-breaker.h"

static const char *const node_breaker_state_names[_NODE_BREAKER_STATE_MAX] = {
        [NODE_BREAKER_CLOSED] = "closed",
        [NODE_BREAKER_OPEN] = "open",
        [NODE_BREAKER_HALF_OPEN] = "half-open",
};

const char *node_breaker_state_to_string(NodeBreakerState s) {
        return s >= 0 && s < _NODE_BREAKER_STATE_MAX ? node_breaker_state_names[s] : NULL;
}

void node_breaker_init(NodeBreaker *b, usec_t now) {
        *b = (NodeBreaker) {
                .state = NODE_BREAKER_CLOSED,
                .open_until = USEC_INFINITY,
                .last_change = now,
        };
}

NodeOutcome node_outcome_classify(unsigned http_status, const char *error) {
        /* The client's doing, whatever else the entry says. */
        if (http_status >= 400 && http_status < 500)
                return NODE_OUTCOME_NEUTRAL;
        if (!isempty(error) && streq(error, "client disconnected") && http_status != 0 && http_status < 500)
                return NODE_OUTCOME_NEUTRAL;
        if (http_status == 0 || http_status >= 500 || !isempty(error))
                return NODE_OUTCOME_FAILURE;
        return NODE_OUTCOME_SUCCESS;
}

usec_t node_breaker_backoff(unsigned openings, uint64_t random) {
        usec_t backoff = NODE_BREAKER_BACKOFF_MIN_USEC;

        for (unsigned i = 1; i < openings && backoff < NODE_BREAKER_BACKOFF_MAX_USEC; i++)
                backoff *= 2;
        backoff = MIN(backoff, NODE_BREAKER_BACKOFF_MAX_USEC);
        return backoff - random % (backoff / NODE_BREAKER_JITTER_DIVISOR + 1);
}

static void node_breaker_open(NodeBreaker *b, usec_t now, uint64_t random) {
        usec_t cooling;

        if (b->openings < UINT_MAX)
                b->openings++;
        cooling = node_breaker_backoff(b->openings, random);
        b->state = NODE_BREAKER_OPEN;
        b->open_until = now > USEC_INFINITY - cooling ? USEC_INFINITY : now + cooling;
        b->consecutive_failures = 0;
        b->last_change = now;
        b->n_opened++;
}

static void node_breaker_close(NodeBreaker *b, usec_t now) {
        b->state = NODE_BREAKER_CLOSED;
        b->openings = 0;
        b->consecutive_failures = 0;
        b->open_until = USEC_INFINITY;
        b->last_change = now;
}

bool node_breaker_record(NodeBreaker *b, NodeOutcome o, usec_t now, uint64_t random) {
        if (o == NODE_OUTCOME_NEUTRAL)
                return false;

        switch (b->state) {
        case NODE_BREAKER_CLOSED:
                if (o == NODE_OUTCOME_SUCCESS) {
                        b->consecutive_failures = 0;
                        return false;
                }
                if (++b->consecutive_failures < NODE_BREAKER_FAILURES)
                        return false;
                node_breaker_open(b, now, random);
                return true;

        case NODE_BREAKER_HALF_OPEN:
                if (o == NODE_OUTCOME_SUCCESS)
                        node_breaker_close(b, now);
                else
                        node_breaker_open(b, now, random);
                return true;

        default:
                /* Open: what comes in now was sent before the node cooled down. */
                return false;
        }
}

bool node_breaker_tick(NodeBreaker *b, usec_t now) {
        if (b->state != NODE_BREAKER_OPEN || now < b->open_until)
                return false;
        b->state = NODE_BREAKER_HALF_OPEN;
        b->open_until = USEC_INFINITY;
        b->last_change = now;
        return true;
}

usec_t node_breaker_next_wakeup(const NodeBreaker *b) {
        return b->state == NODE_BREAKER_OPEN ? b->open_until : USEC_INFINITY;
}
