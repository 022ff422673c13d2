/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* myceliactl: look inside a Mycelia node and steer it over D-Bus, in the manner of resolvectl
 * and networkctl. Human tables by default, --json for scripts; exit codes in docs/myceliactl.md. */
#include <getopt.h>
#include <grp.h>
#include <json-c/json.h>
#include <stdio.h>
#include <inttypes.h>
#include <unistd.h>
#include <systemd/sd-bus.h>
#include <time.h>

#include "build-config.h"
#include "bus-event.h"
#include "bus-names.h"
#include "ctl-table.h"
#include "gossip-member.h"
#include "macro.h"
#include "mesh-key.h"
#include "myceliactl.h"
#include "route-table.h"

/* The group the daemons run as (units/sysusers.d-mycelia.conf). */
#define MESH_KEY_GROUP "mycelia"

static const char *arg_bus = NULL;
/* top: seconds between refreshes, and how many (0: until interrupted). */
static double arg_interval = 1.0;
static unsigned arg_iterations = 0;
bool arg_json = false;
bool arg_legend = true;

static int bus_open(sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (isempty(arg_bus))
                r = sd_bus_open_system(&bus);
        else {
                r = sd_bus_new(&bus);
                if (r >= 0)
                        r = sd_bus_set_address(bus, arg_bus);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, true);
                if (r >= 0)
                        r = sd_bus_start(bus);
        }
        if (r < 0) {
                fprintf(stderr, "Cannot connect to the bus%s%s: %s\n", arg_bus ? " at " : "", strempty(arg_bus),
                        strerror(-r));
                return -EXIT_DAEMON_DOWN;
        }
        *ret = TAKE_PTR(bus);
        return 0;
}

static const char *daemon_of(const char *bus_name) {
        if (streq(bus_name, GOSSIP1_BUS_NAME))
                return "mycelia-gossipd";
        if (streq(bus_name, ROUTER1_BUS_NAME))
                return "mycelia-routerd";
        if (streq(bus_name, SHIM1_BUS_NAME))
                return "mycelia-shimd";
        if (streq(bus_name, DISCOVERY1_BUS_NAME))
                return "mycelia-discoveryd";
        if (streq(bus_name, SHARDSTORE1_BUS_NAME))
                return "mycelia-shardd";
        return bus_name;
}

/* Turns a failed call into a message and an exit code: a missing daemon is EXIT_DAEMON_DOWN. */
int call_failed(const char *bus_name, const sd_bus_error *error, int r) {
        if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                   SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_DISCONNECTED)) {
                fprintf(stderr, "%s is not running (%s has no owner on the bus).\n", daemon_of(bus_name), bus_name);
                return -EXIT_DAEMON_DOWN;
        }
        fprintf(stderr, "%s: %s\n", daemon_of(bus_name), error && error->message ? error->message : strerror(-r));
        return -EXIT_FAILURE;
}

bool name_has_owner(sd_bus *bus, const char *name) {
        return sd_bus_get_name_creds(bus, name, 0, NULL) >= 0;
}

int get_members(sd_bus *bus, sd_bus_message **ret_reply, GossipMember **ret, size_t *ret_n) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ GossipMember *members = NULL;
        size_t n = 0;
        int r;

        r = sd_bus_get_property(bus, GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE, "Members", &error,
                                &reply, "a" GOSSIP_MEMBER_SIGNATURE);
        if (r < 0)
                return call_failed(GOSSIP1_BUS_NAME, &error, r);
        r = sd_bus_message_enter_container(reply, 'a', GOSSIP_MEMBER_SIGNATURE);
        while (r >= 0) {
                GossipMember *nm = reallocarray(members, n + 1, sizeof(GossipMember));
                if (!nm) {
                        r = -ENOMEM;
                        break;
                }
                members = nm;
                r = gossip_member_read(reply, &members[n]);
                if (r <= 0)
                        break;
                n++;
        }
        if (r < 0) {
                fprintf(stderr, "Failed to parse Gossip1.Members: %s\n", strerror(-r));
                return -EXIT_FAILURE;
        }
        *ret_reply = TAKE_PTR(reply);
        *ret = TAKE_PTR(members);
        *ret_n = n;
        return 0;
}

/* One entry of Router1.Nodes, (node_id, name, address, state, in_flight, capacity,
 * ttfb_ewma_usec, models); the strings stay in the reply, only the models array is ours. */
typedef struct CtlRoute {
        const char *id, *name, *address, *state;
        uint32_t in_flight, capacity;
        uint64_t ttfb_usec;
        const char **models;
        size_t n_models;
} CtlRoute;

static void ctl_routes_free(CtlRoute *r, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(r[i].models);
        free(r);
}

static int get_routes(sd_bus *bus, sd_bus_message **ret_reply, CtlRoute **ret, size_t *ret_n) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ const char **models = NULL;
        CtlRoute *routes = NULL;
        size_t n = 0;
        int r;

        r = sd_bus_get_property(bus, ROUTER1_BUS_NAME, ROUTER1_OBJECT_PATH, ROUTER1_INTERFACE, "Nodes", &error, &reply,
                                "a(ssssuutas)");
        if (r < 0)
                return call_failed(ROUTER1_BUS_NAME, &error, r);
        /* routerd holds at most ROUTE_MAX_MODELS per node. */
        models = calloc(ROUTE_MAX_MODELS, sizeof(char *));
        r = models ? sd_bus_message_enter_container(reply, 'a', "(ssssuutas)") : -ENOMEM;
        while (r >= 0) {
                CtlRoute *nr, *e;

                r = sd_bus_message_enter_container(reply, 'r', "ssssuutas");
                if (r <= 0)
                        break;
                nr = reallocarray(routes, n + 1, sizeof(CtlRoute));
                if (!nr) {
                        r = -ENOMEM;
                        break;
                }
                routes = nr;
                e = &routes[n++];
                *e = (CtlRoute) {};
                r = sd_bus_message_read(reply, "ssssuut", &e->id, &e->name, &e->address, &e->state,
                                        &e->in_flight, &e->capacity, &e->ttfb_usec);
                if (r < 0)
                        break;
                r = bus_message_read_strv_bounded(reply, models, ROUTE_MAX_MODELS, &e->n_models, NULL);
                if (r < 0)
                        break;
                e->models = calloc(e->n_models + 1, sizeof(char *));
                if (!e->models) {
                        r = -ENOMEM;
                        break;
                }
                memcpy(e->models, models, e->n_models * sizeof(char *));
                r = sd_bus_message_exit_container(reply);
        }
        if (r < 0) {
                ctl_routes_free(routes, n);
                fprintf(stderr, "Failed to parse Router1.Nodes: %s\n", strerror(-r));
                return -EXIT_FAILURE;
        }
        *ret_reply = TAKE_PTR(reply);
        *ret = routes;
        *ret_n = n;
        return 0;
}

/* One entry of Router1.Cooling, (node_id, state, until): a node whose circuit breaker is open
 * (routed around until the CLOCK_REALTIME usec until) or half-open (until 0). */
typedef struct CtlCooling {
        const char *id, *state;
        uint64_t until_usec;
} CtlCooling;

/* Cooling is optional: a routerd without it (older) or a failed read leaves the list empty. */
static int get_cooling(sd_bus *bus, sd_bus_message **ret_reply, CtlCooling **ret, size_t *ret_n) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ CtlCooling *list = NULL;
        size_t n = 0;
        int r;

        r = sd_bus_get_property(bus, ROUTER1_BUS_NAME, ROUTER1_OBJECT_PATH, ROUTER1_INTERFACE, "Cooling", &error,
                                &reply, "a(sst)");
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(sst)");
        while (r >= 0) {
                CtlCooling *nl, e = {};

                r = sd_bus_message_read(reply, "(sst)", &e.id, &e.state, &e.until_usec);
                if (r <= 0)
                        break;
                nl = reallocarray(list, n + 1, sizeof(CtlCooling));
                if (!nl) {
                        r = -ENOMEM;
                        break;
                }
                list = nl;
                list[n++] = e;
        }
        if (r < 0)
                return r;
        *ret_reply = TAKE_PTR(reply);
        *ret = TAKE_PTR(list);
        *ret_n = n;
        return 0;
}

static const char *route_name(const CtlRoute *routes, size_t n, const char *id) {
        for (size_t i = 0; i < n; i++)
                if (streq(routes[i].id, id))
                        return routes[i].name;
        return NULL;
}

static char *strv_join(const char *const *l, size_t n, const char *sep) {
        size_t len = 1, sep_len = strlen(sep);
        char *s, *p;

        for (size_t i = 0; i < n; i++)
                len += strlen(l[i]) + sep_len;
        s = p = malloc(len);
        if (!s)
                return NULL;
        *p = '\0';
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        p = stpcpy(p, sep);
                p = stpcpy(p, l[i]);
        }
        return s;
}

static json_object *json_strv(const char *const *l, size_t n) {
        json_object *a = json_object_new_array();

        for (size_t i = 0; a && i < n; i++)
                json_object_array_add(a, json_object_new_string(l[i]));
        return a;
}

static json_object *json_member(const GossipMember *m) {
        json_object *o = json_object_new_object(), *meta = json_object_new_object();

        json_object_object_add(o, "id", json_object_new_string(m->id));
        json_object_object_add(o, "name", json_object_new_string(m->name));
        json_object_object_add(o, "addresses", json_strv(m->addresses, m->n_addresses));
        json_object_object_add(o, "state", json_object_new_string(m->state));
        json_object_object_add(o, "incarnation", json_object_new_int64(m->incarnation));
        for (size_t i = 0; i < m->n_meta; i++)
                json_object_object_add(meta, m->meta_keys[i], json_object_new_string(m->meta_values[i]));
        json_object_object_add(o, "metadata", meta);
        return o;
}

static json_object *json_route(const CtlRoute *e) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "id", json_object_new_string(e->id));
        json_object_object_add(o, "name", json_object_new_string(e->name));
        json_object_object_add(o, "address", json_object_new_string(e->address));
        json_object_object_add(o, "state", json_object_new_string(e->state));
        json_object_object_add(o, "in_flight", json_object_new_int64(e->in_flight));
        json_object_object_add(o, "capacity", json_object_new_int64(e->capacity));
        json_object_object_add(o, "ttfb_ewma_usec", json_object_new_int64((int64_t) e->ttfb_usec));
        json_object_object_add(o, "models", json_strv(e->models, e->n_models));
        return o;
}

static json_object *json_cooling(const CtlCooling *c, const CtlRoute *routes, size_t n_routes) {
        json_object *o = json_object_new_object();
        const char *name = route_name(routes, n_routes, c->id);

        json_object_object_add(o, "id", json_object_new_string(c->id));
        json_object_object_add(o, "name", name ? json_object_new_string(name) : NULL);
        json_object_object_add(o, "state", json_object_new_string(c->state));
        json_object_object_add(o, "until_usec", c->until_usec > 0 ? json_object_new_int64((int64_t) c->until_usec) : NULL);
        return o;
}

int json_print(json_object *o) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return 0;
}

static int print_members_table(const GossipMember *members, size_t n) {
        _cleanup_(ctl_table_freep) CtlTable *t = NULL;

        t = ctl_table_new("ID", "NAME", "GOSSIP", "STATE", "INC", "MESH", "MODELS", NULL);
        if (!t)
                return -ENOMEM;
        ctl_table_set_max_width(t, 6, 60);
        for (size_t i = 0; i < n; i++) {
                const GossipMember *m = &members[i];
                const char *models = gossip_member_meta(m, "models");

                ctl_table_addf(t, "%.12s", m->id);
                ctl_table_add(t, m->name);
                ctl_table_add(t, m->n_addresses > 0 ? m->addresses[0] : NULL);
                ctl_table_add(t, m->state);
                ctl_table_addf(t, "%" PRIu32, m->incarnation);
                ctl_table_add(t, gossip_member_meta(m, "mesh"));
                ctl_table_add(t, isempty(models) ? NULL : models);
        }
        ctl_table_print(t, stdout, arg_legend);
        if (arg_legend)
                printf("\n%zu members listed.\n", n);
        return 0;
}

static int verb_members(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ GossipMember *members = NULL;
        size_t n = 0;
        int r;

        r = get_members(bus, &reply, &members, &n);
        if (r < 0)
                return r;
        if (arg_json) {
                json_object *a = json_object_new_array();
                for (size_t i = 0; i < n; i++)
                        json_object_array_add(a, json_member(&members[i]));
                json_print(a);
        } else
                print_members_table(members, n);
        return 0;
}

static int print_routes_table(CtlRoute *routes, size_t n) {
        _cleanup_(ctl_table_freep) CtlTable *t = NULL;

        t = ctl_table_new("ID", "NAME", "ADDRESS", "STATE", "IN-FLIGHT", "TTFB", "MODELS", NULL);
        if (!t)
                return -ENOMEM;
        ctl_table_set_max_width(t, 6, 60);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *models = strv_join(routes[i].models, routes[i].n_models, ",");

                ctl_table_addf(t, "%.12s", routes[i].id);
                ctl_table_add(t, routes[i].name);
                ctl_table_add(t, routes[i].address);
                ctl_table_add(t, routes[i].state);
                ctl_table_addf(t, "%" PRIu32, routes[i].in_flight);
                if (routes[i].ttfb_usec > 0)
                        ctl_table_addf(t, "%.1fms", routes[i].ttfb_usec / 1000.0);
                else
                        ctl_table_add(t, NULL);
                ctl_table_add(t, isempty(models) ? NULL : models);
        }
        return ctl_table_print(t, stdout, arg_legend);
}

/* "Cooling: NAME (ID12) until HH:MM:SS (in 1.2s), half-open then" or "... half-open, its next
 * request decides": the label only on the first line. */
static void print_cooling(const CtlCooling *list, size_t n, const CtlRoute *routes, size_t n_routes) {
        usec_t now = now_realtime_usec();

        for (size_t i = 0; i < n; i++) {
                const CtlCooling *c = &list[i];
                const char *name = route_name(routes, n_routes, c->id);

                printf("%12s %s (%.12s)", i == 0 ? "Cooling:" : "", name ?: "?", c->id);
                if (streq(c->state, "open") && c->until_usec > 0) {
                        time_t t = (time_t) (c->until_usec / USEC_PER_SEC);
                        char hms[16] = "?";
                        struct tm tm;

                        if (localtime_r(&t, &tm))
                                (void) strftime(hms, sizeof(hms), "%H:%M:%S", &tm);
                        printf(" until %s (in %.1fs), half-open then\n", hms,
                               c->until_usec > now ? (double) (c->until_usec - now) / USEC_PER_SEC : 0.0);
                } else if (streq(c->state, "half-open"))
                        printf(" half-open, its next request decides\n");
                else
                        printf(" %s\n", c->state);
        }
}

int get_string_property(sd_bus *bus, const char *name, const char *path, const char *property, char **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_get_property_string(bus, name, path, name, property, &error, ret);
        return r < 0 ? call_failed(name, &error, r) : 0;
}

static int verb_status(sd_bus *bus, int argc, char **argv) {
        /* The node's daemons, in the order they start. */
        static const char *const names[] = { GOSSIP1_BUS_NAME, DISCOVERY1_BUS_NAME, ROUTER1_BUS_NAME,
                                             SHARDSTORE1_BUS_NAME, SHIM1_BUS_NAME };
        _cleanup_free_ char *local_id = NULL, *policy = NULL, *api = NULL, *mesh = NULL, *id_conflict = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *members_reply = NULL, *routes_reply = NULL,
                *cooling_reply = NULL;
        _cleanup_free_ GossipMember *members = NULL;
        _cleanup_free_ CtlCooling *cooling = NULL;
        CtlRoute *routes = NULL;
        size_t n_members = 0, n_routes = 0, n_cooling = 0;
        unsigned counts[4] = {};
        const GossipMember *self = NULL;
        bool all_up = true;

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (!name_has_owner(bus, names[i]))
                        all_up = false;

        /* Every part is optional: print what the daemons that run can tell. */
        if (name_has_owner(bus, ROUTER1_BUS_NAME)) {
                (void) get_string_property(bus, ROUTER1_BUS_NAME, ROUTER1_OBJECT_PATH, "LocalNodeId", &local_id);
                (void) get_string_property(bus, ROUTER1_BUS_NAME, ROUTER1_OBJECT_PATH, "Policy", &policy);
                (void) get_routes(bus, &routes_reply, &routes, &n_routes);
                (void) get_cooling(bus, &cooling_reply, &cooling, &n_cooling);
        }
        if (name_has_owner(bus, SHIM1_BUS_NAME)) {
                (void) get_string_property(bus, SHIM1_BUS_NAME, SHIM1_OBJECT_PATH, "ApiAddress", &api);
                (void) get_string_property(bus, SHIM1_BUS_NAME, SHIM1_OBJECT_PATH, "MeshAddress", &mesh);
        }
        if (name_has_owner(bus, GOSSIP1_BUS_NAME)) {
                (void) get_members(bus, &members_reply, &members, &n_members);
                (void) get_string_property(bus, GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH, "IdConflict", &id_conflict);
        }

        for (size_t i = 0; i < n_members; i++) {
                if (local_id && streq(members[i].id, local_id))
                        self = &members[i];
                if (streq(members[i].state, "alive"))
                        counts[0]++;
                else if (streq(members[i].state, "suspect"))
                        counts[1]++;
                else if (streq(members[i].state, "dead"))
                        counts[2]++;
                else
                        counts[3]++;
        }

        if (arg_json) {
                json_object *o = json_object_new_object(), *daemons = json_object_new_object();
                json_object *ma = json_object_new_array(), *ra = json_object_new_array();
                json_object *ca = json_object_new_array();

                for (size_t i = 0; i < ELEMENTSOF(names); i++)
                        json_object_object_add(daemons, daemon_of(names[i]),
                                               json_object_new_boolean(name_has_owner(bus, names[i])));
                json_object_object_add(o, "daemons", daemons);
                json_object_object_add(o, "id", local_id ? json_object_new_string(local_id) : NULL);
                json_object_object_add(o, "id_conflict",
                                       isempty(id_conflict) ? NULL : json_object_new_string(id_conflict));
                json_object_object_add(o, "api", api ? json_object_new_string(api) : NULL);
                json_object_object_add(o, "mesh", mesh ? json_object_new_string(mesh) : NULL);
                json_object_object_add(o, "policy", policy ? json_object_new_string(policy) : NULL);
                for (size_t i = 0; i < n_members; i++)
                        json_object_array_add(ma, json_member(&members[i]));
                for (size_t i = 0; i < n_routes; i++)
                        json_object_array_add(ra, json_route(&routes[i]));
                for (size_t i = 0; i < n_cooling; i++)
                        json_object_array_add(ca, json_cooling(&cooling[i], routes, n_routes));
                json_object_object_add(o, "members", ma);
                json_object_object_add(o, "routes", ra);
                json_object_object_add(o, "cooling", ca);
                json_print(o);
        } else {
                printf("%12s %s%s%s%s\n", "Node:", self ? self->name : "", self ? " (" : "", strempty(local_id),
                       self ? ")" : "");
                printf("%12s", "Daemons:");
                for (size_t i = 0; i < ELEMENTSOF(names); i++)
                        printf(" %s %s", daemon_of(names[i]) + strlen("mycelia-"),
                               name_has_owner(bus, names[i]) ? "up" : "DOWN");
                putchar('\n');
                if (self)
                        printf("%12s %s, incarnation %" PRIu32 ", gossip %s\n", "State:", self->state,
                               self->incarnation, self->n_addresses > 0 ? self->addresses[0] : "-");
                if (!isempty(id_conflict))
                        printf("%12s this node's id is also used by the node at %s: give one of them its "
                               "own id (docs/node-identity.md)\n", "CONFLICT:", id_conflict);
                printf("%12s %s\n", "API:", api ?: "-");
                printf("%12s %s\n", "Mesh:", isempty(mesh) ? "-" : mesh);
                if (name_has_owner(bus, GOSSIP1_BUS_NAME))
                        printf("%12s %u alive, %u suspect, %u dead, %u left\n", "Members:", counts[0], counts[1],
                               counts[2], counts[3]);
                if (self && gossip_member_meta(self, "models"))
                        printf("%12s %s\n", "Models:", gossip_member_meta(self, "models"));
                if (policy)
                        printf("%12s %s\n", "Policy:", policy);
                print_cooling(cooling, n_cooling, routes, n_routes);
                if (n_routes > 0) {
                        putchar('\n');
                        print_routes_table(routes, n_routes);
                }
        }

        ctl_routes_free(routes, n_routes);
        if (!all_up) {
                if (!arg_json)
                        fprintf(stderr, "Some daemons of this node are not running.\n");
                return -EXIT_DAEMON_DOWN;
        }
        return 0;
}

static int verb_route(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *id, *address, *reason;
        int r;

        r = sd_bus_call_method(bus, ROUTER1_BUS_NAME, ROUTER1_OBJECT_PATH, ROUTER1_INTERFACE, "Route", &error, &reply, "ssas",
                               argv[1], "", 0);
        if (r < 0) {
                if (sd_bus_error_has_name(&error, ROUTER1_ERROR_NO_ROUTE)) {
                        if (arg_json)
                                json_print(json_object_new_object());
                        fprintf(stderr, "No live node serves %s.\n", argv[1]);
                        return -EXIT_NO_ROUTE;
                }
                return call_failed(ROUTER1_BUS_NAME, &error, r);
        }
        r = sd_bus_message_read(reply, "sss", &id, &address, &reason);
        if (r < 0) {
                fprintf(stderr, "Failed to parse the reply of Route: %s\n", strerror(-r));
                return -EXIT_FAILURE;
        }
        if (arg_json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "model", json_object_new_string(argv[1]));
                json_object_object_add(o, "id", json_object_new_string(id));
                json_object_object_add(o, "address", json_object_new_string(address));
                json_object_object_add(o, "reason", json_object_new_string(reason));
                return json_print(o);
        }
        printf("%s -> %s at %s (%s)\n", argv[1], id, address, reason);
        return 0;
}

static int verb_join(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        uint32_t accepted;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE, "Join");
        if (r >= 0)
                r = sd_bus_message_append_strv(m, argv + 1);
        if (r < 0) {
                fprintf(stderr, "Failed to build the call: %s\n", strerror(-r));
                return -EXIT_FAILURE;
        }
        r = sd_bus_call(bus, m, 0, &error, &reply);
        if (r < 0)
                return call_failed(GOSSIP1_BUS_NAME, &error, r);
        r = sd_bus_message_read(reply, "u", &accepted);
        if (r < 0)
                return -EXIT_FAILURE;
        if (arg_json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "accepted", json_object_new_int64(accepted));
                return json_print(o);
        }
        printf("Joining through %" PRIu32 " of %d addresses; see 'myceliactl members'.\n", accepted, argc - 1);
        return 0;
}

/* top: status, refreshed every --interval seconds, with this node's request rate; --iterations N
 * stops after N views (for scripts and tests). The screen is cleared only on a terminal. */
static int verb_top(sd_bus *bus, int argc, char **argv) {
        uint64_t last_total = 0;
        usec_t last = 0;
        bool tty = isatty(STDOUT_FILENO);

        for (unsigned i = 0; arg_iterations == 0 || i < arg_iterations; i++) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                uint64_t total = 0;
                uint32_t active = 0;
                usec_t now = now_usec();
                int r;

                if (i > 0) {
                        struct timespec ts = { .tv_sec = (time_t) arg_interval,
                                               .tv_nsec = (long) ((arg_interval - (double) (time_t) arg_interval) * 1e9) };

                        (void) nanosleep(&ts, NULL);
                        now = now_usec();
                }
                if (tty)
                        fputs("\033[H\033[2J", stdout);
                (void) verb_status(bus, 1, argv);
                r = sd_bus_get_property_trivial(bus, SHIM1_BUS_NAME, SHIM1_OBJECT_PATH, SHIM1_INTERFACE, "RequestsTotal",
                                                &error, 't', &total);
                if (r >= 0)
                        r = sd_bus_get_property_trivial(bus, SHIM1_BUS_NAME, SHIM1_OBJECT_PATH, SHIM1_INTERFACE,
                                                        "RequestsActive", &error, 'u', &active);
                if (r < 0)
                        printf("\nRequests: mycelia-shimd is not answering.\n");
                else if (last == 0 || total < last_total || now <= last)
                        printf("\nRequests: %" PRIu32 " in flight, %" PRIu64 " in all.\n", active, total);
                else
                        printf("\nRequests: %" PRIu32 " in flight, %.1f/s, %" PRIu64 " in all.\n", active,
                               (double) (total - last_total) * USEC_PER_SEC / (double) (now - last), total);
                if (r >= 0) {
                        last_total = total;
                        last = now;
                }
                fflush(stdout);
        }
        return 0;
}

static int verb_leave(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(bus, GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE, "Leave", &error, NULL,
                               "");
        if (r < 0)
                return call_failed(GOSSIP1_BUS_NAME, &error, r);
        if (!arg_json)
                printf("Left the mesh; mycelia-gossipd exits.\n");
        return 0;
}

static int verb_keygen(int argc, char **argv) {
        const char *path = argc > 1 ? argv[1] : SYSCONFDIR "/mycelia/mesh.key";
        const char *group = NULL;
        struct group *g;
        int r;

        r = mesh_key_generate(path);
        if (r == -EEXIST) {
                fprintf(stderr, "%s exists; refusing to replace a mesh key (remove it first).\n", path);
                return -EXIT_FAILURE;
        }
        if (r < 0) {
                fprintf(stderr, "Failed to write %s: %s\n", path, strerror(-r));
                return -EXIT_FAILURE;
        }
        /* The daemons run as the mycelia user and read the key through its group. */
        g = getgrnam(MESH_KEY_GROUP);
        if (g) {
                if (chown(path, (uid_t) -1, g->gr_gid) < 0)
                        fprintf(stderr, "Could not give %s to group %s (%m); the daemons may not read it.\n",
                                path, MESH_KEY_GROUP);
                else
                        group = MESH_KEY_GROUP;
        }
        if (arg_json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "path", json_object_new_string(path));
                json_object_object_add(o, "group", group ? json_object_new_string(group) : NULL);
                return json_print(o);
        }
        printf("Wrote a new mesh key to %s (mode 0640%s%s). Copy it to every node of the mesh.\n", path,
               group ? ", group " : "", strempty(group));
        return 0;
}

static void help(void) {
        printf("myceliactl [OPTIONS...] COMMAND ...\n\n"
               "Look inside a Mycelia Mesh node and steer it.\n\n"
               "Commands:\n"
               "  status                this node, its daemons, members and routes (default)\n"
               "  top                   status, refreshed every second, with the request rate\n"
               "                        (--interval SECONDS, --iterations N)\n"
               "  members               every member the gossip knows\n"
               "  route MODEL           where a request for MODEL would go, and why\n"
               "  shards [COLLECTION]   the collections, shard members and sync of this node's\n"
               "                        shardd; with COLLECTION where each shard lives\n"
               "  join ADDR:PORT...     make this node known at these gossip addresses\n"
               "  leave                 leave the mesh gracefully (mycelia-gossipd exits)\n"
               "  keygen [FILE]         write a new mesh key (default %s/mycelia/mesh.key)\n"
               "  key list              the mesh keys this node accepts, by id; the primary first\n"
               "  key install KEY       accept KEY too (a key file, or base64); then on every node:\n"
               "  key use KEY           send with KEY (a file, base64 or an id from key list)\n"
               "  key remove KEY        no longer accept KEY (not the primary one)\n"
               "  token add NAME        make a bearer token for the API and print its secret once;\n"
               "                        --models M1,M2 restricts it to those models\n"
               "  token list            the tokens' names and models (never secrets)\n"
               "  token revoke NAME     remove a token; the shim refuses it within a second\n"
               "  audit                 the requests this node's shim answered, from the journal\n"
               "                        (--since TIME, --json: one object a line)\n\n"
               "Options:\n"
               "  -h --help             show this help\n"
               "     --version          show the version\n"
               "     --bus ADDRESS      D-Bus address (default: the system bus)\n"
               "     --json             print JSON\n"
               "     --no-legend        no table headers and footers\n"
               "     --tokens FILE      the tokens file (default: [shim] tokens, %s/mycelia/tokens)\n"
               "     --models M1,M2     token add: the models the token may use (default: any)\n"
               "     --since TIME       audit: from TIME on (\"2025-01-31 14:00:00\", today, -1h,\n"
               "                        \"10min ago\")\n\n"
               "Exit status: 0 success, 1 failure, 2 usage error, 3 a daemon is not running,\n"
               "4 no node serves the model (route).\n",
               SYSCONFDIR, SYSCONFDIR);
}

typedef struct Verb {
        const char *name;
        int min_args, max_args;     /* including the verb itself */
        bool needs_bus;
        int (*run)(sd_bus *bus, int argc, char **argv);
} Verb;

static int verb_keygen_bus(sd_bus *bus, int argc, char **argv) {
        return verb_keygen(argc, argv);
}

static const Verb verbs[] = {
        { "status", 1, 1, true, verb_status },
        { "top", 1, 1, true, verb_top },
        { "members", 1, 1, true, verb_members },
        { "route", 2, 2, true, verb_route },
        { "shards", 1, 2, true, verb_shards },
        { "join", 2, 65, true, verb_join },
        { "leave", 1, 1, true, verb_leave },
        { "keygen", 1, 2, false, verb_keygen_bus },
        { "key", 2, 3, true, verb_key },
        { "token", 2, 3, false, verb_token },
        { "audit", 1, 1, false, verb_audit },
};

int main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_BUS, ARG_JSON, ARG_NO_LEGEND, ARG_TOKENS, ARG_MODELS, ARG_SINCE, ARG_INTERVAL,
               ARG_ITERATIONS };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "bus", required_argument, NULL, ARG_BUS },
                { "json", no_argument, NULL, ARG_JSON },
                { "no-legend", no_argument, NULL, ARG_NO_LEGEND },
                { "tokens", required_argument, NULL, ARG_TOKENS },
                { "models", required_argument, NULL, ARG_MODELS },
                { "since", required_argument, NULL, ARG_SINCE },
                { "interval", required_argument, NULL, ARG_INTERVAL },
                { "iterations", required_argument, NULL, ARG_ITERATIONS },
                {}
        };
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const Verb *verb = NULL;
        char *default_argv[] = { (char *) "status", NULL };
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("myceliactl %s\n", PACKAGE_VERSION);
                        return EXIT_SUCCESS;
                case ARG_BUS:
                        arg_bus = optarg;
                        break;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case ARG_NO_LEGEND:
                        arg_legend = false;
                        break;
                case ARG_TOKENS:
                        arg_tokens = optarg;
                        break;
                case ARG_MODELS:
                        arg_models = optarg;
                        break;
                case ARG_SINCE:
                        arg_since = optarg;
                        break;
                case ARG_INTERVAL: {
                        char *end;

                        errno = 0;
                        arg_interval = strtod(optarg, &end);
                        if (errno != 0 || *end != '\0' || !(arg_interval >= 0.1 && arg_interval <= 3600)) {
                                fprintf(stderr, "--interval takes seconds, 0.1 to 3600.\n");
                                return EXIT_USAGE;
                        }
                        break;
                }
                case ARG_ITERATIONS: {
                        char *end;
                        unsigned long n;

                        errno = 0;
                        n = strtoul(optarg, &end, 10);
                        if (errno != 0 || *end != '\0' || optarg[0] == '-' || n == 0 || n > 1000000) {
                                fprintf(stderr, "--iterations takes a count, 1 to 1000000.\n");
                                return EXIT_USAGE;
                        }
                        arg_iterations = (unsigned) n;
                        break;
                }
                default:
                        return EXIT_USAGE;
                }

        argc -= optind;
        argv += optind;
        if (argc == 0) {
                argc = 1;
                argv = default_argv;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, argv[0]))
                        verb = &verbs[i];
        if (!verb) {
                fprintf(stderr, "Unknown command '%s'. See 'myceliactl --help'.\n", argv[0]);
                return EXIT_USAGE;
        }
        if (argc < verb->min_args || argc > verb->max_args) {
                fprintf(stderr, "'%s' takes %s. See 'myceliactl --help'.\n", verb->name,
                        verb->min_args == verb->max_args ? (verb->min_args == 1 ? "no arguments" : "one argument")
                                                         : "a different number of arguments");
                return EXIT_USAGE;
        }
        if (verb->needs_bus) {
                r = bus_open(&bus);
                if (r < 0)
                        return -r;
        }
        r = verb->run(bus, argc, argv);
        return r < 0 ? -r : EXIT_SUCCESS;
}
