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

/* Splits "HOST:PORT" or "[V6]:PORT" into host (no brackets) and port. */
static int split_host_port(const char *s, char *host, size_t host_size, uint16_t *ret_port) {
        const char *colon, *h;
        unsigned long port = 0;
        size_t n;

        if (isempty(s))
                return -EINVAL;
        if (s[0] == '[') {
                const char *end = strchr(s, ']');

                if (!end || end[1] != ':')
                        return -EINVAL;
                h = s + 1;
                n = (size_t) (end - h);
                colon = end + 1;
        } else {
                colon = strrchr(s, ':');
                if (!colon || memchr(s, ':', (size_t) (colon - s)))
                        return -EINVAL;     /* no port, or IPv6 without brackets */
                h = s;
                n = (size_t) (colon - s);
        }
        if (n >= host_size)
                return -EINVAL;
        memcpy(host, h, n);
        host[n] = '\0';

        if (colon[1] == '\0' || strlen(colon + 1) > 5)
                return -EINVAL;
        for (const char *p = colon + 1; *p; p++) {
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                port = port * 10 + (unsigned long) (*p - '0');
        }
        if (port == 0 || port > 65535)
                return -EINVAL;
        *ret_port = (uint16_t) port;
        return 0;
}

/* AF_INET or AF_INET6 for a numeric host, -EINVAL otherwise; *ret_unspecified for 0.0.0.0/::. */
static int host_family(const char *host, bool *ret_unspecified) {
        uint8_t a[16];

        if (inet_pton(AF_INET, host, a) == 1) {
                *ret_unspecified = memcmp(a, (uint8_t[4]) {}, 4) == 0;
                return AF_INET;
        }
        if (inet_pton(AF_INET6, host, a) == 1) {
                *ret_unspecified = memcmp(a, (uint8_t[16]) {}, 16) == 0;
                return AF_INET6;
        }
        return -EINVAL;
}

int gossip_mesh_url(const char *mesh, const char *gossip_addr, char *buf, size_t size) {
        char host[INET6_ADDRSTRLEN + 1], ghost[INET6_ADDRSTRLEN + 1];
        bool unspecified = true;
        uint16_t port, gport;
        int family, r;

        r = split_host_port(mesh, host, sizeof(host), &port);
        if (r < 0)
                return r;
        if (host[0] != '\0') {
                family = host_family(host, &unspecified);
                if (family < 0)
                        return -EINVAL;
        }
        if (unspecified) {
                /* "Same host as the gossip address" (the metadata contract). */
                if (split_host_port(gossip_addr, ghost, sizeof(ghost), &gport) < 0)
                        return -EINVAL;
                family = host_family(ghost, &unspecified);
                if (family < 0 || unspecified)
                        return -EINVAL;
                memcpy(host, ghost, sizeof(host));
        }
        r = snprintf(buf, size, strchr(host, ':') ? "http://[%s]:%u" : "http://%s:%u", host, port);
        if (r < 0 || (size_t) r >= size)
                return -ENOBUFS;
        return 0;
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
        else if (gossip_mesh_url(mesh, m->n_addresses > 0 ? m->addresses[0] : NULL, url, sizeof(url)) < 0)
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
