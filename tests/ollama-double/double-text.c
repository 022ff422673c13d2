/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pure core of the Ollama test double: deterministic text, not a language model. No I/O here;
 * every output is a function of the inputs, so tests can predict what the double will say. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "double-text.h"

static const char *const double_text_words[64] = {
        "the",    "river",  "stone",  "light",   "quiet",  "garden", "moves",   "under",
        "over",   "bright", "small",  "morning", "evening", "old",   "green",   "window",
        "slowly", "carries", "every", "mountain", "water", "house",  "near",    "far",
        "cloud",  "warm",   "cold",   "bread",   "table",  "friend", "story",   "road",
        "forest", "open",   "field",  "song",    "simple", "clear",  "deep",    "paper",
        "wind",   "north",  "south",  "village", "bridge", "gentle", "learns",  "finds",
        "keeps",  "builds", "waits",  "sees",    "with",   "from",   "toward",  "beside",
        "yellow", "silver", "little", "many",    "quick",  "steady", "lantern", "harbor",
};

uint64_t double_text_fnv1a64(uint64_t h, const void *data, size_t len) {
        const uint8_t *p = data;

        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}

static uint64_t double_text_xorshift64(uint64_t *state) {
        uint64_t x = *state;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        return x;
}

/* Hashes lowercase(canonical name) + "\0": the prefix every seed shares. */
static uint64_t double_text_model_hash(const char *model) {
        _cleanup_dfree_ char *norm = NULL;
        const char *name = model ?: "";
        uint64_t h = DOUBLE_TEXT_FNV_OFFSET;

        if (double_text_model_normalize(name, &norm) >= 0)
                name = norm;
        for (const char *p = name; *p; p++) {
                uint8_t c = (uint8_t) tolower((unsigned char) *p);
                h = double_text_fnv1a64(h, &c, 1);
        }
        return double_text_fnv1a64(h, "", 1);
}

uint64_t double_text_seed(const char *model, const char *text, size_t len) {
        return double_text_fnv1a64(double_text_model_hash(model), text ?: "", text ? len : 0);
}

void double_text_gen_init(DoubleTextGen *g, uint64_t seed, unsigned n) {
        /* xorshift has a fixed point at 0; any other constant will do. */
        *g = (DoubleTextGen) {
                .state = seed ?: UINT64_C(0x9e3779b97f4a7c15),
                .n = n > DOUBLE_TEXT_MAX_TOKENS ? DOUBLE_TEXT_MAX_TOKENS : n,
        };
}

int double_text_gen_next(DoubleTextGen *g, char *buf, size_t size) {
        const char *word;
        size_t l;

        if (size < DOUBLE_TEXT_TOKEN_MAX)
                return -ENOBUFS;
        if (g->index >= g->n) {
                buf[0] = '\0';
                return 0;
        }

        word = double_text_words[double_text_xorshift64(&g->state) >> 58];
        l = strlen(word);
        memcpy(buf, word, l);
        if (g->index == 0)
                buf[0] = (char) toupper((unsigned char) buf[0]);
        buf[l++] = g->index + 1 == g->n ? '.' : ' ';
        buf[l] = '\0';
        g->index++;
        return (int) l;
}

int double_text_generate(uint64_t seed, unsigned n, char **ret_text) {
        DoubleTextGen g;
        char tok[DOUBLE_TEXT_TOKEN_MAX];
        size_t used = 0;
        char *text;
        int l;

        double_text_gen_init(&g, seed, n);
        text = malloc((size_t) g.n * DOUBLE_TEXT_TOKEN_MAX + 1);
        if (!text)
                return -ENOMEM;
        while ((l = double_text_gen_next(&g, tok, sizeof(tok))) > 0) {
                memcpy(text + used, tok, (size_t) l);
                used += (size_t) l;
        }
        text[used] = '\0';
        *ret_text = text;
        return 0;
}

void double_text_gen_init_at(DoubleTextGen *g, uint64_t seed, unsigned n, unsigned k) {
        double_text_gen_init(g, seed, n);
        for (; g->index < k && g->index < g->n; g->index++)
                (void) double_text_xorshift64(&g->state);
}

/* Whether prefix is exactly the first k <= max_k tokens of the n-token answer of seed. */
static bool double_text_prefix_tokens(uint64_t seed, unsigned n, unsigned max_k, const char *prefix, size_t len,
                                      unsigned *ret_k) {
        char tok[DOUBLE_TEXT_TOKEN_MAX];
        DoubleTextGen g;
        size_t pos = 0;
        int l;

        if (len > 0 && !prefix)
                return false;
        double_text_gen_init(&g, seed, n);
        while (pos < len) {
                if (g.index >= max_k)
                        return false;
                l = double_text_gen_next(&g, tok, sizeof(tok));
                if (l <= 0 || (size_t) l > len - pos || memcmp(prefix + pos, tok, (size_t) l) != 0)
                        return false;
                pos += (size_t) l;
        }
        *ret_k = g.index;
        return true;
}

bool double_text_continuation_skip(uint64_t seed, unsigned n, const char *prefix, size_t len, unsigned *ret_k) {
        return double_text_prefix_tokens(seed, n, UINT32_MAX, prefix, len, ret_k);
}

bool double_text_continuation_split(const char *model, unsigned n, const char *prompt, size_t len,
                                    size_t *ret_split, unsigned *ret_k) {
        size_t lo, i;
        unsigned k;

        if (!prompt || len < 2)
                return false;
        /* The answer's first token is capitalised and the rest are lower case, so an answer part
         * can only start at the prompt's last uppercase letter: any earlier start would contain
         * it. That one candidate is the longest and the only one. */
        lo = len > DOUBLE_TEXT_CONTINUE_MAX_BYTES ? len - DOUBLE_TEXT_CONTINUE_MAX_BYTES : 0;
        for (i = len; i > lo && !(prompt[i - 1] >= 'A' && prompt[i - 1] <= 'Z'); i--)
                ;
        /* None in reach, or the whole prompt would be answer: an empty prompt only loads. */
        if (i <= lo || i == 1)
                return false;
        i--;
        if (!double_text_prefix_tokens(double_text_seed(model, prompt, i), n, DOUBLE_TEXT_CONTINUE_MAX_TOKENS,
                                       prompt + i, len - i, &k))
                return false;
        *ret_split = i;
        *ret_k = k;
        return true;
}

static bool double_text_is_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

size_t double_text_next_word(const char *s, size_t len, size_t *pos, const char **ret_word) {
        size_t i = *pos, start;

        while (i < len && double_text_is_space(s[i]))
                i++;
        start = i;
        while (i < len && !double_text_is_space(s[i]))
                i++;
        *pos = i;
        *ret_word = s + start;
        return i - start;
}

unsigned double_text_count_words(const char *s, size_t len) {
        unsigned n = 0;
        size_t pos = 0;
        const char *w;

        if (!s)
                return 0;
        while (double_text_next_word(s, len, &pos, &w) > 0)
                if (n < UINT32_MAX)
                        n++;
        return n;
}

uint32_t double_text_token_id(const char *word, size_t len) {
        return (uint32_t) (1 + double_text_fnv1a64(DOUBLE_TEXT_FNV_OFFSET, word, len) % 127999);
}

int double_text_embedding(const char *model, const char *input, size_t len, unsigned dims, float *ret) {
        uint64_t state;
        double sum = 0;

        if (dims == 0 || dims > DOUBLE_TEXT_MAX_DIMENSIONS)
                return -EINVAL;

        state = double_text_seed(model, input, len) ?: UINT64_C(0x9e3779b97f4a7c15);
        for (unsigned i = 0; i < dims; i++) {
                /* 53 random bits to [-1, 1). */
                double v = (double) (double_text_xorshift64(&state) >> 11) * 0x1p-53 * 2.0 - 1.0;
                ret[i] = (float) v;
                sum += v * v;
        }
        /* Normalised after the prefix is taken, as Ollama normalises after truncating. */
        sum = sqrt(sum);
        if (sum < 1e-12)
                sum = 1e-12;
        for (unsigned i = 0; i < dims; i++)
                ret[i] = (float) (ret[i] / sum);
        return 0;
}

static bool double_text_name_char(char c) {
        return isalnum((unsigned char) c) || c == '_' || c == '-' || c == '.';
}

/* One path part of a name: [A-Za-z0-9_][A-Za-z0-9_.-]*, at most 80 characters (ParseName). */
static bool double_text_part_valid(const char *p, size_t n) {
        if (n == 0 || n > 80)
                return false;
        if (!isalnum((unsigned char) p[0]) && p[0] != '_')
                return false;
        for (size_t i = 1; i < n; i++)
                if (!double_text_name_char(p[i]))
                        return false;
        return true;
}

bool double_text_model_name_valid(const char *name) {
        const char *slash, *colon, *model, *p;
        size_t len;

        if (!name)
                return false;
        len = strlen(name);
        if (len == 0 || len > DOUBLE_TEXT_MAX_MODEL_NAME)
                return false;

        slash = strrchr(name, '/');
        model = slash ? slash + 1 : name;
        colon = strchr(model, ':');
        if (!double_text_part_valid(model, colon ? (size_t) (colon - model) : strlen(model)))
                return false;
        if (colon && !double_text_part_valid(colon + 1, strlen(colon + 1)))
                return false;

        /* host and namespace parts before the model; the host may carry a ":port". */
        p = name;
        while (slash && p < model - 1) {
                const char *end = memchr(p, '/', (size_t) (model - 1 - p)) ?: model - 1;
                size_t n = (size_t) (end - p);
                const char *port = memchr(p, ':', n);

                if (port && p == name) {
                        for (const char *q = port + 1; q < end; q++)
                                if (!isdigit((unsigned char) *q))
                                        return false;
                        n = (size_t) (port - p);
                }
                if (!double_text_part_valid(p, n))
                        return false;
                p = end + 1;
        }
        return true;
}

static const char *double_text_strip_prefix_case(const char *s, const char *prefix) {
        size_t n = strlen(prefix);

        return strncasecmp(s, prefix, n) == 0 ? s + n : NULL;
}

int double_text_model_normalize(const char *name, char **ret) {
        const char *p, *slash;
        char *out;
        size_t n;
        bool tag;

        if (!double_text_model_name_valid(name))
                return -EINVAL;

        p = double_text_strip_prefix_case(name, "registry.ollama.ai/") ?: name;
        p = double_text_strip_prefix_case(p, "library/") ?: p;
        if (*p == '\0')
                return -EINVAL;

        slash = strrchr(p, '/');
        tag = strchr(slash ? slash + 1 : p, ':') != NULL;
        n = strlen(p);
        out = malloc(n + sizeof(":latest"));
        if (!out)
                return -ENOMEM;
        memcpy(out, p, n);
        strcpy(out + n, tag ? "" : ":latest");
        *ret = out;
        return 0;
}

bool double_text_model_equal(const char *a, const char *b) {
        _cleanup_dfree_ char *na = NULL, *nb = NULL;

        if (double_text_model_normalize(a, &na) < 0 || double_text_model_normalize(b, &nb) < 0)
                return false;
        return strcasecmp(na, nb) == 0;
}

bool double_text_model_is_embedding(const char *name) {
        return name && (strcasestr(name, "embed") || strcasestr(name, "minilm"));
}

int double_text_model_namespace(const char *name, char **ret) {
        _cleanup_dfree_ char *norm = NULL;
        const char *last, *prev;
        char *out;
        int r;

        r = double_text_model_normalize(name, &norm);
        if (r < 0)
                return r;
        last = strrchr(norm, '/');
        if (!last) {
                out = strdup("library");
        } else {
                prev = last;
                while (prev > norm && prev[-1] != '/')
                        prev--;
                out = strndup(prev, (size_t) (last - prev));
        }
        if (!out)
                return -ENOMEM;
        *ret = out;
        return 0;
}

static int double_text_error(char **ret_error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int double_text_error(char **ret_error, const char *fmt, ...) {
        va_list ap;
        char *s = NULL;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        if (ret_error)
                *ret_error = s;
        else
                free(s);
        return -EINVAL;
}

/* Go's error strings quote with %q; our inputs are short and mostly printable. */
static char *double_text_go_quote(const char *s) {
        size_t n = strlen(s);
        char *out = malloc(n * 4 + 3), *o = out;

        if (!out)
                return NULL;
        *o++ = '"';
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p == '"' || *p == '\\') {
                        *o++ = '\\';
                        *o++ = (char) *p;
                } else if (*p < 0x20 || *p == 0x7f) {
                        o += sprintf(o, "\\x%02x", *p);
                } else {
                        *o++ = (char) *p;
                }
        }
        *o++ = '"';
        *o = '\0';
        return out;
}

int double_text_parse_go_duration(const char *s, int64_t *ret_ns, char **ret_error) {
        static const struct {
                const char *name;
                uint64_t ns;
        } units[] = {
                { "ns", 1 },
                { "us", 1000 },
                { "\xc2\xb5s", 1000 },  /* U+00B5 micro sign */
                { "\xce\xbcs", 1000 },  /* U+03BC Greek mu */
                { "ms", 1000000 },
                { "s", UINT64_C(1000000000) },
                { "m", UINT64_C(60000000000) },
                { "h", UINT64_C(3600000000000) },
        };
        _cleanup_dfree_ char *q = NULL;
        const char *p = s;
        bool neg = false;
        double total = 0;

        q = double_text_go_quote(s ?: "");
        if (!q)
                return -ENOMEM;
        if (!s)
                return double_text_error(ret_error, "time: invalid duration %s", q);

        if (*p == '-' || *p == '+') {
                neg = *p == '-';
                p++;
        }
        if (strcmp(p, "0") == 0) {
                *ret_ns = 0;
                return 0;
        }
        if (*p == '\0')
                return double_text_error(ret_error, "time: invalid duration %s", q);

        while (*p) {
                const char *num = p, *unit;
                size_t ulen;
                double v;
                bool found = false, digits = false;

                while (isdigit((unsigned char) *p)) {
                        p++;
                        digits = true;
                }
                if (*p == '.') {
                        p++;
                        while (isdigit((unsigned char) *p)) {
                                p++;
                                digits = true;
                        }
                }
                if (!digits)
                        return double_text_error(ret_error, "time: invalid duration %s", q);
                v = strtod(num, NULL);

                unit = p;
                while (*p && *p != '.' && !isdigit((unsigned char) *p))
                        p++;
                ulen = (size_t) (p - unit);
                if (ulen == 0)
                        return double_text_error(ret_error, "time: missing unit in duration %s", q);
                for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                        if (strlen(units[i].name) == ulen && memcmp(units[i].name, unit, ulen) == 0) {
                                total += v * (double) units[i].ns;
                                found = true;
                                break;
                        }
                if (!found) {
                        _cleanup_dfree_ char *u = strndup(unit, ulen), *uq = NULL;

                        if (!u)
                                return -ENOMEM;
                        uq = double_text_go_quote(u);
                        if (!uq)
                                return -ENOMEM;
                        return double_text_error(ret_error, "time: unknown unit %s in duration %s", uq, q);
                }
                if (total > 9.2233720368547758e18)
                        return double_text_error(ret_error, "time: invalid duration %s", q);
        }

        *ret_ns = neg ? -(int64_t) total : (int64_t) total;
        return 0;
}

int double_text_parse_keep_alive(json_object *v, int64_t *ret_ns, bool *ret_set, char **ret_error) {
        int64_t ns;
        int r;

        switch (json_object_get_type(v)) {
        case json_type_null:
                *ret_set = false;
                *ret_ns = DOUBLE_TEXT_DEFAULT_KEEP_ALIVE_NS;
                return 0;
        case json_type_int:
        case json_type_double: {
                double d = json_object_get_double(v);

                if (d < 0)
                        ns = DOUBLE_TEXT_KEEP_ALIVE_FOREVER;
                else if (d * 1e9 >= 9.2e18)
                        ns = DOUBLE_TEXT_KEEP_ALIVE_FOREVER;
                else
                        ns = (int64_t) (d * 1e9);
                break;
        }
        case json_type_string:
                r = double_text_parse_go_duration(json_object_get_string(v), &ns, ret_error);
                if (r < 0)
                        return r;
                if (ns < 0)
                        ns = DOUBLE_TEXT_KEEP_ALIVE_FOREVER;
                break;
        case json_type_boolean:
                return double_text_error(ret_error, "Unsupported type: 'bool'");
        case json_type_array:
                return double_text_error(ret_error, "Unsupported type: '[]interface {}'");
        default:
                return double_text_error(ret_error, "Unsupported type: 'map[string]interface {}'");
        }

        *ret_set = true;
        *ret_ns = ns;
        return 0;
}

int double_text_parse_num_predict(json_object *options, int64_t *ret, char **ret_error) {
        json_object *v;

        *ret = -1;
        if (!options || !json_object_is_type(options, json_type_object))
                return 0;
        if (!json_object_object_get_ex(options, "num_predict", &v) || !v)
                return 0;
        if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
                return double_text_error(ret_error, "option \"num_predict\" must be of type integer");
        *ret = (int64_t) json_object_get_double(v);
        if (json_object_is_type(v, json_type_int))
                *ret = json_object_get_int64(v);
        return 0;
}

unsigned double_text_token_budget(unsigned natural, int64_t num_predict, const char **ret_done_reason) {
        if (natural > DOUBLE_TEXT_MAX_TOKENS)
                natural = DOUBLE_TEXT_MAX_TOKENS;
        if (num_predict > 0 && (uint64_t) num_predict < natural) {
                *ret_done_reason = "length";
                return (unsigned) num_predict;
        }
        *ret_done_reason = "stop";
        return natural;
}

int double_text_json_parse(const char *buf, size_t len, json_object **ret, char **ret_error) {
        struct json_tokener *tok;
        enum json_tokener_error jerr;
        json_object *o;
        size_t i = 0, off;

        /* Go's decoder: nothing but whitespace is io.EOF, which Ollama turns into this. */
        while (i < len && double_text_is_space(buf[i]))
                i++;
        if (i == len)
                return double_text_error(ret_error, "missing request body");
        if (len > INT32_MAX)
                return double_text_error(ret_error, "http: request body too large");

        tok = json_tokener_new_ex(512);
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, buf, (int) len);
        jerr = json_tokener_get_error(tok);
        if (jerr == json_tokener_continue && !o) {
                /* A bare number or literal needs a terminator to be complete. */
                o = json_tokener_parse_ex(tok, "", 1);
                jerr = json_tokener_get_error(tok);
                if (jerr != json_tokener_success && jerr != json_tokener_continue) {
                        json_tokener_reset(tok);
                        jerr = json_tokener_continue;
                }
        }
        off = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);

        if (jerr == json_tokener_continue)
                return double_text_error(ret_error, "unexpected EOF");
        if (jerr != json_tokener_success) {
                unsigned char c = off < len ? (unsigned char) buf[off] : 0;

                if (off > 0 && off <= len && (off == len || c == 0))
                        c = (unsigned char) buf[off - 1];
                if (jerr == json_tokener_error_depth)
                        return double_text_error(ret_error, "exceeded max depth");
                if (c >= 0x20 && c < 0x7f && c != '\'')
                        return double_text_error(ret_error, "invalid character '%c' looking for beginning of value", c);
                return double_text_error(ret_error, "invalid character '\\x%02x' looking for beginning of value", c);
        }
        /* Go's Decoder stops after the first value; trailing bytes are never read. */
        *ret = o;
        return 0;
}

static const char *double_text_json_kind(json_object *v) {
        switch (json_object_get_type(v)) {
        case json_type_boolean:
                return "bool";
        case json_type_int:
        case json_type_double:
                return "number";
        case json_type_string:
                return "string";
        case json_type_array:
                return "array";
        case json_type_object:
                return "object";
        default:
                return "null";
        }
}

int double_text_json_check_object(json_object *o, const char *go_type, char **ret_error) {
        if (!o || json_object_is_type(o, json_type_object))
                return 0;
        return double_text_error(ret_error, "json: cannot unmarshal %s into Go value of type %s",
                                 double_text_json_kind(o), go_type);
}

static int double_text_json_field(json_object *o, const char *key, json_object **ret) {
        json_object *v = NULL;

        *ret = NULL;
        if (!o || !json_object_is_type(o, json_type_object))
                return 0;
        if (!json_object_object_get_ex(o, key, &v) || !v)
                return 0;
        *ret = v;
        return 1;
}

int double_text_json_get_string(json_object *o, const char *key, const char *go_struct,
                                const char **ret, size_t *ret_len, char **ret_error) {
        json_object *v;

        *ret = NULL;
        if (ret_len)
                *ret_len = 0;
        if (double_text_json_field(o, key, &v) == 0)
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return double_text_error(ret_error,
                                         "json: cannot unmarshal %s into Go struct field %s.%s of type string",
                                         double_text_json_kind(v), go_struct, key);
        *ret = json_object_get_string(v);
        if (ret_len)
                *ret_len = (size_t) json_object_get_string_len(v);
        return 1;
}

int double_text_json_get_bool(json_object *o, const char *key, const char *go_struct, int *ret,
                              char **ret_error) {
        json_object *v;

        *ret = -1;
        if (double_text_json_field(o, key, &v) == 0)
                return 0;
        if (!json_object_is_type(v, json_type_boolean))
                return double_text_error(ret_error,
                                         "json: cannot unmarshal %s into Go struct field %s.%s of type bool",
                                         double_text_json_kind(v), go_struct, key);
        *ret = json_object_get_boolean(v);
        return 1;
}

int double_text_json_get_int(json_object *o, const char *key, const char *go_struct, int64_t *ret,
                             char **ret_error) {
        json_object *v;

        *ret = 0;
        if (double_text_json_field(o, key, &v) == 0)
                return 0;
        if (json_object_is_type(v, json_type_double)) {
                double d = json_object_get_double(v);

                if (d != floor(d) || fabs(d) > 9.0e18)
                        return double_text_error(ret_error,
                                                 "json: cannot unmarshal number %s into Go struct field %s.%s of type int",
                                                 json_object_to_json_string(v), go_struct, key);
                *ret = (int64_t) d;
                return 1;
        }
        if (!json_object_is_type(v, json_type_int))
                return double_text_error(ret_error,
                                         "json: cannot unmarshal %s into Go struct field %s.%s of type int",
                                         double_text_json_kind(v), go_struct, key);
        *ret = json_object_get_int64(v);
        return 1;
}

int double_text_json_get_float(json_object *o, const char *key, const char *go_struct, double *ret,
                               char **ret_error) {
        json_object *v;

        *ret = 0;
        if (double_text_json_field(o, key, &v) == 0)
                return 0;
        if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
                return double_text_error(ret_error,
                                         "json: cannot unmarshal %s into Go struct field %s.%s of type float64",
                                         double_text_json_kind(v), go_struct, key);
        *ret = json_object_get_double(v);
        return 1;
}

static int double_text_append(char **text, size_t *len, size_t *cap, const char *s, size_t n) {
        if (*len + n + 1 > *cap) {
                size_t ncap = (*cap ? *cap * 2 : 256);
                char *t;

                while (ncap < *len + n + 1)
                        ncap *= 2;
                t = realloc(*text, ncap);
                if (!t)
                        return -ENOMEM;
                *text = t;
                *cap = ncap;
        }
        memcpy(*text + *len, s, n);
        *len += n;
        (*text)[*len] = '\0';
        return 0;
}

/* Appends one message's content (its text parts, for OpenAI) to text; adds its tokens. */
static int double_text_message_join(json_object *m, bool openai, char **text, size_t *len, size_t *cap,
                                    unsigned *tokens, char **ret_error) {
        json_object *content = NULL;
        int r;

        if (m && !json_object_is_type(m, json_type_object))
                return double_text_error(ret_error,
                                         "json: cannot unmarshal %s into Go struct field ChatRequest.messages of type api.Message",
                                         double_text_json_kind(m));
        if (m)
                (void) json_object_object_get_ex(m, "content", &content);

        if (!content || json_object_is_type(content, json_type_string)) {
                const char *s = content ? json_object_get_string(content) : "";
                size_t sl = content ? (size_t) json_object_get_string_len(content) : 0;
                json_object *tc = NULL;

                if (openai && !content &&
                    !(m && json_object_object_get_ex(m, "tool_calls", &tc) && tc))
                        return double_text_error(ret_error, "invalid message content type: <nil>");
                r = double_text_append(text, len, cap, s, sl);
                if (r < 0)
                        return r;
                *tokens += 1 + double_text_count_words(s, sl);
                return 0;
        }

        if (!openai)
                return double_text_error(ret_error,
                                         "json: cannot unmarshal %s into Go struct field Message.messages.content of type string",
                                         double_text_json_kind(content));

        if (!json_object_is_type(content, json_type_array)) {
                const char *t = json_object_is_type(content, json_type_boolean) ? "bool" :
                                json_object_is_type(content, json_type_object) ? "map[string]interface {}" :
                                "float64";
                return double_text_error(ret_error, "invalid message content type: %s", t);
        }

        for (size_t j = 0; j < json_object_array_length(content); j++) {
                json_object *part = json_object_array_get_idx(content, j), *type = NULL, *t = NULL;
                const char *ts;

                if (!part || !json_object_is_type(part, json_type_object) ||
                    !json_object_object_get_ex(part, "type", &type) ||
                    !json_object_is_type(type, json_type_string))
                        return double_text_error(ret_error, "invalid message format");
                ts = json_object_get_string(type);
                if (strcmp(ts, "image_url") == 0) {
                        *tokens += 1;
                        continue;
                }
                if (strcmp(ts, "text") != 0 || !json_object_object_get_ex(part, "text", &t) ||
                    !json_object_is_type(t, json_type_string))
                        return double_text_error(ret_error, "invalid message format");
                r = double_text_append(text, len, cap, json_object_get_string(t),
                                       (size_t) json_object_get_string_len(t));
                if (r < 0)
                        return r;
                *tokens += 1 + double_text_count_words(json_object_get_string(t),
                                                       (size_t) json_object_get_string_len(t));
        }
        return 0;
}

int double_text_messages_join(json_object *messages, bool openai, char **ret_text, size_t *ret_len,
                              unsigned *ret_tokens, char **ret_error) {
        _cleanup_dfree_ char *text = NULL;
        size_t len = 0, cap = 0, n;
        unsigned tokens = 0;
        int r;

        if (messages && !json_object_is_type(messages, json_type_array))
                return double_text_error(ret_error,
                                         "json: cannot unmarshal %s into Go struct field ChatRequest.messages of type []api.Message",
                                         double_text_json_kind(messages));

        r = double_text_append(&text, &len, &cap, "", 0);
        if (r < 0)
                return r;

        n = messages ? json_object_array_length(messages) : 0;
        for (size_t i = 0; i < n; i++) {
                r = double_text_message_join(json_object_array_get_idx(messages, i), openai, &text, &len, &cap,
                                             &tokens, ret_error);
                if (r < 0)
                        return r;
        }

        *ret_text = TAKE_PTR(text);
        *ret_len = len;
        *ret_tokens = tokens;
        return 0;
}

int double_text_messages_trailing_assistant(json_object *messages, bool openai, char **ret_text, size_t *ret_len) {
        _cleanup_dfree_ char *text = NULL, *err = NULL;
        json_object *last, *role = NULL;
        size_t len = 0, cap = 0, n;
        unsigned tokens = 0;
        int r;

        n = messages && json_object_is_type(messages, json_type_array) ? json_object_array_length(messages) : 0;
        if (n == 0)
                return 0;
        last = json_object_array_get_idx(messages, n - 1);
        if (!last || !json_object_is_type(last, json_type_object) ||
            !json_object_object_get_ex(last, "role", &role) || !json_object_is_type(role, json_type_string) ||
            strcmp(json_object_get_string(role), "assistant") != 0)
                return 0;

        r = double_text_append(&text, &len, &cap, "", 0);
        if (r >= 0)
                r = double_text_message_join(last, openai, &text, &len, &cap, &tokens, &err);
        if (r < 0)
                return r;
        *ret_text = TAKE_PTR(text);
        *ret_len = len;
        return 1;
}

static int double_text_render_image(char **text, size_t *len, size_t *cap, json_object *image) {
        const char *s = image ? json_object_get_string(image) : "";
        char tag[40];

        (void) snprintf(tag, sizeof(tag), "<|image:%016" PRIx64 "|>",
                        double_text_fnv1a64(DOUBLE_TEXT_FNV_OFFSET, s ?: "", s ? strlen(s) : 0));
        return double_text_append(text, len, cap, tag, strlen(tag));
}

static int double_text_render_open(char **text, size_t *len, size_t *cap, const char *role) {
        int r;

        r = double_text_append(text, len, cap, "<|", 2);
        if (r >= 0)
                r = double_text_append(text, len, cap, role, strlen(role));
        if (r >= 0)
                r = double_text_append(text, len, cap, "|>", 2);
        return r;
}

/* Images and content of one message, in the order the API gives them. */
static int double_text_render_body(char **text, size_t *len, size_t *cap, json_object *m, bool openai) {
        json_object *content = NULL, *images = NULL;
        int r;

        (void) json_object_object_get_ex(m, "content", &content);
        if (!openai && json_object_object_get_ex(m, "images", &images) && json_object_is_type(images, json_type_array))
                for (size_t i = 0; i < json_object_array_length(images); i++) {
                        r = double_text_render_image(text, len, cap, json_object_array_get_idx(images, i));
                        if (r < 0)
                                return r;
                }
        if (content && json_object_is_type(content, json_type_string))
                return double_text_append(text, len, cap, json_object_get_string(content),
                                          (size_t) json_object_get_string_len(content));
        if (!content || !json_object_is_type(content, json_type_array))
                return 0;
        for (size_t i = 0; i < json_object_array_length(content); i++) {
                json_object *part = json_object_array_get_idx(content, i), *type = NULL, *v = NULL;
                const char *ts;

                if (!part || !json_object_object_get_ex(part, "type", &type) ||
                    !json_object_is_type(type, json_type_string))
                        continue;
                ts = json_object_get_string(type);
                if (strcmp(ts, "text") == 0 && json_object_object_get_ex(part, "text", &v) &&
                    json_object_is_type(v, json_type_string))
                        r = double_text_append(text, len, cap, json_object_get_string(v),
                                               (size_t) json_object_get_string_len(v));
                else if (strcmp(ts, "image_url") == 0) {
                        json_object *url = NULL;

                        (void) json_object_object_get_ex(part, "image_url", &v);
                        if (v && json_object_is_type(v, json_type_object))
                                (void) json_object_object_get_ex(v, "url", &url);
                        else
                                url = v;
                        r = double_text_render_image(text, len, cap, url);
                } else
                        continue;
                if (r < 0)
                        return r;
        }
        return 0;
}

int double_text_render_chat(json_object *messages, bool openai, char **ret, size_t *ret_len) {
        _cleanup_dfree_ char *text = NULL;
        size_t len = 0, cap = 0, n;
        bool continued = false;
        int r;

        r = double_text_append(&text, &len, &cap, "", 0);
        if (r < 0)
                return r;
        n = messages && json_object_is_type(messages, json_type_array) ? json_object_array_length(messages) : 0;
        for (size_t i = 0; i < n; i++) {
                json_object *m = json_object_array_get_idx(messages, i), *role = NULL;
                const char *rs = "";

                if (!m || !json_object_is_type(m, json_type_object))
                        continue;
                if (json_object_object_get_ex(m, "role", &role) && json_object_is_type(role, json_type_string))
                        rs = json_object_get_string(role);
                r = double_text_render_open(&text, &len, &cap, rs);
                if (r >= 0)
                        r = double_text_render_body(&text, &len, &cap, m, openai);
                if (r < 0)
                        return r;
                /* The last message, when the assistant's, is continued rather than answered. */
                continued = i + 1 == n && strcmp(rs, "assistant") == 0;
                if (!continued) {
                        r = double_text_append(&text, &len, &cap, "<|end|>", 7);
                        if (r < 0)
                                return r;
                }
        }
        if (!continued) {
                r = double_text_render_open(&text, &len, &cap, "assistant");
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(text);
        *ret_len = len;
        return 0;
}

int double_text_render_generate(const char *system, size_t system_len, const char *prompt, size_t prompt_len,
                                json_object *images, bool raw, char **ret, size_t *ret_len) {
        _cleanup_dfree_ char *text = NULL;
        size_t len = 0, cap = 0;
        int r;

        r = double_text_append(&text, &len, &cap, "", 0);
        if (r < 0)
                return r;
        if (raw) {
                r = double_text_append(&text, &len, &cap, prompt ?: "", prompt ? prompt_len : 0);
                if (r < 0)
                        return r;
                goto done;
        }
        if (system && system_len > 0) {
                r = double_text_render_open(&text, &len, &cap, "system");
                if (r >= 0)
                        r = double_text_append(&text, &len, &cap, system, system_len);
                if (r >= 0)
                        r = double_text_append(&text, &len, &cap, "<|end|>", 7);
                if (r < 0)
                        return r;
        }
        r = double_text_render_open(&text, &len, &cap, "user");
        if (r < 0)
                return r;
        if (images && json_object_is_type(images, json_type_array))
                for (size_t i = 0; i < json_object_array_length(images); i++) {
                        r = double_text_render_image(&text, &len, &cap, json_object_array_get_idx(images, i));
                        if (r < 0)
                                return r;
                }
        r = double_text_append(&text, &len, &cap, prompt ?: "", prompt ? prompt_len : 0);
        if (r >= 0)
                r = double_text_append(&text, &len, &cap, "<|end|>", 7);
        if (r >= 0)
                r = double_text_render_open(&text, &len, &cap, "assistant");
        if (r < 0)
                return r;
done:
        *ret = TAKE_PTR(text);
        *ret_len = len;
        return 0;
}

static int double_text_unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int double_text_parse_digest(const char *s, uint8_t ret[32]) {
        uint8_t out[32];

        if (!s || strncmp(s, "sha256", 6) != 0 || (s[6] != ':' && s[6] != '-') || strlen(s) != 7 + 64)
                return -EINVAL;
        for (size_t i = 0; i < 32; i++) {
                int hi = double_text_unhex(s[7 + 2 * i]), lo = double_text_unhex(s[8 + 2 * i]);

                if (hi < 0 || lo < 0)
                        return -EINVAL;
                out[i] = (uint8_t) (hi << 4 | lo);
        }
        memcpy(ret, out, 32);
        return 0;
}

void double_text_hex(const uint8_t *p, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[p[i] >> 4];
                out[2 * i + 1] = digits[p[i] & 15];
        }
        out[2 * n] = '\0';
}

int double_text_parse_listen(const char *s, char **ret_host, uint16_t *ret_port) {
        const char *colon, *host;
        size_t hlen;
        char *end, *h;
        unsigned long port;

        if (!s || !*s)
                return -EINVAL;
        if (s[0] == '[') {
                const char *close = strchr(s, ']');

                if (!close || close[1] != ':')
                        return -EINVAL;
                host = s + 1;
                hlen = (size_t) (close - host);
                colon = close + 1;
        } else {
                colon = strrchr(s, ':');
                if (!colon || memchr(s, ':', (size_t) (colon - s)))
                        return -EINVAL;
                host = s;
                hlen = (size_t) (colon - s);
        }
        if (!isdigit((unsigned char) colon[1]))
                return -EINVAL;
        errno = 0;
        port = strtoul(colon + 1, &end, 10);
        if (errno != 0 || *end != '\0' || port > 65535)
                return -EINVAL;

        h = hlen == 0 ? strdup("0.0.0.0") : strndup(host, hlen);
        if (!h)
                return -ENOMEM;
        *ret_host = h;
        *ret_port = (uint16_t) port;
        return 0;
}

static bool double_text_suffix_case(const char *s, size_t n, const char *suffix) {
        size_t l = strlen(suffix);

        return n >= l && strncasecmp(s + n - l, suffix, l) == 0;
}

/* Loopback, RFC 1918/4193 private and unspecified addresses, as netip's IsLoopback, IsPrivate
 * and IsUnspecified see them. */
static bool double_text_ip_local(const char *host) {
        unsigned a, b, c, d;
        char tail;

        if (sscanf(host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4) {
                if (a > 255 || b > 255 || c > 255 || d > 255)
                        return false;
                return a == 127 || a == 10 || (a == 172 && (b & 0xf0) == 16) ||
                       (a == 192 && b == 168) || (a == 0 && b == 0 && c == 0 && d == 0);
        }
        if (strchr(host, ':')) {
                if (strcmp(host, "::1") == 0 || strcmp(host, "::") == 0)
                        return true;
                /* fc00::/7 */
                return (tolower((unsigned char) host[0]) == 'f' &&
                        (tolower((unsigned char) host[1]) == 'c' || tolower((unsigned char) host[1]) == 'd') &&
                        isxdigit((unsigned char) host[2]) && isxdigit((unsigned char) host[3]) && host[4] == ':') ||
                       strncasecmp(host, "::ffff:127.", 11) == 0;
        }
        return false;
}

bool double_text_host_allowed(const char *host_header, const char *hostname) {
        char host[256];
        const char *h = host_header ?: "";
        size_t n;

        /* net.SplitHostPort, falling back to the whole header. */
        if (h[0] == '[') {
                const char *close = strchr(h, ']');

                if (!close)
                        return false;
                n = (size_t) (close - h - 1);
                h++;
        } else {
                const char *colon = strrchr(h, ':');

                n = colon && !memchr(h, ':', (size_t) (colon - h)) ? (size_t) (colon - h) : strlen(h);
        }
        if (n >= sizeof(host))
                return false;
        memcpy(host, h, n);
        host[n] = '\0';

        if (double_text_ip_local(host))
                return true;
        if (n == 0 || strcasecmp(host, "localhost") == 0)
                return true;
        if (hostname && *hostname && strcasecmp(host, hostname) == 0)
                return true;
        return double_text_suffix_case(host, n, ".localhost") || double_text_suffix_case(host, n, ".local") ||
               double_text_suffix_case(host, n, ".internal");
}

int double_text_format_rfc3339nano(int64_t sec, long nsec, char *buf, size_t size) {
        struct tm tm;
        time_t t = (time_t) sec;
        char frac[16];
        size_t l;
        int r;

        if (!gmtime_r(&t, &tm))
                return -EINVAL;
        frac[0] = '\0';
        if (nsec > 0 && nsec < 1000000000) {
                (void) snprintf(frac, sizeof(frac), ".%09ld", nsec);
                l = strlen(frac);
                while (l > 1 && frac[l - 1] == '0')
                        frac[--l] = '\0';
        }
        r = snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d%sZ", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
        if (r < 0 || (size_t) r >= size)
                return -ENOBUFS;
        return r;
}

int double_text_format_float32(float f, char *buf, size_t size) {
        int r = -EINVAL;

        if (!isfinite(f))
                return -EINVAL;
        for (int prec = 1; prec <= 9; prec++) {
                r = snprintf(buf, size, "%.*g", prec, (double) f);
                if (r < 0 || (size_t) r >= size)
                        return -ENOBUFS;
                if (strtof(buf, NULL) == f)
                        break;
        }
        return r;
}
