/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Bearer tokens on the API listener (docs/api-auth.md): whether this listener needs them, the
 * tokens file read at start and again when it changes, and the check every request meets first.
 * One per process, like the listener it guards. */
#pragma once

#include <event2/http.h>

#include "config.h"
#include "shim-request.h"
#include "api-tokens.h"
#include "shimd-manager.h"

/* [shim] api_auth and tokens; logs and returns -EINVAL for an unknown mode. */
int shim_auth_setup(const MyceliaConfig *config);
/* Once the API listener is bound: decides from its address whether tokens are needed, says so
 * in the log, and reads the tokens file when they are. */
int shim_auth_start(Manager *m);
void shim_auth_done(void);

/* The first thing for each request, after its classification. On the API listener: a request
 * that needs a token and has no valid one is answered 401 (403 for a model or endpoint its token
 * may not use) and -EACCES is returned; otherwise 0, with the token's name in token ("" when none
 * was needed) and in the request's own X-Mycelia-Token header, where the rest of the shim finds
 * it (any the client sent is removed first). On the mesh listener: the name the entry node sent,
 * "" when none. */
int shim_auth_request(Manager *m, ShimListenerKind kind, struct evhttp_request *req, const ShimRequestClass *cls,
                      char token[static API_TOKEN_NAME_MAX + 1]);

/* The token name a request carries (X-Mycelia-Token as shim_auth_request() left it), or NULL. */
const char *shim_auth_request_token(struct evhttp_request *req);

/* Shim1.RejectedUnauthorized: 401s on the API listener. */
uint64_t shim_auth_rejected_unauthorized(void);
