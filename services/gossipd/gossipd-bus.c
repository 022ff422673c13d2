/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.mycelia.Gossip1 on the bus (vtable, member signals, marshalling) and what gossipd reads
 * of org.mycelia.Discovery1. dbus/org.mycelia.Gossip1.xml documents what is served here. */
#include "bus-process.h"
#include "daemon.h"
#include "gossipd-manager.h"
#include "log.h"

#define MEMBER_SIGNATURE "(ssassua{ss})"
/* id, in_flight, capacity, age_usec */
#define LOAD_SIGNATURE "(suut)"

/* Length of the valid UTF-8 character at s (as sd-bus judges it: no overlong forms, surrogates or
 * noncharacters), 0 when there is none. */
static size_t utf8_char_len(const unsigned char *s) {
        uint32_t c;
        size_t n;

        if (s[0] < 0x80)
                return 1;
        if ((s[0] & 0xe0) == 0xc0) {
                n = 2;
                c = s[0] & 0x1f;
        } else if ((s[0] & 0xf0) == 0xe0) {
                n = 3;
                c = s[0] & 0x0f;
        } else if ((s[0] & 0xf8) == 0xf0) {
                n = 4;
                c = s[0] & 0x07;
        } else
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                c = c << 6 | (s[i] & 0x3f);
        }
        if ((n == 2 && c < 0x80) || (n == 3 && c < 0x800) || (n == 4 && c < 0x10000) || c >= 0x110000 ||
            (c & 0xfffff800) == 0xd800 || (c >= 0xfdd0 && c <= 0xfdef) || (c & 0xfffe) == 0xfffe)
                return 0;
        return n;
}

/* Names and metadata come from peers and swim checks no encoding; D-Bus strings must be UTF-8,
 * or the whole Members reply fails. Returns s, or a copy in *buf with each bad byte as '?'. */
static const char *utf8_sanitized(const char *s, char **buf) {
        const unsigned char *p;
        char *out, *o;

        for (p = (const unsigned char *) s; *p;) {
                size_t n = utf8_char_len(p);

                if (n == 0)
                        break;
                p += n;
        }
        if (*p == '\0')
                return s;
        out = o = malloc(strlen(s) + 1);
        if (!out)
                return "";
        for (p = (const unsigned char *) s; *p;) {
                size_t n = utf8_char_len(p);

                if (n == 0) {
                        *o++ = '?';
                        p++;
                        continue;
                }
                memcpy(o, p, n);
                o += n;
                p += n;
        }
        *o = '\0';
        free(*buf);
        *buf = out;
        return out;
}

static int append_member(sd_bus_message *msg, const SwimMember *mb) {
        _cleanup_free_ char *name_buf = NULL;
        char addr[SWIM_ADDR_STRING_MAX];
        int r;

        r = sd_bus_message_open_container(msg, 'r', "ssassua{ss}");
        if (r < 0)
                return r;
        r = sd_bus_message_append(msg, "ss", mb->id, utf8_sanitized(mb->name, &name_buf));
        if (r < 0)
                return r;
        if (swim_addr_format(&mb->addr, addr, sizeof(addr)) < 0)
                r = sd_bus_message_append(msg, "as", 0);
        else
                r = sd_bus_message_append(msg, "as", 1, addr);
        if (r < 0)
                return r;
        r = sd_bus_message_append(msg, "su", strempty(swim_state_to_string(mb->state)), mb->incarnation);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(msg, 'a', "{ss}");
        if (r < 0)
                return r;
        for (size_t i = 0; i < mb->n_meta; i++) {
                _cleanup_free_ char *key_buf = NULL, *value_buf = NULL;

                r = sd_bus_message_append(msg, "{ss}", utf8_sanitized(mb->meta_keys[i], &key_buf),
                                          utf8_sanitized(mb->meta_values[i], &value_buf));
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(msg);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(msg);
}

static int property_get_members(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', MEMBER_SIGNATURE);
        if (r < 0)
                return r;
        for (size_t i = 0; i < swim_n_members(m->swim); i++) {
                const SwimMember *mb = swim_member(m->swim, i);

                if (!mb)
                        continue;
                r = append_member(reply, mb);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

/* The load of each member (this node excluded) that this node heard from the member itself, with
 * its age now. since: only those whose load changed after swim_load_serial() was since. */
static int append_loads(sd_bus_message *msg, Manager *m, uint64_t since) {
        usec_t now = now_usec();
        int r;

        r = sd_bus_message_open_container(msg, 'a', LOAD_SIGNATURE);
        if (r < 0)
                return r;
        for (size_t i = 0; i < swim_n_members(m->swim); i++) {
                const SwimMember *mb = swim_member(m->swim, i);

                if (!mb || mb->local || mb->load_at == 0 || mb->load_serial <= since)
                        continue;
                r = sd_bus_message_append(msg, LOAD_SIGNATURE, mb->id, mb->load_in_flight, mb->load_capacity,
                                          (uint64_t) (now > mb->load_at ? now - mb->load_at : 0));
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(msg);
}

static int property_get_loads(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return append_loads(reply, userdata, 0);
}

static int property_get_local_node(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return append_member(reply, swim_local(m->swim));
}

static int property_get_counters(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const SwimCounters *s = swim_counters(m->swim);
        const GossipNetCounters *n = gossip_net_counters(m->net);
        const struct {
                const char *name;
                uint64_t value;
        } counters[] = {
                /* swim's, in the order dbus/org.mycelia.Gossip1.xml lists them */
                { "datagrams_sent", s->datagrams_sent },
                { "datagrams_received", s->datagrams_received },
                { "bytes_sent", s->bytes_sent },
                { "bytes_received", s->bytes_received },
                { "push_pulls_sent", s->push_pulls_sent },
                { "push_pulls_received", s->push_pulls_received },
                { "dropped_malformed", s->dropped_malformed },
                /* Datagrams the socket truncated never reach swim: the same reason. */
                { "dropped_oversized", s->dropped_oversized + n->datagrams_truncated },
                { "dropped_key", s->dropped_key },
                { "dropped_version", s->dropped_version },
                { "dropped_replay", s->dropped_replay },
                { "probes", s->probes },
                { "indirect_probes", s->indirect_probes },
                { "suspicions", s->suspicions },
                { "refutations", s->refutations },
                { "events_dropped", s->n_events_dropped },
                { "stale_asks", s->stale_asks },
                { "id_conflicts", s->id_conflicts },
                /* the daemon's */
                { "send_errors", n->send_errors },
                { "send_dropped", n->send_dropped },
                { "receive_errors", n->receive_errors },
                { "push_pull_failed", n->push_pull_failed },
                { "push_pull_refused", n->push_pull_refused },
                { "joins", m->counters.joins },
                { "joins_dropped", m->counters.joins_dropped },
                { "signals_failed", m->counters.signals_failed },
        };
        int r;

        r = sd_bus_message_open_container(reply, 'a', "{st}");
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(counters); i++) {
                r = sd_bus_message_append(reply, "{st}", counters[i].name, counters[i].value);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int property_get_id_conflict(sd_bus *bus, const char *path, const char *interface,
                                    const char *property, sd_bus_message *reply, void *userdata,
                                    sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "s", m->id_conflict);
}

static int method_join(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_free_ const char **addrs = NULL;
        Manager *m = userdata;
        size_t n = 0, total;
        unsigned accepted;
        int r;

        if (m->left)
                return sd_bus_error_set(error, SD_BUS_ERROR_FAILED, "This node has left the mesh and is exiting.");

        /* The strings stay in msg; only the pointer array is ours, bounded. */
        addrs = calloc(GOSSIP_JOIN_ARGS_MAX, sizeof(char *));
        if (!addrs)
                return -ENOMEM;
        r = bus_message_read_strv_bounded(msg, addrs, GOSSIP_JOIN_ARGS_MAX, &n, &total);
        if (r < 0)
                return r;
        if (total > GOSSIP_JOIN_ARGS_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "At most %u addresses per call.",
                                         GOSSIP_JOIN_ARGS_MAX);

        accepted = manager_join_strings(m, (char *const *) addrs, n, true);
        if (accepted == 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         n == 0 ? "No address given: expected numeric \"ADDR:PORT\" gossip addresses."
                                                : "No address parses as a numeric \"ADDR:PORT\" with a port "
                                                  "(such as 10.0.0.2:11436 or [fd00::2]:11436).");
        return sd_bus_reply_method_return(msg, "u", accepted);
}

static int method_leave(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        manager_leave(m);
        r = sd_bus_reply_method_return(msg, NULL);
        /* The reply is flushed when the bus connection is freed after the loop. */
        daemon_notify_stopping();
        (void) event_base_loopbreak(m->base);
        return r;
}

static int method_set_local_metadata(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        const char *key, *value;
        Manager *m = userdata;
        int r;

        r = sd_bus_message_read(msg, "ss", &key, &value);
        if (r < 0)
                return r;
        r = manager_set_local_meta(m, key, value);
        if (r == -EINVAL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Invalid metadata key '%.64s' or value: a key is 1 to %d characters of "
                                         "[a-z0-9_.-], a value has no NUL or newline.", key, SWIM_META_KEY_MAX);
        if (r == -E2BIG)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Metadata over the limits: at most %d keys and %d bytes of keys and values in all.",
                                         SWIM_META_KEYS_MAX, SWIM_META_SIZE_MAX);
        if (r == -ESHUTDOWN)
                return sd_bus_error_set(error, SD_BUS_ERROR_FAILED, "This node has left the mesh and is exiting.");
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_set_local_load(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        uint32_t in_flight, capacity;
        Manager *m = userdata;
        int r;

        r = sd_bus_message_read(msg, "uu", &in_flight, &capacity);
        if (r < 0)
                return r;
        r = manager_set_local_load(m, in_flight, capacity);
        if (r == -ESHUTDOWN)
                return sd_bus_error_set(error, SD_BUS_ERROR_FAILED, "This node has left the mesh and is exiting.");
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_key(sd_bus_message *msg, Manager *m, ManagerKeyOp op, sd_bus_error *error) {
        const char *key;
        int r;

        r = sd_bus_message_read(msg, "s", &key);
        if (r < 0)
                return r;
        r = manager_key_change(m, op, key);
        if (r == -EINVAL)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                        op == MANAGER_KEY_INSTALL ? "Not a key: expected base64 of 32 bytes (myceliactl keygen makes one)."
                                                                  : "Not a key: expected base64 of 32 bytes or a key id of 16 hex digits.");
        if (r == -ENOENT)
                return sd_bus_error_set(error, "org.mycelia.Gossip1.NoSuchKey", "No such key in the keyring.");
        if (r == -EEXIST)
                return sd_bus_error_set(error, "org.mycelia.Gossip1.KeyExists", "That key is installed already.");
        if (r == -E2BIG)
                return sd_bus_error_setf(error, "org.mycelia.Gossip1.KeyringFull",
                                         "The keyring holds %d keys at most: remove one first.", MESH_KEYRING_MAX);
        if (r == -EBUSY)
                return sd_bus_error_set(error, "org.mycelia.Gossip1.KeyInUse",
                                        "That is the primary key: make another one primary first (UseKey).");
        if (r == -EROFS)
                return sd_bus_error_set(error, SD_BUS_ERROR_NOT_SUPPORTED, "No state directory to keep the keyring in.");
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Failed to change the keyring: %m");
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_install_key(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return method_key(msg, userdata, MANAGER_KEY_INSTALL, error);
}

static int method_use_key(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return method_key(msg, userdata, MANAGER_KEY_USE, error);
}

static int method_remove_key(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return method_key(msg, userdata, MANAGER_KEY_REMOVE, error);
}

/* The keys by id (never the keys themselves), the primary one first. */
static int property_get_keys(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(sb)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->keyring.n; i++) {
                char id[MESH_KEY_ID_LEN + 1];

                mesh_key_id(m->keyring.keys[i], id);
                r = sd_bus_message_append(reply, "(sb)", id, i == 0);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

int manager_bus_emit_keys_changed(Manager *m) {
        if (!m->bus)
                return 0;
        return sd_bus_emit_signal(m->bus, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE, "KeysChanged", NULL);
}

/* Join, Leave, SetLocalMetadata, SetLocalLoad and the key methods change state. Who may call them is the bus policy's decision
 * (dbus/org.mycelia.Gossip1.conf: root and the mycelia group), so they are marked UNPRIVILEGED:
 * otherwise sd-bus itself refuses every caller of another uid without CAP_SYS_ADMIN. */
static const sd_bus_vtable gossip_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("Join",
                                SD_BUS_ARGS("as", addresses),
                                SD_BUS_RESULT("u", accepted),
                                method_join,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Leave",
                                SD_BUS_NO_ARGS,
                                SD_BUS_NO_RESULT,
                                method_leave,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetLocalMetadata",
                                SD_BUS_ARGS("s", key, "s", value),
                                SD_BUS_NO_RESULT,
                                method_set_local_metadata,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetLocalLoad",
                                SD_BUS_ARGS("u", in_flight, "u", capacity),
                                SD_BUS_NO_RESULT,
                                method_set_local_load,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("InstallKey",
                                SD_BUS_ARGS("s", key),
                                SD_BUS_NO_RESULT,
                                method_install_key,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("UseKey",
                                SD_BUS_ARGS("s", key),
                                SD_BUS_NO_RESULT,
                                method_use_key,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RemoveKey",
                                SD_BUS_ARGS("s", key),
                                SD_BUS_NO_RESULT,
                                method_remove_key,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_PROPERTY("Keys", "a(sb)", property_get_keys, 0, 0),
        SD_BUS_PROPERTY("Members", "a" MEMBER_SIGNATURE, property_get_members, 0, 0),
        SD_BUS_PROPERTY("LocalNode", MEMBER_SIGNATURE, property_get_local_node, 0, 0),
        SD_BUS_PROPERTY("Loads", "a" LOAD_SIGNATURE, property_get_loads, 0, 0),
        SD_BUS_PROPERTY("Counters", "a{st}", property_get_counters, 0, 0),
        SD_BUS_PROPERTY("IdConflict", "s", property_get_id_conflict, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_SIGNAL_WITH_ARGS("MemberJoined", SD_BUS_ARGS(MEMBER_SIGNATURE, member), 0),
        SD_BUS_SIGNAL_WITH_ARGS("MemberUpdated", SD_BUS_ARGS(MEMBER_SIGNATURE, member), 0),
        SD_BUS_SIGNAL_WITH_ARGS("MemberLeft", SD_BUS_ARGS(MEMBER_SIGNATURE, member), 0),
        SD_BUS_SIGNAL_WITH_ARGS("MemberFailed", SD_BUS_ARGS(MEMBER_SIGNATURE, member), 0),
        SD_BUS_SIGNAL_WITH_ARGS("LoadsChanged", SD_BUS_ARGS("a" LOAD_SIGNATURE, loads), 0),
        SD_BUS_SIGNAL("KeysChanged", "", 0),
        SD_BUS_VTABLE_END
};

int manager_bus_register(Manager *m) {
        int r;

        r = sd_bus_add_object_vtable(m->bus, &m->vtable_slot, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE, gossip_vtable, m);
        if (r < 0)
                return r;
        return bus_add_process_interface(m->bus, GOSSIP1_OBJECT_PATH);
}

int manager_bus_emit_id_conflict(Manager *m) {
        if (!m->bus)
                return 0;
        return sd_bus_emit_properties_changed(m->bus, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE, "IdConflict", NULL);
}

int manager_bus_emit_loads(Manager *m, uint64_t since) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        int r;

        if (!m->bus || !m->vtable_slot)
                return 0;
        r = sd_bus_message_new_signal(m->bus, &msg, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE, "LoadsChanged");
        if (r < 0)
                return r;
        r = append_loads(msg, m, since);
        if (r < 0)
                return r;
        r = sd_bus_send(m->bus, msg, NULL);
        /* From a timer too: re-arm for POLLOUT. */
        bus_event_rearm(m->bus_event);
        return r;
}

static const char *const event_signal_name[_SWIM_EVENT_MAX] = {
        [SWIM_EVENT_JOINED] = "MemberJoined",
        [SWIM_EVENT_UPDATED] = "MemberUpdated",
        [SWIM_EVENT_LEFT] = "MemberLeft",
        [SWIM_EVENT_FAILED] = "MemberFailed",
};

int manager_bus_emit_member(Manager *m, const SwimEvent *event) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        const SwimMember *mb;
        int r;

        if (!m->bus || !m->vtable_slot)
                return 0;
        if ((unsigned) event->type >= _SWIM_EVENT_MAX)
                return -EINVAL;

        r = sd_bus_message_new_signal(m->bus, &msg, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE,
                                      event_signal_name[event->type]);
        if (r < 0)
                return r;
        mb = swim_member_find(m->swim, event->id);
        if (mb)
                r = append_member(msg, mb);
        else if (IN_SET(event->type, SWIM_EVENT_LEFT, SWIM_EVENT_FAILED)) {
                /* Already forgotten: the id and the state are what a listener needs. */
                SwimMember gone = {
                        .state = event->type == SWIM_EVENT_LEFT ? SWIM_STATE_LEFT : SWIM_STATE_DEAD,
                };

                snprintf(gone.id, sizeof(gone.id), "%s", event->id);
                r = sd_bus_message_open_container(msg, 'r', "ssassua{ss}");
                if (r >= 0)
                        r = sd_bus_message_append(msg, "ssassua{ss}", gone.id, "", 0,
                                                  swim_state_to_string(gone.state), 0, 0);
                if (r >= 0)
                        r = sd_bus_message_close_container(msg);
        } else
                return 0;
        if (r < 0)
                return r;
        r = sd_bus_send(m->bus, msg, NULL);
        /* Outside a bus callback the message may sit in the write queue: re-arm for POLLOUT. */
        bus_event_rearm(m->bus_event);
        return r;
}

/* --- org.mycelia.Discovery1 --- */

/* Reads one peer's "ssssas" (inside its struct) and hands it on. */
static int read_peer(Manager *m, sd_bus_message *msg) {
        const char *id, *name, *source, *mesh;
        const char *gossip[GOSSIP_PEER_ADDRS_MAX];
        size_t n;
        int r;

        r = sd_bus_message_read(msg, "ssss", &id, &name, &source, &mesh);
        if (r < 0)
                return r;
        /* Beyond the first few addresses of a peer, the rest are skipped. */
        r = bus_message_read_strv_bounded(msg, gossip, ELEMENTSOF(gossip), &n, NULL);
        if (r < 0)
                return r;
        manager_discovery_peer(m, id, name, (char *const *) gossip, n);
        return 0;
}

static int match_peer_discovered(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = read_peer(m, msg);
        if (r < 0)
                log_debug_errno(r, "Ignoring a malformed PeerDiscovered signal: %m");
        return 0;
}

static int discovery_peers_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e;
        size_t n = 0;
        int r;

        m->discovery_peers_slot = sd_bus_slot_unref(m->discovery_peers_slot);
        e = sd_bus_message_get_error(reply);
        if (e) {
                /* Not running (yet): NameOwnerChanged tells when it comes. */
                log_debug("No peers from %s: %s", DISCOVERY1_BUS_NAME, e->message ?: e->name);
                return 0;
        }
        r = sd_bus_message_enter_container(reply, 'v', "a(ssssas)");
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'a', "(ssssas)");
        if (r < 0) {
                log_debug_errno(r, "Unexpected Peers property from %s: %m", DISCOVERY1_BUS_NAME);
                return 0;
        }
        manager_discovery_reset(m);
        for (;;) {
                r = sd_bus_message_enter_container(reply, 'r', "ssssas");
                if (r <= 0)
                        break;
                r = read_peer(m, reply);
                if (r < 0)
                        break;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        break;
                if (++n >= GOSSIP_DISCOVERY_PEERS_MAX)
                        break;
        }
        if (r < 0)
                log_debug_errno(r, "Malformed Peers property from %s: %m", DISCOVERY1_BUS_NAME);
        log_debug("Read %zu peer%s from %s.", n, n == 1 ? "" : "s", DISCOVERY1_BUS_NAME);
        return 0;
}

int manager_bus_read_discovery_peers(Manager *m) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        int r;

        if (!m->bus)
                return 0;
        r = sd_bus_message_new_method_call(m->bus, &msg, DISCOVERY1_BUS_NAME, DISCOVERY1_OBJECT_PATH,
                                           "org.freedesktop.DBus.Properties", "Get");
        if (r < 0)
                return r;
        /* Reading must not start discoveryd through bus activation. */
        r = sd_bus_message_set_auto_start(msg, false);
        if (r < 0)
                return r;
        r = sd_bus_message_append(msg, "ss", DISCOVERY1_INTERFACE, "Peers");
        if (r < 0)
                return r;
        /* One read at a time: a newer one replaces (cancels) the older. */
        m->discovery_peers_slot = sd_bus_slot_unref(m->discovery_peers_slot);
        r = sd_bus_call_async(m->bus, &m->discovery_peers_slot, msg, discovery_peers_cb, m, 0);
        bus_event_rearm(m->bus_event);
        return r;
}

static int match_discovery_owner_changed(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        const char *name, *old_owner, *new_owner;
        Manager *m = userdata;
        int r;

        r = sd_bus_message_read(msg, "sss", &name, &old_owner, &new_owner);
        if (r < 0 || !streq(name, DISCOVERY1_BUS_NAME) || isempty(new_owner))
                return 0;
        log_debug("%s appeared on the bus; reading its peers.", DISCOVERY1_BUS_NAME);
        r = manager_bus_read_discovery_peers(m);
        if (r < 0)
                log_debug_errno(r, "Failed to ask %s for its peers: %m", DISCOVERY1_BUS_NAME);
        return 0;
}

int manager_bus_follow_discovery(Manager *m) {
        int r;

        r = bus_match_name_owner(m->bus, &m->discovery_owner_slot, DISCOVERY1_BUS_NAME,
                                 match_discovery_owner_changed, m);
        if (r < 0)
                return r;
        /* No sender= here: the interface name is discoveryd's alone, and the bus delivers
         * broadcast signals by these fields. */
        return sd_bus_add_match_async(m->bus, &m->discovery_signal_slot,
                                      "type='signal',path='" DISCOVERY1_OBJECT_PATH "',"
                                      "interface='" DISCOVERY1_INTERFACE "',member='PeerDiscovered'",
                                      match_peer_discovered, NULL, m);
}
