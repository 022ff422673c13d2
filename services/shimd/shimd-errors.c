/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* JSON error replies. libevent 2.1 answers some errors itself (413 before the body is read,
 * 400 for a bad or oversized header, 417, 501) through evhttp_send_error(), which writes HTML
 * and offers no hook. This file defines evhttp_send_error(): the dynamic linker binds
 * libevent's own calls to it (they go through its PLT), so those answers become Ollama-style
 * JSON while libevent keeps deciding when to send them. See docs/shim-limits.md. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <inttypes.h>
#include <stdio.h>

#include "shim-request.h"
#include "shimd-errors.h"

static ShimErrorPages error_pages = {
        .max_body_size = UINT64_MAX,
        .max_header_size = UINT64_MAX,
};

void shim_error_pages_setup(const ShimErrorPages *pages) {
        error_pages = *pages;
}

void shim_reply_error(struct evhttp_request *req, int status, ShimErrorForm form, const char *message,
                      bool close_connection) {
        shim_reply_error_with_header(req, status, form, message, close_connection, NULL, NULL);
}

void shim_reply_error_with_header(struct evhttp_request *req, int status, ShimErrorForm form, const char *message,
                                  bool close_connection, const char *header, const char *value) {
        static const char oom_body[] = "{\"error\":\"out of memory\"}";
        _cleanup_free_ char *body = NULL;
        struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
        struct evbuffer *buf;

        buf = evbuffer_new();
        if (!buf) {
                /* Nothing can be said: drop the connection, as libevent does. */
                if (evhttp_request_get_connection(req))
                        evhttp_connection_free(evhttp_request_get_connection(req));
                return;
        }
        if (shim_error_format(form, status, message, &body) < 0)
                (void) evbuffer_add(buf, oom_body, sizeof(oom_body) - 1);
        else
                (void) evbuffer_add(buf, body, strlen(body));

        evhttp_clear_headers(headers);
        evhttp_add_header(headers, "Content-Type", "application/json; charset=utf-8");
        if (!isempty(error_pages.served_by))
                evhttp_add_header(headers, SHIM_SERVED_BY_HEADER, error_pages.served_by);
        if (header)
                evhttp_add_header(headers, header, value);
        if (close_connection)
                evhttp_add_header(headers, "Connection", "close");
        evhttp_send_reply(req, status, NULL, buf);
        evbuffer_free(buf);
}

static const char *status_message(int status) {
        switch (status) {
        case HTTP_NOTFOUND:
                return "not found";
        case HTTP_BADMETHOD:
                return "method not allowed";
        case 417:
                return "expectation failed: only \"Expect: 100-continue\" is supported";
        case HTTP_NOTIMPLEMENTED:
                return "method not implemented";
        case HTTP_SERVUNAVAIL:
                return "service unavailable";
        default:
                return NULL;
        }
}

/* Replaces libevent's HTML error page (same signature as in event2/http.h). */
void evhttp_send_error(struct evhttp_request *req, int error, const char *reason) {
        char message[256];
        const char *m;

        switch (error) {
        case HTTP_ENTITYTOOLARGE:
                shim_limit_body_message(evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Length"),
                                        error_pages.max_body_size, message, sizeof(message));
                if (error_pages.rejected_too_large)
                        (*error_pages.rejected_too_large)++;
                break;
        case HTTP_BADREQUEST:
                snprintf(message, sizeof(message),
                         "bad request: malformed request line or header, or header larger than %" PRIu64 " bytes",
                         error_pages.max_header_size);
                break;
        default:
                m = status_message(error);
                if (m)
                        snprintf(message, sizeof(message), "%s", m);
                else if (reason)
                        snprintf(message, sizeof(message), "%s", reason);
                else
                        snprintf(message, sizeof(message), "HTTP error %d", error);
        }

        /* A request that failed on its first line has no version yet; answer in HTTP/1.1 as
         * libevent's own page does. */
        if (!req->major) {
                req->major = 1;
                req->minor = 1;
        }
        /* libevent calls this when it will not read the rest of the request: close after. */
        shim_reply_error(req, error, SHIM_ERROR_JSON, message, true);
}

void shim_reply_head(struct evhttp_request *req, uint64_t length) {
        char value[32];

        snprintf(value, sizeof(value), "%" PRIu64, length);
        (void) evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", value);
        evhttp_send_reply(req, 200, NULL, NULL);
}
