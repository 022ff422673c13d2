/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the shim decides about a request before any I/O: routed by model or served locally,
 * streaming or not, Ollama or OpenAI error form, the model named in the body, which headers
 * are hop-by-hop, where an upstream URL points, and the request limits. Pure. */
#pragma once

#include <event2/http.h>

#include <sys/uio.h>

#include "http-url.h"
#include "macro.h"

/* Longest model name taken from a body; longer ones are served locally (Ollama rejects them). */
#define SHIM_MODEL_NAME_MAX 512

/* Headers a client may send to steer routing, and the one every proxied answer carries
 * (docs/routing-policies.md). */
#define SHIM_POLICY_HEADER "X-Mycelia-Policy"
#define SHIM_AFFINITY_HEADER "X-Mycelia-Affinity"
#define SHIM_SERVED_BY_HEADER "X-Mycelia-Served-By"
/* Pins a request to one node (its id or name): inference fails with 404 when that node does not
 * serve the model; model management (pull, create, delete, ...) acts there instead of here. */
#define SHIM_NODE_HEADER "X-Mycelia-Node"
/* Bodies larger than this are not parsed for their context: they route without gravity. */
#define SHIM_AFFINITY_BODY_MAX (8U << 20)

typedef enum ShimRouting {
        SHIM_ROUTING_LOCAL,     /* this node's own Ollama answers */
        SHIM_ROUTING_BY_MODEL,  /* the node is picked by the "model" in the JSON body */
} ShimRouting;

typedef enum ShimApi {
        SHIM_API_OLLAMA,        /* errors are {"error":"..."} */
        SHIM_API_OPENAI,        /* /v1/...: errors are {"error":{"message":...,"type":...}} */
} ShimApi;

typedef struct ShimRequestClass {
        ShimRouting routing;
        ShimApi api;
        bool streams;           /* the endpoint streams by default (stream absent or true) */
} ShimRequestClass;

/* Whether the request target uri (query allowed, absolute form too) is path. */
bool shim_uri_is(const char *uri, const char *path);

/* method as on the wire ("POST"); uri is the request target, query allowed. */
void shim_request_classify(const char *method, const char *uri, ShimRequestClass *ret);

/* Reads the top-level "model" from a JSON object given as pieces (an evbuffer's chunks), in
 * one pass without building a tree, as Go's encoding/json decoder (Ollama's) would assign it:
 * the last of duplicate keys wins, null leaves it alone, keys match ignoring case, escapes are
 * decoded; bytes after the object are not read. *ret is malloc'ed. -EINVAL: not a valid JSON
 * object (Ollama answers 400); -ENOENT: no non-empty string model, or a "model" that is not a
 * string; -ENAMETOOLONG: longer than SHIM_MODEL_NAME_MAX. */
int shim_request_extract_model(const struct iovec *iov, size_t n_iov, char **ret);

/* The headers the proxy treats specially, told apart with one pass over a name. */
typedef enum ShimHeader {
        SHIM_HEADER_OTHER,
        SHIM_HEADER_HOP_BY_HOP,         /* the fixed hop-by-hop set, Connection aside */
        SHIM_HEADER_CONNECTION,
        SHIM_HEADER_CONTENT_LENGTH,
        SHIM_HEADER_CONTENT_TYPE,
        SHIM_HEADER_HOST,
        SHIM_HEADER_EXPECT,
        SHIM_HEADER_AUTHORIZATION,      /* the client's credentials for this shim: never forwarded */
} ShimHeader;

ShimHeader shim_header_classify(const char *name);

/* Hop-by-hop headers (RFC 9110 7.6.1) are not forwarded: the fixed set, plus any header named
 * in the message's own Connection header (connection: its value, may be NULL). */
bool shim_header_is_hop_by_hop(const char *name, const char *connection);

/* Strict Content-Length: digits only, no overflow. */
int shim_content_length_parse(const char *value, uint64_t *ret);

/* The 413 message, Ollama style. content_length: the request's header value or NULL (chunked). */
void shim_limit_body_message(const char *content_length, uint64_t max, char *buf, size_t size);
/* True when another request would pass the configured number of concurrent requests. */
bool shim_limit_requests_reached(unsigned active, unsigned max);

/* Ollama's exact 503 text (two spaces). */
#define SHIM_BUSY_MESSAGE "server busy, please try again.  maximum pending requests exceeded"

/* What a request asks of a token restricted to models. */
typedef enum ShimTokenScope {
        SHIM_TOKEN_SCOPE_OPEN,  /* needs no token at all: GET / and HEAD / (liveness), OPTIONS (CORS) */
        SHIM_TOKEN_SCOPE_ANY,   /* any token: lists, version, the collections API */
        SHIM_TOKEN_SCOPE_MODEL, /* the "model" of the body must be one of the token's */
        SHIM_TOKEN_SCOPE_MANAGE,/* pulls, pushes, creates, copies, deletes models, blobs: unrestricted tokens only */
} ShimTokenScope;

/* method as on the wire, uri the request target (query allowed). */
ShimTokenScope shim_token_scope(const char *method, const char *uri);

/* libevent's method as on the wire ("POST"); "?" for one it does not name. */
const char *shim_method_name(enum evhttp_cmd_type t);
