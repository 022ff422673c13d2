/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-stream-bench: sends N streaming POST /api/generate requests (K at a time) and stamps
 * every NDJSON line as it arrives, to measure time-to-first-token and time-between-tokens. */

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Hard limits, so a misbehaving server cannot make the client grow without bound. */
#define MAX_REQUESTS 100000
#define MAX_CONCURRENCY 1024
#define MAX_LINES_PER_REQUEST 100000
#define HEADER_MAX 16384
#define LINE_KEEP 4096

typedef uint64_t usec_t;

static usec_t now_us(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (usec_t) ts.tv_sec * 1000000ULL + (usec_t) ts.tv_nsec / 1000ULL;
}

typedef enum BodyState {
        BODY_HEADERS,
        BODY_CHUNK_SIZE,        /* the hex size line of a chunk */
        BODY_CHUNK_DATA,
        BODY_CHUNK_CRLF,        /* the CRLF after a chunk's data */
        BODY_IDENTITY,          /* Content-Length, or until the server closes */
        BODY_DONE,
} BodyState;

typedef struct Stream {
        int fd;
        bool connecting;
        usec_t start;
        usec_t last_line;
        size_t sent;
        BodyState state;
        int status;
        int64_t remaining;      /* chunk bytes left, or Content-Length left (-1: until close) */
        size_t header_len;
        size_t sizeline_len;
        size_t line_len;
        size_t n_lines;
        bool got_done;
        bool got_error;
        char sizeline[32];
        char header[HEADER_MAX];
        char line[LINE_KEEP];
} Stream;

typedef struct Stats {
        usec_t *ttft;
        size_t n_ttft;
        usec_t *tbt;
        size_t n_tbt, tbt_cap;
        size_t ok, failed, lines;
} Stats;

static struct sockaddr_in target;
static char request[8192];
static size_t request_len;
static usec_t timeout_us = 30 * 1000000ULL;
static bool verbose;

static int cmp_usec(const void *a, const void *b) {
        usec_t x = *(const usec_t *) a, y = *(const usec_t *) b;

        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static usec_t percentile(const usec_t *v, size_t n, double p) {
        size_t rank;

        if (n == 0)
                return 0;
        rank = (size_t) (p / 100.0 * (double) n + 0.999999);
        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        return v[rank - 1];
}

static int tbt_push(Stats *s, usec_t v) {
        if (s->n_tbt == s->tbt_cap) {
                size_t cap = s->tbt_cap ? s->tbt_cap * 2 : 1024;
                usec_t *p = realloc(s->tbt, cap * sizeof(usec_t));

                if (!p)
                        return -ENOMEM;
                s->tbt = p;
                s->tbt_cap = cap;
        }
        s->tbt[s->n_tbt++] = v;
        return 0;
}

static int stream_start(Stream *st) {
        int fd, one = 1;

        memset(st, 0, offsetof(Stream, sizeline));
        st->remaining = -1;
        st->fd = -1;
        st->start = now_us();

        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, (struct sockaddr *) &target, sizeof(target)) < 0 && errno != EINPROGRESS) {
                int r = -errno;

                close(fd);
                return r;
        }
        st->fd = fd;
        st->connecting = true;
        return 0;
}

/* One complete NDJSON line arrived at time t. */
static int stream_line(Stream *st, Stats *stats, usec_t t) {
        size_t n = st->line_len < LINE_KEEP - 1 ? st->line_len : LINE_KEEP - 1;
        int r;

        bool final;

        st->line[n] = '\0';
        if (strstr(st->line, "\"error\""))
                st->got_error = true;
        final = strstr(st->line, "\"done\":true") || strstr(st->line, "\"done\": true");
        if (final)
                st->got_done = true;

        /* The final line (done:true, with the stats) follows the last token without a model
         * delay, so it is no token: it counts for neither TTFT nor TBT. */
        if (st->n_lines == 0 && !final)
                stats->ttft[stats->n_ttft++] = t - st->start;
        else if (!final) {
                r = tbt_push(stats, t - st->last_line);
                if (r < 0)
                        return r;
        }
        if (!final)
                st->last_line = t;
        stats->lines++;
        if (++st->n_lines > MAX_LINES_PER_REQUEST)
                return -E2BIG;
        return 0;
}

static int stream_body(Stream *st, Stats *stats, const char *p, size_t n, usec_t t) {
        for (size_t i = 0; i < n; i++) {
                if (p[i] == '\n') {
                        if (st->line_len > 0) {
                                int r = stream_line(st, stats, t);
                                if (r < 0)
                                        return r;
                        }
                        st->line_len = 0;
                        continue;
                }
                if (st->line_len < LINE_KEEP - 1)
                        st->line[st->line_len] = p[i];
                st->line_len++;
        }
        return 0;
}

/* Finds "name:" (lower case, at a line start) in the lower-cased header block; returns its value. */
static const char *header_value(const char *lower, const char *name) {
        size_t len = strlen(name);

        for (const char *p = strstr(lower, "\r\n"); p; p = strstr(p + 2, "\r\n"))
                if (strncmp(p + 2, name, len) == 0 && p[2 + len] == ':') {
                        p += 3 + len;
                        while (*p == ' ' || *p == '\t')
                                p++;
                        return p;
                }
        return NULL;
}

static int stream_parse_headers(Stream *st) {
        const char *v;

        st->header[st->header_len] = '\0';
        if (sscanf(st->header, "HTTP/1.%*d %d", &st->status) != 1)
                return -EBADMSG;
        for (char *c = st->header; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                        *c += 'a' - 'A';

        v = header_value(st->header, "transfer-encoding");
        if (v && strncmp(v, "chunked", 7) == 0) {
                st->state = BODY_CHUNK_SIZE;
                return 0;
        }
        st->state = BODY_IDENTITY;
        v = header_value(st->header, "content-length");
        if (v) {
                st->remaining = strtoll(v, NULL, 10);
                if (st->remaining < 0)
                        return -EBADMSG;
                if (st->remaining == 0)
                        st->state = BODY_DONE;
        }
        return 0;
}

/* Feeds bytes read from the socket at time t through the HTTP/1.1 response parser. */
static int stream_feed(Stream *st, Stats *stats, const char *p, size_t n, usec_t t) {
        int r;

        while (n > 0) {
                switch (st->state) {
                case BODY_HEADERS:
                        if (st->header_len >= HEADER_MAX - 1)
                                return -EBADMSG;
                        st->header[st->header_len++] = *p++;
                        n--;
                        if (st->header_len >= 4 && memcmp(st->header + st->header_len - 4, "\r\n\r\n", 4) == 0) {
                                r = stream_parse_headers(st);
                                if (r < 0)
                                        return r;
                        }
                        break;

                case BODY_CHUNK_SIZE: {
                        char c = *p++;

                        n--;
                        if (c == '\r')
                                break;
                        if (c != '\n') {
                                if (st->sizeline_len >= sizeof(st->sizeline) - 1)
                                        return -EBADMSG;
                                st->sizeline[st->sizeline_len++] = c;
                                break;
                        }
                        st->sizeline[st->sizeline_len] = '\0';
                        st->sizeline_len = 0;
                        st->remaining = strtoll(st->sizeline, NULL, 16);
                        if (st->remaining < 0)
                                return -EBADMSG;
                        st->state = st->remaining == 0 ? BODY_DONE : BODY_CHUNK_DATA;
                        break;
                }

                case BODY_CHUNK_DATA: {
                        size_t m = (size_t) st->remaining < n ? (size_t) st->remaining : n;

                        r = stream_body(st, stats, p, m, t);
                        if (r < 0)
                                return r;
                        p += m;
                        n -= m;
                        st->remaining -= (int64_t) m;
                        if (st->remaining == 0)
                                st->state = BODY_CHUNK_CRLF;
                        break;
                }

                case BODY_CHUNK_CRLF:
                        if (*p == '\n')
                                st->state = BODY_CHUNK_SIZE;
                        p++;
                        n--;
                        break;

                case BODY_IDENTITY: {
                        size_t m = st->remaining >= 0 && (size_t) st->remaining < n ? (size_t) st->remaining : n;

                        r = stream_body(st, stats, p, m, t);
                        if (r < 0)
                                return r;
                        p += m;
                        n -= m;
                        if (st->remaining >= 0) {
                                st->remaining -= (int64_t) m;
                                if (st->remaining == 0)
                                        st->state = BODY_DONE;
                        }
                        break;
                }

                case BODY_DONE:
                        return 0;
                }
        }
        return 0;
}

static void stream_finish(Stream *st, Stats *stats, const char *why) {
        bool ok = !why && st->status == 200 && st->got_done && !st->got_error && st->n_lines > 0;

        if (st->fd >= 0)
                close(st->fd);
        st->fd = -1;
        if (ok)
                stats->ok++;
        else {
                stats->failed++;
                if (verbose || stats->failed <= 3)
                        fprintf(stderr, "mycelia-stream-bench: request failed: %s (status %d, %zu lines, done=%d, error=%d)\n",
                                why ?: "bad response", st->status, st->n_lines, st->got_done, st->got_error);
        }
}

/* Handles poll results for one stream; returns true when the stream has finished. */
static bool stream_step(Stream *st, Stats *stats, short revents) {
        char buf[65536];
        int r;

        if (st->connecting) {
                int err = 0;
                socklen_t len = sizeof(err);

                if (!(revents & (POLLOUT | POLLERR | POLLHUP)))
                        return false;
                if (getsockopt(st->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
                        stream_finish(st, stats, "connect failed");
                        return true;
                }
                st->connecting = false;
        }

        while (st->sent < request_len) {
                ssize_t k = send(st->fd, request + st->sent, request_len - st->sent, MSG_NOSIGNAL);

                if (k < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return false;
                        stream_finish(st, stats, "send failed");
                        return true;
                }
                st->sent += (size_t) k;
        }

        if (!(revents & (POLLIN | POLLHUP | POLLERR)))
                return false;
        for (;;) {
                ssize_t k = recv(st->fd, buf, sizeof(buf), 0);
                usec_t t = now_us();

                if (k < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return false;
                        stream_finish(st, stats, "recv failed");
                        return true;
                }
                if (k == 0) {
                        /* A line without its '\n' at EOF still counts. */
                        if (st->line_len > 0 && st->state != BODY_HEADERS)
                                (void) stream_line(st, stats, t);
                        stream_finish(st, stats, st->state == BODY_IDENTITY && st->remaining < 0 ? NULL :
                                      st->state == BODY_DONE ? NULL : "connection closed early");
                        return true;
                }
                r = stream_feed(st, stats, buf, (size_t) k, t);
                if (r < 0) {
                        stream_finish(st, stats, "bad response");
                        return true;
                }
                if (st->state == BODY_DONE) {
                        stream_finish(st, stats, NULL);
                        return true;
                }
        }
}

/* Runs n requests, k at a time, collecting into stats. Bounded: every request times out. */
static int run(size_t n, size_t k, Stats *stats) {
        static Stream slots[MAX_CONCURRENCY];
        struct pollfd pfd[MAX_CONCURRENCY];
        size_t idx[MAX_CONCURRENCY];
        bool busy[MAX_CONCURRENCY] = {};
        size_t started = 0, finished = 0;

        memset(stats, 0, sizeof(*stats));
        stats->ttft = calloc(n ? n : 1, sizeof(usec_t));
        if (!stats->ttft)
                return -ENOMEM;

        while (finished < n) {
                size_t np = 0;
                usec_t t;
                int r;

                for (size_t i = 0; i < k && started < n; i++) {
                        if (busy[i])
                                continue;
                        started++;
                        r = stream_start(&slots[i]);
                        if (r < 0) {
                                stream_finish(&slots[i], stats, "socket/connect failed");
                                finished++;
                                continue;
                        }
                        busy[i] = true;
                }

                for (size_t i = 0; i < k; i++) {
                        if (!busy[i])
                                continue;
                        pfd[np].fd = slots[i].fd;
                        pfd[np].events = slots[i].connecting || slots[i].sent < request_len ? POLLOUT : POLLIN;
                        pfd[np].revents = 0;
                        idx[np++] = i;
                }
                if (np == 0)
                        continue;

                r = poll(pfd, np, 100);
                if (r < 0 && errno != EINTR)
                        return -errno;

                t = now_us();
                for (size_t j = 0; j < np; j++) {
                        Stream *st = &slots[idx[j]];
                        bool done = false;

                        if (pfd[j].revents)
                                done = stream_step(st, stats, pfd[j].revents);
                        if (!done && t - st->start > timeout_us) {
                                stream_finish(st, stats, "timed out");
                                done = true;
                        }
                        if (done) {
                                busy[idx[j]] = false;
                                finished++;
                        }
                }
        }
        return 0;
}

static int parse_url(const char *url, char *hostport, size_t size) {
        char host[64];
        unsigned port;
        const char *p;

        if (strncmp(url, "http://", 7) != 0)
                return -EINVAL;
        p = url + 7;
        if (sscanf(p, "%63[0-9.]:%u", host, &port) != 2 || port == 0 || port > 65535)
                return -EINVAL;
        memset(&target, 0, sizeof(target));
        target.sin_family = AF_INET;
        target.sin_port = htons((uint16_t) port);
        if (inet_pton(AF_INET, host, &target.sin_addr) != 1)
                return -EINVAL;
        snprintf(hostport, size, "%s:%u", host, port);
        return 0;
}

static void help(void) {
        printf("mycelia-stream-bench --url http://127.0.0.1:PORT [options]\n"
               "Sends streaming POST /api/generate requests and measures time-to-first-token (TTFT)\n"
               "and time-between-tokens (TBT) from the arrival time of each NDJSON line.\n\n"
               "  --url URL           server (numeric IPv4 address and port)\n"
               "  --requests N        measured requests (default 100)\n"
               "  --concurrency K     requests in flight at once (default 1)\n"
               "  --warmup N          requests sent first, one at a time, not measured (default 5)\n"
               "  --model NAME        model (default llama3.2)\n"
               "  --prompt TEXT       prompt (default \"Why is the sky blue?\")\n"
               "  --path PATH         request path (default /api/generate)\n"
               "  --timeout-ms MS     per-request timeout (default 30000)\n"
               "  --verbose           print every failure\n"
               "Prints one line: BENCH key=value ... (times in microseconds). Exit 1 if any request failed.\n");
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "url", required_argument, NULL, 'u' },
                { "requests", required_argument, NULL, 'n' },
                { "concurrency", required_argument, NULL, 'c' },
                { "warmup", required_argument, NULL, 'w' },
                { "model", required_argument, NULL, 'm' },
                { "prompt", required_argument, NULL, 'p' },
                { "path", required_argument, NULL, 'P' },
                { "timeout-ms", required_argument, NULL, 't' },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        const char *url = NULL, *model = "llama3.2", *prompt = "Why is the sky blue?", *path = "/api/generate";
        unsigned long n = 100, k = 1, warmup = 5;
        char hostport[96], body[4096];
        Stats warm, stats;
        usec_t t0, wall;
        int c, r, len;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'u': url = optarg; break;
                case 'n': n = strtoul(optarg, NULL, 10); break;
                case 'c': k = strtoul(optarg, NULL, 10); break;
                case 'w': warmup = strtoul(optarg, NULL, 10); break;
                case 'm': model = optarg; break;
                case 'p': prompt = optarg; break;
                case 'P': path = optarg; break;
                case 't': timeout_us = strtoull(optarg, NULL, 10) * 1000ULL; break;
                case 'v': verbose = true; break;
                case 'h': help(); return 0;
                default: return 2;
                }

        if (!url || parse_url(url, hostport, sizeof(hostport)) < 0) {
                fprintf(stderr, "mycelia-stream-bench: --url http://IPV4:PORT is required\n");
                return 2;
        }
        if (n < 1 || n > MAX_REQUESTS || k < 1 || k > MAX_CONCURRENCY || warmup > MAX_REQUESTS || timeout_us == 0) {
                fprintf(stderr, "mycelia-stream-bench: --requests 1..%d, --concurrency 1..%d\n", MAX_REQUESTS, MAX_CONCURRENCY);
                return 2;
        }
        if (strpbrk(model, "\"\\") || strpbrk(prompt, "\"\\")) {
                fprintf(stderr, "mycelia-stream-bench: model and prompt must not contain quotes or backslashes\n");
                return 2;
        }

        len = snprintf(body, sizeof(body), "{\"model\":\"%s\",\"prompt\":\"%s\",\"stream\":true}", model, prompt);
        if (len < 0 || (size_t) len >= sizeof(body))
                return 2;
        r = snprintf(request, sizeof(request),
                     "POST %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "User-Agent: mycelia-stream-bench\r\n"
                     "Content-Type: application/json\r\n"
                     "Accept: application/x-ndjson\r\n"
                     "Content-Length: %d\r\n"
                     "Connection: close\r\n"
                     "\r\n%s",
                     path, hostport, len, body);
        if (r < 0 || (size_t) r >= sizeof(request))
                return 2;
        request_len = (size_t) r;

        if (warmup > 0) {
                r = run(warmup, 1, &warm);
                if (r < 0) {
                        fprintf(stderr, "mycelia-stream-bench: %s\n", strerror(-r));
                        return 1;
                }
                free(warm.ttft);
                free(warm.tbt);
        }

        t0 = now_us();
        r = run(n, k, &stats);
        wall = now_us() - t0;
        if (r < 0) {
                fprintf(stderr, "mycelia-stream-bench: %s\n", strerror(-r));
                return 1;
        }

        qsort(stats.ttft, stats.n_ttft, sizeof(usec_t), cmp_usec);
        qsort(stats.tbt, stats.n_tbt, sizeof(usec_t), cmp_usec);
        printf("BENCH requests=%lu concurrency=%lu ok=%zu failed=%zu lines=%zu "
               "ttft_p50_us=%llu ttft_p99_us=%llu tbt_p50_us=%llu tbt_p99_us=%llu "
               "tbt_min_us=%llu tbt_max_us=%llu wall_s=%.3f\n",
               n, k, stats.ok, stats.failed, stats.lines,
               (unsigned long long) percentile(stats.ttft, stats.n_ttft, 50),
               (unsigned long long) percentile(stats.ttft, stats.n_ttft, 99),
               (unsigned long long) percentile(stats.tbt, stats.n_tbt, 50),
               (unsigned long long) percentile(stats.tbt, stats.n_tbt, 99),
               (unsigned long long) (stats.n_tbt ? stats.tbt[0] : 0),
               (unsigned long long) (stats.n_tbt ? stats.tbt[stats.n_tbt - 1] : 0),
               (double) wall / 1e6);
        free(stats.ttft);
        free(stats.tbt);
        return stats.failed > 0 ? 1 : 0;
}
