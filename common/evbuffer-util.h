/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An evbuffer's chains as struct iovec, read in place. */
#pragma once

#include <event2/buffer.h>
#include <sys/uio.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct evbuffer *, evbuffer_free);

/* The chains of buf as iovecs in *ret_vec: small when n_small hold them, else an array that is
 * also put in *ret_heap for the caller to free (NULL otherwise). Returns how many (0 for an
 * empty buffer) or -ENOMEM. The iovecs stay valid while buf is not changed. */
int evbuffer_iovecs(struct evbuffer *buf, struct iovec *small, size_t n_small, struct iovec **ret_vec,
                    struct iovec **ret_heap);
