/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* /api/tags JSON -> model names. A small validating scanner instead of a DOM parser: json-c
 * spends ~250 bytes per value, so 8 MiB of "{}," would cost gigabytes; this costs nothing. */
#include <stdio.h>

#include "hex.h"
#include "route-table.h"
#include "tags-parse.h"

typedef struct JsonScanner {
        const char *p;
        const char *end;
} JsonScanner;

void tags_list_done(TagsList *l) {
        for (size_t i = 0; i < l->n_models; i++)
                free(l->models[i]);
        free(l->models);
        *l = (TagsList) {};
}

static void json_skip_ws(JsonScanner *s) {
        while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
                s->p++;
}

/* Consumes c (after whitespace) if it is next. */
static bool json_accept(JsonScanner *s, char c) {
        json_skip_ws(s);
        if (s->p < s->end && *s->p == c) {
                s->p++;
                return true;
        }
        return false;
}

/* Scans a string starting at '"'. When buf is given, decodes it there as long as it is
 * printable ASCII without spaces and fits in size - 1 bytes; *ret_ok says whether it did.
 * Other strings are only validated. */
static int json_scan_string(JsonScanner *s, char *buf, size_t size, bool *ret_ok) {
        size_t n = 0;
        bool ok = buf != NULL;

        json_skip_ws(s);
        if (s->p >= s->end || *s->p != '"')
                return -EBADMSG;
        s->p++;
        for (;;) {
                unsigned c;

                if (s->p >= s->end)
                        return -EBADMSG;
                c = (unsigned char) *s->p++;
                if (c == '"')
                        break;
                if (c < 0x20)
                        return -EBADMSG;
                if (c == '\\') {
                        if (s->p >= s->end)
                                return -EBADMSG;
                        switch (*s->p++) {
                        case '"': c = '"'; break;
                        case '\\': c = '\\'; break;
                        case '/': c = '/'; break;
                        case 'b': c = '\b'; break;
                        case 'f': c = '\f'; break;
                        case 'n': c = '\n'; break;
                        case 'r': c = '\r'; break;
                        case 't': c = '\t'; break;
                        case 'u':
                                c = 0;
                                for (int i = 0; i < 4; i++) {
                                        int d;

                                        if (s->p >= s->end)
                                                return -EBADMSG;
                                        d = unhexchar(*s->p++);
                                        if (d < 0)
                                                return -EBADMSG;
                                        c = c << 4 | (unsigned) d;
                                }
                                break;
                        default:
                                return -EBADMSG;
                        }
                }
                if (!ok)
                        continue;
                if (c <= 0x20 || c >= 0x7f || n + 1 >= size)
                        ok = false;
                else
                        buf[n++] = (char) c;
        }
        if (buf && size > 0)
                buf[ok ? n : 0] = '\0';
        if (ret_ok)
                *ret_ok = ok && n > 0;
        return 0;
}

static int json_scan_literal(JsonScanner *s, const char *word) {
        size_t len = strlen(word);

        if ((size_t) (s->end - s->p) < len || memcmp(s->p, word, len) != 0)
                return -EBADMSG;
        s->p += len;
        return 0;
}

static bool json_scan_digits(JsonScanner *s) {
        const char *start = s->p;

        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
                s->p++;
        return s->p > start;
}

static int json_scan_number(JsonScanner *s) {
        if (s->p < s->end && *s->p == '-')
                s->p++;
        if (s->p < s->end && *s->p == '0')
                s->p++;
        else if (!json_scan_digits(s))
                return -EBADMSG;
        if (s->p < s->end && *s->p == '.') {
                s->p++;
                if (!json_scan_digits(s))
                        return -EBADMSG;
        }
        if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
                s->p++;
                if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
                        s->p++;
                if (!json_scan_digits(s))
                        return -EBADMSG;
        }
        return 0;
}

/* Validates and skips any value. depth counts the containers around it. */
static int json_skip_value(JsonScanner *s, unsigned depth) {
        int r;

        json_skip_ws(s);
        if (s->p >= s->end)
                return -EBADMSG;
        switch (*s->p) {
        case '"':
                return json_scan_string(s, NULL, 0, NULL);
        case 't':
                return json_scan_literal(s, "true");
        case 'f':
                return json_scan_literal(s, "false");
        case 'n':
                return json_scan_literal(s, "null");
        case '{':
        case '[': {
                bool object = *s->p == '{';
                char close = object ? '}' : ']';

                if (depth + 1 > TAGS_MAX_DEPTH)
                        return -EBADMSG;
                s->p++;
                if (json_accept(s, close))
                        return 0;
                do {
                        if (object) {
                                r = json_scan_string(s, NULL, 0, NULL);
                                if (r < 0)
                                        return r;
                                if (!json_accept(s, ':'))
                                        return -EBADMSG;
                        }
                        r = json_skip_value(s, depth + 1);
                        if (r < 0)
                                return r;
                } while (json_accept(s, ','));
                return json_accept(s, close) ? 0 : -EBADMSG;
        }
        default:
                return json_scan_number(s);
        }
}

/* Reads an object key into buf (short keys only; longer ones come back empty). */
static int json_scan_key(JsonScanner *s, char *buf, size_t size) {
        int r;

        r = json_scan_string(s, buf, size, NULL);
        if (r < 0)
                return r;
        return json_accept(s, ':') ? 0 : -EBADMSG;
}

static int tags_add(TagsList *l, const char *name) {
        for (size_t j = 0; j < l->n_models; j++)
                if (model_name_equal(l->models[j], name)) {
                        l->n_skipped++;
                        return 0;
                }
        if (l->n_models >= ROUTE_MAX_MODELS) {
                l->truncated = true;
                return 0;
        }
        l->models[l->n_models] = strdup(name);
        if (!l->models[l->n_models])
                return -ENOMEM;
        l->n_models++;
        return 0;
}

/* One element of "models" (depth 2). Non-objects and objects without a usable name are
 * skipped, and counted. */
static int tags_scan_entry(JsonScanner *s, TagsList *l, bool collect) {
        char name[TAGS_MAX_NAME_LEN + 1], model[TAGS_MAX_NAME_LEN + 1];
        bool have_name = false, have_model = false;
        int r;

        json_skip_ws(s);
        if (s->p >= s->end || *s->p != '{') {
                if (collect)
                        l->n_skipped++;
                return json_skip_value(s, 2);
        }
        s->p++;
        if (!json_accept(s, '}')) {
                do {
                        char key[8];

                        r = json_scan_key(s, key, sizeof(key));
                        if (r < 0)
                                return r;
                        json_skip_ws(s);
                        if (s->p < s->end && *s->p == '"' && streq(key, "name") && !have_name)
                                r = json_scan_string(s, name, sizeof(name), &have_name);
                        else if (s->p < s->end && *s->p == '"' && streq(key, "model") && !have_model)
                                r = json_scan_string(s, model, sizeof(model), &have_model);
                        else
                                r = json_skip_value(s, 3);
                        if (r < 0)
                                return r;
                } while (json_accept(s, ','));
                if (!json_accept(s, '}'))
                        return -EBADMSG;
        }

        if (!collect)
                return 0;
        if (!have_name && !have_model) {
                l->n_skipped++;
                return 0;
        }
        return tags_add(l, have_name ? name : model);
}

static int tags_scan_models(JsonScanner *s, TagsList *l) {
        size_t n_entries = 0;
        int r;

        if (!json_accept(s, '['))
                return -EBADMSG;
        if (json_accept(s, ']'))
                return 0;
        do {
                bool collect = n_entries++ < TAGS_MAX_ENTRIES;

                if (!collect)
                        l->truncated = true;
                r = tags_scan_entry(s, l, collect);
                if (r < 0)
                        return r;
        } while (json_accept(s, ','));
        return json_accept(s, ']') ? 0 : -EBADMSG;
}

int tags_parse(const char *body, size_t size, TagsList *ret) {
        _cleanup_(tags_list_done) TagsList l = {};
        JsonScanner s = { .p = body, .end = body + size };
        bool seen_models = false;
        int r;

        if (size > TAGS_MAX_RESPONSE_SIZE)
                return -EFBIG;
        if (!body)
                return -EBADMSG;

        l.models = calloc(ROUTE_MAX_MODELS, sizeof(char *));
        if (!l.models)
                return -ENOMEM;

        if (!json_accept(&s, '{'))
                return -EBADMSG;
        if (!json_accept(&s, '}')) {
                do {
                        char key[8];

                        r = json_scan_key(&s, key, sizeof(key));
                        if (r < 0)
                                return r;
                        /* A repeated "models" is only validated: the first one counts. */
                        if (streq(key, "models") && !seen_models) {
                                r = tags_scan_models(&s, &l);
                                seen_models = true;
                        } else
                                r = json_skip_value(&s, 1);
                        if (r < 0)
                                return r;
                } while (json_accept(&s, ','));
                if (!json_accept(&s, '}'))
                        return -EBADMSG;
        }
        json_skip_ws(&s);
        if (s.p != s.end || !seen_models)
                return -EBADMSG;

        *ret = l;
        l = (TagsList) {};
        return 0;
}
