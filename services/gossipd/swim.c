/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* SWIM with suspicion, incarnations, piggybacked and gossiped dissemination and push-pull, with
 * no I/O: time, packets and randomness come in, datagrams and events go out (swim.h). */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>

#include "swim-replay.h"
#include "swim-wire.h"
#include "swim.h"

/* Epidemic dissemination stops once every holder has sent an update retransmit_limit() times;
 * now and then a node is missed by all of them and would wait for the next push-pull (up to
 * push_pull_interval). The node the news is about therefore re-queues its own record a few more
 * times while it is fresh: a join or a metadata change reaches everyone in seconds, and a
 * steady mesh pays nothing for it. */
#define SELF_REFRESH_INTERVAL (1 * USEC_PER_SEC)
#define SELF_REFRESH_WINDOW (10 * USEC_PER_SEC)
/* How long a sender's header may show a newer record of itself than ours before we ask it for
 * the record: longer than an update takes to spread, so asks only repair misses. */
#define STALE_ASK_DELAY (1 * USEC_PER_SEC)

/* How often at most a node with our id hears from us directly (id_conflict_note()). */
#define ID_CONFLICT_TELL_INTERVAL (10 * USEC_PER_SEC)

/* Bounds of what remote parties can make this node hold, beyond the ones swim.h names. */
#define EVENTS_MAX 4096
#define OUTGOING_MAX 8192
#define STRANGERS_MAX 64
#define RELAYS_MAX 256
#define LEAVE_TARGETS_MAX 1024
/* memberlist's push-pull scaling: above this many members the interval grows with log2(N). */
#define PUSH_PULL_SCALE_THRESHOLD 32

typedef struct Member {
        SwimMember pub;
        uint8_t bid[SWIM_ID_SIZE];
        /* Incarnation of the alive record name/addr/metadata came from; pub.incarnation may be
         * higher when a suspect or dead message came after it. */
        uint32_t alive_incarnation;
        usec_t deadline;        /* suspect: declared dead then; dead/left: forgotten then */
        SwimReplay replay;
        bool queued;            /* in Swim.queue: its current state is being disseminated */
        bool urgent;            /* a suspicion, death, leave or refutation: goes before news */
        unsigned sent;          /* times the queued state went out */
        bool in_probe_list;
        usec_t stale_since;     /* when a header first showed its record newer than ours; 0: not */
        usec_t asked_stale;     /* when we last asked it for that newer record */
        /* The header (session, seq) of the datagram its pub.load came in: a datagram that
         * arrives after a later one of the same session does not set an older load. */
        uint64_t load_session, load_seq;
} Member;

typedef struct Stranger {
        uint8_t bid[SWIM_ID_SIZE];
        SwimReplay replay;
        uint64_t used;          /* 0: free */
        usec_t asked;           /* when we last asked it who it is */
        bool was_asked;
} Stranger;

typedef struct Relay {
        uint32_t own_seq;       /* the ping we sent to the target */
        uint32_t their_seq;     /* the requester's probe */
        SwimAddr to;
        usec_t expires;
} Relay;

typedef struct Outgoing {
        SwimAddr to;
        uint8_t *data;
        size_t size;
} Outgoing;

struct Swim {
        SwimConfig config;
        SwimRandomFunc random;
        void *userdata;
        SwimKey keys[SWIM_KEYS_MAX];
        size_t n_keys;

        uint64_t session, seq;
        Member *local;
        bool left;
        bool load_set;          /* swim_set_local_load() was called: datagrams carry LOAD */
        uint64_t load_serial;   /* see swim_load_serial() */

        Member **members;       /* sorted by bid */
        size_t n_members, n_members_alloc;
        size_t n_alive;         /* alive + suspect, local included */

        Member **probe_list;
        size_t n_probe, n_probe_alloc, probe_index;

        Member **queue;         /* fewest sent first */
        size_t n_queue, n_queue_alloc;

        bool probe_active, probe_acked, probe_indirect_sent;
        uint8_t probe_target[SWIM_ID_SIZE];
        uint32_t probe_seq;
        usec_t probe_start;
        uint32_t next_seq_no;

        usec_t next_probe_at, next_gossip_at, next_push_pull_at, member_deadline;
        /* Fresh news about this node (start, metadata, refutation) is re-queued every
         * SELF_REFRESH_INTERVAL for SELF_REFRESH_WINDOW, see self_refresh(). */
        usec_t local_changed_at, next_self_refresh_at;
        bool local_changed;
        bool push_pull_pending;
        SwimAddr push_pull_to;

        Relay relays[RELAYS_MAX];
        size_t relay_next;

        Stranger strangers[STRANGERS_MAX];
        uint64_t stranger_clock;

        Outgoing out[OUTGOING_MAX];
        size_t out_head, out_len;
        uint8_t *last_out;

        SwimEvent events[EVENTS_MAX];
        size_t ev_head, ev_len;

        SwimCounters counters;
        SwimIdConflict id_conflict;
        bool id_conflict_active;
        usec_t id_conflict_told;        /* when we last made ourselves known to the other node */

        uint8_t plain[SWIM_DATAGRAM_MAX];       /* what we are sealing */
        uint8_t plain_in[SWIM_DATAGRAM_MAX];    /* what we opened; answers are built meanwhile */
};

/* --- addresses --- */

int swim_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, SwimAddr *ret) {
        SwimAddr a = {};

        if (!sa || !ret)
                return -EINVAL;
        if (sa->sa_family == AF_INET && len >= (socklen_t) sizeof(struct sockaddr_in)) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;

                a.family = AF_INET;
                memcpy(a.addr, &in->sin_addr, 4);
                a.port = ntohs(in->sin_port);
        } else if (sa->sa_family == AF_INET6 && len >= (socklen_t) sizeof(struct sockaddr_in6)) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;

                /* A v4-mapped peer on a dual-stack socket is the IPv4 peer it is. */
                if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
                        a.family = AF_INET;
                        memcpy(a.addr, in6->sin6_addr.s6_addr + 12, 4);
                } else {
                        a.family = AF_INET6;
                        memcpy(a.addr, &in6->sin6_addr, 16);
                }
                a.port = ntohs(in6->sin6_port);
        } else
                return -EAFNOSUPPORT;
        *ret = a;
        return 0;
}

void swim_addr_to_sockaddr(const SwimAddr *a, struct sockaddr_storage *ret, socklen_t *ret_len) {
        memset(ret, 0, sizeof(*ret));
        if (a->family == AF_INET6) {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ret;

                in6->sin6_family = AF_INET6;
                memcpy(&in6->sin6_addr, a->addr, 16);
                in6->sin6_port = htons(a->port);
                *ret_len = sizeof(*in6);
        } else {
                struct sockaddr_in *in = (struct sockaddr_in *) ret;

                in->sin_family = AF_INET;
                memcpy(&in->sin_addr, a->addr, 4);
                in->sin_port = htons(a->port);
                *ret_len = sizeof(*in);
        }
}

int swim_addr_parse(const char *s, SwimAddr *ret) {
        char host[INET6_ADDRSTRLEN + 1];
        const char *port, *end;
        SwimAddr a = {};
        unsigned long p;
        char *e;

        if (!s || !ret)
                return -EINVAL;
        if (s[0] == '[') {
                end = strchr(s, ']');
                if (!end || end[1] != ':')
                        return -EINVAL;
                if ((size_t) (end - s - 1) >= sizeof(host))
                        return -EINVAL;
                memcpy(host, s + 1, end - s - 1);
                host[end - s - 1] = '\0';
                port = end + 2;
                if (inet_pton(AF_INET6, host, a.addr) != 1)
                        return -EINVAL;
                a.family = AF_INET6;
        } else {
                end = strrchr(s, ':');
                if (!end || (size_t) (end - s) >= sizeof(host))
                        return -EINVAL;
                memcpy(host, s, end - s);
                host[end - s] = '\0';
                port = end + 1;
                if (inet_pton(AF_INET, host, a.addr) != 1)
                        return -EINVAL;
                a.family = AF_INET;
        }
        if (port[0] < '0' || port[0] > '9')
                return -EINVAL;
        errno = 0;
        p = strtoul(port, &e, 10);
        if (errno != 0 || *e != '\0' || p > 65535)
                return -EINVAL;
        a.port = (uint16_t) p;
        *ret = a;
        return 0;
}

int swim_addr_format(const SwimAddr *a, char *buf, size_t size) {
        char host[INET6_ADDRSTRLEN];
        int n;

        if (!inet_ntop(a->family == AF_INET6 ? AF_INET6 : AF_INET, a->addr, host, sizeof(host)))
                return -EINVAL;
        if (a->family == AF_INET6)
                n = snprintf(buf, size, "[%s]:%u", host, a->port);
        else
                n = snprintf(buf, size, "%s:%u", host, a->port);
        if (n < 0 || (size_t) n >= size)
                return -ENOBUFS;
        return 0;
}

bool swim_addr_equal(const SwimAddr *a, const SwimAddr *b) {
        if (a->family != b->family || a->port != b->port)
                return false;
        return memcmp(a->addr, b->addr, a->family == AF_INET6 ? 16 : 4) == 0;
}

static const char *const state_table[_SWIM_STATE_MAX] = {
        [SWIM_STATE_ALIVE] = "alive",
        [SWIM_STATE_SUSPECT] = "suspect",
        [SWIM_STATE_DEAD] = "dead",
        [SWIM_STATE_LEFT] = "left",
};

const char *swim_state_to_string(SwimState s) {
        if (s < 0 || s >= _SWIM_STATE_MAX)
                return NULL;
        return state_table[s];
}

void swim_config_lan(SwimConfig *c) {
        *c = (SwimConfig) {
                .probe_interval = 200 * USEC_PER_MSEC,
                .probe_timeout = 100 * USEC_PER_MSEC,
                .indirect_checks = 5,
                .suspicion_mult = 4,
                .retransmit_mult = 4,
                .gossip_interval = 100 * USEC_PER_MSEC,
                .gossip_nodes = 3,
                .push_pull_interval = 30 * USEC_PER_SEC,
                .reclaim_time = 60 * USEC_PER_SEC,
                .packet_budget = 1400,
        };
}

/* --- randomness --- */

static uint32_t rand_u32(Swim *s) {
        uint32_t v;

        s->random(&v, sizeof(v), s->userdata);
        return v;
}

static uint64_t rand_u64(Swim *s) {
        uint64_t v;

        s->random(&v, sizeof(v), s->userdata);
        return v;
}

/* Uniform in [0, n), n > 0. */
static size_t rand_below(Swim *s, size_t n) {
        uint64_t limit = UINT64_MAX - UINT64_MAX % n, v;

        do
                v = rand_u64(s);
        while (v >= limit);
        return (size_t) (v % n);
}

static usec_t jitter(Swim *s, usec_t interval) {
        return interval > 0 ? (usec_t) rand_below(s, (size_t) interval) : 0;
}

/* --- members --- */

static void member_meta_free(Member *m) {
        for (size_t i = 0; i < m->pub.n_meta; i++) {
                free(m->pub.meta_keys[i]);
                free(m->pub.meta_values[i]);
        }
        free(m->pub.meta_keys);
        free(m->pub.meta_values);
        m->pub.meta_keys = m->pub.meta_values = NULL;
        m->pub.n_meta = 0;
}

static Member *member_free(Member *m) {
        if (!m)
                return NULL;
        member_meta_free(m);
        free(m);
        return NULL;
}

static bool member_is_alive(const Member *m) {
        return IN_SET(m->pub.state, SWIM_STATE_ALIVE, SWIM_STATE_SUSPECT);
}

/* Binary search; *ret_index is where it is or would go. */
static Member *member_lookup(Swim *s, const uint8_t bid[SWIM_ID_SIZE], size_t *ret_index) {
        size_t lo = 0, hi = s->n_members;

        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int c = memcmp(s->members[mid]->bid, bid, SWIM_ID_SIZE);

                if (c == 0) {
                        if (ret_index)
                                *ret_index = mid;
                        return s->members[mid];
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

static void event_push(Swim *s, SwimEventType type, const Member *m) {
        SwimEvent *e;

        if (s->ev_len == EVENTS_MAX) {
                s->ev_head = (s->ev_head + 1) % EVENTS_MAX;
                s->ev_len--;
                s->counters.n_events_dropped++;
        }
        e = &s->events[(s->ev_head + s->ev_len) % EVENTS_MAX];
        e->type = type;
        memcpy(e->id, m->pub.id, sizeof(e->id));
        s->ev_len++;
}

static void member_set_state(Swim *s, Member *m, SwimState state, usec_t now) {
        bool was = member_is_alive(m);

        m->pub.state = state;
        m->pub.state_since = now;
        if (was && !member_is_alive(m))
                s->n_alive--;
        else if (!was && member_is_alive(m))
                s->n_alive++;
}

static void member_set_deadline(Swim *s, Member *m, usec_t deadline) {
        m->deadline = deadline;
        if (deadline < s->member_deadline)
                s->member_deadline = deadline;
}

static int probe_list_insert(Swim *s, Member *m) {
        size_t i;

        if (m->in_probe_list || m == s->local)
                return 0;
        if (s->n_probe == s->n_probe_alloc) {
                size_t a = MAX(s->n_probe_alloc * 2, (size_t) 16);
                Member **l = reallocarray(s->probe_list, a, sizeof(Member *));

                if (!l)
                        return -ENOMEM;
                s->probe_list = l;
                s->n_probe_alloc = a;
        }
        /* Somewhere in the rest of this round, so a new member is probed soon but not first. */
        i = s->probe_index + rand_below(s, s->n_probe - s->probe_index + 1);
        memmove(s->probe_list + i + 1, s->probe_list + i, (s->n_probe - i) * sizeof(Member *));
        s->probe_list[i] = m;
        s->n_probe++;
        m->in_probe_list = true;
        return 0;
}

static void probe_list_remove(Swim *s, Member *m) {
        if (!m->in_probe_list)
                return;
        for (size_t i = 0; i < s->n_probe; i++)
                if (s->probe_list[i] == m) {
                        memmove(s->probe_list + i, s->probe_list + i + 1, (s->n_probe - i - 1) * sizeof(Member *));
                        s->n_probe--;
                        if (i < s->probe_index)
                                s->probe_index--;
                        break;
                }
        m->in_probe_list = false;
}

/* Queues m's current state for dissemination. Urgent updates change who is alive (suspect,
 * dead, left, a refutation): they go before plain news (joins, metadata), so that a suspect's
 * refutation is not stuck behind a burst of joins. */
static int queue_push_full(Swim *s, Member *m, bool urgent) {
        size_t i = 0;

        m->urgent = urgent;
        if (m->queued) {
                /* Move to the front: a new state starts its retransmissions from zero. */
                for (i = 0; i < s->n_queue; i++)
                        if (s->queue[i] == m)
                                break;
                memmove(s->queue + 1, s->queue, i * sizeof(Member *));
                s->queue[0] = m;
                m->sent = 0;
                return 0;
        }
        if (s->n_queue == s->n_queue_alloc) {
                size_t a = MAX(s->n_queue_alloc * 2, (size_t) 16);
                Member **q = reallocarray(s->queue, a, sizeof(Member *));

                if (!q)
                        return -ENOMEM;
                s->queue = q;
                s->n_queue_alloc = a;
        }
        memmove(s->queue + 1, s->queue, s->n_queue * sizeof(Member *));
        s->queue[0] = m;
        s->n_queue++;
        m->queued = true;
        m->sent = 0;
        return 0;
}

static int queue_push(Swim *s, Member *m) {
        return queue_push_full(s, m, m->pub.state != SWIM_STATE_ALIVE);
}

static void queue_remove(Swim *s, Member *m) {
        if (!m->queued)
                return;
        for (size_t i = 0; i < s->n_queue; i++)
                if (s->queue[i] == m) {
                        memmove(s->queue + i, s->queue + i + 1, (s->n_queue - i - 1) * sizeof(Member *));
                        s->n_queue--;
                        break;
                }
        m->queued = false;
}

static Member *member_add(Swim *s, const uint8_t bid[SWIM_ID_SIZE]) {
        Member *m;
        size_t i;

        if (member_lookup(s, bid, &i))
                return NULL;
        if (s->n_members >= SWIM_MEMBERS_MAX)
                return NULL;
        if (s->n_members == s->n_members_alloc) {
                size_t a = MAX(s->n_members_alloc * 2, (size_t) 16);
                Member **l = reallocarray(s->members, a, sizeof(Member *));

                if (!l)
                        return NULL;
                s->members = l;
                s->n_members_alloc = a;
        }
        m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        memcpy(m->bid, bid, SWIM_ID_SIZE);
        swim_id_to_string(bid, m->pub.id);
        m->pub.state = SWIM_STATE_DEAD;         /* member_set_state() counts it in */
        m->deadline = USEC_INFINITY;
        memmove(s->members + i + 1, s->members + i, (s->n_members - i) * sizeof(Member *));
        s->members[i] = m;
        s->n_members++;
        return m;
}

static void member_remove(Swim *s, Member *m) {
        size_t i;

        if (member_lookup(s, m->bid, &i) != m)
                return;
        if (member_is_alive(m))
                s->n_alive--;
        probe_list_remove(s, m);
        queue_remove(s, m);
        memmove(s->members + i, s->members + i + 1, (s->n_members - i - 1) * sizeof(Member *));
        s->n_members--;
        member_free(m);
}

/* Takes name, address and metadata from a record. */
static int member_set_record(Member *m, const SwimRecord *r) {
        char **keys = NULL, **values = NULL;

        if (r->n_meta > 0) {
                keys = calloc(r->n_meta, sizeof(char *));
                values = calloc(r->n_meta, sizeof(char *));
                if (!keys || !values)
                        goto fail;
                for (size_t i = 0; i < r->n_meta; i++) {
                        keys[i] = strdup(r->meta[i].key);
                        values[i] = strndup(r->meta[i].value, r->meta[i].value_len);
                        if (!keys[i] || !values[i])
                                goto fail;
                }
        }
        member_meta_free(m);
        m->pub.meta_keys = keys;
        m->pub.meta_values = values;
        m->pub.n_meta = r->n_meta;
        m->pub.meta_version = r->meta_version;
        m->alive_incarnation = r->incarnation;
        memcpy(m->pub.name, r->name, sizeof(m->pub.name));
        m->pub.addr = r->addr;
        return 0;

fail:
        for (size_t i = 0; keys && values && i < r->n_meta; i++) {
                free(keys[i]);
                free(values[i]);
        }
        free(keys);
        free(values);
        return -ENOMEM;
}

/* --- timers that depend on N --- */

static unsigned retransmit_limit(Swim *s) {
        return s->config.retransmit_mult * (unsigned) ceil(log10((double) s->n_alive + 1));
}

static usec_t suspicion_timeout(Swim *s) {
        double f = MAX(1.0, log10((double) s->n_alive));

        return (usec_t) (s->config.suspicion_mult * f * (double) s->config.probe_interval);
}

static usec_t push_pull_interval(Swim *s) {
        double n = (double) s->n_alive;

        if (n <= PUSH_PULL_SCALE_THRESHOLD)
                return s->config.push_pull_interval;
        return s->config.push_pull_interval *
                (usec_t) (ceil(log2(n) - log2(PUSH_PULL_SCALE_THRESHOLD)) + 1);
}

/* --- state changes --- */

static void refute(Swim *s, uint32_t incarnation) {
        Member *l = s->local;

        if (s->left)
                return;
        if (incarnation == UINT32_MAX)
                return;         /* cannot go higher; 2^32 refutations do not happen */
        l->pub.incarnation = incarnation + 1;
        l->alive_incarnation = l->pub.incarnation;
        s->counters.refutations++;
        s->local_changed = true;
        (void) queue_push_full(s, l, true);
        event_push(s, SWIM_EVENT_UPDATED, l);
}

/* Someone still holds an older suspicion or death of us (it missed our refutation): spread our
 * current alive record again. Nodes that have it ignore it, so this does not snowball. */
static void reassert(Swim *s) {
        if (s->left || s->local->queued)
                return;
        (void) queue_push_full(s, s->local, true);
}

/* A sign that the node at addr claims our id. A new address starts the conflict afresh. The
 * other node may not see us at all (a record no newer than the one others hold of us goes
 * nowhere), so we tell it directly: our datagram is a sign for it, its answer one for us. Once
 * per ID_CONFLICT_TELL_INTERVAL at most, which also keeps both sides' conflict fresh. */
static void id_conflict_note(Swim *s, usec_t now, const SwimAddr *addr) {
        bool new_addr = !s->id_conflict_active || !swim_addr_equal(&s->id_conflict.addr, addr);

        s->counters.id_conflicts++;
        if (new_addr)
                s->id_conflict = (SwimIdConflict) { .addr = *addr, .since = now };
        s->id_conflict.last = now;
        s->id_conflict_active = true;
        if (new_addr || now >= s->id_conflict_told + ID_CONFLICT_TELL_INTERVAL) {
                s->id_conflict_told = now;
                (void) swim_announce(s, now, addr);
        }
}

static void apply_alive(Swim *s, usec_t now, const SwimRecord *r, bool *ret_new) {
        Member *m = member_lookup(s, r->id, NULL);

        if (m == s->local) {
                /* Our id at another address, no older than our own record: another node uses
                 * it. (An older one is what we said before a restart that moved us.) */
                if (!swim_addr_equal(&r->addr, &m->pub.addr) && r->incarnation >= m->pub.incarnation)
                        id_conflict_note(s, now, &r->addr);
                /* Someone holds a newer record of us than we do (we restarted with a lower
                 * incarnation, or our own old packet came back): outbid it. */
                if (r->incarnation > m->pub.incarnation ||
                    (r->incarnation == m->pub.incarnation && r->meta_version > m->pub.meta_version))
                        refute(s, r->incarnation);
                return;
        }

        if (!m) {
                m = member_add(s, r->id);
                if (!m)
                        return;
                if (member_set_record(m, r) < 0) {
                        member_remove(s, m);
                        return;
                }
                m->pub.incarnation = r->incarnation;
                member_set_state(s, m, SWIM_STATE_ALIVE, now);
                (void) probe_list_insert(s, m);
                (void) queue_push(s, m);
                event_push(s, SWIM_EVENT_JOINED, m);
                if (ret_new)
                        *ret_new = true;
                return;
        }

        if (!member_is_alive(m)) {
                /* Dead or left wins over alive at the same incarnation; only a rejoin with a
                 * higher one brings it back. */
                if (r->incarnation <= m->pub.incarnation)
                        return;
                if (member_set_record(m, r) < 0)
                        return;
                m->pub.incarnation = r->incarnation;
                member_set_state(s, m, SWIM_STATE_ALIVE, now);
                m->deadline = USEC_INFINITY;
                (void) probe_list_insert(s, m);
                (void) queue_push(s, m);
                event_push(s, SWIM_EVENT_JOINED, m);
                return;
        }

        if (r->incarnation > m->pub.incarnation) {
                bool was_suspect = m->pub.state == SWIM_STATE_SUSPECT;

                if (member_set_record(m, r) < 0)
                        return;
                m->pub.incarnation = r->incarnation;
                if (was_suspect) {
                        member_set_state(s, m, SWIM_STATE_ALIVE, now);
                        m->deadline = USEC_INFINITY;
                }
                /* A higher incarnation is a refutation that others may need in time. */
                (void) queue_push_full(s, m, true);
                event_push(s, SWIM_EVENT_UPDATED, m);
                return;
        }

        /* Same incarnation: newer metadata is taken, but it does not refute a suspicion. */
        if (r->incarnation == m->pub.incarnation &&
            (r->incarnation > m->alive_incarnation ||
             (r->incarnation == m->alive_incarnation && r->meta_version > m->pub.meta_version))) {
                if (member_set_record(m, r) < 0)
                        return;
                if (m->pub.state == SWIM_STATE_ALIVE)
                        (void) queue_push(s, m);
                event_push(s, SWIM_EVENT_UPDATED, m);
        }
}

/* A suspicion, death or leave of id at incarnation: the live member it applies to, or NULL when
 * there is none, it is stale, or it is about this node (which then refutes it, or re-spreads
 * its newer record). */
static Member *accused_member(Swim *s, const uint8_t id[SWIM_ID_SIZE], uint32_t incarnation) {
        Member *m = member_lookup(s, id, NULL);

        if (!m)
                return NULL;
        if (m == s->local) {
                if (incarnation >= m->pub.incarnation)
                        refute(s, incarnation);
                else
                        reassert(s);
                return NULL;
        }
        if (!member_is_alive(m) || incarnation < m->pub.incarnation)
                return NULL;
        return m;
}

static void apply_suspect(Swim *s, usec_t now, const uint8_t id[SWIM_ID_SIZE], uint32_t incarnation) {
        Member *m = accused_member(s, id, incarnation);

        if (!m)
                return;
        if (m->pub.state == SWIM_STATE_SUSPECT) {
                if (incarnation > m->pub.incarnation) {
                        m->pub.incarnation = incarnation;
                        (void) queue_push(s, m);
                }
                return;
        }
        m->pub.incarnation = incarnation;
        member_set_state(s, m, SWIM_STATE_SUSPECT, now);
        member_set_deadline(s, m, now + suspicion_timeout(s));
        (void) queue_push(s, m);
        event_push(s, SWIM_EVENT_UPDATED, m);
}

static void apply_dead(Swim *s, usec_t now, const uint8_t id[SWIM_ID_SIZE], uint32_t incarnation, bool left) {
        Member *m = accused_member(s, id, incarnation);

        if (!m)
                return;
        m->pub.incarnation = incarnation;
        member_set_state(s, m, left ? SWIM_STATE_LEFT : SWIM_STATE_DEAD, now);
        member_set_deadline(s, m, now + s->config.reclaim_time);
        /* What it had in flight is gone with it; a restart tells us its new load afresh. */
        m->pub.load_in_flight = m->pub.load_capacity = 0;
        m->pub.load_at = 0;
        probe_list_remove(s, m);
        (void) queue_push(s, m);
        event_push(s, left ? SWIM_EVENT_LEFT : SWIM_EVENT_FAILED, m);
}

/* --- sending --- */

static void outgoing_push(Swim *s, const SwimAddr *to, uint8_t *data, size_t size) {
        Outgoing *o;

        if (s->out_len == OUTGOING_MAX) {
                /* The caller is not draining; the protocol tolerates loss. */
                free(data);
                return;
        }
        o = &s->out[(s->out_head + s->out_len) % OUTGOING_MAX];
        o->to = *to;
        o->data = data;
        o->size = size;
        s->out_len++;
        s->counters.datagrams_sent++;
        s->counters.bytes_sent += size;
}

/* Seals the plaintext in w and queues it for `to`. */
static int seal_and_queue(Swim *s, const SwimAddr *to, SwimWriter *w) {
        uint8_t nonce[SWIM_NONCE_SIZE];
        uint8_t *out;
        int r;

        out = malloc(w->len + SWIM_SEAL_OVERHEAD);
        if (!out)
                return -ENOMEM;
        s->random(nonce, sizeof(nonce), s->userdata);
        r = swim_seal(&s->keys[0], nonce, w->buf, w->len, out, w->len + SWIM_SEAL_OVERHEAD);
        if (r < 0) {
                free(out);
                return r;
        }
        outgoing_push(s, to, out, (size_t) r);
        return 0;
}

static void write_header(Swim *s, SwimWriter *w, SwimKind kind) {
        SwimHeader h = {
                .kind = kind,
                .session = s->session,
                .seq = ++s->seq,
                .incarnation = s->local->pub.incarnation,
                .meta_version = s->local->pub.meta_version,
        };

        memcpy(h.sender, s->local->bid, SWIM_ID_SIZE);
        swim_header_write(w, &h);
}

/* Appends the message disseminating m's current state. */
static void write_update(SwimWriter *w, const Member *m) {
        size_t o;

        switch (m->pub.state) {
        case SWIM_STATE_ALIVE:
                o = swim_msg_begin(w, SWIM_MSG_ALIVE);
                swim_record_write(w, m->bid, SWIM_STATE_ALIVE, m->pub.incarnation, m->pub.meta_version,
                                  m->pub.name, &m->pub.addr, m->pub.meta_keys, m->pub.meta_values, m->pub.n_meta);
                break;
        case SWIM_STATE_SUSPECT:
                o = swim_msg_begin(w, SWIM_MSG_SUSPECT);
                break;
        case SWIM_STATE_DEAD:
                o = swim_msg_begin(w, SWIM_MSG_DEAD);
                break;
        default:
                o = swim_msg_begin(w, SWIM_MSG_LEFT);
                break;
        }
        if (m->pub.state != SWIM_STATE_ALIVE) {
                swim_writer_put(w, m->bid, SWIM_ID_SIZE);
                swim_writer_u32(w, m->pub.incarnation);
        }
        swim_msg_end(w, o);
}

/* The encoded size of write_update(m), computed without encoding. */
static size_t update_size(const Member *m) {
        size_t n = SWIM_MSG_HEADER_SIZE + SWIM_ID_SIZE + 4;

        if (m->pub.state != SWIM_STATE_ALIVE)
                return n;
        n += 1 + 8 + 1 + strlen(m->pub.name) + 1 + (m->pub.addr.family == AF_INET6 ? 16 : 4) + 2 + 1;
        for (size_t i = 0; i < m->pub.n_meta; i++)
                n += 1 + strlen(m->pub.meta_keys[i]) + 2 + strlen(m->pub.meta_values[i]);
        return n;
}

/* Appends update u if it fits within budget bytes of plaintext; always when alone is allowed
 * and nothing else is in the datagram yet (an update bigger than the budget goes alone). */
static bool append_update(SwimWriter *w, const Member *m, size_t budget, bool alone_ok) {
        size_t before = w->len;

        write_update(w, m);
        if (w->overflow || (w->len > budget && !alone_ok)) {
                w->len = before;
                w->overflow = false;
                return false;
        }
        return true;
}

static bool queue_before(const Member *a, const Member *b) {
        if (a->urgent != b->urgent)
                return a->urgent;
        return a->sent < b->sent;
}

/* Builds and queues one datagram to `to`: the given leading messages, then this node's alive
 * record when asked, then as many queued updates as fit, fewest-sent first. Nothing is sent
 * when there would be nothing in it. */
static int send_datagram(Swim *s, const SwimAddr *to, Member *dest, const uint8_t *lead, size_t lead_size,
                         bool with_self) {
        size_t budget, header_end;
        unsigned limit;
        SwimWriter w;
        bool any = lead_size > 0;

        if (s->n_keys == 0 || s->left)
                return 0;

        budget = MIN(s->config.packet_budget, (size_t) SWIM_DATAGRAM_MAX);
        budget = budget > SWIM_SEAL_OVERHEAD ? budget - SWIM_SEAL_OVERHEAD : 0;
        swim_writer_init_fixed(&w, s->plain, SWIM_DATAGRAM_MAX - SWIM_SEAL_OVERHEAD);
        write_header(s, &w, SWIM_KIND_DATAGRAM);
        /* This node's own load rides along in every datagram it sends anyway: 11 bytes, and no
         * datagram is sent for it alone (docs/gossip-protocol.md, "Load"). */
        if (s->load_set)
                swim_load_write(&w, s->local->pub.load_in_flight, s->local->pub.load_capacity);
        header_end = w.len;
        swim_writer_put(&w, lead, lead_size);
        if (w.overflow)
                return -EMSGSIZE;
        if (with_self && s->local->pub.state == SWIM_STATE_ALIVE && append_update(&w, s->local, budget, true))
                any = true;
        /* Tell a suspect about its suspicion first, so that it can refute in time (Lifeguard's
         * "buddy system"). */
        if (dest && dest->pub.state == SWIM_STATE_SUSPECT && append_update(&w, dest, budget, w.len == header_end)) {
                if (dest->queued)
                        dest->sent++;
                any = true;
        }

        /* Keep the queue ordered: urgent first, then fewest sent. It is nearly sorted, so
         * insertion sort. */
        for (size_t i = 1; i < s->n_queue; i++) {
                Member *m = s->queue[i];
                size_t j = i;

                while (j > 0 && queue_before(m, s->queue[j - 1])) {
                        s->queue[j] = s->queue[j - 1];
                        j--;
                }
                s->queue[j] = m;
        }
        for (size_t i = 0; i < s->n_queue && w.len + SWIM_MSG_HEADER_SIZE + SWIM_ID_SIZE + 4 <= budget; i++) {
                Member *m = s->queue[i];

                if (m == dest && m->pub.state != SWIM_STATE_DEAD && m->pub.state != SWIM_STATE_LEFT)
                        continue;       /* its own alive record is news to nobody; suspect went above */
                if (m == s->local && with_self)
                        continue;
                if (w.len != header_end && w.len + update_size(m) > budget)
                        continue;
                if (!append_update(&w, m, budget, w.len == header_end))
                        continue;
                m->sent++;
                any = true;
        }

        limit = retransmit_limit(s);
        for (size_t i = 0; i < s->n_queue;) {
                Member *m = s->queue[i];

                /* A node that misses a suspicion keeps routing to a dead node until the death
                 * reaches it: changes of who is alive are worth twice the retransmissions. */
                if (m->sent >= (m->urgent ? 2 * limit : limit)) {
                        queue_remove(s, m);
                        continue;
                }
                i++;
        }

        if (!any)
                return 0;
        return seal_and_queue(s, to, &w);
}

/* Encodes a ping, ack or ping-req into buf; returns its size. */
static size_t encode_probe_msg(uint8_t *buf, size_t size, uint8_t type, uint32_t seq, const uint8_t *target,
                               const SwimAddr *target_addr) {
        SwimWriter w;
        size_t o;

        swim_writer_init_fixed(&w, buf, size);
        o = swim_msg_begin(&w, type);
        swim_writer_u32(&w, seq);
        if (type != SWIM_MSG_ACK) {
                static const uint8_t zero[SWIM_ID_SIZE] = {};

                swim_writer_put(&w, target ?: zero, SWIM_ID_SIZE);
        }
        if (type == SWIM_MSG_PING_REQ)
                swim_addr_write(&w, target_addr);
        swim_msg_end(&w, o);
        return w.overflow ? 0 : w.len;
}

static int send_ping(Swim *s, Member *dest, const SwimAddr *to, const uint8_t *target, uint32_t seq) {
        uint8_t buf[64];
        size_t n = encode_probe_msg(buf, sizeof(buf), SWIM_MSG_PING, seq, target, NULL);

        return send_datagram(s, to, dest, buf, n, false);
}

static int send_ack(Swim *s, Member *dest, const SwimAddr *to, uint32_t seq, bool with_self) {
        uint8_t buf[16];
        size_t n = encode_probe_msg(buf, sizeof(buf), SWIM_MSG_ACK, seq, NULL, NULL);

        return send_datagram(s, to, dest, buf, n, with_self);
}

/* Up to k distinct random members matching the filter, none of them `exclude`. */
static size_t pick_members(Swim *s, size_t k, const Member *exclude, bool include_suspect, Member **ret) {
        size_t n = 0;

        if (k == 0 || s->n_members <= 1)
                return 0;

#define ELIGIBLE(m) ((m) != s->local && (m) != exclude && \
                     ((m)->pub.state == SWIM_STATE_ALIVE || (include_suspect && (m)->pub.state == SWIM_STATE_SUSPECT)))

        if (s->n_members > 8 * k + 16) {
                /* Large tables: random draws, which almost always find k quickly. */
                for (size_t attempt = 0; attempt < 8 * k && n < k; attempt++) {
                        Member *m = s->members[rand_below(s, s->n_members)];
                        bool dup = false;

                        if (!ELIGIBLE(m))
                                continue;
                        for (size_t j = 0; j < n; j++)
                                dup = dup || ret[j] == m;
                        if (!dup)
                                ret[n++] = m;
                }
                if (n == k)
                        return n;
                n = 0;
        }

        /* Reservoir sampling over the eligible ones. */
        for (size_t i = 0, seen = 0; i < s->n_members; i++) {
                Member *m = s->members[i];

                if (!ELIGIBLE(m))
                        continue;
                if (n < k)
                        ret[n++] = m;
                else {
                        size_t j = rand_below(s, seen + 1);

                        if (j < k)
                                ret[j] = m;
                }
                seen++;
        }
#undef ELIGIBLE
        return n;
}

static void probe_start(Swim *s, usec_t now) {
        Member *m = NULL;

        for (size_t tries = 0; tries <= s->n_probe + 1 && !m; tries++) {
                if (s->probe_index >= s->n_probe) {
                        /* A new round: every live member once, in a fresh random order. */
                        s->n_probe = 0;
                        s->probe_index = 0;
                        for (size_t i = 0; i < s->n_members; i++)
                                s->members[i]->in_probe_list = false;
                        if (s->n_probe_alloc < s->n_members) {
                                Member **l = reallocarray(s->probe_list, s->n_members, sizeof(Member *));

                                if (!l)
                                        return;
                                s->probe_list = l;
                                s->n_probe_alloc = s->n_members;
                        }
                        for (size_t i = 0; i < s->n_members; i++)
                                if (member_is_alive(s->members[i]) && s->members[i] != s->local) {
                                        s->probe_list[s->n_probe++] = s->members[i];
                                        s->members[i]->in_probe_list = true;
                                }
                        if (s->n_probe == 0)
                                return;
                        for (size_t i = s->n_probe - 1; i > 0; i--) {
                                size_t j = rand_below(s, i + 1);
                                Member *t = s->probe_list[i];

                                s->probe_list[i] = s->probe_list[j];
                                s->probe_list[j] = t;
                        }
                }
                m = s->probe_list[s->probe_index++];
                if (!member_is_alive(m))
                        m = NULL;
        }
        if (!m)
                return;

        s->probe_active = true;
        s->probe_acked = false;
        s->probe_indirect_sent = false;
        s->probe_start = now;
        s->probe_seq = s->next_seq_no++;
        memcpy(s->probe_target, m->bid, SWIM_ID_SIZE);
        s->counters.probes++;
        (void) send_ping(s, m, &m->pub.addr, m->bid, s->probe_seq);
}

static void probe_indirect(Swim *s) {
        Member *target = member_lookup(s, s->probe_target, NULL), *via[16];
        uint8_t buf[64];
        size_t n, k;

        s->probe_indirect_sent = true;
        if (!target || !member_is_alive(target))
                return;
        k = MIN((size_t) s->config.indirect_checks, ELEMENTSOF(via));
        n = pick_members(s, k, target, false, via);
        k = encode_probe_msg(buf, sizeof(buf), SWIM_MSG_PING_REQ, s->probe_seq, target->bid, &target->pub.addr);
        for (size_t i = 0; i < n; i++) {
                s->counters.indirect_probes++;
                (void) send_datagram(s, &via[i]->pub.addr, via[i], buf, k, false);
        }
}

static void probe_finish(Swim *s, usec_t now) {
        Member *m;

        s->probe_active = false;
        if (s->probe_acked)
                return;
        m = member_lookup(s, s->probe_target, NULL);
        if (!m || m->pub.state != SWIM_STATE_ALIVE)
                return;
        s->counters.suspicions++;
        apply_suspect(s, now, m->bid, m->pub.incarnation);
}

static void gossip(Swim *s) {
        Member *to[16];
        size_t n;

        if (s->n_queue == 0)
                return;
        n = pick_members(s, MIN((size_t) s->config.gossip_nodes, ELEMENTSOF(to)), NULL, true, to);
        for (size_t i = 0; i < n; i++)
                (void) send_datagram(s, &to[i]->pub.addr, to[i], NULL, 0, false);
}

static void members_expire(Swim *s, usec_t now) {
        usec_t next = USEC_INFINITY;

        for (size_t i = 0; i < s->n_members;) {
                Member *m = s->members[i];

                if (m != s->local && m->deadline <= now) {
                        if (m->pub.state == SWIM_STATE_SUSPECT) {
                                m->deadline = USEC_INFINITY;
                                apply_dead(s, now, m->bid, m->pub.incarnation, false);
                        } else if (!member_is_alive(m)) {
                                member_remove(s, m);
                                continue;
                        } else
                                m->deadline = USEC_INFINITY;
                }
                next = MIN(next, m->deadline);
                i++;
        }
        s->member_deadline = next;
}

static usec_t advance(usec_t at, usec_t interval, usec_t now) {
        at += interval;
        return at <= now ? now + interval : at;
}

static void self_refresh(Swim *s, usec_t now) {
        if (s->local_changed) {
                s->local_changed = false;
                s->local_changed_at = now;
                s->next_self_refresh_at = now + SELF_REFRESH_INTERVAL;
                return;
        }
        if (now < s->next_self_refresh_at)
                return;
        if (now - s->local_changed_at >= SELF_REFRESH_WINDOW) {
                s->next_self_refresh_at = USEC_INFINITY;
                return;
        }
        s->next_self_refresh_at = advance(s->next_self_refresh_at, SELF_REFRESH_INTERVAL, now);
        if (s->local->pub.state == SWIM_STATE_ALIVE && !s->local->queued)
                (void) queue_push(s, s->local);
}

int swim_tick(Swim *s, usec_t now) {
        if (!s)
                return -EINVAL;
        if (s->left)
                return 0;

        self_refresh(s, now);
        if (s->id_conflict_active && now >= s->id_conflict.last + SWIM_ID_CONFLICT_HOLD)
                s->id_conflict_active = false;

        if (s->probe_active) {
                if (!s->probe_acked && !s->probe_indirect_sent && now >= s->probe_start + s->config.probe_timeout)
                        probe_indirect(s);
                if (now >= s->probe_start + s->config.probe_interval)
                        probe_finish(s, now);
        }
        if (now >= s->next_probe_at) {
                s->next_probe_at = advance(s->next_probe_at, s->config.probe_interval, now);
                probe_start(s, now);
        }
        if (now >= s->next_gossip_at) {
                s->next_gossip_at = advance(s->next_gossip_at, s->config.gossip_interval, now);
                gossip(s);
        }
        if (now >= s->member_deadline)
                members_expire(s, now);
        if (now >= s->next_push_pull_at) {
                Member *m;

                s->next_push_pull_at = advance(s->next_push_pull_at, push_pull_interval(s), now);
                if (pick_members(s, 1, NULL, false, &m) == 1) {
                        s->push_pull_pending = true;
                        s->push_pull_to = m->pub.addr;
                }
        }
        return 0;
}

usec_t swim_next_deadline(Swim *s) {
        usec_t d;

        if (!s || s->left)
                return USEC_INFINITY;
        d = MIN(s->next_probe_at, s->next_gossip_at);
        d = MIN(d, s->next_push_pull_at);
        d = MIN(d, s->member_deadline);
        d = MIN(d, s->next_self_refresh_at);
        if (s->local_changed)
                d = MIN(d, s->next_gossip_at);
        if (s->id_conflict_active)
                d = MIN(d, s->id_conflict.last + SWIM_ID_CONFLICT_HOLD);
        if (s->probe_active) {
                if (!s->probe_acked && !s->probe_indirect_sent)
                        d = MIN(d, s->probe_start + s->config.probe_timeout);
                d = MIN(d, s->probe_start + s->config.probe_interval);
        }
        return d;
}

/* --- receiving --- */

static SwimReplay *replay_state(Swim *s, const uint8_t bid[SWIM_ID_SIZE], Stranger **ret_stranger) {
        Member *m = member_lookup(s, bid, NULL);
        Stranger *free_slot = NULL;

        *ret_stranger = NULL;
        if (m)
                return &m->replay;
        for (size_t i = 0; i < STRANGERS_MAX; i++) {
                Stranger *x = &s->strangers[i];

                if (x->used && memcmp(x->bid, bid, SWIM_ID_SIZE) == 0) {
                        *ret_stranger = x;
                        return &x->replay;
                }
                if (!free_slot || (free_slot->used && (!x->used || x->used < free_slot->used)))
                        free_slot = x;
        }
        *free_slot = (Stranger) {};
        memcpy(free_slot->bid, bid, SWIM_ID_SIZE);
        *ret_stranger = free_slot;
        return &free_slot->replay;
}

/* Checks the sender and the replay window. A stranger's slot is taken only when accepted. */
static int replay_check(Swim *s, const SwimHeader *h) {
        Stranger *st;
        SwimReplay *r, copy;

        /* Our own packet came back (our session), or another node uses our id. */
        if (memcmp(h->sender, s->local->bid, SWIM_ID_SIZE) == 0)
                return h->session == s->session ? -EALREADY : -EADDRINUSE;
        r = replay_state(s, h->sender, &st);
        copy = *r;
        if (swim_replay_check(&copy, h->session, h->seq) < 0)
                return -EALREADY;
        *r = copy;
        if (st)
                st->used = ++s->stranger_clock;
        return 0;
}

/* A sender that became a member while its message was processed takes its replay state along. */
static void replay_adopt(Swim *s, const uint8_t bid[SWIM_ID_SIZE]) {
        Member *m = member_lookup(s, bid, NULL);

        if (!m)
                return;
        for (size_t i = 0; i < STRANGERS_MAX; i++) {
                Stranger *x = &s->strangers[i];

                if (x->used && memcmp(x->bid, bid, SWIM_ID_SIZE) == 0) {
                        m->replay = x->replay;
                        *x = (Stranger) {};
                }
        }
}

static int drop(Swim *s, int r) {
        switch (r) {
        case -EMSGSIZE:
                s->counters.dropped_oversized++;
                break;
        case -EKEYREJECTED:
                s->counters.dropped_key++;
                break;
        case -EPROTONOSUPPORT:
                s->counters.dropped_version++;
                break;
        case -EALREADY:
                s->counters.dropped_replay++;
                break;
        case -EADDRINUSE:
                break;          /* counted in id_conflicts */
        default:
                r = -EBADMSG;
                s->counters.dropped_malformed++;
                break;
        }
        return r;
}

/* The sender's own load, from a LOAD message of a datagram it sent us. Never about anyone else:
 * the message has no id, so a node cannot speak for another, and nothing is queued or relayed. */
static void member_take_load(Swim *s, Member *m, usec_t now, const SwimHeader *h, uint32_t in_flight,
                             uint32_t capacity) {
        /* Reordered within the replay window: an earlier datagram of the same session says less.
         * (Equal: a later LOAD of the same datagram, which counts.) */
        if (m->pub.load_at != 0 && h->session == m->load_session && h->seq < m->load_seq)
                return;
        if (m->pub.load_at == 0 || m->pub.load_in_flight != in_flight || m->pub.load_capacity != capacity)
                m->pub.load_serial = ++s->load_serial;
        m->pub.load_in_flight = in_flight;
        m->pub.load_capacity = capacity;
        m->pub.load_at = MAX(now, (usec_t) 1);
        m->load_session = h->session;
        m->load_seq = h->seq;
}

/* Validates one datagram message without acting on it. */
static int check_msg(uint8_t type, SwimReader body) {
        SwimRecord rec;

        switch (type) {
        case SWIM_MSG_PING:
        case SWIM_MSG_ACK:
        case SWIM_MSG_PING_REQ: {
                SwimAddr a;

                (void) swim_reader_u32(&body);
                if (type != SWIM_MSG_ACK)
                        (void) swim_reader_take(&body, SWIM_ID_SIZE);
                if (type == SWIM_MSG_PING_REQ && swim_addr_read(&body, &a) < 0)
                        return -EBADMSG;
                return body.error || body.left != 0 ? -EBADMSG : 0;
        }
        case SWIM_MSG_ALIVE:
                if (swim_record_read(&body, &rec) < 0 || rec.state != SWIM_STATE_ALIVE)
                        return -EBADMSG;
                return 0;
        case SWIM_MSG_SUSPECT:
        case SWIM_MSG_DEAD:
        case SWIM_MSG_LEFT:
                return body.left == SWIM_ID_SIZE + 4 ? 0 : -EBADMSG;
        case SWIM_MSG_LOAD: {
                uint32_t in_flight, capacity;

                return swim_load_read(&body, &in_flight, &capacity);
        }
        default:
                return 0;       /* a later minor revision's message: skipped */
        }
}

int swim_receive_datagram(Swim *s, usec_t now, const SwimAddr *from, const void *data, size_t size) {
        SwimReader r, body;
        SwimHeader h;
        Member *sender;
        bool sender_new = false, announce = false;
        uint8_t type;
        int n, k;

        if (!s || !from || (!data && size > 0))
                return -EINVAL;
        s->counters.datagrams_received++;
        s->counters.bytes_received += size;

        if (s->n_keys == 0)
                return drop(s, size > SWIM_DATAGRAM_MAX ? -EMSGSIZE : -EKEYREJECTED);
        n = swim_open(s->keys, s->n_keys, data, size, SWIM_DATAGRAM_MAX, s->plain_in, sizeof(s->plain_in));
        if (n < 0)
                return drop(s, n);

        swim_reader_init(&r, s->plain_in, (size_t) n);
        if (swim_header_read(&r, &h) < 0 || h.kind != SWIM_KIND_DATAGRAM)
                return drop(s, -EBADMSG);
        {
                SwimReader v = r;

                while ((k = swim_msg_next(&v, &type, &body)) > 0)
                        if (check_msg(type, body) < 0)
                                return drop(s, -EBADMSG);
                if (k < 0)
                        return drop(s, -EBADMSG);
        }
        k = replay_check(s, &h);
        if (k == -EADDRINUSE)
                id_conflict_note(s, now, from);
        if (k < 0)
                return drop(s, k);

        sender = member_lookup(s, h.sender, NULL);
        sender_new = !sender;

        /* Updates first, so that a new sender is a member before it is answered. */
        for (SwimReader v = r; swim_msg_next(&v, &type, &body) > 0;) {
                SwimRecord rec;

                switch (type) {
                case SWIM_MSG_ALIVE:
                        if (swim_record_read(&body, &rec) == 0)
                                apply_alive(s, now, &rec, NULL);
                        break;
                case SWIM_MSG_SUSPECT:
                case SWIM_MSG_DEAD:
                case SWIM_MSG_LEFT: {
                        const uint8_t *id = swim_reader_take(&body, SWIM_ID_SIZE);
                        uint32_t inc = swim_reader_u32(&body);

                        if (type == SWIM_MSG_SUSPECT)
                                apply_suspect(s, now, id, inc);
                        else
                                apply_dead(s, now, id, inc, type == SWIM_MSG_LEFT);
                        break;
                }
                }
        }
        replay_adopt(s, h.sender);
        sender = member_lookup(s, h.sender, NULL);
        /* Its load, once it is a live member (a stranger's waits for its next datagram). */
        if (sender && member_is_alive(sender))
                for (SwimReader v = r; swim_msg_next(&v, &type, &body) > 0;) {
                        uint32_t in_flight, capacity;

                        if (type == SWIM_MSG_LOAD && swim_load_read(&body, &in_flight, &capacity) == 0)
                                member_take_load(s, sender, now, &h, in_flight, capacity);
                }
        /* A member we hold dead is talking to us: make sure it hears so, so that it refutes. */
        if (sender && !member_is_alive(sender) && !sender->queued)
                (void) queue_push(s, sender);
        /* A sender we do not know and that did not say who it is: ask, with a ping for whoever
         * is there, which is answered with the answerer's record. At most once per interval. */
        if (!sender)
                for (size_t i = 0; i < STRANGERS_MAX; i++) {
                        Stranger *x = &s->strangers[i];

                        if (!x->used || memcmp(x->bid, h.sender, SWIM_ID_SIZE) != 0)
                                continue;
                        if (!x->was_asked || now >= x->asked + s->config.probe_interval) {
                                x->was_asked = true;
                                x->asked = now;
                                (void) swim_announce(s, now, from);
                        }
                        break;
                }

        for (SwimReader v = r; swim_msg_next(&v, &type, &body) > 0;) {
                uint32_t seq;
                const uint8_t *target;

                switch (type) {
                case SWIM_MSG_PING: {
                        static const uint8_t zero[SWIM_ID_SIZE] = {};

                        seq = swim_reader_u32(&body);
                        target = swim_reader_take(&body, SWIM_ID_SIZE);
                        announce = memcmp(target, zero, SWIM_ID_SIZE) == 0;
                        /* A ping for a node that used to be at this address is not ours to answer. */
                        if (!announce && memcmp(target, s->local->bid, SWIM_ID_SIZE) != 0)
                                break;
                        (void) send_ack(s, sender, from, seq, announce || sender_new);
                        break;
                }
                case SWIM_MSG_ACK:
                        seq = swim_reader_u32(&body);
                        if (s->probe_active && seq == s->probe_seq) {
                                s->probe_acked = true;
                                break;
                        }
                        for (size_t i = 0; i < RELAYS_MAX; i++) {
                                Relay *x = &s->relays[i];

                                if (x->expires == 0 || x->own_seq != seq)
                                        continue;
                                if (x->expires >= now)
                                        (void) send_ack(s, NULL, &x->to, x->their_seq, false);
                                x->expires = 0;
                                break;
                        }
                        break;
                case SWIM_MSG_PING_REQ: {
                        SwimAddr to;
                        Relay *x;

                        seq = swim_reader_u32(&body);
                        target = swim_reader_take(&body, SWIM_ID_SIZE);
                        if (swim_addr_read(&body, &to) < 0 || memcmp(target, s->local->bid, SWIM_ID_SIZE) == 0)
                                break;
                        x = &s->relays[s->relay_next];
                        s->relay_next = (s->relay_next + 1) % RELAYS_MAX;
                        *x = (Relay) {
                                .own_seq = s->next_seq_no++,
                                .their_seq = seq,
                                .to = *from,
                                .expires = now + s->config.probe_interval,
                        };
                        (void) send_ping(s, member_lookup(s, target, NULL), &to, target, x->own_seq);
                        break;
                }
                }
        }

        /* The header says the sender's own record is newer than ours. Right after a change that
         * is normal: the update is still spreading. If it stays so for STALE_ASK_DELAY we missed
         * every copy of it: ask the sender, as a stranger is asked, at most once per probe
         * interval. Its answer carries its record. */
        sender = member_lookup(s, h.sender, NULL);
        if (sender && member_is_alive(sender)) {
                bool newer = h.incarnation > sender->pub.incarnation ||
                             (h.incarnation == sender->pub.incarnation && h.meta_version > sender->pub.meta_version);

                if (!newer)
                        sender->stale_since = 0;
                else if (sender->stale_since == 0)
                        sender->stale_since = now;
                else if (now >= sender->stale_since + STALE_ASK_DELAY &&
                         (sender->asked_stale == 0 || now >= sender->asked_stale + s->config.probe_interval)) {
                        sender->asked_stale = now;
                        s->counters.stale_asks++;
                        (void) swim_announce(s, now, from);
                }
        }
        return 0;
}

int swim_next_datagram(Swim *s, SwimAddr *ret_to, const void **ret_data, size_t *ret_size) {
        Outgoing *o;

        if (!s)
                return -EINVAL;
        free(s->last_out);
        s->last_out = NULL;
        if (s->out_len == 0)
                return 0;
        o = &s->out[s->out_head];
        s->out_head = (s->out_head + 1) % OUTGOING_MAX;
        s->out_len--;
        s->last_out = o->data;
        *ret_to = o->to;
        *ret_data = o->data;
        *ret_size = o->size;
        return 1;
}

/* --- push-pull --- */

int swim_push_pull_due(Swim *s, usec_t now, SwimAddr *ret_to) {
        if (!s || !ret_to)
                return -EINVAL;
        if (s->left)
                return 0;
        if (now >= s->next_push_pull_at)
                (void) swim_tick(s, now);
        if (!s->push_pull_pending)
                return 0;
        s->push_pull_pending = false;
        *ret_to = s->push_pull_to;
        return 1;
}

int swim_push_pull_build(Swim *s, usec_t now, bool reply, void **ret_buf, size_t *ret_size) {
        _cleanup_free_ uint8_t *out = NULL;
        uint8_t nonce[SWIM_NONCE_SIZE];
        SwimWriter w;
        int r;

        if (!s || !ret_buf || !ret_size)
                return -EINVAL;
        if (s->n_keys == 0)
                return -ENOKEY;

        swim_writer_init_growable(&w, SWIM_PUSH_PULL_MAX - SWIM_SEAL_OVERHEAD);
        write_header(s, &w, reply ? SWIM_KIND_PUSH_PULL_REPLY : SWIM_KIND_PUSH_PULL_REQUEST);
        swim_writer_u32(&w, (uint32_t) s->n_members);
        for (size_t i = 0; i < s->n_members; i++) {
                const Member *m = s->members[i];
                size_t o = swim_msg_begin(&w, SWIM_MSG_MEMBER);

                swim_record_write(&w, m->bid, m->pub.state, m->pub.incarnation, m->pub.meta_version,
                                  m->pub.name, &m->pub.addr, m->pub.meta_keys, m->pub.meta_values, m->pub.n_meta);
                swim_msg_end(&w, o);
        }
        if (w.overflow) {
                swim_writer_done(&w);
                return -E2BIG;
        }

        out = malloc(w.len + SWIM_SEAL_OVERHEAD);
        if (!out) {
                swim_writer_done(&w);
                return -ENOMEM;
        }
        s->random(nonce, sizeof(nonce), s->userdata);
        r = swim_seal(&s->keys[0], nonce, w.buf, w.len, out, w.len + SWIM_SEAL_OVERHEAD);
        swim_writer_done(&w);
        if (r < 0)
                return r;
        s->counters.push_pulls_sent++;
        s->counters.bytes_sent += (size_t) r;
        *ret_size = (size_t) r;
        *ret_buf = TAKE_PTR(out);
        return 0;
}

int swim_push_pull_receive(Swim *s, usec_t now, const void *data, size_t size) {
        _cleanup_free_ uint8_t *plain = NULL;
        SwimReader r, body;
        SwimHeader h;
        uint32_t count, seen = 0;
        uint8_t type;
        int n, k;

        if (!s || (!data && size > 0))
                return -EINVAL;
        s->counters.push_pulls_received++;
        s->counters.bytes_received += size;
        if (size > SWIM_PUSH_PULL_MAX)
                return drop(s, -EMSGSIZE);
        if (s->n_keys == 0)
                return drop(s, -EKEYREJECTED);
        plain = malloc(MAX(size, (size_t) SWIM_SEAL_OVERHEAD) - SWIM_SEAL_OVERHEAD + 1);
        if (!plain)
                return -ENOMEM;
        n = swim_open(s->keys, s->n_keys, data, size, SWIM_PUSH_PULL_MAX, plain,
                      MAX(size, (size_t) SWIM_SEAL_OVERHEAD) - SWIM_SEAL_OVERHEAD + 1);
        if (n < 0)
                return drop(s, n);

        swim_reader_init(&r, plain, (size_t) n);
        if (swim_header_read(&r, &h) < 0 || h.kind == SWIM_KIND_DATAGRAM)
                return drop(s, -EBADMSG);
        count = swim_reader_u32(&r);
        if (r.error || count > SWIM_MEMBERS_MAX)
                return drop(s, -EBADMSG);
        {
                SwimReader v = r;
                SwimRecord rec;

                while ((k = swim_msg_next(&v, &type, &body)) > 0) {
                        if (type != SWIM_MSG_MEMBER || swim_record_read(&body, &rec) < 0)
                                return drop(s, -EBADMSG);
                        seen++;
                }
                if (k < 0 || seen != count)
                        return drop(s, -EBADMSG);
        }
        k = replay_check(s, &h);
        if (k == -EADDRINUSE)
                /* The other node's full state holds its own record, with its address. */
                for (SwimReader v = r; swim_msg_next(&v, &type, &body) > 0;) {
                        SwimRecord rec;

                        if (swim_record_read(&body, &rec) == 0 &&
                            memcmp(rec.id, s->local->bid, SWIM_ID_SIZE) == 0 &&
                            !swim_addr_equal(&rec.addr, &s->local->pub.addr)) {
                                id_conflict_note(s, now, &rec.addr);
                                break;
                        }
                }
        if (k < 0)
                return drop(s, k);

        for (SwimReader v = r; swim_msg_next(&v, &type, &body) > 0;) {
                SwimRecord rec;
                Member *m;

                if (swim_record_read(&body, &rec) < 0)
                        continue;
                switch (rec.state) {
                case SWIM_STATE_ALIVE:
                        apply_alive(s, now, &rec, NULL);
                        break;
                case SWIM_STATE_SUSPECT:
                case SWIM_STATE_DEAD:
                        m = member_lookup(s, rec.id, NULL);
                        if (!m && rec.state == SWIM_STATE_SUSPECT) {
                                /* Learn it; our own timer decides whether it is dead. */
                                rec.state = SWIM_STATE_ALIVE;
                                apply_alive(s, now, &rec, NULL);
                        }
                        /* Another node's verdict of dead becomes a suspicion here, as in
                         * memberlist: push-pull state may be old, and a suspect can refute. */
                        apply_suspect(s, now, rec.id, rec.incarnation);
                        break;
                case SWIM_STATE_LEFT:
                        apply_dead(s, now, rec.id, rec.incarnation, true);
                        break;
                }
        }
        replay_adopt(s, h.sender);
        return h.kind == SWIM_KIND_PUSH_PULL_REQUEST;
}

/* --- joining, leaving, metadata --- */

int swim_announce(Swim *s, usec_t now, const SwimAddr *addr) {
        uint8_t buf[64];
        size_t n;

        if (!s || !addr)
                return -EINVAL;
        if (s->n_keys == 0)
                return -ENOKEY;
        if (s->left)
                return -ESHUTDOWN;
        /* A ping for whoever is there: it answers, and learns us from our alive record. */
        n = encode_probe_msg(buf, sizeof(buf), SWIM_MSG_PING, s->next_seq_no++, NULL, NULL);
        return send_datagram(s, addr, NULL, buf, n, true);
}

int swim_leave(Swim *s, usec_t now) {
        Member *to[LEAVE_TARGETS_MAX];
        Member *l;
        uint8_t buf[64];
        SwimWriter w;
        size_t n, o;

        if (!s)
                return -EINVAL;
        if (s->left)
                return 0;
        l = s->local;
        if (l->pub.incarnation < UINT32_MAX)
                l->pub.incarnation++;
        n = pick_members(s, ELEMENTSOF(to), NULL, true, to);

        swim_writer_init_fixed(&w, buf, sizeof(buf));
        o = swim_msg_begin(&w, SWIM_MSG_LEFT);
        swim_writer_put(&w, l->bid, SWIM_ID_SIZE);
        swim_writer_u32(&w, l->pub.incarnation);
        swim_msg_end(&w, o);
        for (unsigned round = 0; round < 2; round++)
                for (size_t i = 0; i < n; i++)
                        (void) send_datagram(s, &to[i]->pub.addr, NULL, buf, w.len, false);

        member_set_state(s, l, SWIM_STATE_LEFT, now);
        s->left = true;
        s->probe_active = false;
        s->push_pull_pending = false;
        event_push(s, SWIM_EVENT_UPDATED, l);
        return 0;
}

int swim_set_local_meta(Swim *s, usec_t now, const char *key, const char *value) {
        Member *l;
        size_t kl, vl, total = 0, idx;
        bool found = false;

        if (!s || !key)
                return -EINVAL;
        kl = strlen(key);
        if (!swim_meta_key_valid(key, kl))
                return -EINVAL;
        value = strempty(value);
        vl = strlen(value);
        if (!swim_meta_value_valid(value, vl))
                return -EINVAL;
        l = s->local;

        for (idx = 0; idx < l->pub.n_meta; idx++) {
                int c = strcmp(l->pub.meta_keys[idx], key);

                if (c == 0) {
                        found = true;
                        break;
                }
                if (c > 0)
                        break;
        }
        if (found && streq(l->pub.meta_values[idx], value))
                return 0;
        if (!found && vl == 0)
                return 0;

        for (size_t i = 0; i < l->pub.n_meta; i++)
                if (i != idx || !found)
                        total += strlen(l->pub.meta_keys[i]) + strlen(l->pub.meta_values[i]);
        if (vl > 0) {
                if (vl > SWIM_META_SIZE_MAX || total + kl + vl > SWIM_META_SIZE_MAX)
                        return -E2BIG;
                if (!found && l->pub.n_meta >= SWIM_META_KEYS_MAX)
                        return -E2BIG;
        }

        if (vl == 0) {
                free(l->pub.meta_keys[idx]);
                free(l->pub.meta_values[idx]);
                memmove(l->pub.meta_keys + idx, l->pub.meta_keys + idx + 1, (l->pub.n_meta - idx - 1) * sizeof(char *));
                memmove(l->pub.meta_values + idx, l->pub.meta_values + idx + 1, (l->pub.n_meta - idx - 1) * sizeof(char *));
                l->pub.n_meta--;
        } else if (found) {
                char *v = strdup(value);

                if (!v)
                        return -ENOMEM;
                free(l->pub.meta_values[idx]);
                l->pub.meta_values[idx] = v;
        } else {
                char **keys, **values, *k, *v;

                keys = reallocarray(l->pub.meta_keys, l->pub.n_meta + 1, sizeof(char *));
                if (!keys)
                        return -ENOMEM;
                l->pub.meta_keys = keys;
                values = reallocarray(l->pub.meta_values, l->pub.n_meta + 1, sizeof(char *));
                if (!values)
                        return -ENOMEM;
                l->pub.meta_values = values;
                k = strdup(key);
                v = strdup(value);
                if (!k || !v) {
                        free(k);
                        free(v);
                        return -ENOMEM;
                }
                memmove(keys + idx + 1, keys + idx, (l->pub.n_meta - idx) * sizeof(char *));
                memmove(values + idx + 1, values + idx, (l->pub.n_meta - idx) * sizeof(char *));
                keys[idx] = k;
                values[idx] = v;
                l->pub.n_meta++;
        }

        l->pub.meta_version++;
        s->local_changed_at = now;
        s->next_self_refresh_at = now + SELF_REFRESH_INTERVAL;
        if (!s->left)
                (void) queue_push(s, l);
        event_push(s, SWIM_EVENT_UPDATED, l);
        return 1;
}

int swim_set_local_load(Swim *s, uint32_t in_flight, uint32_t capacity) {
        Member *l;

        if (!s)
                return -EINVAL;
        l = s->local;
        if (s->load_set && l->pub.load_in_flight == in_flight && l->pub.load_capacity == capacity)
                return 0;
        s->load_set = true;
        l->pub.load_in_flight = in_flight;
        l->pub.load_capacity = capacity;
        return 1;
}

/* --- setup and reading --- */

int swim_new(Swim **ret, const SwimConfig *config, const SwimLocal *local, SwimRandomFunc random,
             void *userdata, usec_t now) {
        uint8_t bid[SWIM_ID_SIZE];
        Swim *s;
        Member *l;

        if (!ret || !config || !local || !random)
                return -EINVAL;
        if (swim_id_from_string(local->id, bid) < 0)
                return -EINVAL;
        if (!local->name || !swim_name_valid(local->name, strlen(local->name)))
                return -EINVAL;
        if (!IN_SET(local->addr.family, AF_INET, AF_INET6))
                return -EINVAL;
        if (config->probe_interval == 0 || config->gossip_interval == 0 || config->push_pull_interval == 0 ||
            config->probe_timeout > config->probe_interval || config->suspicion_mult == 0 ||
            config->retransmit_mult == 0 || config->packet_budget <= SWIM_SEAL_OVERHEAD + SWIM_HEADER_SIZE + 64)
                return -EINVAL;
        if (sodium_init() < 0)
                return -EIO;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->config = *config;
        s->random = random;
        s->userdata = userdata;
        s->member_deadline = USEC_INFINITY;
        s->session = rand_u64(s);
        s->next_seq_no = rand_u32(s);

        l = member_add(s, bid);
        if (!l) {
                free(s);
                return -ENOMEM;
        }
        l->pub.local = true;
        snprintf(l->pub.name, sizeof(l->pub.name), "%s", local->name);
        l->pub.addr = local->addr;
        l->pub.incarnation = local->incarnation;
        l->alive_incarnation = local->incarnation;
        member_set_state(s, l, SWIM_STATE_ALIVE, now);
        s->local = l;

        /* Spread the timers of nodes started together. */
        s->next_probe_at = now + jitter(s, config->probe_interval);
        s->next_gossip_at = now + jitter(s, config->gossip_interval);
        s->local_changed_at = now;
        s->next_self_refresh_at = now + SELF_REFRESH_INTERVAL;
        s->next_push_pull_at = now + config->push_pull_interval / 2 + jitter(s, config->push_pull_interval / 2);

        *ret = s;
        return 0;
}

Swim *swim_free(Swim *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_members; i++)
                member_free(s->members[i]);
        free(s->members);
        free(s->probe_list);
        free(s->queue);
        for (size_t i = 0; i < s->out_len; i++)
                free(s->out[(s->out_head + i) % OUTGOING_MAX].data);
        free(s->last_out);
        sodium_memzero(s->keys, sizeof(s->keys));
        free(s);
        return NULL;
}

int swim_set_keys(Swim *s, const uint8_t (*keys)[SWIM_KEY_SIZE], size_t n) {
        if (!s || !keys || n < 1 || n > SWIM_KEYS_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                swim_key_derive(keys[i], &s->keys[i]);
        for (size_t i = n; i < SWIM_KEYS_MAX; i++)
                sodium_memzero(&s->keys[i], sizeof(s->keys[i]));
        s->n_keys = n;
        return 0;
}

int swim_next_event(Swim *s, SwimEvent *ret) {
        if (!s || !ret)
                return -EINVAL;
        if (s->ev_len == 0)
                return 0;
        *ret = s->events[s->ev_head];
        s->ev_head = (s->ev_head + 1) % EVENTS_MAX;
        s->ev_len--;
        return 1;
}

size_t swim_n_members(Swim *s) {
        return s ? s->n_members : 0;
}

const SwimMember *swim_member(Swim *s, size_t i) {
        if (!s || i >= s->n_members)
                return NULL;
        return &s->members[i]->pub;
}

const SwimMember *swim_member_find(Swim *s, const char *id) {
        uint8_t bid[SWIM_ID_SIZE];
        Member *m;

        if (!s || swim_id_from_string(id, bid) < 0)
                return NULL;
        m = member_lookup(s, bid, NULL);
        return m ? &m->pub : NULL;
}

const SwimMember *swim_local(Swim *s) {
        return s ? &s->local->pub : NULL;
}

size_t swim_n_alive(Swim *s) {
        return s ? s->n_alive : 0;
}

uint64_t swim_load_serial(Swim *s) {
        return s ? s->load_serial : 0;
}

const SwimIdConflict *swim_id_conflict(Swim *s) {
        return s && s->id_conflict_active ? &s->id_conflict : NULL;
}

const SwimCounters *swim_counters(Swim *s) {
        return s ? &s->counters : NULL;
}
