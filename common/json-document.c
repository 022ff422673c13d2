/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Strict parsing and compact writing of whole JSON documents (json-document.h). Library code:
 * errors are returned, nothing is logged. */
#include "json-cleanup.h"
#include "json-document.h"

static bool only_space(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!IN_SET(s[i], ' ', '\t', '\r', '\n'))
                        return false;
        return true;
}

int json_document_parse(const void *data, size_t size, json_object **ret) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        json_object *o;
        size_t end;

        if (size == 0)
                return -EBADMSG;
        if (size > INT32_MAX)
                return -E2BIG;
        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, data, (int) size);
        end = json_tokener_get_parse_end(tok);
        if (!o || json_tokener_get_error(tok) != json_tokener_success || !only_space((const char *) data + end, size - end)) {
                json_object_put(o);
                return -EBADMSG;
        }
        *ret = o;
        return 0;
}

int json_document_write(json_object *o, char **ret, size_t *ret_size) {
        const char *out;
        char *copy;
        size_t len;

        out = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
        if (!out)
                return -ENOMEM;
        copy = malloc(len + 1);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, out, len + 1);
        *ret = copy;
        *ret_size = len;
        return 0;
}

int json_document_add(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}
