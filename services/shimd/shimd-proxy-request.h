/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One proxied request, shared by the two halves of the relay and by nothing else: its intake
 * (shimd-proxy-intake.c: what the request asks, where it may go) and its life on the wire
 * (shimd-proxy.c: attempts, the response streamed back, every way it ends). docs/shim-proxy.md. */
#pragma once

#include <event2/event_struct.h>
#include <event2/http.h>
#include <json-c/json.h>

#include "api-tokens.h"
#include "http-url.h"
#include "shim-affinity.h"
#include "shim-http.h"
#include "shim-request.h"
#include "shim-retry.h"
#include "shim-stream.h"
#include "shimd-audit.h"
#include "shimd-create.h"
#include "shimd-manager.h"
#include "shimd-resume.h"
#include "shimd-upstream.h"

struct ProxyRequest {
        Manager *m;
        LIST_ENTRY(ProxyRequest) link;

        uint64_t id;
        char peer[64];
        char token[API_TOKEN_NAME_MAX + 1];    /* the client's token's name, "" when none */
        ShimListenerKind listener;
        ShimRequestClass cls;
        enum evhttp_cmd_type method;
        char *uri;
        char *model;            /* routed requests only */
        char *metrics_model;    /* mesh listener: the body's "model", for GET /metrics only (never routed) */
        RoutePolicy policy;     /* X-Mycelia-Policy, or _ROUTE_POLICY_INVALID: the table's */
        char *pin;              /* X-Mycelia-Node: the only node this request may go to */
        /* GET /api/tags or /v1/models: this node's list, read whole, gets the mesh's models
         * (shim-tags.c) before it goes to the client. */
        bool merge_tags;
        struct evbuffer *collect;       /* the list while it is read; NULL otherwise */
        AffinityChain chain;    /* gravity: the request's context (empty when none) */
        CreateBlobs *create_blobs;      /* /api/create here: its blobs, brought in first */
        json_object *body_json; /* the body parsed, while routing decides (proxy_body_json()) */
        bool body_parsed;
        ProxyResume *resume;    /* a stream that may continue on another node (shimd-resume.c) */
        struct evbuffer *resume_out;    /* what the resume filter lets through, for the client */
        bool resume_cut;        /* the filter saw the upstream's stream fail: resume it */
        bool resume_stall_armed; /* the attempt's read timeout is [router] resume_stall */

        struct evhttp_request *client;
        struct evhttp_connection *client_evcon;

        /* The attempt in progress. */
        char node_id[NODE_ID_LEN + 1];  /* "" when not routed (config upstream) */
        char served_by[65];             /* the name of the node answering */
        char *address;
        HttpBaseUrl url;
        UpstreamConn *up;
        bool up_reused;
        bool up_connected;
        bool up_in_flight;      /* counted in the router cache's in-flight */
        bool up_head_done;      /* the final response head was read */
        bool up_keep_alive;     /* the response allows another request on the connection */
        bool force_fresh;
        bool node_lost;         /* the attempt was cut because its node left the table */
        int up_error;           /* enum evhttp_request_error, -1 when none (or connect failed) */
        usec_t wait_usec;       /* the target cools down: the attempt starts after this long */
        struct event wait_event;
        ShimHttpBody body;
        ShimRetry retry;

        /* The response. */
        struct event flush_event;       /* writes what this iteration queued for the client */
        bool started;
        bool paused;
        struct evbuffer *pending; /* gathered while the client is behind, NULL until needed */
        bool content_length;
        int status;
        ShimStream stream;
        usec_t t_start;
        usec_t t_attempt;
        usec_t t_first_byte;
        ShimAuditState audit;   /* the journal entry written when p ends (docs/audit.md) */
};

/* A request that came in on listener, registered with the manager (counted in requests_active);
 * NULL when out of memory (nothing was registered). token: the name of the client's token, "". */
ProxyRequest *proxy_new(Manager *m, ShimListenerKind listener, struct evhttp_request *req, const ShimRequestClass *cls,
                        const char *token);
/* Every way a request ends comes here: the audit entry, the metrics, the manager's count. */
void proxy_free(ProxyRequest *p);

/* Where it goes first (routed by model, pinned, or this node's Ollama); -ENOMEM. */
int proxy_pick_first(ProxyRequest *p);
/* Whether the target is a peer (the request is signed and marked as a hop). */
bool proxy_target_is_peer(const ProxyRequest *p);
/* From now on the client going away cancels the request. */
void proxy_watch_client(ProxyRequest *p);
/* Sends it to the target (after a cooling wait if the table says so). */
void proxy_start(ProxyRequest *p);

/* The endpoint's error form (Ollama's, or OpenAI's on /v1/). */
ShimErrorForm proxy_error_form(const ProxyRequest *p);
/* Ends p before anything reached the client: status with message, then frees p. */
void proxy_fail(ProxyRequest *p, int status, const char *message);
/* Ends p with the 502 that says which upstream failed how before it answered. */
void proxy_fail_before_start(ProxyRequest *p);
