/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What a request for a model costs on a node, learnt from this shim's own traffic: per (node,
 * model), EWMAs of the time to first byte, of the decode rate (tokens/s after the first token)
 * and of the tokens per answer. The latency policy ranks nodes by it (docs/routing-policies.md).
 * Pure: no I/O, no clock. */
#pragma once

#include "macro.h"
#include "node-id.h"

/* (node, model) pairs kept; past that, the one updated longest ago makes room. */
#define SHIM_LATENCY_MAX_ENTRIES 1024
/* alpha = 1/SHIM_LATENCY_EWMA_WEIGHT, as routerd's TTFB EWMA. */
#define SHIM_LATENCY_EWMA_WEIGHT 5

typedef struct ShimLatencyEntry {
        char node_id[NODE_ID_LEN + 1];
        char *model;
        usec_t ttfb_usec;               /* EWMA; 0: none measured */
        double tokens_per_sec;          /* EWMA of the decode rate; 0: none measured */
        double tokens;                  /* EWMA of tokens per streamed answer */
        uint64_t updated;               /* the sample count at the last update (for eviction) */
} ShimLatencyEntry;

typedef struct ShimLatency {
        ShimLatencyEntry *entries;
        size_t n_entries;
        uint64_t samples;
} ShimLatency;

void shim_latency_init(ShimLatency *l);
void shim_latency_done(ShimLatency *l);

/* One successful answer from node_id for model: its time to first byte (0: unknown), its whole
 * duration and the tokens it streamed (0 for an answer sent in one piece). */
int shim_latency_sample(ShimLatency *l, const char *node_id, const char *model, usec_t ttfb_usec,
                        usec_t duration_usec, uint64_t tokens);

/* The expected time of one answer for model on node_id, without queueing: time to first byte,
 * plus the model's usual answer length (over every node, so that nodes are compared on the same
 * work) at this node's decode rate. 0 when nothing was measured there. */
usec_t shim_latency_expected(const ShimLatency *l, const char *node_id, const char *model);

/* Forgets a node (it left the mesh: a new node under the same id starts afresh). */
void shim_latency_forget(ShimLatency *l, const char *node_id);
