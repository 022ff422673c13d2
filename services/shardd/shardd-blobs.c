/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Blobs in shardd (shardd-blobs.h, docs/blobs.md): the local store (a temporary file hashed while
 * written, fsync'd, renamed into place, the directory fsync'd), signed HEAD/GET/PUT transfers to
 * peers, the three bus methods and the blob pass of sync. */
#include <dirent.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus-names.h"
#include "evbuffer-util.h"
#include "http-url.h"
#include "log.h"
#include "mesh-http.h"
#include "shardd-blobs.h"
#include "shardd-client.h"
#include "shardd-manager.h"
#include "shardd-reply.h"

/* A transfer may take long for a large blob: this is libevent's read/write inactivity timeout. */
#define BLOB_CALL_TIMEOUT_USEC (60 * USEC_PER_SEC)
#define BLOB_COPY_CHUNK (1U << 20)
#define BLOB_TMP_PREFIX ".tmp-"

typedef struct BlobOp BlobOp;

typedef enum BlobOpKind {
        BLOB_OP_PUT,
        BLOB_OP_HAS,
        BLOB_OP_GET,
} BlobOpKind;

/* A bus call waiting for peers. */
struct BlobOp {
        ShardBlobs *b;
        LIST_ENTRY(BlobOp) link;
        BlobOpKind kind;
        sd_bus_message *reply_to;       /* NULL once answered */
        uint8_t digest[SHARD_BLOB_DIGEST_SIZE];
        char name[SHARD_BLOB_DIGEST_STRING_MAX];
        /* The peers to ask or send to, in placement order. */
        char peers[SHARD_REPLICAS_MAX][NODE_ID_LEN + 1];
        size_t n_peers, next;
        ShardCall *calls[SHARD_REPLICAS_MAX];
        /* Put: the bytes (mapped), where they are, how many holders have them, how many must. */
        void *map;
        size_t size;
        int staging_fd;
        char staging[64];               /* a temporary file to unlink when done ("": none) */
        unsigned acks, quorum, pending;
        bool failed_peer;               /* has, get: a peer did not answer */
};

typedef struct BlobSync {
        uint8_t (*digests)[SHARD_BLOB_DIGEST_SIZE];
        size_t n, cur;
        const char *holders[SHARD_REPLICAS_MAX];
        size_t n_holders, holder;
        bool begun, holder_here, all_have, running, again;
        void *map;
        size_t size;
        ShardCall *call;
        struct event *step;
} BlobSync;

struct ShardBlobs {
        Manager *m;
        char *dir;
        int dir_fd;
        LIST_HEAD(, BlobOp) ops;
        BlobSync sync;
        ShardBlobStats stats;
};

/* ---- the local store ---- */

/* A blob being written: its temporary file and the hash so far. */
typedef struct BlobWriter {
        int fd;
        char name[64];
        crypto_hash_sha256_state hash;
        uint64_t size;
} BlobWriter;

static void blob_writer_abort(ShardBlobs *b, BlobWriter *w) {
        if (w->fd >= 0) {
                (void) unlinkat(b->dir_fd, w->name, 0);
                (void) close(w->fd);
        }
        w->fd = -1;
}

static int blob_writer_open(ShardBlobs *b, BlobWriter *w) {
        uint8_t rnd[8];

        randombytes_buf(rnd, sizeof(rnd));
        snprintf(w->name, sizeof(w->name), BLOB_TMP_PREFIX "%016" PRIx64, *(uint64_t *) rnd);
        w->fd = openat(b->dir_fd, w->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (w->fd < 0)
                return -errno;
        w->size = 0;
        crypto_hash_sha256_init(&w->hash);
        return 0;
}

static int blob_writer_add(BlobWriter *w, const void *p, size_t n) {
        const uint8_t *q = p;

        crypto_hash_sha256_update(&w->hash, p, n);
        w->size += n;
        while (n > 0) {
                ssize_t k = write(w->fd, q, n);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                q += k;
                n -= (size_t) k;
        }
        return 0;
}

/* -EBADMSG when the bytes written are not the blob want names; ret_got: what they are. */
static int blob_writer_check(BlobWriter *w, const uint8_t want[static SHARD_BLOB_DIGEST_SIZE],
                             uint8_t ret_got[static SHARD_BLOB_DIGEST_SIZE]) {
        crypto_hash_sha256_final(&w->hash, ret_got);
        return sodium_memcmp(ret_got, want, SHARD_BLOB_DIGEST_SIZE) == 0 ? 0 : -EBADMSG;
}

/* On disk under its name: file synced, renamed, directory synced. Only then is a put answered,
 * so an acknowledged blob survives a crash and a partial one never has the name. */
static int blob_writer_commit(ShardBlobs *b, BlobWriter *w, const uint8_t d[static SHARD_BLOB_DIGEST_SIZE]) {
        char name[SHARD_BLOB_FILE_NAME_MAX];

        if (fsync(w->fd) < 0 || renameat(b->dir_fd, w->name, b->dir_fd, shard_blob_file_name(d, name)) < 0 ||
            fsync(b->dir_fd) < 0) {
                int r = -errno;

                blob_writer_abort(b, w);
                return r;
        }
        w->name[0] = '\0';
        b->stats.stored++;
        return 0;
}

static bool blob_stored(ShardBlobs *b, const uint8_t d[static SHARD_BLOB_DIGEST_SIZE]) {
        char name[SHARD_BLOB_FILE_NAME_MAX];

        return faccessat(b->dir_fd, shard_blob_file_name(d, name), F_OK, 0) >= 0;
}

static int blob_open(ShardBlobs *b, const uint8_t d[static SHARD_BLOB_DIGEST_SIZE], uint64_t *ret_size) {
        char name[SHARD_BLOB_FILE_NAME_MAX];
        struct stat st;
        int fd = openat(b->dir_fd, shard_blob_file_name(d, name), O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                int r = -errno;

                (void) close(fd);
                return r;
        }
        *ret_size = (uint64_t) st.st_size;
        return fd;
}

/* The file's bytes, mapped read-only (NULL for an empty file). */
static int blob_map(int fd, size_t size, void **ret) {
        void *p;

        if (size == 0) {
                *ret = NULL;
                return 0;
        }
        p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                return -errno;
        *ret = p;
        return 0;
}

static void blob_unmap(void **p, size_t size) {
        if (*p)
                (void) munmap(*p, size);
        *p = NULL;
}

/* The bytes of an evbuffer into a new temporary file, checked against d. -EBADMSG on mismatch
 * (got: what they are), with nothing left behind. */
static int blob_write_evbuffer(ShardBlobs *b, struct evbuffer *in, const uint8_t d[static SHARD_BLOB_DIGEST_SIZE],
                               BlobWriter *w, uint8_t got[static SHARD_BLOB_DIGEST_SIZE]) {
        struct iovec small[16], *vec, *heap = NULL;
        int n, r;

        n = evbuffer_iovecs(in, small, ELEMENTSOF(small), &vec, &heap);
        if (n < 0)
                return n;
        r = blob_writer_open(b, w);
        for (int i = 0; r >= 0 && i < n; i++)
                r = blob_writer_add(w, vec[i].iov_base, vec[i].iov_len);
        free(heap);
        if (r >= 0)
                r = blob_writer_check(w, d, got);
        if (r < 0)
                blob_writer_abort(b, w);
        return r;
}

/* ---- signed calls to peers ---- */

/* method /blob?digest=NAME to peer node_id (shard_call_send(): HEAD and PUT, answers as large as
 * the largest blob); body by reference (a mapped file: it lives until the callback ran or the
 * call was cancelled), may be NULL. */
static int blob_call(ShardBlobs *b, const char *node_id, enum evhttp_cmd_type method, const char *digest,
                     const void *body, size_t size, ShardCallFn fn, void *userdata, ShardCall **ret) {
        const ShardPeer *peer = shard_members_find(&b->m->members, node_id);
        char target[16 + SHARD_BLOB_DIGEST_STRING_MAX];

        if (!peer)
                return -ENOENT;
        snprintf(target, sizeof(target), "/blob?digest=%s", digest);
        return shard_call_send(b->m, node_id, peer->url,
                               &(ShardCallRequest) {
                                       .method = method,
                                       .target = target,
                                       .body = body,
                                       .body_size = size,
                                       .body_by_reference = true,
                                       .timeout = BLOB_CALL_TIMEOUT_USEC,
                                       .answer_max = b->m->config->blob_max_size,
                               },
                               fn, userdata, ret);
}

/* ---- bus calls ---- */

/* The live holders of d other than this node, best first, into op->peers; whether this node is
 * one of the holders; how many holders there are and how many of them are live (this node
 * counted). */
static void blob_op_holders(BlobOp *op, bool *ret_here, unsigned *ret_live) {
        Manager *m = op->b->m;
        const char *holders[SHARD_REPLICAS_MAX];
        int n = shard_blob_holders(op->digest, m->members.ids, m->members.n_peers, m->config->shard_replicas, holders);
        unsigned live = 0;
        bool here = false;

        op->n_peers = 0;
        for (int i = 0; i < n; i++) {
                const ShardPeer *p = shard_members_find(&m->members, holders[i]);

                if (streq(holders[i], m->node_id)) {
                        here = true;
                        live++;
                } else if (p && p->alive) {
                        live++;
                        snprintf(op->peers[op->n_peers++], NODE_ID_LEN + 1, "%s", holders[i]);
                }
        }
        /* Without members yet (gossip not read): this node alone. */
        if (n <= 0) {
                here = true;
                live = 1;
        }
        if (ret_here)
                *ret_here = here;
        if (ret_live)
                *ret_live = live;
}

static BlobOp *blob_op_new(ShardBlobs *b, BlobOpKind kind, const uint8_t d[static SHARD_BLOB_DIGEST_SIZE]) {
        BlobOp *op = calloc(1, sizeof(*op));

        if (!op)
                return NULL;
        op->b = b;
        op->kind = kind;
        op->staging_fd = -1;
        memcpy(op->digest, d, SHARD_BLOB_DIGEST_SIZE);
        shard_blob_digest_to_string(d, op->name);
        LIST_INSERT_HEAD(&b->ops, op, link);
        return op;
}

static void blob_op_free(BlobOp *op) {
        for (size_t i = 0; i < ELEMENTSOF(op->calls); i++)
                shard_call_cancel(op->calls[i]);
        blob_unmap(&op->map, op->size);
        if (op->staging[0])
                (void) unlinkat(op->b->dir_fd, op->staging, 0);
        if (op->staging_fd >= 0)
                (void) close(op->staging_fd);
        sd_bus_message_unref(op->reply_to);
        LIST_REMOVE(op, link);
        free(op);
}

static int parse_digest(const char *s, uint8_t d[static SHARD_BLOB_DIGEST_SIZE], sd_bus_error *error) {
        if (shard_blob_digest_parse(s, d) < 0)
                return sd_bus_error_setf(error, SHARDSTORE1_ERROR_INVALID,
                                         "invalid digest \"%.80s\": sha256: and 64 hex digits", s);
        return 0;
}

/* Put: a holder answered (or not). Answered once quorum holders have it; freed when every
 * transfer ended. */
static void put_cb(ShardCall *call, int status, struct evbuffer *body, void *userdata) {
        BlobOp *op = userdata;

        for (size_t i = 0; i < op->n_peers; i++)
                if (op->calls[i] == call)
                        op->calls[i] = NULL;
        op->pending--;
        if (status == 200)
                op->acks++;
        else
                log_info("Blob %s: node did not store it (%d); the next sync round sends it again.", op->name, status);
        if (op->reply_to && op->acks >= op->quorum) {
                (void) sd_bus_reply_method_return(op->reply_to, NULL);
                op->reply_to = sd_bus_message_unref(op->reply_to);
        }
        if (op->pending > 0)
                return;
        if (op->reply_to)
                (void) sd_bus_reply_method_errorf(op->reply_to, SHARDSTORE1_ERROR_UNAVAILABLE,
                                                  "blob %s is on %u node(s), %u are needed; try again", op->name,
                                                  op->acks, op->quorum);
        bus_event_rearm(op->b->m->bus_event);
        blob_op_free(op);
}

int manager_blob_put(Manager *m, sd_bus_message *msg, const char *digest, int fd, sd_bus_error *error) {
        ShardBlobs *b = m->blobs;
        uint8_t d[SHARD_BLOB_DIGEST_SIZE], got[SHARD_BLOB_DIGEST_SIZE];
        char got_name[SHARD_BLOB_DIGEST_STRING_MAX];
        _cleanup_free_ uint8_t *chunk = NULL;
        BlobWriter w = { .fd = -1 };
        bool here;
        unsigned live;
        struct stat st;
        BlobOp *op;
        int r;

        r = parse_digest(digest, d, error);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return sd_bus_error_set(error, SHARDSTORE1_ERROR_INVALID,
                                        "the blob must come as a regular file or memfd");
        if ((uint64_t) st.st_size > m->config->blob_max_size)
                return sd_bus_error_setf(error, SHARDSTORE1_ERROR_TOO_LARGE,
                                         "blob of %" PRIu64 " bytes, at most %" PRIu64 " ([shard] blob_max_size)",
                                         (uint64_t) st.st_size, m->config->blob_max_size);
        op = blob_op_new(b, BLOB_OP_PUT, d);
        if (!op)
                return -ENOMEM;
        op->quorum = manager_write_quorum(m, &(ShardCollection) { .replicas = m->config->shard_replicas });
        blob_op_holders(op, &here, &live);
        if (live < op->quorum) {
                blob_op_free(op);
                return sd_bus_error_setf(error, SHARDSTORE1_ERROR_UNAVAILABLE,
                                         "%u of the nodes that hold blob %s are reachable, %u are needed; try again",
                                         live, digest, op->quorum);
        }

        /* Read whole from the caller's file, hashed as it goes into a temporary file here. */
        chunk = malloc(BLOB_COPY_CHUNK);
        r = chunk ? blob_writer_open(b, &w) : -ENOMEM;
        for (off_t at = 0; r >= 0;) {
                ssize_t k = pread(fd, chunk, BLOB_COPY_CHUNK, at);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        r = k < 0 ? -errno : 0;
                        break;
                }
                at += k;
                r = w.size + (uint64_t) k > m->config->blob_max_size ? -EFBIG : blob_writer_add(&w, chunk, (size_t) k);
        }
        if (r >= 0)
                r = blob_writer_check(&w, d, got);
        if (r < 0) {
                blob_writer_abort(b, &w);
                blob_op_free(op);
                if (r == -EBADMSG)
                        return sd_bus_error_setf(error, SHARDSTORE1_ERROR_INVALID,
                                                 "digest mismatch: the data's digest is %s, not %s",
                                                 shard_blob_digest_to_string(got, got_name), digest);
                if (r == -EFBIG)
                        return sd_bus_error_setf(error, SHARDSTORE1_ERROR_TOO_LARGE,
                                                 "blob larger than %" PRIu64 " bytes ([shard] blob_max_size)",
                                                 m->config->blob_max_size);
                return sd_bus_error_set_errnof(error, -r, "cannot store the blob: %s", strerror(-r));
        }
        op->size = w.size;
        if (here) {
                uint64_t size;

                /* A holder: stored under its name now (an existing copy is the same bytes). */
                r = blob_writer_commit(b, &w, d);
                if (r >= 0) {
                        op->acks++;
                        r = op->size > 0 ? blob_open(b, d, &size) : 0;
                        if (r > 0)
                                op->staging_fd = r;
                }
                if (w.fd >= 0)
                        (void) close(w.fd);
        } else {
                /* Not a holder: the temporary file is only what is sent, removed afterwards. */
                op->staging_fd = w.fd;
                snprintf(op->staging, sizeof(op->staging), "%s", w.name);
                w.fd = -1;
        }
        if (r >= 0 && op->staging_fd >= 0)
                r = blob_map(op->staging_fd, op->size, &op->map);
        if (r < 0) {
                blob_op_free(op);
                return sd_bus_error_set_errnof(error, -r, "cannot store the blob: %s", strerror(-r));
        }

        op->reply_to = sd_bus_message_ref(msg);
        for (size_t i = 0; i < op->n_peers; i++) {
                r = blob_call(b, op->peers[i], EVHTTP_REQ_PUT, op->name, op->map, op->size, put_cb, op, &op->calls[i]);
                if (r < 0)
                        log_info_errno(r, "Blob %s: cannot send it to node %s: %m", op->name, op->peers[i]);
                else
                        op->pending++;
        }
        if (op->acks >= op->quorum) {
                (void) sd_bus_reply_method_return(op->reply_to, NULL);
                op->reply_to = sd_bus_message_unref(op->reply_to);
        }
        if (op->pending == 0) {
                if (op->reply_to)
                        (void) sd_bus_reply_method_errorf(op->reply_to, SHARDSTORE1_ERROR_UNAVAILABLE,
                                                          "blob %s is on %u node(s), %u are needed; try again",
                                                          op->name, op->acks, op->quorum);
                blob_op_free(op);
        }
        return 1;
}

static void lookup_next(BlobOp *op);

static void lookup_finish(BlobOp *op, int fd) {
        if (op->kind == BLOB_OP_HAS)
                (void) sd_bus_reply_method_return(op->reply_to, "b", fd >= 0);
        else if (fd >= 0)
                (void) sd_bus_reply_method_return(op->reply_to, "h", fd);
        else if (op->failed_peer)
                (void) sd_bus_reply_method_errorf(op->reply_to, SHARDSTORE1_ERROR_UNAVAILABLE,
                                                  "no reachable node has blob %s; try again", op->name);
        else
                (void) sd_bus_reply_method_errorf(op->reply_to, SHARDSTORE1_ERROR_NOT_FOUND, "blob %s not found",
                                                  op->name);
        bus_event_rearm(op->b->m->bus_event);
        blob_op_free(op);
}

/* Get: a holder's bytes, checked, in an unnamed file; the caller gets it opened read-only. */
static int lookup_keep_answer(BlobOp *op, struct evbuffer *body) {
        ShardBlobs *b = op->b;
        uint8_t got[SHARD_BLOB_DIGEST_SIZE];
        char path[64];
        BlobWriter w = { .fd = -1 };
        int r, fd;

        r = blob_write_evbuffer(b, body, op->digest, &w, got);
        if (r < 0)
                return r;
        /* Nameless from now on: it goes away with the last descriptor. */
        (void) unlinkat(b->dir_fd, w.name, 0);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", w.fd);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        r = fd < 0 ? -errno : fd;
        (void) close(w.fd);
        return r;
}

static void lookup_cb(ShardCall *call, int status, struct evbuffer *body, void *userdata) {
        BlobOp *op = userdata;
        int fd;

        op->calls[0] = NULL;
        if (status == 200 && op->kind == BLOB_OP_HAS) {
                lookup_finish(op, 0);
                return;
        }
        if (status == 200) {
                fd = lookup_keep_answer(op, body);
                if (fd >= 0) {
                        lookup_finish(op, fd);
                        (void) close(fd);
                        return;
                }
                log_warning_errno(fd, "Blob %s: a holder's copy is not usable: %m", op->name);
                op->failed_peer = true;
        } else if (status != 404)
                op->failed_peer = true;
        lookup_next(op);
}

/* Asks the next live holder; answers when none is left. */
static void lookup_next(BlobOp *op) {
        while (op->next < op->n_peers) {
                const char *peer = op->peers[op->next++];
                int r = blob_call(op->b, peer, op->kind == BLOB_OP_HAS ? EVHTTP_REQ_HEAD : EVHTTP_REQ_GET, op->name,
                                  NULL, 0, lookup_cb, op, &op->calls[0]);

                if (r >= 0)
                        return;
                op->failed_peer = true;
        }
        lookup_finish(op, -ENOENT);
}

static int blob_lookup(Manager *m, BlobOpKind kind, sd_bus_message *msg, const char *digest, sd_bus_error *error) {
        uint8_t d[SHARD_BLOB_DIGEST_SIZE];
        uint64_t size;
        BlobOp *op;
        int r, fd;

        r = parse_digest(digest, d, error);
        if (r < 0)
                return r;
        if (kind == BLOB_OP_HAS && blob_stored(m->blobs, d))
                return sd_bus_reply_method_return(msg, "b", true);
        if (kind == BLOB_OP_GET) {
                fd = blob_open(m->blobs, d, &size);
                if (fd >= 0) {
                        r = sd_bus_reply_method_return(msg, "h", fd);
                        (void) close(fd);
                        return r;
                }
        }
        op = blob_op_new(m->blobs, kind, d);
        if (!op)
                return -ENOMEM;
        blob_op_holders(op, NULL, NULL);
        op->reply_to = sd_bus_message_ref(msg);
        lookup_next(op);
        return 1;
}

int manager_blob_has(Manager *m, sd_bus_message *msg, const char *digest, sd_bus_error *error) {
        return blob_lookup(m, BLOB_OP_HAS, msg, digest, error);
}

int manager_blob_get(Manager *m, sd_bus_message *msg, const char *digest, sd_bus_error *error) {
        return blob_lookup(m, BLOB_OP_GET, msg, digest, error);
}

/* ---- the peer route ---- */

static void peer_blob_put(Manager *m, struct evhttp_request *req, const uint8_t d[static SHARD_BLOB_DIGEST_SIZE]) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        uint8_t got[SHARD_BLOB_DIGEST_SIZE];
        BlobWriter w = { .fd = -1 };
        int r;

        if (evbuffer_get_length(in) > m->config->blob_max_size) {
                shard_peer_reply_error(req, 413, "Payload Too Large", "blob too large");
                return;
        }
        if (blob_stored(m->blobs, d)) {
                evhttp_send_reply(req, 200, "OK", NULL);
                return;
        }
        r = blob_write_evbuffer(m->blobs, in, d, &w, got);
        if (r >= 0)
                r = blob_writer_commit(m->blobs, &w, d);
        if (w.fd >= 0)
                (void) close(w.fd);
        if (r == -EBADMSG) {
                shard_peer_reply_error(req, 400, "Bad Request", "digest mismatch");
                return;
        }
        if (r < 0) {
                log_warning_errno(r, "Cannot store a blob a peer sent: %m");
                shard_peer_reply_error(req, 500, "Error", "not stored");
                return;
        }
        evhttp_send_reply(req, 200, "OK", NULL);
}

void manager_peer_blob(Manager *m, struct evhttp_request *req, const char *digest) {
        enum evhttp_cmd_type method = evhttp_request_get_command(req);
        uint8_t d[SHARD_BLOB_DIGEST_SIZE];
        struct evbuffer *out;
        uint64_t size;
        int fd;

        if (shard_blob_digest_parse(digest, d) < 0) {
                shard_peer_reply_error(req, 400, "Bad Request", "bad digest");
                return;
        }
        if (method == EVHTTP_REQ_PUT || method == EVHTTP_REQ_POST) {
                peer_blob_put(m, req, d);
                return;
        }
        if (method == EVHTTP_REQ_HEAD) {
                evhttp_send_reply(req, blob_stored(m->blobs, d) ? 200 : 404, NULL, NULL);
                return;
        }
        if (method != EVHTTP_REQ_GET) {
                shard_peer_reply_error(req, 405, "Method Not Allowed", "method not allowed");
                return;
        }
        fd = blob_open(m->blobs, d, &size);
        if (fd < 0) {
                shard_peer_reply_error(req, 404, "Not Found", "no such blob");
                return;
        }
        out = evbuffer_new();
        /* The file goes out as it is (libevent maps or sends it); the buffer owns fd after this. */
        if (!out || (size > 0 && evbuffer_add_file(out, fd, 0, (ev_off_t) size) < 0)) {
                (void) close(fd);
                if (out)
                        evbuffer_free(out);
                shard_peer_reply_error(req, 500, "Error", "out of memory");
                return;
        }
        if (size == 0)
                (void) close(fd);
        (void) evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/octet-stream");
        evhttp_send_reply(req, 200, "OK", out);
        evbuffer_free(out);
}

/* ---- the blob pass of sync ---- */

static void blob_sync_step(ShardBlobs *b);

static void blob_sync_schedule(ShardBlobs *b, uint64_t bytes) {
        uint64_t rate = b->m->config->transfer_rate;
        usec_t delay = rate > 0 ? (usec_t) (bytes * USEC_PER_SEC / rate) : 0;
        struct timeval tv = { .tv_sec = delay / USEC_PER_SEC, .tv_usec = delay % USEC_PER_SEC };

        (void) evtimer_add(b->sync.step, &tv);
}

static void blob_sync_step_cb(evutil_socket_t fd, short what, void *userdata) {
        blob_sync_step(userdata);
}

/* The current blob is done with: dropped here when this node is no longer a holder and every
 * holder said it has it. */
static void blob_sync_blob_end(ShardBlobs *b) {
        BlobSync *s = &b->sync;
        char name[SHARD_BLOB_FILE_NAME_MAX];
        const uint8_t *d = s->digests[s->cur];

        blob_unmap(&s->map, s->size);
        if (!s->holder_here && s->all_have && s->n_holders > 0) {
                if (unlinkat(b->dir_fd, shard_blob_file_name(d, name), 0) < 0 || fsync(b->dir_fd) < 0)
                        log_warning_errno(-errno, "Cannot drop blob %s after handing it over: %m", name);
                else {
                        b->stats.dropped++;
                        log_info("Blob %s handed over to its holders; dropped here.", name);
                }
        }
        s->cur++;
        s->begun = false;
}

static void blob_sync_put_cb(ShardCall *call, int status, struct evbuffer *body, void *userdata) {
        ShardBlobs *b = userdata;
        BlobSync *s = &b->sync;

        s->call = NULL;
        if (status == 200)
                b->stats.pushed++;
        else
                s->all_have = false;
        s->holder++;
        blob_sync_schedule(b, s->size);
}

static void blob_sync_head_cb(ShardCall *call, int status, struct evbuffer *body, void *userdata) {
        ShardBlobs *b = userdata;
        BlobSync *s = &b->sync;
        char name[SHARD_BLOB_DIGEST_STRING_MAX];
        int r;

        s->call = NULL;
        if (status == 404) {
                /* Lacks it: sent from the mapped file. */
                r = blob_call(b, s->holders[s->holder], EVHTTP_REQ_PUT,
                              shard_blob_digest_to_string(s->digests[s->cur], name), s->map, s->size, blob_sync_put_cb, b,
                              &s->call);
                if (r >= 0)
                        return;
        }
        if (status != 200)
                s->all_have = false;
        s->holder++;
        blob_sync_step(b);
}

static void blob_sync_finish(ShardBlobs *b) {
        BlobSync *s = &b->sync;

        free(s->digests);
        s->digests = NULL;
        s->n = s->cur = 0;
        s->running = false;
        if (s->again) {
                s->again = false;
                manager_blobs_sync(b->m);
        }
}

/* Starts the current blob: its holders, its bytes. false when it is not here any more. */
static bool blob_sync_blob_begin(ShardBlobs *b) {
        Manager *m = b->m;
        BlobSync *s = &b->sync;
        uint64_t size;
        int n, fd;

        fd = blob_open(b, s->digests[s->cur], &size);
        if (fd < 0)
                return false;
        s->size = (size_t) size;
        n = blob_map(fd, s->size, &s->map);
        (void) close(fd);
        if (n < 0)
                return false;
        n = shard_blob_holders(s->digests[s->cur], m->members.ids, m->members.n_peers, m->config->shard_replicas,
                               s->holders);
        s->n_holders = n < 0 ? 0 : (size_t) n;
        s->holder = 0;
        s->begun = true;
        s->holder_here = false;
        s->all_have = true;
        for (size_t i = 0; i < s->n_holders; i++)
                s->holder_here = s->holder_here || streq(s->holders[i], m->node_id);
        return true;
}

static void blob_sync_step(ShardBlobs *b) {
        Manager *m = b->m;
        BlobSync *s = &b->sync;
        char name[SHARD_BLOB_DIGEST_STRING_MAX];

        for (;;) {
                if (s->cur >= s->n) {
                        blob_sync_finish(b);
                        return;
                }
                if (!s->begun && !blob_sync_blob_begin(b)) {
                        s->cur++;
                        continue;
                }
                while (s->holder < s->n_holders) {
                        const char *h = s->holders[s->holder];
                        const ShardPeer *p = shard_members_find(&m->members, h);

                        if (streq(h, m->node_id)) {
                                s->holder++;
                                continue;
                        }
                        /* A suspect may hold it but cannot say so now: not dropped this round. */
                        if (p && p->alive &&
                            blob_call(b, h, EVHTTP_REQ_HEAD, shard_blob_digest_to_string(s->digests[s->cur], name), NULL, 0,
                                      blob_sync_head_cb, b, &s->call) >= 0)
                                return;
                        s->all_have = false;
                        s->holder++;
                }
                blob_sync_blob_end(b);
        }
}

void manager_blobs_sync(Manager *m) {
        ShardBlobs *b = m->blobs;
        BlobSync *s = b ? &b->sync : NULL;
        struct dirent *de;
        size_t allocated = 0;
        DIR *dir;
        int fd;

        if (!s || !m->have_mesh_key)
                return;
        if (s->running) {
                s->again = true;
                return;
        }
        fd = openat(b->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        dir = fd >= 0 ? fdopendir(fd) : NULL;
        if (!dir) {
                if (fd >= 0)
                        (void) close(fd);
                log_warning_errno(-errno, "Cannot list %s: %m", b->dir);
                return;
        }
        while ((de = readdir(dir))) {
                uint8_t d[SHARD_BLOB_DIGEST_SIZE];

                if (shard_blob_file_name_parse(de->d_name, d) < 0)
                        continue;
                if (s->n == allocated) {
                        size_t a = MAX(allocated * 2, (size_t) 16);
                        void *v = reallocarray(s->digests, a, SHARD_BLOB_DIGEST_SIZE);

                        if (!v)
                                break;
                        s->digests = v;
                        allocated = a;
                }
                memcpy(s->digests[s->n++], d, SHARD_BLOB_DIGEST_SIZE);
        }
        (void) closedir(dir);
        s->running = true;
        s->cur = 0;
        s->begun = false;
        blob_sync_step(b);
}

/* ---- life ---- */

int manager_blobs_init(Manager *m) {
        ShardBlobs *b = calloc(1, sizeof(*b));
        struct dirent *de;
        DIR *dir;
        int fd;

        if (!b)
                return -ENOMEM;
        b->m = m;
        b->dir_fd = -1;
        LIST_INIT(&b->ops);
        m->blobs = b;
        if (asprintf(&b->dir, "%s/blobs", m->config->state_dir) < 0) {
                b->dir = NULL;
                return -ENOMEM;
        }
        if (mkdir(b->dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        b->dir_fd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (b->dir_fd < 0)
                return -errno;
        b->sync.step = evtimer_new(m->base, blob_sync_step_cb, b);
        if (!b->sync.step)
                return -ENOMEM;
        /* What a crash left half written never had a blob's name: removed. */
        fd = openat(b->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        dir = fd >= 0 ? fdopendir(fd) : NULL;
        if (!dir) {
                if (fd >= 0)
                        (void) close(fd);
                return -errno;
        }
        while ((de = readdir(dir)))
                if (strncmp(de->d_name, BLOB_TMP_PREFIX, strlen(BLOB_TMP_PREFIX)) == 0)
                        (void) unlinkat(b->dir_fd, de->d_name, 0);
        (void) closedir(dir);
        return 0;
}

void manager_blobs_done(Manager *m) {
        ShardBlobs *b = m->blobs;

        if (!b)
                return;
        while (!LIST_EMPTY(&b->ops))
                blob_op_free(LIST_FIRST(&b->ops));
        shard_call_cancel(b->sync.call);
        blob_unmap(&b->sync.map, b->sync.size);
        if (b->sync.step)
                event_free(b->sync.step);
        free(b->sync.digests);
        if (b->dir_fd >= 0)
                (void) close(b->dir_fd);
        free(b->dir);
        free(b);
        m->blobs = NULL;
}

void manager_blobs_stats(Manager *m, ShardBlobStats *ret) {
        *ret = m->blobs ? m->blobs->stats : (ShardBlobStats) {};
}
