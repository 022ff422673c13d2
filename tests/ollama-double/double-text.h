/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pure core of the Ollama test double (deterministic text, not a language model): token and
 * embedding generation, model-name rules, and the request-field parsing Ollama's handlers do. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <json-c/json.h>

#ifndef _cleanup_
#define _cleanup_(f) __attribute__((cleanup(f)))
#endif

#ifndef TAKE_PTR
#define TAKE_PTR(p)                             \
        ({                                      \
                __typeof__(p) _p_ = (p);        \
                (p) = NULL;                     \
                _p_;                            \
        })
#endif

static inline void double_text_freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_dfree_ _cleanup_(double_text_freep)

static inline void double_text_json_putp(json_object **p) {
        if (*p)
                (void) json_object_put(*p);
}
#define _cleanup_json_ _cleanup_(double_text_json_putp)

/* Hard limits: everything a client can make the double allocate is bounded by these. */
#define DOUBLE_TEXT_MAX_TOKENS 1000000u
#define DOUBLE_TEXT_DEFAULT_DIMENSIONS 8u
#define DOUBLE_TEXT_MAX_DIMENSIONS 4096u
#define DOUBLE_TEXT_MAX_CONTEXT 2048u
#define DOUBLE_TEXT_MAX_MODEL_NAME 350u
#define DOUBLE_TEXT_TOKEN_MAX 32u
/* Ollama's default keep_alive (OLLAMA_KEEP_ALIVE=5m); INT64_MAX ns means "forever". */
#define DOUBLE_TEXT_DEFAULT_KEEP_ALIVE_NS (INT64_C(300) * INT64_C(1000000000))
#define DOUBLE_TEXT_KEEP_ALIVE_FOREVER INT64_MAX

#define DOUBLE_TEXT_FNV_OFFSET UINT64_C(0xcbf29ce484222325)

uint64_t double_text_fnv1a64(uint64_t h, const void *data, size_t len);

/* seed = FNV-1a 64 of lowercase(canonical model name) + "\0" + text. The canonical name has the
 * tag (":latest" when none was given), so "llama3.2" and "llama3.2:latest" share their text. */
uint64_t double_text_seed(const char *model, const char *text, size_t len);

/* A stream of n tokens drawn from a fixed list of plain English words by xorshift64 of the seed;
 * the first is capitalised, every token but the last ends in a space, the last in a period.
 * Truncating at k < n tokens yields a prefix of the same text. */
typedef struct DoubleTextGen {
        uint64_t state;
        unsigned index;
        unsigned n;
} DoubleTextGen;

void double_text_gen_init(DoubleTextGen *g, uint64_t seed, unsigned n);
/* Writes the next token (NUL-terminated) into buf; returns its length, 0 when the stream is done,
 * -ENOBUFS when size < DOUBLE_TEXT_TOKEN_MAX. */
int double_text_gen_next(DoubleTextGen *g, char *buf, size_t size);
/* The whole text of n tokens, allocated. */
int double_text_generate(uint64_t seed, unsigned n, char **ret_text);
/* As double_text_gen_init, then k tokens (at most n) drawn and dropped: the stream goes on with
 * token k of the n. */
void double_text_gen_init_at(DoubleTextGen *g, uint64_t seed, unsigned n, unsigned k);

/* Continuation (the shim's mid-stream resume): a request may carry the start of the answer it
 * would get, as a trailing assistant message (chat) or appended to a raw prompt (generate), and
 * the double then sends only the rest of that answer. A raw prompt's answer part is looked for
 * only within its last DOUBLE_TEXT_CONTINUE_MAX_BYTES bytes and up to
 * DOUBLE_TEXT_CONTINUE_MAX_TOKENS tokens. */
#define DOUBLE_TEXT_CONTINUE_MAX_BYTES (64u << 10)
#define DOUBLE_TEXT_CONTINUE_MAX_TOKENS 1000u

/* Whether prefix[0..len) is exactly the first k tokens (0 <= k <= n) of the n-token answer of
 * seed; then *ret_k = k. The empty prefix is the first 0 tokens. */
bool double_text_continuation_skip(uint64_t seed, unsigned n, const char *prefix, size_t len, unsigned *ret_k);
/* Whether the raw prompt[0..len) is an original prompt O = prompt[0..split) (not empty)
 * followed by the first k >= 1 tokens of the n-token answer of seed(model, O); then *ret_split
 * and *ret_k. The longest such answer part wins; there is at most one, as only an answer's first
 * token has an uppercase letter. */
bool double_text_continuation_split(const char *model, unsigned n, const char *prompt, size_t len,
                                    size_t *ret_split, unsigned *ret_k);

/* Token count the double reports for a text: its whitespace-separated words. */
unsigned double_text_count_words(const char *s, size_t len);
/* Iterates words: returns the length of the next word at or after *pos (0 at the end) and moves
 * *pos past it. */
size_t double_text_next_word(const char *s, size_t len, size_t *pos, const char **ret_word);
/* A token id for the "context" array, in [1, 128000). */
uint32_t double_text_token_id(const char *word, size_t len);

/* L2-normalised float vector of dims (1..DOUBLE_TEXT_MAX_DIMENSIONS) from (model, input); a
 * shorter vector is the normalised prefix of a longer one, as Ollama's truncation gives. */
int double_text_embedding(const char *model, const char *input, size_t len, unsigned dims, float *ret);

/* Model names, as Ollama's model.ParseName/DisplayShortest treat them: strips the default
 * registry and "library/" namespace and adds ":latest" when no tag is given. -EINVAL when the
 * name is not one Ollama would accept. */
int double_text_model_normalize(const char *name, char **ret);
bool double_text_model_name_valid(const char *name);
/* Equal after normalisation, ignoring case (Ollama matches names with EqualFold). */
bool double_text_model_equal(const char *a, const char *b);
/* Embedding-only models, decided by name: contains "embed" or "minilm". */
bool double_text_model_is_embedding(const char *name);
/* The namespace OpenAI's owned_by shows: "library" unless the name has one. */
int double_text_model_namespace(const char *name, char **ret);

/* Go's time.ParseDuration, with its error messages. */
int double_text_parse_go_duration(const char *s, int64_t *ret_ns, char **ret_error);
/* api.Duration: number = seconds, string = Go duration, negative = forever. *ret_set is false
 * when the field is absent or null. */
int double_text_parse_keep_alive(json_object *v, int64_t *ret_ns, bool *ret_set, char **ret_error);

/* options.num_predict: *ret = -1 when absent; error text as api.Options.FromMap gives it. */
int double_text_parse_num_predict(json_object *options, int64_t *ret, char **ret_error);
/* Tokens to generate and the done_reason: num_predict > 0 and below natural gives "length". */
unsigned double_text_token_budget(unsigned natural, int64_t num_predict, const char **ret_done_reason);

/* Request parsing with the errors Go's encoding/json and Ollama's handlers give. */
int double_text_json_parse(const char *buf, size_t len, json_object **ret, char **ret_error);
int double_text_json_check_object(json_object *o, const char *go_type, char **ret_error);
int double_text_json_get_string(json_object *o, const char *key, const char *go_struct,
                                const char **ret, size_t *ret_len, char **ret_error);
int double_text_json_get_bool(json_object *o, const char *key, const char *go_struct, int *ret,
                              char **ret_error);
int double_text_json_get_int(json_object *o, const char *key, const char *go_struct, int64_t *ret,
                             char **ret_error);
int double_text_json_get_float(json_object *o, const char *key, const char *go_struct, double *ret,
                               char **ret_error);
/* /api/chat messages: concatenates every message's content; *ret_tokens counts 1 + words per
 * message. openai selects the /v1 rules (content may be a list of parts). */
int double_text_messages_join(json_object *messages, bool openai, char **ret_text, size_t *ret_len,
                              unsigned *ret_tokens, char **ret_error);
/* When the last message has role "assistant" (a partial answer to continue): 1, with its content
 * as double_text_messages_join joins it (so the join of the messages before it is the whole
 * join's first len - *ret_len bytes). 0 otherwise. Call after double_text_messages_join accepted
 * the messages. */
int double_text_messages_trailing_assistant(json_object *messages, bool openai, char **ret_text, size_t *ret_len);

/* The prompt as the prompt cache sees it, rendered the way a chat template renders one: each
 * message as "<|role|>" + its images ("<|image:HEX|>", FNV-1a 64 of the image string) + its
 * content + "<|end|>", then "<|assistant|>" where the answer starts (a last assistant message is
 * left open instead, to be continued). So the next turn of a conversation (the same messages, the
 * answer as an assistant message, a new one) starts with this prompt followed by the answer.
 * Call after double_text_messages_join accepted the messages; openai reads content parts. */
int double_text_render_chat(json_object *messages, bool openai, char **ret, size_t *ret_len);
/* /api/generate and /v1/completions: raw, the prompt as it is; otherwise the system message (when
 * not empty) and a user message with the prompt and images, as double_text_render_chat renders
 * [system, user]. images may be NULL. */
int double_text_render_generate(const char *system, size_t system_len, const char *prompt, size_t prompt_len,
                                json_object *images, bool raw, char **ret, size_t *ret_len);

/* "sha256:<64 hex>" (or "sha256-<hex>") to 32 bytes; -EINVAL otherwise. */
int double_text_parse_digest(const char *s, uint8_t ret[32]);
void double_text_hex(const uint8_t *p, size_t n, char *out);

/* "ADDR:PORT", "[V6]:PORT" or ":PORT" (all addresses). */
int double_text_parse_listen(const char *s, char **ret_host, uint16_t *ret_port);

/* Ollama on a loopback address answers 403 unless Host is one of these (allowedHostsMiddleware). */
bool double_text_host_allowed(const char *host_header, const char *hostname);

/* Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped. */
int double_text_format_rfc3339nano(int64_t sec, long nsec, char *buf, size_t size);
/* Shortest decimal that reads back as the same float. */
int double_text_format_float32(float f, char *buf, size_t size);
