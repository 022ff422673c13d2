/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The answers of shardd's transfer listener (shardd-reply.c). */
#pragma once

#include <event2/http.h>

/* An error answer {"error": message} (message is ours, plain ASCII without quotes). */
void shard_peer_reply_error(struct evhttp_request *req, int status, const char *reason, const char *message);
/* A 200 answer with a JSON body. */
void shard_peer_reply_json(struct evhttp_request *req, const char *json);
