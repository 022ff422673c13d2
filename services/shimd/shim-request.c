/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Request classification, model extraction, header filtering, URL parsing and limits: the
 * decisions of the proxy, kept apart from libevent so unit tests can drive them. */
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <strings.h>

#include "hex.h"
#include "shim-request.h"

typedef struct EndpointInfo {
        const char *path;
        bool routed;            /* POST with a "model" naming where it runs */
        bool streams;
} EndpointInfo;

static const EndpointInfo endpoints[] = {
        { "/api/generate",        true,  true },
        { "/api/chat",            true,  true },
        { "/api/embed",           true,  false },
        { "/api/embeddings",      true,  false },
        { "/v1/chat/completions", true,  true },
        { "/v1/completions",      true,  true },
        { "/v1/embeddings",       true,  false },
        /* Not inference, but about one model: asked where the model is (docs/mesh-as-one.md). */
        { "/api/show",            true,  false },
        { "/api/pull",            false, true },
        { "/api/push",            false, true },
        { "/api/create",          false, true },
};

/* The path of a request target, and its length: absolute-form targets ("http://host/path") by
 * their path, the query and fragment left out. */
static const char *uri_path(const char *uri, size_t *ret_len) {
        if (strncasecmp(uri, "http://", 7) == 0) {
                const char *slash = strchr(uri + 7, '/');
                uri = slash ?: "/";
        }
        *ret_len = strcspn(uri, "?#");
        return uri;
}

bool shim_uri_is(const char *uri, const char *path) {
        size_t len;

        if (!uri)
                return false;
        uri = uri_path(uri, &len);
        return len == strlen(path) && strneq(uri, path, len);
}

void shim_request_classify(const char *method, const char *uri, ShimRequestClass *ret) {
        size_t len;

        *ret = (ShimRequestClass) { .routing = SHIM_ROUTING_LOCAL, .api = SHIM_API_OLLAMA };
        if (!uri)
                return;

        uri = uri_path(uri, &len);

        if (strneq(uri, "/v1/", 4) || (len == 3 && strneq(uri, "/v1", 3)))
                ret->api = SHIM_API_OPENAI;

        for (size_t i = 0; i < ELEMENTSOF(endpoints); i++)
                if (strlen(endpoints[i].path) == len && strneq(uri, endpoints[i].path, len)) {
                        bool post = method && streq(method, "POST");

                        ret->routing = endpoints[i].routed && post ? SHIM_ROUTING_BY_MODEL : SHIM_ROUTING_LOCAL;
                        ret->streams = endpoints[i].streams && post;
                        return;
                }
}

/* The model scanner: a JSON syntax checker that reads the body once, byte by byte, across
 * piece boundaries, with constant state, and remembers the last top-level "model" string, as
 * Go's encoding/json (Ollama's decoder) would assign it. No tree, no allocation. */

/* Go's encoding/json refuses deeper nesting. */
#define JSON_MAX_DEPTH 10000

typedef enum ScanState {
        SCAN_VALUE,             /* a value is expected */
        SCAN_VALUE_OR_END,      /* after '[': a value or ']' */
        SCAN_KEY_OR_END,        /* after '{': '"' or '}' */
        SCAN_KEY,               /* after ',' in an object: '"' */
        SCAN_COLON,
        SCAN_AFTER_VALUE,       /* ',' or the closing bracket */
        SCAN_STRING,
        SCAN_ESCAPE,            /* after '\' */
        SCAN_UNICODE,           /* in the 4 hex digits of \u */
        SCAN_LITERAL,           /* true, false, null */
        SCAN_NUM_MINUS,         /* after '-' */
        SCAN_NUM_ZERO,          /* a leading 0 */
        SCAN_NUM_INT,
        SCAN_NUM_DOT,           /* after '.' */
        SCAN_NUM_FRAC,
        SCAN_NUM_E,             /* after 'e' */
        SCAN_NUM_E_SIGN,        /* after 'e+' */
        SCAN_NUM_EXP,
        SCAN_DONE,              /* the top-level object ended; the rest is not read (Go's Decoder) */
        SCAN_ERROR,
} ScanState;

typedef enum ScanTarget {
        TARGET_NONE,            /* a string nobody needs decoded */
        TARGET_KEY,             /* a key of the top-level object */
        TARGET_MODEL,           /* the value of a top-level "model" key */
} ScanTarget;

typedef struct ModelScanner {
        ScanState state;
        unsigned depth;
        uint8_t containers[JSON_MAX_DEPTH / 8 + 1]; /* bit set: object, clear: array */

        ScanTarget target;
        bool in_key;            /* the string being read is an object key */
        bool key_is_model;      /* the key just read names "model" */
        const char *literal;
        unsigned literal_pos;
        unsigned hex_left;
        uint32_t hex;
        uint32_t high_surrogate; /* a \uD800-\uDBFF waiting for its low half, or 0 */

        char key[8];            /* decoded key of the top-level object (only its first bytes) */
        size_t key_len;
        char model[SHIM_MODEL_NAME_MAX + 8];
        size_t model_len;       /* may pass SHIM_MODEL_NAME_MAX: then it is too long */
        bool model_nul;         /* the value decoded to a string with a NUL in it */
        bool have_model;
        bool model_wrong_type;  /* a top-level "model" that is neither a string nor null */
} ModelScanner;

static bool scan_in_object(const ModelScanner *s) {
        return s->depth > 0 && (s->containers[(s->depth - 1) / 8] & (1u << ((s->depth - 1) % 8)));
}

static bool scan_push(ModelScanner *s, bool object) {
        if (s->depth >= JSON_MAX_DEPTH)
                return false;
        if (object)
                s->containers[s->depth / 8] |= (uint8_t) (1u << (s->depth % 8));
        else
                s->containers[s->depth / 8] &= (uint8_t) ~(1u << (s->depth % 8));
        s->depth++;
        return true;
}

/* Appends decoded bytes to the key or model being read. */
static void scan_put(ModelScanner *s, const char *p, size_t n) {
        if (s->target == TARGET_KEY) {
                if (s->key_len + n <= sizeof(s->key))
                        memcpy(s->key + s->key_len, p, n);
                s->key_len += n;
        } else if (s->target == TARGET_MODEL) {
                if (s->model_len + n <= SHIM_MODEL_NAME_MAX)
                        memcpy(s->model + s->model_len, p, n);
                s->model_len += n;
        }
}

static void scan_put_codepoint(ModelScanner *s, uint32_t c) {
        char b[4];
        size_t n;

        if (s->target == TARGET_NONE)
                return;
        if (c == 0)
                s->model_nul = s->model_nul || s->target == TARGET_MODEL;
        if (c < 0x80) {
                b[0] = (char) c;
                n = 1;
        } else if (c < 0x800) {
                b[0] = (char) (0xC0 | (c >> 6));
                b[1] = (char) (0x80 | (c & 0x3F));
                n = 2;
        } else if (c < 0x10000) {
                b[0] = (char) (0xE0 | (c >> 12));
                b[1] = (char) (0x80 | ((c >> 6) & 0x3F));
                b[2] = (char) (0x80 | (c & 0x3F));
                n = 3;
        } else {
                b[0] = (char) (0xF0 | (c >> 18));
                b[1] = (char) (0x80 | ((c >> 12) & 0x3F));
                b[2] = (char) (0x80 | ((c >> 6) & 0x3F));
                b[3] = (char) (0x80 | (c & 0x3F));
                n = 4;
        }
        scan_put(s, b, n);
}

/* A high surrogate not followed by its low half becomes U+FFFD, as in Go. */
static void scan_flush_surrogate(ModelScanner *s) {
        if (s->high_surrogate) {
                scan_put_codepoint(s, 0xFFFD);
                s->high_surrogate = 0;
        }
}

static void scan_unicode_done(ModelScanner *s) {
        uint32_t c = s->hex;

        if (c >= 0xDC00 && c <= 0xDFFF && s->high_surrogate) {
                c = 0x10000 + ((s->high_surrogate - 0xD800) << 10) + (c - 0xDC00);
                s->high_surrogate = 0;
                scan_put_codepoint(s, c);
                return;
        }
        scan_flush_surrogate(s);
        if (c >= 0xD800 && c <= 0xDBFF)
                s->high_surrogate = c;
        else if (c >= 0xDC00 && c <= 0xDFFF)
                scan_put_codepoint(s, 0xFFFD);
        else
                scan_put_codepoint(s, c);
}

static void scan_string_end(ModelScanner *s) {
        scan_flush_surrogate(s);
        if (s->in_key) {
                /* Go matches object keys to field names exactly or, failing that, ignoring
                 * case ("Model" sets the model too). */
                s->key_is_model = s->target == TARGET_KEY && s->key_len == 5 &&
                                  strncasecmp(s->key, "model", 5) == 0;
                s->in_key = false;
                s->state = SCAN_COLON;
        } else {
                if (s->target == TARGET_MODEL)
                        s->have_model = true;
                s->state = SCAN_AFTER_VALUE;
        }
        s->target = TARGET_NONE;
}

/* A value (not a string) starts at depth 1 after "model": Go fails to assign it (null aside,
 * which leaves the field alone). */
static void scan_value_not_string(ModelScanner *s, bool is_null) {
        if (s->depth == 1 && s->key_is_model && !is_null)
                s->model_wrong_type = true;
}

static void scan_after_value(ModelScanner *s) {
        s->state = s->depth == 0 ? SCAN_DONE : SCAN_AFTER_VALUE;
}

static bool is_json_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Starts the value beginning with c, in state SCAN_VALUE. */
static void scan_value_start(ModelScanner *s, char c) {
        switch (c) {
        case '{':
                scan_value_not_string(s, false);
                if (!scan_push(s, true))
                        goto error;
                s->state = SCAN_KEY_OR_END;
                return;
        case '[':
                if (s->depth == 0)
                        goto error; /* the body must be an object */
                scan_value_not_string(s, false);
                if (!scan_push(s, false))
                        goto error;
                s->state = SCAN_VALUE_OR_END;
                return;
        case '"':
                if (s->depth == 0)
                        goto error;
                s->target = TARGET_NONE;
                if (s->depth == 1 && s->key_is_model) {
                        s->target = TARGET_MODEL;
                        s->model_len = 0;
                        s->model_nul = false;
                }
                s->state = SCAN_STRING;
                return;
        case 't':
        case 'f':
        case 'n':
                if (s->depth == 0)
                        goto error;
                scan_value_not_string(s, c == 'n');
                s->literal = c == 't' ? "true" : c == 'f' ? "false" : "null";
                s->literal_pos = 1;
                s->state = SCAN_LITERAL;
                return;
        case '-':
        case '0' ... '9':
                if (s->depth == 0)
                        goto error;
                scan_value_not_string(s, false);
                s->state = c == '-' ? SCAN_NUM_MINUS : c == '0' ? SCAN_NUM_ZERO : SCAN_NUM_INT;
                return;
        default:
                goto error;
        }
error:
        s->state = SCAN_ERROR;
}

/* Whether c may continue a number in state st; a number that is complete ends before c. */
static bool scan_number(ModelScanner *s, char c) {
        bool digit = c >= '0' && c <= '9';

        switch (s->state) {
        case SCAN_NUM_MINUS:
                if (!digit)
                        break;
                s->state = c == '0' ? SCAN_NUM_ZERO : SCAN_NUM_INT;
                return true;
        case SCAN_NUM_INT:
                if (digit)
                        return true;
                __attribute__((fallthrough));
        case SCAN_NUM_ZERO:
                if (c == '.') {
                        s->state = SCAN_NUM_DOT;
                        return true;
                }
                if (c == 'e' || c == 'E') {
                        s->state = SCAN_NUM_E;
                        return true;
                }
                scan_after_value(s);
                return false;
        case SCAN_NUM_DOT:
                if (!digit)
                        break;
                s->state = SCAN_NUM_FRAC;
                return true;
        case SCAN_NUM_FRAC:
                if (digit)
                        return true;
                if (c == 'e' || c == 'E') {
                        s->state = SCAN_NUM_E;
                        return true;
                }
                scan_after_value(s);
                return false;
        case SCAN_NUM_E:
                if (c == '+' || c == '-') {
                        s->state = SCAN_NUM_E_SIGN;
                        return true;
                }
                __attribute__((fallthrough));
        case SCAN_NUM_E_SIGN:
                if (!digit)
                        break;
                s->state = SCAN_NUM_EXP;
                return true;
        case SCAN_NUM_EXP:
                if (digit)
                        return true;
                scan_after_value(s);
                return false;
        default:
                break;
        }
        s->state = SCAN_ERROR;
        return true;
}

static void scan_feed(ModelScanner *s, const char *p, size_t n) {
        const char *end = p + n;

        while (p < end) {
                char c = *p;

                switch (s->state) {
                case SCAN_DONE:
                case SCAN_ERROR:
                        return;

                case SCAN_STRING: {
                        /* The common case: a run of plain bytes. */
                        const char *q = p;

                        while (q < end && *q != '"' && *q != '\\' && (unsigned char) *q >= 0x20)
                                q++;
                        if (q > p) {
                                scan_flush_surrogate(s);
                                if (s->target != TARGET_NONE)
                                        scan_put(s, p, (size_t) (q - p));
                                p = q;
                                continue;
                        }
                        if (c == '"')
                                scan_string_end(s);
                        else if (c == '\\')
                                s->state = SCAN_ESCAPE;
                        else
                                s->state = SCAN_ERROR; /* control characters must be escaped */
                        p++;
                        continue;
                }

                case SCAN_ESCAPE: {
                        char d;

                        s->state = SCAN_STRING;
                        switch (c) {
                        case '"': case '\\': case '/': d = c; break;
                        case 'b': d = '\b'; break;
                        case 'f': d = '\f'; break;
                        case 'n': d = '\n'; break;
                        case 'r': d = '\r'; break;
                        case 't': d = '\t'; break;
                        case 'u':
                                s->state = SCAN_UNICODE;
                                s->hex_left = 4;
                                s->hex = 0;
                                p++;
                                continue;
                        default:
                                s->state = SCAN_ERROR;
                                return;
                        }
                        scan_flush_surrogate(s);
                        scan_put(s, &d, 1);
                        p++;
                        continue;
                }

                case SCAN_UNICODE: {
                        int v = unhexchar(c);

                        if (v < 0) {
                                s->state = SCAN_ERROR;
                                return;
                        }
                        s->hex = (s->hex << 4) | (uint32_t) v;
                        if (--s->hex_left == 0) {
                                s->state = SCAN_STRING;
                                scan_unicode_done(s);
                        }
                        p++;
                        continue;
                }

                case SCAN_LITERAL:
                        if (c != s->literal[s->literal_pos]) {
                                s->state = SCAN_ERROR;
                                return;
                        }
                        if (s->literal[++s->literal_pos] == '\0')
                                scan_after_value(s);
                        p++;
                        continue;

                case SCAN_NUM_MINUS ... SCAN_NUM_EXP:
                        if (scan_number(s, c))
                                p++;
                        /* else: the number ended before c, which is read again as what follows */
                        continue;

                default:
                        break;
                }

                /* Structural states: whitespace is skipped between tokens. */
                if (is_json_space(c)) {
                        p++;
                        continue;
                }
                switch (s->state) {
                case SCAN_VALUE:
                        scan_value_start(s, c);
                        break;
                case SCAN_VALUE_OR_END:
                        if (c == ']') {
                                s->depth--;
                                scan_after_value(s);
                        } else
                                scan_value_start(s, c);
                        break;
                case SCAN_KEY_OR_END:
                        if (c == '}') {
                                s->depth--;
                                scan_after_value(s);
                                break;
                        }
                        __attribute__((fallthrough));
                case SCAN_KEY:
                        if (c != '"') {
                                s->state = SCAN_ERROR;
                                return;
                        }
                        s->target = s->depth == 1 ? TARGET_KEY : TARGET_NONE;
                        s->in_key = true;
                        s->key_len = 0;
                        s->key_is_model = false;
                        s->state = SCAN_STRING;
                        break;
                case SCAN_COLON:
                        if (c != ':') {
                                s->state = SCAN_ERROR;
                                return;
                        }
                        s->state = SCAN_VALUE;
                        break;
                case SCAN_AFTER_VALUE:
                        if (c == ',') {
                                s->state = scan_in_object(s) ? SCAN_KEY : SCAN_VALUE;
                                if (scan_in_object(s))
                                        s->key_is_model = false;
                        } else if (c == (scan_in_object(s) ? '}' : ']')) {
                                s->depth--;
                                s->key_is_model = false;
                                scan_after_value(s);
                        } else {
                                s->state = SCAN_ERROR;
                                return;
                        }
                        break;
                default:
                        s->state = SCAN_ERROR;
                        return;
                }
                p++;
        }
}

int shim_request_extract_model(const struct iovec *iov, size_t n_iov, char **ret) {
        ModelScanner s;
        char *name;

        /* Only the fields that are read before being written are cleared: the containers
         * stack is written on push, the buffers up to their lengths. */
        s.state = SCAN_VALUE;
        s.depth = 0;
        s.target = TARGET_NONE;
        s.in_key = false;
        s.key_is_model = false;
        s.high_surrogate = 0;
        s.key_len = 0;
        s.model_len = 0;
        s.model_nul = false;
        s.have_model = false;
        s.model_wrong_type = false;

        for (size_t i = 0; i < n_iov && s.state != SCAN_DONE && s.state != SCAN_ERROR; i++)
                scan_feed(&s, iov[i].iov_base, iov[i].iov_len);

        /* Invalid or truncated JSON: Ollama answers 400, so the local upstream should say it. */
        if (s.state != SCAN_DONE)
                return -EINVAL;
        if (s.model_wrong_type || !s.have_model || s.model_len == 0 || s.model_nul)
                return -ENOENT;
        if (s.model_len > SHIM_MODEL_NAME_MAX)
                return -ENAMETOOLONG;
        name = strndup(s.model, s.model_len);
        if (!name)
                return -ENOMEM;
        *ret = name;
        return 0;
}

/* Whether the comma-separated token list contains name (case-insensitive, OWS trimmed). */
static bool token_list_contains(const char *list, const char *name) {
        size_t n = strlen(name);

        for (const char *p = list; *p;) {
                const char *end;
                size_t len;

                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                end = p + strcspn(p, ",");
                len = (size_t) (end - p);
                while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                        len--;
                if (len == n && len > 0 && strncasecmp(p, name, n) == 0)
                        return true;
                p = end;
        }
        return false;
}

/* Compared by length first: most headers are dismissed without a string compare. */
ShimHeader shim_header_classify(const char *name) {
        size_t n = strlen(name);

#define IS(s) (n == sizeof(s) - 1 && strcasecmp(name, s) == 0)
        switch (n) {
        case 2:
                if (IS("TE"))
                        return SHIM_HEADER_HOP_BY_HOP;
                break;
        case 4:
                if (IS("Host"))
                        return SHIM_HEADER_HOST;
                break;
        case 6:
                if (IS("Expect"))
                        return SHIM_HEADER_EXPECT;
                break;
        case 7:
                if (IS("Trailer") || IS("Upgrade"))
                        return SHIM_HEADER_HOP_BY_HOP;
                break;
        case 10:
                if (IS("Connection"))
                        return SHIM_HEADER_CONNECTION;
                if (IS("Keep-Alive"))
                        return SHIM_HEADER_HOP_BY_HOP;
                break;
        case 12:
                if (IS("Content-Type"))
                        return SHIM_HEADER_CONTENT_TYPE;
                break;
        case 13:
                if (IS("Authorization"))
                        return SHIM_HEADER_AUTHORIZATION;
                break;
        case 14:
                if (IS("Content-Length"))
                        return SHIM_HEADER_CONTENT_LENGTH;
                break;
        case 17:
                if (IS("Transfer-Encoding"))
                        return SHIM_HEADER_HOP_BY_HOP;
                break;
        }
#undef IS
        /* Proxy-Authenticate, Proxy-Authorization, Proxy-Connection, and any other Proxy-. */
        return n >= 6 && strncasecmp(name, "Proxy-", 6) == 0 ? SHIM_HEADER_HOP_BY_HOP : SHIM_HEADER_OTHER;
}

bool shim_header_is_hop_by_hop(const char *name, const char *connection) {
        ShimHeader h;

        if (!name)
                return false;
        h = shim_header_classify(name);
        if (h == SHIM_HEADER_HOP_BY_HOP || h == SHIM_HEADER_CONNECTION)
                return true;
        return connection && token_list_contains(connection, name);
}

int shim_content_length_parse(const char *value, uint64_t *ret) {
        uint64_t n = 0;

        if (isempty(value))
                return -EINVAL;
        for (const char *p = value; *p; p++) {
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                if (n > (UINT64_MAX - 9) / 10)
                        return -ERANGE;
                n = n * 10 + (uint64_t) (*p - '0');
        }
        *ret = n;
        return 0;
}

void shim_limit_body_message(const char *content_length, uint64_t max, char *buf, size_t size) {
        uint64_t n;

        if (shim_content_length_parse(content_length, &n) >= 0 && n > max)
                snprintf(buf, size, "request body too large: %" PRIu64 " bytes exceeds the limit of %" PRIu64 " bytes",
                         n, max);
        else
                snprintf(buf, size, "request body too large: it exceeds the limit of %" PRIu64 " bytes", max);
}

bool shim_limit_requests_reached(unsigned active, unsigned max) {
        return active >= max;
}

/* Whether uri is path or below it ("/api/blobs/sha256:..."). */
static bool uri_under(const char *uri, const char *prefix) {
        size_t n = strlen(prefix);

        return strneq(uri, prefix, n) && (uri[n] == '\0' || uri[n] == '/' || uri[n] == '?');
}

ShimTokenScope shim_token_scope(const char *method, const char *uri) {
        static const char *const model_paths[] = {
                "/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show",
                "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
        };
        static const char *const any_paths[] = {
                "/api/tags", "/api/ps", "/api/version", "/v1/models", "/metrics",
        };
        bool read = streq(method, "GET") || streq(method, "HEAD");

        /* "/" answers "Ollama is running"; /mycelia/ holds the topology page's files, no data
         * (what it shows comes from /api/mycelia/status, with the user's token). */
        if (streq(method, "OPTIONS") || (read && (shim_uri_is(uri, "/") || uri_under(uri, "/mycelia"))))
                return SHIM_TOKEN_SCOPE_OPEN;
        if (uri_under(uri, "/api/mycelia"))
                /* The shim's own API: the texts it embeds go through this listener again, with
                 * the client's token, and meet the model rule there. */
                return SHIM_TOKEN_SCOPE_ANY;
        if (streq(method, "POST"))
                for (size_t i = 0; i < ELEMENTSOF(model_paths); i++)
                        if (shim_uri_is(uri, model_paths[i]))
                                return SHIM_TOKEN_SCOPE_MODEL;
        if (read) {
                for (size_t i = 0; i < ELEMENTSOF(any_paths); i++)
                        if (shim_uri_is(uri, any_paths[i]))
                                return SHIM_TOKEN_SCOPE_ANY;
                /* /v1/models/NAME: one entry of the list. */
                if (strneq(uri, "/v1/models/", 11))
                        return SHIM_TOKEN_SCOPE_ANY;
        }
        /* Pull, push, create, copy, delete, blobs, and whatever else changes Ollama's store. */
        return SHIM_TOKEN_SCOPE_MANAGE;
}

const char *shim_method_name(enum evhttp_cmd_type t) {
        switch (t) {
        case EVHTTP_REQ_GET: return "GET";
        case EVHTTP_REQ_POST: return "POST";
        case EVHTTP_REQ_HEAD: return "HEAD";
        case EVHTTP_REQ_PUT: return "PUT";
        case EVHTTP_REQ_DELETE: return "DELETE";
        case EVHTTP_REQ_OPTIONS: return "OPTIONS";
        case EVHTTP_REQ_TRACE: return "TRACE";
        case EVHTTP_REQ_CONNECT: return "CONNECT";
        case EVHTTP_REQ_PATCH: return "PATCH";
        default: return "?";
        }
}
