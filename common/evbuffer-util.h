/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An evbuffer's chains as struct iovec, read in place; a JSON body parsed from them. */
#pragma once

#include <event2/buffer.h>
#include <json-c/json.h>
#include <sys/uio.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct evbuffer *, evbuffer_free);

/* The chains of buf as iovecs in *ret_vec: small when n_small hold them, else an array that is
 * also put in *ret_heap for the caller to free (NULL otherwise). Returns how many (0 for an
 * empty buffer) or -ENOMEM. The iovecs stay valid while buf is not changed. */
int evbuffer_iovecs(struct evbuffer *buf, struct iovec *small, size_t n_small, struct iovec **ret_vec,
                    struct iovec **ret_heap);

/* The JSON value at the start of buf, parsed chain by chain (json-c's tokener is incremental),
 * or NULL: not JSON, incomplete, out of memory, or buf longer than max. buf is not changed. */
json_object *evbuffer_parse_json(struct evbuffer *buf, size_t max);
