/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-node's Manager: a private dbus-daemon, an sd_notify socket, and the daemons of one
 * node forked, watched and restarted like systemd would, driven by node-supervisor.c. */
#include <arpa/inet.h>
#include <assert.h>
#include <event2/event.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "build-config.h"
#include "daemon.h"
#include "log.h"
#include "mesh-key.h"
#include "node-manager.h"
#include "node-notify.h"
#include "node-supervisor.h"
#include "route-table.h"

#define NODE_SOCKETS_MAX 4

typedef struct NodeDaemon {
        const char *svc;        /* its folder under services/ */
        const char *binary;
        /* A node without it still serves its own Ollama: when the binary is missing the
         * launcher warns and runs the rest (a tree or an install without the mesh daemons). */
        bool optional;
        /* Listening sockets the launcher binds once and hands over at every start, as
         * systemd's .socket units do (LISTEN_FDS, names in LISTEN_FDNAMES): the address stays
         * the same across restarts and clients wait in the backlog meanwhile. */
        const char *sockets[NODE_SOCKETS_MAX];
} NodeDaemon;

/* The daemons of a node, in start order: each starts once the one before is ready, so
 * routerd finds Gossip1 at start and shimd finds Router1 and ShardStore1.
 * "gossip" is two sockets with one name, UDP then TCP on the same port, as two ListenDatagram=/
 * ListenStream= lines of one .socket unit with FileDescriptorName=gossip would hand over.
 * shardd is optional like gossipd: without it the node still serves inference, only no
 * collections. */
static const NodeDaemon node_daemons[] = {
        { "gossipd", "mycelia-gossipd", true, { "gossip", "gossip" } },
        { "discoveryd", "mycelia-discoveryd", true, {} },
        { "routerd", "mycelia-routerd", false, {} },
        { "shardd", "mycelia-shardd", true, { "shard" } },
        { "shimd", "mycelia-shimd", false, { "api", "mesh" } },
};

typedef struct NodeSocket {
        const char *name;       /* "api", "mesh", "gossip", "shard": the fd name the daemon asks for */
        int fd;                 /* -EBADF when that listener is off */
} NodeSocket;

/* Tries with port 0 before giving up: the UDP port the kernel picked may be taken for TCP. */
#define GOSSIP_BIND_ATTEMPTS 16

/* Longest wait for dbus-daemon to print its address, and for it to exit when stopped. */
#define BUS_START_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define BUS_STOP_TIMEOUT_USEC (5 * USEC_PER_SEC)
/* Notify datagrams handled per wake-up, so a chatty child cannot starve the loop. */
#define NOTIFY_BATCH_MAX 64
/* File descriptors a child may attach to a notify datagram (systemd's FDSTORE); we close them. */
#define NOTIFY_FDS_MAX 16

struct Manager {
        struct event_base *base;
        struct event *sigchld;
        struct event *sigterm;
        struct event *sigint;
        struct event *sighup;
        struct event *notify_event;
        struct event *timer;

        char *state_dir;                /* absolute */
        int state_dir_fd;               /* holds the flock that keeps a second launcher out */
        char *bus_config_path;
        char *bus_socket_path;
        char *bus_address;              /* unix:path=..., escaped as D-Bus addresses are */
        char *notify_socket_path;
        int notify_fd;
        pid_t bus_pid;
        pid_t self_pid;

        char *state_dir_configured;
        bool override_bus;
        bool mdns_off;
        char **daemon_args;             /* "", then the flags every daemon gets */
        /* The daemons this node runs (optional ones that are missing left out), in start
         * order; index k here is unit k of the supervisor. */
        const NodeDaemon *daemons[ELEMENTSOF(node_daemons)];
        size_t n_daemons;
        char *daemon_paths[ELEMENTSOF(node_daemons)];
        char **daemon_argv[ELEMENTSOF(node_daemons)];
        NodeSocket sockets[ELEMENTSOF(node_daemons)][NODE_SOCKETS_MAX];
        char *api_listen;
        char *mesh_listen;
        char *gossip_listen;
        char *shard_listen;
        char *mesh_key_configured;      /* NULL: the default file, else STATE_DIR/mesh.key */
        char *mesh_key;                 /* the file every daemon is given */
        char *api_fallback;
        char gossip_bound[NOTIFY_ADDRESS_MAX];  /* "" when this node runs no gossipd */
        char mesh_bound[NOTIFY_ADDRESS_MAX];
        char shard_bound[NOTIFY_ADDRESS_MAX];   /* "" when this node runs no shardd */
        char *node_id_configured;
        char node_id[NODE_ID_LEN + 1];
        char api[NOTIFY_ADDRESS_MAX];   /* last X_MYCELIA_API */
        char mesh[NOTIFY_ADDRESS_MAX];  /* last X_MYCELIA_MESH */

        Supervisor supervisor;
        bool finished;
        int exit_status;
};

static void manager_run_actions(Manager *m, const SupervisorActions *a);
static void manager_rearm_timer(Manager *m);

static char *path_join(const char *a, const char *b) {
        char *p;

        if (asprintf(&p, "%s/%s", a, b) < 0)
                return NULL;
        return p;
}

/* D-Bus address values escape every byte outside [-0-9A-Za-z_/.\*] as %XX. */
static char *bus_address_for_path(const char *path) {
        static const char hex[] = "0123456789abcdef";
        const char *prefix = "unix:path=";
        size_t n = strlen(prefix);
        char *s, *q;

        s = malloc(n + strlen(path) * 3 + 1);
        if (!s)
                return NULL;
        memcpy(s, prefix, n);
        q = s + n;
        for (const unsigned char *p = (const unsigned char *) path; *p; p++) {
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    strchr("-_/.\\*", *p))
                        *q++ = (char) *p;
                else {
                        *q++ = '%';
                        *q++ = hex[*p >> 4];
                        *q++ = hex[*p & 15];
                }
        }
        *q = '\0';
        return s;
}

static bool is_executable(const char *path) {
        struct stat st;

        return stat(path, &st) >= 0 && S_ISREG(st.st_mode) && access(path, X_OK) >= 0;
}

int manager_find_daemon(const char *libexec_dir, const char *svc, char **ret) {
        _cleanup_free_ char *name = NULL, *exe = NULL, *c1 = NULL, *c2 = NULL, *c3 = NULL;
        char buf[PATH_MAX];
        ssize_t n;

        if (asprintf(&name, "mycelia-%s", svc) < 0)
                return -ENOMEM;

        if (libexec_dir) {
                c1 = path_join(libexec_dir, name);
                if (!c1)
                        return -ENOMEM;
                if (!is_executable(c1))
                        return -ENOENT;
                *ret = TAKE_PTR(c1);
                return 0;
        }

        n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
        if (n > 0) {
                buf[n] = '\0';
                exe = strdup(dirname(buf));
                if (!exe)
                        return -ENOMEM;
                c1 = path_join(exe, name);
                /* A meson build tree: services/node/mycelia-node next to services/<svc>/. */
                if (asprintf(&c2, "%s/../%s/%s", exe, svc, name) < 0)
                        c2 = NULL;
                if (!c1 || !c2)
                        return -ENOMEM;
                if (is_executable(c1)) {
                        *ret = TAKE_PTR(c1);
                        return 0;
                }
                if (is_executable(c2)) {
                        char *real = realpath(c2, NULL);

                        *ret = real ?: TAKE_PTR(c2);
                        return 0;
                }
        }

        if (asprintf(&c3, "%s/mycelia/%s", LIBEXECDIR, name) < 0)
                return -ENOMEM;
        if (!is_executable(c3))
                return -ENOENT;
        *ret = TAKE_PTR(c3);
        return 0;
}

static void strv_free(char **v) {
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        if (m->sigchld)
                event_free(m->sigchld);
        if (m->sigterm)
                event_free(m->sigterm);
        if (m->sigint)
                event_free(m->sigint);
        if (m->sighup)
                event_free(m->sighup);
        if (m->notify_event)
                event_free(m->notify_event);
        if (m->timer)
                event_free(m->timer);
        if (m->base)
                event_base_free(m->base);
        if (m->notify_fd >= 0)
                (void) close(m->notify_fd);
        if (m->state_dir_fd >= 0)
                (void) close(m->state_dir_fd);
        for (size_t i = 0; i < ELEMENTSOF(node_daemons); i++) {
                free(m->daemon_paths[i]);
                strv_free(m->daemon_argv[i]);
                for (size_t k = 0; k < NODE_SOCKETS_MAX; k++)
                        if (m->sockets[i][k].fd >= 0)
                                (void) close(m->sockets[i][k].fd);
        }
        free(m->api_listen);
        free(m->mesh_listen);
        free(m->gossip_listen);
        free(m->shard_listen);
        free(m->mesh_key_configured);
        free(m->mesh_key);
        strv_free(m->daemon_args);
        free(m->state_dir_configured);
        free(m->node_id_configured);
        free(m->state_dir);
        free(m->bus_config_path);
        free(m->bus_socket_path);
        free(m->bus_address);
        free(m->notify_socket_path);
        free(m->api_fallback);
        free(m);
        return NULL;
}

/* "SIGTERM"; the buffer is static, so use one per call site. */
static const char *signal_name(int sig) {
        static char buf[32];
        const char *abbrev = sigabbrev_np(sig);

        if (abbrev)
                snprintf(buf, sizeof(buf), "SIG%s", abbrev);
        else
                snprintf(buf, sizeof(buf), "signal %d", sig);
        return buf;
}

static void describe_status(int status, char *buf, size_t size) {
        if (WIFEXITED(status))
                snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
                snprintf(buf, size, "was killed by %s%s", signal_name(WTERMSIG(status)),
                         WCOREDUMP(status) ? " (core dumped)" : "");
        else
                snprintf(buf, size, "ended (wait status %d)", status);
}

static const char *unit_display_name(const Manager *m, size_t i) {
        return m->supervisor.units[i].name;
}

/* In a forked child before exec: die with the launcher, drop what the launcher set up for
 * itself (signal handlers, mask, fds), and point stdout at stderr so the launcher's stdout
 * carries only its ready line. keep_fds[k] becomes fd 3 + k; every other fd is closed. */
static void child_setup(pid_t parent, const int *keep_fds, size_t n_keep) {
        int tmp[NODE_SOCKETS_MAX];
        sigset_t mask;
        int null_fd;

        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
                _exit(EXIT_FAILURE);
        /* The launcher may have died between fork() and prctl(): then nobody would reap us. */
        if (getppid() != parent)
                _exit(EXIT_FAILURE);

        /* Our own session: a Ctrl-C on the launcher's terminal is for the launcher, which
         * then stops the daemons in order. */
        (void) setsid();

        for (int sig = 1; sig < NSIG; sig++)
                (void) signal(sig, SIG_DFL);
        sigemptyset(&mask);
        (void) sigprocmask(SIG_SETMASK, &mask, NULL);

        null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd >= 0) {
                (void) dup2(null_fd, STDIN_FILENO);
                if (null_fd != STDIN_FILENO)
                        (void) close(null_fd);
        }
        (void) dup2(STDERR_FILENO, STDOUT_FILENO);

        /* Move them out of the way first, so that placing one cannot clobber another. */
        if (n_keep > ELEMENTSOF(tmp))
                _exit(EXIT_FAILURE);
        for (size_t k = 0; k < n_keep; k++) {
                tmp[k] = fcntl(keep_fds[k], F_DUPFD_CLOEXEC, (int) (3 + n_keep));
                if (tmp[k] < 0)
                        _exit(EXIT_FAILURE);
        }
        for (size_t k = 0; k < n_keep; k++)
                if (dup2(tmp[k], (int) (3 + k)) < 0)    /* the copy is not close-on-exec */
                        _exit(EXIT_FAILURE);
        (void) close_range((unsigned) (3 + n_keep), ~0U, 0);

        /* What we got from a service manager is ours, not theirs. */
        (void) unsetenv("LISTEN_FDS");
        (void) unsetenv("LISTEN_PID");
        (void) unsetenv("LISTEN_FDNAMES");
        (void) unsetenv("NOTIFY_SOCKET");
        (void) unsetenv("WATCHDOG_USEC");
        (void) unsetenv("WATCHDOG_PID");
}

static int bus_write_config(Manager *m) {
        _cleanup_free_ char *tmp = NULL;
        FILE *f;
        int fd;

        if (asprintf(&tmp, "%s.XXXXXX", m->bus_config_path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        f = fdopen(fd, "w");
        if (!f) {
                int r = -errno;
                (void) close(fd);
                (void) unlink(tmp);
                return r;
        }
        /* Private to this node and reachable only through the 0750 state directory, so it
         * allows everything. The system bus policy with real restrictions (dbus/ *.conf) is
         * installed by the packages. */
        fprintf(f,
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
                " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
                "<!-- Written by mycelia-node for its private bus; rewritten at every start. -->\n"
                "<busconfig>\n"
                "  <type>system</type>\n"
                "  <listen>%s</listen>\n"
                "  <auth>EXTERNAL</auth>\n"
                "  <policy context=\"default\">\n"
                "    <allow user=\"*\"/>\n"
                "    <allow own=\"*\"/>\n"
                "    <allow send_type=\"method_call\"/>\n"
                "    <allow send_destination=\"*\"/>\n"
                "    <allow receive_sender=\"*\"/>\n"
                "    <allow eavesdrop=\"true\"/>\n"
                "  </policy>\n"
                "</busconfig>\n",
                m->bus_address);
        if (fflush(f) != 0 || ferror(f)) {
                (void) fclose(f);
                (void) unlink(tmp);
                return -EIO;
        }
        (void) fclose(f);
        if (rename(tmp, m->bus_config_path) < 0) {
                int r = -errno;
                (void) unlink(tmp);
                return r;
        }
        return 0;
}

/* Reaps pid, waiting at most timeout; returns true if it is gone. */
static bool wait_pid_timeout(pid_t pid, usec_t timeout) {
        usec_t end = now_usec() + timeout;

        for (;;) {
                pid_t r = waitpid(pid, NULL, WNOHANG);

                if (r == pid || (r < 0 && errno == ECHILD))
                        return true;
                if (now_usec() >= end)
                        return false;
                (void) nanosleep(&(struct timespec) { .tv_nsec = 10 * 1000 * 1000 }, NULL);
        }
}

static int bus_start(Manager *m) {
        _cleanup_free_ char *config_arg = NULL;
        _cleanup_close_ int rfd = -EBADF;
        int pipefd[2], r;
        char buf[512];
        size_t got = 0;
        usec_t end;
        pid_t pid;

        r = bus_write_config(m);
        if (r < 0)
                return log_error_errno(r, "Failed to write %s: %m", m->bus_config_path);
        if (asprintf(&config_arg, "--config-file=%s", m->bus_config_path) < 0)
                return log_oom();

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return log_error_errno(errno, "Failed to create pipe: %m");
        rfd = pipefd[0];

        pid = fork();
        if (pid < 0) {
                r = -errno;
                (void) close(pipefd[1]);
                return log_error_errno(r, "Failed to fork dbus-daemon: %m");
        }
        if (pid == 0) {
                child_setup(m->self_pid, &pipefd[1], 1);
                execlp("dbus-daemon", "dbus-daemon", config_arg, "--nofork", "--nopidfile",
                       "--print-address=3", (char *) NULL);
                fprintf(stderr, "mycelia-node: failed to execute dbus-daemon: %s\n", strerror(errno));
                _exit(127);
        }
        (void) close(pipefd[1]);
        m->bus_pid = pid;

        /* The address line means the socket is listening. */
        end = now_usec() + BUS_START_TIMEOUT_USEC;
        for (;;) {
                usec_t now = now_usec();
                struct pollfd pfd = { .fd = rfd, .events = POLLIN };
                ssize_t n;

                if (now >= end) {
                        log_error("dbus-daemon did not print its address within %llu s.",
                                  (unsigned long long) (BUS_START_TIMEOUT_USEC / USEC_PER_SEC));
                        return -ETIMEDOUT;
                }
                r = poll(&pfd, 1, (int) ((end - now) / USEC_PER_MSEC) + 1);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_error_errno(errno, "poll() failed: %m");
                }
                if (r == 0)
                        continue;
                n = read(rfd, buf + got, sizeof(buf) - 1 - got);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return log_error_errno(errno, "Failed to read dbus-daemon's address: %m");
                }
                if (n == 0) {
                        log_error("dbus-daemon exited before it was listening (see its messages above; "
                                  "is the dbus-daemon package installed?).");
                        return -ECHILD;
                }
                got += (size_t) n;
                buf[got] = '\0';
                if (strchr(buf, '\n'))
                        break;
                if (got >= sizeof(buf) - 1) {
                        log_error("dbus-daemon printed an address we cannot read.");
                        return -EBADMSG;
                }
        }
        *strchr(buf, '\n') = '\0';
        log_debug("Private bus up: %s (pid %d)", buf, (int) m->bus_pid);
        return 0;
}

static void bus_stop(Manager *m) {
        if (m->bus_pid <= 0)
                return;
        (void) kill(m->bus_pid, SIGTERM);
        if (!wait_pid_timeout(m->bus_pid, BUS_STOP_TIMEOUT_USEC)) {
                log_warning("dbus-daemon did not exit after SIGTERM; sending SIGKILL.");
                (void) kill(m->bus_pid, SIGKILL);
                (void) wait_pid_timeout(m->bus_pid, BUS_STOP_TIMEOUT_USEC);
        }
        m->bus_pid = 0;
}

static void manager_finish(Manager *m) {
        if (m->finished)
                return;
        m->finished = true;
        bus_stop(m);
        if (m->notify_fd >= 0) {
                if (m->notify_event)
                        (void) event_del(m->notify_event);
                (void) close(m->notify_fd);
                m->notify_fd = -EBADF;
        }
        if (m->notify_socket_path)
                (void) unlink(m->notify_socket_path);
        if (m->bus_socket_path)
                (void) unlink(m->bus_socket_path);
        m->exit_status = m->supervisor.exit_status;
        (void) event_base_loopbreak(m->base);
}

static void manager_stop(Manager *m, int exit_status) {
        SupervisorActions a = {};

        supervisor_stop(&m->supervisor, now_usec(), exit_status, &a);
        manager_run_actions(m, &a);
}

static int spawn_unit(Manager *m, size_t i, pid_t *ret_pid) {
        char watchdog[32], fdnames[256] = "";
        int fds[NODE_SOCKETS_MAX];
        size_t n_fds = 0;
        pid_t pid;

        for (size_t k = 0; k < NODE_SOCKETS_MAX; k++)
                if (m->sockets[i][k].fd >= 0) {
                        size_t len = strlen(fdnames);

                        snprintf(fdnames + len, sizeof(fdnames) - len, "%s%s", n_fds > 0 ? ":" : "",
                                 m->sockets[i][k].name);
                        fds[n_fds++] = m->sockets[i][k].fd;
                }

        snprintf(watchdog, sizeof(watchdog), "%llu",
                 (unsigned long long) m->supervisor.timeouts.watchdog);

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                char pidbuf[32];

                child_setup(m->self_pid, fds, n_fds);
                snprintf(pidbuf, sizeof(pidbuf), "%d", (int) getpid());
                if (n_fds > 0) {
                        char nbuf[24];

                        snprintf(nbuf, sizeof(nbuf), "%zu", n_fds);
                        if (setenv("LISTEN_FDS", nbuf, 1) < 0 || setenv("LISTEN_PID", pidbuf, 1) < 0 ||
                            setenv("LISTEN_FDNAMES", fdnames, 1) < 0)
                                _exit(EXIT_FAILURE);
                }
                if (setenv("DBUS_SYSTEM_BUS_ADDRESS", m->bus_address, 1) < 0 ||
                    setenv("NOTIFY_SOCKET", m->notify_socket_path, 1) < 0)
                        _exit(EXIT_FAILURE);
                if (m->supervisor.timeouts.watchdog > 0 &&
                    (setenv("WATCHDOG_USEC", watchdog, 1) < 0 || setenv("WATCHDOG_PID", pidbuf, 1) < 0))
                        _exit(EXIT_FAILURE);
                execv(m->daemon_paths[i], m->daemon_argv[i]);
                fprintf(stderr, "mycelia-node: failed to execute %s: %s\n", m->daemon_paths[i],
                        strerror(errno));
                _exit(127);
        }
        *ret_pid = pid;
        return 0;
}

static void announce_ready(Manager *m) {
        const char *api = m->api[0] ? m->api : m->api_fallback;
        const char *mesh = m->mesh[0] ? m->mesh : m->mesh_bound;

        if (!m->api[0])
                log_warning("mycelia-shimd did not report its API address; printing the configured one.");
        /* Fields are only ever added at the end: scripts and tests parse this line. An empty
         * gossip=, mesh= or shard= means that part is off. */
        printf("mycelia-node: ready api=http://%s bus=%s gossip=%s mesh=%s node=%s shard=%s\n", api,
               m->bus_address, m->gossip_bound, mesh, m->node_id, m->shard_bound);
        (void) fflush(stdout);
        log_info("Node %s ready: api http://%s, gossip %s, mesh %s, shard %s, bus %s", m->node_id, api,
                 m->gossip_bound[0] ? m->gossip_bound : "off", mesh[0] ? mesh : "off",
                 m->shard_bound[0] ? m->shard_bound : "off", m->bus_address);
        /* When the launcher itself runs under systemd (Type=notify). */
        (void) sd_notifyf(0, "READY=1\nSTATUS=Serving http://%s", api);
}

static void manager_run_actions(Manager *m, const SupervisorActions *a) {
        for (size_t k = 0; k < a->n; k++) {
                const SupervisorAction *act = &a->actions[k];
                Unit *u = &m->supervisor.units[act->unit];
                const char *name = unit_display_name(m, act->unit);
                usec_t now = now_usec();

                switch (act->type) {
                case SUPERVISOR_ACTION_START: {
                        pid_t pid = 0;
                        int r;

                        r = spawn_unit(m, act->unit, &pid);
                        if (r < 0) {
                                SupervisorActions more = {};

                                log_error_errno(r, "Failed to fork %s: %m", name);
                                supervisor_unit_start_failed(&m->supervisor, act->unit, now, &more);
                                manager_run_actions(m, &more);
                                break;
                        }
                        supervisor_unit_started(&m->supervisor, act->unit, pid, now);
                        if (streq(act->reason, "restart"))
                                log_notice("Restarted %s as pid %d (restart #%u).", name, (int) pid,
                                           u->n_restarts);
                        else
                                log_info("Started %s as pid %d, waiting for READY=1.", name, (int) pid);
                        break;
                }
                case SUPERVISOR_ACTION_SIGNAL:
                        if (u->pid <= 0)
                                break;
                        if (streq(act->reason, "watchdog timeout"))
                                log_error("%s missed its watchdog (%llu s); sending SIGABRT.", name,
                                          (unsigned long long) (m->supervisor.timeouts.watchdog / USEC_PER_SEC));
                        else if (streq(act->reason, "start timeout"))
                                log_error("%s did not report READY=1 within %llu s; sending SIGTERM.", name,
                                          (unsigned long long) (m->supervisor.timeouts.start / USEC_PER_SEC));
                        else if (act->signal == SIGKILL)
                                log_warning("%s is still running (%s); sending SIGKILL.", name, act->reason);
                        else
                                log_debug("Sending %s to %s (%s).", signal_name(act->signal), name, act->reason);
                        if (kill(u->pid, act->signal) < 0 && errno != ESRCH)
                                log_warning_errno(errno, "Failed to signal %s: %m", name);
                        break;
                case SUPERVISOR_ACTION_READY:
                        announce_ready(m);
                        break;
                case SUPERVISOR_ACTION_DONE:
                        manager_finish(m);
                        break;
                }
        }
        manager_rearm_timer(m);
}

static void on_timer(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;
        SupervisorActions a = {};

        supervisor_on_timer(&m->supervisor, now_usec(), &a);
        manager_run_actions(m, &a);
}

static void manager_rearm_timer(Manager *m) {
        usec_t next, now;
        struct timeval tv;

        if (!m->timer || m->finished)
                return;
        next = supervisor_next_timer(&m->supervisor);
        if (next == USEC_INFINITY) {
                (void) event_del(m->timer);
                return;
        }
        now = now_usec();
        next = next > now ? next - now : 0;
        tv = (struct timeval) { .tv_sec = next / USEC_PER_SEC, .tv_usec = next % USEC_PER_SEC };
        (void) event_add(m->timer, &tv);
}

static void on_sigchld(evutil_socket_t sig, short what, void *userdata) {
        Manager *m = userdata;
        int status;
        pid_t pid;

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                SupervisorActions a = {};
                usec_t now = now_usec();
                char what_happened[96];
                int i;

                describe_status(status, what_happened, sizeof(what_happened));

                if (pid == m->bus_pid) {
                        m->bus_pid = 0;
                        if (m->supervisor.phase == SUPERVISOR_STOPPING || m->supervisor.phase == SUPERVISOR_DONE)
                                continue;
                        log_error("The private dbus-daemon %s; stopping the node.", what_happened);
                        manager_stop(m, 1);
                        continue;
                }

                i = supervisor_unit_by_pid(&m->supervisor, pid);
                if (i < 0) {
                        log_debug("Reaped unknown process %d, which %s.", (int) pid, what_happened);
                        continue;
                }

                {
                        const char *name = unit_display_name(m, (size_t) i);
                        bool ever_ready = m->supervisor.units[i].ever_ready;
                        SupervisorPhase phase = m->supervisor.phase;

                        (void) supervisor_on_exit(&m->supervisor, pid, now, &a);
                        if (phase == SUPERVISOR_STOPPING || phase == SUPERVISOR_DONE)
                                log_info("%s %s.", name, what_happened);
                        else if (!ever_ready && phase == SUPERVISOR_STARTING)
                                log_error("%s %s before it was ready; stopping the node.", name,
                                          what_happened);
                        else {
                                const Unit *u = &m->supervisor.units[i];
                                usec_t delay = u->timer > now ? u->timer - now : 0;

                                log_warning("%s %s; restarting it in %llu ms.", name, what_happened,
                                            (unsigned long long) (delay / USEC_PER_MSEC));
                        }
                }
                manager_run_actions(m, &a);
        }
}

static void on_stop_signal(evutil_socket_t sig, short what, void *userdata) {
        Manager *m = userdata;

        if (m->supervisor.phase == SUPERVISOR_STOPPING)
                log_notice("Received %s again; killing the daemons.", signal_name((int) sig));
        else
                log_info("Received %s; stopping the node.", signal_name((int) sig));
        manager_stop(m, 0);
}

static void handle_notify(Manager *m, pid_t pid, const char *buf, size_t len) {
        SupervisorActions a = {};
        NotifyMessage msg;
        const char *name;
        int i, r;

        i = supervisor_unit_by_pid(&m->supervisor, pid);
        if (i < 0) {
                log_debug("Ignoring notification from pid %d, which is no daemon of ours.", (int) pid);
                return;
        }
        name = unit_display_name(m, (size_t) i);

        r = notify_message_parse(buf, len, &msg);
        if (r < 0) {
                log_warning_errno(r, "Ignoring malformed notification from %s: %m", name);
                return;
        }
        if (msg.n_ignored > 0)
                log_debug("%s: ignored %u notification field(s).", name, msg.n_ignored);
        if (msg.has_status)
                log_debug("%s: status: %s", name, msg.status);
        if (msg.has_api && !streq(m->api, msg.api)) {
                if (m->supervisor.ready_announced)
                        log_notice("%s now serves the API at http://%s.", name, msg.api);
                snprintf(m->api, sizeof(m->api), "%s", msg.api);
        }
        if (msg.has_mesh)
                snprintf(m->mesh, sizeof(m->mesh), "%s", msg.mesh);
        if (msg.stopping)
                log_debug("%s is stopping.", name);
        if (msg.watchdog)
                (void) supervisor_on_watchdog(&m->supervisor, pid, now_usec());
        if (msg.ready) {
                bool was_ready = m->supervisor.units[i].state == UNIT_RUNNING;

                (void) supervisor_on_ready(&m->supervisor, pid, now_usec(), &a);
                if (!was_ready && m->supervisor.units[i].state == UNIT_RUNNING)
                        log_info("%s is ready%s%s.", name, msg.has_status ? ": " : "",
                                 msg.has_status ? msg.status : "");
        }
        manager_run_actions(m, &a);
}

static void on_notify(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;

        for (unsigned k = 0; k < NOTIFY_BATCH_MAX && !m->finished; k++) {
                union {
                        struct cmsghdr align;
                        uint8_t buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * NOTIFY_FDS_MAX)];
                } control;
                char buf[NOTIFY_MESSAGE_MAX + 1];
                struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
                struct msghdr mh = {
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof(control),
                };
                struct ucred *cred = NULL;
                ssize_t n;

                n = recvmsg(m->notify_fd, &mh, MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
                if (n < 0) {
                        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                                log_warning_errno(errno, "Failed to read from the notify socket: %m");
                        return;
                }

                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                        if (c->cmsg_level != SOL_SOCKET)
                                continue;
                        if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len == CMSG_LEN(sizeof(struct ucred)))
                                cred = (struct ucred *) CMSG_DATA(c);
                        else if (c->cmsg_type == SCM_RIGHTS) {
                                /* We keep no file descriptors for anyone. */
                                size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                                int *fds = (int *) CMSG_DATA(c);

                                for (size_t j = 0; j < nfd; j++)
                                        (void) close(fds[j]);
                        }
                }

                if (!cred || cred->pid <= 0) {
                        log_debug("Ignoring notification without credentials.");
                        continue;
                }
                if ((size_t) n > NOTIFY_MESSAGE_MAX) {
                        log_warning("Ignoring %zd byte notification from pid %d: too long.", n, (int) cred->pid);
                        continue;
                }
                handle_notify(m, cred->pid, buf, (size_t) n);
        }
}

static int notify_socket_open(Manager *m) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int one = 1;

        if (strlen(m->notify_socket_path) >= sizeof(sa.sun_path))
                return log_error_errno(ENAMETOOLONG, "State directory path too long for a socket: %s",
                                       m->state_dir);
        strcpy(sa.sun_path, m->notify_socket_path);

        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(errno, "Failed to create the notify socket: %m");
        (void) unlink(m->notify_socket_path);
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return log_error_errno(errno, "Failed to bind %s: %m", m->notify_socket_path);
        if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
                return log_error_errno(errno, "Failed to enable SO_PASSCRED: %m");

        m->notify_fd = TAKE_FD(fd);
        m->notify_event = event_new(m->base, m->notify_fd, EV_READ | EV_PERSIST, on_notify, m);
        if (!m->notify_event || event_add(m->notify_event, NULL) < 0)
                return log_oom();
        return 0;
}

static const char *socket_address(const Manager *m, const char *name) {
        if (streq(name, "api"))
                return m->api_listen;
        if (streq(name, "mesh"))
                return m->mesh_listen;
        if (streq(name, "gossip"))
                return m->gossip_listen;
        if (streq(name, "shard"))
                return m->shard_listen;
        return NULL;
}

static uint16_t sockaddr_port(const struct sockaddr_storage *sa) {
        if (sa->ss_family == AF_INET)
                return ntohs(((const struct sockaddr_in *) sa)->sin_port);
        return ntohs(((const struct sockaddr_in6 *) sa)->sin6_port);
}

static void sockaddr_set_port(struct sockaddr_storage *sa, uint16_t port) {
        if (sa->ss_family == AF_INET)
                ((struct sockaddr_in *) sa)->sin_port = htons(port);
        else
                ((struct sockaddr_in6 *) sa)->sin6_port = htons(port);
}

/* Gossip's UDP socket and its TCP push-pull listener on one port number, as a seed HOST:PORT
 * must reach both. With port 0 the UDP socket picks the number first and TCP follows; when
 * that number is taken for TCP, both are closed and tried again. */
static int gossip_sockets_open(const char *addr, int *ret_udp, int *ret_tcp) {
        struct sockaddr_storage sa;
        socklen_t len;
        bool any_port;
        int one = 1, r;

        r = sockaddr_parse(addr, &sa, &len);
        if (r < 0)
                return r;
        if (!IN_SET(sa.ss_family, AF_INET, AF_INET6))
                return -EAFNOSUPPORT;
        any_port = sockaddr_port(&sa) == 0;

        for (unsigned attempt = 0;; attempt++) {
                _cleanup_close_ int udp = -EBADF, tcp = -EBADF;
                struct sockaddr_storage bound = sa;
                socklen_t bound_len = len;

                udp = socket(sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (udp < 0)
                        return -errno;
                if (bind(udp, (struct sockaddr *) &sa, len) < 0)
                        return -errno;
                if (getsockname(udp, (struct sockaddr *) &bound, &bound_len) < 0)
                        return -errno;

                tcp = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (tcp < 0)
                        return -errno;
                (void) setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                sockaddr_set_port(&sa, sockaddr_port(&bound));
                r = bind(tcp, (struct sockaddr *) &sa, len) < 0 ? -errno : 0;
                sockaddr_set_port(&sa, 0);
                if (r == -EADDRINUSE && any_port && attempt + 1 < GOSSIP_BIND_ATTEMPTS) {
                        log_debug("Port %u is free for UDP but not for TCP; trying another.",
                                  sockaddr_port(&bound));
                        continue;
                }
                if (r < 0)
                        return r;
                if (listen(tcp, SOMAXCONN) < 0)
                        return -errno;
                *ret_udp = TAKE_FD(udp);
                *ret_tcp = TAKE_FD(tcp);
                return 0;
        }
}

static int socket_open_failed(const char *addr, const char *name, int r) {
        if (r == -EADDRINUSE)
                return log_error_errno(r, "Failed to listen on %s (--%s): %m. Is another "
                                       "Mycelia node or Ollama using it? Pick another with --%s ADDR:PORT.",
                                       addr, name, name);
        return log_error_errno(r, "Failed to listen on %s (--%s): %m", addr, name);
}

static int sockets_open(Manager *m) {
        for (size_t i = 0; i < m->n_daemons; i++)
                for (size_t k = 0; k < NODE_SOCKETS_MAX && m->daemons[i]->sockets[k]; k++) {
                        NodeSocket *s = &m->sockets[i][k];
                        const char *addr;
                        char bound[NOTIFY_ADDRESS_MAX];
                        int r;

                        s->name = m->daemons[i]->sockets[k];
                        addr = socket_address(m, s->name);
                        if (isempty(addr))
                                continue;       /* off, e.g. no mesh listener */
                        if (streq(s->name, "gossip")) {
                                /* The pair: UDP in slot k, TCP in slot k + 1, both "gossip". */
                                assert(k + 1 < NODE_SOCKETS_MAX && m->daemons[i]->sockets[k + 1] &&
                                       streq(m->daemons[i]->sockets[k + 1], "gossip"));
                                r = gossip_sockets_open(addr, &s->fd, &m->sockets[i][k + 1].fd);
                                if (r < 0)
                                        return socket_open_failed(addr, s->name, r);
                                m->sockets[i][k + 1].name = s->name;
                                r = sockaddr_format_local(s->fd, m->gossip_bound, sizeof(m->gossip_bound));
                                if (r < 0)
                                        return log_error_errno(r, "Failed to read the gossip address: %m");
                                log_debug("Gossip on %s (UDP and TCP) for %s.", m->gossip_bound,
                                          m->daemons[i]->binary);
                                k++;
                                continue;
                        }
                        r = listen_tcp(addr, &s->fd);
                        if (r < 0)
                                return socket_open_failed(addr, s->name, r);
                        r = sockaddr_format_local(s->fd, bound, sizeof(bound));
                        if (r < 0)
                                return log_error_errno(r, "Failed to read the address of --%s: %m", s->name);
                        log_debug("Listening on %s for %s (%s).", bound, m->daemons[i]->binary, s->name);
                        if (streq(s->name, "api")) {
                                /* The real port when --api asked for port 0. */
                                free(m->api_fallback);
                                m->api_fallback = strdup(bound);
                                if (!m->api_fallback)
                                        return log_oom();
                        } else if (streq(s->name, "mesh"))
                                snprintf(m->mesh_bound, sizeof(m->mesh_bound), "%s", bound);
                        else if (streq(s->name, "shard"))
                                snprintf(m->shard_bound, sizeof(m->shard_bound), "%s", bound);
                }
        return 0;
}

/* The mesh key every daemon of the node is given: the configured file, else the default
 * file when it exists, else STATE_DIR/mesh.key, created on the first start. It is loaded once
 * here so that a missing or bad key stops the node before anything starts. */
static int mesh_key_prepare(Manager *m) {
        uint8_t key[MESH_KEY_SIZE];
        int r;

        if (m->mesh_key_configured)
                m->mesh_key = strdup(m->mesh_key_configured);
        else if (access(SYSCONFDIR "/mycelia/mesh.key", F_OK) >= 0)
                m->mesh_key = strdup(SYSCONFDIR "/mycelia/mesh.key");
        else {
                m->mesh_key = path_join(m->state_dir, "mesh.key");
                if (!m->mesh_key)
                        return log_oom();
                r = mesh_key_generate(m->mesh_key);
                if (r >= 0)
                        log_info("Created a mesh key for this node: %s. Nodes meant to form one mesh "
                                 "need the same key (--mesh-key FILE).", m->mesh_key);
                else if (r != -EEXIST)
                        return log_error_errno(r, "Failed to create the mesh key %s: %m", m->mesh_key);
        }
        if (!m->mesh_key)
                return log_oom();

        r = mesh_key_load(m->mesh_key, key);
        explicit_bzero(key, sizeof(key));
        if (r == -ENOENT)
                return log_error_errno(r, "The mesh key %s does not exist. Create one (myceliactl keygen, or "
                                       "head -c 32 /dev/urandom | base64 > FILE) or leave --mesh-key out.",
                                       m->mesh_key);
        if (r < 0)
                return log_error_errno(r, "Failed to read the mesh key %s: %m", m->mesh_key);
        return 0;
}

/* mkdir -p with mode for the directories it creates. */
static int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int state_dir_prepare(Manager *m, const char *configured) {
        _cleanup_close_ int fd = -EBADF;
        char *resolved;
        int r;

        if (isempty(configured))
                return log_error_errno(EINVAL, "No state directory configured (--state-dir DIR).");
        r = mkdir_p(configured, 0750);
        if (r < 0)
                return log_error_errno(r, "Failed to create state directory %s: %m", configured);
        resolved = realpath(configured, NULL);
        if (!resolved)
                return log_error_errno(errno, "Failed to resolve %s: %m", configured);
        m->state_dir = resolved;

        fd = open(m->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return log_error_errno(errno, "Failed to open %s: %m", m->state_dir);
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno == EWOULDBLOCK)
                        return log_error_errno(EBUSY, "Another mycelia-node is running with state directory %s.",
                                               m->state_dir);
                return log_error_errno(errno, "Failed to lock %s: %m", m->state_dir);
        }
        m->state_dir_fd = TAKE_FD(fd);

        m->bus_config_path = path_join(m->state_dir, "bus.conf");
        m->bus_socket_path = path_join(m->state_dir, "bus.sock");
        m->notify_socket_path = path_join(m->state_dir, "notify.sock");
        if (!m->bus_config_path || !m->bus_socket_path || !m->notify_socket_path)
                return log_oom();
        m->bus_address = bus_address_for_path(m->bus_socket_path);
        if (!m->bus_address)
                return log_oom();
        if (strlen(m->bus_socket_path) >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                return log_error_errno(ENAMETOOLONG, "State directory path too long for a socket: %s",
                                       m->state_dir);
        return 0;
}

/* argv0, then args, then the n_extra flags in extra; NULL-terminated. */
static char **daemon_argv_new(const char *argv0, char *const *args, size_t n_args, char *const *extra,
                              size_t n_extra) {
        size_t n = 0;
        char **v;

        v = calloc(n_args + n_extra + 2, sizeof(char *));
        if (!v)
                return NULL;
        v[n] = strdup(argv0);
        if (!v[n++])
                goto fail;
        for (size_t i = 0; i < n_args; i++) {
                v[n] = strdup(args[i]);
                if (!v[n++])
                        goto fail;
        }
        for (size_t i = 0; i < n_extra; i++) {
                v[n] = strdup(extra[i]);
                if (!v[n++])
                        goto fail;
        }
        v[n] = NULL;
        return v;
fail:
        strv_free(v);
        return NULL;
}

static bool manager_runs(const Manager *m, const char *svc) {
        for (size_t i = 0; i < m->n_daemons; i++)
                if (streq(m->daemons[i]->svc, svc))
                        return true;
        return false;
}

int manager_new(const ManagerParams *p, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return log_oom();
        m->notify_fd = -EBADF;
        m->state_dir_fd = -EBADF;
        for (size_t i = 0; i < ELEMENTSOF(node_daemons); i++)
                for (size_t k = 0; k < NODE_SOCKETS_MAX; k++)
                        m->sockets[i][k].fd = -EBADF;
        m->self_pid = getpid();
        m->api_fallback = strdup(strempty(p->api_fallback));
        m->state_dir_configured = strdup(strempty(p->state_dir));
        m->daemon_args = daemon_argv_new("", p->daemon_args, p->n_daemon_args, NULL, 0);
        if (!m->api_fallback || !m->state_dir_configured || !m->daemon_args)
                return log_oom();
        m->override_bus = p->override_bus;
        m->mdns_off = p->mdns_off;
        m->api_listen = strdup(strempty(p->api_listen));
        m->mesh_listen = strdup(strempty(p->mesh_listen));
        m->gossip_listen = strdup(strempty(p->gossip_listen));
        m->shard_listen = strdup(strempty(p->shard_listen));
        if (!m->api_listen || !m->mesh_listen || !m->gossip_listen || !m->shard_listen)
                return log_oom();
        if (p->mesh_key) {
                m->mesh_key_configured = strdup(p->mesh_key);
                if (!m->mesh_key_configured)
                        return log_oom();
        }
        m->node_id_configured = strdup(strempty(p->node_id));
        if (!m->node_id_configured)
                return log_oom();

        supervisor_init(&m->supervisor, NULL);
        for (size_t i = 0; i < ELEMENTSOF(node_daemons); i++) {
                const NodeDaemon *d = &node_daemons[i];
                size_t u = m->n_daemons;

                r = manager_find_daemon(p->libexec_dir, d->svc, &m->daemon_paths[u]);
                if (r == -ENOENT && d->optional) {
                        log_warning("%s not found%s%s; this node runs without it.", d->binary,
                                    p->libexec_dir ? " in " : "", strempty(p->libexec_dir));
                        continue;
                }
                if (r == -ENOENT) {
                        if (p->libexec_dir)
                                return log_error_errno(r, "%s not found in %s.", d->binary, p->libexec_dir);
                        return log_error_errno(r, "%s not found next to mycelia-node, in the build tree, "
                                               "or in %s/mycelia; use --libexec-dir DIR.", d->binary, LIBEXECDIR);
                }
                if (r < 0)
                        return log_error_errno(r, "Failed to find %s: %m", d->binary);
                log_debug("Using %s", m->daemon_paths[u]);
                r = supervisor_add_unit(&m->supervisor, d->binary);
                if (r < 0)
                        return log_error_errno(r, "Too many daemons: %m");
                m->daemons[m->n_daemons++] = d;
        }
        /* Nobody to hand them to: no address in the ready line either. */
        if (!manager_runs(m, "gossipd")) {
                free(m->gossip_listen);
                m->gossip_listen = strdup("");
                if (!m->gossip_listen)
                        return log_oom();
        }
        if (!manager_runs(m, "shardd")) {
                free(m->shard_listen);
                m->shard_listen = strdup("");
                if (!m->shard_listen)
                        return log_oom();
        }

        m->base = event_base_new();
        if (!m->base)
                return log_oom();
        m->sigchld = evsignal_new(m->base, SIGCHLD, on_sigchld, m);
        m->sigterm = evsignal_new(m->base, SIGTERM, on_stop_signal, m);
        m->sigint = evsignal_new(m->base, SIGINT, on_stop_signal, m);
        m->sighup = evsignal_new(m->base, SIGHUP, on_stop_signal, m);
        m->timer = evtimer_new(m->base, on_timer, m);
        if (!m->sigchld || !m->sigterm || !m->sigint || !m->sighup || !m->timer)
                return log_oom();
        if (event_add(m->sigchld, NULL) < 0 || event_add(m->sigterm, NULL) < 0 ||
            event_add(m->sigint, NULL) < 0 || event_add(m->sighup, NULL) < 0)
                return log_error_errno(EIO, "Failed to set up signal handling.");
        /* The ready line goes to stdout, which may be a pipe that was closed. */
        (void) signal(SIGPIPE, SIG_IGN);

        *ret = TAKE_PTR(m);
        return 0;
}

#define EXTRA_FLAGS_MAX 7

/* What the launcher decided goes after the user's flags, where the last flag wins: the node
 * id (so no daemon makes its own), the bound addresses (port 0 resolved, so discoveryd
 * publishes and gossipd and shardd advertise real ports), the mesh key, and the private bus.
 * Returns the number of flags put in extra, or -ENOMEM. */
static int manager_extra_flags(Manager *m, char *extra[static EXTRA_FLAGS_MAX]) {
        const char *flag[EXTRA_FLAGS_MAX], *value[EXTRA_FLAGS_MAX];
        int n = 0;

        flag[n] = "node-id", value[n++] = m->node_id;
        if (m->gossip_bound[0])
                flag[n] = "gossip", value[n++] = m->gossip_bound;
        if (m->mesh_bound[0])
                flag[n] = "mesh", value[n++] = m->mesh_bound;
        if (m->shard_bound[0])
                flag[n] = "shard", value[n++] = m->shard_bound;
        flag[n] = "mesh-key", value[n++] = m->mesh_key;
        if (m->mdns_off)
                flag[n] = "mdns", value[n++] = "no";
        if (m->override_bus)
                flag[n] = "bus", value[n++] = m->bus_address;

        for (int i = 0; i < n; i++)
                if (asprintf(&extra[i], "--%s=%s", flag[i], value[i]) < 0) {
                        for (int j = 0; j < i; j++) {
                                free(extra[j]);
                                extra[j] = NULL;
                        }
                        return -ENOMEM;
                }
        return n;
}

int manager_start(Manager *m) {
        SupervisorActions a = {};
        char *extra[EXTRA_FLAGS_MAX] = {};
        size_t n_args = 0;
        int n_extra, r;

        r = state_dir_prepare(m, m->state_dir_configured);
        if (r < 0)
                return r;
        r = daemon_node_id_get(m->node_id_configured, m->state_dir, m->node_id);
        if (r < 0)
                return r;
        r = mesh_key_prepare(m);
        if (r < 0)
                return r;

        if (m->override_bus)
                log_warning("Ignoring the configured bus address: the daemons of this node use its private bus %s.",
                            m->bus_address);

        r = sockets_open(m);
        if (r < 0)
                return r;

        n_extra = manager_extra_flags(m, extra);
        if (n_extra < 0)
                return log_oom();
        while (m->daemon_args[1 + n_args])
                n_args++;
        for (size_t i = 0; i < m->n_daemons; i++) {
                m->daemon_argv[i] = daemon_argv_new(m->daemon_paths[i], m->daemon_args + 1, n_args, extra,
                                                    (size_t) n_extra);
                if (!m->daemon_argv[i])
                        break;
        }
        for (int i = 0; i < n_extra; i++)
                free(extra[i]);
        for (size_t i = 0; i < m->n_daemons; i++)
                if (!m->daemon_argv[i])
                        return log_oom();

        r = notify_socket_open(m);
        if (r < 0)
                return r;
        r = bus_start(m);
        if (r < 0) {
                manager_finish(m);
                return r;
        }

        log_info("Private bus at %s; starting %zu daemons.", m->bus_address, m->supervisor.n_units);
        supervisor_begin(&m->supervisor, now_usec(), &a);
        manager_run_actions(m, &a);
        return 0;
}

int manager_run(Manager *m) {
        if (!m->finished && event_base_dispatch(m->base) < 0) {
                log_error("The event loop failed.");
                manager_stop(m, 1);
        }
        if (!m->finished) {
                /* The loop ended without DONE (it should not): do not leave children behind. */
                for (size_t i = 0; i < m->supervisor.n_units; i++)
                        if (m->supervisor.units[i].pid > 0) {
                                (void) kill(m->supervisor.units[i].pid, SIGKILL);
                                (void) wait_pid_timeout(m->supervisor.units[i].pid, BUS_STOP_TIMEOUT_USEC);
                        }
                manager_finish(m);
                return 1;
        }
        return m->exit_status;
}
