/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Whole JSON documents in and out of json-c, for the answers the shim reads and writes itself
 * (model lists, embeddings, /api/ps): one way to parse strictly, one way to serialize. */
#pragma once

#include <json-c/json.h>

#include "macro.h"

/* The one JSON value in data, followed by nothing but whitespace. -EBADMSG otherwise (also when
 * empty), -E2BIG above INT32_MAX bytes, -ENOMEM. */
int shim_json_parse(const void *data, size_t size, json_object **ret);

/* o as compact JSON text, NUL-terminated, in a malloc()ed *ret of *ret_size bytes (NUL not
 * counted). -ENOMEM. */
int shim_json_write(json_object *o, char **ret, size_t *ret_size);
