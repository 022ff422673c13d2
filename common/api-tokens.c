/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Bearer tokens of the API: the decision whether a listener needs them, the tokens file's
 * parser and writer, the constant-time match of a presented secret, and the model rules of a
 * restricted token. No I/O: shimd-auth.c reads the file, myceliactl writes it. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>

#include "hex.h"
#include "route-table.h"
#include "api-tokens.h"

static const char *const api_auth_mode_names[_API_AUTH_MAX] = {
        [API_AUTH_AUTO] = "auto",
        [API_AUTH_TOKEN] = "token",
        [API_AUTH_NONE] = "none",
};

ApiAuthMode api_auth_mode_from_string(const char *s) {
        if (!s)
                return _API_AUTH_INVALID;
        for (int i = 0; i < _API_AUTH_MAX; i++)
                if (streq(s, api_auth_mode_names[i]))
                        return (ApiAuthMode) i;
        return _API_AUTH_INVALID;
}

const char *api_auth_mode_to_string(ApiAuthMode m) {
        return m >= 0 && m < _API_AUTH_MAX ? api_auth_mode_names[m] : NULL;
}

int api_address_is_loopback(const char *hostport) {
        char host[INET6_ADDRSTRLEN + 1];
        const char *colon, *start = hostport;
        size_t len;
        struct in6_addr a6;
        struct in_addr a4;

        if (isempty(hostport))
                return -EINVAL;
        if (hostport[0] == '[') {
                const char *close = strchr(hostport, ']');

                if (!close || close[1] != ':')
                        return -EINVAL;
                start = hostport + 1;
                len = (size_t) (close - start);
                colon = close + 1;
        } else {
                colon = strrchr(hostport, ':');
                if (!colon)
                        return -EINVAL;
                len = (size_t) (colon - hostport);
        }
        if (len == 0 || len >= sizeof(host) || colon[1] == '\0')
                return -EINVAL;
        for (const char *p = colon + 1; *p; p++)
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
        memcpy(host, start, len);
        host[len] = '\0';

        if (hostport[0] != '[' && inet_pton(AF_INET, host, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;
        if (hostport[0] == '[' && inet_pton(AF_INET6, host, &a6) == 1) {
                if (IN6_IS_ADDR_LOOPBACK(&a6))
                        return 1;
                return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
        }
        return -EINVAL;
}

bool api_auth_required(ApiAuthMode mode, const char *hostport) {
        switch (mode) {
        case API_AUTH_NONE:
                return false;
        case API_AUTH_AUTO:
                return api_address_is_loopback(hostport) <= 0;
        default:
                return true;
        }
}

static void token_done(ApiToken *t) {
        for (size_t i = 0; i < t->n_models; i++)
                free(t->models[i]);
        free(t->models);
        t->models = NULL;
        t->n_models = 0;
}

ApiTokens *api_tokens_free(ApiTokens *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n; i++)
                token_done(&t->tokens[i]);
        free(t->tokens);
        free(t);
        return NULL;
}

static bool token_name_char(char c) {
        return isalnum((unsigned char) c) || c == '_' || c == '.' || c == '-';
}

bool api_token_name_valid(const char *name) {
        size_t n = 0;

        if (!name)
                return false;
        for (; name[n]; n++)
                if (n >= API_TOKEN_NAME_MAX || !token_name_char(name[n]))
                        return false;
        return n > 0;
}

static bool model_char(char c) {
        /* Ollama's names: letters, digits, '_', '-', '.', ':' (tag), '/' (namespace, host), '@'
         * (digest). Anything printable but a separator of this file is let through: Ollama
         * decides what a name is. */
        return (unsigned char) c > ' ' && (unsigned char) c != 0x7f && c != ',';
}

int api_token_models_parse(const char *list, char ***ret, size_t *ret_n) {
        char **models = NULL;
        size_t n = 0;
        const char *p = list;
        int r = -EINVAL;

        if (isempty(list))
                return -EINVAL;
        for (;;) {
                const char *end = strchrnul(p, ',');
                size_t len = (size_t) (end - p);
                char **nm;

                if (len == 0 || len > API_TOKEN_MODEL_NAME_MAX || n >= API_TOKEN_MODELS_MAX)
                        goto fail;
                for (size_t i = 0; i < len; i++)
                        if (!model_char(p[i]))
                                goto fail;
                nm = reallocarray(models, n + 1, sizeof(char *));
                if (!nm) {
                        r = -ENOMEM;
                        goto fail;
                }
                models = nm;
                models[n] = strndup(p, len);
                if (!models[n]) {
                        r = -ENOMEM;
                        goto fail;
                }
                n++;
                if (*end == '\0')
                        break;
                p = end + 1;
        }
        *ret = models;
        *ret_n = n;
        return 0;
fail:
        for (size_t i = 0; i < n; i++)
                free(models[i]);
        free(models);
        return r;
}

static int hash_parse(const char *s, size_t len, uint8_t ret[static API_TOKEN_HASH_SIZE]) {
        if (len != 2 * API_TOKEN_HASH_SIZE)
                return -EINVAL;
        for (size_t i = 0; i < API_TOKEN_HASH_SIZE; i++) {
                int hi = unhexchar(s[2 * i]), lo = unhexchar(s[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return -EINVAL;
                ret[i] = (uint8_t) (hi << 4 | lo);
        }
        return 0;
}

/* Splits line (NUL-terminated, modified) into at most max fields at spaces and tabs; returns the
 * number found, max + 1 when there are more. */
static size_t split_fields(char *line, char **fields, size_t max) {
        size_t n = 0;
        char *p = line;

        for (;;) {
                while (*p == ' ' || *p == '\t')
                        p++;
                if (*p == '\0')
                        return n;
                if (n == max)
                        return max + 1;
                fields[n++] = p;
                while (*p && *p != ' ' && *p != '\t')
                        p++;
                if (*p == '\0')
                        return n;
                *p++ = '\0';
        }
}

/* One line (NUL-terminated, modified): 1 with *t filled, 0 for a blank or comment line, or
 * -EINVAL with *ret_problem set, -ENOMEM. */
static int line_parse(char *line, ApiToken *t, const char **ret_problem) {
        char *fields[3];
        size_t n;
        int r;

        n = split_fields(line, fields, ELEMENTSOF(fields));
        if (n == 0 || fields[0][0] == '#')
                return 0;
        if (n < 2) {
                *ret_problem = "expected NAME SHA256HEX [MODEL,...]";
                return -EINVAL;
        }
        if (n > 3) {
                *ret_problem = "too many fields (models are separated by commas, without spaces)";
                return -EINVAL;
        }
        if (!api_token_name_valid(fields[0])) {
                *ret_problem = "invalid name: 1 to 64 of A-Z a-z 0-9 _ . -";
                return -EINVAL;
        }
        *t = (ApiToken) {};
        memcpy(t->name, fields[0], strlen(fields[0]) + 1);
        if (hash_parse(fields[1], strlen(fields[1]), t->hash) < 0) {
                *ret_problem = "invalid hash: 64 hex digits expected (the SHA-256 of the secret)";
                return -EINVAL;
        }
        if (n == 3) {
                r = api_token_models_parse(fields[2], &t->models, &t->n_models);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        *ret_problem = "invalid model list: names separated by commas";
                        return -EINVAL;
                }
        }
        return 1;
}

int api_tokens_parse(const char *text, size_t size, ApiTokensProblemFn problem, void *userdata, ApiTokens **ret) {
        _cleanup_(api_tokens_freep) ApiTokens *t = NULL;
        _cleanup_free_ char *line = NULL;
        size_t pos = 0, allocated = 0;
        unsigned number = 0;

        t = calloc(1, sizeof(*t));
        line = malloc(API_TOKENS_LINE_MAX + 1);
        if (!t || !line)
                return -ENOMEM;

        while (pos < size) {
                const char *nl = memchr(text + pos, '\n', size - pos);
                size_t len = nl ? (size_t) (nl - (text + pos)) : size - pos;
                const char *problem_text = NULL;
                ApiToken tok = {};
                int r;

                number++;
                if (len > 0 && text[pos + len - 1] == '\r')
                        len--;
                if (len > API_TOKENS_LINE_MAX)
                        problem_text = "line too long";
                else if (memchr(text + pos, '\0', len))
                        problem_text = "NUL byte in the line";
                else {
                        memcpy(line, text + pos, len);
                        line[len] = '\0';
                        r = line_parse(line, &tok, &problem_text);
                        if (r == -ENOMEM)
                                return r;
                        if (r > 0 && api_tokens_find_name(t, tok.name))
                                problem_text = "a token of this name is defined above";
                        else if (r > 0 && api_tokens_find(t, tok.hash))
                                problem_text = "the same hash as a token above";
                        else if (r > 0) {
                                if (t->n == allocated) {
                                        size_t na = allocated ? allocated * 2 : 8;
                                        ApiToken *nt = reallocarray(t->tokens, na, sizeof(ApiToken));

                                        if (!nt) {
                                                token_done(&tok);
                                                return -ENOMEM;
                                        }
                                        t->tokens = nt;
                                        allocated = na;
                                }
                                t->tokens[t->n++] = tok;
                                tok = (ApiToken) {};
                        }
                }
                token_done(&tok);
                if (problem_text && problem)
                        problem(number, problem_text, userdata);
                pos += nl ? (size_t) (nl - (text + pos)) + 1 : size - pos;
        }
        *ret = TAKE_PTR(t);
        return 0;
}

int api_token_line_format(const char *name, const uint8_t hash[static API_TOKEN_HASH_SIZE], char *const *models,
                           size_t n_models, char **ret) {
        size_t need = strlen(name) + 1 + 2 * API_TOKEN_HASH_SIZE + 2, off;
        char *s;

        if (!api_token_name_valid(name))
                return -EINVAL;
        for (size_t i = 0; i < n_models; i++)
                need += strlen(models[i]) + 1;
        s = malloc(need);
        if (!s)
                return -ENOMEM;
        off = (size_t) sprintf(s, "%s ", name);
        for (size_t i = 0; i < API_TOKEN_HASH_SIZE; i++)
                off += (size_t) sprintf(s + off, "%02x", hash[i]);
        for (size_t i = 0; i < n_models; i++)
                off += (size_t) sprintf(s + off, "%c%s", i == 0 ? ' ' : ',', models[i]);
        *ret = s;
        return 0;
}

void api_token_hash(const char *secret, size_t len, uint8_t ret[static API_TOKEN_HASH_SIZE]) {
        _Static_assert(API_TOKEN_HASH_SIZE == crypto_hash_sha256_BYTES, "SHA-256");
        (void) crypto_hash_sha256(ret, (const unsigned char *) secret, len);
}

const ApiToken *api_tokens_find(const ApiTokens *t, const uint8_t hash[static API_TOKEN_HASH_SIZE]) {
        const ApiToken *found = NULL;

        if (!t)
                return NULL;
        /* Every entry is compared, so the time taken does not say where a match is. */
        for (size_t i = 0; i < t->n; i++)
                if (sodium_memcmp(t->tokens[i].hash, hash, API_TOKEN_HASH_SIZE) == 0 && !found)
                        found = &t->tokens[i];
        return found;
}

const ApiToken *api_tokens_find_name(const ApiTokens *t, const char *name) {
        if (!t || !name)
                return NULL;
        for (size_t i = 0; i < t->n; i++)
                if (streq(t->tokens[i].name, name))
                        return &t->tokens[i];
        return NULL;
}

int api_token_bearer_parse(const char *authorization, const char **ret_secret, size_t *ret_len) {
        const char *p = authorization, *end;

        if (!p)
                return -ENOENT;
        while (*p == ' ' || *p == '\t')
                p++;
        if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
                return -EINVAL;
        p += 6;
        while (*p == ' ' || *p == '\t')
                p++;
        end = p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
        if (end == p)
                return -EINVAL;
        *ret_secret = p;
        *ret_len = (size_t) (end - p);
        return 0;
}

bool api_token_allows_model(const ApiToken *t, const char *model) {
        if (t->n_models == 0)
                return true;
        if (isempty(model))
                return false;
        for (size_t i = 0; i < t->n_models; i++)
                if (model_name_equal(t->models[i], model))
                        return true;
        return false;
}
