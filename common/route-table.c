/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Filter to live nodes that serve the model, then let the policy choose. Policies that need
 * the mesh (latency-aware, affinity) plug in here when the mesh lands. */
#include <stdio.h>
#include <strings.h>

#include "route-table.h"

static const char *const route_policy_names[_ROUTE_POLICY_MAX] = {
        [ROUTE_POLICY_ROUND_ROBIN] = "round-robin",
        [ROUTE_POLICY_LEAST_LOADED] = "least-loaded",
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

RouteNode *route_table_find(RouteTable *t, const char *id) {
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

int route_table_pick(RouteTable *t, RoutePolicy policy, const char *model, const char *affinity_key,
                     char *const *exclude, RouteNode **ret_node, const char **ret_reason) {
        RouteNode *best = NULL;
        size_t n_candidates = 0, chosen;

        for (size_t i = 0; i < t->n_nodes; i++) {
                RouteNode *n = &t->nodes[i];

                if (n->up && route_node_serves(n, model) && !strv_contains(exclude, n->id))
                        n_candidates++;
        }
        if (n_candidates == 0) {
                *ret_reason = "no live node serves the model";
                return -ENOENT;
        }

        switch (policy) {
        case ROUTE_POLICY_LEAST_LOADED:
                for (size_t i = 0; i < t->n_nodes; i++) {
                        RouteNode *n = &t->nodes[i];

                        if (!n->up || !route_node_serves(n, model) || strv_contains(exclude, n->id))
                                continue;
                        if (!best || route_node_load(n) < route_node_load(best) ||
                            (route_node_load(n) == route_node_load(best) &&
                             n->ttfb_ewma_usec < best->ttfb_ewma_usec))
                                best = n;
                }
                *ret_reason = n_candidates == 1 ? "only live node serving the model" : "least loaded";
                break;

        case ROUTE_POLICY_ROUND_ROBIN:
        default:
                chosen = t->round_robin_cursor++ % n_candidates;
                for (size_t i = 0; i < t->n_nodes; i++) {
                        RouteNode *n = &t->nodes[i];

                        if (!n->up || !route_node_serves(n, model) || strv_contains(exclude, n->id))
                                continue;
                        if (chosen-- == 0) {
                                best = n;
                                break;
                        }
                }
                *ret_reason = n_candidates == 1 ? "only live node serving the model" : "round-robin";
                break;
        }

        *ret_node = best;
        return 0;
}
