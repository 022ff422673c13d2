/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shardd's Gossip1 client: publishes this node's transfer address (metadata "shard") and keeps
 * Manager.members in step with the members that publish one. */
#pragma once

typedef struct Manager Manager;

int shardd_gossip_start(Manager *m);
void shardd_gossip_done(Manager *m);
