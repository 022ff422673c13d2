/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What every Mycelia daemon does around its loop: the event base, sd_notify READY/STATUS/
 * STOPPING, the watchdog keep-alive, SIGTERM/SIGINT ending the loop, its listening sockets
 * (inherited from systemd by name, or bound by hand) and its node identity. */
#pragma once

#include <event2/event.h>
#include <sys/socket.h>

#include "bus-event.h"
#include "bus-reconnect.h"
#include "config.h"
#include "macro.h"
#include "node-id.h"

typedef struct DaemonLoop DaemonLoop;

/* A daemon's event base (base_flags: EVENT_BASE_FLAG_*, or 0) and, on it, what every daemon
 * does around its loop: ignores SIGPIPE, makes SIGTERM/SIGINT break the loop, starts the
 * watchdog keep-alive when systemd (or the launcher) asked for one via WATCHDOG_USEC. Both are
 * the caller's (its Manager's): free the loop, then the base. */
int daemon_loop_new(int base_flags, struct event_base **ret_base, DaemonLoop **ret);
DaemonLoop *daemon_loop_free(DaemonLoop *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(DaemonLoop *, daemon_loop_free);

/* Call when every object with events is freed, before event_base_free(): a few turns of the loop
 * without waiting, so that libevent's deferred callbacks of the connections just freed run out.
 * Each holds a reference on its bufferevent, which event_base_free() would drop unrun: a TLS
 * bufferevent with its SSL was then never finalized (docs/shardd.md, "Stopping"). */
void daemon_base_settle(struct event_base *base);

/* Raises the soft RLIMIT_NOFILE to the hard one (systemd leaves that to the program, so that
 * select() users keep 1024); ret_soft: the soft limit now. */
int daemon_fd_limit_raise(uint64_t *ret_soft);

void daemon_notify_ready(const char *status);
void daemon_notify_status(const char *fmt, ...) _printf_(1, 2);
void daemon_notify_stopping(void);

/* Returns the fd systemd passed with FileDescriptorName=name (LISTEN_FDNAMES), -ENOENT if
 * none. The first call reads and unsets the LISTEN_* variables. Both this and listen_tcp()
 * turn Nagle off on the listener, so accepted connections write each token at once. */
int listen_fd_take(const char *name);
/* Takes every fd passed with FileDescriptorName=name (at most max, in LISTEN_FDS order) into
 * fds; returns how many (0 when none). A service may get several, e.g. a UDP and a TCP socket. */
int listen_fds_take(const char *name, int *fds, size_t max);
/* Binds and listens on a TCP "ADDR:PORT" ("[::1]:11434", "0.0.0.0:11436", "localhost:0"). */
int listen_tcp(const char *addr_port, int *ret_fd);
/* Resolves "ADDR:PORT" (numeric or a host name) to a socket address. */
int sockaddr_parse(const char *addr_port, struct sockaddr_storage *ret, socklen_t *ret_len);
/* Formats a bound socket's local address as "ADDR:PORT" ("[v6]:PORT" for IPv6). */
int sockaddr_format_local(int fd, char *buf, size_t size);

/* node_id_get() (node-id.h: the configured id, else the one kept in STATE_DIR/node-id, made on
 * first start), logging what failed and what to do about it. */
int daemon_node_id_get(const char *configured, const char *state_dir, char ret[static NODE_ID_LEN + 1]);
/* The node's human name: [node] name, else the host name ("localhost" when that is empty). */
int node_name_get(const MyceliaConfig *c, char **ret);

/* The command line every daemon shares: --help (usage line, summary, then every config flag),
 * --version, and config_load() for the rest. Returns 0 to go on, 1 when help or the version was
 * printed (exit successfully), negative errno (already reported) for a bad argument. */
int daemon_parse_args(const char *program, const char *summary, MyceliaConfig *config, int argc, char **argv);

/* The bus start-up every daemon but the shim shares: makes the BusReconnect for address
 * (empty: the system bus) on base and connects, ops->connected() running before this returns.
 * From then on a lost connection is retried with backoff (bus-reconnect.h). Logs what failed at
 * error level. */
int daemon_bus_connect(struct event_base *base, const char *address, const BusReconnectOps *ops, void *userdata,
                       BusReconnect **ret);
