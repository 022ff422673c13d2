/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Up/down and the fetch schedule of one node's Ollama. Down is declared on the first failed
 * fetch (a local Ollama that does not answer /api/tags cannot serve a request either). */
#include "upstream-health.h"

static const char *const upstream_state_names[_UPSTREAM_STATE_MAX] = {
        [UPSTREAM_UNKNOWN] = "unknown",
        [UPSTREAM_UP] = "up",
        [UPSTREAM_DOWN] = "down",
};

const char *upstream_state_to_string(UpstreamState s) {
        return s >= 0 && s < _UPSTREAM_STATE_MAX ? upstream_state_names[s] : NULL;
}

static usec_t usec_add(usec_t a, usec_t b) {
        return a > USEC_INFINITY - b ? USEC_INFINITY : a + b;
}

void upstream_health_init(UpstreamHealth *h, usec_t tags_interval, usec_t probe_interval, usec_t now) {
        *h = (UpstreamHealth) {
                .state = UPSTREAM_UNKNOWN,
                .tags_interval = tags_interval,
                .probe_interval = probe_interval,
                .next_fetch = now,
                .last_change = now,
        };
}

bool upstream_health_fetch_due(const UpstreamHealth *h, usec_t now) {
        return !h->fetching && now >= h->next_fetch;
}

usec_t upstream_health_next_wakeup(const UpstreamHealth *h) {
        return h->fetching ? USEC_INFINITY : h->next_fetch;
}

void upstream_health_fetch_started(UpstreamHealth *h, usec_t now) {
        h->fetching = true;
        h->last_fetch_start = now;
        h->n_fetches++;
}

static bool upstream_health_set_state(UpstreamHealth *h, UpstreamState s, usec_t now) {
        if (h->state == s)
                return false;
        h->state = s;
        h->last_change = now;
        return true;
}

bool upstream_health_fetch_succeeded(UpstreamHealth *h, usec_t now) {
        h->fetching = false;
        h->consecutive_failures = 0;
        h->next_fetch = h->refresh_pending ? now : usec_add(now, h->tags_interval);
        h->refresh_pending = false;
        return upstream_health_set_state(h, UPSTREAM_UP, now);
}

bool upstream_health_fetch_failed(UpstreamHealth *h, usec_t now) {
        h->fetching = false;
        h->refresh_pending = false;
        h->consecutive_failures++;
        h->n_failures++;
        h->next_fetch = usec_add(now, h->probe_interval);
        return upstream_health_set_state(h, UPSTREAM_DOWN, now);
}

bool upstream_outcome_is_failure(unsigned http_status, const char *error) {
        return http_status == 0 || http_status >= 500 || !isempty(error);
}

bool upstream_health_report_failure(UpstreamHealth *h, usec_t now) {
        usec_t when = now;

        if (h->fetching)
                return false;
        if (h->n_fetches > 0)
                when = MAX(when, usec_add(h->last_fetch_start, UPSTREAM_REPORT_PROBE_GAP_USEC));
        if (when >= h->next_fetch)
                return false;
        h->next_fetch = when;
        h->n_report_probes++;
        return true;
}

bool upstream_health_refresh(UpstreamHealth *h, usec_t now) {
        if (h->fetching) {
                h->refresh_pending = true;
                return false;
        }
        if (now >= h->next_fetch)
                return false;
        h->next_fetch = now;
        return true;
}

usec_t ttfb_ewma_update(usec_t old, usec_t sample) {
        if (old == 0)
                return sample;
        /* old + (sample - old) / W, without going negative in unsigned arithmetic. */
        if (sample >= old)
                return old + (sample - old) / TTFB_EWMA_WEIGHT;
        return old - (old - sample) / TTFB_EWMA_WEIGHT;
}
