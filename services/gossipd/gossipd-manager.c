/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Wires mycelia-gossipd together on its event loop: the swim core driven by one timer and the
 * sockets, joins from Join(), discoveryd and the state file, graceful leave when the loop ends
 * cleanly, and the state file itself. */
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/socket.h>

#include "daemon.h"
#include "gossipd-manager.h"
#include "log.h"
#include "mesh-key.h"

_Static_assert(MESH_KEY_SIZE == SWIM_KEY_SIZE, "the mesh key is the swim key");

static void manager_exit(Manager *m, int code) {
        if (m->exit_code == 0)
                m->exit_code = code;
        (void) event_base_loopbreak(m->base);
}

static void random_bytes(void *buf, size_t n, void *userdata) {
        randombytes_buf(buf, n);
}

/* --- the state file --- */

static void manager_save(Manager *m) {
        _cleanup_free_ GossipState *state = NULL;
        const SwimMember *local;
        _cleanup_free_ char *text = NULL;
        int r;

        m->state_dirty = false;
        m->last_save = now_usec();
        if (!m->state_path || !m->swim)
                return;

        state = calloc(1, sizeof(*state));
        if (!state) {
                log_oom();
                return;
        }
        local = swim_local(m->swim);
        state->incarnation = local->incarnation;
        for (size_t i = 0; i < local->n_meta; i++)
                /* version and proto are this build's, set at start. */
                if (!streq(local->meta_keys[i], "version") && !streq(local->meta_keys[i], "proto"))
                        (void) gossip_state_add_meta(state, local->meta_keys[i], local->meta_values[i]);
        for (size_t i = 0; i < swim_n_members(m->swim) && state->n_members < GOSSIP_STATE_MEMBERS_MAX; i++) {
                const SwimMember *mb = swim_member(m->swim, i);

                if (!mb || mb->local || !IN_SET(mb->state, SWIM_STATE_ALIVE, SWIM_STATE_SUSPECT))
                        continue;
                snprintf(state->members[state->n_members].id, sizeof(state->members[0].id), "%s", mb->id);
                state->members[state->n_members].addr = mb->addr;
                state->n_members++;
        }
        r = gossip_state_format(state, &text);
        if (r < 0) {
                log_oom();
                return;
        }
        if (m->state_written && streq(m->state_written, text))
                return;
        r = gossip_state_write(m->state_path, text);
        if (r < 0) {
                /* Once: a read-only or missing state dir costs only the fast rejoin. */
                if (!m->state_warned)
                        log_warning_errno(r, "Failed to write %s: %m; a restart will not rejoin from it.",
                                          m->state_path);
                m->state_warned = true;
                return;
        }
        m->state_warned = false;
        free(m->state_written);
        m->state_written = TAKE_PTR(text);
}

static void manager_save_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        manager_save(userdata);
}

static void manager_state_changed(Manager *m) {
        struct timeval tv;
        usec_t now = now_usec(), due;

        m->state_dirty = true;
        if (evtimer_pending(m->save_timer, NULL))
                return;
        due = m->last_save + GOSSIP_SAVE_INTERVAL_USEC;
        tv = usec_to_timeval(due > now ? due - now : 0);
        (void) evtimer_add(m->save_timer, &tv);
}

/* --- datagrams, events, push-pull --- */

static void manager_send_datagrams(Manager *m) {
        const void *data;
        SwimAddr to;
        size_t size;

        while (swim_next_datagram(m->swim, &to, &data, &size) > 0)
                (void) gossip_net_send(m->net, &to, data, size);
}

static void manager_push_pull_start(Manager *m, const SwimAddr *to) {
        void *buf = NULL;
        size_t size = 0;
        char a[SWIM_ADDR_STRING_MAX] = "?";
        int r;

        (void) swim_addr_format(to, a, sizeof(a));
        r = swim_push_pull_build(m->swim, now_usec(), false, &buf, &size);
        if (r < 0) {
                log_debug_errno(r, "Failed to build a push-pull request for %s: %m", a);
                return;
        }
        r = gossip_net_push_pull(m->net, to, buf, size);
        if (r < 0)
                log_debug_errno(r, "Failed to start a push-pull with %s: %m", a);
        else
                log_debug("Push-pull with %s started.", a);
}

/* A push-pull with to, now or when a slot is free; nothing when one runs or waits already. */
static void manager_push_pull_to(Manager *m, const SwimAddr *to) {
        if (m->left || gossip_net_push_pull_running(m->net, to))
                return;
        for (size_t i = 0; i < m->n_pending; i++)
                if (swim_addr_equal(&m->pending[i], to))
                        return;
        if (gossip_net_n_outgoing(m->net) < GOSSIP_PUSH_PULL_OUT_MAX) {
                manager_push_pull_start(m, to);
                return;
        }
        if (m->n_pending >= GOSSIP_JOIN_PENDING_MAX) {
                m->counters.joins_dropped++;
                return;
        }
        m->pending[m->n_pending++] = *to;
}

static void manager_push_pull_next(Manager *m) {
        while (!m->left && m->n_pending > 0 && gossip_net_n_outgoing(m->net) < GOSSIP_PUSH_PULL_OUT_MAX) {
                SwimAddr to = m->pending[0];

                memmove(m->pending, m->pending + 1, (m->n_pending - 1) * sizeof(SwimAddr));
                m->n_pending--;
                manager_push_pull_start(m, &to);
        }
}

static void manager_arm_timer(Manager *m) {
        struct timeval tv;
        usec_t deadline, now, delay;

        if (m->left) {
                (void) evtimer_del(m->swim_timer);
                return;
        }
        deadline = swim_next_deadline(m->swim);
        now = now_usec();
        delay = deadline == USEC_INFINITY ? GOSSIP_TIMER_MAX_USEC : deadline > now ? deadline - now : 0;
        tv = usec_to_timeval(MIN(delay, GOSSIP_TIMER_MAX_USEC));
        (void) evtimer_add(m->swim_timer, &tv);
}

static void manager_format_status(Manager *m, char *buf, size_t size) {
        size_t alive = swim_n_alive(m->swim);

        if (m->left)
                snprintf(buf, size, "Left the mesh");
        else
                snprintf(buf, size, "%zu member%s alive (this node included), gossip at %s%s%s", alive,
                         alive == 1 ? "" : "s", m->advertise_string,
                         m->id_conflict[0] ? "; NODE ID CONFLICT with " : "", m->id_conflict);
}

/* Says so, loudly and once, when another node starts or stops using our id (swim.h). */
static void manager_check_id_conflict(Manager *m) {
        const SwimIdConflict *c = swim_id_conflict(m->swim);
        char addr[SWIM_ADDR_STRING_MAX] = "", fields[128];
        int r;

        if (c && swim_addr_format(&c->addr, addr, sizeof(addr)) < 0)
                snprintf(addr, sizeof(addr), "?");
        if (streq(addr, m->id_conflict))
                return;
        snprintf(fields, sizeof(fields), "MYCELIA_NODE_ID=%s\nMYCELIA_ID_CONFLICT=%s", m->local_id,
                 c ? addr : "");
        if (c)
                log_fields(LOG_ERR, fields,
                           "Node id %s is also used by the node at %s (this node is at %s). Two nodes with "
                           "one id never see each other and fight over one record. Give one of them its own "
                           "id: stop it, remove node-id from its state directory (or change its [node] id) "
                           "and start it again. See docs/node-identity.md.",
                           m->local_id, addr, m->advertise_string);
        else
                log_fields(LOG_NOTICE, fields,
                           "No sign of the node at %s using node id %s for %" PRIu64 " minutes; the conflict is over.",
                           m->id_conflict, m->local_id, (uint64_t) (SWIM_ID_CONFLICT_HOLD / (60 * USEC_PER_SEC)));
        snprintf(m->id_conflict, sizeof(m->id_conflict), "%s", addr);
        r = manager_bus_emit_id_conflict(m);
        if (r < 0)
                log_debug_errno(r, "Failed to emit PropertiesChanged for IdConflict: %m");
}

static void manager_update_status(Manager *m) {
        char status[sizeof(m->last_status)];

        /* While the bus is lost, STATUS= says so (bus-reconnect.c). */
        if (!m->ready || !m->bus)
                return;
        manager_format_status(m, status, sizeof(status));
        if (streq(status, m->last_status))
                return;
        snprintf(m->last_status, sizeof(m->last_status), "%s", status);
        daemon_notify_status("%s", status);
}

static void manager_drain_events(Manager *m) {
        SwimEvent ev;
        int r;

        while (swim_next_event(m->swim, &ev) > 0) {
                const SwimMember *mb = swim_member_find(m->swim, ev.id);

                if (mb && !mb->local) {
                        char a[SWIM_ADDR_STRING_MAX] = "?";

                        (void) swim_addr_format(&mb->addr, a, sizeof(a));
                        if (ev.type == SWIM_EVENT_JOINED)
                                log_info("Member %s (%s) at %s joined, incarnation %" PRIu32 ".", mb->name,
                                         mb->id, a, mb->incarnation);
                        else if (ev.type == SWIM_EVENT_LEFT)
                                log_info("Member %s (%s) at %s left.", mb->name, mb->id, a);
                        else if (ev.type == SWIM_EVENT_FAILED)
                                log_notice("Member %s (%s) at %s failed.", mb->name, mb->id, a);
                        else
                                log_debug("Member %s (%s) updated: %s, incarnation %" PRIu32 ".", mb->name,
                                          mb->id, swim_state_to_string(mb->state), mb->incarnation);
                }
                r = manager_bus_emit_member(m, &ev);
                if (r < 0) {
                        m->counters.signals_failed++;
                        log_debug_errno(r, "Failed to emit a member signal: %m");
                }
                manager_state_changed(m);
        }
}

static void manager_emit_loads(Manager *m) {
        uint64_t serial = swim_load_serial(m->swim);
        int r;

        r = manager_bus_emit_loads(m, m->loads_emitted_serial);
        if (r < 0) {
                m->counters.signals_failed++;
                log_debug_errno(r, "Failed to emit LoadsChanged: %m");
        }
        m->loads_emitted_serial = serial;
        m->loads_emitted_at = now_usec();
}

static void manager_loads_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        manager_emit_loads(userdata);
}

/* Loads heard from peers change with nearly every datagram under load: tell the bus at most
 * every GOSSIP_LOADS_EMIT_INTERVAL_USEC, all changes since in one signal. */
static void manager_loads_changed(Manager *m) {
        struct timeval tv;
        usec_t now, due;

        if (swim_load_serial(m->swim) == m->loads_emitted_serial || evtimer_pending(m->loads_timer, NULL))
                return;
        now = now_usec();
        due = m->loads_emitted_at + GOSSIP_LOADS_EMIT_INTERVAL_USEC;
        if (now >= due) {
                manager_emit_loads(m);
                return;
        }
        tv = usec_to_timeval(due - now);
        (void) evtimer_add(m->loads_timer, &tv);
}

void manager_after_swim(Manager *m) {
        SwimAddr to;

        if (!m->swim)
                return;
        if (!m->left && swim_push_pull_due(m->swim, now_usec(), &to) > 0)
                manager_push_pull_to(m, &to);
        manager_send_datagrams(m);
        manager_drain_events(m);
        manager_loads_changed(m);
        manager_check_id_conflict(m);
        manager_arm_timer(m);
        manager_update_status(m);
        if (m->bus_event)
                bus_event_rearm(m->bus_event);
}

static void manager_swim_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;
        int r;

        if (m->left)
                return;
        r = swim_tick(m->swim, now_usec());
        if (r < 0)
                log_debug_errno(r, "swim_tick() failed: %m");
        manager_after_swim(m);
}

/* --- rejoining after a restart --- */

static void manager_request_name(Manager *m);

/* The rejoin is over: the name (and READY) may follow. */
static void manager_rejoin_done(Manager *m) {
        if (!m->rejoining)
                return;
        m->rejoining = false;
        (void) evtimer_del(m->rejoin_timer);
        if (m->bus)
                manager_request_name(m);
}

static void manager_rejoin_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;

        log_notice("No saved member answered within %" PRIu64 " s; serving %s with the members known so far.",
                   (uint64_t) (GOSSIP_REJOIN_WAIT_USEC / USEC_PER_SEC), GOSSIP1_BUS_NAME);
        manager_rejoin_done(m);
}

/* A push-pull ended. One that succeeded brought the mesh's state (any member has it all); the
 * rejoin also ends when every saved member failed. */
static void manager_rejoin_answered(Manager *m, const SwimAddr *to, bool ok) {
        if (!m->rejoining)
                return;
        if (ok) {
                log_debug("Rejoined: %zu member(s) known.", swim_n_alive(m->swim));
                manager_rejoin_done(m);
                return;
        }
        for (size_t i = 0; m->saved && i < m->saved->n_members; i++)
                if (swim_addr_equal(&m->saved->members[i].addr, to)) {
                        if (m->rejoin_waiting > 0 && --m->rejoin_waiting == 0)
                                manager_rejoin_done(m);
                        return;
                }
}

/* --- the network's handlers --- */

static void on_datagram(const SwimAddr *from, const void *data, size_t size, void *userdata) {
        Manager *m = userdata;

        if (m->left)
                return;
        /* Drops are counted by swim by reason. */
        (void) swim_receive_datagram(m->swim, now_usec(), from, data, size);
        /* Answers (acks) go out at once; events and the timer once per batch. */
        manager_send_datagrams(m);
}

static void on_datagrams_done(void *userdata) {
        manager_after_swim(userdata);
}

static void on_push_pull_request(const SwimAddr *from, const void *data, size_t size, void **ret_reply,
                                 size_t *ret_reply_size, void *userdata) {
        Manager *m = userdata;
        usec_t now = now_usec();
        int r;

        if (m->left)
                return;
        r = swim_push_pull_receive(m->swim, now, data, size);
        if (r > 0) {
                r = swim_push_pull_build(m->swim, now, true, ret_reply, ret_reply_size);
                if (r < 0) {
                        log_debug_errno(r, "Failed to build a push-pull reply: %m");
                        *ret_reply = NULL;
                }
        } else if (r < 0) {
                char a[SWIM_ADDR_STRING_MAX] = "?";

                (void) swim_addr_format(from, a, sizeof(a));
                log_debug_errno(r, "Dropped a push-pull request from %s: %m", a);
        }
        manager_after_swim(m);
}

static void on_push_pull_done(const SwimAddr *to, int error, const void *data, size_t size, void *userdata) {
        Manager *m = userdata;
        char a[SWIM_ADDR_STRING_MAX] = "?";
        int r = -ESHUTDOWN;

        (void) swim_addr_format(to, a, sizeof(a));
        if (error < 0)
                log_debug_errno(error, "Push-pull with %s failed: %m", a);
        else if (!m->left) {
                r = swim_push_pull_receive(m->swim, now_usec(), data, size);
                if (r < 0)
                        log_debug_errno(r, "Dropped the push-pull reply of %s: %m", a);
                else
                        log_debug("Push-pull with %s done.", a);
        }
        manager_rejoin_answered(m, to, error >= 0 && r >= 0);
        manager_push_pull_next(m);
        manager_after_swim(m);
}

/* --- joining --- */

/* Makes this node known at addr: a datagram announce at once and a push-pull for the full
 * state. The caller runs manager_after_swim(). */
static void manager_join_addr(Manager *m, const SwimAddr *addr) {
        int r;

        if (m->left || swim_addr_equal(addr, &m->advertise))
                return;
        m->counters.joins++;
        r = swim_announce(m->swim, now_usec(), addr);
        if (r < 0)
                log_debug_errno(r, "swim_announce() failed: %m");
        manager_push_pull_to(m, addr);
}

static void manager_remember(Manager *m, const SwimAddr *addr) {
        for (size_t i = 0; i < m->n_remembered; i++)
                if (swim_addr_equal(&m->remembered[i], addr))
                        return;
        if (m->n_remembered >= GOSSIP_JOIN_REMEMBERED_MAX) {
                /* The oldest goes. */
                memmove(m->remembered, m->remembered + 1, (m->n_remembered - 1) * sizeof(SwimAddr));
                m->n_remembered--;
        }
        m->remembered[m->n_remembered++] = *addr;
}

unsigned manager_join_strings(Manager *m, char *const *addrs, size_t n, bool remember) {
        unsigned accepted = 0;

        for (size_t i = 0; i < n; i++) {
                SwimAddr a;

                if (swim_addr_parse(addrs[i], &a) < 0 || a.port == 0) {
                        log_debug("Not joining '%s': not a numeric ADDR:PORT.", addrs[i]);
                        continue;
                }
                accepted++;
                if (remember)
                        manager_remember(m, &a);
                manager_join_addr(m, &a);
        }
        if (accepted > 0)
                manager_after_swim(m);
        return accepted;
}

static bool manager_is_alive_member(Manager *m, const char *id) {
        const SwimMember *mb;

        if (isempty(id))
                return false;
        mb = swim_member_find(m->swim, id);
        return mb && IN_SET(mb->state, SWIM_STATE_ALIVE, SWIM_STATE_SUSPECT);
}

static DiscoveryPeer *manager_discovery_find(Manager *m, const char *key) {
        for (size_t i = 0; i < m->n_peers; i++)
                if (streq(m->peers[i].key, key))
                        return &m->peers[i];
        return NULL;
}

void manager_discovery_reset(Manager *m) {
        for (size_t i = 0; i < m->n_peers; i++)
                free(m->peers[i].key);
        m->n_peers = 0;
}

void manager_discovery_peer(Manager *m, const char *id, const char *name, char *const *gossip, size_t n_gossip) {
        DiscoveryPeer scratch = {}, *p;
        const char *key = isempty(id) ? name : id;

        if (m->left || isempty(key) || n_gossip == 0)
                return;
        if (!isempty(id) && streq(id, m->local_id))
                return;

        p = manager_discovery_find(m, key);
        if (!p && m->n_peers < GOSSIP_DISCOVERY_PEERS_MAX) {
                char *k = strdup(key);

                if (k) {
                        p = &m->peers[m->n_peers++];
                        *p = (DiscoveryPeer) { .key = k };
                }
        }
        if (!p)
                p = &scratch;   /* over the limit (or no memory): joined, not remembered */
        snprintf(p->id, sizeof(p->id), "%s", strempty(id));
        p->n_addrs = 0;
        for (size_t i = 0; i < n_gossip && p->n_addrs < GOSSIP_PEER_ADDRS_MAX; i++) {
                SwimAddr a;

                if (swim_addr_parse(gossip[i], &a) < 0 || a.port == 0) {
                        log_debug("Discovery peer %s: ignoring gossip address '%s'.", key, gossip[i]);
                        continue;
                }
                p->addrs[p->n_addrs++] = a;
        }

        if (manager_is_alive_member(m, id))
                return;
        log_debug("Joining discovery peer %s (%zu address%s).", key, p->n_addrs, p->n_addrs == 1 ? "" : "es");
        for (size_t i = 0; i < p->n_addrs; i++)
                manager_join_addr(m, &p->addrs[i]);
        manager_after_swim(m);
}

/* While no one else is alive, every address this node knows is worth another try. */
static void manager_alone_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;

        if (m->left || swim_n_alive(m->swim) > 1)
                return;
        for (size_t i = 0; i < m->n_peers; i++)
                for (size_t j = 0; j < m->peers[i].n_addrs; j++)
                        manager_join_addr(m, &m->peers[i].addrs[j]);
        for (size_t i = 0; m->saved && i < m->saved->n_members; i++)
                manager_join_addr(m, &m->saved->members[i].addr);
        for (size_t i = 0; i < m->n_remembered; i++)
                manager_join_addr(m, &m->remembered[i]);
        manager_after_swim(m);
}

/* --- leaving, metadata --- */

void manager_leave(Manager *m) {
        int r;

        if (m->left || !m->swim)
                return;
        r = swim_leave(m->swim, now_usec());
        if (r < 0)
                log_warning_errno(r, "Failed to leave the mesh gracefully: %m");
        /* Everything swim queued (the left record, twice to each member) goes now: the loop
         * ends next. */
        manager_send_datagrams(m);
        manager_drain_events(m);
        m->left = true;
        m->n_pending = 0;
        (void) evtimer_del(m->swim_timer);
        manager_save(m);
        log_info("Left the mesh (incarnation %" PRIu32 ").", swim_local(m->swim)->incarnation);
}

int manager_set_local_meta(Manager *m, const char *key, const char *value) {
        int r;

        if (m->left)
                return -ESHUTDOWN;
        r = swim_set_local_meta(m->swim, now_usec(), key, value);
        if (r > 0)
                manager_state_changed(m);       /* the state file keeps it for a restart */
        manager_after_swim(m);
        return r;
}

int manager_set_local_load(Manager *m, uint32_t in_flight, uint32_t capacity) {
        if (m->left)
                return -ESHUTDOWN;
        /* Nothing to send now: the next datagrams carry it. */
        return swim_set_local_load(m->swim, in_flight, capacity);
}

/* --- setup --- */

/* The "gossip" fds of socket activation (one UDP, one TCP), else bound by hand. */
static int manager_sockets(Manager *m, int *ret_udp, int *ret_tcp) {
        _cleanup_close_ int udp = -EBADF, tcp = -EBADF;
        int fds[8], n, r;

        n = listen_fds_take("gossip", fds, ELEMENTSOF(fds));
        for (int i = 0; i < n; i++) {
                int type = 0;
                socklen_t len = sizeof(type);

                if (getsockopt(fds[i], SOL_SOCKET, SO_TYPE, &type, &len) < 0)
                        type = -1;
                if (type == SOCK_DGRAM && udp < 0)
                        udp = fds[i];
                else if (type == SOCK_STREAM && tcp < 0)
                        tcp = fds[i];
                else {
                        log_warning("Ignoring an extra socket passed as 'gossip' (fd %d).", fds[i]);
                        (void) close(fds[i]);
                }
        }
        if (n > 0 && udp < 0)
                return log_error_errno(-EINVAL, "The sockets passed as 'gossip' include no UDP socket.");
        if (n > 0 && tcp < 0) {
                SwimAddr a;
                char s[SWIM_ADDR_STRING_MAX];

                /* Push-pull on the same number, bound by hand. */
                r = gossip_net_local_addr(udp, &a);
                if (r >= 0)
                        r = swim_addr_format(&a, s, sizeof(s));
                if (r >= 0)
                        r = listen_tcp(s, &tcp);
                if (r < 0)
                        log_warning_errno(r, "No TCP socket passed as 'gossip' and binding one failed: %m; "
                                          "serving no push-pull.");
        }
        if (n == 0) {
                r = gossip_net_bind(m->config->gossip_listen, &udp, &tcp);
                if (r < 0)
                        return log_error_errno(r, "Failed to bind the gossip address %s (UDP and TCP; [gossip] listen, --gossip): %m",
                                               strempty(m->config->gossip_listen));
        }
        *ret_udp = TAKE_FD(udp);
        *ret_tcp = TAKE_FD(tcp);
        return 0;
}

static int manager_advertise(Manager *m, int udp) {
        SwimAddr bound;
        int r;

        r = gossip_net_local_addr(udp, &bound);
        if (r < 0)
                return log_error_errno(r, "Failed to read the bound gossip address: %m");

        if (!isempty(m->config->gossip_advertise)) {
                r = swim_addr_parse(m->config->gossip_advertise, &m->advertise);
                if (r < 0 || gossip_addr_is_unspecified(&m->advertise))
                        return log_error_errno(-EINVAL, "Invalid gossip advertise address '%s' ([gossip] advertise, --gossip-advertise): "
                                               "expected a specific numeric ADDR:PORT such as 10.0.0.2:11436 or [fd00::2]:11436.",
                                               m->config->gossip_advertise);
                if (m->advertise.port == 0)
                        m->advertise.port = bound.port;
        } else if (!gossip_addr_is_unspecified(&bound))
                m->advertise = bound;
        else {
                r = gossip_net_host_addr(bound.port, &m->advertise);
                if (r < 0) {
                        log_warning("This host has no non-loopback address; advertising 127.0.0.1: "
                                    "only nodes on this host can reach it. Set [gossip] advertise.");
                        m->advertise = (SwimAddr) { .family = AF_INET, .addr = { 127, 0, 0, 1 }, .port = bound.port };
                }
        }
        return swim_addr_format(&m->advertise, m->advertise_string, sizeof(m->advertise_string));
}

static int manager_swim_config(Manager *m, SwimConfig *sc) {
        const MyceliaConfig *c = m->config;

        swim_config_lan(sc);
        if (c->gossip_probe_interval == 0 || c->gossip_probe_timeout == 0 ||
            c->gossip_probe_timeout >= c->gossip_probe_interval)
                return log_error_errno(-EINVAL, "[gossip] probe_timeout (%" PRIu64 "ms) must be greater than 0 and less than probe_interval (%" PRIu64 "ms).",
                                       c->gossip_probe_timeout / USEC_PER_MSEC, c->gossip_probe_interval / USEC_PER_MSEC);
        if (c->gossip_suspicion_mult == 0)
                return log_error_errno(-EINVAL, "[gossip] suspicion_mult must be at least 1.");
        if (c->gossip_push_pull_interval == 0)
                return log_error_errno(-EINVAL, "[gossip] push_pull_interval must be greater than 0.");
        sc->probe_interval = c->gossip_probe_interval;
        sc->probe_timeout = c->gossip_probe_timeout;
        sc->suspicion_mult = c->gossip_suspicion_mult;
        sc->push_pull_interval = c->gossip_push_pull_interval;
        return 0;
}

/* The keyring: STATE_DIR/keyring once a key was installed (docs/key-rotation.md), else the mesh
 * key file's one key. */
static int manager_load_keys(Manager *m) {
        const char *path = m->config->mesh_key;
        int r;

        r = mesh_keyring_path(m->config->state_dir, &m->keyring_path);
        if (r == -ENOMEM)
                return log_oom();
        if (isempty(path) && !m->keyring_path)
                return log_error_errno(-EINVAL, "No mesh key file configured ([node] mesh_key, --mesh-key FILE).");
        r = mesh_keyring_load(m->keyring_path, isempty(path) ? NULL : path, &m->keyring);
        if (r == -ENOENT)
                return log_error_errno(r, "The mesh key %s does not exist. Create one with 'myceliactl keygen' "
                                       "(the same key on every node) or pass --mesh-key FILE.", strempty(path));
        if (r == -EINVAL && m->keyring_path && access(m->keyring_path, F_OK) == 0)
                return log_error_errno(r, "The keyring %s is damaged: every line must be a base64 key of 32 bytes, "
                                       "none twice.", m->keyring_path);
        if (r == -EINVAL)
                return r;       /* mesh_key_load() said why */
        if (r < 0)
                return log_error_errno(r, "Failed to read the mesh keys: %m");
        return 0;
}

/* A change to the keyring: written first (a restart keeps it), then used for gossip at once, then
 * told on the bus so that shimd and shardd read it too. */
static int manager_keyring_commit(Manager *m, MeshKeyring *k) {
        int r;

        if (!m->keyring_path)
                return -EROFS;
        r = mesh_keyring_write(m->keyring_path, k);
        if (r < 0)
                return log_warning_errno(r, "Failed to write the keyring %s: %m", m->keyring_path);
        r = swim_set_keys(m->swim, (const uint8_t (*)[SWIM_KEY_SIZE]) k->keys, k->n);
        if (r < 0)
                return r;
        m->keyring = *k;
        r = manager_bus_emit_keys_changed(m);
        if (r < 0)
                log_debug_errno(r, "Failed to emit KeysChanged: %m");
        return 0;
}

int manager_key_change(Manager *m, ManagerKeyOp op, const char *key_or_id) {
        MeshKeyring k = m->keyring;
        char id[MESH_KEY_ID_LEN + 1] = "";
        int r, i;

        i = mesh_keyring_find(&k, key_or_id);
        if (i >= 0)
                mesh_key_id(k.keys[i], id);
        switch (op) {
        case MANAGER_KEY_INSTALL:
                r = mesh_keyring_install(&k, key_or_id);
                if (r >= 0)
                        mesh_key_id(k.keys[k.n - 1], id);
                break;
        case MANAGER_KEY_USE:
                r = i == 0 ? 1 : mesh_keyring_use(&k, key_or_id);
                break;
        case MANAGER_KEY_REMOVE:
                r = mesh_keyring_remove(&k, key_or_id);
                break;
        default:
                r = -EINVAL;
        }
        if (r == 0)
                r = manager_keyring_commit(m, &k);
        mesh_keyring_wipe(&k);
        if (r == 0)
                log_notice("Mesh key %s %s; %zu key(s) accepted, sending with %s.", id,
                           op == MANAGER_KEY_INSTALL ? "installed" : op == MANAGER_KEY_USE ? "is the primary key now" : "removed",
                           m->keyring.n, (mesh_key_id(m->keyring.keys[0], id), id));
        return r > 0 ? 0 : r;
}

int manager_new(const MyceliaConfig *config, Manager **ret) {
        static const GossipNetHandlers handlers = {
                .datagram = on_datagram,
                .datagrams_done = on_datagrams_done,
                .push_pull_request = on_push_pull_request,
                .push_pull_done = on_push_pull_done,
        };
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_close_ int udp = -EBADF, tcp = -EBADF;
        SwimConfig sc;
        SwimLocal local;
        usec_t now;
        int r;

        if (sodium_init() < 0)
                return log_error_errno(-EIO, "Failed to initialize libsodium.");

        m = calloc(1, sizeof(*m));
        if (!m)
                return log_oom();
        m->config = config;
        r = daemon_loop_new(0, &m->base, &m->loop);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the event loop: %m");
        m->peers = calloc(GOSSIP_DISCOVERY_PEERS_MAX, sizeof(DiscoveryPeer));
        if (!m->peers)
                return log_oom();

        r = daemon_node_id_get(config->node_id, config->state_dir, m->local_id);
        if (r < 0)
                return r;
        r = node_name_get(config, &m->local_name);
        if (r < 0)
                return log_error_errno(r, "Failed to determine the node name: %m");

        r = manager_swim_config(m, &sc);
        if (r < 0)
                return r;
        r = manager_load_keys(m);
        if (r < 0)
                return r;

        r = gossip_state_path(config->state_dir, &m->state_path);
        if (r == -ENOMEM)
                return log_oom();
        if (m->state_path) {
                m->saved = calloc(1, sizeof(GossipState));
                if (!m->saved)
                        return log_oom();
                r = gossip_state_load(m->state_path, m->saved);
                if (r < 0) {
                        if (r != -ENOENT)
                                log_warning_errno(r, "Failed to read %s, starting afresh: %m", m->state_path);
                        free(m->saved);
                        m->saved = NULL;
                }
        }

        r = manager_sockets(m, &udp, &tcp);
        if (r >= 0)
                r = manager_advertise(m, udp);
        if (r < 0)
                return r;

        local = (SwimLocal) {
                .id = m->local_id,
                .name = m->local_name,
                .addr = m->advertise,
                /* Above anything this node may have said before, so its old "dead" or "left"
                 * records lose against the new alive one. */
                .incarnation = m->saved ? (m->saved->incarnation < UINT32_MAX ? m->saved->incarnation + 1 : UINT32_MAX) : 1,
        };
        now = now_usec();
        r = swim_new(&m->swim, &sc, &local, random_bytes, m, now);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the membership protocol: %m");
        r = swim_set_keys(m->swim, (const uint8_t (*)[SWIM_KEY_SIZE]) m->keyring.keys, m->keyring.n);
        if (r < 0)
                return log_error_errno(r, "Failed to set the mesh keys: %m");
        /* As the node was: what routerd, shimd and shardd published before the restart, until
         * they publish again (same values: nothing changes for the peers). */
        for (size_t i = 0; m->saved && i < m->saved->n_meta; i++) {
                const char *meta_key, *meta_value;

                gossip_state_meta(m->saved, i, &meta_key, &meta_value);
                r = swim_set_local_meta(m->swim, now, meta_key, meta_value);
                if (r < 0)
                        log_debug_errno(r, "Not restoring the saved metadata %s: %m", meta_key);
        }
        {
                char proto[16];

                snprintf(proto, sizeof(proto), "%d", SWIM_PROTOCOL_VERSION);
                r = swim_set_local_meta(m->swim, now, "version", PACKAGE_VERSION);
                if (r >= 0)
                        r = swim_set_local_meta(m->swim, now, "proto", proto);
                if (r < 0)
                        return log_error_errno(r, "Failed to set this node's metadata: %m");
        }

        r = gossip_net_new(m->base, TAKE_FD(udp), TAKE_FD(tcp), &handlers, m, &m->net);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the gossip sockets: %m");

        m->swim_timer = evtimer_new(m->base, manager_swim_timer_cb, m);
        m->alone_timer = event_new(m->base, -1, EV_PERSIST, manager_alone_timer_cb, m);
        m->save_timer = evtimer_new(m->base, manager_save_timer_cb, m);
        m->loads_timer = evtimer_new(m->base, manager_loads_timer_cb, m);
        m->rejoin_timer = evtimer_new(m->base, manager_rejoin_timer_cb, m);
        if (!m->swim_timer || !m->alone_timer || !m->save_timer || !m->loads_timer || !m->rejoin_timer)
                return log_oom();

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        sd_bus_slot_unref(m->discovery_peers_slot);
        sd_bus_slot_unref(m->discovery_signal_slot);
        sd_bus_slot_unref(m->discovery_owner_slot);
        sd_bus_slot_unref(m->name_slot);
        sd_bus_slot_unref(m->vtable_slot);
        bus_reconnect_free(m->bus_reconnect);
        gossip_net_free(m->net);
        if (m->swim_timer)
                event_free(m->swim_timer);
        if (m->alone_timer)
                event_free(m->alone_timer);
        if (m->save_timer)
                event_free(m->save_timer);
        if (m->loads_timer)
                event_free(m->loads_timer);
        if (m->rejoin_timer)
                event_free(m->rejoin_timer);
        swim_free(m->swim);
        manager_discovery_reset(m);
        free(m->peers);
        free(m->saved);
        free(m->state_path);
        free(m->state_written);
        free(m->keyring_path);
        mesh_keyring_wipe(&m->keyring);
        free(m->local_name);
        daemon_loop_free(m->loop);
        if (m->base)
                event_base_free(m->base);
        free(m);
        return NULL;
}

static int manager_request_name_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error);

static void manager_request_name(Manager *m) {
        int r;

        m->name_slot = sd_bus_slot_unref(m->name_slot);
        r = sd_bus_request_name_async(m->bus, &m->name_slot, GOSSIP1_BUS_NAME, 0, manager_request_name_cb, m);
        if (r < 0) {
                log_error_errno(r, "Failed to request the bus name %s: %m", GOSSIP1_BUS_NAME);
                manager_exit(m, EXIT_FAILURE);
                return;
        }
        if (m->bus_event)
                bus_event_rearm(m->bus_event);
}

static int manager_request_name_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        int r;

        r = bus_request_name_result(m->bus, reply, GOSSIP1_BUS_NAME);
        if (r < 0)
                manager_exit(m, EXIT_FAILURE);
        if (r <= 0)
                return 0;

        if (m->ready) {
                log_info("Serving %s again.", GOSSIP1_BUS_NAME);
                m->last_status[0] = '\0';
                manager_update_status(m);
                return 0;
        }
        m->ready = true;
        log_info("Serving %s; node %s (%s), gossip at %s, incarnation %" PRIu32 ".", GOSSIP1_BUS_NAME,
                 m->local_name, m->local_id, m->advertise_string, swim_local(m->swim)->incarnation);
        manager_format_status(m, m->last_status, sizeof(m->last_status));
        daemon_notify_ready(m->last_status);
        return 0;
}

/* A connection to the bus (the first, or a new one after dbus-daemon came back): Gossip1, the
 * name, discoveryd's signals and its peers. Listeners re-read Members when the name appears. */
static int manager_bus_connected(BusEvent *b, sd_bus *bus, bool reconnected, void *userdata) {
        Manager *m = userdata;
        int r;

        m->bus_event = b;
        m->bus = bus;
        if (reconnected)
                log_info("Connected to the bus again; registering %s.", GOSSIP1_BUS_NAME);

        r = manager_bus_register(m);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to register %s: %m", GOSSIP1_OBJECT_PATH);
        r = manager_bus_follow_discovery(m);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to follow %s on the bus: %m", DISCOVERY1_BUS_NAME);
        /* Not while rejoining: manager_rejoin_done() asks then. */
        if (!m->rejoining) {
                r = sd_bus_request_name_async(m->bus, &m->name_slot, GOSSIP1_BUS_NAME, 0, manager_request_name_cb, m);
                if (r < 0)
                        return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to request the bus name %s: %m", GOSSIP1_BUS_NAME);
        }
        r = manager_bus_read_discovery_peers(m);
        if (r < 0)
                log_debug_errno(r, "Failed to ask %s for its peers: %m", DISCOVERY1_BUS_NAME);
        return 0;
}

/* Membership goes on without the bus: datagrams, push-pulls, joins of the peers known so far;
 * signals are not sent until it is back. */
static void manager_bus_lost(void *userdata) {
        Manager *m = userdata;

        if (m->ready)
                log_warning("Lost the connection to the bus; gossiping on and reconnecting.");
        m->discovery_peers_slot = sd_bus_slot_unref(m->discovery_peers_slot);
        m->discovery_signal_slot = sd_bus_slot_unref(m->discovery_signal_slot);
        m->discovery_owner_slot = sd_bus_slot_unref(m->discovery_owner_slot);
        m->name_slot = sd_bus_slot_unref(m->name_slot);
        m->vtable_slot = sd_bus_slot_unref(m->vtable_slot);
        m->bus = NULL;
        m->bus_event = NULL;
}

static const BusReconnectOps manager_bus_ops = {
        .connected = manager_bus_connected,
        .lost = manager_bus_lost,
};

int manager_start(Manager *m) {
        struct timeval tv;
        int r;

        /* The new incarnation is used from now on: write it before anything can crash. */
        manager_save(m);

        /* Rejoin fast: the members alive when this node last wrote its state. Gossip1 is served
         * once one of them has answered (or all failed, or GOSSIP_REJOIN_WAIT_USEC passed): its
         * listeners read Members when the name appears and take it for the mesh, so a gossipd
         * that restarts under a running routerd or shardd must not show them a mesh of one. */
        if (m->saved && m->saved->n_members > 0) {
                log_info("Rejoining %zu member%s saved in %s.", m->saved->n_members,
                         m->saved->n_members == 1 ? "" : "s", m->state_path);
                for (size_t i = 0; i < m->saved->n_members; i++)
                        if (!streq(m->saved->members[i].id, m->local_id)) {
                                manager_join_addr(m, &m->saved->members[i].addr);
                                m->rejoin_waiting++;
                        }
        }
        if (m->rejoin_waiting > 0) {
                m->rejoining = true;
                tv = usec_to_timeval(GOSSIP_REJOIN_WAIT_USEC);
                if (evtimer_add(m->rejoin_timer, &tv) < 0)
                        return log_oom();
        }

        r = daemon_bus_connect(m->base, m->config->bus_address, &manager_bus_ops, m, &m->bus_reconnect);
        if (r < 0)
                return r;
        tv = usec_to_timeval(GOSSIP_ALONE_RETRY_USEC);
        if (evtimer_add(m->alone_timer, &tv) < 0)
                return log_oom();
        manager_after_swim(m);
        return 0;
}

/* After a clean end (SIGTERM, SIGINT or Leave()): peers learn at once that this node left,
 * and the state file has the last word. */
static void manager_stop(Manager *m) {
        if (!m->left)
                manager_leave(m);
        if (m->state_dirty)
                manager_save(m);
}

int manager_run(Manager *m) {
        /* Until SIGTERM/SIGINT (daemon_loop_new() breaks the loop and says STOPPING=1), Leave()
         * or manager_exit(). */
        if (event_base_dispatch(m->base) < 0)
                return log_error_errno(EIO, "The event loop failed.");
        if (m->exit_code == 0)
                manager_stop(m);
        return m->exit_code;
}
