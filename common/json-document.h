/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Whole JSON documents in and out of json-c: one strict parse and one compact write, for what a
 * daemon reads and writes itself (shimd's answers, shardd's stored collection configs). */
#pragma once

#include <json-c/json.h>

#include "macro.h"

/* The one JSON value in data, followed by nothing but whitespace. -EBADMSG otherwise (also when
 * empty), -E2BIG above INT32_MAX bytes, -ENOMEM. json-c keeps each parsed number's text, so what
 * is parsed and written again keeps its numbers byte for byte. */
int json_document_parse(const void *data, size_t size, json_object **ret);

/* Adds v (a new value, or NULL: its allocation failed) to object o under key, taking it: 0, or
 * -ENOMEM with v freed. For a JSON null, json_object_object_add(o, key, NULL). */
int json_document_add(json_object *o, const char *key, json_object *v);

/* o as compact JSON text, NUL-terminated, in a malloc()ed *ret of *ret_size bytes (NUL not
 * counted). -ENOMEM. */
int json_document_write(json_object *o, char **ret, size_t *ret_size);
