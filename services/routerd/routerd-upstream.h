/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The HTTP edge that keeps one node's model list fresh: GET <upstream>/api/tags with the
 * libevent evhttp client on the schedule UpstreamHealth decides, results to a callback. */
#pragma once

#include <event2/event.h>

#include "tags-parse.h"
#include "upstream-health.h"

typedef struct UpstreamPoller UpstreamPoller;

/* Called after every fetch. error == 0: the upstream answered, tags holds its models.
 * error < 0: why not (reason is a short human text); tags is NULL. state_changed: the
 * fetch moved the node between unknown/up/down. */
typedef void (*UpstreamPollerFn)(UpstreamPoller *p, int error, const char *reason, const TagsList *tags,
                                 bool state_changed, void *userdata);

/* url: "http://HOST[:PORT][/PREFIX]". timeout bounds each fetch, connect to last byte. */
int upstream_poller_new(struct event_base *base, const char *url, usec_t timeout, usec_t tags_interval,
                        usec_t probe_interval, UpstreamPollerFn cb, void *userdata, UpstreamPoller **ret);
UpstreamPoller *upstream_poller_free(UpstreamPoller *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(UpstreamPoller *, upstream_poller_free);

/* Starts polling: the first fetch begins on the next loop iteration. */
int upstream_poller_start(UpstreamPoller *p);
/* A report blamed this upstream: probe it soon (see upstream_health_report_failure). */
void upstream_poller_report_failure(UpstreamPoller *p);
/* Its model list changed: fetch it again now (see upstream_health_refresh). */
void upstream_poller_refresh(UpstreamPoller *p);

const UpstreamHealth *upstream_poller_get_health(const UpstreamPoller *p);
/* "HOST:PORT", as sent in the Host header. */
const char *upstream_poller_get_host_port(const UpstreamPoller *p);
/* "[PREFIX]/api/tags", the path fetched. */
const char *upstream_poller_get_path(const UpstreamPoller *p);
