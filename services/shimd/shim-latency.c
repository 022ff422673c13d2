/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Per (node, model) latency estimates for the latency policy; see shim-latency.h and
 * docs/routing-policies.md ("latency"). A linear table: a mesh has tens of (node, model)
 * pairs, and a pick looks at two nodes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route-table.h"
#include "shim-latency.h"

void shim_latency_init(ShimLatency *l) {
        *l = (ShimLatency) {};
}

void shim_latency_done(ShimLatency *l) {
        for (size_t i = 0; i < l->n_entries; i++)
                free(l->entries[i].model);
        free(l->entries);
        shim_latency_init(l);
}

static ShimLatencyEntry *latency_find(const ShimLatency *l, const char *node_id, const char *model) {
        for (size_t i = 0; i < l->n_entries; i++)
                if (streq(l->entries[i].node_id, node_id) && model_name_equal(l->entries[i].model, model))
                        return &l->entries[i];
        return NULL;
}

static double ewma(double old, double sample) {
        return old == 0 ? sample : old + (sample - old) / SHIM_LATENCY_EWMA_WEIGHT;
}

/* A new entry for (node_id, model): appended, or in place of the one updated longest ago. */
static int latency_add(ShimLatency *l, const char *node_id, const char *model, ShimLatencyEntry **ret) {
        ShimLatencyEntry *e;
        char *copy = strdup(model);

        if (!copy)
                return -ENOMEM;
        if (l->n_entries < SHIM_LATENCY_MAX_ENTRIES) {
                if (!l->entries) {
                        l->entries = calloc(SHIM_LATENCY_MAX_ENTRIES, sizeof(ShimLatencyEntry));
                        if (!l->entries) {
                                free(copy);
                                return -ENOMEM;
                        }
                }
                e = &l->entries[l->n_entries++];
        } else {
                e = &l->entries[0];
                for (size_t i = 1; i < l->n_entries; i++)
                        if (l->entries[i].updated < e->updated)
                                e = &l->entries[i];
                free(e->model);
        }
        *e = (ShimLatencyEntry) { .model = copy };
        snprintf(e->node_id, sizeof(e->node_id), "%s", node_id);
        *ret = e;
        return 0;
}

int shim_latency_sample(ShimLatency *l, const char *node_id, const char *model, usec_t ttfb_usec,
                        usec_t duration_usec, uint64_t tokens) {
        ShimLatencyEntry *e;
        int r;

        if (isempty(node_id) || isempty(model))
                return -EINVAL;
        e = latency_find(l, node_id, model);
        if (!e) {
                r = latency_add(l, node_id, model, &e);
                if (r < 0)
                        return r;
        }
        e->updated = ++l->samples;
        /* An answer in one piece: its whole duration is when its first byte could be used. */
        if (ttfb_usec == 0 || tokens < 2)
                ttfb_usec = duration_usec;
        if (ttfb_usec > 0)
                e->ttfb_usec = (usec_t) ewma((double) e->ttfb_usec, (double) ttfb_usec);
        /* The decode rate from the tokens after the first, over the time after the first byte. */
        if (tokens >= 2 && duration_usec > ttfb_usec) {
                e->tokens_per_sec = ewma(e->tokens_per_sec,
                                         (double) (tokens - 1) * (double) USEC_PER_SEC / (double) (duration_usec - ttfb_usec));
                e->tokens = ewma(e->tokens, (double) tokens);
        }
        return 0;
}

usec_t shim_latency_expected(const ShimLatency *l, const char *node_id, const char *model) {
        const ShimLatencyEntry *e = latency_find(l, node_id, model);
        double tokens = 0;
        size_t n = 0;

        if (!e || e->ttfb_usec == 0)
                return 0;
        if (e->tokens_per_sec <= 0)
                return e->ttfb_usec;
        for (size_t i = 0; i < l->n_entries; i++)
                if (l->entries[i].tokens > 0 && model_name_equal(l->entries[i].model, model)) {
                        tokens += l->entries[i].tokens;
                        n++;
                }
        return e->ttfb_usec + (usec_t) (tokens / (double) n / e->tokens_per_sec * (double) USEC_PER_SEC);
}

void shim_latency_forget(ShimLatency *l, const char *node_id) {
        for (size_t i = 0; i < l->n_entries;) {
                if (!streq(l->entries[i].node_id, node_id)) {
                        i++;
                        continue;
                }
                free(l->entries[i].model);
                l->entries[i] = l->entries[--l->n_entries];
        }
}
