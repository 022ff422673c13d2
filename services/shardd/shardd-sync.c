/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Sync (docs/shardd.md, "Rebalancing", "Catch-up", "Anti-entropy"): every node pushes each shard
 * it has to that shard's other current holders, from where each receiver says it got to in this
 * node's log (its cursor for this node, stored with what it applied). That one loop is
 *   - rebalancing: a new holder starts from nothing and gets the whole shard; a node that is no
 *     longer a holder hands its copy over and drops it once every holder has all of it;
 *   - catch-up: a holder that was away gets only what it missed (the log after its cursor), or
 *     the whole shard when this node's log no longer reaches back that far;
 *   - anti-entropy: after catching a holder up, the two shards' digests are compared; when they
 *     differ (a value lost to damage, a write that reached only one of them) the whole shard is
 *     sent once, and the receiver's own push the other way brings back what only it had.
 * It runs a moment after every membership change and every [shard] sync_interval, one transfer at
 * a time, throttled to [shard] transfer_rate. Changes are idempotent (last writer wins), so a
 * transfer cut anywhere is simply resumed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-cleanup.h"
#include "json-document.h"
#include "log.h"
#include "shard-wire.h"
#include "shardd-blobs.h"
#include "shardd-client.h"
#include "shardd-manager.h"
#include "shardd-reply.h"

#define SYNC_CALL_TIMEOUT_USEC (30 * USEC_PER_SEC)
/* Changes per transfer request, and their bytes at most (a request is well under the peer's
 * body limit). */
#define SYNC_BATCH_CHANGES 1000
#define SYNC_BATCH_BYTES (8U << 20)

typedef struct SyncTask {
        char collection[SHARD_COLLECTION_NAME_MAX + 1];
        unsigned shard;
        char node_id[NODE_ID_LEN + 1];
        bool drop_after;        /* this node is no longer a holder: drop once every task of the shard is done */
        bool done;              /* the receiver has all of this node's shard */
} SyncTask;

/* The changes of one transfer, owning their bytes. */
typedef struct ChangeBuf {
        ShardChange *v;
        void **owned;
        size_t n, bytes;
} ChangeBuf;

typedef struct ShardSync {
        Manager *m;
        struct event *timer;            /* every sync_interval */
        struct event *step;             /* the next step of the current task (throttled) */
        SyncTask *tasks;
        size_t n_tasks, cur;
        bool running, again;
        ShardCall *call;
        /* The current task. */
        ShardCursor cursor;             /* where the receiver is in this node's log */
        ShardCursor sending;            /* where it will be once the batch in flight is applied */
        char digest[SHARD_DIGEST_STRING_MAX];   /* the receiver's, from its last cursor answer */
        bool full_copy, full_copy_done, checking;
        char *after_id;                 /* full copy: the last id sent */
        ShardCursor copy_head;          /* full copy: this node's log head when it began */
        size_t last_batch_bytes;
        uint64_t round_bytes_start;     /* bytes_moved when the round began */
        usec_t round_started;           /* when the round in progress was planned (its transfers wait since) */
        uint64_t bytes_moved, rounds, transfers_done, transfers_failed, shards_dropped;
} ShardSync;

static void changes_done(ChangeBuf *b) {
        for (size_t i = 0; i < b->n; i++)
                free(b->owned[i]);
        free(b->owned);
        free(b->v);
        *b = (ChangeBuf) {};
}

/* One allocation per change: id, text, metadata and floats copied out of the store's map. */
static int changes_add(ChangeBuf *b, ShardOp op, const char *id, size_t id_size, const ShardVersion *version,
                       const ShardDoc *d) {
        size_t floats = d && op == SHARD_OP_PUT ? (size_t) d->dimension * sizeof(float) : 0;
        size_t text = d && op == SHARD_OP_PUT ? d->text_size : 0, meta = d && op == SHARD_OP_PUT ? d->metadata_size : 0;
        size_t size = floats + id_size + 1 + text + 1 + meta + 1;
        ShardChange *v = reallocarray(b->v, b->n + 1, sizeof(ShardChange));
        void **o;
        char *p;

        if (!v)
                return -ENOMEM;
        b->v = v;
        o = reallocarray(b->owned, b->n + 1, sizeof(void *));
        if (!o)
                return -ENOMEM;
        b->owned = o;
        p = malloc(size);
        if (!p)
                return -ENOMEM;
        b->owned[b->n] = p;
        v[b->n] = (ShardChange) { .op = op, .version = *version };
        if (floats > 0) {
                shard_doc_embedding(d, (float *) p);
                v[b->n].embedding = (const float *) p;
                v[b->n].dimension = d->dimension;
                p += floats;
        }
        memcpy(p, id, id_size);
        p[id_size] = '\0';
        v[b->n].id = p;
        p += id_size + 1;
        if (text > 0) {
                memcpy(p, d->text, text);
                p[text] = '\0';
                v[b->n].text = p;
                v[b->n].text_size = text;
        }
        p += text + 1;
        if (meta > 0) {
                memcpy(p, d->metadata, meta);
                p[meta] = '\0';
                v[b->n].metadata = p;
                v[b->n].metadata_size = meta;
        }
        b->n++;
        b->bytes += size;
        return 0;
}

static int changes_add_doc(ChangeBuf *b, const ShardDoc *d) {
        return changes_add(b, d->deleted ? SHARD_OP_DELETE : SHARD_OP_PUT, d->id, strnlen(d->id, SHARD_ID_MAX), &d->version,
                           d);
}

typedef struct LogCollect {
        ChangeBuf *buf;
        uint64_t last_seq;
} LogCollect;

static int collect_log_entry(const ShardLogEntry *e, const ShardDoc *current, void *userdata) {
        LogCollect *lc = userdata;
        int r;

        /* What the document is now: a later change of it may be further on in the log too,
         * which sends the same again, harmlessly. */
        r = current ? changes_add_doc(lc->buf, current)
                    : changes_add(lc->buf, SHARD_OP_DELETE, e->id, strlen(e->id), &e->version, NULL);
        if (r < 0)
                return r;
        lc->last_seq = e->seq;
        return lc->buf->bytes >= SYNC_BATCH_BYTES ? 1 : 0;
}

typedef struct DocCollect {
        ChangeBuf *buf;
        char *last_id;
} DocCollect;

static int collect_doc(const ShardDoc *d, void *userdata) {
        DocCollect *dc = userdata;
        int r;

        r = changes_add_doc(dc->buf, d);
        if (r < 0)
                return r;
        free(dc->last_id);
        dc->last_id = strndup(d->id, SHARD_ID_MAX);
        if (!dc->last_id)
                return -ENOMEM;
        return dc->buf->n >= SYNC_BATCH_CHANGES || dc->buf->bytes >= SYNC_BATCH_BYTES ? 1 : 0;
}

static void sync_next_task(ShardSync *s);
static void sync_task_step(ShardSync *s);

static SyncTask *sync_task(ShardSync *s) {
        return s->cur < s->n_tasks ? &s->tasks[s->cur] : NULL;
}

/* The current task is over (done or failed): on to the next after a breath. */
static void ready_cb(ShardCall *call, int status, struct evbuffer *body, void *userdata) {
        if (status != 200)
                log_debug("A peer did not take a ready notice (%d); the next round sends it again.", status);
}

/* Tells the receiver its copy of the shard is complete (it may answer for it now). */
static void sync_send_ready(ShardSync *s, const SyncTask *t) {
        const ShardPeer *peer = shard_members_find(&s->m->members, t->node_id);
        _cleanup_free_ char *target = NULL;

        if (!peer || asprintf(&target, "/shard/ready?collection=%s&shard=%u", t->collection, t->shard) < 0)
                return;
        (void) shard_call(s->m, t->node_id, peer->url, EVHTTP_REQ_POST, target, NULL, 0, SYNC_CALL_TIMEOUT_USEC, ready_cb,
                          NULL, NULL);
}

static void sync_task_end(ShardSync *s, bool done) {
        SyncTask *t = sync_task(s);

        if (t && done)
                sync_send_ready(s, t);
        if (t) {
                t->done = done;
                if (done)
                        s->transfers_done++;
                else
                        s->transfers_failed++;
                if (!done)
                        log_info("Shard %u of '%s': could not bring node %s up to date this round.", t->shard,
                                 t->collection, t->node_id);
        }
        s->cur++;
        free(s->after_id);
        s->after_id = NULL;
        s->full_copy = s->full_copy_done = s->checking = false;
        sync_next_task(s);
}

static void sync_schedule(ShardSync *s, usec_t delay) {
        struct timeval tv = { .tv_sec = delay / USEC_PER_SEC, .tv_usec = delay % USEC_PER_SEC };

        (void) evtimer_add(s->step, &tv);
}

static void sync_apply_cb(ShardCall *call, int status, struct evbuffer *body, void *userdata) {
        ShardSync *s = userdata;
        uint64_t rate = s->m->config->transfer_rate;

        s->call = NULL;
        if (status == 410) {
                SyncTask *t = sync_task(s);

                /* Deleted in the mesh while this node was away: not to be brought back. */
                if (t)
                        manager_collection_gone(s->m, t->collection);
        }
        if (status != 200) {
                sync_task_end(s, false);
                return;
        }
        s->cursor = s->sending;
        /* Throttled: the next batch waits as long as this one should have taken at the rate. */
        sync_schedule(s, rate > 0 ? (usec_t) (s->last_batch_bytes * USEC_PER_SEC / rate) : 0);
}

static void sync_cursor_cb(ShardCall *call, int status, struct evbuffer *body, void *userdata) {
        ShardSync *s = userdata;
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *log_id, *seq, *digest;

        s->call = NULL;
        if (status != 200 || !body ||
            json_document_parse(evbuffer_pullup(body, -1) ?: (void *) "", evbuffer_get_length(body), &o) < 0 ||
            !json_object_object_get_ex(o, "log_id", &log_id) || !json_object_object_get_ex(o, "seq", &seq) ||
            !json_object_object_get_ex(o, "digest", &digest)) {
                sync_task_end(s, false);
                return;
        }
        s->cursor = (ShardCursor) { .log_id = (uint64_t) json_object_get_uint64(log_id),
                                    .seq = (uint64_t) json_object_get_uint64(seq) };
        snprintf(s->digest, sizeof(s->digest), "%s", strempty(json_object_get_string(digest)));
        sync_task_step(s);
}

static int sync_ask_cursor(ShardSync *s, SyncTask *t, const ShardPeer *peer) {
        _cleanup_free_ char *target = NULL;

        if (asprintf(&target, "/shard/cursor?collection=%s&shard=%u&source=%s", t->collection, t->shard,
                     s->m->node_id) < 0)
                return -ENOMEM;
        return shard_call(s->m, t->node_id, peer->url, EVHTTP_REQ_GET, target, NULL, 0, SYNC_CALL_TIMEOUT_USEC,
                          sync_cursor_cb, s, &s->call);
}

/* Sends the next batch of the current task, or ends it when the receiver has everything. */
static void sync_task_step(ShardSync *s) {
        Manager *m = s->m;
        SyncTask *t = sync_task(s);
        ShardedCollection *c = t ? manager_collection(m, t->collection) : NULL;
        const ShardPeer *peer = t ? shard_members_find(&m->members, t->node_id) : NULL;
        _cleanup_free_ uint8_t *batch = NULL, *body = NULL;
        _cleanup_free_ char *target = NULL;
        _cleanup_(changes_done) ChangeBuf buf = {};
        ShardSourceCursor cursor = { .source = m->node_id, .shard = t ? t->shard : 0 };
        size_t batch_size, body_size;
        ShardInfo info;
        int r;

        if (!t)
                return;
        if (!c || !peer || shard_store_shard_info(m->store, t->collection, t->shard, &info) < 0) {
                sync_task_end(s, false);
                return;
        }
        if (!s->full_copy && !s->checking && !s->full_copy_done &&
            (s->cursor.log_id != info.head.log_id || s->cursor.seq != info.head.seq)) {
                char mine[SHARD_DIGEST_STRING_MAX];

                /* The receiver has what this node has already (it got the same writes from their
                 * coordinators, which carry no cursor): nothing to send but the place it is at in
                 * this node's log, so that the next round starts from there. */
                shard_digest_to_string(&info.digest, mine);
                if (streq(mine, s->digest)) {
                        cursor.cursor = info.head;
                        s->full_copy_done = true;       /* after this, caught up ends the task */
                        goto send;
                }
        }
        if (!s->full_copy) {
                LogCollect lc = { .buf = &buf };

                r = shard_store_log_after(m->store, t->collection, t->shard, &s->cursor, SYNC_BATCH_CHANGES,
                                          collect_log_entry, &lc);
                if (r == -ESTALE) {
                        /* The receiver's place is not in this log (new holder, another log, or
                         * trimmed past it): the whole shard, then this log's head. */
                        s->full_copy = true;
                        s->copy_head = info.head;
                        changes_done(&buf);
                } else if (r < 0) {
                        log_warning_errno(r, "Shard %u of '%s': cannot read its log: %m", t->shard, t->collection);
                        sync_task_end(s, false);
                        return;
                } else if (buf.n == 0) {
                        char mine[SHARD_DIGEST_STRING_MAX];

                        /* Caught up. Same digest: the receiver has all of it. Else, once: the whole
                         * shard (anti-entropy), after asking again (its digest from before our
                         * last batches is stale). */
                        shard_digest_to_string(&info.digest, mine);
                        if (streq(mine, s->digest) || s->full_copy_done) {
                                sync_task_end(s, true);
                                return;
                        }
                        if (!s->checking) {
                                s->checking = true;
                                if (sync_ask_cursor(s, t, peer) < 0)
                                        sync_task_end(s, false);
                                return;
                        }
                        log_info("Shard %u of '%s' differs from node %s's copy; sending all of it.", t->shard,
                                 t->collection, t->node_id);
                        s->full_copy = true;
                        s->copy_head = info.head;
                } else
                        cursor.cursor = (ShardCursor) { .log_id = info.head.log_id, .seq = lc.last_seq };
        }
        if (s->full_copy) {
                DocCollect dc = { .buf = &buf, .last_id = s->after_id };

                s->after_id = NULL;
                r = shard_store_foreach_doc(m->store, t->collection, t->shard, dc.last_id, SHARD_READ_TOMBSTONES,
                                            collect_doc, &dc);
                s->after_id = dc.last_id;
                if (r < 0) {
                        log_warning_errno(r, "Shard %u of '%s': cannot read its documents: %m", t->shard, t->collection);
                        sync_task_end(s, false);
                        return;
                }
                if (r == 0) {
                        /* The last page: with it the receiver is at the head the copy began at. */
                        s->full_copy = false;
                        s->full_copy_done = true;
                        cursor.cursor = s->copy_head;
                } else
                        cursor.cursor = s->cursor;
                if (buf.n == 0 && r == 0 && s->cursor.log_id == s->copy_head.log_id && s->cursor.seq == s->copy_head.seq) {
                        sync_task_step(s);
                        return;
                }
        }
send:
        s->sending = cursor.cursor;
        r = shard_wire_batch_encode(t->collection, &cursor, buf.v, buf.n, &batch, &batch_size);
        if (r >= 0)
                r = manager_apply_body(c->config, batch, batch_size, &body, &body_size);
        if (r >= 0 && asprintf(&target, "/shard/apply?collection=%s", t->collection) < 0)
                r = -ENOMEM;
        if (r >= 0)
                r = shard_call(m, t->node_id, peer->url, EVHTTP_REQ_POST, target, body, body_size, SYNC_CALL_TIMEOUT_USEC,
                               sync_apply_cb, s, &s->call);
        if (r < 0) {
                log_warning_errno(r, "Shard %u of '%s': cannot send to node %s: %m", t->shard, t->collection, t->node_id);
                sync_task_end(s, false);
                return;
        }
        s->last_batch_bytes = body_size;
        s->bytes_moved += body_size;
}

static void sync_step_cb(evutil_socket_t fd, short what, void *userdata) {
        sync_task_step(userdata);
}

/* Drops the shards this node handed over: no longer a holder, and every holder has all of it. */
static void sync_drop_handed_over(ShardSync *s) {
        Manager *m = s->m;

        for (size_t i = 0; i < s->n_tasks; i++) {
                SyncTask *t = &s->tasks[i];
                ShardedCollection *c;
                bool all = true;

                if (!t->drop_after || (i > 0 && streq(s->tasks[i - 1].collection, t->collection) &&
                                       s->tasks[i - 1].shard == t->shard))
                        continue;
                for (size_t j = i; j < s->n_tasks && streq(s->tasks[j].collection, t->collection) &&
                                   s->tasks[j].shard == t->shard; j++)
                        all = all && s->tasks[j].done;
                c = manager_collection(m, t->collection);
                if (!all || !c)
                        continue;
                if (shard_store_drop_shard(m->store, t->collection, t->shard) < 0) {
                        log_warning("Shard %u of '%s': cannot drop it after handing it over.", t->shard, t->collection);
                        continue;
                }
                if (c->shards[t->shard]) {
                        c->n_docs -= shard_index_count(c->shards[t->shard]);
                        shard_index_free(c->shards[t->shard]);
                        c->shards[t->shard] = NULL;
                        (void) shard_index_new(c->config->dimension, c->config->metric, SHARD_INDEX_ROWS_PER_SHARD,
                                               &c->shards[t->shard]);
                }
                s->shards_dropped++;
                log_info("Shard %u of '%s' handed over to its holders; dropped here.", t->shard, t->collection);
        }
}

static void sync_finish(ShardSync *s) {
        uint64_t dropped = s->shards_dropped, failed;
        size_t done = 0;
        int r;

        for (size_t i = 0; i < s->n_tasks; i++)
                done += s->tasks[i].done;
        sync_drop_handed_over(s);
        /* Said on the bus when the round moved or dropped something (or could not). */
        failed = s->n_tasks - done;
        if (s->bytes_moved > s->round_bytes_start || s->shards_dropped > dropped || failed > 0) {
                r = manager_bus_emit_rebalanced(s->m, done, failed, s->bytes_moved - s->round_bytes_start,
                                                s->shards_dropped - dropped);
                if (r < 0)
                        log_debug_errno(r, "Failed to emit Rebalanced: %m");
                bus_event_rearm(s->m->bus_event);
        }
        s->rounds++;
        if (s->n_tasks > 0)
                log_debug("Sync round %" PRIu64 ": %zu of %zu transfers complete, %" PRIu64 " bytes moved so far.", s->rounds,
                          done, s->n_tasks, s->bytes_moved);
        free(s->tasks);
        s->tasks = NULL;
        s->n_tasks = s->cur = 0;
        s->running = false;
        if (s->again) {
                s->again = false;
                manager_sync_now(s->m);
        }
}

static void sync_next_task(ShardSync *s) {
        Manager *m = s->m;
        SyncTask *t = sync_task(s);
        const ShardPeer *peer;

        if (!t) {
                sync_finish(s);
                return;
        }
        peer = shard_members_find(&m->members, t->node_id);
        s->cursor = (ShardCursor) {};
        s->digest[0] = '\0';
        if (!peer || !peer->alive || sync_ask_cursor(s, t, peer) < 0)
                sync_task_end(s, false);
}

/* The transfers of this round: each shard this node has, to each of its other live holders. */
static int sync_plan(ShardSync *s) {
        Manager *m = s->m;
        size_t allocated = 0;

        for (size_t k = 0; k < m->n_collections; k++) {
                const ShardCollection *config = m->collections[k].config;

                for (unsigned shard = 0; shard < config->n_shards; shard++) {
                        const char *holders[SHARD_REPLICAS_MAX];
                        size_t n = manager_holders(m, config, shard, holders);
                        bool holder = false;
                        ShardInfo info;

                        if (shard_store_shard_info(m->store, config->name, shard, &info) < 0)
                                continue;       /* nothing of it here */
                        for (size_t h = 0; h < n; h++)
                                holder = holder || streq(holders[h], m->node_id);
                        for (size_t h = 0; h < n; h++) {
                                const ShardPeer *p = shard_members_find(&m->members, holders[h]);
                                SyncTask *t;

                                if (streq(holders[h], m->node_id) || !p || !p->alive)
                                        continue;
                                if (s->n_tasks == allocated) {
                                        size_t a = MAX(allocated * 2, (size_t) 64);
                                        SyncTask *v = reallocarray(s->tasks, a, sizeof(SyncTask));

                                        if (!v)
                                                return -ENOMEM;
                                        s->tasks = v;
                                        allocated = a;
                                }
                                t = &s->tasks[s->n_tasks++];
                                *t = (SyncTask) { .shard = shard, .drop_after = !holder };
                                snprintf(t->collection, sizeof(t->collection), "%s", config->name);
                                snprintf(t->node_id, sizeof(t->node_id), "%s", holders[h]);
                        }
                }
        }
        return 0;
}

void manager_sync_now(Manager *m) {
        ShardSync *s = m->sync;
        int r;

        if (!s || !m->have_mesh_key)
                return;
        /* Blobs are a pass of their own (shardd-blobs.c), beside the shards' transfers. */
        manager_blobs_sync(m);
        if (s->running) {
                s->again = true;
                return;
        }
        s->running = true;
        s->round_started = now_usec();
        s->round_bytes_start = s->bytes_moved;
        r = sync_plan(s);
        if (r < 0) {
                log_warning_errno(r, "Cannot plan the shard transfers: %m");
                free(s->tasks);
                s->tasks = NULL;
                s->n_tasks = 0;
        }
        s->cur = 0;
        sync_next_task(s);
}

static int count_shard(const ShardInfo *i, void *userdata) {
        (*(uint64_t *) userdata)++;
        return 0;
}

void manager_sync_stats(Manager *m, ShardSyncStats *ret) {
        ShardSync *s = m->sync;
        uint64_t held = 0;

        *ret = (ShardSyncStats) {};
        /* From the store, not the placement: what is on disk here, one state record a shard. */
        for (size_t k = 0; k < m->n_collections; k++)
                (void) shard_store_foreach_shard(m->store, m->collections[k].config->name, count_shard, &held);
        if (!s) {
                ret->held = held;
                return;
        }
        *ret = (ShardSyncStats) {
                .rounds = s->rounds,
                .pending = s->running ? s->n_tasks - MIN(s->cur, s->n_tasks) : 0,
                .done = s->transfers_done,
                .failed = s->transfers_failed,
                .bytes_moved = s->bytes_moved,
                .dropped = s->shards_dropped,
                .held = held,
        };
        /* Every transfer of a round is planned when it begins: the oldest pending one has waited
         * since then. Nothing pending, no lag. */
        if (ret->pending > 0) {
                usec_t now = now_usec();

                ret->lag_usec = now > s->round_started ? now - s->round_started : 0;
        }
}

static void sync_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        manager_sync_now(userdata);
}

int manager_sync_init(Manager *m) {
        ShardSync *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        s->m = m;
        s->timer = event_new(m->base, -1, EV_PERSIST, sync_timer_cb, m);
        s->step = evtimer_new(m->base, sync_step_cb, s);
        m->sync = s;
        return s->timer && s->step ? 0 : -ENOMEM;
}

void manager_sync_start(Manager *m) {
        usec_t u = m->config->shard_sync_interval;
        struct timeval tv = { .tv_sec = u / USEC_PER_SEC, .tv_usec = u % USEC_PER_SEC };

        if (m->sync && u > 0)
                (void) event_add(m->sync->timer, &tv);
}

void manager_sync_done(Manager *m) {
        ShardSync *s = m->sync;

        if (!s)
                return;
        shard_call_cancel(s->call);
        if (s->timer)
                event_free(s->timer);
        if (s->step)
                event_free(s->step);
        free(s->tasks);
        free(s->after_id);
        free(s);
        m->sync = NULL;
}

/* ---- collections across the mesh ---- */

static void announce_cb(ShardCall *call, int status, struct evbuffer *body, void *userdata) {
        if (status != 200)
                log_debug("A peer did not take a collection announcement (%d); it learns with the first documents.", status);
}

void manager_collections_announce(Manager *m, const ShardCollection *c, bool deleted) {
        _cleanup_free_ char *json = NULL, *target = NULL;
        size_t size = 0;

        if (!m->have_mesh_key)
                return;
        if ((!deleted && shard_collection_to_json(c, &json, &size) < 0) ||
            asprintf(&target, "/shard/collection?collection=%s%s", c->name, deleted ? "&delete=1" : "") < 0) {
                log_oom();
                return;
        }
        for (size_t i = 0; i < m->members.n_peers; i++) {
                const ShardPeer *p = &m->members.peers[i];

                if (streq(p->id, m->node_id))
                        continue;
                if (shard_call(m, p->id, p->url, EVHTTP_REQ_POST, target, json, size, SYNC_CALL_TIMEOUT_USEC, announce_cb,
                               NULL, NULL) < 0)
                        log_debug("Cannot tell node %s about collection '%s'.", p->id, c->name);
        }
}

void manager_peer_collection(Manager *m, struct evhttp_request *req, const char *collection, bool deleted) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        _cleanup_(shard_collection_freep) ShardCollection *config = NULL;
        ShardedCollection *c;
        int r;

        if (deleted) {
                r = manager_collection(m, collection) ? manager_collection_delete_here(m, collection) : 0;
                if (r < 0) {
                        shard_peer_reply_error(req, 500, "Error", "not deleted");
                        return;
                }
                evhttp_send_reply(req, 200, "OK", NULL);
                return;
        }
        if (shard_collection_from_json(collection, strlen(collection), (const char *) evbuffer_pullup(in, -1),
                                       evbuffer_get_length(in), &config) < 0) {
                shard_peer_reply_error(req, 400, "Bad Request", "malformed collection");
                return;
        }
        r = manager_collection_adopt(m, config, true, &c);
        if (r == -ESTALE) {
                shard_peer_reply_error(req, 410, "Gone", "collection deleted");
                return;
        }
        if (r < 0) {
                shard_peer_reply_error(req, 409, "Conflict", "collection differs");
                return;
        }
        evhttp_send_reply(req, 200, "OK", NULL);
}

void manager_peer_ready(Manager *m, struct evhttp_request *req, const char *collection, const char *shard_s) {
        ShardedCollection *c = manager_collection(m, collection);
        unsigned shard;

        if (!c || !shard_s || sscanf(shard_s, "%u", &shard) != 1 || shard >= c->config->n_shards) {
                shard_peer_reply_error(req, 404, "Not Found", "no such shard");
                return;
        }
        if (!c->ready[shard])
                log_debug("Shard %u of '%s' is up to date here.", shard, collection);
        c->ready[shard] = true;
        evhttp_send_reply(req, 200, "OK", NULL);
}
