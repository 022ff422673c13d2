/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Blobs in shardd (docs/blobs.md): content-addressed files under STATE_DIR/blobs, each kept by
 * the top R shardd members by rendezvous on its digest; ShardStore1's PutBlob, HasBlob and
 * GetBlob, the transfer listener's /blob route, and the blob pass of every sync round. */
#pragma once

#include <event2/http.h>
#include <systemd/sd-bus.h>

#include "shard-blob.h"

typedef struct Manager Manager;
typedef struct ShardBlobs ShardBlobs;

typedef struct ShardBlobStats {
        uint64_t stored;        /* blobs stored here, by a client's put or a peer's */
        uint64_t pushed;        /* blobs the sync pass sent a holder that lacked them */
        uint64_t dropped;       /* blobs dropped here after every holder had them */
} ShardBlobStats;

/* Makes STATE_DIR/blobs and removes the temporary files a crash left there. */
int manager_blobs_init(Manager *m);
/* Cancels every transfer and answers nothing more (shutdown). */
void manager_blobs_done(Manager *m);
void manager_blobs_stats(Manager *m, ShardBlobStats *ret);

/* The bus methods; each answers msg now or later, and returns 1, or a negative errno with error
 * set (the bus then answers with it). fd: the caller's, read from offset 0, left open. */
int manager_blob_put(Manager *m, sd_bus_message *msg, const char *digest, int fd, sd_bus_error *error);
int manager_blob_has(Manager *m, sd_bus_message *msg, const char *digest, sd_bus_error *error);
int manager_blob_get(Manager *m, sd_bus_message *msg, const char *digest, sd_bus_error *error);

/* The peer route /blob?digest=: HEAD (200 stored here, 404), GET (the bytes), PUT or POST
 * (stored after its digest was checked: 400 on a mismatch, 413 over [shard] blob_max_size). */
void manager_peer_blob(Manager *m, struct evhttp_request *req, const char *digest);

/* The blob pass of a sync round (called by shardd-sync.c): each blob stored here goes to every
 * current holder that lacks it, and one this node no longer holds is dropped once every holder
 * has it. One transfer at a time; a round already running is not started again. */
void manager_blobs_sync(Manager *m);
