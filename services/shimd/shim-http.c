/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The upstream response parser: status line and headers by hand (no sscanf, no copies), and
 * the body framing decoder, incremental over any split of the bytes. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "hex.h"
#include "shim-http.h"

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

static bool is_tchar(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

static bool span_eq(const char *data, uint32_t off, uint32_t len, const char *s) {
        return strlen(s) == len && strncasecmp(data + off, s, len) == 0;
}

/* Whether the comma-separated list data[off, off+len) holds token (any case). */
static bool list_has(const char *data, uint32_t off, uint32_t len, const char *token, bool last_only) {
        size_t tl = strlen(token);
        const char *p = data + off, *end = data + off + len;
        bool found = false;

        while (p < end) {
                const char *s, *e;

                while (p < end && (is_blank(*p) || *p == ','))
                        p++;
                s = p;
                while (p < end && *p != ',')
                        p++;
                e = p;
                while (e > s && is_blank(e[-1]))
                        e--;
                if (e == s)
                        continue;
                found = (size_t) (e - s) == tl && strncasecmp(s, token, tl) == 0;
                if (found && !last_only)
                        return true;
        }
        return found;
}

static int parse_content_length(const char *s, size_t len, uint64_t *ret) {
        uint64_t v = 0;

        if (len == 0)
                return -EBADMSG;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EBADMSG;
                if (v > (UINT64_MAX - 9) / 10)
                        return -EBADMSG;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        *ret = v;
        return 0;
}

/* Finds the end of the line starting at i: the index of '\n', or -1. */
static ssize_t line_end(const char *data, size_t i, size_t len) {
        const char *nl = memchr(data + i, '\n', len - i);

        return nl ? nl - data : -1;
}

ssize_t shim_http_response_parse(const char *data, size_t len, ShimHttpResponse *ret) {
        size_t scan = MIN(len, (size_t) SHIM_HTTP_HEAD_MAX), i;
        ssize_t e;
        bool keep_alive_token = false, close_token = false;

        ret->n_headers = 0;
        ret->has_content_length = ret->chunked = ret->transfer_encoding = false;
        ret->content_length = 0;
        ret->content_type = ret->connection = -1;

        /* Status line: HTTP/1.x NNN reason */
        e = line_end(data, 0, scan);
        if (scan >= 8 && memcmp(data, "HTTP/1.", 7) != 0)
                return -EBADMSG;
        if (scan < 8 && memcmp(data, "HTTP/1.", MIN(scan, (size_t) 7)) != 0)
                return -EBADMSG;
        if (e < 0)
                return len >= SHIM_HTTP_HEAD_MAX ? -E2BIG : -EAGAIN;
        if (e < 12 || data[7] < '0' || data[7] > '9' || data[8] != ' ')
                return -EBADMSG;
        ret->major = 1;
        ret->minor = (unsigned) (data[7] - '0');
        ret->status = 0;
        for (i = 9; i < 12; i++) {
                if (data[i] < '0' || data[i] > '9')
                        return -EBADMSG;
                ret->status = ret->status * 10 + (data[i] - '0');
        }
        if (ret->status < 100)
                return -EBADMSG;
        {
                size_t s = 12, t = (size_t) e;

                if (t > s && data[t - 1] == '\r')
                        t--;
                if (s < t && data[s] != ' ')
                        return -EBADMSG;
                while (s < t && data[s] == ' ')
                        s++;
                ret->reason = (uint32_t) s;
                ret->reason_len = (uint32_t) (t - s);
        }

        /* Headers until an empty line. */
        i = (size_t) e + 1;
        for (;;) {
                ShimHttpHeader *h;
                size_t s, t, c;

                e = line_end(data, i, scan);
                if (e < 0)
                        return len >= SHIM_HTTP_HEAD_MAX ? -E2BIG : -EAGAIN;
                t = (size_t) e;
                if (t > i && data[t - 1] == '\r')
                        t--;
                if (t == i) {
                        ret->head_len = (size_t) e + 1;
                        break;
                }
                if (is_blank(data[i]))
                        return -EBADMSG;        /* obsolete line folding */
                if (ret->n_headers >= SHIM_HTTP_HEADERS_MAX)
                        return -E2BIG;
                for (c = i; c < t && is_tchar(data[c]); c++)
                        ;
                if (c == i || c >= t || data[c] != ':')
                        return -EBADMSG;
                h = &ret->headers[ret->n_headers];
                h->name = (uint32_t) i;
                h->name_len = (uint32_t) (c - i);
                s = c + 1;
                while (s < t && is_blank(data[s]))
                        s++;
                while (t > s && is_blank(data[t - 1]))
                        t--;
                for (size_t k = s; k < t; k++)
                        if ((data[k] < 0x20 && data[k] != '\t') || data[k] == 0x7f)
                                return -EBADMSG;
                h->value = (uint32_t) s;
                h->value_len = (uint32_t) (t - s);

                if (span_eq(data, h->name, h->name_len, "Content-Length")) {
                        uint64_t v;

                        if (parse_content_length(data + s, t - s, &v) < 0)
                                return -EBADMSG;
                        if (ret->has_content_length && v != ret->content_length)
                                return -EBADMSG;
                        ret->has_content_length = true;
                        ret->content_length = v;
                } else if (span_eq(data, h->name, h->name_len, "Transfer-Encoding")) {
                        ret->transfer_encoding = true;
                        ret->chunked = list_has(data, h->value, h->value_len, "chunked", true);
                } else if (span_eq(data, h->name, h->name_len, "Connection")) {
                        if (ret->connection < 0)
                                ret->connection = (int) ret->n_headers;
                        close_token = close_token || list_has(data, h->value, h->value_len, "close", false);
                        keep_alive_token = keep_alive_token ||
                                           list_has(data, h->value, h->value_len, "keep-alive", false);
                } else if (span_eq(data, h->name, h->name_len, "Content-Type")) {
                        if (ret->content_type < 0)
                                ret->content_type = (int) ret->n_headers;
                }
                ret->n_headers++;
                i = (size_t) e + 1;
        }

        ret->keep_alive = !close_token && (ret->minor >= 1 || keep_alive_token);
        /* A body delimited by the connection's end, or one with both framings (RFC 9112 6.3),
         * leaves the connection unusable afterwards. */
        if (ret->transfer_encoding && (!ret->chunked || ret->has_content_length))
                ret->keep_alive = false;
        return (ssize_t) ret->head_len;
}

ShimHttpBodyKind shim_http_response_body_kind(const ShimHttpResponse *r, bool head_request) {
        if (head_request || r->status < 200 || r->status == 204 || r->status == 304)
                return SHIM_HTTP_BODY_NONE;
        if (r->transfer_encoding)
                return r->chunked ? SHIM_HTTP_BODY_CHUNKED : SHIM_HTTP_BODY_EOF;
        if (r->has_content_length)
                return r->content_length > 0 ? SHIM_HTTP_BODY_LENGTH : SHIM_HTTP_BODY_NONE;
        return SHIM_HTTP_BODY_EOF;
}

enum {
        CHUNK_SIZE,             /* hex digits */
        CHUNK_EXT,              /* ;extensions until the line end */
        CHUNK_SIZE_LF,          /* '\r' seen, '\n' expected */
        CHUNK_DATA,
        CHUNK_DATA_CR,          /* after the data: "\r\n" */
        CHUNK_DATA_LF,
        CHUNK_TRAILER,          /* a trailer line, or the final empty line */
};

void shim_http_body_init(ShimHttpBody *b, ShimHttpBodyKind kind, uint64_t content_length) {
        *b = (ShimHttpBody) {
                .kind = kind,
                .left = kind == SHIM_HTTP_BODY_LENGTH ? content_length : 0,
                .state = CHUNK_SIZE,
                .done = kind == SHIM_HTTP_BODY_NONE,
        };
}

ssize_t shim_http_body_feed(ShimHttpBody *b, const char *data, size_t len, size_t *ret_payload) {
        size_t i = 0;

        *ret_payload = 0;
        if (b->done || len == 0)
                return 0;

        switch (b->kind) {
        case SHIM_HTTP_BODY_EOF:
                *ret_payload = len;
                return (ssize_t) len;
        case SHIM_HTTP_BODY_LENGTH: {
                size_t n = (size_t) MIN((uint64_t) len, b->left);

                b->left -= n;
                b->done = b->left == 0;
                *ret_payload = n;
                return (ssize_t) n;
        }
        case SHIM_HTTP_BODY_CHUNKED:
                break;
        default:
                return 0;
        }

        if (b->state == CHUNK_DATA) {
                size_t n = (size_t) MIN((uint64_t) len, b->left);

                b->left -= n;
                if (b->left == 0)
                        b->state = CHUNK_DATA_CR;
                *ret_payload = n;
                return (ssize_t) n;
        }

        while (i < len && b->state != CHUNK_DATA && !b->done) {
                char c = data[i++];

                switch (b->state) {
                case CHUNK_SIZE: {
                        int v = unhexchar(c);

                        if (v >= 0) {
                                if (b->left > (UINT64_MAX >> 4))
                                        return -E2BIG;
                                b->left = (b->left << 4) | (uint64_t) v;
                                b->digits = true;
                                break;
                        }
                        if (!b->digits)
                                return -EBADMSG;
                        if (c == ';' || is_blank(c))
                                b->state = CHUNK_EXT;
                        else if (c == '\r')
                                b->state = CHUNK_SIZE_LF;
                        else if (c == '\n')
                                goto size_done;
                        else
                                return -EBADMSG;
                        break;
                }
                case CHUNK_EXT:
                        if (++b->line_len > SHIM_HTTP_CHUNK_LINE_MAX)
                                return -E2BIG;
                        if (c == '\r')
                                b->state = CHUNK_SIZE_LF;
                        else if (c == '\n')
                                goto size_done;
                        break;
                case CHUNK_SIZE_LF:
                        if (c != '\n')
                                return -EBADMSG;
                size_done:
                        b->digits = false;
                        b->line_len = 0;
                        if (b->left == 0)
                                b->state = CHUNK_TRAILER;
                        else
                                b->state = CHUNK_DATA;
                        break;
                case CHUNK_DATA_CR:
                        if (c == '\r')
                                b->state = CHUNK_DATA_LF;
                        else if (c == '\n')
                                b->state = CHUNK_SIZE;
                        else
                                return -EBADMSG;
                        break;
                case CHUNK_DATA_LF:
                        if (c != '\n')
                                return -EBADMSG;
                        b->state = CHUNK_SIZE;
                        break;
                case CHUNK_TRAILER:
                        if (++b->trailer_len > SHIM_HTTP_TRAILERS_MAX)
                                return -E2BIG;
                        if (c == '\n') {
                                if (b->line_len == 0)
                                        b->done = true;
                                b->line_len = 0;
                        } else if (c != '\r')
                                b->line_len++;
                        break;
                default:
                        return -EBADMSG;
                }
        }
        return (ssize_t) i;
}
