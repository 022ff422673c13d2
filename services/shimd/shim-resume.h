/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Resuming a stream cut mid-answer on another node, without I/O: which requests may be resumed,
 * the partial answer kept from the lines relayed so far, the continuation request (the partial
 * answer as a trailing assistant message, or appended to a raw prompt), and the splice of the
 * continuation into the client's stream (counts of both parts in the final object, one OpenAI
 * id). docs/stream-resume.md. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* X-Mycelia-Resume: no turns it off for one request. */
#define SHIM_RESUME_HEADER "X-Mycelia-Resume"
/* The field of the final object (NDJSON) or last chunk (SSE) that says how many times the
 * stream was resumed; clients ignore fields they do not know. */
#define SHIM_RESUME_FIELD "mycelia_resumed"
/* A line (NDJSON) or frame (SSE) longer than this is relayed as it comes and ends resumability:
 * what is held back from the client must stay small. */
#define SHIM_RESUME_LINE_MAX (256U << 10)
#define SHIM_RESUME_DEFAULT_MAX_BYTES (1U << 20)
#define SHIM_RESUME_DEFAULT_ATTEMPTS 1

typedef enum ShimResumeApi {
        SHIM_RESUME_CHAT,               /* /api/chat, NDJSON */
        SHIM_RESUME_GENERATE_RAW,       /* /api/generate with raw: true, NDJSON */
        SHIM_RESUME_OPENAI_CHAT,        /* /v1/chat/completions, SSE */
        _SHIM_RESUME_API_MAX,
} ShimResumeApi;

typedef struct ShimResumeText {
        char *data;
        size_t len, allocated;
} ShimResumeText;

typedef struct ShimResume {
        ShimResumeApi api;
        size_t max_bytes;               /* text kept at most ([router] resume_max_bytes) */
        unsigned attempts_left;         /* [router] resume_attempts, spent by shim_resume_begin() */
        const char *not_resumable;      /* why no longer (static), NULL while it still is */

        ShimResumeText text;            /* the answer relayed so far */
        ShimResumeText thinking;        /* native chat: its thinking so far */
        uint64_t tokens;                /* chunks relayed that carried text or thinking */
        char id[128];                   /* OpenAI: the first part's chunk id, kept by the rest */

        unsigned resumes;               /* continuations begun: the part relayed now is one when > 0 */
        /* Of the parts before the current one, added to the final object's counts. */
        uint64_t prior_tokens;
        usec_t prior_eval_usec;         /* first text to the cut, each part */
        usec_t prior_total_usec;        /* attempt start to the cut, each part */
        usec_t part_start, part_first_text;
} ShimResume;

/* Whether body (the client's request, parsed) of api may be resumed at all: streamed, no
 * format/structured output, and for generate raw without context. NULL when it may; else why
 * not (static). */
const char *shim_resume_request_refusal(ShimResumeApi api, json_object *body);

void shim_resume_init(ShimResume *r, ShimResumeApi api, size_t max_bytes, unsigned attempts);
void shim_resume_done(ShimResume *r);

/* An attempt (the first, or a continuation) starts at now. */
void shim_resume_part_start(ShimResume *r, usec_t now);

typedef enum ShimResumeLine {
        SHIM_RESUME_LINE_RELAY,         /* relay it as it is */
        SHIM_RESUME_LINE_REWRITTEN,     /* relay *ret_line instead */
        SHIM_RESUME_LINE_FAILED,        /* the upstream's error object: hold it back, resume if possible */
} ShimResumeLine;

/* One complete NDJSON line or SSE line (without its '\n'; "" for the blank line that ends an SSE
 * frame) of the upstream's 200 stream, at now. Keeps the text, notes what forbids resuming (a
 * tool call, thinking in an OpenAI stream, too much text), and in a continuation rewrites what the
 * client must see as one answer: the final object's counts and the field SHIM_RESUME_FIELD
 * (NDJSON), the chunk id, usage and SHIM_RESUME_FIELD (SSE). *ret_line is malloc'ed. */
ShimResumeLine shim_resume_line(ShimResume *r, const char *line, size_t len, usec_t now, char **ret_line,
                                size_t *ret_len);

/* From now on the stream is not resumable, because of why (static); the text kept is freed. */
void shim_resume_refuse(ShimResume *r, const char *why);

/* Whether the stream can be resumed now; if not, why (static) in *ret_why. */
bool shim_resume_possible(const ShimResume *r, const char **ret_why);

/* The continuation request: body (the client's, parsed; not changed) with the answer so far as
 * a trailing assistant message (chat) or appended to the prompt (generate raw), and num_predict
 * (max_tokens, max_completion_tokens) reduced by the tokens produced. -ENOSPC when that leaves
 * none to produce (nothing to resume). *ret is malloc'ed, NUL-terminated. */
int shim_resume_body(const ShimResume *r, json_object *body, char **ret, size_t *ret_len);

/* The current part was cut at now: the next one begins (spends an attempt). */
void shim_resume_begin(ShimResume *r, usec_t now);

ShimResumeApi shim_resume_api_from_uri(const char *uri, bool *ret_ok);
