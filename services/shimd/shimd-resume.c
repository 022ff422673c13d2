/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The evbuffer side of resuming a stream: the request parsed once, the upstream's bytes cut into
 * whole lines and frames for shim-resume.c, the continuation's body. docs/stream-resume.md. */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <strings.h>

#include "evbuffer-util.h"
#include "json-cleanup.h"
#include "log.h"
#include "shim-request.h"
#include "shimd-resume.h"

#define RESUME_ATTEMPTS_MAX 7

struct ProxyResume {
        ShimResume core;
        json_object *request;           /* the client's body, parsed */
        struct evbuffer *hold;          /* upstream bytes of a line not complete yet */
        struct evbuffer *frame;         /* SSE: the lines of the frame being read */
        struct evbuffer *body;          /* the continuation request's body; NULL: the client's */
        bool passthrough;               /* nothing left to keep or rewrite: bytes go as they come */
};

static bool header_says_no(const char *v) {
        return v && (strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0 ||
                     strcasecmp(v, "off") == 0);
}

bool proxy_resume_wanted(Manager *m, struct evhttp_request *req, const char *uri, uint64_t id) {
        bool ok;

        if (!m->config->resume || m->config->resume_attempts == 0)
                return false;
        (void) shim_resume_api_from_uri(uri, &ok);
        if (!ok)
                return false;
        if (header_says_no(evhttp_find_header(evhttp_request_get_input_headers(req), SHIM_RESUME_HEADER))) {
                log_debug("Request %" PRIu64 ": not resumable: " SHIM_RESUME_HEADER ": no.", id);
                return false;
        }
        return true;
}

ProxyResume *proxy_resume_new(Manager *m, const char *uri, uint64_t id, json_object *body) {
        const char *why;
        ProxyResume *pr;
        ShimResumeApi api;
        bool ok;

        api = shim_resume_api_from_uri(uri, &ok);
        why = !ok ? "not a chat or generate request"
            : body ? shim_resume_request_refusal(api, body)
            : "the body is not JSON, or too large to parse";
        if (why) {
                log_debug("Request %" PRIu64 ": not resumable: %s.", id, why);
                return NULL;
        }
        pr = calloc(1, sizeof(*pr));
        if (!pr || !(pr->hold = evbuffer_new()) || !(pr->frame = evbuffer_new())) {
                (void) proxy_resume_free(pr);
                log_oom();
                return NULL;
        }
        pr->request = json_object_get(body);
        shim_resume_init(&pr->core, api, (size_t) MIN(m->config->resume_max_bytes, (uint64_t) SIZE_MAX / 2),
                         MIN(m->config->resume_attempts, (unsigned) RESUME_ATTEMPTS_MAX));
        return pr;
}

ProxyResume *proxy_resume_free(ProxyResume *pr) {
        if (!pr)
                return NULL;
        shim_resume_done(&pr->core);
        json_object_put(pr->request);
        if (pr->hold)
                evbuffer_free(pr->hold);
        if (pr->frame)
                evbuffer_free(pr->frame);
        if (pr->body)
                evbuffer_free(pr->body);
        free(pr);
        return NULL;
}

void proxy_resume_attempt(ProxyResume *pr) {
        shim_resume_part_start(&pr->core, now_usec());
}

bool proxy_resume_possible(ProxyResume *pr, const char **ret_why) {
        return shim_resume_possible(&pr->core, ret_why);
}

void proxy_resume_flush(ProxyResume *pr, struct evbuffer *out) {
        (void) evbuffer_add_buffer(out, pr->frame);
        (void) evbuffer_add_buffer(out, pr->hold);
}

/* Nothing will be resumed and nothing rewritten: the rest goes through untouched. */
static void resume_passthrough(ProxyResume *pr, struct evbuffer *out) {
        proxy_resume_flush(pr, out);
        pr->passthrough = true;
}

bool proxy_resume_filter(ProxyResume *pr, struct evbuffer *in, struct evbuffer *out) {
        bool sse = pr->core.api == SHIM_RESUME_OPENAI_CHAT;
        usec_t now = now_usec();

        if (pr->passthrough) {
                (void) evbuffer_add_buffer(out, in);
                return false;
        }
        (void) evbuffer_add_buffer(pr->hold, in);
        for (;;) {
                struct evbuffer_ptr eol = evbuffer_search(pr->hold, "\n", 1, NULL);
                _cleanup_free_ char *rewritten = NULL;
                struct evbuffer *to = sse ? pr->frame : out;
                size_t len, rewritten_len;
                ShimResumeLine k;
                char *line;

                if (eol.pos < 0)
                        break;
                len = (size_t) eol.pos;
                line = (char *) evbuffer_pullup(pr->hold, (ssize_t) len + 1);
                if (!line) {
                        shim_resume_refuse(&pr->core, "out of memory");
                        resume_passthrough(pr, out);
                        return false;
                }
                k = shim_resume_line(&pr->core, line, len, now, &rewritten, &rewritten_len);
                if (k == SHIM_RESUME_LINE_FAILED && shim_resume_possible(&pr->core, NULL)) {
                        /* The error object and whatever follows stay here; so does the frame
                         * it is in. */
                        (void) evbuffer_drain(pr->hold, evbuffer_get_length(pr->hold));
                        (void) evbuffer_drain(pr->frame, evbuffer_get_length(pr->frame));
                        return true;
                }
                if (k == SHIM_RESUME_LINE_REWRITTEN) {
                        (void) evbuffer_drain(pr->hold, len + 1);
                        (void) evbuffer_add(to, rewritten, rewritten_len);
                        (void) evbuffer_add(to, "\n", 1);
                } else
                        (void) evbuffer_remove_buffer(pr->hold, to, len + 1);
                /* SSE: a blank line ends the frame; the client gets it whole. */
                if (sse && (len == 0 || (len == 1 && line[0] == '\r')))
                        (void) evbuffer_add_buffer(out, pr->frame);
        }
        if (evbuffer_get_length(pr->hold) + evbuffer_get_length(pr->frame) > SHIM_RESUME_LINE_MAX) {
                shim_resume_refuse(&pr->core, "a line or frame longer than 256 KiB");
                resume_passthrough(pr, out);
        } else if (pr->core.resumes == 0 && !shim_resume_possible(&pr->core, NULL))
                /* A continuation still rewrites its last lines; a first part that can no longer
                 * be resumed has nothing left to do here. */
                resume_passthrough(pr, out);
        return false;
}

struct evbuffer *proxy_resume_begin(ProxyResume *pr, int *ret_error) {
        _cleanup_free_ char *body = NULL;
        size_t len;
        int r;

        r = shim_resume_body(&pr->core, pr->request, &body, &len);
        if (r < 0) {
                *ret_error = r;
                return NULL;
        }
        if (!pr->body && !(pr->body = evbuffer_new())) {
                *ret_error = -ENOMEM;
                return NULL;
        }
        (void) evbuffer_drain(pr->body, evbuffer_get_length(pr->body));
        if (evbuffer_add(pr->body, body, len) < 0) {
                *ret_error = -ENOMEM;
                return NULL;
        }
        (void) evbuffer_drain(pr->hold, evbuffer_get_length(pr->hold));
        (void) evbuffer_drain(pr->frame, evbuffer_get_length(pr->frame));
        shim_resume_begin(&pr->core, now_usec());
        *ret_error = 0;
        return pr->body;
}

struct evbuffer *proxy_resume_body(ProxyResume *pr) {
        return pr ? pr->body : NULL;
}

uint64_t proxy_resume_tokens(ProxyResume *pr) {
        return pr->core.tokens;
}
