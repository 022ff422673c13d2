/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pure part of GET /api/mycelia/status: the ring of recent flows and the JSON of a node.
 * docs/topology-page.md says what the page does with them. */
#include <stdio.h>
#include <string.h>

#include "json-document.h"
#include "shim-status.h"

static ShimFlow *flows_find(ShimFlows *f, uint64_t id) {
        for (size_t i = 0; i < SHIM_FLOWS_MAX; i++)
                if (f->entries[i].id == id)
                        return &f->entries[i];
        return NULL;
}

void shim_flows_target(ShimFlows *f, uint64_t id, const char *to, const char *to_name, const char *model,
                       const char *endpoint, usec_t now) {
        ShimFlow *e;

        if (id == 0)
                return;
        e = flows_find(f, id);
        if (!e) {
                e = &f->entries[f->next];
                f->next = (f->next + 1) % SHIM_FLOWS_MAX;
                *e = (ShimFlow) { .id = id, .started = now, .endpoint = endpoint };
                snprintf(e->model, sizeof(e->model), "%s", strempty(model));
        }
        snprintf(e->to, sizeof(e->to), "%s", strempty(to));
        snprintf(e->to_name, sizeof(e->to_name), "%s", strempty(to_name));
        e->attempts++;
}

void shim_flows_end(ShimFlows *f, uint64_t id, unsigned status, uint64_t tokens, usec_t now) {
        ShimFlow *e = id != 0 ? flows_find(f, id) : NULL;

        if (!e || e->ended)
                return;
        e->ended = MAX(now, e->started + 1);
        e->status = status;
        e->tokens = tokens;
}

static int add_u64(json_object *o, const char *key, uint64_t v) {
        return json_document_add(o, key, json_object_new_uint64(v));
}

/* NULL: a JSON null. */
static int add_string(json_object *o, const char *key, const char *v) {
        if (!v)
                return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
        return json_document_add(o, key, json_object_new_string(v));
}

static int add_bool(json_object *o, const char *key, bool v) {
        return json_document_add(o, key, json_object_new_boolean(v));
}

static json_object *flow_json(const ShimFlow *e, const char *from, usec_t now) {
        json_object *o = json_object_new_object();
        int r = o ? 0 : -ENOMEM;

        if (r >= 0)
                r = add_u64(o, "id", e->id);
        if (r >= 0)
                r = add_string(o, "from", from);
        if (r >= 0)
                r = add_string(o, "to", e->to);
        if (r >= 0)
                r = add_string(o, "to_name", e->to_name);
        if (r >= 0)
                r = add_string(o, "model", e->model);
        if (r >= 0)
                r = add_string(o, "endpoint", e->endpoint ?: "other");
        if (r >= 0)
                r = add_bool(o, "active", e->ended == 0);
        if (r >= 0)
                r = add_u64(o, "age_ms", (now - MIN(e->started, now)) / USEC_PER_MSEC);
        if (r >= 0)
                r = add_u64(o, "duration_ms", ((e->ended ?: MAX(now, e->started)) - e->started) / USEC_PER_MSEC);
        if (r >= 0)
                r = add_u64(o, "status", e->status);
        if (r >= 0)
                r = add_u64(o, "tokens", e->tokens);
        if (r >= 0)
                r = add_u64(o, "attempts", e->attempts);
        if (r < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

json_object *shim_flows_json(const ShimFlows *f, const char *from, usec_t now) {
        json_object *a = json_object_new_array();

        if (!a)
                return NULL;
        /* From f->next on, the ring runs oldest to newest. */
        for (size_t k = 0; k < SHIM_FLOWS_MAX; k++) {
                const ShimFlow *e = &f->entries[(f->next + k) % SHIM_FLOWS_MAX];
                json_object *o;

                if (e->id == 0 || (e->ended && now > e->ended + SHIM_FLOWS_KEEP_USEC))
                        continue;
                o = flow_json(e, from, now);
                if (!o || json_object_array_add(a, o) < 0) {
                        json_object_put(o);
                        json_object_put(a);
                        return NULL;
                }
        }
        return a;
}

const char *shim_status_health(const char *gossip_state, const char *route_state) {
        if (gossip_state && (streq(gossip_state, "dead") || streq(gossip_state, "left")))
                return gossip_state;
        if (route_state && (streq(route_state, "up") || streq(route_state, "cooling")))
                return route_state;
        if (gossip_state && streq(gossip_state, "suspect"))
                return "suspect";
        if (route_state && streq(route_state, "down"))
                return "down";
        /* Alive in gossip, not in the table (yet): routerd has not read its models. */
        if (gossip_state && streq(gossip_state, "alive"))
                return "joining";
        return "unknown";
}

json_object *shim_status_node_json(const ShimStatusNode *n) {
        json_object *o = json_object_new_object(), *models = json_object_new_array();
        int r = o && models ? 0 : -ENOMEM;

        for (size_t i = 0; r >= 0 && i < n->n_models; i++) {
                json_object *s = json_object_new_string(n->models[i]);

                if (!s || json_object_array_add(models, s) < 0) {
                        json_object_put(s);
                        r = -ENOMEM;
                }
        }
        if (r >= 0)
                r = add_string(o, "id", n->id);
        if (r >= 0)
                r = add_string(o, "name", n->name ?: n->id);
        if (r >= 0)
                r = add_string(o, "health", shim_status_health(n->gossip_state, n->route_state));
        if (r >= 0)
                r = add_string(o, "gossip_state", n->gossip_state);
        if (r >= 0)
                r = add_string(o, "route_state", n->route_state);
        if (r >= 0)
                r = add_bool(o, "local", n->local);
        if (r >= 0)
                r = add_string(o, "api", n->api);
        if (r >= 0)
                r = add_string(o, "mesh", n->mesh);
        if (r >= 0)
                r = add_bool(o, "shard", n->shard);
        if (r >= 0 && json_object_object_add(o, "models", models) >= 0)
                models = NULL;
        else
                r = -ENOMEM;
        if (r >= 0)
                r = add_u64(o, "in_flight", n->in_flight);
        if (r >= 0)
                r = add_u64(o, "capacity", n->capacity);
        if (r >= 0)
                r = add_u64(o, "ttft_ms", n->ttft_usec / USEC_PER_MSEC);
        if (r >= 0)
                r = add_u64(o, "cooling_left_ms", n->cooling_left_usec / USEC_PER_MSEC);
        json_object_put(models);
        if (r < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}
