/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Mapping Gossip1 members onto RouteNodes. Everything here comes from peers over gossip, so it
 * is bounded and checked: numeric hosts only, names filtered, lists and numbers capped. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>

#include "gossip-members.h"

void gossip_models_free(char **models, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(models[i]);
        free(models);
}

void gossip_route_done(GossipRoute *r) {
        free(r->address);
        gossip_models_free(r->models, r->n_models);
        *r = (GossipRoute) {};
}

static bool model_name_valid(const char *s, size_t n) {
        if (n == 0 || n > GOSSIP_MODEL_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] <= ' ' || (unsigned char) s[i] >= 0x7f)
                        return false;
        return true;
}

int gossip_models_parse(const char *s, char ***ret, size_t *ret_n) {
        char **models = NULL;
        size_t n = 0, allocated = 0;

        for (const char *p = strempty(s); *p && n < ROUTE_MAX_MODELS;) {
                size_t len = strcspn(p, ",");

                if (model_name_valid(p, len)) {
                        if (n >= allocated) {
                                size_t a = MAX(allocated * 2, (size_t) 8);
                                char **v = realloc(models, a * sizeof(char *));

                                if (!v)
                                        goto oom;
                                models = v;
                                allocated = a;
                        }
                        models[n] = strndup(p, len);
                        if (!models[n])
                                goto oom;
                        n++;
                }
                p += len;
                if (*p == ',')
                        p++;
        }
        *ret = models;
        *ret_n = n;
        return 0;
oom:
        gossip_models_free(models, n);
        return -ENOMEM;
}

int gossip_models_format(char *const *models, size_t n, char **ret, bool *ret_truncated) {
        size_t len = 0;
        bool truncated = false;
        char *buf;

        buf = malloc(GOSSIP_MODELS_META_MAX + 1);
        if (!buf)
                return -ENOMEM;
        buf[0] = '\0';
        for (size_t i = 0; i < n; i++) {
                size_t l = strlen(models[i]);

                if (l == 0 || strchr(models[i], ','))
                        continue;
                if (len + (len > 0) + l > GOSSIP_MODELS_META_MAX) {
                        truncated = true;
                        break;
                }
                if (len > 0)
                        buf[len++] = ',';
                memcpy(buf + len, models[i], l);
                len += l;
                buf[len] = '\0';
        }
        *ret = buf;
        if (ret_truncated)
                *ret_truncated = truncated;
        return 0;
}

unsigned gossip_load_parse(const char *s) {
        uint64_t v = 0;

        if (isempty(s))
                return 0;
        for (const char *p = s; *p; p++) {
                if (!isdigit((unsigned char) *p))
                        return 0;
                v = v * 10 + (uint64_t) (*p - '0');
                if (v > GOSSIP_LOAD_MAX)
                        return GOSSIP_LOAD_MAX;
        }
        return (unsigned) v;
}

void gossip_loads_done(GossipLoads *l) {
        free(l->loads);
        *l = (GossipLoads) {};
}

/* Binary search; *ret_index is where it is or would go. */
static GossipLoad *loads_lookup(const GossipLoads *l, const char *id, size_t *ret_index) {
        size_t lo = 0, hi = l->n;

        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int c = strcmp(l->loads[mid].id, id);

                if (c == 0) {
                        if (ret_index)
                                *ret_index = mid;
                        return &l->loads[mid];
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (ret_index)
                *ret_index = lo;
        return NULL;
}

int gossip_loads_set(GossipLoads *l, const char *id, uint64_t in_flight, uint64_t capacity) {
        unsigned f = (unsigned) MIN(in_flight, (uint64_t) GOSSIP_LOAD_MAX);
        unsigned c = (unsigned) MIN(capacity, (uint64_t) GOSSIP_LOAD_MAX);
        GossipLoad *x;
        size_t i;

        if (isempty(id) || strlen(id) > NODE_ID_LEN)
                return -EINVAL;
        x = loads_lookup(l, id, &i);
        if (x) {
                if (x->in_flight == f && x->capacity == c)
                        return 0;
                x->in_flight = f;
                x->capacity = c;
                return 1;
        }
        if (l->n >= GOSSIP_LOADS_MAX)
                return -E2BIG;
        if (l->n == l->allocated) {
                size_t a = MAX(l->allocated * 2, (size_t) 16);
                GossipLoad *v = reallocarray(l->loads, a, sizeof(GossipLoad));

                if (!v)
                        return -ENOMEM;
                l->loads = v;
                l->allocated = a;
        }
        memmove(l->loads + i + 1, l->loads + i, (l->n - i) * sizeof(GossipLoad));
        x = &l->loads[i];
        *x = (GossipLoad) { .in_flight = f, .capacity = c };
        snprintf(x->id, sizeof(x->id), "%s", id);
        l->n++;
        return 1;
}

const GossipLoad *gossip_loads_find(const GossipLoads *l, const char *id) {
        return id ? loads_lookup(l, id, NULL) : NULL;
}

int gossip_loads_remove(GossipLoads *l, const char *id) {
        size_t i;

        if (!id || !loads_lookup(l, id, &i))
                return 0;
        memmove(l->loads + i, l->loads + i + 1, (l->n - i - 1) * sizeof(GossipLoad));
        l->n--;
        return 1;
}

void gossip_route_set_load(GossipRoute *route, const GossipLoad *load) {
        if (!load)
                return;
        route->in_flight = load->in_flight;
        route->capacity = load->capacity;
}

int gossip_member_route(const GossipMember *m, GossipRoute *ret, const char **ret_reason) {
        GossipRoute route = {};
        const char *mesh, *reason = NULL;
        char url[sizeof("http://[]:65535") + INET6_ADDRSTRLEN];
        int r;

        if (isempty(m->id) || strlen(m->id) > NODE_ID_LEN)
                reason = "invalid node id";
        else if (isempty(m->state) || (!streq(m->state, "alive") && !streq(m->state, "suspect")))
                reason = m->state && (streq(m->state, "dead") || streq(m->state, "left")) ? "dead or left"
                                                                                          : "unknown state";
        else if (!(mesh = gossip_member_meta(m, "mesh")))
                reason = "no mesh address";
        else if (gossip_meta_url(mesh, m->n_addresses > 0 ? m->addresses[0] : NULL, url, sizeof(url)) < 0)
                reason = "unusable mesh address";
        if (reason) {
                if (ret_reason)
                        *ret_reason = reason;
                return 0;
        }

        route.address = strdup(url);
        if (!route.address)
                return -ENOMEM;
        r = gossip_models_parse(gossip_member_meta(m, "models"), &route.models, &route.n_models);
        if (r < 0) {
                gossip_route_done(&route);
                return r;
        }
        route.in_flight = gossip_load_parse(gossip_member_meta(m, "in_flight"));
        route.capacity = gossip_load_parse(gossip_member_meta(m, "capacity"));
        route.up = streq(m->state, "alive");
        *ret = route;
        if (ret_reason)
                *ret_reason = route.up ? "alive" : "suspect";
        return 1;
}
