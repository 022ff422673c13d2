/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Keeps the peers discoveryd knows and works out, on every change, whether the merged view of
 * a peer changed: only then is a PeerDiscovered due, and PeerVanished when nothing is left. */
#include <stdio.h>

#include "peers.h"

static const char *const peer_source_table[_PEER_SOURCE_MAX] = {
        [PEER_SOURCE_MDNS] = "mdns",
        [PEER_SOURCE_SEED] = "seed",
};

const char *peer_source_to_string(PeerSource s) {
        if (s < 0 || s >= _PEER_SOURCE_MAX)
                return NULL;
        return peer_source_table[s];
}

static void strv_free_n(char **v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                free(v[i]);
        free(v);
}

static void sighting_done(PeerSighting *s) {
        free(s->id);
        free(s->mesh);
        strv_free_n(s->gossip, s->n_gossip);
        *s = (PeerSighting) {};
}

static void peer_done(Peer *p) {
        free(p->name);
        free(p->id);
        free(p->mesh);
        strv_free_n(p->gossip, p->n_gossip);
        for (size_t i = 0; i < p->n_sightings; i++)
                sighting_done(&p->sightings[i]);
        free(p->sightings);
        *p = (Peer) {};
}

void peer_table_init(PeerTable *t, size_t max_peers, PeerEventFn fn, void *userdata) {
        *t = (PeerTable) {
                .max_peers = MIN(max_peers, (size_t) PEERS_MAX),
                .event_fn = fn,
                .userdata = userdata,
        };
}

void peer_table_clear(PeerTable *t) {
        for (size_t i = 0; i < t->n_peers; i++)
                peer_done(&t->peers[i]);
        free(t->peers);
        t->peers = NULL;
        t->n_peers = 0;
}

Peer *peer_table_find(PeerTable *t, PeerSource source, const char *name) {
        if (!name)
                return NULL;
        for (size_t i = 0; i < t->n_peers; i++)
                if (t->peers[i].source == source && streq(t->peers[i].name, name))
                        return &t->peers[i];
        return NULL;
}

static bool str_ok(const char *s, size_t max) {
        return !s || strnlen(s, max + 1) <= max;
}

static bool strv_contains(char *const *v, size_t n, const char *s) {
        for (size_t i = 0; i < n; i++)
                if (streq(v[i], s))
                        return true;
        return false;
}

static int sighting_fill(PeerSighting *s, const char *key, const char *id, const char *mesh, char *const *gossip,
                         size_t n_gossip) {
        *s = (PeerSighting) {};
        snprintf(s->key, sizeof(s->key), "%s", strempty(key));
        s->id = strdup(strempty(id));
        s->mesh = strdup(strempty(mesh));
        s->gossip = calloc(MAX(n_gossip, 1), sizeof(char *));
        if (!s->id || !s->mesh || !s->gossip)
                goto oom;
        for (size_t i = 0; i < n_gossip && s->n_gossip < PEER_GOSSIP_MAX; i++) {
                if (isempty(gossip[i]) || strv_contains(s->gossip, s->n_gossip, gossip[i]))
                        continue;
                s->gossip[s->n_gossip] = strdup(gossip[i]);
                if (!s->gossip[s->n_gossip])
                        goto oom;
                s->n_gossip++;
        }
        return 0;
oom:
        sighting_done(s);
        return -ENOMEM;
}

/* Recomputes the merged view; returns true when it differs from before. */
static int peer_merge(Peer *p, bool *ret_changed) {
        const char *id = "", *mesh = "";
        char **gossip;
        size_t n = 0;
        bool changed;

        gossip = calloc(PEER_GOSSIP_MAX, sizeof(char *));
        if (!gossip)
                return -ENOMEM;
        for (size_t i = 0; i < p->n_sightings; i++) {
                const PeerSighting *s = &p->sightings[i];

                if (isempty(id) && !isempty(s->id))
                        id = s->id;
                if (isempty(mesh) && !isempty(s->mesh))
                        mesh = s->mesh;
                for (size_t j = 0; j < s->n_gossip && n < PEER_GOSSIP_MAX; j++) {
                        if (strv_contains(gossip, n, s->gossip[j]))
                                continue;
                        gossip[n] = strdup(s->gossip[j]);
                        if (!gossip[n]) {
                                strv_free_n(gossip, n);
                                return -ENOMEM;
                        }
                        n++;
                }
        }

        changed = !p->id || !streq(p->id, id) || !p->mesh || !streq(p->mesh, mesh) || p->n_gossip != n;
        for (size_t i = 0; !changed && i < n; i++)
                changed = !streq(p->gossip[i], gossip[i]);
        if (!changed) {
                strv_free_n(gossip, n);
                *ret_changed = false;
                return 0;
        }

        char *nid = strdup(id), *nmesh = strdup(mesh);
        if (!nid || !nmesh) {
                free(nid);
                free(nmesh);
                strv_free_n(gossip, n);
                return -ENOMEM;
        }
        free(p->id);
        free(p->mesh);
        strv_free_n(p->gossip, p->n_gossip);
        p->id = nid;
        p->mesh = nmesh;
        p->gossip = gossip;
        p->n_gossip = n;
        *ret_changed = true;
        return 0;
}

static void peer_table_emit(PeerTable *t, PeerEvent e, const Peer *p) {
        if (t->event_fn)
                t->event_fn(e, p, t->userdata);
}

static void peer_table_remove_at(PeerTable *t, size_t i, bool emit) {
        Peer p = t->peers[i];

        /* Out of the table first, so the callback sees the table without it. */
        memmove(&t->peers[i], &t->peers[i + 1], (t->n_peers - i - 1) * sizeof(Peer));
        t->n_peers--;
        if (emit)
                peer_table_emit(t, PEER_VANISHED, &p);
        peer_done(&p);
}

int peer_table_put(PeerTable *t, PeerSource source, const char *name, const char *key, const char *id,
                   const char *mesh, char *const *gossip, size_t n_gossip) {
        PeerSighting s;
        bool created = false, changed;
        Peer *p;
        size_t at;
        int r;

        if (source < 0 || source >= _PEER_SOURCE_MAX || isempty(name) || !str_ok(name, PEER_NAME_MAX) ||
            !str_ok(key, PEER_KEY_MAX) || !str_ok(id, PEER_ID_MAX) || !str_ok(mesh, PEER_ADDR_MAX) ||
            (n_gossip > 0 && !gossip))
                return -EINVAL;
        for (size_t i = 0; i < n_gossip; i++)
                if (!gossip[i] || !str_ok(gossip[i], PEER_ADDR_MAX))
                        return -EINVAL;

        p = peer_table_find(t, source, name);
        if (!p) {
                Peer *n;

                if (t->n_peers >= t->max_peers) {
                        t->n_refused++;
                        return -E2BIG;
                }
                n = realloc(t->peers, (t->n_peers + 1) * sizeof(Peer));
                if (!n)
                        return -ENOMEM;
                t->peers = n;
                p = &t->peers[t->n_peers];
                *p = (Peer) { .source = source };
                p->name = strdup(name);
                p->sightings = calloc(PEER_SIGHTINGS_MAX, sizeof(PeerSighting));
                if (!p->name || !p->sightings) {
                        free(p->name);
                        free(p->sightings);
                        return -ENOMEM;
                }
                t->n_peers++;
                created = true;
        }

        r = sighting_fill(&s, key, id, mesh, gossip, n_gossip);
        if (r < 0)
                goto undo;

        /* Replace the sighting with the same key, or add one; either way it becomes newest. */
        for (at = 0; at < p->n_sightings; at++)
                if (streq(p->sightings[at].key, s.key))
                        break;
        if (at < p->n_sightings)
                sighting_done(&p->sightings[at]);
        else if (p->n_sightings >= PEER_SIGHTINGS_MAX) {
                sighting_done(&s);
                t->n_refused++;
                return -E2BIG;
        } else
                at = p->n_sightings++;
        memmove(&p->sightings[1], &p->sightings[0], at * sizeof(PeerSighting));
        p->sightings[0] = s;

        r = peer_merge(p, &changed);
        if (r < 0)
                /* The old merged view stays; the next change retries. */
                return r;
        if (p->n_gossip == 0) {
                /* Nothing to gossip with is no peer: a new one is not shown, a known one (it
                 * was shown: every peer in the table has an address) vanishes. */
                peer_table_remove_at(t, (size_t) (p - t->peers), !created);
                return 0;
        }
        if (!changed)
                return 0;
        peer_table_emit(t, PEER_DISCOVERED, p);
        return 1;

undo:
        if (created)
                peer_table_remove_at(t, t->n_peers - 1, false);
        return r;
}

int peer_table_drop(PeerTable *t, PeerSource source, const char *name, const char *key) {
        Peer *p = peer_table_find(t, source, name);
        bool changed;
        size_t at;
        int r;

        if (!p)
                return 0;
        for (at = 0; at < p->n_sightings; at++)
                if (streq(p->sightings[at].key, strempty(key)))
                        break;
        if (at >= p->n_sightings)
                return 0;
        sighting_done(&p->sightings[at]);
        memmove(&p->sightings[at], &p->sightings[at + 1], (p->n_sightings - at - 1) * sizeof(PeerSighting));
        p->n_sightings--;

        if (p->n_sightings == 0) {
                peer_table_remove_at(t, (size_t) (p - t->peers), true);
                return 1;
        }
        r = peer_merge(p, &changed);
        if (r < 0)
                return r;
        if (p->n_gossip == 0) {
                peer_table_remove_at(t, (size_t) (p - t->peers), true);
                return 1;
        }
        if (changed)
                peer_table_emit(t, PEER_DISCOVERED, p);
        return 0;
}

void peer_table_drop_source(PeerTable *t, PeerSource source) {
        for (size_t i = t->n_peers; i > 0; i--)
                if (t->peers[i - 1].source == source)
                        peer_table_remove_at(t, i - 1, true);
}

int peer_table_sync(PeerTable *t, PeerSource source, const PeerSpec *specs, size_t n_specs) {
        int r, events = 0, first_error = 0;

        /* Vanished first, so a full table makes room for the new ones. */
        for (size_t i = t->n_peers; i > 0; i--) {
                Peer *p = &t->peers[i - 1];
                bool keep = false;

                if (p->source != source)
                        continue;
                for (size_t j = 0; j < n_specs && !keep; j++)
                        keep = specs[j].name && streq(specs[j].name, p->name) && specs[j].n_gossip > 0;
                if (!keep) {
                        peer_table_remove_at(t, i - 1, true);
                        events++;
                }
        }
        for (size_t j = 0; j < n_specs; j++) {
                if (specs[j].n_gossip == 0)
                        continue;
                r = peer_table_put(t, source, specs[j].name, "", specs[j].id, specs[j].mesh, specs[j].gossip,
                                   specs[j].n_gossip);
                if (r < 0 && first_error == 0)
                        first_error = r;
                if (r > 0)
                        events++;
        }
        return first_error < 0 ? first_error : events;
}
