/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An evbuffer's chains as struct iovec, read in place: for the mesh authenticator (shimd and
 * shardd), and shimd's model name, stream accounting and parsed bodies, which all walk a body
 * without copying it. */
#include <errno.h>
#include <event2/buffer.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>

#include "evbuffer-util.h"
#include "json-cleanup.h"

/* libevent documents evbuffer_iovec as laid out like struct iovec on Unix. */
_Static_assert(sizeof(struct evbuffer_iovec) == sizeof(struct iovec) &&
               offsetof(struct evbuffer_iovec, iov_base) == offsetof(struct iovec, iov_base) &&
               offsetof(struct evbuffer_iovec, iov_len) == offsetof(struct iovec, iov_len),
               "struct evbuffer_iovec differs from struct iovec");

int evbuffer_iovecs(struct evbuffer *buf, struct iovec *small, size_t n_small, struct iovec **ret_vec,
                    struct iovec **ret_heap) {
        int n = evbuffer_peek(buf, -1, NULL, NULL, 0);
        struct iovec *vec = small;

        *ret_heap = NULL;
        *ret_vec = small;
        if (n <= 0)
                return 0;
        if ((size_t) n > n_small) {
                vec = malloc(sizeof(*vec) * (size_t) n);
                if (!vec)
                        return -ENOMEM;
                *ret_heap = vec;
        }
        *ret_vec = vec;
        return evbuffer_peek(buf, -1, NULL, (struct evbuffer_iovec *) vec, n);
}

json_object *evbuffer_parse_json(struct evbuffer *buf, size_t max) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        struct iovec small[16], *vec, *heap = NULL;
        json_object *obj = NULL;
        int n;

        if (evbuffer_get_length(buf) > max)
                return NULL;
        tok = json_tokener_new();
        n = tok ? evbuffer_iovecs(buf, small, ELEMENTSOF(small), &vec, &heap) : -ENOMEM;
        for (int i = 0; !obj && i < n; i++) {
                obj = json_tokener_parse_ex(tok, vec[i].iov_base, (int) MIN(vec[i].iov_len, (size_t) INT_MAX));
                if (!obj && json_tokener_get_error(tok) != json_tokener_continue)
                        break;
        }
        free(heap);
        return obj;
}
