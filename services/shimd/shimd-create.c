/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The blobs of a create, brought into this node's Ollama from the mesh (shimd-create.h). A chain
 * of steps per blob, each continued from the loop through one event (libevent's HTTP callbacks
 * must not free the connection they run on): HEAD on the Ollama; on 404 GetBlob, whose fd is
 * sent as the body of a POST (mapped, not read into memory). */
#include <assert.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus-names.h"
#include "json-cleanup.h"
#include "json-document.h"
#include "log.h"
#include "shim-collections.h"
#include "shimd-create.h"
#include "shimd-shardstore.h"

/* Ollama answers HEAD and POST /api/blobs with no body, or an error object. */
#define CREATE_ANSWER_MAX (64U << 10)

typedef enum CreateBlobsPhase {
        CREATE_BLOBS_HEAD,      /* asking the Ollama whether it has blob i */
        CREATE_BLOBS_GET,       /* asking shardd for it */
        CREATE_BLOBS_POST,      /* giving it to the Ollama */
        CREATE_BLOBS_DONE,      /* result and message are final: done() is next */
} CreateBlobsPhase;

struct CreateBlobs {
        Manager *m;
        uint64_t id;
        ShimCreateBlobs blobs;
        size_t i;                       /* the blob in hand */
        CreateBlobsPhase phase;
        CreateBlobsDoneFn done;
        void *userdata;

        struct evhttp_connection *conn; /* to this node's Ollama, kept for every blob */
        int status;                     /* of the Ollama's last answer; 0: none */
        char error[256];                /* the error it gave, if any */
        sd_bus_slot *call;              /* GetBlob in flight */
        int fd;                         /* the blob being posted, -1 */
        uint64_t size;
        struct event *next;             /* continues the chain from the loop */

        int result;
        char message[512];
};

CreateBlobs *create_blobs_free(CreateBlobs *c) {
        if (!c)
                return NULL;
        sd_bus_slot_unref(c->call);
        /* Frees the request in flight without calling it back, and the mapping of the body. */
        if (c->conn)
                evhttp_connection_free(c->conn);
        if (c->fd >= 0)
                (void) close(c->fd);
        if (c->next)
                event_free(c->next);
        free(c);
        return NULL;
}

static void create_blobs_finish(CreateBlobs *c, int r, const char *message) {
        c->phase = CREATE_BLOBS_DONE;
        c->result = r;
        snprintf(c->message, sizeof(c->message), "%s", strempty(message));
        event_active(c->next, 0, 1);
}

/* Records the Ollama's answer (status, and the text of an error object) and continues from the
 * loop. req is NULL, or has no status, when there was no answer. */
static void create_blobs_http_cb(struct evhttp_request *req, void *userdata) {
        CreateBlobs *c = userdata;
        struct evbuffer *body = req ? evhttp_request_get_input_buffer(req) : NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *e;
        size_t len;

        c->status = req ? evhttp_request_get_response_code(req) : 0;
        c->error[0] = '\0';
        len = body ? evbuffer_get_length(body) : 0;
        if (c->status >= 400 && len > 0 && json_document_parse(evbuffer_pullup(body, -1), len, &o) >= 0 &&
            json_object_object_get_ex(o, "error", &e) && json_object_is_type(e, json_type_string))
                snprintf(c->error, sizeof(c->error), "%s", json_object_get_string(e));
        event_active(c->next, 0, 1);
}

/* Sends method /api/blobs/<blob i> to this node's Ollama; with c->fd, its bytes as the body. */
static int create_blobs_request(CreateBlobs *c, enum evhttp_cmd_type method) {
        const HttpBaseUrl *url = &c->m->upstream;
        struct evhttp_request *req;
        char target[sizeof(url->prefix) + 16 + SHIM_DIGEST_LEN];
        int r = 0;

        req = evhttp_request_new(create_blobs_http_cb, c);
        if (!req)
                return -ENOMEM;
        /* Ollama bound to loopback refuses other Host names (403). */
        if (evhttp_add_header(evhttp_request_get_output_headers(req), "Host", url->hostport) < 0)
                r = -ENOMEM;
        if (r >= 0 && c->fd >= 0 && c->size > 0) {
                struct evbuffer_file_segment *seg = evbuffer_file_segment_new(c->fd, 0, (ev_off_t) c->size, 0);

                /* The buffer keeps its own reference to the segment; c->fd stays ours. */
                if (!seg || evbuffer_add_file_segment(evhttp_request_get_output_buffer(req), seg, 0,
                                                      (ev_off_t) c->size) < 0)
                        r = -ENOMEM;
                if (seg)
                        evbuffer_file_segment_free(seg);
        }
        if (r >= 0 && c->fd >= 0)
                (void) evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                                         "application/octet-stream");
        if (r < 0) {
                evhttp_request_free(req);
                return r;
        }
        snprintf(target, sizeof(target), "%s/api/blobs/%s", url->prefix, c->blobs.digest[c->i]);
        /* On failure libevent frees the request. */
        if (evhttp_make_request(c->conn, req, method, target) < 0)
                return -ECONNREFUSED;
        return 0;
}

static void create_blobs_head(CreateBlobs *c) {
        int r;

        if (c->i >= c->blobs.n) {
                create_blobs_finish(c, 0, NULL);
                return;
        }
        c->phase = CREATE_BLOBS_HEAD;
        r = create_blobs_request(c, EVHTTP_REQ_HEAD);
        if (r < 0) {
                /* The relay tries the same Ollama and says what went wrong. */
                log_debug_errno(r, "Request %" PRIu64 ": cannot ask this node's Ollama for blobs: %m", c->id);
                create_blobs_finish(c, 0, NULL);
        }
}

static void create_blobs_fail(CreateBlobs *c, const char *why) {
        char message[sizeof(c->message)];

        snprintf(message, sizeof(message), "could not give blob %s from the mesh to this node's Ollama: %s",
                 c->blobs.digest[c->i], why);
        create_blobs_finish(c, -EIO, message);
}

static int create_blobs_get_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        CreateBlobs *c = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *digest = c->blobs.digest[c->i], *message;
        char why[160];
        struct stat st;
        int fd, r;

        c->call = sd_bus_slot_unref(c->call);
        if (e) {
                /* Not in the mesh (or not to be had now): the create goes to the Ollama as it is,
                 * which refuses it in its own words. */
                if (shim_collections_bus_error_status(e->name, e->message, &message) == 404)
                        log_debug("Request %" PRIu64 ": blob %s is not in the mesh either.", c->id, digest);
                else
                        log_notice("Request %" PRIu64 ": cannot get blob %s from %s: %s", c->id, digest,
                                   SHARDSTORE1_BUS_NAME, strempty(e->message));
                create_blobs_finish(c, 0, NULL);
                return 0;
        }
        r = sd_bus_message_read(reply, "h", &fd);
        if (r >= 0) {
                c->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                r = c->fd < 0 ? -errno : fstat(c->fd, &st) < 0 ? -errno : 0;
        }
        if (r < 0) {
                snprintf(why, sizeof(why), "the shard store's answer could not be read: %s", strerror(-r));
                create_blobs_fail(c, why);
                return 0;
        }
        if (!S_ISREG(st.st_mode) || (uint64_t) st.st_size > c->m->config->blob_max_size) {
                snprintf(why, sizeof(why), "the shard store gave %s", S_ISREG(st.st_mode) ? "a file over [shard] "
                         "blob_max_size" : "something other than a file");
                create_blobs_fail(c, why);
                return 0;
        }
        c->size = (uint64_t) st.st_size;
        c->phase = CREATE_BLOBS_POST;
        r = create_blobs_request(c, EVHTTP_REQ_POST);
        if (r < 0)
                create_blobs_fail(c, r == -ENOMEM ? "out of memory" : "could not send it");
        return 0;
}

static void create_blobs_get(CreateBlobs *c) {
        int r;

        c->phase = CREATE_BLOBS_GET;
        r = shardstore_call(c->m, &c->call, SHARDSTORE1_INTERFACE, "GetBlob", create_blobs_get_cb, c, "s",
                            c->blobs.digest[c->i]);
        if (r < 0) {
                log_notice_errno(r, "Request %" PRIu64 ": cannot ask %s for blob %s: %m", c->id, SHARDSTORE1_BUS_NAME,
                                 c->blobs.digest[c->i]);
                create_blobs_finish(c, 0, NULL);
        }
}

static void create_blobs_next_cb(evutil_socket_t fd, short what, void *userdata) {
        CreateBlobs *c = userdata;
        char why[320];

        switch (c->phase) {
        case CREATE_BLOBS_HEAD:
                if (c->status == 404)
                        create_blobs_get(c);
                else if (c->status == 200) {
                        c->i++;
                        create_blobs_head(c);
                } else {
                        /* No answer, or one that is not about the blob: the relay meets it too. */
                        log_debug("Request %" PRIu64 ": this node's Ollama answered %d to HEAD of blob %s.", c->id,
                                  c->status, c->blobs.digest[c->i]);
                        create_blobs_finish(c, 0, NULL);
                }
                break;
        case CREATE_BLOBS_POST:
                (void) close(c->fd);
                c->fd = -1;
                if (c->status != 200 && c->status != 201) {
                        if (c->status == 0)
                                snprintf(why, sizeof(why), "no answer");
                        else
                                snprintf(why, sizeof(why), "it answered %d%s%s", c->status, c->error[0] ? ": " : "",
                                         c->error);
                        create_blobs_fail(c, why);
                        break;
                }
                log_info("Request %" PRIu64 ": blob %s (%" PRIu64 " bytes) given from the mesh to this node's Ollama.",
                         c->id, c->blobs.digest[c->i], c->size);
                c->i++;
                create_blobs_head(c);
                break;
        case CREATE_BLOBS_DONE:
                c->done(c, c->result, c->result < 0 ? c->message : NULL, c->userdata);
                break;
        default:
                break;
        }
}

int create_blobs_new(Manager *m, uint64_t id, const ShimCreateBlobs *blobs, CreateBlobsDoneFn done, void *userdata,
                     CreateBlobs **ret) {
        CreateBlobs *c;

        assert(blobs->n > 0);
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = (CreateBlobs) { .m = m, .id = id, .blobs = *blobs, .done = done, .userdata = userdata, .fd = -1 };
        c->next = event_new(m->base, -1, 0, create_blobs_next_cb, c);
        c->conn = evhttp_connection_base_new(m->base, NULL, m->upstream.host, m->upstream.port);
        if (!c->next || !c->conn) {
                create_blobs_free(c);
                return -ENOMEM;
        }
        evhttp_connection_set_timeout_tv(c->conn, &m->upstream_tv);
        evhttp_connection_set_max_body_size(c->conn, CREATE_ANSWER_MAX);
        evhttp_connection_set_retries(c->conn, 0);
        create_blobs_head(c);
        *ret = c;
        return 0;
}
