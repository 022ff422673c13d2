/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Counting chunks of NDJSON and SSE streams as they go by, across arbitrary chunk boundaries,
 * with a constant amount of state (lines may be megabytes long; they are never buffered). */
#include <stdio.h>
#include <strings.h>

#include "shim-stream.h"

static const char *const kind_names[_SHIM_STREAM_KIND_MAX] = {
        [SHIM_STREAM_RAW] = "raw",
        [SHIM_STREAM_JSON] = "json",
        [SHIM_STREAM_NDJSON] = "ndjson",
        [SHIM_STREAM_SSE] = "sse",
};

const char *shim_stream_kind_to_string(ShimStreamKind k) {
        return k >= 0 && k < _SHIM_STREAM_KIND_MAX ? kind_names[k] : NULL;
}

/* Compares the media type (before any ';' parameters) case-insensitively. */
static bool media_type_is(const char *content_type, const char *type) {
        size_t n = strlen(type);
        const char *p = content_type;

        while (*p == ' ' || *p == '\t')
                p++;
        if (strncasecmp(p, type, n) != 0)
                return false;
        p += n;
        while (*p == ' ' || *p == '\t')
                p++;
        return *p == '\0' || *p == ';';
}

ShimStreamKind shim_stream_kind_from_content_type(const char *content_type) {
        if (!content_type)
                return SHIM_STREAM_RAW;
        if (media_type_is(content_type, "application/x-ndjson"))
                return SHIM_STREAM_NDJSON;
        if (media_type_is(content_type, "text/event-stream"))
                return SHIM_STREAM_SSE;
        if (media_type_is(content_type, "application/json"))
                return SHIM_STREAM_JSON;
        return SHIM_STREAM_RAW;
}

/* A fixed pattern followed through a byte stream split at arbitrary points (KMP). The
 * failure tables are computed once; a stream keeps only how far each pattern matched. */
typedef struct Pattern {
        const char *text;
        unsigned len;
        unsigned char fail[32];
} Pattern;

/* Ollama writes compact JSON from Go's encoder: no spaces around ':'. */
static Pattern pat_done = { "\"done\":true" };
static Pattern pat_success = { "\"status\":\"success\"" };
static Pattern pat_error = { "\"error\":" };
static Pattern pat_sse_done = { "data: [DONE]" };
static Pattern pat_sse_error = { "data: {\"error\"" };
/* A non-null finish_reason marks the closing chunk of an OpenAI stream. */
static Pattern pat_finish = { "\"finish_reason\":\"" };
/* Token counts, for the audit trail (a JSON string cannot hold these: its quotes are escaped). */
static Pattern pat_prompt_eval = { "\"prompt_eval_count\":" };
static Pattern pat_eval = { "\"eval_count\":" };
static Pattern pat_prompt_tokens = { "\"prompt_tokens\":" };
static Pattern pat_completion_tokens = { "\"completion_tokens\":" };
/* Counts past this are not real: the value stops growing. */
#define USAGE_VALUE_MAX 1000000000000000ULL

#define MATCHED_STICKY UINT32_MAX

static void pattern_init(Pattern *p) {
        unsigned k = 0;

        p->len = MIN(strlen(p->text), sizeof(p->fail));
        for (unsigned i = 1; i < p->len; i++) {
                while (k > 0 && p->text[i] != p->text[k])
                        k = p->fail[k - 1];
                if (p->text[i] == p->text[k])
                        k++;
                p->fail[i] = (unsigned char) k;
        }
}

static void patterns_init(void) {
        static bool done = false;

        if (done)
                return;
        pattern_init(&pat_done);
        pattern_init(&pat_success);
        pattern_init(&pat_error);
        pattern_init(&pat_sse_done);
        pattern_init(&pat_sse_error);
        pattern_init(&pat_finish);
        pattern_init(&pat_prompt_eval);
        pattern_init(&pat_eval);
        pattern_init(&pat_prompt_tokens);
        pattern_init(&pat_completion_tokens);
        done = true;
}

/* Advances by one byte; true when the pattern just ended at this byte. */
static bool matcher_step(const Pattern *p, unsigned *state, char c) {
        unsigned s = *state;

        while (s > 0 && c != p->text[s])
                s = p->fail[s - 1];
        if (c == p->text[s])
                s++;
        if (s == p->len) {
                *state = p->fail[p->len - 1];
                return true;
        }
        *state = s;
        return false;
}

/* Anchored variant: the pattern must match from the start of the line. The state is the
 * number of bytes matched; past len once the line diverged. True when it just completed. */
static bool matcher_step_anchored(const Pattern *p, unsigned *state, char c) {
        if (*state >= p->len)
                return false;
        if (c != p->text[*state]) {
                *state = p->len + 1;
                return false;
        }
        return ++*state == p->len;
}

void shim_stream_init(ShimStream *s, ShimStreamKind kind) {
        patterns_init();
        *s = (ShimStream) { .kind = kind, .line_empty = true, .trailing_newlines = 2, .prompt_tokens = -1,
                            .completion_tokens = -1 };
}

/* The counts after "key": a number (spaces before it allowed); anything else ends it. */
static void usage_feed(ShimStream *s, const char *p, size_t len) {
        for (size_t i = 0; i < len; i++) {
                bool prompt, completion;
                char c = p[i];

                if (s->usage_target != 0) {
                        if (c >= '0' && c <= '9') {
                                s->usage_digits = true;
                                s->usage_value = MIN(s->usage_value * 10 + (uint64_t) (c - '0'), USAGE_VALUE_MAX);
                        } else if (!(c == ' ' && !s->usage_digits)) {
                                if (s->usage_digits)
                                        *(s->usage_target == 1 ? &s->prompt_tokens : &s->completion_tokens) =
                                                (int64_t) s->usage_value;
                                s->usage_target = 0;
                        }
                }
                /* Every matcher takes every byte (no short cut), or its state would go wrong. */
                prompt = matcher_step(&pat_prompt_eval, &s->m_prompt_eval, c);
                prompt = matcher_step(&pat_prompt_tokens, &s->m_prompt_tokens, c) || prompt;
                completion = matcher_step(&pat_eval, &s->m_eval, c);
                completion = matcher_step(&pat_completion_tokens, &s->m_completion_tokens, c) || completion;
                if (!prompt && !completion)
                        continue;
                s->usage_target = prompt ? 1 : 2;
                s->usage_digits = false;
                s->usage_value = 0;
        }
}

static void ndjson_line_end(ShimStream *s) {
        if (!s->line_empty) {
                s->chunks++;
                if (s->line_error)
                        s->error_seen = true;
                else if (s->line_final)
                        s->done = true;
                else
                        s->tokens++;
        }
        s->line_empty = true;
        s->line_final = s->line_error = false;
        s->m_done = s->m_success = s->m_error = 0;
}

static void ndjson_feed(ShimStream *s, const char *p, size_t len) {
        for (size_t i = 0; i < len; i++) {
                char c = p[i];

                if (c == '\n') {
                        ndjson_line_end(s);
                        continue;
                }
                if (c != '\r')
                        s->line_empty = false;
                if (matcher_step(&pat_done, &s->m_done, c) | matcher_step(&pat_success, &s->m_success, c))
                        s->line_final = true;
                if (matcher_step(&pat_error, &s->m_error, c))
                        s->line_error = true;
        }
}

static void sse_frame_end(ShimStream *s) {
        if (s->frame_has_data) {
                s->chunks++;
                if (s->frame_error)
                        s->error_seen = true;
                else if (s->frame_final)
                        s->done = true;
                else if (s->m_finish == MATCHED_STICKY)
                        ; /* the closing content chunk: finish_reason set, no output */
                else
                        s->tokens++;
        }
        s->frame_has_data = s->frame_final = s->frame_error = false;
        s->m_finish = 0;
}

static void sse_feed(ShimStream *s, const char *p, size_t len) {
        for (size_t i = 0; i < len; i++) {
                char c = p[i];

                if (c == '\n') {
                        if (s->line_empty)
                                sse_frame_end(s);
                        s->line_empty = true;
                        s->m_sse_done = s->m_sse_error = 0;
                        continue;
                }
                if (c == '\r')
                        continue;
                s->line_empty = false;
                if (matcher_step_anchored(&pat_sse_done, &s->m_sse_done, c))
                        s->frame_final = true;
                if (matcher_step_anchored(&pat_sse_error, &s->m_sse_error, c))
                        s->frame_error = true;
                /* "data:" is the first five bytes of both anchored patterns. */
                if (s->m_sse_done == 5)
                        s->frame_has_data = true;
                if (s->m_finish != MATCHED_STICKY && matcher_step(&pat_finish, &s->m_finish, c))
                        s->m_finish = MATCHED_STICKY; /* until the frame ends */
        }
}

void shim_stream_feed(ShimStream *s, const void *data, size_t len) {
        const char *p = data;

        if (len == 0)
                return;
        s->bytes += len;

        switch (s->kind) {
        case SHIM_STREAM_NDJSON:
                ndjson_feed(s, p, len);
                break;
        case SHIM_STREAM_SSE:
                sse_feed(s, p, len);
                break;
        default:
                break;
        }
        if (s->kind != SHIM_STREAM_RAW)
                usage_feed(s, p, len);

        /* Count the '\n' at the very end (ignoring '\r'), capped at 2; a piece made only of
         * newlines adds to what came before. */
        {
                unsigned n = 0;
                size_t i = len;

                while (i > 0) {
                        char c = p[--i];

                        if (c == '\n') {
                                if (++n >= 2)
                                        break;
                        } else if (c != '\r') {
                                s->trailing_newlines = n;
                                return;
                        }
                }
                s->trailing_newlines = n >= 2 ? 2 : MIN(2u, s->trailing_newlines + n);
        }
}

const char *shim_stream_error_prefix(const ShimStream *s) {
        switch (s->kind) {
        case SHIM_STREAM_SSE:
                return s->trailing_newlines >= 2 ? "" : s->trailing_newlines == 1 ? "\n" : "\n\n";
        default:
                return s->trailing_newlines >= 1 ? "" : "\n";
        }
}

int shim_stream_error_form(ShimStreamKind kind, ShimErrorForm *ret) {
        switch (kind) {
        case SHIM_STREAM_NDJSON:
                *ret = SHIM_ERROR_NDJSON;
                return 0;
        case SHIM_STREAM_SSE:
                *ret = SHIM_ERROR_SSE;
                return 0;
        default:
                return -EOPNOTSUPP;
        }
}

const char *shim_error_openai_type(int status) {
        switch (status) {
        case 400:
        case 413:
                return "invalid_request_error";
        case 404:
                return "not_found_error";
        default:
                return "api_error";
        }
}

/* JSON string body (without quotes) for message; malloc'ed. */
static char *json_escape(const char *message) {
        size_t n = 0;
        char *out, *q;

        for (const unsigned char *p = (const unsigned char *) message; *p; p++)
                n += *p == '"' || *p == '\\' || *p == '\n' || *p == '\r' || *p == '\t' ? 2 : *p < 0x20 ? 6 : 1;
        out = malloc(n + 1);
        if (!out)
                return NULL;
        q = out;
        for (const unsigned char *p = (const unsigned char *) message; *p; p++) {
                switch (*p) {
                case '"':  *q++ = '\\'; *q++ = '"'; break;
                case '\\': *q++ = '\\'; *q++ = '\\'; break;
                case '\n': *q++ = '\\'; *q++ = 'n'; break;
                case '\r': *q++ = '\\'; *q++ = 'r'; break;
                case '\t': *q++ = '\\'; *q++ = 't'; break;
                default:
                        if (*p < 0x20)
                                q += sprintf(q, "\\u%04x", *p);
                        else
                                *q++ = (char) *p;
                }
        }
        *q = '\0';
        return out;
}

int shim_error_format(ShimErrorForm form, int status, const char *message, char **ret) {
        _cleanup_free_ char *m = NULL;
        int r;

        m = json_escape(strempty(message));
        if (!m)
                return -ENOMEM;

        switch (form) {
        case SHIM_ERROR_JSON:
                r = asprintf(ret, "{\"error\":\"%s\"}", m);
                break;
        case SHIM_ERROR_NDJSON:
                r = asprintf(ret, "{\"error\":\"%s\"}\n", m);
                break;
        case SHIM_ERROR_SSE:
                r = asprintf(ret, "data: {\"error\":{\"message\":\"%s\",\"type\":\"api_error\",\"param\":null,\"code\":null}}\n\n", m);
                break;
        case SHIM_ERROR_OPENAI:
                r = asprintf(ret, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":null}}",
                             m, shim_error_openai_type(status));
                break;
        default:
                return -EINVAL;
        }
        return r < 0 ? -ENOMEM : 0;
}
