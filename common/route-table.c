/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Filter to live nodes that serve the model, then let the policy choose: round-robin,
 * least-loaded and latency (power of two choices), local-first, and context gravity with
 * bounded-load rendezvous hashing (docs/routing-policies.md). */
#include <math.h>
#include <stdio.h>
#include <strings.h>
#include <xxhash.h>

#include "route-table.h"

static const char *const route_policy_names[_ROUTE_POLICY_MAX] = {
        [ROUTE_POLICY_ROUND_ROBIN] = "round-robin",
        [ROUTE_POLICY_LEAST_LOADED] = "least-loaded",
        [ROUTE_POLICY_GRAVITY] = "gravity",
        [ROUTE_POLICY_LATENCY] = "latency",
        [ROUTE_POLICY_LOCAL_FIRST] = "local-first",
};

const char *route_policy_to_string(RoutePolicy p) {
        return p >= 0 && p < _ROUTE_POLICY_MAX ? route_policy_names[p] : NULL;
}

RoutePolicy route_policy_from_string(const char *s) {
        if (!s)
                return _ROUTE_POLICY_INVALID;
        for (int i = 0; i < _ROUTE_POLICY_MAX; i++)
                if (streq(s, route_policy_names[i]))
                        return (RoutePolicy) i;
        return _ROUTE_POLICY_INVALID;
}

/* Length of the name without a trailing ":latest" (any case, as names compare). */
static size_t model_name_base_len(const char *s) {
        size_t n = strlen(s);

        if (n > 7 && strcasecmp(s + n - 7, ":latest") == 0)
                return n - 7;
        return n;
}

bool model_name_equal(const char *a, const char *b) {
        size_t la, lb;

        if (!a || !b)
                return false;
        la = model_name_base_len(a);
        lb = model_name_base_len(b);
        return la == lb && strncasecmp(a, b, la) == 0;
}

bool route_node_serves(const RouteNode *n, const char *model) {
        for (size_t i = 0; i < n->n_models; i++)
                if (model_name_equal(n->models[i], model))
                        return true;
        return false;
}

static void strv_free_n(char **v, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

void route_node_done(RouteNode *n) {
        free(n->name);
        free(n->address);
        strv_free_n(n->models, n->n_models);
        *n = (RouteNode) {};
}

int route_node_set_models(RouteNode *n, char *const *models, size_t n_models) {
        char **copy;

        if (n_models > ROUTE_MAX_MODELS)
                return -E2BIG;
        copy = calloc(n_models ?: 1, sizeof(char *));
        if (!copy)
                return -ENOMEM;
        for (size_t i = 0; i < n_models; i++) {
                copy[i] = strdup(models[i]);
                if (!copy[i]) {
                        strv_free_n(copy, i);
                        return -ENOMEM;
                }
        }
        strv_free_n(n->models, n->n_models);
        n->models = copy;
        n->n_models = n_models;
        return 0;
}

void route_table_init(RouteTable *t) {
        *t = (RouteTable) {};
}

void route_table_clear(RouteTable *t) {
        for (size_t i = 0; i < t->n_nodes; i++)
                route_node_done(&t->nodes[i]);
        free(t->nodes);
        t->nodes = NULL;
        t->n_nodes = 0;
}

int route_table_add(RouteTable *t, const char *id, const char *name, const char *address, RouteNode **ret) {
        RouteNode *nodes, *n;

        if (strlen(id) > NODE_ID_LEN)
                return -EINVAL;
        if (t->n_nodes >= ROUTE_MAX_NODES)
                return -E2BIG;
        nodes = realloc(t->nodes, (t->n_nodes + 1) * sizeof(RouteNode));
        if (!nodes)
                return -ENOMEM;
        t->nodes = nodes;
        n = &t->nodes[t->n_nodes];
        *n = (RouteNode) {};
        snprintf(n->id, sizeof(n->id), "%s", id);
        n->name = strdup(strempty(name));
        n->address = strdup(strempty(address));
        if (!n->name || !n->address) {
                route_node_done(n);
                return -ENOMEM;
        }
        t->n_nodes++;
        if (ret)
                *ret = n;
        return 0;
}

RouteNode *route_table_find(const RouteTable *t, const char *id) {
        for (size_t i = 0; i < t->n_nodes; i++)
                if (streq(t->nodes[i].id, id))
                        return &t->nodes[i];
        return NULL;
}

static bool strv_contains(char *const *v, const char *s) {
        for (; v && *v; v++)
                if (streq(*v, s))
                        return true;
        return false;
}

/* Load as a fraction of capacity, scaled to avoid floating point; unknown capacity counts 1. */
static uint64_t route_node_load(const RouteNode *n) {
        return (uint64_t) n->in_flight * 1000000 / (n->capacity ?: 1);
}

static size_t candidates_in(RouteTable *t, const RoutePick *pick, bool cooling, RouteNode **ret) {
        size_t n = 0;

        for (size_t i = 0; i < t->n_nodes && n < ROUTE_MAX_NODES; i++) {
                RouteNode *node = &t->nodes[i];

                if ((cooling ? node->cooling : node->up) && route_node_serves(node, pick->model) &&
                    !strv_contains(pick->exclude, node->id) &&
                    (!pick->only || streq(node->id, pick->only) || streq_ptr(node->name, pick->only)))
                        ret[n++] = node;
        }
        return n;
}

/* The candidates of a pick: live, serving the model, not excluded, at most ROUTE_MAX_NODES. When
 * none is up but some are cooling down, those: a request for a model only cooling nodes serve is
 * better sent to one of them (its answer is the probe the breaker waits for) than to an Ollama
 * that does not have the model. */
static size_t candidates(RouteTable *t, const RoutePick *pick, RouteNode **ret, bool *ret_cooling) {
        size_t n = candidates_in(t, pick, false, ret);

        *ret_cooling = n == 0;
        return n > 0 ? n : candidates_in(t, pick, true, ret);
}

RouteNode *route_table_find_by_id_or_name(RouteTable *t, const char *id_or_name) {
        if (isempty(id_or_name))
                return NULL;
        for (size_t i = 0; i < t->n_nodes; i++)
                if (streq(t->nodes[i].id, id_or_name) || streq_ptr(t->nodes[i].name, id_or_name))
                        return &t->nodes[i];
        return NULL;
}

/* Lower is better; ties go to the faster first token. */
static bool less_loaded(const RouteNode *a, const RouteNode *b) {
        return route_node_load(a) < route_node_load(b) ||
               (route_node_load(a) == route_node_load(b) && a->ttfb_ewma_usec < b->ttfb_ewma_usec);
}

/* Lower is better: the time a request is expected to take there (the caller's estimate for the
 * model, from time to first token and tokens/s; else the EWMA of time to first token), scaled by
 * the queue it would join (one node with 2 in flight and 100 ms is as good as an idle one with
 * 300 ms). A node never measured counts as fast, so it gets measured. */
static uint64_t latency_cost(const RouteNode *n, const RoutePick *pick) {
        usec_t t = pick->service_time ? pick->service_time(n, pick->model, pick->service_time_userdata) : 0;

        return (uint64_t) (t ?: n->ttfb_ewma_usec) * (1 + (uint64_t) n->in_flight / (n->capacity ?: 1));
}

static bool lower_latency(const RouteNode *a, const RouteNode *b, const RoutePick *pick) {
        uint64_t ca = latency_cost(a, pick), cb = latency_cost(b, pick);

        return ca < cb || (ca == cb && less_loaded(a, b));
}

/* Power of two choices: two distinct candidates drawn from random, the one of lower latency.
 * Spreads like least-loaded without herding onto one node between two table updates. */
static RouteNode *faster_of_two(RouteNode **c, size_t n, const RoutePick *pick) {
        size_t i, j;

        if (n == 1)
                return c[0];
        i = (size_t) (pick->random % n);
        j = (size_t) ((pick->random >> 32) % (n - 1));
        if (j >= i)
                j++;
        return lower_latency(c[j], c[i], pick) ? c[j] : c[i];
}

/* The least loaded (ties to the faster first token); among nodes equal in both, one at random,
 * so that equal nodes share the requests made between two table updates. */
static RouteNode *least_loaded(RouteNode **c, size_t n, uint64_t random) {
        RouteNode *best = c[0];
        size_t n_equal = 1, k;

        for (size_t i = 1; i < n; i++)
                if (less_loaded(c[i], best)) {
                        best = c[i];
                        n_equal = 1;
                } else if (!less_loaded(best, c[i]))
                        n_equal++;
        if (n_equal == 1)
                return best;
        k = (size_t) (random % n_equal);
        for (size_t i = 0; i < n; i++)
                if (!less_loaded(best, c[i]) && !less_loaded(c[i], best) && k-- == 0)
                        return c[i];
        return best;
}

uint64_t route_rendezvous_score(const char *node_id, uint64_t anchor) {
        return XXH3_64bits_withSeed(node_id, strlen(node_id), anchor);
}

/* Bounded load (Mirrokni, Thorup, Zadimoghaddam 2018): with m requests in flight on n
 * candidates, a node takes one more while it then holds at most ceil((1 + eps) (m + 1) / n). */
static bool within_bound(const RouteNode *node, RouteNode **c, size_t n, double eps) {
        uint64_t total = 0;

        for (size_t i = 0; i < n; i++)
                total += c[i]->in_flight;
        return (double) node->in_flight + 1 <= ceil((1.0 + eps) * (double) (total + 1) / (double) n);
}

static RouteNode *gravity(RouteNode **c, size_t n, const RoutePick *pick, const char **ret_reason) {
        double eps = pick->eps > 0 ? pick->eps : ROUTE_GRAVITY_EPS_DEFAULT;
        RouteNode *best = NULL;
        uint64_t best_score = 0;

        /* The holder keeps its context while it has a free slot (the request would not wait there),
         * or, busy, while it stays within its bounded share: a burst of turns arriving in any
         * order must not scatter conversations that are spread well. */
        if (pick->holder)
                for (size_t i = 0; i < n; i++)
                        if (streq(c[i]->id, pick->holder)) {
                                if (c[i]->in_flight < (c[i]->capacity ?: 1) || within_bound(c[i], c, n, eps)) {
                                        *ret_reason = "holds the context";
                                        return c[i];
                                }
                                break;
                        }
        if (pick->anchor == 0) {
                *ret_reason = "no context: least loaded";
                return least_loaded(c, n, pick->random);
        }
        /* Highest rendezvous score among the nodes within the bound; there is always one (the
         * least loaded is), so this only falls through on rounding. */
        for (size_t i = 0; i < n; i++) {
                uint64_t score = route_rendezvous_score(c[i]->id, pick->anchor);

                if (within_bound(c[i], c, n, eps) && (!best || score > best_score)) {
                        best = c[i];
                        best_score = score;
                }
        }
        *ret_reason = pick->holder ? "context holder busy: rendezvous" : "rendezvous of the context";
        return best ?: least_loaded(c, n, pick->random);
}

/* Among cooling nodes, the one whose cooling ends first (0: half-open, tried now); ties go to
 * one of them at random, so that one recovering node is not the only probe target. */
static RouteNode *first_to_recover(RouteNode **c, size_t n, uint64_t random) {
        usec_t first = c[0]->cooling_until;
        size_t n_first = 1, k;

        for (size_t i = 1; i < n; i++)
                if (c[i]->cooling_until < first) {
                        first = c[i]->cooling_until;
                        n_first = 1;
                } else if (c[i]->cooling_until == first)
                        n_first++;
        k = (size_t) (random % n_first);
        for (size_t i = 0; i < n; i++)
                if (c[i]->cooling_until == first && k-- == 0)
                        return c[i];
        return c[0];
}

int route_table_pick_for(RouteTable *t, const RoutePick *pick, RouteNode **ret_node, const char **ret_reason) {
        RouteNode *c[ROUTE_MAX_NODES], *best = NULL;
        bool cooling;
        size_t n = candidates(t, pick, c, &cooling);

        if (n == 0) {
                *ret_reason = "no live node serves the model";
                return -ENOENT;
        }
        if (cooling) {
                *ret_node = first_to_recover(c, n, pick->random);
                *ret_reason = "every node serving the model is cooling down: the first to recover";
                return 0;
        }
        if (n == 1) {
                *ret_node = c[0];
                *ret_reason = "only live node serving the model";
                return 0;
        }

        switch (pick->policy) {
        case ROUTE_POLICY_GRAVITY:
                best = gravity(c, n, pick, ret_reason);
                break;
        case ROUTE_POLICY_LEAST_LOADED:
                best = least_loaded(c, n, pick->random);
                *ret_reason = "least loaded";
                break;
        case ROUTE_POLICY_LATENCY:
                best = faster_of_two(c, n, pick);
                *ret_reason = "faster of two";
                break;
        case ROUTE_POLICY_LOCAL_FIRST:
                for (size_t i = 0; i < n; i++)
                        if (c[i]->local && c[i]->in_flight < (c[i]->capacity ?: 1)) {
                                best = c[i];
                                *ret_reason = "this node";
                                break;
                        }
                if (!best) {
                        best = least_loaded(c, n, pick->random);
                        *ret_reason = "this node busy or without the model: least loaded";
                }
                break;
        case ROUTE_POLICY_ROUND_ROBIN:
        default:
                best = c[t->round_robin_cursor++ % n];
                *ret_reason = "round-robin";
                break;
        }
        *ret_node = best;
        return 0;
}

int route_table_pick(RouteTable *t, RoutePolicy policy, const char *model, const char *affinity_key,
                     char *const *exclude, RouteNode **ret_node, const char **ret_reason) {
        RoutePick pick;

        t->picks++;
        pick = (RoutePick) {
                .model = model,
                .policy = policy,
                .exclude = exclude,
                .anchor = isempty(affinity_key) ? 0 : XXH3_64bits(affinity_key, strlen(affinity_key)) | 1,
                .random = XXH3_64bits_withSeed(&t->picks, sizeof(t->picks), t->picks),
        };

        return route_table_pick_for(t, &pick, ret_node, ret_reason);
}
