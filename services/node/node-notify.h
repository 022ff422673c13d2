/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The sd_notify protocol as mycelia-node reads it: one datagram of "KEY=VALUE" lines from a
 * daemon, parsed into the few fields the launcher acts on. Pure: no I/O. */
#pragma once

#include "macro.h"

/* Largest datagram accepted; sd_notify messages of our daemons are far smaller. */
#define NOTIFY_MESSAGE_MAX 4096
/* Longest STATUS= kept (longer ones are cut) and longest address accepted. */
#define NOTIFY_STATUS_MAX 256
#define NOTIFY_ADDRESS_MAX 128

typedef struct NotifyMessage {
        bool ready;             /* READY=1 */
        bool watchdog;          /* WATCHDOG=1 */
        bool stopping;          /* STOPPING=1 */
        bool has_status;
        bool has_api;
        bool has_mesh;
        char status[NOTIFY_STATUS_MAX];         /* control characters replaced by '?' */
        char api[NOTIFY_ADDRESS_MAX];           /* X_MYCELIA_API=ADDR:PORT */
        char mesh[NOTIFY_ADDRESS_MAX];          /* X_MYCELIA_MESH=ADDR:PORT */
        unsigned n_ignored;     /* lines we do not know or whose value is invalid */
} NotifyMessage;

/* Parses one datagram of len bytes (not NUL-terminated). Unknown keys and invalid values are
 * skipped and counted. Returns -EMSGSIZE when len exceeds NOTIFY_MESSAGE_MAX and -EBADMSG for
 * a message containing a NUL byte; *ret is then untouched. */
int notify_message_parse(const char *buf, size_t len, NotifyMessage *ret);

/* Whether s looks like "HOST:PORT" or "[V6]:PORT" with a port in 1..65535 (0 is not an
 * address anyone can connect to). */
bool notify_address_valid(const char *s);
