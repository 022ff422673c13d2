/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One client request answered by several nodes at once: the same or different bodies sent in
 * parallel (to this node's Ollama, or signed to peers' mesh APIs), each answer read whole and
 * bounded, then one callback with all of them. For /api/ps and split embeddings. */
#pragma once

#include <event2/buffer.h>
#include <event2/http.h>

#include "shimd-manager.h"
#include "shimd-router-cache.h"

/* Parts one fan-out may have, and the largest answer one part may bring. */
#define FANOUT_PARTS_MAX 64
#define FANOUT_ANSWER_MAX (64U << 20)

typedef struct Fanout Fanout;

typedef struct FanoutPart {
        RouterTarget target;            /* where it goes; target.node_id "" or ours: this node */
        struct evbuffer *body;          /* what it sends (kept for a retry); NULL: no body */
        void *userdata;                 /* the caller's (which inputs the part carries, say) */
        /* The outcome, once done: status 0 when no answer came (refused, reset, timed out). */
        int status;
        struct evbuffer *answer;
        usec_t duration;
        bool done;
} FanoutPart;

/* Called once, from the loop, when every part is done. The callback frees f. */
typedef void (*FanoutDoneFn)(Fanout *f, void *userdata);

int fanout_new(Manager *m, enum evhttp_cmd_type method, const char *path, usec_t timeout, FanoutDoneFn done,
               void *userdata, Fanout **ret);
Fanout *fanout_free(Fanout *f);

/* The parts are load on their nodes (split embeddings, not /api/ps): each counts in the router
 * cache's in-flight while it runs, as a proxied request does. */
void fanout_count_in_flight(Fanout *f);

/* Adds a part (up to FANOUT_PARTS_MAX); takes t->address and body. */
int fanout_add(Fanout *f, RouterTarget *t, struct evbuffer *body, void *userdata, FanoutPart **ret);
size_t fanout_n_parts(Fanout *f);
FanoutPart *fanout_part(Fanout *f, size_t i);

/* Sends every part not sent yet. */
int fanout_start(Fanout *f);
/* Sends part i again, to t (takes t->address): for a part that failed, while the others may
 * still run. The done callback then waits for it. */
int fanout_resend(Fanout *f, size_t i, RouterTarget *t);
