/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The decisions of the shim's collections API (/api/mycelia/, docs/collections-api.md), with no
 * I/O: which route a path names and with which collection and document, which methods it takes,
 * what a ShardStore1 or embedding failure becomes for the client, and the JSON around them. */
#pragma once

#include <json-c/json.h>

#include "http-url.h"
#include "macro.h"

/* Every path under this prefix (and the prefix itself) is the collections API's. */
#define SHIM_COLLECTIONS_PREFIX "/api/mycelia"

/* What shardd allows (docs/shardd.md "The bus API"), checked here too so that a request that
 * cannot succeed fails before it costs an embedding. */
#define SHIM_COLLECTIONS_NAME_MAX 128
#define SHIM_COLLECTIONS_ID_MAX 256
#define SHIM_COLLECTIONS_DOCS_MAX 4096
#define SHIM_COLLECTIONS_BAD_NAME "invalid collection name: 1 to 128 of A-Z a-z 0-9 . _ -, not starting with '.'"

/* The text embedded to learn a model's dimension when a collection is created without one. */
#define SHIM_COLLECTIONS_PROBE_TEXT "mycelia dimension probe"

/* What the client reads when shardd is not on the bus, and for D-Bus errors that are not
 * ShardStore1's own (their messages may name internals). */
#define SHIM_COLLECTIONS_NOT_RUNNING "the shard store is not running"
#define SHIM_COLLECTIONS_FAILED "the shard store failed to answer"

typedef enum ShimCollectionsRoute {
        SHIM_COLLECTIONS_LIST,          /* /api/mycelia/collections: GET, POST */
        SHIM_COLLECTIONS_ONE,           /* .../collections/{name}: DELETE */
        SHIM_COLLECTIONS_DOCUMENTS,     /* .../collections/{name}/documents: POST */
        SHIM_COLLECTIONS_DOCUMENT,      /* .../collections/{name}/documents/{id}: GET, DELETE */
        SHIM_COLLECTIONS_QUERY,         /* .../collections/{name}/query: POST */
        _SHIM_COLLECTIONS_ROUTE_MAX,
} ShimCollectionsRoute;

typedef struct ShimCollectionsPath {
        ShimCollectionsRoute route;
        char *name;             /* percent-decoded and checked; NULL for the list */
        char *id;               /* percent-decoded and checked; the document route only */
} ShimCollectionsPath;

/* Whether path (a request's path, without query) belongs to the collections API. */
bool shim_collections_path_is_ours(const char *path);

/* Parses a path of the collections API (still percent-encoded, without query). -ENOENT: no such
 * route (404); -EINVAL: a malformed escape, a bad collection name or document id (400); -ENOMEM.
 * *ret_error: the client's message on -ENOENT and -EINVAL (static). */
int shim_collections_path_parse(const char *path, ShimCollectionsPath *ret, const char **ret_error);
void shim_collections_path_done(ShimCollectionsPath *p);

/* Whether a route takes method ("GET", as on the wire); otherwise 405. */
bool shim_collections_method_allowed(ShimCollectionsRoute route, const char *method);

/* A collection name as shardd accepts it: 1 to 128 of A-Z a-z 0-9 . _ -, not starting with '.'. */
bool shim_collections_name_valid(const char *name);

/* The HTTP status for a failed ShardStore1 call (name: the D-Bus error's name, message: its
 * message). *ret_message is message for ShardStore1's own errors, a fixed text for the rest. */
int shim_collections_bus_error_status(const char *name, const char *message, const char **ret_message);

/* The HTTP status for an embedding request that answered status (0: no answer at all): the
 * client's mistakes stay 4xx, a busy mesh 503, anything else 502. */
int shim_collections_embed_error_status(int status);

/* Where this shim's own API answers over loopback, from the address its API listener bound
 * ("ADDR:PORT", "[ADDR]:PORT"): an unspecified address (0.0.0.0, ::) is reached on loopback. */
int shim_collections_self_url(const char *api_address, HttpBaseUrl *ret);

/* POST /api/mycelia/collections. */
typedef struct ShimCollectionSpec {
        const char *name;       /* borrowed from the body */
        uint32_t dimension;     /* 0: not given, learnt from the model */
        const char *metric;     /* "" when not given (shardd's default, cosine) */
        const char *model;      /* "" when none */
} ShimCollectionSpec;

/* -EINVAL with *ret_error (static) when the body is not {"name", "dimension"?, "metric"?,
 * "model"?} with a valid name, a whole dimension, and a model when there is no dimension. */
int shim_collections_create_parse(json_object *body, ShimCollectionSpec *ret, const char **ret_error);

/* A collection as the API shows it; documents < 0: left out. */
typedef struct ShimCollectionInfo {
        const char *name;
        uint32_t dimension;
        const char *metric;
        const char *model;      /* "" or NULL: none (null) */
        int64_t documents;
} ShimCollectionInfo;

json_object *shim_collections_info_to_json(const ShimCollectionInfo *c);

/* The documents of a Put body {"documents": [...]} that have a "text" and no "embedding": their
 * indexes in *ret_indexes (malloc()ed, NULL when none) and texts in *ret_texts (borrowed from
 * body). -EINVAL (400) or -E2BIG (413, more than SHIM_COLLECTIONS_DOCS_MAX) with *ret_error
 * (malloc()ed) for a body that is not that shape or a document with neither; -ENOMEM. */
int shim_collections_documents_plan(json_object *body, size_t **ret_indexes, const char ***ret_texts, size_t *ret_n,
                                    char **ret_error);

/* The text of a query {"embedding"?, "text"?, "k"?, "where"?} that has no "embedding", in
 * *ret_text (borrowed), or NULL when it has one. -EINVAL with *ret_error (static) when it has
 * neither or the body is not an object. */
int shim_collections_query_plan(json_object *body, const char **ret_text, const char **ret_error);

/* The /api/embed request for texts: {"model", "input": [...]}, malloc()ed in *ret. */
int shim_collections_embed_body(const char *model, const char *const *texts, size_t n, char **ret, size_t *ret_size);

/* The "embeddings" array of an /api/embed answer (borrowed), when it holds n non-empty arrays of
 * numbers of one length; -EBADMSG otherwise. */
int shim_collections_embeddings(json_object *answer, size_t n, json_object **ret);

/* Sets "embedding" of body's documents[indexes[i]] to embeddings[i]. */
int shim_collections_documents_fill(json_object *body, const size_t *indexes, size_t n, json_object *embeddings);

/* The "error" string of an Ollama error answer (borrowed), or NULL. */
const char *shim_collections_answer_error(json_object *answer);
