/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Accounting for a response relayed by the shim: what kind of stream it is, how many chunks
 * (NDJSON lines, SSE data frames) went by, whether it ended properly, and the error object that
 * ends it cleanly when the upstream fails mid-stream. Pure: bytes in, counts and strings out. */
#pragma once

#include "macro.h"

typedef enum ShimStreamKind {
        SHIM_STREAM_RAW,        /* anything else: bytes are relayed, nothing is counted */
        SHIM_STREAM_JSON,       /* application/json: one object (stream:false, tags, show...) */
        SHIM_STREAM_NDJSON,     /* application/x-ndjson: Ollama's native streams */
        SHIM_STREAM_SSE,        /* text/event-stream: the OpenAI-compatible streams */
        _SHIM_STREAM_KIND_MAX,
} ShimStreamKind;

typedef struct ShimStream {
        ShimStreamKind kind;
        uint64_t bytes;
        uint64_t chunks;          /* complete NDJSON lines / SSE data frames, final and errors included */
        uint64_t tokens;          /* chunks that carry output: not the final one, not errors */
        bool done;                /* the final chunk went by (done:true, status:success, [DONE]) */
        bool error_seen;          /* the upstream itself sent an error object */
        unsigned trailing_newlines; /* '\n' at the very end of what went by (0, 1, 2 = capped) */
        /* Token counts the upstream reported, -1 until seen: Ollama's "prompt_eval_count" and
         * "eval_count" (its final object), OpenAI's "prompt_tokens" and "completion_tokens"
         * (usage). The last one seen wins. NDJSON, SSE and JSON bodies. */
        int64_t prompt_tokens;
        int64_t completion_tokens;

        /* State of the line or frame being read. */
        bool line_empty;          /* nothing but '\r' since the last '\n' */
        bool line_final;
        bool line_error;
        bool frame_has_data;
        bool frame_final;
        bool frame_error;
        /* How far each pattern of shim-stream.c is matched (KMP states). */
        unsigned m_done, m_success, m_error, m_sse_done, m_sse_error, m_finish;
        unsigned m_prompt_eval, m_eval, m_prompt_tokens, m_completion_tokens;
        /* The count being read after one of those keys: 1 prompt, 2 completion, 0 none. */
        unsigned usage_target;
        bool usage_digits;
        uint64_t usage_value;
} ShimStream;

ShimStreamKind shim_stream_kind_from_content_type(const char *content_type);
const char *shim_stream_kind_to_string(ShimStreamKind k);

void shim_stream_init(ShimStream *s, ShimStreamKind kind);
void shim_stream_feed(ShimStream *s, const void *data, size_t len);

/* What must be written before an error object so that it starts on a line (NDJSON) or frame
 * (SSE) of its own, given what already went by. */
const char *shim_stream_error_prefix(const ShimStream *s);

typedef enum ShimErrorForm {
        SHIM_ERROR_JSON,        /* {"error":"..."} */
        SHIM_ERROR_NDJSON,      /* {"error":"..."}\n */
        SHIM_ERROR_SSE,         /* data: {"error":{"message":"...","type":"api_error",...}}\n\n */
        SHIM_ERROR_OPENAI,      /* {"error":{"message":"...","type":"...","param":null,"code":null}} */
        _SHIM_ERROR_FORM_MAX,
} ShimErrorForm;

/* The error object for a stream that failed after it started: NDJSON and SSE get an object in
 * their own framing; other kinds cannot be ended cleanly (returns -EOPNOTSUPP). */
int shim_stream_error_form(ShimStreamKind kind, ShimErrorForm *ret);

/* The OpenAI error "type" for an HTTP status, as Ollama's OpenAI middleware names it. */
const char *shim_error_openai_type(int status);

/* Formats the error body; *ret is malloc'ed and NUL-terminated. status picks the OpenAI type. */
int shim_error_format(ShimErrorForm form, int status, const char *message, char **ret);
