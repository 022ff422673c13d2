/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reading a Gossip1 member (ssassua{ss}) from a bus message into borrowed strings, bounded. */
#include "gossip-member.h"

int gossip_member_read(sd_bus_message *msg, GossipMember *g) {
        int r;

        *g = (GossipMember) {};
        r = sd_bus_message_enter_container(msg, 'r', "ssassua{ss}");
        if (r <= 0)
                return r;
        r = sd_bus_message_read(msg, "ss", &g->id, &g->name);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(msg, 'a', "s");
        if (r < 0)
                return r;
        for (;;) {
                const char *a;

                r = sd_bus_message_read(msg, "s", &a);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (g->n_addresses < GOSSIP_MEMBER_ADDRESSES_MAX)
                        g->addresses[g->n_addresses++] = a;
        }
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;
        r = sd_bus_message_read(msg, "su", &g->state, &g->incarnation);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(msg, 'a', "{ss}");
        if (r < 0)
                return r;
        for (;;) {
                const char *k, *v;

                r = sd_bus_message_read(msg, "{ss}", &k, &v);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (g->n_meta < GOSSIP_MEMBER_META_MAX) {
                        g->meta_keys[g->n_meta] = k;
                        g->meta_values[g->n_meta++] = v;
                }
        }
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;
        return 1;
}

const char *gossip_member_meta(const GossipMember *m, const char *key) {
        for (size_t i = 0; i < m->n_meta; i++)
                if (m->meta_keys[i] && streq(m->meta_keys[i], key))
                        return m->meta_values[i];
        return NULL;
}
