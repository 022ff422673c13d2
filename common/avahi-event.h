/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An AvahiPoll on a libevent event_base, so avahi-client runs on a daemon's one loop. Watches
 * and timeouts freed from inside callbacks are released later, never under a running callback. */
#pragma once

#include <avahi-common/watch.h>
#include <event2/event.h>

#include "macro.h"

typedef struct AvahiEvent AvahiEvent;

int avahi_event_new(struct event_base *base, AvahiEvent **ret);
/* Call after avahi_client_free(): the client frees its watches and timeouts first. Anything
 * still allocated is released here. */
AvahiEvent *avahi_event_free(AvahiEvent *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(AvahiEvent *, avahi_event_free);

/* The poll API to hand to avahi_client_new(); valid as long as a. */
const AvahiPoll *avahi_event_get_poll(AvahiEvent *a);

/* Watches and timeouts alive (not freed by avahi); for tests and leak checks. */
size_t avahi_event_count_live(AvahiEvent *a);
