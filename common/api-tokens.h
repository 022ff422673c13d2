/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The API's owners: who needs a token (api_auth and the listener's address), the tokens file
 * (one "NAME SHA256HEX [MODEL,...]" a line), the bearer secret matched against it, and what a
 * token restricted to models may do. Pure; myceliactl writes the file with the same functions. */
#pragma once

#include <stdint.h>

#include "macro.h"

#define API_TOKEN_NAME_MAX 64
#define API_TOKEN_HASH_SIZE 32
/* What myceliactl token add prints: the prefix and base64url (no padding) of 32 random bytes. */
#define API_TOKEN_SECRET_PREFIX "myc_"
#define API_TOKEN_SECRET_BYTES 32
/* Models one token may be restricted to, and the longest line of the file. */
/* A model name in a token's list; as long as the shim takes one (SHIM_MODEL_NAME_MAX). */
#define API_TOKEN_MODEL_NAME_MAX 512
#define API_TOKEN_MODELS_MAX 256
#define API_TOKENS_LINE_MAX (64U * 1024)
/* A tokens file larger than this is not read. */
#define API_TOKENS_FILE_MAX (4U << 20)

/* The token's name, as the entry node tells the serving node (never the secret). Clients'
 * X-Mycelia-* headers are stripped (mesh_header_is_ours()), so only a shim sets it. */
#define API_TOKEN_HEADER "X-Mycelia-Token"

typedef enum ApiAuthMode {
        API_AUTH_AUTO,          /* a token unless the API listener is bound to loopback */
        API_AUTH_TOKEN,         /* always a token */
        API_AUTH_NONE,          /* never: open to anyone who reaches the listener */
        _API_AUTH_MAX,
        _API_AUTH_INVALID = -EINVAL,
} ApiAuthMode;

ApiAuthMode api_auth_mode_from_string(const char *s);
const char *api_auth_mode_to_string(ApiAuthMode m);

/* "127.0.0.1:11434", "[::1]:11434", "[::ffff:127.0.0.2]:80": 1 when the host is a loopback
 * address (127.0.0.0/8, ::1, v4-mapped 127/8), 0 for any other address (0.0.0.0 and :: too),
 * -EINVAL when it is not ADDR:PORT with a numeric address. */
int api_address_is_loopback(const char *hostport);

/* Whether requests to an API listener bound to hostport need a token. An address that cannot be
 * told is treated as not loopback. */
bool api_auth_required(ApiAuthMode mode, const char *hostport);

typedef struct ApiToken {
        char name[API_TOKEN_NAME_MAX + 1];
        uint8_t hash[API_TOKEN_HASH_SIZE];     /* SHA-256 of the whole secret, prefix included */
        char **models;                          /* NULL when the token may use every model */
        size_t n_models;
} ApiToken;

typedef struct ApiTokens {
        ApiToken *tokens;
        size_t n;
} ApiTokens;

ApiTokens *api_tokens_free(ApiTokens *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(ApiTokens *, api_tokens_free);

/* [A-Za-z0-9_.-]{1,64} */
bool api_token_name_valid(const char *name);

/* A line of the file that is not taken: its number (from 1) and why. */
typedef void (*ApiTokensProblemFn)(unsigned line, const char *problem, void *userdata);

/* Parses the file's text (size bytes, NULs allowed: such a line is invalid). Blank lines and
 * lines starting with '#' are skipped; fields are separated by spaces or tabs; a bad line, a
 * second line with a name or a hash already seen, is reported to problem (may be NULL) and left
 * out, so a broken line never grants anything. -ENOMEM only. */
int api_tokens_parse(const char *text, size_t size, ApiTokensProblemFn problem, void *userdata, ApiTokens **ret);

/* The line for a token (without '\n'): "NAME HEX" or "NAME HEX M1,M2". malloc()ed. */
int api_token_line_format(const char *name, const uint8_t hash[static API_TOKEN_HASH_SIZE], char *const *models,
                           size_t n_models, char **ret);

/* SHA-256 of the secret. */
void api_token_hash(const char *secret, size_t len, uint8_t ret[static API_TOKEN_HASH_SIZE]);

/* The token whose hash is hash: every entry is compared, in constant time each. NULL if none. */
const ApiToken *api_tokens_find(const ApiTokens *t, const uint8_t hash[static API_TOKEN_HASH_SIZE]);
const ApiToken *api_tokens_find_name(const ApiTokens *t, const char *name);

/* The secret of "Authorization: Bearer SECRET" (scheme in any case, spaces around the secret
 * allowed). -ENOENT for no header, -EINVAL for another scheme or an empty secret. */
int api_token_bearer_parse(const char *authorization, const char **ret_secret, size_t *ret_len);

/* Whether a token may use model: any model when it lists none, else one of its models as Ollama
 * names them ("llama3.2" is "llama3.2:latest", case ignored: model_name_equal()). */
bool api_token_allows_model(const ApiToken *t, const char *model);

/* Parses "M1,M2" into a list (no empty names, none longer than API_TOKEN_MODEL_NAME_MAX, no spaces or
 * control characters, at most API_TOKEN_MODELS_MAX). -EINVAL otherwise. */
int api_token_models_parse(const char *list, char ***ret, size_t *ret_n);
