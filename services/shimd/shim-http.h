/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The shim's HTTP/1.1 response parser for the upstream side: status line, headers as offsets
 * into the caller's buffer (hard limits on size and count), and the body framing decoder
 * (Content-Length, chunked, until EOF, none). Pure: bytes in, offsets and counts out. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

/* Hard limits on a response head (status line, headers, blank line). */
#define SHIM_HTTP_HEAD_MAX (64 * 1024)
#define SHIM_HTTP_HEADERS_MAX 100
/* Longest chunk-size line (extensions included) and trailer section of a chunked body. */
#define SHIM_HTTP_CHUNK_LINE_MAX 4096
#define SHIM_HTTP_TRAILERS_MAX (16 * 1024)

typedef struct ShimHttpHeader {
        uint32_t name, name_len;        /* offsets into the head */
        uint32_t value, value_len;      /* value without surrounding blanks */
} ShimHttpHeader;

typedef enum ShimHttpBodyKind {
        SHIM_HTTP_BODY_NONE,
        SHIM_HTTP_BODY_LENGTH,
        SHIM_HTTP_BODY_CHUNKED,
        SHIM_HTTP_BODY_EOF,
} ShimHttpBodyKind;

typedef struct ShimHttpResponse {
        unsigned major, minor;
        int status;
        uint32_t reason, reason_len;
        ShimHttpHeader headers[SHIM_HTTP_HEADERS_MAX];
        unsigned n_headers;
        size_t head_len;                /* bytes of the head, blank line included */

        /* Interpreted headers. */
        bool has_content_length;
        uint64_t content_length;
        bool chunked;                   /* Transfer-Encoding ends in chunked */
        bool transfer_encoding;         /* any Transfer-Encoding */
        bool keep_alive;                /* the connection may carry another request after this */
        int content_type;               /* index into headers, -1 when none */
        int connection;                 /* index of the (first) Connection header, -1 when none */
} ShimHttpResponse;

/* Parses the head at the start of data. Returns the head's length (> 0) when complete,
 * -EAGAIN when more bytes are needed (and len < SHIM_HTTP_HEAD_MAX), -E2BIG when the head
 * passes SHIM_HTTP_HEAD_MAX or SHIM_HTTP_HEADERS_MAX, -EBADMSG when it is not HTTP/1.x. */
ssize_t shim_http_response_parse(const char *data, size_t len, ShimHttpResponse *ret);

/* How the body of the response is delimited; head_request: it answers a HEAD. */
ShimHttpBodyKind shim_http_response_body_kind(const ShimHttpResponse *r, bool head_request);

typedef struct ShimHttpBody {
        ShimHttpBodyKind kind;
        uint64_t left;                  /* LENGTH: bytes to go; CHUNKED: of the current chunk */
        unsigned state;                 /* CHUNKED: where in the framing */
        size_t line_len;                /* CHUNKED: bytes of the current size or trailer line */
        size_t trailer_len;
        bool digits;
        bool done;
} ShimHttpBody;

void shim_http_body_init(ShimHttpBody *b, ShimHttpBodyKind kind, uint64_t content_length);

/* Reads framing from data. Returns the bytes consumed (0 only when len == 0 or when done);
 * *ret_payload is how many of them, from the start, are body payload (either all or none of
 * the consumed bytes are). -EBADMSG on broken chunked framing, -E2BIG past the limits. EOF is
 * the caller's: a BODY_EOF body ends there, any other body not done is truncated. */
ssize_t shim_http_body_feed(ShimHttpBody *b, const char *data, size_t len, size_t *ret_payload);
