/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pure part of resuming a stream mid-answer: what is kept of the lines relayed, the
 * continuation request, the rewriting that makes two parts one answer. docs/stream-resume.md. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "json-cleanup.h"
#include "macro.h"
#include "shim-request.h"
#include "shim-resume.h"

#define JSON_OUT_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static bool json_true(json_object *o) {
        return o && json_object_is_type(o, json_type_boolean) && json_object_get_boolean(o);
}

static bool json_set(json_object *o) {
        return o && !json_object_is_type(o, json_type_null);
}

ShimResumeApi shim_resume_api_from_uri(const char *uri, bool *ret_ok) {
        *ret_ok = true;
        if (shim_uri_is(uri, "/api/chat"))
                return SHIM_RESUME_CHAT;
        if (shim_uri_is(uri, "/api/generate"))
                return SHIM_RESUME_GENERATE_RAW;
        if (shim_uri_is(uri, "/v1/chat/completions"))
                return SHIM_RESUME_OPENAI_CHAT;
        *ret_ok = false;
        return _SHIM_RESUME_API_MAX;
}

const char *shim_resume_request_refusal(ShimResumeApi api, json_object *body) {
        json_object *v;

        if (!body || !json_object_is_type(body, json_type_object))
                return "the body is not a JSON object";
        switch (api) {
        case SHIM_RESUME_CHAT:
        case SHIM_RESUME_GENERATE_RAW:
                /* Ollama streams unless told not to. */
                if (json_object_object_get_ex(body, "stream", &v) && json_set(v) && !json_true(v))
                        return "not streamed (retried from the start instead)";
                if (json_object_object_get_ex(body, "format", &v) && json_set(v) &&
                    !(json_object_is_type(v, json_type_string) && json_object_get_string_len(v) == 0))
                        return "structured output (format)";
                if (api == SHIM_RESUME_CHAT)
                        return NULL;
                if (!json_object_object_get_ex(body, "raw", &v) || !json_true(v))
                        return "generate without raw: the template would wrap the continuation";
                if (json_object_object_get_ex(body, "context", &v) && json_set(v))
                        return "generate with a context";
                if (!json_object_object_get_ex(body, "prompt", &v) || !json_object_is_type(v, json_type_string))
                        return "generate without a prompt";
                return NULL;
        case SHIM_RESUME_OPENAI_CHAT:
                /* OpenAI answers whole unless asked to stream. */
                if (!json_object_object_get_ex(body, "stream", &v) || !json_true(v))
                        return "not streamed (retried from the start instead)";
                if (json_object_object_get_ex(body, "response_format", &v) && json_set(v)) {
                        json_object *type;

                        if (!json_object_object_get_ex(v, "type", &type) || !json_object_is_type(type, json_type_string) ||
                            strcmp(json_object_get_string(type), "text") != 0)
                                return "structured output (response_format)";
                }
                if (json_object_object_get_ex(body, "n", &v) && json_object_is_type(v, json_type_int) &&
                    json_object_get_int64(v) > 1)
                        return "more than one choice (n)";
                return NULL;
        default:
                return "not a chat or raw generate request";
        }
}

void shim_resume_init(ShimResume *r, ShimResumeApi api, size_t max_bytes, unsigned attempts) {
        *r = (ShimResume) { .api = api, .max_bytes = max_bytes, .attempts_left = attempts };
}

static void text_free(ShimResumeText *t) {
        free(t->data);
        *t = (ShimResumeText) {};
}

void shim_resume_done(ShimResume *r) {
        text_free(&r->text);
        text_free(&r->thinking);
}

void shim_resume_part_start(ShimResume *r, usec_t now) {
        r->part_start = now;
        r->part_first_text = 0;
}

void shim_resume_refuse(ShimResume *r, const char *why) {
        if (r->not_resumable)
                return;
        r->not_resumable = why;
        /* Nothing will be resumed: what was kept is of no more use. */
        text_free(&r->text);
        text_free(&r->thinking);
}

/* Appends a JSON string's value to t, within the bound on both texts together. */
static void resume_keep(ShimResume *r, ShimResumeText *t, json_object *s) {
        size_t len, need;
        char *d;

        if (r->not_resumable || !s || !json_object_is_type(s, json_type_string))
                return;
        len = (size_t) json_object_get_string_len(s);
        if (len == 0)
                return;
        if (r->text.len + r->thinking.len + len > r->max_bytes) {
                shim_resume_refuse(r, "longer than resume_max_bytes");
                return;
        }
        need = t->len + len + 1;
        if (need > t->allocated) {
                size_t a = MAX(need, MIN(MAX(t->allocated * 2, (size_t) 256), r->max_bytes + 1));

                d = realloc(t->data, a);
                if (!d) {
                        shim_resume_refuse(r, "out of memory");
                        return;
                }
                t->data = d;
                t->allocated = a;
        }
        memcpy(t->data + t->len, json_object_get_string(s), len);
        t->len += len;
        t->data[t->len] = '\0';
}

static bool nonempty_array(json_object *o) {
        return o && json_object_is_type(o, json_type_array) && json_object_array_length(o) > 0;
}

static bool nonempty_string(json_object *o) {
        return o && json_object_is_type(o, json_type_string) && json_object_get_string_len(o) > 0;
}

static json_object *parse_line(const char *line, size_t len) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        json_object *o;

        if (len > INT_MAX)
                return NULL;
        tok = json_tokener_new();
        if (!tok)
                return NULL;
        o = json_tokener_parse_ex(tok, line, (int) len);
        if (o && (json_tokener_get_parse_end(tok) != len || !json_object_is_type(o, json_type_object))) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static void add_u64(json_object *o, const char *key, uint64_t add) {
        json_object *v;

        /* Absent or not a count: left as the upstream wrote it. */
        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return;
        (void) json_object_object_add(o, key, json_object_new_int64(json_object_get_int64(v) +
                                                                    (int64_t) MIN(add, (uint64_t) INT64_MAX / 2)));
}

static ShimResumeLine rewritten(json_object *o, const char *prefix, char **ret_line, size_t *ret_len) {
        const char *s;
        size_t len, plen = strlen(prefix);
        char *d;

        s = json_object_to_json_string_length(o, JSON_OUT_FLAGS, &len);
        if (!s)
                return SHIM_RESUME_LINE_RELAY;
        d = malloc(plen + len + 1);
        if (!d)
                return SHIM_RESUME_LINE_RELAY;
        memcpy(d, prefix, plen);
        memcpy(d + plen, s, len + 1);
        *ret_line = d;
        *ret_len = plen + len;
        return SHIM_RESUME_LINE_REWRITTEN;
}

static void note_text(ShimResume *r, bool any, usec_t now) {
        if (!any)
                return;
        r->tokens++;
        if (!r->part_first_text)
                r->part_first_text = now;
}

static ShimResumeLine resume_ndjson(ShimResume *r, json_object *o, usec_t now, char **ret_line, size_t *ret_len) {
        json_object *v;

        if (json_object_object_get_ex(o, "error", &v))
                return SHIM_RESUME_LINE_FAILED;
        if (r->api == SHIM_RESUME_CHAT) {
                json_object *msg, *content = NULL, *thinking = NULL, *calls = NULL;

                if (json_object_object_get_ex(o, "message", &msg) && json_object_is_type(msg, json_type_object)) {
                        (void) json_object_object_get_ex(msg, "content", &content);
                        (void) json_object_object_get_ex(msg, "thinking", &thinking);
                        (void) json_object_object_get_ex(msg, "tool_calls", &calls);
                }
                if (nonempty_array(calls))
                        shim_resume_refuse(r, "a tool call");
                resume_keep(r, &r->text, content);
                resume_keep(r, &r->thinking, thinking);
                note_text(r, nonempty_string(content) || nonempty_string(thinking), now);
        } else {
                json_object *response = NULL, *thinking = NULL;

                (void) json_object_object_get_ex(o, "response", &response);
                (void) json_object_object_get_ex(o, "thinking", &thinking);
                /* A raw prompt continues text, not a model's thinking. */
                if (nonempty_string(thinking))
                        shim_resume_refuse(r, "thinking in a generate stream");
                resume_keep(r, &r->text, response);
                note_text(r, nonempty_string(response), now);
        }
        if (r->resumes == 0 || !json_object_object_get_ex(o, "done", &v) || !json_true(v))
                return SHIM_RESUME_LINE_RELAY;
        /* The final object of a continuation: its counts and durations cover every part. */
        add_u64(o, "eval_count", r->prior_tokens);
        add_u64(o, "eval_duration", r->prior_eval_usec * 1000);
        add_u64(o, "total_duration", r->prior_total_usec * 1000);
        (void) json_object_object_add(o, SHIM_RESUME_FIELD, json_object_new_int64(r->resumes));
        return rewritten(o, "", ret_line, ret_len);
}

static ShimResumeLine resume_sse(ShimResume *r, json_object *o, usec_t now, char **ret_line, size_t *ret_len) {
        json_object *v, *choices, *choice = NULL, *delta = NULL, *content = NULL, *usage;
        bool last = false;

        if (json_object_object_get_ex(o, "error", &v))
                return SHIM_RESUME_LINE_FAILED;
        if (json_object_object_get_ex(o, "choices", &choices) && nonempty_array(choices))
                choice = json_object_array_get_idx(choices, 0);
        if (choice && json_object_object_get_ex(choice, "delta", &delta) && json_object_is_type(delta, json_type_object)) {
                json_object *reasoning = NULL, *calls = NULL;

                (void) json_object_object_get_ex(delta, "content", &content);
                (void) json_object_object_get_ex(delta, "reasoning", &reasoning);
                (void) json_object_object_get_ex(delta, "tool_calls", &calls);
                if (nonempty_array(calls))
                        shim_resume_refuse(r, "a tool call");
                if (nonempty_string(reasoning))
                        shim_resume_refuse(r, "reasoning in an OpenAI stream");
                resume_keep(r, &r->text, content);
                note_text(r, nonempty_string(content), now);
        }
        if (r->resumes == 0) {
                if (!r->id[0] && json_object_object_get_ex(o, "id", &v) && json_object_is_type(v, json_type_string) &&
                    (size_t) json_object_get_string_len(v) < sizeof(r->id))
                        memcpy(r->id, json_object_get_string(v), (size_t) json_object_get_string_len(v) + 1);
                return SHIM_RESUME_LINE_RELAY;
        }
        /* One answer, one id: the continuation's chunks carry the first part's. */
        if (r->id[0])
                (void) json_object_object_add(o, "id", json_object_new_string(r->id));
        if (choice && json_object_object_get_ex(choice, "finish_reason", &v) && json_set(v))
                last = true;
        if (json_object_object_get_ex(o, "usage", &usage) && json_object_is_type(usage, json_type_object)) {
                add_u64(usage, "completion_tokens", r->prior_tokens);
                add_u64(usage, "total_tokens", r->prior_tokens);
                last = true;
        }
        if (last)
                (void) json_object_object_add(o, SHIM_RESUME_FIELD, json_object_new_int64(r->resumes));
        return rewritten(o, "data: ", ret_line, ret_len);
}

ShimResumeLine shim_resume_line(ShimResume *r, const char *line, size_t len, usec_t now, char **ret_line,
                                size_t *ret_len) {
        _cleanup_(json_object_putp) json_object *o = NULL;

        *ret_line = NULL;
        *ret_len = 0;
        if (len > 0 && line[len - 1] == '\r')
                len--;
        if (len == 0)
                return SHIM_RESUME_LINE_RELAY;
        if (r->api == SHIM_RESUME_OPENAI_CHAT) {
                /* Only data lines carry JSON; [DONE], comments and other fields pass. */
                if (len < 6 || memcmp(line, "data: ", 6) != 0 || (len == 12 && memcmp(line + 6, "[DONE]", 6) == 0))
                        return SHIM_RESUME_LINE_RELAY;
                o = parse_line(line + 6, len - 6);
        } else
                o = parse_line(line, len);
        if (!o) {
                shim_resume_refuse(r, "a line that is not a JSON object");
                return SHIM_RESUME_LINE_RELAY;
        }
        return r->api == SHIM_RESUME_OPENAI_CHAT ? resume_sse(r, o, now, ret_line, ret_len)
                                                 : resume_ndjson(r, o, now, ret_line, ret_len);
}

bool shim_resume_possible(const ShimResume *r, const char **ret_why) {
        const char *why = r->not_resumable;

        if (!why && r->attempts_left == 0)
                why = "resume_attempts spent";
        if (ret_why)
                *ret_why = why;
        return !why;
}

/* Reduces an integer limit on the tokens to produce by those produced; -ENOSPC when none is left. */
static int reduce_limit(json_object *o, const char *key, uint64_t produced) {
        json_object *v;
        int64_t n;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return 0;
        n = json_object_get_int64(v);
        if (n <= 0)
                return 0;       /* Ollama: -1 and -2 mean no limit */
        if ((uint64_t) n <= produced)
                return -ENOSPC;
        return json_object_object_add(o, key, json_object_new_int64(n - (int64_t) produced)) < 0 ? -ENOMEM : 0;
}

int shim_resume_body(const ShimResume *r, json_object *body, char **ret, size_t *ret_len) {
        _cleanup_(json_object_putp) json_object *copy = NULL;
        const char *s;
        size_t len;
        int k;

        if (json_object_deep_copy(body, &copy, NULL) < 0 || !copy)
                return -ENOMEM;
        if (r->text.len > 0 || r->thinking.len > 0) {
                if (r->api == SHIM_RESUME_GENERATE_RAW) {
                        json_object *prompt;
                        char *joined;
                        size_t plen;

                        if (!json_object_object_get_ex(copy, "prompt", &prompt) ||
                            !json_object_is_type(prompt, json_type_string))
                                return -EINVAL;
                        plen = (size_t) json_object_get_string_len(prompt);
                        joined = malloc(plen + r->text.len + 1);
                        if (!joined)
                                return -ENOMEM;
                        memcpy(joined, json_object_get_string(prompt), plen);
                        memcpy(joined + plen, r->text.data, r->text.len);
                        k = json_object_object_add(copy, "prompt", json_object_new_string_len(joined, (int) (plen + r->text.len)));
                        free(joined);
                        if (k < 0)
                                return -ENOMEM;
                } else {
                        json_object *messages, *m;

                        if (!json_object_object_get_ex(copy, "messages", &messages) ||
                            !json_object_is_type(messages, json_type_array))
                                return -EINVAL;
                        m = json_object_new_object();
                        if (!m || json_object_array_add(messages, m) < 0) {
                                json_object_put(m);
                                return -ENOMEM;
                        }
                        (void) json_object_object_add(m, "role", json_object_new_string("assistant"));
                        (void) json_object_object_add(m, "content",
                                                      json_object_new_string_len(r->text.data ?: "", (int) r->text.len));
                        if (r->thinking.len > 0)
                                (void) json_object_object_add(m, "thinking",
                                                              json_object_new_string_len(r->thinking.data, (int) r->thinking.len));
                }
                if (r->api == SHIM_RESUME_OPENAI_CHAT) {
                        k = reduce_limit(copy, "max_tokens", r->tokens);
                        if (k >= 0)
                                k = reduce_limit(copy, "max_completion_tokens", r->tokens);
                } else {
                        json_object *options = NULL;

                        (void) json_object_object_get_ex(copy, "options", &options);
                        k = reduce_limit(options, "num_predict", r->tokens);
                }
                if (k < 0)
                        return k;
        }
        s = json_object_to_json_string_length(copy, JSON_OUT_FLAGS, &len);
        if (!s)
                return -ENOMEM;
        *ret = strndup(s, len);
        if (!*ret)
                return -ENOMEM;
        *ret_len = len;
        return 0;
}

void shim_resume_begin(ShimResume *r, usec_t now) {
        if (r->attempts_left > 0)
                r->attempts_left--;
        r->resumes++;
        r->prior_tokens = r->tokens;
        if (r->part_first_text && now > r->part_first_text)
                r->prior_eval_usec += now - r->part_first_text;
        if (r->part_start && now > r->part_start)
                r->prior_total_usec += now - r->part_start;
        shim_resume_part_start(r, now);
}
