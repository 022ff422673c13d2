/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Every D-Bus name, object path, interface and error name of Mycelia Mesh, defined once; the
 * daemons, myceliactl and the tests' XML (dbus/org.mycelia.*.xml) agree on these. */
#pragma once

#define DISCOVERY1_BUS_NAME "org.mycelia.Discovery1"
#define DISCOVERY1_OBJECT_PATH "/org/mycelia/Discovery1"
#define DISCOVERY1_INTERFACE "org.mycelia.Discovery1"

#define GOSSIP1_BUS_NAME "org.mycelia.Gossip1"
#define GOSSIP1_OBJECT_PATH "/org/mycelia/Gossip1"
#define GOSSIP1_INTERFACE "org.mycelia.Gossip1"

#define ROUTER1_BUS_NAME "org.mycelia.Router1"
#define ROUTER1_OBJECT_PATH "/org/mycelia/Router1"
#define ROUTER1_INTERFACE "org.mycelia.Router1"
/* Route() found no live node serving the model. */
#define ROUTER1_ERROR_NO_ROUTE "org.mycelia.Router1.NoRoute"

#define SHARDSTORE1_BUS_NAME "org.mycelia.ShardStore1"
#define SHARDSTORE1_OBJECT_PATH "/org/mycelia/ShardStore1"
#define SHARDSTORE1_INTERFACE "org.mycelia.ShardStore1"
/* What a client asked is wrong (its message says what); the shim answers 400. */
#define SHARDSTORE1_ERROR_INVALID "org.mycelia.ShardStore1.Invalid"
/* Too large (a document, a batch); the shim answers 413. */
#define SHARDSTORE1_ERROR_TOO_LARGE "org.mycelia.ShardStore1.TooLarge"
/* No such collection or document; the shim answers 404. */
#define SHARDSTORE1_ERROR_NOT_FOUND "org.mycelia.ShardStore1.NotFound"
/* Fewer holders than a write needs are reachable; the shim answers 503. */
#define SHARDSTORE1_ERROR_UNAVAILABLE "org.mycelia.ShardStore1.Unavailable"
/* The collection exists already; the shim answers 409. */
#define SHARDSTORE1_ERROR_EXISTS "org.mycelia.ShardStore1.Exists"

#define SHIM1_BUS_NAME "org.mycelia.Shim1"
#define SHIM1_OBJECT_PATH "/org/mycelia/Shim1"
#define SHIM1_INTERFACE "org.mycelia.Shim1"

/* On each daemon's object beside its own interface: Pid, ResidentMemoryBytes, OpenFds
 * (common/bus-process.c; dbus/org.mycelia.Process1.xml). */
#define PROCESS1_INTERFACE "org.mycelia.Process1"
