/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A stream that may be resumed mid-answer (docs/stream-resume.md): the request kept parsed, the
 * upstream's bytes cut into whole lines (NDJSON) or frames (SSE) before they reach the client, so
 * that a cut never leaves half a line there, and the body of the continuation request.
 * shimd-proxy.c owns one per resumable request; shim-resume.c decides. */
#pragma once

#include <event2/buffer.h>
#include <event2/http.h>

#include "shim-resume.h"
#include "shimd-manager.h"

typedef struct ProxyResume ProxyResume;

/* Whether a routed request on the API listener is one to resume: [router] resume, a chat or
 * generate endpoint, no "X-Mycelia-Resume: no". Cheap: the body is not read. */
bool proxy_resume_wanted(Manager *m, struct evhttp_request *req, const char *uri, uint64_t id);

/* A ProxyResume when the request may be resumed (streamed, no format, raw generate, ...), else
 * NULL (why at debug level). body: the client's body parsed (NULL: not JSON, or too large); a
 * reference is taken. */
ProxyResume *proxy_resume_new(Manager *m, const char *uri, uint64_t id, json_object *body);
ProxyResume *proxy_resume_free(ProxyResume *pr);

/* An attempt (first or continuation) begins. */
void proxy_resume_attempt(ProxyResume *pr);

/* Moves what the client may see now from in to out: whole lines or frames, rewritten in a
 * continuation. Returns true when the upstream's stream failed (its error object, held back)
 * and the stream can be resumed: out has what precedes it, the rest is dropped. */
bool proxy_resume_filter(ProxyResume *pr, struct evbuffer *in, struct evbuffer *out);

/* The upstream's body ended: whatever is held goes to out as it is. */
void proxy_resume_flush(ProxyResume *pr, struct evbuffer *out);

/* Whether the stream can be resumed now (why not: *ret_why, static). */
bool proxy_resume_possible(ProxyResume *pr, const char **ret_why);

/* The next part begins: returns the continuation request's body (owned by pr, valid until the
 * next call or the free), or NULL when it cannot be made (-ENOSPC: nothing left to produce). */
struct evbuffer *proxy_resume_begin(ProxyResume *pr, int *ret_error);

/* The body of the current attempt: the continuation's, or NULL for the client's own. */
struct evbuffer *proxy_resume_body(ProxyResume *pr);

/* The tokens relayed so far, for the log. */
uint64_t proxy_resume_tokens(ProxyResume *pr);
