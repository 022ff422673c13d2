/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Error replies the shim itself writes, and the JSON error pages that replace libevent's HTML
 * ones (413 body too large, 400 bad header, ...), so every error a client sees is Ollama style;
 * and the HEAD answer of the shim's own pages. */
#pragma once

#include <event2/http.h>

#include "shim-stream.h"

/* Counters and limits the replacement error pages need; set once at start-up. */
typedef struct ShimErrorPages {
        uint64_t max_body_size;
        uint64_t max_header_size;
        uint64_t *rejected_too_large;   /* incremented on each 413 */
        const char *served_by;          /* this node's name: X-Mycelia-Served-By of our own answers */
} ShimErrorPages;

void shim_error_pages_setup(const ShimErrorPages *pages);

/* Sends status with the error body in the given form (application/json; charset=utf-8), and
 * X-Mycelia-Served-By naming this node, which answered it. With close_connection the connection
 * is closed after the reply (the body was not read). */
void shim_reply_error(struct evhttp_request *req, int status, ShimErrorForm form, const char *message,
                      bool close_connection);
/* The same with one more header (WWW-Authenticate on a 401). */
void shim_reply_error_with_header(struct evhttp_request *req, int status, ShimErrorForm form, const char *message,
                                  bool close_connection, const char *header, const char *value);

/* The 200 answer to a HEAD of the shim's own pages (/metrics, the status, the topology page):
 * Content-Length says length, and no body goes out (libevent would send one). The caller set
 * the other headers. */
void shim_reply_head(struct evhttp_request *req, uint64_t length);
