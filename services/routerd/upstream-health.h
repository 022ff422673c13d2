/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* When to fetch a node's model list, and whether the node is up: a pure state machine over
 * a caller-supplied clock, so tests drive it with a fake one. Each fetch of /api/tags is
 * both the health probe and the model refresh. */
#pragma once

#include "macro.h"

/* Reports blaming the upstream start a probe at once, but not more often than this. */
#define UPSTREAM_REPORT_PROBE_GAP_USEC (100 * USEC_PER_MSEC)

typedef enum UpstreamState {
        UPSTREAM_UNKNOWN,       /* no fetch finished yet; routed to as "down" */
        UPSTREAM_UP,
        UPSTREAM_DOWN,
        _UPSTREAM_STATE_MAX,
} UpstreamState;

typedef struct UpstreamHealth {
        UpstreamState state;
        bool fetching;               /* a fetch is in flight */
        usec_t tags_interval;        /* between fetches while up */
        usec_t probe_interval;       /* between fetches while down */
        usec_t next_fetch;           /* when the next fetch is due (ignored while fetching) */
        usec_t last_fetch_start;     /* 0: never */
        usec_t last_change;          /* when state last changed */
        unsigned consecutive_failures;
        uint64_t n_fetches;
        uint64_t n_failures;
        uint64_t n_report_probes;    /* fetches started early because of a report */
        bool refresh_pending;        /* the model list changed during a fetch: fetch again after it */
} UpstreamHealth;

const char *upstream_state_to_string(UpstreamState s);

/* The first fetch is due at once. */
void upstream_health_init(UpstreamHealth *h, usec_t tags_interval, usec_t probe_interval, usec_t now);

/* Whether a fetch should start now. */
bool upstream_health_fetch_due(const UpstreamHealth *h, usec_t now);
/* When the caller should look again: next_fetch, or USEC_INFINITY while a fetch is in flight
 * (its end, or its timeout, will tell). */
usec_t upstream_health_next_wakeup(const UpstreamHealth *h);

void upstream_health_fetch_started(UpstreamHealth *h, usec_t now);
/* The fetch answered 200 with a parseable list. Returns true if the state changed. */
bool upstream_health_fetch_succeeded(UpstreamHealth *h, usec_t now);
/* Connect error, timeout, non-200, unparseable body. Returns true if the state changed. */
bool upstream_health_fetch_failed(UpstreamHealth *h, usec_t now);

/* Whether an outcome reported by the shim blames the upstream: no HTTP status (connect
 * failure), a 5xx, or an error string. 4xx are the client's business. */
bool upstream_outcome_is_failure(unsigned http_status, const char *error);
/* A report blamed the upstream: pulls the next fetch forward to now (at most one per
 * UPSTREAM_REPORT_PROBE_GAP_USEC after the last one started). Returns true if that made a
 * fetch due earlier than it was. Does nothing while a fetch is in flight. */
bool upstream_health_report_failure(UpstreamHealth *h, usec_t now);
/* The model list changed (a pull, create, copy or delete went through): fetch again now, or,
 * while a fetch runs (it may have started before the change), right after it. Returns true
 * when the next fetch moved. */
bool upstream_health_refresh(UpstreamHealth *h, usec_t now);

/* Exponentially weighted moving average of time to first byte, alpha = 1/TTFB_EWMA_WEIGHT.
 * The first sample (old == 0) is taken as is. */
#define TTFB_EWMA_WEIGHT 5U
usec_t ttfb_ewma_update(usec_t old, usec_t sample);
