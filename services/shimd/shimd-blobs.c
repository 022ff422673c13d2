/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* /api/blobs/:digest (shimd-blobs.h), answered as Ollama answers it (tests/integration/
 * test_endpoints.py compares the two). HEAD asks ShardStore1.HasBlob: 200, or 404 with the error
 * object's headers and no body. POST asks HasBlob too (a blob the mesh has is 200, before its body
 * is looked at, as in Ollama), then checks the body's SHA-256 here (400 "digest mismatch, ..."),
 * hands the bytes to shardd in a memfd (PutBlob takes a file descriptor: no 100 MB string on the
 * bus) and answers 201 Created once W holders have the blob on disk. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bus-names.h"
#include "evbuffer-util.h"
#include "log.h"
#include "shim-blobs.h"
#include "shim-collections.h"
#include "shimd-blobs.h"
#include "shimd-clients.h"
#include "shimd-audit.h"
#include "shimd-errors.h"
#include "shimd-shardstore.h"

#define BLOBS_PATH "/api/blobs/"

typedef struct BlobRequest {
        Manager *m;
        struct evhttp_request *client;
        struct evhttp_connection *client_evcon;
        sd_bus_slot *call;
        bool head;
        bool putting;                   /* POST: PutBlob sent (HasBlob said no) */
        char *digest;                   /* as named in the path, %-decoded */
        usec_t t_start;
} BlobRequest;

static void blob_request_free(BlobRequest *br) {
        Manager *m = br->m;

        m->requests_active--;
        manager_drain_check(m);
        sd_bus_slot_unref(br->call);
        free(br->digest);
        free(br);
}

/* Answers status (an Ollama error object with message, but to HEAD only its headers, as
 * Ollama's) and frees br. */
static void blob_reply(BlobRequest *br, int status, const char *message) {
        struct evkeyvalq *out = evhttp_request_get_output_headers(br->client);

        manager_client_unwatch(br->m, br->client_evcon);
        shim_audit_request(SHIM_LISTENER_API, br->client, status, NULL, NULL, br->t_start);
        if (status >= 400)
                br->m->counters.requests_failed++;
        if (status >= 400 && message && !br->head)
                shim_reply_error(br->client, status, SHIM_ERROR_JSON, message, false);
        else {
                if (status >= 400)
                        (void) evhttp_add_header(out, "Content-Type", "application/json; charset=utf-8");
                (void) evhttp_add_header(out, SHIM_SERVED_BY_HEADER, br->m->node_name);
                evhttp_send_reply(br->client, status, NULL, NULL);
        }
        blob_request_free(br);
}

static void blob_client_close_cb(struct evhttp_connection *evcon, void *userdata) {
        BlobRequest *br = userdata;

        manager_client_gone(br->m, evcon);
        br->m->counters.client_cancelled++;
        if (!evhttp_request_get_connection(br->client))
                evhttp_request_free(br->client);
        blob_request_free(br);
}

static void blob_put(BlobRequest *br);

static int blob_reply_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        BlobRequest *br = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *message;
        int stored = 0, status;

        br->call = sd_bus_slot_unref(br->call);
        if (e) {
                status = shim_collections_bus_error_status(e->name, e->message, &message);
                if (status == 500)
                        log_warning("%s failed: %s: %s", SHARDSTORE1_BUS_NAME, strempty(e->name), strempty(e->message));
                blob_reply(br, status, message);
                return 0;
        }
        if (br->putting) {
                blob_reply(br, 201, NULL);
                return 0;
        }
        if (sd_bus_message_read(reply, "b", &stored) < 0) {
                blob_reply(br, 500, SHIM_COLLECTIONS_FAILED);
                return 0;
        }
        if (br->head)
                blob_reply(br, stored ? 200 : 404, NULL);
        else if (stored)
                blob_reply(br, 200, NULL);
        else
                blob_put(br);
        return 0;
}

/* The body's SHA-256 as "sha256:<hex>" compared with the digest named (either case, either of
 * Ollama's separators); the body written to a new memfd on success. */
static int blob_body_to_memfd(struct evbuffer *body, const char *digest, int *ret_fd,
                              char ret_hex[static 2 * crypto_hash_sha256_BYTES + 1]) {
        struct iovec small[16], *vec, *heap = NULL;
        crypto_hash_sha256_state st;
        uint8_t hash[crypto_hash_sha256_BYTES];
        int n, fd, r = 0;

        n = evbuffer_iovecs(body, small, ELEMENTSOF(small), &vec, &heap);
        if (n < 0)
                return n;
        crypto_hash_sha256_init(&st);
        for (int i = 0; i < n; i++)
                crypto_hash_sha256_update(&st, vec[i].iov_base, vec[i].iov_len);
        crypto_hash_sha256_final(&st, hash);
        sodium_bin2hex(ret_hex, 2 * crypto_hash_sha256_BYTES + 1, hash, sizeof(hash));
        /* Ollama compares the names: only "sha256:" and the digest in lowercase match. */
        if (strncmp(digest, "sha256:", 7) != 0 || strcmp(digest + 7, ret_hex) != 0) {
                free(heap);
                return -EBADMSG;
        }
        fd = memfd_create("mycelia-blob", MFD_CLOEXEC);
        if (fd < 0) {
                free(heap);
                return -errno;
        }
        for (int i = 0; r >= 0 && i < n; i++) {
                const uint8_t *p = vec[i].iov_base;
                size_t left = vec[i].iov_len;

                while (r >= 0 && left > 0) {
                        ssize_t k = write(fd, p, left);

                        if (k < 0 && errno != EINTR)
                                r = -errno;
                        else if (k > 0) {
                                p += k;
                                left -= (size_t) k;
                        }
                }
        }
        free(heap);
        if (r < 0) {
                (void) close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

/* A call that could not be sent: answered to the client. */
static void blob_call_failed(BlobRequest *br, int r) {
        if (r == -ENOTCONN)
                blob_reply(br, 503, SHIM_COLLECTIONS_NOT_RUNNING);
        else {
                log_warning_errno(r, "Failed to call %s: %m", SHARDSTORE1_BUS_NAME);
                blob_reply(br, 500, SHIM_COLLECTIONS_FAILED);
        }
}

/* POST of a blob the mesh does not have: checked, then stored through shardd. */
static void blob_put(BlobRequest *br) {
        char hex[2 * crypto_hash_sha256_BYTES + 1], message[256];
        int r, fd = -1;

        r = blob_body_to_memfd(evhttp_request_get_input_buffer(br->client), br->digest, &fd, hex);
        if (r == -EBADMSG) {
                snprintf(message, sizeof(message), "digest mismatch, expected \"%s\", got \"sha256:%s\"", br->digest,
                         hex);
                blob_reply(br, 400, message);
                return;
        }
        br->putting = true;
        if (r >= 0)
                r = shardstore_call(br->m, &br->call, SHARDSTORE1_INTERFACE, "PutBlob", blob_reply_cb, br, "sh",
                                    br->digest, fd);
        if (fd >= 0)
                (void) close(fd);       /* the message holds its own copy */
        if (r < 0)
                blob_call_failed(br, r);
}

bool blobs_handle(Manager *m, struct evhttp_request *req) {
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
        const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
        enum evhttp_cmd_type method = evhttp_request_get_command(req);
        BlobRequest *br;
        int r;

        if (!path || strncmp(path, BLOBS_PATH, strlen(BLOBS_PATH)) != 0)
                return false;
        if (method != EVHTTP_REQ_HEAD && method != EVHTTP_REQ_POST) {
                shim_reply_error(req, 405, SHIM_ERROR_JSON, "method not allowed", false);
                m->counters.requests_failed++;
                return true;
        }
        br = calloc(1, sizeof(*br));
        if (!br) {
                log_oom();
                shim_reply_error(req, 500, SHIM_ERROR_JSON, "out of memory", true);
                return true;
        }
        *br = (BlobRequest) { .m = m, .client = req, .client_evcon = evhttp_request_get_connection(req),
                              .head = method == EVHTTP_REQ_HEAD, .t_start = now_usec(),
                              .digest = evhttp_uridecode(path + strlen(BLOBS_PATH), 0, NULL) };
        m->requests_active++;
        manager_client_watch(m, br->client_evcon, blob_client_close_cb, br);
        if (!br->digest || !shim_digest_valid(br->digest)) {
                /* Ollama: 400 for a name that is not a digest. */
                blob_reply(br, 400, "invalid digest format");
                return true;
        }
        r = shardstore_call(m, &br->call, SHARDSTORE1_INTERFACE, "HasBlob", blob_reply_cb, br, "s", br->digest);
        if (r < 0)
                blob_call_failed(br, r);
        return true;
}
