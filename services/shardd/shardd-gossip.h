/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shardd's Gossip1 client: publishes this node's transfer address (metadata "shard") and keeps
 * Manager.members in step with the members that publish one. */
#pragma once

typedef struct Manager Manager;

/* Subscribes to Gossip1 on m->bus, publishes "shard" and reads Members; called again after each
 * reconnect (this node's own entry is set once and kept). */
int shardd_gossip_start(Manager *m);
/* The bus is gone: drops the slots made on it; the members are kept until it is back. */
void shardd_gossip_bus_lost(Manager *m);
void shardd_gossip_done(Manager *m);
