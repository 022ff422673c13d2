/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The SWIM membership protocol of mycelia-gossipd with no I/O: the caller passes the time, the
 * datagrams and push-pull messages it received and a random source; swim hands back datagrams
 * to send and membership events. The daemon, the unit tests and the simulator all drive it. */
#pragma once

#include <sys/socket.h>

#include "macro.h"
#include "route-table.h"

#define SWIM_PROTOCOL_VERSION 1
#define SWIM_KEY_SIZE 32
/* Keys accepted at once (the first one seals), so a mesh key can be rotated without a gap. */
#define SWIM_KEYS_MAX 4
#define SWIM_NAME_MAX 64
#define SWIM_META_KEYS_MAX 32
#define SWIM_META_KEY_MAX 32
/* Sum of key and value bytes of one member's metadata. */
#define SWIM_META_SIZE_MAX 4096
#define SWIM_MEMBERS_MAX 4096
/* Largest datagram swim sends or accepts; piggybacked updates fill packets up to
 * SwimConfig.packet_budget, an update too big for that goes alone. */
#define SWIM_DATAGRAM_MAX 16384
/* Largest push-pull message (full state), sealed. */
#define SWIM_PUSH_PULL_MAX (16U << 20)

typedef struct SwimAddr {
        uint8_t family;         /* AF_INET or AF_INET6 */
        uint8_t addr[16];       /* 4 bytes used for AF_INET */
        uint16_t port;          /* host byte order */
} SwimAddr;

int swim_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, SwimAddr *ret);
void swim_addr_to_sockaddr(const SwimAddr *a, struct sockaddr_storage *ret, socklen_t *ret_len);
/* "10.0.0.1:11436", "[fd00::1]:11436". Numeric only; -EINVAL otherwise. */
int swim_addr_parse(const char *s, SwimAddr *ret);
#define SWIM_ADDR_STRING_MAX 64
int swim_addr_format(const SwimAddr *a, char *buf, size_t size);
bool swim_addr_equal(const SwimAddr *a, const SwimAddr *b);

typedef enum SwimState {
        SWIM_STATE_ALIVE,
        SWIM_STATE_SUSPECT,
        SWIM_STATE_DEAD,
        SWIM_STATE_LEFT,
        _SWIM_STATE_MAX,
        _SWIM_STATE_INVALID = -EINVAL,
} SwimState;

/* "alive", "suspect", "dead", "left" */
const char *swim_state_to_string(SwimState s);

/* What the caller may read about a member. swim owns it; it stays valid until the next call
 * into swim that takes a time (swim_tick, swim_receive_*, swim_join, ...). */
typedef struct SwimMember {
        char id[NODE_ID_LEN + 1];
        char name[SWIM_NAME_MAX + 1];
        SwimAddr addr;          /* where its gossip (UDP datagrams, TCP push-pull) goes */
        SwimState state;
        uint32_t incarnation;
        uint64_t meta_version;  /* (incarnation, meta_version) orders versions: newer wins */
        char **meta_keys;       /* n_meta entries each, sorted by key */
        char **meta_values;
        size_t n_meta;
        usec_t state_since;     /* monotonic time this node saw it enter state */
        bool local;             /* this node */
        /* Its load (requests in flight, requests it serves at once; 0 = unknown) as it last told
         * this node itself, in a LOAD message of a datagram it sent here: not versioned, never
         * relayed (docs/gossip-protocol.md, "Load"). load_at is when that was (monotonic), 0 =
         * never; it is forgotten when the member is declared dead or leaves. For the local node:
         * what swim_set_local_load() set, load_at 0. */
        uint32_t load_in_flight;
        uint32_t load_capacity;
        usec_t load_at;
        uint64_t load_serial;   /* swim_load_serial() right after its value last changed */
} SwimMember;

typedef struct SwimConfig {
        usec_t probe_interval;          /* one member probed per interval */
        usec_t probe_timeout;           /* ack wait before indirect probes */
        unsigned indirect_checks;       /* k members asked to ping-req */
        unsigned suspicion_mult;        /* suspicion timeout = mult * max(1, log10(N)) * probe_interval */
        unsigned retransmit_mult;       /* each update is piggybacked mult * ceil(log10(N + 1)) times */
        usec_t gossip_interval;         /* updates also go to gossip_nodes random members this often */
        unsigned gossip_nodes;
        usec_t push_pull_interval;      /* full-state exchange with one random member */
        usec_t reclaim_time;            /* dead and left members are forgotten after this */
        size_t packet_budget;           /* bytes a datagram is filled up to */
} SwimConfig;

/* The LAN defaults (docs/gossip-protocol.md says why each). */
void swim_config_lan(SwimConfig *c);

/* Fills buf with n random bytes: a CSPRNG in the daemon (nonces come from it), a seeded PRNG
 * in tests and the simulator. */
typedef void (*SwimRandomFunc)(void *buf, size_t n, void *userdata);

typedef struct SwimLocal {
        const char *id;                 /* 32 hex digits */
        const char *name;
        SwimAddr addr;                  /* the address peers reach this node's gossip at */
        uint32_t incarnation;           /* start at least one above the last one used */
} SwimLocal;

typedef struct Swim Swim;

int swim_new(Swim **ret, const SwimConfig *config, const SwimLocal *local, SwimRandomFunc random,
             void *userdata, usec_t now);
Swim *swim_free(Swim *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Swim *, swim_free);

/* The key id byte that prefixes sealed messages: a hash of the key. */
uint8_t swim_key_id(const uint8_t key[SWIM_KEY_SIZE]);
/* Replaces the key list: keys[0] seals, all of them open. 1 <= n <= SWIM_KEYS_MAX. Until a key is
 * set, swim neither sends nor accepts anything. */
int swim_set_keys(Swim *s, const uint8_t (*keys)[SWIM_KEY_SIZE], size_t n);

/* --- time and datagrams --- */

/* Runs the timers (probes, suspicion, gossip, reclaim) due at now. */
int swim_tick(Swim *s, usec_t now);
/* The next time swim_tick() has something to do (monotonic), USEC_INFINITY for never. */
usec_t swim_next_deadline(Swim *s);

/* A datagram that arrived from `from`. Returns 0 when accepted, or a negative errno when dropped
 * (counted in SwimCounters by reason): -EBADMSG malformed or truncated, -EMSGSIZE oversized,
 * -EKEYREJECTED no key opens it, -EPROTONOSUPPORT another protocol version, -EALREADY replay,
 * -EADDRINUSE sent by another node with this node's id (see swim_id_conflict()). */
int swim_receive_datagram(Swim *s, usec_t now, const SwimAddr *from, const void *data, size_t size);

/* Takes the next datagram to send. Returns 1 and sets the pointers (data stays valid until the
 * next call into swim), 0 when there is none. */
int swim_next_datagram(Swim *s, SwimAddr *ret_to, const void **ret_data, size_t *ret_size);

/* --- push-pull (TCP, same port number as the datagrams) ---
 * On a TCP connection each message is a 4-byte big-endian length followed by that many bytes
 * from swim_push_pull_build(). The connecting side sends a request, the other side answers
 * with a reply, then both close. Lengths above SWIM_PUSH_PULL_MAX are refused unread. */

/* 1 and the address when a periodic push-pull is due (the caller connects), 0 otherwise. */
int swim_push_pull_due(Swim *s, usec_t now, SwimAddr *ret_to);
/* The full state of this node, sealed; *ret_buf is malloc()ed. */
int swim_push_pull_build(Swim *s, usec_t now, bool reply, void **ret_buf, size_t *ret_size);
/* Merges a received full state. Returns 1 when it was a request (build and send a reply), 0
 * for a reply, negative errno as swim_receive_datagram() when dropped. */
int swim_push_pull_receive(Swim *s, usec_t now, const void *data, size_t size);

/* --- joining, leaving, metadata --- */

/* Asks swim to make itself known at addr by datagram (for when a push-pull cannot be made):
 * queues a datagram carrying this node's alive record. */
int swim_announce(Swim *s, usec_t now, const SwimAddr *addr);
/* Leaves gracefully: marks this node left with a higher incarnation and queues that update
 * directly to every live member (bounded), twice. Afterwards swim sends nothing else. */
int swim_leave(Swim *s, usec_t now);

/* Sets (or, with value "" or NULL, removes) one key of this node's metadata and queues the
 * update. Returns 1 when it changed, 0 when it was already so, -EINVAL for a key that is not
 * [a-z0-9_.-]{1,32} or a value with a NUL or newline, -E2BIG when the total would exceed
 * SWIM_META_SIZE_MAX or the count SWIM_META_KEYS_MAX. */
int swim_set_local_meta(Swim *s, usec_t now, const char *key, const char *value);

/* Sets this node's current load. It is not part of the member record: no meta_version bump, no
 * update queued, no event. From now on every datagram this node sends (pings, acks, ping-reqs,
 * gossip) carries it in a LOAD message, about this node only, so a peer learns it the next time
 * this node sends it anything: about once per probe round (N * probe_interval) or sooner. Until
 * it is called, no LOAD is sent (as by a node of an earlier version). Returns 1 when it changed,
 * 0 when it was already so. */
int swim_set_local_load(Swim *s, uint32_t in_flight, uint32_t capacity);

/* --- what the caller reads --- */

typedef enum SwimEventType {
        SWIM_EVENT_JOINED,      /* new, or back from dead/left (a higher incarnation) */
        SWIM_EVENT_UPDATED,     /* state alive<->suspect, incarnation, metadata or address */
        SWIM_EVENT_LEFT,
        SWIM_EVENT_FAILED,      /* declared dead */
        _SWIM_EVENT_MAX,
} SwimEventType;

typedef struct SwimEvent {
        SwimEventType type;
        char id[NODE_ID_LEN + 1];
} SwimEvent;

/* Takes the next event (in the order they happened). 1 when there was one, 0 otherwise.
 * The local node only ever gets SWIM_EVENT_UPDATED (refutation, metadata). The queue is
 * bounded: when it overflows the oldest events are dropped and n_events_dropped counts them
 * (a caller that must not miss anything re-reads the member list). */
int swim_next_event(Swim *s, SwimEvent *ret);

size_t swim_n_members(Swim *s);                 /* including this node and dead/left ones */
const SwimMember *swim_member(Swim *s, size_t i);
const SwimMember *swim_member_find(Swim *s, const char *id);
const SwimMember *swim_local(Swim *s);
size_t swim_n_alive(Swim *s);                   /* alive + suspect, including this node */
/* Counts changes of the loads heard from members (a new value, or the first one): the members
 * whose load_serial is above a value read earlier are the ones whose load changed since. */
uint64_t swim_load_serial(Swim *s);

typedef struct SwimCounters {
        uint64_t datagrams_sent;
        uint64_t datagrams_received;
        uint64_t bytes_sent;
        uint64_t bytes_received;
        uint64_t push_pulls_sent;
        uint64_t push_pulls_received;
        uint64_t dropped_malformed;
        uint64_t dropped_oversized;
        uint64_t dropped_key;           /* no key opened it: wrong key or tampered */
        uint64_t dropped_version;
        uint64_t dropped_replay;
        uint64_t probes;
        uint64_t indirect_probes;
        uint64_t suspicions;            /* members this node began to suspect */
        uint64_t refutations;           /* times this node refuted a suspicion of itself */
        uint64_t n_events_dropped;
        uint64_t stale_asks;            /* records asked for because a header showed ours old */
        uint64_t id_conflicts;          /* signs of another node with this node's id */
} SwimCounters;

const SwimCounters *swim_counters(Swim *s);

/* Another node claims this node's id: a copied state directory, a cloned machine, one id given
 * to two nodes. Such a node would otherwise be silent: its messages look like our own and are
 * dropped, its record fights ours. swim sees it in a datagram or push-pull sent with this id by
 * another session (dropped, at the address it came from), and in an alive record of this id
 * with another address and an incarnation no older than ours (docs/node-identity.md). */
#define SWIM_ID_CONFLICT_HOLD (10 * 60 * USEC_PER_SEC)

typedef struct SwimIdConflict {
        SwimAddr addr;          /* the gossip address of the other node (the latest one seen) */
        usec_t since;           /* first sign of a conflict with that address */
        usec_t last;            /* latest sign */
} SwimIdConflict;

/* The conflict seen within the last SWIM_ID_CONFLICT_HOLD, or NULL. */
const SwimIdConflict *swim_id_conflict(Swim *s);
