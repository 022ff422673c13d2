/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Ollama test double: deterministic text, not a language model. An evhttp server that speaks
 * Ollama's HTTP API (native and OpenAI) in its wire format, with queueing and injectable faults. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <json-c/json.h>
#include <sodium.h>

#include "double-cache.h"
#include "double-text.h"

#define DOUBLE_MAX_BODY ((ev_ssize_t) 64 * 1024 * 1024)
#define DOUBLE_MAX_HEADERS ((ev_ssize_t) 64 * 1024)
#define DOUBLE_MAX_MODELS 1024u
#define DOUBLE_MAX_BLOBS 64u
#define DOUBLE_MAX_JOBS 65536u
#define DOUBLE_NUM_CTX 4096
/* Go's net/http server has no timeouts by default; a day is "never" for a test. */
#define DOUBLE_HTTP_TIMEOUT_SEC (24 * 3600)

#define DOUBLE_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
#define DOUBLE_CT_JSON "application/json; charset=utf-8"
#define DOUBLE_CT_NDJSON "application/x-ndjson"
#define DOUBLE_CT_SSE "text/event-stream"
#define DOUBLE_CT_TEXT "text/plain; charset=utf-8"

#define DOUBLE_ERR_MAX_QUEUE "server busy, please try again.  maximum pending requests exceeded"

typedef struct Double Double;
typedef struct Model Model;
typedef struct Job Job;

typedef enum JobKind {
        JOB_GENERATE,
        JOB_CHAT,
        JOB_EMBED,
        JOB_EMBEDDINGS,
        JOB_OAI_CHAT,
        JOB_OAI_COMPLETION,
        JOB_OAI_EMBED,
        JOB_PROGRESS,   /* pull, push, create: status lines, no scheduler slot */
        JOB_STALL,
} JobKind;

typedef enum JobState {
        JOB_NEW,
        JOB_QUEUED,
        JOB_RUNNING,
        JOB_STALLED,
        JOB_ABORTING,   /* fail_after_tokens hit: the connection is about to be dropped */
} JobState;

struct Model {
        TAILQ_ENTRY(Model) link;
        char *name;             /* canonical: "llama3.2:latest" */
        char digest[65];
        int64_t size;
        int64_t modified_ns;    /* realtime */
        bool present;           /* false once deleted; kept while jobs may point at it */
        bool loaded;
        bool loaded_forever;    /* keep_alive < 0 */
        int64_t expires_ns;     /* realtime; meaningful while loaded */
        unsigned active;
        TAILQ_HEAD(, Job) queue;
};

struct Job {
        Double *d;
        TAILQ_ENTRY(Job) link;
        TAILQ_ENTRY(Job) qlink;
        struct evhttp_request *req;
        struct evhttp_connection *evcon;
        struct event *timer;
        struct event *watch;
        JobKind kind;
        JobState state;
        Model *model;
        char *echo_model;       /* the name as the client spelled it; responses echo it */
        bool stream;
        bool base64;            /* /v1/embeddings with encoding_format "base64" */
        bool holds_slot;
        bool reply_started;
        bool load_only;
        bool include_usage;
        bool keep_alive_set;
        int64_t keep_alive_ns;

        DoubleTextGen gen;
        uint64_t seed;
        unsigned skip;          /* tokens of the answer the request brought along (continuation) */
        unsigned n_tokens;      /* tokens to send in this response, after the skipped ones */
        unsigned emitted;
        unsigned fail_after;
        unsigned prompt_tokens;
        const char *done_reason;
        int64_t t_arrival, t_start, t_first, t_last;    /* monotonic ns */
        struct evbuffer *text;  /* non-streamed text so far */
        uint32_t *context;
        size_t n_context;
        bool want_context;

        /* The prompt cache: the rendered prompt until the job takes a slot, then its lease. */
        char *render;
        size_t render_len;
        bool has_lease;
        bool prefilled;         /* the prefill wait is over: the slot holds the prompt */
        DoubleCacheLease lease;

        json_object *inputs;    /* embed: array of strings */
        unsigned dims;
        char id[32];

        /* JOB_PROGRESS */
        char **lines;
        size_t n_lines;
        size_t next_line;
        char *error;            /* ends the progress stream with {"error":...} */
        char *add_models[2];    /* [1], the base of a create, is added before [0] */
};

struct Double {
        struct event_base *base;
        struct evhttp *http;
        struct event *sigterm;
        struct event *sigint;
        struct event *kick;
        char *listen_host;
        uint16_t listen_port;
        bool loopback;
        bool host_check;
        bool verbose;
        char hostname[256];
        char *version;
        unsigned natural_tokens, default_natural_tokens;
        unsigned num_parallel;
        unsigned max_queue;

        unsigned token_delay_ms, default_token_delay_ms;
        double prefill_us_per_byte, default_prefill_us_per_byte;
        double embed_us_per_input, default_embed_us_per_input;
        DoubleCachePolicy cache_policy;
        DoubleCache *cache;
        unsigned fail_after_tokens;
        int fail_status;
        bool stall;
        bool stall_all;

        uint64_t requests, completed, cancelled, failed, connections;
        uint64_t cache_hits, cache_hit_bytes, prefill_bytes, embed_inputs;
        unsigned active, queued, stalled, n_jobs;
        char *last_host;
        char *last_path;

        TAILQ_HEAD(ModelList, Model) models;
        unsigned n_models;
        TAILQ_HEAD(, Job) jobs;
        uint8_t blobs[DOUBLE_MAX_BLOBS][32];
        unsigned n_blobs, blob_next;
        uint64_t next_id;
        bool shutting_down;
};

static int64_t now_mono_ns(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_real_ns(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void double_log(Double *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void double_log(Double *d, const char *fmt, ...) {
        va_list ap;

        if (!d->verbose)
                return;
        va_start(ap, fmt);
        fputs("ollama-double: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
}

static json_object *json_time_parts(int64_t sec, long nsec) {
        char buf[64];

        if (double_text_format_rfc3339nano(sec, nsec, buf, sizeof(buf)) < 0)
                buf[0] = '\0';
        return json_object_new_string(buf);
}

static json_object *json_time(int64_t real_ns) {
        if (real_ns < 0)
                real_ns = 0;
        return json_time_parts(real_ns / 1000000000, (long) (real_ns % 1000000000));
}

static json_object *json_now(void) {
        return json_time(now_real_ns());
}

static void json_add(json_object *o, const char *key, json_object *v) {
        (void) json_object_object_add(o, key, v);
}

static void json_add_str(json_object *o, const char *key, const char *s) {
        json_add(o, key, json_object_new_string(s ?: ""));
}

static void json_add_int(json_object *o, const char *key, int64_t v) {
        json_add(o, key, json_object_new_int64(v));
}

/* Ollama's Metrics are omitempty: zero values do not appear. */
static void json_add_int_nonzero(json_object *o, const char *key, int64_t v) {
        if (v != 0)
                json_add_int(o, key, v);
}

static int evbuffer_add_json(struct evbuffer *b, json_object *o, const char *prefix, const char *suffix) {
        size_t len;
        const char *s = json_object_to_json_string_length(o, DOUBLE_JSON_FLAGS, &len);

        if (!s)
                return -ENOMEM;
        if ((prefix && evbuffer_add(b, prefix, strlen(prefix)) < 0) || evbuffer_add(b, s, len) < 0 ||
            (suffix && evbuffer_add(b, suffix, strlen(suffix)) < 0))
                return -ENOMEM;
        return 0;
}

static void evbuffer_freep(struct evbuffer **b) {
        if (*b)
                evbuffer_free(*b);
}
#define _cleanup_evbuffer_ _cleanup_(evbuffer_freep)

/* evhttp leaves Content-Length out of HEAD replies; Go's server states the length it would send.
 * libevent 2.1 also writes the body after a HEAD reply, which corrupts a kept-alive connection:
 * drop it here, so the next response on the connection starts where the client expects it. */
static void reply_head_length(struct evhttp_request *req, struct evbuffer *body) {
        char n[32];

        if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
                return;
        (void) snprintf(n, sizeof(n), "%zu", body ? evbuffer_get_length(body) : 0);
        (void) evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Length", n);
        if (body)
                (void) evbuffer_drain(body, evbuffer_get_length(body));
}

static void reply_raw(struct evhttp_request *req, int code, const char *content_type, const void *body,
                      size_t len) {
        _cleanup_evbuffer_ struct evbuffer *b = evbuffer_new();

        if (content_type)
                (void) evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
        if (b && len > 0)
                (void) evbuffer_add(b, body, len);
        reply_head_length(req, b);
        evhttp_send_reply(req, code, NULL, b);
}

static void reply_json_ct(struct evhttp_request *req, int code, const char *content_type, json_object *o,
                          const char *suffix) {
        _cleanup_evbuffer_ struct evbuffer *b = evbuffer_new();

        (void) evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
        if (b)
                (void) evbuffer_add_json(b, o, NULL, suffix);
        reply_head_length(req, b);
        evhttp_send_reply(req, code, NULL, b);
}

/* gin's c.JSON */
static void reply_json(struct evhttp_request *req, int code, json_object *o) {
        reply_json_ct(req, code, DOUBLE_CT_JSON, o, NULL);
}

static void reply_error(struct evhttp_request *req, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reply_error(struct evhttp_request *req, int code, const char *fmt, ...) {
        _cleanup_json_ json_object *o = json_object_new_object();
        _cleanup_dfree_ char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        json_add_str(o, "error", msg ?: "out of memory");
        reply_json(req, code, o);
}

/* openai.NewError: the middleware's own checks say invalid_request_error; errors coming back from
 * the native handler went through writeError, which (v0.5/v0.6) always says api_error. */
static void reply_oai_error(struct evhttp_request *req, int code, const char *type, const char *msg) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *e = json_object_new_object();

        json_add_str(e, "message", msg);
        json_add_str(e, "type", type);
        json_add(e, "param", NULL);
        json_add(e, "code", NULL);
        json_add(o, "error", e);
        reply_json_ct(req, code, "application/json", o, "\n");
}

/* ---- models ---------------------------------------------------------------------------- */

static Model *model_free(Model *m) {
        if (!m)
                return NULL;
        free(m->name);
        free(m);
        return NULL;
}

static Model *double_find_model(Double *d, const char *name) {
        _cleanup_dfree_ char *norm = NULL;
        Model *m;

        if (!name || double_text_model_normalize(name, &norm) < 0)
                return NULL;
        TAILQ_FOREACH(m, &d->models, link)
                if (m->present && strcasecmp(m->name, norm) == 0)
                        return m;
        return NULL;
}

/* Adds (or revives) a model; -ENOSPC past DOUBLE_MAX_MODELS. */
static int double_add_model(Double *d, const char *name, Model **ret) {
        _cleanup_dfree_ char *norm = NULL;
        uint8_t h[crypto_hash_sha256_BYTES];
        Model *m;
        int r;

        r = double_text_model_normalize(name, &norm);
        if (r < 0)
                return r;

        TAILQ_FOREACH(m, &d->models, link)
                if (strcasecmp(m->name, norm) == 0)
                        break;
        if (!m) {
                if (d->n_models >= DOUBLE_MAX_MODELS)
                        return -ENOSPC;
                m = calloc(1, sizeof(*m));
                if (!m)
                        return -ENOMEM;
                m->name = TAKE_PTR(norm);
                TAILQ_INIT(&m->queue);
                TAILQ_INSERT_TAIL(&d->models, m, link);
                d->n_models++;
        }

        (void) crypto_hash_sha256(h, (const unsigned char *) m->name, strlen(m->name));
        double_text_hex(h, sizeof(h), m->digest);
        if (double_text_model_is_embedding(m->name))
                m->size = 45000000 + (int64_t) (h[0] << 8 | h[1]) * 100;
        else
                m->size = 1000000000 + (int64_t) ((uint32_t) h[2] << 16 | h[3] << 8 | h[4]) * 32;
        m->present = true;
        m->modified_ns = now_real_ns();
        if (ret)
                *ret = m;
        return 0;
}

static bool model_is_embedding(const Model *m) {
        return double_text_model_is_embedding(m->name);
}

static json_object *model_details(const Model *m) {
        json_object *o = json_object_new_object(), *fam = json_object_new_array();
        bool embed = model_is_embedding(m);

        json_add_str(o, "parent_model", "");
        json_add_str(o, "format", "gguf");
        json_add_str(o, "family", embed ? "bert" : "llama");
        (void) json_object_array_add(fam, json_object_new_string(embed ? "bert" : "llama"));
        json_add(o, "families", fam);
        json_add_str(o, "parameter_size", embed ? "23M" : "1B");
        json_add_str(o, "quantization_level", embed ? "F16" : "Q4_0");
        return o;
}

/* An unloaded runner takes its prompt cache with it. */
static void model_unload(Double *d, Model *m) {
        m->loaded = false;
        m->loaded_forever = false;
        double_cache_drop_model(d->cache, m->name);
}

static void model_touch(Double *d, Model *m, bool keep_alive_set, int64_t keep_alive_ns) {
        int64_t now = now_real_ns();
        int64_t ka = keep_alive_set ? keep_alive_ns : DOUBLE_TEXT_DEFAULT_KEEP_ALIVE_NS;

        if (ka == 0) {
                model_unload(d, m);
                return;
        }
        m->loaded = true;
        m->loaded_forever = ka >= INT64_MAX - now;
        m->expires_ns = m->loaded_forever ? INT64_MAX : now + ka;
}

static bool model_is_loaded(Double *d, Model *m) {
        if (m->loaded && m->active == 0 && !m->loaded_forever && m->expires_ns <= now_real_ns())
                model_unload(d, m);
        return m->present && (m->loaded || m->active > 0);
}

/* ---- jobs ------------------------------------------------------------------------------ */

static void double_kick(Double *d) {
        if (!d->shutting_down)
                event_active(d->kick, 0, 0);
}

static void job_on_close(struct evhttp_connection *evcon, void *userdata);

/* ---- prompt cache ------------------------------------------------------------------------ */

/* Takes the model's best cache slot for the job's rendered prompt; returns the microseconds of
 * prefill the part not cached costs. Without a slot (the cache is full of models) it all costs. */
static uint64_t job_acquire_slot(Job *j) {
        Double *d = j->d;
        size_t prefill = j->render_len;

        if (!j->render)
                return 0;
        if (double_cache_acquire(d->cache, j->model->name, j->render, j->render_len, &j->lease) >= 0) {
                j->has_lease = true;
                prefill = j->lease.prefill_bytes;
                d->cache_hits += j->lease.hit_bytes > 0;
                d->cache_hit_bytes += j->lease.hit_bytes;
        }
        d->prefill_bytes += prefill;
        free(j->render);
        j->render = NULL;
        return (uint64_t) ((double) prefill * d->prefill_us_per_byte + 0.5);
}

/* Gives the slot back holding the prompt and the tokens sent, regenerated from the seed, as the
 * runner's slot keeps what it evaluated and sampled. A continuation's skipped tokens are already
 * in its rendered prompt (an open assistant message, or a raw prompt's tail), so only the tokens
 * sent follow: the slot ends as the uninterrupted request's would. */
static void job_release_slot(Job *j) {
        _cleanup_evbuffer_ struct evbuffer *b = NULL;
        char tok[DOUBLE_TEXT_TOKEN_MAX];
        DoubleTextGen g;
        int l;

        if (!j->has_lease)
                return;
        j->has_lease = false;
        b = j->prefilled ? evbuffer_new() : NULL;
        if (b) {
                double_text_gen_init_at(&g, j->seed, j->skip + j->n_tokens, j->skip);
                for (unsigned i = 0; i < j->emitted && evbuffer_get_length(b) < DOUBLE_CACHE_MAX_PREFIX; i++) {
                        l = double_text_gen_next(&g, tok, sizeof(tok));
                        if (l <= 0 || evbuffer_add(b, tok, (size_t) l) < 0)
                                break;
                }
        }
        (void) double_cache_release(j->d->cache, &j->lease, j->prefilled,
                                    b ? (const char *) evbuffer_pullup(b, -1) : NULL, b ? evbuffer_get_length(b) : 0);
}

static Job *job_free(Job *j) {
        Double *d;

        if (!j)
                return NULL;
        d = j->d;

        if (j->state == JOB_QUEUED) {
                TAILQ_REMOVE(&j->model->queue, j, qlink);
                d->queued--;
        }
        if (j->state == JOB_STALLED)
                d->stalled--;
        /* Before model_touch: a keep_alive of 0 unloads the model, and its cache with it. */
        job_release_slot(j);
        if (j->holds_slot) {
                /* However it ended, the model stays loaded for the request's keep_alive. */
                model_touch(d, j->model, j->keep_alive_set, j->keep_alive_ns);
                j->model->active--;
                d->active--;
                double_kick(d);
        }
        TAILQ_REMOVE(&d->jobs, j, link);
        d->n_jobs--;
        if (j->evcon)
                evhttp_connection_set_closecb(j->evcon, NULL, NULL);
        if (j->timer)
                event_free(j->timer);
        if (j->watch)
                event_free(j->watch);
        if (j->text)
                evbuffer_free(j->text);
        if (j->inputs)
                (void) json_object_put(j->inputs);
        for (size_t i = 0; i < j->n_lines; i++)
                free(j->lines[i]);
        free(j->lines);
        free(j->error);
        free(j->add_models[0]);
        free(j->add_models[1]);
        free(j->context);
        free(j->echo_model);
        free(j->render);
        free(j);
        return NULL;
}

static void job_step(evutil_socket_t fd, short what, void *userdata);

/* Peeks at the socket while a request is being served: libevent only notices a vanished client
 * on the next write, and queued or stalled requests never write. */
static void job_watch(evutil_socket_t fd, short what, void *userdata) {
        Job *j = userdata;
        char c;
        ssize_t n;

        n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0) {
                /* A pipelined request: we cannot look past it, stop watching. */
                (void) event_del(j->watch);
                return;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                return;

        /* EOF or reset: the client went away. Freeing the connection calls job_on_close. */
        evhttp_connection_free(j->evcon);
}

static int job_new(Double *d, struct evhttp_request *req, JobKind kind, Job **ret) {
        struct bufferevent *bev;
        Job *j;

        if (d->n_jobs >= DOUBLE_MAX_JOBS)
                return -ENOSPC;
        j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        j->d = d;
        j->req = req;
        j->kind = kind;
        j->evcon = evhttp_request_get_connection(req);
        j->t_arrival = now_mono_ns();
        j->done_reason = "stop";
        j->stream = true;
        TAILQ_INSERT_TAIL(&d->jobs, j, link);
        d->n_jobs++;

        j->timer = evtimer_new(d->base, job_step, j);
        if (!j->timer) {
                job_free(j);
                return -ENOMEM;
        }
        if (j->evcon) {
                evhttp_connection_set_closecb(j->evcon, job_on_close, j);
                bev = evhttp_connection_get_bufferevent(j->evcon);
                if (bev && bufferevent_getfd(bev) >= 0) {
                        j->watch = event_new(d->base, bufferevent_getfd(bev), EV_READ | EV_PERSIST, job_watch, j);
                        if (j->watch)
                                (void) event_add(j->watch, NULL);
                }
        }
        *ret = j;
        return 0;
}

static void job_on_close(struct evhttp_connection *evcon, void *userdata) {
        Job *j = userdata;
        Double *d = j->d;
        struct evhttp_request *req = j->req;

        if (j->state == JOB_ABORTING) {
                d->failed++;
                double_log(d, "dropped the connection after %u tokens", j->emitted);
        } else {
                d->cancelled++;
                double_log(d, "client went away");
        }

        j->evcon = NULL;
        job_free(j);

        /* libevent detaches a request whose client vanished mid-reply; it is ours to free. A
         * request still attached is freed with the connection. */
        if (req && !evhttp_request_get_connection(req))
                evhttp_request_free(req);
}

static void job_arm_us(Job *j, uint64_t delay_us) {
        struct timeval tv = {
                .tv_sec = (time_t) (delay_us / 1000000),
                .tv_usec = (suseconds_t) (delay_us % 1000000),
        };

        (void) evtimer_add(j->timer, &tv);
}

static void job_arm(Job *j, unsigned delay_ms) {
        job_arm_us(j, (uint64_t) delay_ms * 1000);
}

/* The reply is done: counts it and frees the job. */
static void job_complete(Job *j) {
        j->d->completed++;
        job_free(j);
}

static void job_reply_json(Job *j, int code, const char *content_type, json_object *o, const char *suffix) {
        if (j->evcon)
                evhttp_connection_set_closecb(j->evcon, NULL, NULL);
        reply_json_ct(j->req, code, content_type, o, suffix);
        job_complete(j);
}

static void job_flushed(struct evhttp_connection *evcon, void *userdata) {
        Job *j = userdata;

        if (j->state == JOB_ABORTING)
                job_arm(j, 0);
        else
                job_arm(j, j->d->token_delay_ms);
}

/* Sends one chunk of a streamed reply; the next step is armed once it has reached the kernel,
 * so a slow reader holds the stream back instead of growing our buffers. */
static void job_send_chunk(Job *j, struct evbuffer *b, const char *content_type, bool then_step) {
        if (!j->reply_started) {
                (void) evhttp_add_header(evhttp_request_get_output_headers(j->req), "Content-Type", content_type);
                evhttp_send_reply_start(j->req, 200, "OK");
                j->reply_started = true;
        }
        if (then_step)
                evhttp_send_reply_chunk_with_cb(j->req, b, job_flushed, j);
        else
                evhttp_send_reply_chunk(j->req, b);
}

static void job_end_stream(Job *j) {
        if (j->evcon)
                evhttp_connection_set_closecb(j->evcon, NULL, NULL);
        evhttp_send_reply_end(j->req);
        job_complete(j);
}

/* ---- inference replies ------------------------------------------------------------------ */

static const char *job_content_type(const Job *j) {
        if (j->kind == JOB_OAI_CHAT || j->kind == JOB_OAI_COMPLETION)
                return j->stream ? DOUBLE_CT_SSE : "application/json";
        return j->stream ? DOUBLE_CT_NDJSON : DOUBLE_CT_JSON;
}

static json_object *oai_usage(const Job *j) {
        json_object *u = json_object_new_object();

        json_add_int(u, "prompt_tokens", j->prompt_tokens);
        json_add_int(u, "completion_tokens", j->emitted);
        json_add_int(u, "total_tokens", (int64_t) j->prompt_tokens + j->emitted);
        return u;
}

static json_object *oai_chunk(const Job *j, const char *content, const char *finish_reason) {
        json_object *o = json_object_new_object(), *choices = json_object_new_array(),
                    *c = json_object_new_object();

        json_add_str(o, "id", j->id);
        if (j->kind == JOB_OAI_CHAT) {
                json_object *delta = json_object_new_object();

                json_add_str(o, "object", "chat.completion.chunk");
                json_add_int(o, "created", now_real_ns() / 1000000000);
                json_add_str(o, "model", j->echo_model);
                json_add_str(o, "system_fingerprint", "fp_ollama");
                json_add_int(c, "index", 0);
                json_add_str(delta, "role", "assistant");
                json_add_str(delta, "content", content);
                json_add(c, "delta", delta);
                json_add(c, "finish_reason", finish_reason ? json_object_new_string(finish_reason) : NULL);
                (void) json_object_array_add(choices, c);
                json_add(o, "choices", choices);
        } else {
                json_add_str(o, "object", "text_completion");
                json_add_int(o, "created", now_real_ns() / 1000000000);
                json_add_str(c, "text", content);
                json_add_int(c, "index", 0);
                json_add(c, "finish_reason", finish_reason ? json_object_new_string(finish_reason) : NULL);
                (void) json_object_array_add(choices, c);
                json_add(o, "choices", choices);
                json_add_str(o, "model", j->echo_model);
                json_add_str(o, "system_fingerprint", "fp_ollama");
        }
        return o;
}

static json_object *native_chunk(const Job *j, const char *content, bool done) {
        json_object *o = json_object_new_object();

        json_add_str(o, "model", j->echo_model);
        json_add(o, "created_at", json_now());
        if (j->kind == JOB_GENERATE) {
                json_add_str(o, "response", content);
                json_add(o, "done", json_object_new_boolean(done));
                if (done)
                        json_add_str(o, "done_reason", j->done_reason);
        } else {
                json_object *msg = json_object_new_object();

                json_add_str(msg, "role", "assistant");
                json_add_str(msg, "content", content);
                json_add(o, "message", msg);
                if (done)
                        json_add_str(o, "done_reason", j->done_reason);
                json_add(o, "done", json_object_new_boolean(done));
        }
        return o;
}

static void job_add_metrics(const Job *j, json_object *o) {
        int64_t now = now_mono_ns();
        int64_t first = j->t_first ?: now, last = j->t_last ?: now;

        if (j->kind == JOB_GENERATE && j->want_context && j->n_context > 0) {
                json_object *ctx = json_object_new_array_ext((int) j->n_context);

                for (size_t i = 0; i < j->n_context; i++)
                        (void) json_object_array_add(ctx, json_object_new_int64(j->context[i]));
                json_add(o, "context", ctx);
        }
        json_add_int(o, "total_duration", now - j->t_arrival > 0 ? now - j->t_arrival : 1);
        json_add_int(o, "load_duration", j->t_start - j->t_arrival > 0 ? j->t_start - j->t_arrival : 1);
        json_add_int_nonzero(o, "prompt_eval_count", j->prompt_tokens);
        json_add_int(o, "prompt_eval_duration", first - j->t_start > 0 ? first - j->t_start : 1);
        json_add_int_nonzero(o, "eval_count", j->emitted);
        json_add_int(o, "eval_duration", last - first > 0 ? last - first : 1);
}

static void job_finish_generation(Job *j) {
        _cleanup_evbuffer_ struct evbuffer *b = evbuffer_new();
        _cleanup_json_ json_object *o = NULL;
        _cleanup_dfree_ char *text = NULL;
        size_t len;

        if (!b) {
                job_end_stream(j);
                return;
        }

        if (j->kind == JOB_OAI_CHAT || j->kind == JOB_OAI_COMPLETION) {
                if (j->stream) {
                        o = oai_chunk(j, "", j->done_reason);
                        (void) evbuffer_add_json(b, o, "data: ", "\n\n");
                        if (j->include_usage) {
                                json_object_put(o);
                                o = oai_chunk(j, "", NULL);
                                json_add(o, "choices", json_object_new_array());
                                json_add(o, "usage", oai_usage(j));
                                (void) evbuffer_add_json(b, o, "data: ", "\n\n");
                        }
                        (void) evbuffer_add(b, "data: [DONE]\n\n", 14);
                        job_send_chunk(j, b, DOUBLE_CT_SSE, false);
                        job_end_stream(j);
                        return;
                }

                len = j->text ? evbuffer_get_length(j->text) : 0;
                text = strndup(len > 0 ? (const char *) evbuffer_pullup(j->text, -1) : "", len);
                o = json_object_new_object();
                json_add_str(o, "id", j->id);
                json_add_str(o, "object", j->kind == JOB_OAI_CHAT ? "chat.completion" : "text_completion");
                json_add_int(o, "created", now_real_ns() / 1000000000);
                json_add_str(o, "model", j->echo_model);
                json_add_str(o, "system_fingerprint", "fp_ollama");
                {
                        json_object *choices = json_object_new_array(), *c = json_object_new_object();

                        if (j->kind == JOB_OAI_CHAT) {
                                json_object *msg = json_object_new_object();

                                json_add_int(c, "index", 0);
                                json_add_str(msg, "role", "assistant");
                                json_add_str(msg, "content", text);
                                json_add(c, "message", msg);
                        } else {
                                json_add_str(c, "text", text);
                                json_add_int(c, "index", 0);
                        }
                        json_add_str(c, "finish_reason", j->done_reason);
                        (void) json_object_array_add(choices, c);
                        json_add(o, "choices", choices);
                }
                json_add(o, "usage", oai_usage(j));
                job_reply_json(j, 200, "application/json", o, "\n");
                return;
        }

        if (j->stream) {
                o = native_chunk(j, "", true);
                job_add_metrics(j, o);
                (void) evbuffer_add_json(b, o, NULL, "\n");
                job_send_chunk(j, b, DOUBLE_CT_NDJSON, false);
                job_end_stream(j);
                return;
        }

        len = j->text ? evbuffer_get_length(j->text) : 0;
        text = strndup(len > 0 ? (const char *) evbuffer_pullup(j->text, -1) : "", len);
        o = native_chunk(j, text ?: "", true);
        job_add_metrics(j, o);
        job_reply_json(j, 200, DOUBLE_CT_JSON, o, NULL);
}

/* The model was only loaded (or the request asked for nothing): Ollama answers with one plain
 * JSON object even when streaming was asked for. */
static void job_finish_load(Job *j) {
        _cleanup_json_ json_object *o = NULL;

        if (j->kind == JOB_OAI_COMPLETION) {
                _cleanup_evbuffer_ struct evbuffer *b = evbuffer_new();

                j->done_reason = "load";
                if (!j->stream || !b) {
                        job_finish_generation(j);
                        return;
                }
                o = oai_chunk(j, "", "load");
                (void) evbuffer_add_json(b, o, "data: ", "\n\n");
                (void) evbuffer_add(b, "data: [DONE]\n\n", 14);
                job_send_chunk(j, b, DOUBLE_CT_SSE, false);
                job_end_stream(j);
                return;
        }

        o = json_object_new_object();
        json_add_str(o, "model", j->echo_model);
        json_add(o, "created_at", json_now());
        if (j->kind == JOB_GENERATE) {
                json_add_str(o, "response", "");
                json_add(o, "done", json_object_new_boolean(true));
                json_add_str(o, "done_reason", "load");
        } else {
                json_object *msg = json_object_new_object();

                json_add_str(msg, "role", "assistant");
                json_add_str(msg, "content", "");
                json_add(o, "message", msg);
                json_add_str(o, "done_reason", "load");
                json_add(o, "done", json_object_new_boolean(true));
        }
        job_reply_json(j, 200, DOUBLE_CT_JSON, o, NULL);
}

static void job_abort(Job *j) {
        j->state = JOB_ABORTING;
        if (j->evcon)
                evhttp_connection_free(j->evcon);       /* calls job_on_close, which frees j */
        else
                job_free(j);
}

/* With no token delay, one step emits a burst of tokens (each still its own chunk) before it
 * yields to the loop; otherwise exactly one. */
#define DOUBLE_TOKEN_BURST 256u

/* Emits one token; returns true when the step should go on with the next one at once. */
static bool job_emit_token(Job *j, bool burst_left) {
        _cleanup_evbuffer_ struct evbuffer *b = NULL;
        _cleanup_json_ json_object *o = NULL;
        char tok[DOUBLE_TEXT_TOKEN_MAX];
        int64_t now = now_mono_ns();
        bool more;
        int l;

        l = double_text_gen_next(&j->gen, tok, sizeof(tok));
        if (l <= 0) {
                job_finish_generation(j);
                return false;
        }

        if (j->emitted == 0)
                j->t_first = now;
        j->t_last = now;
        j->emitted++;
        if (j->want_context && j->n_context < 2 * DOUBLE_TEXT_MAX_CONTEXT)
                j->context[j->n_context++] = double_text_token_id(tok, (size_t) l);
        more = burst_left && j->d->token_delay_ms == 0;

        if (!j->stream) {
                if (!j->text)
                        j->text = evbuffer_new();
                if (j->text)
                        (void) evbuffer_add(j->text, tok, (size_t) l);
                if (j->fail_after > 0 && j->emitted >= j->fail_after) {
                        job_abort(j);
                        return false;
                }
                if (j->emitted >= j->n_tokens) {
                        job_finish_generation(j);
                        return false;
                }
                if (!more)
                        job_arm(j, j->d->token_delay_ms);
                return more;
        }

        b = evbuffer_new();
        if (!b) {
                job_abort(j);
                return false;
        }
        if (j->kind == JOB_OAI_CHAT || j->kind == JOB_OAI_COMPLETION) {
                o = oai_chunk(j, tok, NULL);
                (void) evbuffer_add_json(b, o, "data: ", "\n\n");
        } else {
                o = native_chunk(j, tok, false);
                (void) evbuffer_add_json(b, o, NULL, "\n");
        }

        if (j->fail_after > 0 && j->emitted >= j->fail_after) {
                /* Drop the connection once this token has reached the kernel. */
                j->state = JOB_ABORTING;
                job_send_chunk(j, b, job_content_type(j), true);
                return false;
        }
        if (j->emitted >= j->n_tokens) {
                /* The final chunk follows the last token at once, as from a real runner. */
                job_send_chunk(j, b, job_content_type(j), false);
                job_finish_generation(j);
                return false;
        }
        /* The last chunk of a step carries the callback that arms the next step. */
        job_send_chunk(j, b, job_content_type(j), !more);
        return more;
}

static void job_step_generation(Job *j) {
        if (j->load_only) {
                job_finish_load(j);
                return;
        }
        j->prefilled = true;
        for (unsigned i = 1; job_emit_token(j, i < DOUBLE_TOKEN_BURST); i++)
                ;
}

static json_object *embedding_array(const Job *j, const char *input, size_t len, bool float64) {
        float vec[DOUBLE_TEXT_MAX_DIMENSIONS];
        json_object *a = json_object_new_array_ext((int) j->dims);

        if (double_text_embedding(j->model->name, input, len, j->dims, vec) < 0)
                return a;
        for (unsigned i = 0; i < j->dims; i++) {
                char buf[32];

                if (float64) {
                        (void) json_object_array_add(a, json_object_new_double((double) vec[i]));
                        continue;
                }
                if (double_text_format_float32(vec[i], buf, sizeof(buf)) < 0)
                        strcpy(buf, "0");
                (void) json_object_array_add(a, json_object_new_double_s((double) vec[i], buf));
        }
        return a;
}

/* OpenAI's encoding_format "base64": the vector as little-endian float32 bytes, base64 encoded,
 * as Ollama's OpenAI layer sends it. Takes ownership of vec. */
static json_object *embedding_base64(json_object *vec) {
        size_t n = json_object_array_length(vec);
        _cleanup_dfree_ uint8_t *bytes = calloc(n ? n : 1, 4);
        _cleanup_dfree_ char *b64 = NULL;
        size_t b64_len = sodium_base64_ENCODED_LEN(n * 4, sodium_base64_VARIANT_ORIGINAL);
        json_object *s = NULL;

        b64 = malloc(b64_len);
        if (bytes && b64) {
                for (size_t i = 0; i < n; i++) {
                        float f = (float) json_object_get_double(json_object_array_get_idx(vec, i));
                        uint32_t u;

                        memcpy(&u, &f, 4);
                        for (int k = 0; k < 4; k++)
                                bytes[i * 4 + k] = (uint8_t) (u >> (8 * k));
                }
                sodium_bin2base64(b64, b64_len, bytes, n * 4, sodium_base64_VARIANT_ORIGINAL);
                s = json_object_new_string(b64);
        }
        json_object_put(vec);
        return s ?: json_object_new_string("");
}

static void job_step_embed(Job *j) {
        _cleanup_json_ json_object *o = json_object_new_object();
        size_t n = j->inputs ? json_object_array_length(j->inputs) : 0;
        json_object *list = json_object_new_array();

        j->t_first = j->t_last = now_mono_ns();

        if (j->kind == JOB_EMBEDDINGS) {
                json_object_put(list);
                if (n == 0)
                        json_add(o, "embedding", json_object_new_array());
                else {
                        json_object *s = json_object_array_get_idx(j->inputs, 0);

                        json_add(o, "embedding", embedding_array(j, json_object_get_string(s),
                                                                 (size_t) json_object_get_string_len(s), true));
                }
                job_reply_json(j, 200, DOUBLE_CT_JSON, o, NULL);
                return;
        }

        for (size_t i = 0; i < n; i++) {
                json_object *s = json_object_array_get_idx(j->inputs, i);
                json_object *vec = embedding_array(j, json_object_get_string(s),
                                                   (size_t) json_object_get_string_len(s), false);

                if (j->kind == JOB_OAI_EMBED) {
                        json_object *e = json_object_new_object();

                        json_add_str(e, "object", "embedding");
                        json_add(e, "embedding", j->base64 ? embedding_base64(vec) : vec);
                        json_add_int(e, "index", (int64_t) i);
                        (void) json_object_array_add(list, e);
                } else
                        (void) json_object_array_add(list, vec);
        }

        if (j->kind == JOB_OAI_EMBED) {
                json_object *u = json_object_new_object();

                json_add_str(o, "object", "list");
                json_add(o, "data", list);
                json_add_str(o, "model", j->echo_model);
                json_add_int(u, "prompt_tokens", j->prompt_tokens);
                json_add_int(u, "total_tokens", j->prompt_tokens);
                json_add(o, "usage", u);
                job_reply_json(j, 200, "application/json", o, "\n");
                return;
        }

        json_add_str(o, "model", j->echo_model);
        json_add(o, "embeddings", list);
        if (n > 0) {
                int64_t now = now_mono_ns();

                json_add_int(o, "total_duration", now - j->t_arrival > 0 ? now - j->t_arrival : 1);
                json_add_int(o, "load_duration", j->t_start - j->t_arrival > 0 ? j->t_start - j->t_arrival : 1);
                json_add_int_nonzero(o, "prompt_eval_count", j->prompt_tokens);
        }
        job_reply_json(j, 200, DOUBLE_CT_JSON, o, NULL);
}

static void double_add_job_models(Job *j) {
        Double *d = j->d;

        for (size_t k = 0; k < 2; k++) {
                size_t i = 1 - k;
                Model *m;
                int r;

                if (!j->add_models[i])
                        continue;
                r = double_add_model(d, j->add_models[i], &m);
                if (r < 0)
                        double_log(d, "cannot add model %s: %s", j->add_models[i], strerror(-r));
        }
}

static void job_step_progress(Job *j) {
        _cleanup_evbuffer_ struct evbuffer *b = NULL;
        _cleanup_json_ json_object *o = NULL;
        bool last = j->next_line + 1 >= j->n_lines;

        if (!j->stream) {
                /* waitForStream: only the latest status, or the error with status 500. */
                if (j->next_line < j->n_lines && !last) {
                        j->next_line++;
                        job_arm(j, j->d->token_delay_ms);
                        return;
                }
                if (j->error) {
                        o = json_object_new_object();
                        json_add_str(o, "error", j->error);
                        job_reply_json(j, 500, "application/json", o, NULL);
                        return;
                }
                double_add_job_models(j);
                o = json_tokener_parse(j->n_lines > 0 ? j->lines[j->n_lines - 1] : "{\"status\":\"success\"}");
                job_reply_json(j, 200, "application/json", o, NULL);
                return;
        }

        b = evbuffer_new();
        if (!b) {
                job_abort(j);
                return;
        }

        if (j->next_line >= j->n_lines) {
                if (j->error) {
                        if (!j->reply_started) {
                                /* Nothing written yet: streamResponse sets the real status. */
                                o = json_object_new_object();
                                json_add_str(o, "error", j->error);
                                job_reply_json(j, 500, "application/json", o, NULL);
                                return;
                        }
                        o = json_object_new_object();
                        json_add_str(o, "error", j->error);
                        (void) evbuffer_add_json(b, o, NULL, "\n");
                        job_send_chunk(j, b, DOUBLE_CT_NDJSON, false);
                } else
                        double_add_job_models(j);
                job_end_stream(j);
                return;
        }

        (void) evbuffer_add(b, j->lines[j->next_line], strlen(j->lines[j->next_line]));
        (void) evbuffer_add(b, "\n", 1);
        j->next_line++;
        if (j->next_line >= j->n_lines && !j->error) {
                double_add_job_models(j);
                job_send_chunk(j, b, DOUBLE_CT_NDJSON, false);
                job_end_stream(j);
                return;
        }
        job_send_chunk(j, b, DOUBLE_CT_NDJSON, true);
}

static void job_step(evutil_socket_t fd, short what, void *userdata) {
        Job *j = userdata;

        switch (j->state) {
        case JOB_ABORTING:
                job_abort(j);
                return;
        case JOB_RUNNING:
                break;
        default:
                return;
        }

        switch (j->kind) {
        case JOB_GENERATE:
        case JOB_CHAT:
        case JOB_OAI_CHAT:
        case JOB_OAI_COMPLETION:
                job_step_generation(j);
                break;
        case JOB_EMBED:
        case JOB_EMBEDDINGS:
        case JOB_OAI_EMBED:
                if (j->load_only) {
                        _cleanup_json_ json_object *o = json_object_new_object();

                        if (j->kind == JOB_EMBEDDINGS)
                                json_add(o, "embedding", json_object_new_array());
                        else {
                                json_add_str(o, "model", j->echo_model);
                                json_add(o, "embeddings", json_object_new_array());
                        }
                        job_reply_json(j, 200, DOUBLE_CT_JSON, o, NULL);
                        return;
                }
                job_step_embed(j);
                break;
        case JOB_PROGRESS:
                job_step_progress(j);
                break;
        case JOB_STALL:
                break;
        }
}

static void job_start(Job *j) {
        Double *d = j->d;
        uint64_t extra_us;

        /* A model in use is loaded; until its request ends, /api/ps shows the default expiry. */
        if (!model_is_loaded(d, j->model))
                model_touch(d, j->model, false, 0);
        j->state = JOB_RUNNING;
        j->holds_slot = true;
        j->model->active++;
        d->active++;
        j->t_start = now_mono_ns();
        if (j->load_only) {
                job_arm(j, 0);
                return;
        }
        /* Each step, the first included, costs one token delay, so a busy slot is visible; the
         * first also costs the prefill of what the cache lacks, or the embedding of each input. */
        if (j->kind == JOB_EMBED || j->kind == JOB_EMBEDDINGS || j->kind == JOB_OAI_EMBED) {
                size_t n = j->inputs ? json_object_array_length(j->inputs) : 0;

                d->embed_inputs += n;
                extra_us = (uint64_t) ((double) n * d->embed_us_per_input + 0.5);
        } else
                extra_us = job_acquire_slot(j);
        job_arm_us(j, (uint64_t) d->token_delay_ms * 1000 + extra_us);
}

/* Takes a scheduler slot now, queues FIFO behind the model's other requests, or answers 503. */
static void double_schedule(Double *d, Job *j) {
        Model *m = j->model;

        if (m->active < d->num_parallel && TAILQ_EMPTY(&m->queue)) {
                job_start(j);
                return;
        }
        if (d->queued >= d->max_queue) {
                if (j->kind == JOB_OAI_CHAT || j->kind == JOB_OAI_COMPLETION || j->kind == JOB_OAI_EMBED) {
                        if (j->evcon)
                                evhttp_connection_set_closecb(j->evcon, NULL, NULL);
                        reply_oai_error(j->req, 503, "api_error", DOUBLE_ERR_MAX_QUEUE);
                        job_complete(j);
                        return;
                }
                _cleanup_json_ json_object *o = json_object_new_object();

                json_add_str(o, "error", DOUBLE_ERR_MAX_QUEUE);
                job_reply_json(j, 503, DOUBLE_CT_JSON, o, NULL);
                return;
        }
        j->state = JOB_QUEUED;
        TAILQ_INSERT_TAIL(&m->queue, j, qlink);
        d->queued++;
}

static void double_on_kick(evutil_socket_t fd, short what, void *userdata) {
        Double *d = userdata;
        Model *m;

        TAILQ_FOREACH(m, &d->models, link)
                while (m->active < d->num_parallel && !TAILQ_EMPTY(&m->queue)) {
                        Job *j = TAILQ_FIRST(&m->queue);

                        TAILQ_REMOVE(&m->queue, j, qlink);
                        d->queued--;
                        j->state = JOB_NEW;
                        job_start(j);
                }
}

/* ---- request parsing -------------------------------------------------------------------- */

typedef enum ApiFlavour {
        API_NATIVE,
        API_OPENAI,
} ApiFlavour;

/* Reads and parses the JSON body; on failure replies as the endpoint would and returns < 0. */
static int read_json_body(struct evhttp_request *req, ApiFlavour flavour, const char *go_type, json_object **ret) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        _cleanup_dfree_ char *err = NULL;
        json_object *o = NULL;
        const char *buf;
        int r;

        buf = len > 0 ? (const char *) evbuffer_pullup(in, -1) : "";
        r = double_text_json_parse(buf ?: "", buf ? len : 0, &o, &err);
        if (r >= 0)
                r = double_text_json_check_object(o, go_type, &err);
        if (r < 0) {
                if (o)
                        json_object_put(o);
                if (r != -EINVAL)
                        err = NULL;
                if (flavour == API_OPENAI)
                        reply_oai_error(req, 400, "invalid_request_error",
                                        err ? (strcmp(err, "missing request body") == 0 ? "EOF" : err) : "out of memory");
                else
                        reply_error(req, 400, "%s", err ?: "out of memory");
                return -EINVAL;
        }
        *ret = o;
        return 0;
}

static void reply_flavour_error(struct evhttp_request *req, ApiFlavour flavour, int code, const char *msg) {
        if (flavour == API_OPENAI)
                reply_oai_error(req, code, "api_error", msg);
        else
                reply_error(req, code, "%s", msg);
}

/* chat and embed: the model named, if the name is valid and the double has it; otherwise the
 * answer Ollama gives (400 "model is required", 404 "... try pulling it first") is sent and
 * NULL returned. */
static Model *double_require_model(Double *d, struct evhttp_request *req, ApiFlavour flavour, const char *name) {
        _cleanup_dfree_ char *msg = NULL;
        Model *m;

        if (!name || !double_text_model_name_valid(name)) {
                reply_flavour_error(req, flavour, 400, "model is required");
                return NULL;
        }
        m = double_find_model(d, name);
        if (m)
                return m;
        if (asprintf(&msg, "model \"%s\" not found, try pulling it first", name) < 0)
                msg = NULL;
        reply_flavour_error(req, flavour, 404, msg ?: "model not found");
        return NULL;
}

/* Keeps the request and never answers; the job only waits for the client to leave. */
static int double_stall(Double *d, struct evhttp_request *req) {
        Job *j;
        int r;

        r = job_new(d, req, JOB_STALL, &j);
        if (r < 0)
                return r;
        j->state = JOB_STALLED;
        d->stalled++;
        return 0;
}

static bool double_inference_fault(Double *d, struct evhttp_request *req, ApiFlavour flavour, int *ret) {
        if (d->stall) {
                if (double_stall(d, req) < 0) {
                        reply_flavour_error(req, flavour, 500, "out of memory");
                        *ret = 0;
                        return true;
                }
                *ret = 1;
                return true;
        }
        if (d->fail_status > 0) {
                reply_flavour_error(req, flavour, d->fail_status, "injected failure");
                *ret = 0;
                return true;
        }
        return false;
}

/* Fields every inference request shares. */
typedef struct InferenceFields {
        const char *model;
        int stream;             /* -1 absent */
        bool keep_alive_set;
        int64_t keep_alive_ns;
        int64_t num_predict;
        json_object *options;
} InferenceFields;

static int parse_inference_fields(struct evhttp_request *req, json_object *body, const char *go_struct,
                                  ApiFlavour flavour, InferenceFields *f) {
        _cleanup_dfree_ char *err = NULL;
        json_object *v = NULL;

        *f = (InferenceFields) { .stream = -1, .num_predict = -1, .keep_alive_ns = DOUBLE_TEXT_DEFAULT_KEEP_ALIVE_NS };
        if (double_text_json_get_string(body, "model", go_struct, &f->model, NULL, &err) < 0 ||
            double_text_json_get_bool(body, "stream", go_struct, &f->stream, &err) < 0)
                goto fail;
        if (body && json_object_object_get_ex(body, "keep_alive", &v) && v &&
            double_text_parse_keep_alive(v, &f->keep_alive_ns, &f->keep_alive_set, &err) < 0)
                goto fail;
        if (body && json_object_object_get_ex(body, "options", &v) && v) {
                if (!json_object_is_type(v, json_type_object)) {
                        free(err);
                        if (asprintf(&err, "json: cannot unmarshal %s into Go struct field %s.options of type map[string]interface {}",
                                     json_object_is_type(v, json_type_array) ? "array" :
                                     json_object_is_type(v, json_type_string) ? "string" :
                                     json_object_is_type(v, json_type_boolean) ? "bool" : "number",
                                     go_struct) < 0)
                                err = NULL;
                        goto fail;
                }
                f->options = v;
        }
        return 0;

fail:
        if (flavour == API_OPENAI)
                reply_oai_error(req, 400, "invalid_request_error", err ?: "invalid request");
        else
                reply_error(req, 400, "%s", err ?: "invalid request");
        return -EINVAL;
}

/* num_predict errors come out of scheduleRunner, as 500. */
static int parse_num_predict(struct evhttp_request *req, ApiFlavour flavour, InferenceFields *f) {
        _cleanup_dfree_ char *err = NULL;

        if (double_text_parse_num_predict(f->options, &f->num_predict, &err) < 0) {
                reply_flavour_error(req, flavour, 500, err ?: "invalid option");
                return -EINVAL;
        }
        return 0;
}

/* What generate and chat (and their /v1 forms) share once the model is known: refuse
 * embedding models, read num_predict, make the job and copy the request's fields into it.
 * Returns 1 with the job, or 0 after answering the request with an error. */
static int job_new_generation(Double *d, struct evhttp_request *req, ApiFlavour flavour, JobKind kind, Model *m,
                              InferenceFields *f, const char *what, Job **ret) {
        Job *j;

        if (model_is_embedding(m)) {
                _cleanup_dfree_ char *msg = NULL;
                char fallback[64];

                if (asprintf(&msg, "\"%s\" does not support %s", f->model, what) < 0)
                        msg = NULL;
                (void) snprintf(fallback, sizeof(fallback), "model does not support %s", what);
                reply_flavour_error(req, flavour, 400, msg ?: fallback);
                return 0;
        }
        if (flavour == API_NATIVE && parse_num_predict(req, flavour, f) < 0)
                return 0;

        if (job_new(d, req, kind, &j) < 0) {
                reply_flavour_error(req, flavour, 500, "out of memory");
                return 0;
        }
        j->model = m;
        j->echo_model = strdup(f->model);
        j->stream = f->stream != 0;
        j->include_usage = f->stream == 2;
        j->keep_alive_set = f->keep_alive_set;
        j->keep_alive_ns = f->keep_alive_ns;
        *ret = j;
        return 1;
}


/* The answer is tokens skip.. of the natural n of seed; num_predict counts the tokens sent, and
 * the generator is made for skip + those, so a cut answer still ends in a period. */
static void job_setup_generation(Job *j, uint64_t seed, unsigned skip, unsigned prompt_tokens, int64_t num_predict) {
        Double *d = j->d;
        unsigned natural = d->natural_tokens < DOUBLE_TEXT_MAX_TOKENS ? d->natural_tokens : DOUBLE_TEXT_MAX_TOKENS;

        j->prompt_tokens = prompt_tokens;
        j->seed = seed;
        j->skip = skip < natural ? skip : natural;
        j->n_tokens = double_text_token_budget(natural - j->skip, num_predict, &j->done_reason);
        double_text_gen_init_at(&j->gen, j->seed, j->skip + j->n_tokens, j->skip);
        j->fail_after = d->fail_after_tokens;
}

static void job_setup_context(Job *j, const char *prompt, size_t len) {
        size_t pos = 0, wl;
        const char *w;

        j->context = calloc(2 * DOUBLE_TEXT_MAX_CONTEXT, sizeof(uint32_t));
        if (!j->context)
                return;
        j->want_context = true;
        while (j->n_context < DOUBLE_TEXT_MAX_CONTEXT && (wl = double_text_next_word(prompt, len, &pos, &w)) > 0)
                j->context[j->n_context++] = double_text_token_id(w, wl);
}

/* The prompt the cache sees for /api/generate (native body: system, raw, images, read leniently,
 * as the text ignores them) and /v1/completions (body NULL: the prompt through the template). */
static void job_render_generate(Job *j, json_object *body, const char *prompt, size_t prompt_len) {
        json_object *system = NULL, *raw = NULL, *images = NULL;

        if (body) {
                if (!json_object_object_get_ex(body, "system", &system) || !json_object_is_type(system, json_type_string))
                        system = NULL;
                if (!json_object_object_get_ex(body, "raw", &raw) || !json_object_is_type(raw, json_type_boolean))
                        raw = NULL;
                (void) json_object_object_get_ex(body, "images", &images);
        }
        (void) double_text_render_generate(system ? json_object_get_string(system) : NULL,
                                           system ? (size_t) json_object_get_string_len(system) : 0,
                                           prompt, prompt_len, images, raw && json_object_get_boolean(raw),
                                           &j->render, &j->render_len);
}

/* ---- handlers --------------------------------------------------------------------------- */

/* Handlers return 0 when they replied, 1 when a job owns the request now. */
typedef int (*Handler)(Double *d, struct evhttp_request *req, const char *param);

static int handle_root(Double *d, struct evhttp_request *req, const char *param) {
        reply_raw(req, 200, DOUBLE_CT_TEXT, "Ollama is running", 17);
        return 0;
}

static int handle_version(Double *d, struct evhttp_request *req, const char *param) {
        _cleanup_json_ json_object *o = json_object_new_object();

        json_add_str(o, "version", d->version);
        reply_json(req, 200, o);
        return 0;
}

static int handle_generate_common(Double *d, struct evhttp_request *req, ApiFlavour flavour) {
        _cleanup_json_ json_object *body = NULL;
        _cleanup_dfree_ char *err = NULL;
        const char *go_struct = "GenerateRequest";
        const char *prompt = NULL;
        size_t prompt_len = 0, seed_len, split;
        json_object *raw = NULL;
        unsigned skip = 0;
        InferenceFields f;
        Model *m;
        Job *j;
        int r;

        if (double_inference_fault(d, req, flavour, &r))
                return r;
        if (read_json_body(req, flavour, flavour == API_OPENAI ? "openai.CompletionRequest" : "api.GenerateRequest", &body) < 0)
                return 0;
        if (flavour == API_OPENAI)
                go_struct = "CompletionRequest";
        if (parse_inference_fields(req, body, go_struct, flavour, &f) < 0)
                return 0;
        if (double_text_json_get_string(body, "prompt", go_struct, &prompt, &prompt_len, &err) < 0) {
                if (flavour == API_OPENAI)
                        reply_oai_error(req, 400, "invalid_request_error", err);
                else
                        reply_error(req, 400, "%s", err);
                return 0;
        }
        if (flavour == API_OPENAI) {
                int64_t max_tokens = 0;
                json_object *so = NULL, *iu = NULL;

                if (double_text_json_get_int(body, "max_tokens", go_struct, &max_tokens, &err) < 0) {
                        reply_oai_error(req, 400, "invalid_request_error", err);
                        return 0;
                }
                f.options = NULL;
                f.num_predict = max_tokens > 0 ? max_tokens : -1;
                f.keep_alive_set = false;
                /* OpenAI's default is not to stream. */
                f.stream = f.stream == 1;
                if (json_object_object_get_ex(body, "stream_options", &so) && so &&
                    json_object_object_get_ex(so, "include_usage", &iu))
                        f.stream = f.stream ? 1 + json_object_get_boolean(iu) : 0;
        }

        if (!f.model || !*f.model) {
                reply_flavour_error(req, flavour, 400, "model is required");
                return 0;
        }
        m = double_find_model(d, f.model);
        if (!m) {
                _cleanup_dfree_ char *msg = NULL;

                if (asprintf(&msg, "model '%s' not found", f.model) < 0)
                        msg = NULL;
                reply_flavour_error(req, flavour, 404, msg ?: "model not found");
                return 0;
        }

        /* expire the runner */
        if (flavour == API_NATIVE && prompt_len == 0 && f.keep_alive_set && f.keep_alive_ns == 0) {
                _cleanup_json_ json_object *o = json_object_new_object();

                model_unload(d, m);
                json_add_str(o, "model", f.model);
                json_add(o, "created_at", json_now());
                json_add_str(o, "response", "");
                json_add(o, "done", json_object_new_boolean(true));
                json_add_str(o, "done_reason", "unload");
                reply_json(req, 200, o);
                return 0;
        }

        if (job_new_generation(d, req, flavour, flavour == API_OPENAI ? JOB_OAI_COMPLETION : JOB_GENERATE, m, &f, "generate", &j) <= 0)
                return 0;
        j->load_only = prompt_len == 0;
        (void) snprintf(j->id, sizeof(j->id), "cmpl-%" PRIu64, d->next_id++ % 999);
        /* A raw prompt may end with the start of its own answer (the shim's resume): continue it. */
        seed_len = prompt_len;
        if (flavour == API_NATIVE && !j->load_only && json_object_object_get_ex(body, "raw", &raw) &&
            json_object_is_type(raw, json_type_boolean) && json_object_get_boolean(raw) &&
            double_text_continuation_split(m->name, d->natural_tokens, prompt, prompt_len, &split, &skip))
                seed_len = split;
        job_setup_generation(j, double_text_seed(m->name, prompt ?: "", seed_len), skip,
                             1 + double_text_count_words(prompt, prompt_len), f.num_predict);
        if (flavour == API_NATIVE && !j->load_only)
                job_setup_context(j, prompt, prompt_len);
        if (!j->load_only)
                job_render_generate(j, flavour == API_NATIVE ? body : NULL, prompt, prompt_len);
        double_schedule(d, j);
        return 1;
}

static int handle_generate(Double *d, struct evhttp_request *req, const char *param) {
        return handle_generate_common(d, req, API_NATIVE);
}

static int handle_oai_completions(Double *d, struct evhttp_request *req, const char *param) {
        return handle_generate_common(d, req, API_OPENAI);
}

static int handle_chat_common(Double *d, struct evhttp_request *req, ApiFlavour flavour) {
        _cleanup_json_ json_object *body = NULL;
        _cleanup_dfree_ char *err = NULL, *text = NULL, *partial = NULL;
        const char *go_struct = flavour == API_OPENAI ? "ChatCompletionRequest" : "ChatRequest";
        json_object *messages = NULL;
        size_t text_len = 0, n_messages, partial_len = 0, seed_len;
        unsigned tokens = 0, skip = 0;
        uint64_t seed;
        InferenceFields f;
        Model *m;
        Job *j;
        int r;

        if (double_inference_fault(d, req, flavour, &r))
                return r;
        if (read_json_body(req, flavour, flavour == API_OPENAI ? "openai.ChatCompletionRequest" : "api.ChatRequest", &body) < 0)
                return 0;
        if (parse_inference_fields(req, body, go_struct, flavour, &f) < 0)
                return 0;
        if (body)
                (void) json_object_object_get_ex(body, "messages", &messages);
        r = double_text_messages_join(messages, flavour == API_OPENAI, &text, &text_len, &tokens, &err);
        if (r < 0) {
                if (flavour == API_OPENAI)
                        reply_oai_error(req, 400, "invalid_request_error", err ?: "invalid message format");
                else
                        reply_error(req, 400, "%s", err ?: "invalid request");
                return 0;
        }
        n_messages = messages && json_object_is_type(messages, json_type_array) ? json_object_array_length(messages) : 0;

        if (flavour == API_OPENAI) {
                int64_t max_tokens = 0;
                json_object *so = NULL, *iu = NULL;

                if (n_messages == 0) {
                        reply_oai_error(req, 400, "invalid_request_error", "[] is too short - 'messages'");
                        return 0;
                }
                if (double_text_json_get_int(body, "max_tokens", go_struct, &max_tokens, &err) < 0) {
                        reply_oai_error(req, 400, "invalid_request_error", err);
                        return 0;
                }
                f.options = NULL;
                f.num_predict = max_tokens > 0 ? max_tokens : -1;
                f.keep_alive_set = false;
                f.stream = f.stream == 1;
                if (json_object_object_get_ex(body, "stream_options", &so) && so &&
                    json_object_object_get_ex(so, "include_usage", &iu))
                        f.stream = f.stream ? 1 + json_object_get_boolean(iu) : 0;
        }

        /* expire the runner: looks the model up itself, hence the other 404 wording. */
        if (flavour == API_NATIVE && n_messages == 0 && f.keep_alive_set && f.keep_alive_ns == 0) {
                _cleanup_json_ json_object *o = NULL;
                json_object *msg;

                m = double_find_model(d, f.model);
                if (!m) {
                        reply_error(req, 404, "model '%s' not found", f.model ?: "");
                        return 0;
                }
                model_unload(d, m);
                o = json_object_new_object();
                msg = json_object_new_object();
                json_add_str(o, "model", f.model);
                json_add(o, "created_at", json_now());
                json_add_str(msg, "role", "assistant");
                json_add_str(msg, "content", "");
                json_add(o, "message", msg);
                json_add_str(o, "done_reason", "unload");
                json_add(o, "done", json_object_new_boolean(true));
                reply_json(req, 200, o);
                return 0;
        }

        m = double_require_model(d, req, flavour, f.model);
        if (!m)
                return 0;
        if (job_new_generation(d, req, flavour, flavour == API_OPENAI ? JOB_OAI_CHAT : JOB_CHAT, m, &f, "chat", &j) <= 0)
                return 0;
        j->load_only = n_messages == 0;
        seed = double_text_seed(m->name, text, text_len);
        (void) snprintf(j->id, sizeof(j->id), "chatcmpl-%" PRIu64, d->next_id++ % 999);
        /* A last assistant message is a partial answer to continue (the shim's resume, or any
         * prefill): the answer is the one to the messages before it; when the message is that
         * answer's start only the rest is sent, otherwise the answer is sent whole. */
        if (!j->load_only &&
            double_text_messages_trailing_assistant(messages, flavour == API_OPENAI, &partial, &partial_len) > 0 &&
            partial_len <= text_len) {
                seed_len = text_len - partial_len;
                seed = double_text_seed(m->name, text, seed_len);
                if (!double_text_continuation_skip(seed, d->natural_tokens, partial, partial_len, &skip))
                        skip = 0;
        }
        job_setup_generation(j, seed, skip, tokens, f.num_predict);
        /* Without a rendering (out of memory) the request is served without the cache. */
        if (!j->load_only)
                (void) double_text_render_chat(messages, flavour == API_OPENAI, &j->render, &j->render_len);
        double_schedule(d, j);
        return 1;
}

static int handle_chat(Double *d, struct evhttp_request *req, const char *param) {
        return handle_chat_common(d, req, API_NATIVE);
}

static int handle_oai_chat(Double *d, struct evhttp_request *req, const char *param) {
        return handle_chat_common(d, req, API_OPENAI);
}

typedef enum EmbedVariant {
        EMBED_NATIVE,
        EMBED_LEGACY,
        EMBED_OPENAI,
} EmbedVariant;

static int handle_embed_common(Double *d, struct evhttp_request *req, EmbedVariant variant) {
        _cleanup_json_ json_object *body = NULL, *inputs = NULL;
        _cleanup_dfree_ char *err = NULL;
        ApiFlavour flavour = variant == EMBED_OPENAI ? API_OPENAI : API_NATIVE;
        const char *go_struct = variant == EMBED_LEGACY ? "EmbeddingRequest" : "EmbedRequest";
        json_object *input = NULL;
        int64_t dims = 0;
        unsigned tokens = 0;
        bool oai_base64 = false;
        InferenceFields f;
        Model *m;
        Job *j;
        int r;

        if (double_inference_fault(d, req, flavour, &r))
                return r;
        if (read_json_body(req, flavour,
                           variant == EMBED_LEGACY ? "api.EmbeddingRequest" :
                           variant == EMBED_OPENAI ? "openai.EmbedRequest" : "api.EmbedRequest", &body) < 0)
                return 0;
        if (parse_inference_fields(req, body, go_struct, flavour, &f) < 0)
                return 0;
        if (double_text_json_get_int(body, "dimensions", go_struct, &dims, &err) < 0) {
                reply_flavour_error(req, flavour, 400, err);
                return 0;
        }
        if (variant == EMBED_OPENAI)
                f.keep_alive_set = false;

        inputs = json_object_new_array();
        if (variant == EMBED_LEGACY) {
                const char *prompt;
                size_t len;

                if (double_text_json_get_string(body, "prompt", go_struct, &prompt, &len, &err) < 0) {
                        reply_error(req, 400, "%s", err);
                        return 0;
                }
                if (len > 0)
                        (void) json_object_array_add(inputs, json_object_new_string_len(prompt, (int) len));
        } else {
                if (body)
                        (void) json_object_object_get_ex(body, "input", &input);
                if (variant == EMBED_OPENAI) {
                        json_object *ef = NULL;

                        if (json_object_object_get_ex(body, "encoding_format", &ef) && ef &&
                            json_object_is_type(ef, json_type_string) && *json_object_get_string(ef) &&
                            strcasecmp(json_object_get_string(ef), "float") != 0 &&
                            strcasecmp(json_object_get_string(ef), "base64") != 0) {
                                _cleanup_dfree_ char *msg = NULL;

                                if (asprintf(&msg, "Invalid value for 'encoding_format' = %s. Supported values: ['float', 'base64'].",
                                             json_object_get_string(ef)) < 0)
                                        msg = NULL;
                                reply_oai_error(req, 400, "invalid_request_error", msg ?: "invalid encoding_format");
                                return 0;
                        }
                        oai_base64 = ef && json_object_is_type(ef, json_type_string) &&
                                     strcasecmp(json_object_get_string(ef), "base64") == 0;
                        if (!input || (json_object_is_type(input, json_type_array) && json_object_array_length(input) == 0)) {
                                reply_oai_error(req, 400, "invalid_request_error", "invalid input");
                                return 0;
                        }
                        /* An empty string is embedded, not skipped. */
                        if (json_object_is_type(input, json_type_string) && json_object_get_string_len(input) == 0) {
                                (void) json_object_array_add(inputs, json_object_new_string(""));
                                input = NULL;
                        }
                }
                if (input && json_object_is_type(input, json_type_string)) {
                        if (json_object_get_string_len(input) > 0)
                                (void) json_object_array_add(inputs, json_object_get(input));
                } else if (input && json_object_is_type(input, json_type_array)) {
                        for (size_t i = 0; i < json_object_array_length(input); i++) {
                                json_object *s = json_object_array_get_idx(input, i);

                                if (!s || !json_object_is_type(s, json_type_string)) {
                                        reply_flavour_error(req, flavour, 400, "invalid input type");
                                        return 0;
                                }
                                (void) json_object_array_add(inputs, json_object_get(s));
                        }
                } else if (input) {
                        reply_flavour_error(req, flavour, 400, "invalid input type");
                        return 0;
                }
        }

        m = double_require_model(d, req, flavour, f.model);
        if (!m)
                return 0;
        if (flavour == API_NATIVE && parse_num_predict(req, flavour, &f) < 0)
                return 0;

        for (size_t i = 0; i < json_object_array_length(inputs); i++) {
                json_object *s = json_object_array_get_idx(inputs, i);
                unsigned w = double_text_count_words(json_object_get_string(s), (size_t) json_object_get_string_len(s));

                tokens += w > 0 ? w : 1;
        }

        if (job_new(d, req, variant == EMBED_LEGACY ? JOB_EMBEDDINGS : variant == EMBED_OPENAI ? JOB_OAI_EMBED : JOB_EMBED,
                    &j) < 0) {
                reply_flavour_error(req, flavour, 500, "out of memory");
                return 0;
        }
        j->model = m;
        j->echo_model = strdup(f.model);
        j->stream = false;
        j->base64 = oai_base64;
        j->keep_alive_set = f.keep_alive_set;
        j->keep_alive_ns = f.keep_alive_ns;
        j->prompt_tokens = tokens;
        j->load_only = json_object_array_length(inputs) == 0 && variant != EMBED_OPENAI;
        j->dims = dims > 0 ? (dims > DOUBLE_TEXT_MAX_DIMENSIONS ? DOUBLE_TEXT_MAX_DIMENSIONS : (unsigned) dims)
                           : DOUBLE_TEXT_DEFAULT_DIMENSIONS;
        j->inputs = TAKE_PTR(inputs);
        double_schedule(d, j);
        return 1;
}

static int handle_embed(Double *d, struct evhttp_request *req, const char *param) {
        return handle_embed_common(d, req, EMBED_NATIVE);
}

static int handle_embeddings(Double *d, struct evhttp_request *req, const char *param) {
        return handle_embed_common(d, req, EMBED_LEGACY);
}

static int handle_oai_embeddings(Double *d, struct evhttp_request *req, const char *param) {
        return handle_embed_common(d, req, EMBED_OPENAI);
}

static json_object *model_list_entry(Model *m, bool ps) {
        json_object *o = json_object_new_object();

        json_add_str(o, "name", m->name);
        json_add_str(o, "model", m->name);
        if (!ps)
                json_add(o, "modified_at", json_time(m->modified_ns));
        json_add_int(o, "size", m->size);
        json_add_str(o, "digest", m->digest);
        json_add(o, "details", model_details(m));
        if (ps) {
                int64_t now = now_real_ns();

                if (m->loaded_forever) {
                        /* Go's time.Now().Add(math.MaxInt64): some day in 2318. */
                        int64_t ns = now % 1000000000 + INT64_MAX % 1000000000;

                        json_add(o, "expires_at", json_time_parts(now / 1000000000 + INT64_MAX / 1000000000 + ns / 1000000000,
                                                                  (long) (ns % 1000000000)));
                } else
                        json_add(o, "expires_at", json_time(m->expires_ns));
                json_add_int(o, "size_vram", m->size);
                json_add_int(o, "context_length", DOUBLE_NUM_CTX);
        }
        return o;
}

static int model_compare_modified(const void *a, const void *b) {
        const Model *x = *(Model *const *) a, *y = *(Model *const *) b;

        return x->modified_ns < y->modified_ns ? 1 : x->modified_ns > y->modified_ns ? -1 : 0;
}

/* Installed models, most recently modified first, as ListHandler sorts them. */
static size_t double_sorted_models(Double *d, Model **ret) {
        size_t n = 0;
        Model *m;

        TAILQ_FOREACH(m, &d->models, link)
                if (m->present)
                        ret[n++] = m;
        qsort(ret, n, sizeof(Model *), model_compare_modified);
        return n;
}

static int handle_tags(Double *d, struct evhttp_request *req, const char *param) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *list = json_object_new_array();
        Model *sorted[DOUBLE_MAX_MODELS];
        size_t n = double_sorted_models(d, sorted);

        for (size_t i = 0; i < n; i++)
                (void) json_object_array_add(list, model_list_entry(sorted[i], false));
        json_add(o, "models", list);
        reply_json(req, 200, o);
        return 0;
}

static int model_compare_expiry(const void *a, const void *b) {
        const Model *x = *(Model *const *) a, *y = *(Model *const *) b;

        return x->expires_ns < y->expires_ns ? 1 : x->expires_ns > y->expires_ns ? -1 : 0;
}

static int handle_ps(Double *d, struct evhttp_request *req, const char *param) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *list = json_object_new_array();
        Model *m;

        Model *sorted[DOUBLE_MAX_MODELS];
        size_t n = 0;

        TAILQ_FOREACH(m, &d->models, link)
                if (model_is_loaded(d, m))
                        sorted[n++] = m;
        /* longest remaining first, as PsHandler sorts */
        qsort(sorted, n, sizeof(Model *), model_compare_expiry);
        for (size_t i = 0; i < n; i++)
                (void) json_object_array_add(list, model_list_entry(sorted[i], true));
        json_add(o, "models", list);
        reply_json(req, 200, o);
        return 0;
}

static const char *body_model_name(json_object *body) {
        json_object *v;
        const char *s = NULL;

        if (body && json_object_object_get_ex(body, "model", &v) && json_object_is_type(v, json_type_string))
                s = json_object_get_string(v);
        if ((!s || !*s) && body && json_object_object_get_ex(body, "name", &v) && json_object_is_type(v, json_type_string))
                s = json_object_get_string(v);
        return s ?: "";
}

static int handle_show(Double *d, struct evhttp_request *req, const char *param) {
        _cleanup_json_ json_object *body = NULL, *o = NULL;
        _cleanup_dfree_ char *modelfile = NULL;
        const char *name;
        json_object *info, *caps;
        bool embed;
        Model *m;

        if (read_json_body(req, API_NATIVE, "api.ShowRequest", &body) < 0)
                return 0;
        name = body_model_name(body);
        if (!*name) {
                reply_error(req, 400, "model is required");
                return 0;
        }
        m = double_find_model(d, name);
        if (!m) {
                reply_error(req, 404, "model '%s' not found", name);
                return 0;
        }
        embed = model_is_embedding(m);

        if (asprintf(&modelfile,
                     "# Modelfile generated by \"ollama show\"\n"
                     "# To build a new Modelfile based on this, replace FROM with:\n"
                     "# FROM %s\n\n"
                     "FROM /usr/share/ollama/.ollama/models/blobs/sha256-%s\n"
                     "%s",
                     m->name, m->digest,
                     embed ? "" : "TEMPLATE \"{{ .Prompt }}\"\nPARAMETER stop <|eot_id|>\n") < 0)
                modelfile = NULL;

        o = json_object_new_object();
        json_add_str(o, "license", "test double: deterministic text, not a language model");
        json_add_str(o, "modelfile", modelfile ?: "");
        if (!embed) {
                json_add_str(o, "parameters", "stop                           \"<|eot_id|>\"");
                json_add_str(o, "template", "{{ .Prompt }}");
        }
        json_add(o, "details", model_details(m));
        info = json_object_new_object();
        json_add_str(info, "general.architecture", embed ? "bert" : "llama");
        json_add_int(info, "general.parameter_count", embed ? 22565376 : 1235814432);
        json_add_int(info, embed ? "bert.context_length" : "llama.context_length", embed ? 512 : 131072);
        json_add_int(info, embed ? "bert.embedding_length" : "llama.embedding_length",
                     embed ? DOUBLE_TEXT_DEFAULT_DIMENSIONS : 2048);
        json_add(o, "model_info", info);
        caps = json_object_new_array();
        (void) json_object_array_add(caps, json_object_new_string(embed ? "embedding" : "completion"));
        json_add(o, "capabilities", caps);
        json_add(o, "modified_at", json_time(m->modified_ns));
        reply_json(req, 200, o);
        return 0;
}

static int job_add_line(Job *j, json_object *o) {
        char **l;
        const char *s;

        if (!o)
                return -ENOMEM;
        s = json_object_to_json_string_ext(o, DOUBLE_JSON_FLAGS);
        l = realloc(j->lines, (j->n_lines + 1) * sizeof(char *));
        if (!l || !s) {
                json_object_put(o);
                return -ENOMEM;
        }
        j->lines = l;
        j->lines[j->n_lines] = strdup(s);
        json_object_put(o);
        if (!j->lines[j->n_lines])
                return -ENOMEM;
        j->n_lines++;
        return 0;
}

static json_object *status_line(const char *status) {
        json_object *o = json_object_new_object();

        json_add_str(o, "status", status);
        return o;
}

/* A layer's progress lines, as a registry transfer reports them. */
static void job_add_transfer(Job *j, const char *verb, const char *seed, int64_t total) {
        uint8_t h[crypto_hash_sha256_BYTES];
        char hex[65], digest[80], status[64];

        (void) crypto_hash_sha256(h, (const unsigned char *) seed, strlen(seed));
        double_text_hex(h, sizeof(h), hex);
        (void) snprintf(digest, sizeof(digest), "sha256:%s", hex);
        (void) snprintf(status, sizeof(status), "%s %.12s", verb, hex);
        for (int step = 0; step <= 2; step++) {
                json_object *o = status_line(status);

                json_add_str(o, "digest", digest);
                json_add_int(o, "total", total);
                json_add_int_nonzero(o, "completed", total * step / 2);
                (void) job_add_line(j, o);
        }
}

static void job_add_pull_lines(Job *j, const char *name) {
        _cleanup_dfree_ char *seed = NULL;

        (void) job_add_line(j, status_line("pulling manifest"));
        if (strncasecmp(name, "nonexistent", 11) == 0) {
                j->error = strdup("pull model manifest: file does not exist");
                return;
        }
        if (asprintf(&seed, "%s/model", name) >= 0)
                job_add_transfer(j, "pulling", seed, double_text_model_is_embedding(name) ? 45000000 : 1000000000);
        free(seed);
        if (asprintf(&seed, "%s/params", name) >= 0)
                job_add_transfer(j, "pulling", seed, 96);
        (void) job_add_line(j, status_line("verifying sha256 digest"));
        (void) job_add_line(j, status_line("writing manifest"));
}

static int handle_progress_job(Double *d, struct evhttp_request *req, Job *j, int stream) {
        j->stream = stream != 0;
        j->state = JOB_RUNNING;
        j->t_start = now_mono_ns();
        job_arm(j, 0);
        return 1;
}

static int handle_pull(Double *d, struct evhttp_request *req, const char *param) {
        _cleanup_json_ json_object *body = NULL;
        _cleanup_dfree_ char *err = NULL, *norm = NULL;
        const char *name;
        int stream;
        Job *j;

        if (read_json_body(req, API_NATIVE, "api.PullRequest", &body) < 0)
                return 0;
        if (double_text_json_get_bool(body, "stream", "PullRequest", &stream, &err) < 0) {
                reply_error(req, 400, "%s", err);
                return 0;
        }
        name = body_model_name(body);
        if (double_text_model_normalize(name, &norm) < 0) {
                reply_error(req, 400, "invalid model name");
                return 0;
        }
        if (job_new(d, req, JOB_PROGRESS, &j) < 0) {
                reply_error(req, 500, "out of memory");
                return 0;
        }
        job_add_pull_lines(j, norm);
        if (!j->error) {
                (void) job_add_line(j, status_line("success"));
                j->add_models[0] = TAKE_PTR(norm);
        }
        return handle_progress_job(d, req, j, stream);
}

static int handle_push(Double *d, struct evhttp_request *req, const char *param) {
        _cleanup_json_ json_object *body = NULL;
        _cleanup_dfree_ char *err = NULL, *seed = NULL;
        const char *name;
        int stream;
        Model *m;
        Job *j;

        if (read_json_body(req, API_NATIVE, "api.PushRequest", &body) < 0)
                return 0;
        if (double_text_json_get_bool(body, "stream", "PushRequest", &stream, &err) < 0) {
                reply_error(req, 400, "%s", err);
                return 0;
        }
        name = body_model_name(body);
        if (!*name) {
                reply_error(req, 400, "model is required");
                return 0;
        }
        if (job_new(d, req, JOB_PROGRESS, &j) < 0) {
                reply_error(req, 500, "out of memory");
                return 0;
        }
        m = double_find_model(d, name);
        if (!m) {
                j->error = strdup("file does not exist");
                return handle_progress_job(d, req, j, stream);
        }
        (void) job_add_line(j, status_line("retrieving manifest"));
        if (asprintf(&seed, "%s/model", m->name) >= 0)
                job_add_transfer(j, "pushing", seed, m->size);
        (void) job_add_line(j, status_line("pushing manifest"));
        (void) job_add_line(j, status_line("success"));
        return handle_progress_job(d, req, j, stream);
}

static void job_add_layer_line(Job *j, const char *verb, const char *seed) {
        uint8_t h[crypto_hash_sha256_BYTES];
        char hex[65], status[128];

        (void) crypto_hash_sha256(h, (const unsigned char *) seed, strlen(seed));
        double_text_hex(h, sizeof(h), hex);
        (void) snprintf(status, sizeof(status), "%s sha256:%s", verb, hex);
        (void) job_add_line(j, status_line(status));
}

static bool double_blob_stored(Double *d, const uint8_t digest[32]);

/* Ollama opens each blob a create names before it starts (server/create.go,
 * detectModelTypeFromFile) and refuses one it was never given with 400 and this text. Adapters
 * get the same check here (newer Ollama refuses adapters altogether; older ones fail later, in
 * the stream). Digests that are not digests are left to the caller's own check. */
static int double_create_blobs_missing(Double *d, json_object *body, char **ret) {
        static const char *const maps[] = { "files", "adapters" };
        json_object *map;

        for (size_t i = 0; body && i < sizeof(maps) / sizeof(maps[0]); i++) {
                if (!json_object_object_get_ex(body, maps[i], &map) || !json_object_is_type(map, json_type_object))
                        continue;
                json_object_object_foreach(map, fname, digest) {
                        const char *s = json_object_get_string(digest);
                        uint8_t raw[32];
                        char hex[65];

                        if (!json_object_is_type(digest, json_type_string) || double_text_parse_digest(s, raw) < 0 ||
                            double_blob_stored(d, raw))
                                continue;
                        double_text_hex(raw, sizeof(raw), hex);
                        if (asprintf(ret, "blob not found for %s (digest %s): open "
                                     "/usr/share/ollama/.ollama/models/blobs/sha256-%s: no such file or directory",
                                     fname, s, hex) < 0) {
                                *ret = NULL;
                                return -ENOMEM;
                        }
                        return -ENOENT;
                }
        }
        return 0;
}

static int handle_create(Double *d, struct evhttp_request *req, const char *param) {
        _cleanup_json_ json_object *body = NULL;
        _cleanup_dfree_ char *err = NULL, *norm = NULL, *from_norm = NULL, *missing = NULL;
        const char *name, *from = NULL;
        json_object *files = NULL, *v;
        int stream;
        Model *src = NULL;
        Job *j;

        if (read_json_body(req, API_NATIVE, "api.CreateRequest", &body) < 0)
                return 0;
        if (double_text_json_get_bool(body, "stream", "CreateRequest", &stream, &err) < 0 ||
            double_text_json_get_string(body, "from", "CreateRequest", &from, NULL, &err) < 0) {
                reply_error(req, 400, "%s", err);
                return 0;
        }
        name = body_model_name(body);
        if (double_text_model_normalize(name, &norm) < 0) {
                reply_error(req, 400, "invalid model name");
                return 0;
        }
        if (body && json_object_object_get_ex(body, "files", &files) && files &&
            !json_object_is_type(files, json_type_object)) {
                reply_error(req, 400, "json: cannot unmarshal %s into Go struct field CreateRequest.files of type map[string]string",
                            json_object_is_type(files, json_type_array) ? "array" : "string");
                return 0;
        }
        if ((!from || !*from) && !files) {
                reply_error(req, 400, "neither 'from' or 'files' was specified");
                return 0;
        }
        if (double_create_blobs_missing(d, body, &missing) < 0) {
                reply_error(req, missing ? 400 : 500, "%s", missing ?: "out of memory");
                return 0;
        }

        if (job_new(d, req, JOB_PROGRESS, &j) < 0) {
                reply_error(req, 500, "out of memory");
                return 0;
        }
        if (from && *from) {
                src = double_find_model(d, from);
                if (!src) {
                        if (double_text_model_normalize(from, &from_norm) < 0) {
                                j->error = strdup("invalid model name");
                                return handle_progress_job(d, req, j, stream);
                        }
                        job_add_pull_lines(j, from_norm);
                        if (j->error)
                                return handle_progress_job(d, req, j, stream);
                        j->add_models[1] = TAKE_PTR(from_norm);
                }
                job_add_layer_line(j, "using existing layer", src ? src->name : j->add_models[1]);
        }
        if (files) {
                json_object_object_foreach(files, fname, digest) {
                        char status[128];
                        uint8_t raw[32];

                        (void) fname;
                        if (!json_object_is_type(digest, json_type_string) ||
                            double_text_parse_digest(json_object_get_string(digest), raw) < 0) {
                                j->error = strdup("invalid digest format");
                                return handle_progress_job(d, req, j, stream);
                        }
                        (void) snprintf(status, sizeof(status), "using existing layer %s", json_object_get_string(digest));
                        (void) job_add_line(j, status_line(status));
                }
        }
        if (body && ((json_object_object_get_ex(body, "template", &v) && v) ||
                     (json_object_object_get_ex(body, "system", &v) && v) ||
                     (json_object_object_get_ex(body, "parameters", &v) && v)))
                job_add_layer_line(j, "creating new layer", json_object_to_json_string_ext(body, DOUBLE_JSON_FLAGS));
        (void) job_add_line(j, status_line("writing manifest"));
        (void) job_add_line(j, status_line("success"));
        j->add_models[0] = TAKE_PTR(norm);
        return handle_progress_job(d, req, j, stream);
}

static int handle_copy(Double *d, struct evhttp_request *req, const char *param) {
        _cleanup_json_ json_object *body = NULL;
        _cleanup_dfree_ char *err = NULL;
        const char *src = NULL, *dst = NULL;
        Model *m, *n;
        int r;

        if (read_json_body(req, API_NATIVE, "api.CopyRequest", &body) < 0)
                return 0;
        if (double_text_json_get_string(body, "source", "CopyRequest", &src, NULL, &err) < 0 ||
            double_text_json_get_string(body, "destination", "CopyRequest", &dst, NULL, &err) < 0) {
                reply_error(req, 400, "%s", err);
                return 0;
        }
        if (!double_text_model_name_valid(src)) {
                reply_error(req, 400, "source \"%s\" is invalid", src ?: "");
                return 0;
        }
        if (!double_text_model_name_valid(dst)) {
                reply_error(req, 400, "destination \"%s\" is invalid", dst ?: "");
                return 0;
        }
        m = double_find_model(d, src);
        if (!m) {
                reply_error(req, 404, "model \"%s\" not found", src);
                return 0;
        }
        r = double_add_model(d, dst, &n);
        if (r < 0) {
                reply_error(req, 500, "%s", strerror(-r));
                return 0;
        }
        reply_raw(req, 200, NULL, NULL, 0);
        return 0;
}

static int handle_delete(Double *d, struct evhttp_request *req, const char *param) {
        _cleanup_json_ json_object *body = NULL;
        const char *name;
        Model *m;

        if (read_json_body(req, API_NATIVE, "api.DeleteRequest", &body) < 0)
                return 0;
        name = body_model_name(body);
        if (!double_text_model_name_valid(name)) {
                reply_error(req, 400, "name \"%s\" is invalid", name);
                return 0;
        }
        m = double_find_model(d, name);
        if (!m) {
                reply_error(req, 404, "model '%s' not found", name);
                return 0;
        }
        m->present = false;
        model_unload(d, m);
        reply_raw(req, 200, NULL, NULL, 0);
        return 0;
}

static bool double_blob_stored(Double *d, const uint8_t digest[32]) {
        for (unsigned i = 0; i < d->n_blobs; i++)
                if (memcmp(d->blobs[i], digest, 32) == 0)
                        return true;
        return false;
}

static int handle_blob(Double *d, struct evhttp_request *req, const char *param) {
        _cleanup_dfree_ char *digest_s = NULL;
        crypto_hash_sha256_state st;
        uint8_t want[32], got[32];
        char hex[65];
        struct evbuffer *in;
        struct evbuffer_ptr ptr;
        struct evbuffer_iovec v;

        digest_s = evhttp_uridecode(param, 0, NULL);
        if (!digest_s || double_text_parse_digest(digest_s, want) < 0) {
                reply_error(req, 400, "invalid digest format");
                return 0;
        }

        if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
                if (double_blob_stored(d, want))
                        reply_raw(req, 200, NULL, NULL, 0);
                else
                        reply_error(req, 404, "blob \"%s\" not found", digest_s);
                return 0;
        }

        if (double_blob_stored(d, want)) {
                reply_raw(req, 200, NULL, NULL, 0);
                return 0;
        }

        in = evhttp_request_get_input_buffer(req);
        (void) crypto_hash_sha256_init(&st);
        if (evbuffer_ptr_set(in, &ptr, 0, EVBUFFER_PTR_SET) == 0)
                while (evbuffer_peek(in, -1, &ptr, &v, 1) > 0 && v.iov_len > 0) {
                        (void) crypto_hash_sha256_update(&st, v.iov_base, v.iov_len);
                        if (evbuffer_ptr_set(in, &ptr, v.iov_len, EVBUFFER_PTR_ADD) < 0)
                                break;
                }
        (void) crypto_hash_sha256_final(&st, got);
        double_text_hex(got, sizeof(got), hex);

        /* Ollama compares the strings: "sha256-..." never matches the "sha256:..." it computes. */
        if (memcmp(want, got, 32) != 0 || digest_s[6] != ':') {
                reply_error(req, 400, "digest mismatch, expected \"%s\", got \"sha256:%s\"", digest_s, hex);
                return 0;
        }
        memcpy(d->blobs[d->blob_next], got, 32);
        d->blob_next = (d->blob_next + 1) % DOUBLE_MAX_BLOBS;
        if (d->n_blobs < DOUBLE_MAX_BLOBS)
                d->n_blobs++;
        reply_raw(req, 201, NULL, NULL, 0);
        return 0;
}

static json_object *oai_model(Model *m, const char *id) {
        json_object *o = json_object_new_object();
        _cleanup_dfree_ char *ns = NULL;

        json_add_str(o, "id", id);
        json_add_str(o, "object", "model");
        json_add_int(o, "created", m->modified_ns / 1000000000);
        (void) double_text_model_namespace(m->name, &ns);
        json_add_str(o, "owned_by", ns ?: "library");
        return o;
}

static int handle_oai_models(Double *d, struct evhttp_request *req, const char *param) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *data = NULL;
        Model *sorted[DOUBLE_MAX_MODELS];
        size_t n = double_sorted_models(d, sorted);

        for (size_t i = 0; i < n; i++) {
                if (!data)
                        data = json_object_new_array();
                (void) json_object_array_add(data, oai_model(sorted[i], sorted[i]->name));
        }
        json_add_str(o, "object", "list");
        /* A nil Go slice: "data":null when nothing is installed. */
        json_add(o, "data", data);
        reply_json_ct(req, 200, "application/json", o, "\n");
        return 0;
}

static int handle_oai_model(Double *d, struct evhttp_request *req, const char *param) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_dfree_ char *name = NULL, *msg = NULL;
        Model *m;

        name = evhttp_uridecode(param, 0, NULL);
        m = name ? double_find_model(d, name) : NULL;
        if (!m) {
                if (asprintf(&msg, "model '%s' not found", name ?: param) < 0)
                        msg = NULL;
                reply_oai_error(req, 404, "api_error", msg ?: "model not found");
                return 0;
        }
        o = oai_model(m, name);
        reply_json_ct(req, 200, "application/json", o, "\n");
        return 0;
}

/* ---- control endpoints (test-only) ------------------------------------------------------ */

static json_object *double_faults_json(Double *d) {
        json_object *o = json_object_new_object();

        json_add_int(o, "fail_after_tokens", d->fail_after_tokens);
        json_add_int(o, "fail_status", d->fail_status);
        json_add(o, "stall", json_object_new_boolean(d->stall));
        json_add(o, "stall_all", json_object_new_boolean(d->stall_all));
        json_add_int(o, "token_delay_ms", d->token_delay_ms);
        json_add_int(o, "tokens", d->natural_tokens);
        json_add(o, "prefill_us_per_byte", json_object_new_double(d->prefill_us_per_byte));
        json_add(o, "embed_us_per_input", json_object_new_double(d->embed_us_per_input));
        return o;
}

/* Microseconds per byte or per input: 0..DOUBLE_MAX_COST_US, fractions allowed. */
#define DOUBLE_MAX_COST_US 1e6

static bool cost_valid(double us) {
        return us >= 0 && us <= DOUBLE_MAX_COST_US;
}

static void handle_control(Double *d, struct evhttp_request *req, const char *path) {
        enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

        if (strcmp(path, "/__double/stats") == 0 && cmd == EVHTTP_REQ_GET) {
                _cleanup_json_ json_object *o = json_object_new_object();

                json_add_int(o, "requests", (int64_t) d->requests);
                json_add_int(o, "active", d->active);
                json_add_int(o, "completed", (int64_t) d->completed);
                json_add_int(o, "cancelled", (int64_t) d->cancelled);
                json_add_int(o, "failed", (int64_t) d->failed);
                json_add_int(o, "queued", d->queued);
                json_add_int(o, "stalled", d->stalled);
                json_add_int(o, "connections", (int64_t) d->connections);
                json_add_str(o, "last_host", d->last_host);
                json_add_str(o, "last_path", d->last_path);
                json_add_int(o, "cache_hits", (int64_t) d->cache_hits);
                json_add_int(o, "cache_hit_bytes", (int64_t) d->cache_hit_bytes);
                json_add_int(o, "prefill_bytes", (int64_t) d->prefill_bytes);
                json_add_int(o, "embed_inputs", (int64_t) d->embed_inputs);
                reply_json(req, 200, o);
                return;
        }

        if (strcmp(path, "/__double/faults") == 0 && cmd == EVHTTP_REQ_GET) {
                _cleanup_json_ json_object *o = double_faults_json(d);

                reply_json(req, 200, o);
                return;
        }

        if (strcmp(path, "/__double/faults") == 0 && cmd == EVHTTP_REQ_POST) {
                struct evbuffer *in = evhttp_request_get_input_buffer(req);
                size_t len = evbuffer_get_length(in);
                _cleanup_json_ json_object *body = NULL, *empty = NULL;
                _cleanup_dfree_ char *err = NULL;
                int64_t fail_after = 0, fail_status = 0, delay = d->default_token_delay_ms,
                        tokens = d->default_natural_tokens;
                double prefill = 0, embed = 0;
                int stall = 0, stall_all = 0;

                if (len > 0 &&
                    double_text_json_parse((const char *) evbuffer_pullup(in, -1), len, &body, &err) < 0 &&
                    strcmp(err ?: "", "missing request body") != 0) {
                        reply_error(req, 400, "%s", err ?: "invalid JSON");
                        return;
                }
                if (double_text_json_check_object(body, "faults", &err) < 0 ||
                    double_text_json_get_int(body, "fail_after_tokens", "faults", &fail_after, &err) < 0 ||
                    double_text_json_get_int(body, "fail_status", "faults", &fail_status, &err) < 0 ||
                    double_text_json_get_int(body, "token_delay_ms", "faults", &delay, &err) < 0 ||
                    double_text_json_get_int(body, "tokens", "faults", &tokens, &err) < 0 ||
                    double_text_json_get_bool(body, "stall", "faults", &stall, &err) < 0 ||
                    double_text_json_get_bool(body, "stall_all", "faults", &stall_all, &err) < 0 ||
                    double_text_json_get_float(body, "prefill_us_per_byte", "faults", &prefill, &err) < 0 ||
                    double_text_json_get_float(body, "embed_us_per_input", "faults", &embed, &err) < 0) {
                        reply_error(req, 400, "%s", err ?: "invalid request");
                        return;
                }
                /* absent fields: faults off, delay, length and costs back to the command line's */
                if (!json_object_object_get_ex(body, "token_delay_ms", NULL))
                        delay = d->default_token_delay_ms;
                if (!json_object_object_get_ex(body, "tokens", NULL))
                        tokens = d->default_natural_tokens;
                if (!json_object_object_get_ex(body, "prefill_us_per_byte", NULL))
                        prefill = d->default_prefill_us_per_byte;
                if (!json_object_object_get_ex(body, "embed_us_per_input", NULL))
                        embed = d->default_embed_us_per_input;
                if (fail_after < 0 || fail_after > UINT32_MAX || (fail_status != 0 && (fail_status < 100 || fail_status > 599)) ||
                    delay < 0 || delay > 3600000 || tokens < 1 || tokens > DOUBLE_TEXT_MAX_TOKENS ||
                    !cost_valid(prefill) || !cost_valid(embed)) {
                        reply_error(req, 400, "value out of range");
                        return;
                }
                d->fail_after_tokens = (unsigned) fail_after;
                d->fail_status = (int) fail_status;
                d->token_delay_ms = (unsigned) delay;
                d->natural_tokens = (unsigned) tokens;
                d->prefill_us_per_byte = prefill;
                d->embed_us_per_input = embed;
                d->stall = stall == 1;
                d->stall_all = stall_all == 1;
                double_log(d, "faults: fail_after_tokens=%u fail_status=%d stall=%d token_delay_ms=%u "
                           "prefill_us_per_byte=%g embed_us_per_input=%g",
                           d->fail_after_tokens, d->fail_status, d->stall, d->token_delay_ms,
                           d->prefill_us_per_byte, d->embed_us_per_input);
                empty = json_object_new_object();
                reply_json(req, 200, empty);
                return;
        }

        if (strcmp(path, "/__double/stats") == 0 || strcmp(path, "/__double/faults") == 0) {
                reply_error(req, 405, "method not allowed");
                return;
        }
        reply_error(req, 404, "no such control endpoint");
}

/* ---- routing ---------------------------------------------------------------------------- */

typedef struct Route {
        const char *path;       /* a trailing '*' takes one path segment as the parameter */
        int methods;
        Handler handler;
} Route;

static const Route double_routes[] = {
        { "/",                    EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, handle_root },
        { "/api/version",         EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, handle_version },
        { "/api/pull",            EVHTTP_REQ_POST,                  handle_pull },
        { "/api/push",            EVHTTP_REQ_POST,                  handle_push },
        { "/api/tags",            EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, handle_tags },
        { "/api/show",            EVHTTP_REQ_POST,                  handle_show },
        { "/api/delete",          EVHTTP_REQ_DELETE,                handle_delete },
        { "/api/create",          EVHTTP_REQ_POST,                  handle_create },
        { "/api/blobs/*",         EVHTTP_REQ_POST | EVHTTP_REQ_HEAD, handle_blob },
        { "/api/copy",            EVHTTP_REQ_POST,                  handle_copy },
        { "/api/ps",              EVHTTP_REQ_GET,                   handle_ps },
        { "/api/generate",        EVHTTP_REQ_POST,                  handle_generate },
        { "/api/chat",            EVHTTP_REQ_POST,                  handle_chat },
        { "/api/embed",           EVHTTP_REQ_POST,                  handle_embed },
        { "/api/embeddings",      EVHTTP_REQ_POST,                  handle_embeddings },
        { "/v1/chat/completions", EVHTTP_REQ_POST,                  handle_oai_chat },
        { "/v1/completions",      EVHTTP_REQ_POST,                  handle_oai_completions },
        { "/v1/embeddings",       EVHTTP_REQ_POST,                  handle_oai_embeddings },
        { "/v1/models",           EVHTTP_REQ_GET,                   handle_oai_models },
        { "/v1/models/*",         EVHTTP_REQ_GET,                   handle_oai_model },
};

static bool route_match(const Route *r, const char *path, const char **ret_param) {
        size_t n = strlen(r->path);

        if (r->path[n - 1] != '*') {
                *ret_param = NULL;
                return strcmp(r->path, path) == 0;
        }
        if (strncmp(r->path, path, n - 1) != 0)
                return false;
        path += n - 1;
        if (!*path || strchr(path, '/'))
                return false;
        *ret_param = path;
        return true;
}

static void double_set_str(char **p, const char *s) {
        char *n = strdup(s ?: "");

        if (n) {
                free(*p);
                *p = n;
        }
}

static void double_on_request(struct evhttp_request *req, void *userdata) {
        Double *d = userdata;
        const struct evhttp_uri *uri;
        const char *path, *host, *param = NULL;
        enum evhttp_cmd_type cmd;
        bool path_known = false;

        /* evhttp answers requests it gave up on (too large, malformed) itself; be safe anyway. */
        if (!evhttp_request_get_uri(req)) {
                reply_error(req, 400, "bad request");
                return;
        }

        uri = evhttp_request_get_evhttp_uri(req);
        path = (uri ? evhttp_uri_get_path(uri) : NULL) ?: "/";
        if (!*path)
                path = "/";
        cmd = evhttp_request_get_command(req);

        if (strncmp(path, "/__double/", 10) == 0) {
                handle_control(d, req, path);
                return;
        }

        d->requests++;
        host = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
        double_set_str(&d->last_host, host);
        double_set_str(&d->last_path, path);
        double_log(d, "%s %s (Host: %s)",
                   cmd == EVHTTP_REQ_GET ? "GET" : cmd == EVHTTP_REQ_POST ? "POST" : cmd == EVHTTP_REQ_HEAD ? "HEAD" :
                   cmd == EVHTTP_REQ_DELETE ? "DELETE" : "other", path, host ?: "");

        if (d->host_check && d->loopback && !double_text_host_allowed(host, d->hostname)) {
                reply_raw(req, 403, NULL, NULL, 0);
                d->completed++;
                return;
        }

        if (d->stall_all) {
                if (double_stall(d, req) < 0) {
                        reply_error(req, 500, "out of memory");
                        d->completed++;
                }
                return;
        }

        for (size_t i = 0; i < sizeof(double_routes) / sizeof(double_routes[0]); i++) {
                const Route *r = &double_routes[i];

                if (!route_match(r, path, &param))
                        continue;
                path_known = true;
                if (!(r->methods & (int) cmd))
                        continue;
                if (r->handler(d, req, param) == 0)
                        d->completed++;
                return;
        }

        /* gin with HandleMethodNotAllowed: 405 when another method has the path, else 404. */
        if (path_known)
                reply_raw(req, 405, "text/plain", "405 method not allowed", 22);
        else
                reply_raw(req, 404, "text/plain", "404 page not found", 18);
        d->completed++;
}

static struct bufferevent *double_on_connection(struct event_base *base, void *userdata) {
        Double *d = userdata;

        d->connections++;
        return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

static void double_on_signal(evutil_socket_t sig, short what, void *userdata) {
        Double *d = userdata;

        d->shutting_down = true;
        (void) event_base_loopbreak(d->base);
}

/* ---- setup ------------------------------------------------------------------------------ */

static Double *double_free(Double *d) {
        Model *m;

        if (!d)
                return NULL;
        d->shutting_down = true;
        /* Jobs first, without replying: their requests go with the connections below. */
        while (!TAILQ_EMPTY(&d->jobs))
                job_free(TAILQ_FIRST(&d->jobs));
        if (d->http)
                evhttp_free(d->http);
        while ((m = TAILQ_FIRST(&d->models))) {
                TAILQ_REMOVE(&d->models, m, link);
                model_free(m);
        }
        double_cache_free(d->cache);
        if (d->kick)
                event_free(d->kick);
        if (d->sigterm)
                event_free(d->sigterm);
        if (d->sigint)
                event_free(d->sigint);
        if (d->base)
                event_base_free(d->base);
        free(d->listen_host);
        free(d->version);
        free(d->last_host);
        free(d->last_path);
        free(d);
        return NULL;
}

static void double_freep(Double **d) {
        double_free(*d);
}

static int double_new(Double **ret) {
        Double *d = calloc(1, sizeof(*d));

        if (!d)
                return -ENOMEM;
        TAILQ_INIT(&d->models);
        TAILQ_INIT(&d->jobs);
        d->natural_tokens = d->default_natural_tokens = 16;
        d->num_parallel = 1;
        d->max_queue = 512;
        d->host_check = true;
        d->version = strdup("0.6.0");
        d->listen_host = strdup("127.0.0.1");
        d->listen_port = 11435;
        if (!d->version || !d->listen_host) {
                double_free(d);
                return -ENOMEM;
        }
        if (gethostname(d->hostname, sizeof(d->hostname) - 1) < 0)
                d->hostname[0] = '\0';
        *ret = d;
        return 0;
}

static int double_add_models(Double *d, const char *list) {
        _cleanup_dfree_ char *copy = strdup(list);
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                int r;

                while (*tok == ' ')
                        tok++;
                if (!*tok)
                        continue;
                r = double_add_model(d, tok, NULL);
                if (r < 0) {
                        fprintf(stderr, "ollama-double: invalid model name '%s'\n", tok);
                        return r;
                }
        }
        return 0;
}

static int double_listen(Double *d) {
        struct evhttp_bound_socket *sock;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char addr[INET6_ADDRSTRLEN];
        uint16_t port;

        /* epoll waits whole milliseconds: prefill and embedding costs of microseconds need
         * timerfd. Only then, so the default loop stays as it was. */
        if (d->prefill_us_per_byte > 0 || d->embed_us_per_input > 0) {
                struct event_config *cfg = event_config_new();

                if (cfg && event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER) >= 0)
                        d->base = event_base_new_with_config(cfg);
                if (cfg)
                        event_config_free(cfg);
        } else
                d->base = event_base_new();
        if (!d->base)
                return -ENOMEM;
        d->http = evhttp_new(d->base);
        d->kick = event_new(d->base, -1, 0, double_on_kick, d);
        d->sigterm = evsignal_new(d->base, SIGTERM, double_on_signal, d);
        d->sigint = evsignal_new(d->base, SIGINT, double_on_signal, d);
        if (!d->http || !d->kick || !d->sigterm || !d->sigint)
                return -ENOMEM;
        if (event_add(d->sigterm, NULL) < 0 || event_add(d->sigint, NULL) < 0)
                return -EIO;

        evhttp_set_max_body_size(d->http, DOUBLE_MAX_BODY);
        evhttp_set_max_headers_size(d->http, DOUBLE_MAX_HEADERS);
        evhttp_set_timeout(d->http, DOUBLE_HTTP_TIMEOUT_SEC);
        evhttp_set_default_content_type(d->http, NULL);
        evhttp_set_allowed_methods(d->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                   EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH | EVHTTP_REQ_TRACE);
        evhttp_set_gencb(d->http, double_on_request, d);
        evhttp_set_bevcb(d->http, double_on_connection, d);

        sock = evhttp_bind_socket_with_handle(d->http, d->listen_host, d->listen_port);
        if (!sock)
                return -errno ?: -EADDRNOTAVAIL;
        if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *) &ss, &sl) < 0)
                return -errno;
        /* Listening again only sets the backlog: the kernel's somaxconn, as Go's net.Listen
         * (and so Ollama) asks, not libevent's 128, which drops SYNs of 1,000 clients at once. */
        (void) listen(evhttp_bound_socket_get_fd(sock), SOMAXCONN);
        /* Accepted sockets inherit this: like Go's net/http (and so Ollama), write each token at
         * once instead of holding it behind Nagle until the peer's delayed ACK. */
        {
                int one = 1;
                (void) setsockopt(evhttp_bound_socket_get_fd(sock), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }

        if (ss.ss_family == AF_INET6) {
                struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &ss;

                (void) inet_ntop(AF_INET6, &s6->sin6_addr, addr, sizeof(addr));
                port = ntohs(s6->sin6_port);
                d->loopback = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
                printf("ollama-double: listening on http://[%s]:%u\n", addr, port);
        } else {
                struct sockaddr_in *s4 = (struct sockaddr_in *) &ss;

                (void) inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof(addr));
                port = ntohs(s4->sin_port);
                d->loopback = (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
                printf("ollama-double: listening on http://%s:%u\n", addr, port);
        }
        (void) fflush(stdout);
        return 0;
}

static void help(void) {
        printf("Usage: ollama-double [OPTIONS]\n\n"
               "The Ollama test double: deterministic text, not a language model.\n"
               "Serves Ollama's HTTP API (native /api/* and OpenAI /v1/*) for tests, benchmarks\n"
               "and demos. Text and embeddings are pure functions of (model, input).\n\n"
               "  --listen ADDR:PORT         address to bind (default 127.0.0.1:11435; port 0 picks one)\n"
               "  --models LIST              comma-separated models served\n"
               "                             (default llama3.2:latest,all-minilm:latest)\n"
               "  --tokens N                 tokens per answer (default 16); options.num_predict cuts it\n"
               "  --token-delay-ms N         delay before each streamed token (default 0)\n"
               "  --parallel N               requests served at once per model, and the prompt\n"
               "                             cache slots per model (default 1; alias --num-parallel)\n"
               "  --prefill-us-per-byte F    wait per prompt byte not in the cache (default 0)\n"
               "  --embed-us-per-input F     wait per embedding input (default 0)\n"
               "  --multiuser-cache          slot choice of OLLAMA_MULTIUSER_CACHE (default: longest)\n"
               "  --max-queue N              waiting requests before 503 (default 512)\n"
               "  --version-string X         what /api/version reports (default 0.6.0)\n"
               "  --fail-after-tokens N      drop the connection after N tokens (0 = off)\n"
               "  --fail-status CODE         answer inference requests with CODE\n"
               "  --stall                    accept inference requests, never answer\n"
               "  --stall-all                accept every request, never answer\n"
               "  --allow-any-host           skip Ollama's Host check on loopback addresses\n"
               "  --verbose                  log requests to stderr\n"
               "  --help                     this text\n\n"
               "Test-only control endpoints:\n"
               "  POST /__double/faults  {\"fail_after_tokens\":N,\"fail_status\":CODE,\"stall\":BOOL,\n"
               "                          \"stall_all\":BOOL,\"token_delay_ms\":N,\"tokens\":N,\n"
               "                          \"prefill_us_per_byte\":F,\"embed_us_per_input\":F}\n"
               "                         absent fields reset (faults off, the rest to the flags)\n"
               "  GET  /__double/faults  the current settings\n"
               "  GET  /__double/stats   {\"requests\",\"active\",\"completed\",\"cancelled\",\"failed\",\n"
               "                          \"queued\",\"stalled\",\"connections\",\"last_host\",\"last_path\",\n"
               "                          \"cache_hits\",\"cache_hit_bytes\",\"prefill_bytes\",\"embed_inputs\"}\n");
}

static int parse_unsigned(const char *s, unsigned long min, unsigned long max, unsigned long *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        if (!s || !*s || *s == '-')
                return -EINVAL;
        v = strtoul(s, &end, 10);
        if (errno != 0 || *end != '\0' || v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

static int parse_cost(const char *s, double *ret) {
        char *end;
        double v;

        errno = 0;
        if (!s || !*s)
                return -EINVAL;
        v = strtod(s, &end);
        if (errno != 0 || *end != '\0' || !cost_valid(v))
                return -ERANGE;
        *ret = v;
        return 0;
}

static int double_parse_argv(Double *d, int argc, char **argv, const char **ret_models) {
        enum {
                ARG_LISTEN = 0x100,
                ARG_MODELS,
                ARG_TOKENS,
                ARG_TOKEN_DELAY,
                ARG_NUM_PARALLEL,
                ARG_MAX_QUEUE,
                ARG_VERSION_STRING,
                ARG_FAIL_AFTER,
                ARG_FAIL_STATUS,
                ARG_STALL,
                ARG_STALL_ALL,
                ARG_ANY_HOST,
                ARG_VERBOSE,
                ARG_PREFILL,
                ARG_EMBED,
                ARG_MULTIUSER_CACHE,
        };
        static const struct option options[] = {
                { "help",              no_argument,       NULL, 'h' },
                { "listen",            required_argument, NULL, ARG_LISTEN },
                { "models",            required_argument, NULL, ARG_MODELS },
                { "tokens",            required_argument, NULL, ARG_TOKENS },
                { "token-delay-ms",    required_argument, NULL, ARG_TOKEN_DELAY },
                { "parallel",          required_argument, NULL, ARG_NUM_PARALLEL },
                { "num-parallel",      required_argument, NULL, ARG_NUM_PARALLEL },
                { "prefill-us-per-byte", required_argument, NULL, ARG_PREFILL },
                { "embed-us-per-input", required_argument, NULL, ARG_EMBED },
                { "multiuser-cache",   no_argument,       NULL, ARG_MULTIUSER_CACHE },
                { "max-queue",         required_argument, NULL, ARG_MAX_QUEUE },
                { "version-string",    required_argument, NULL, ARG_VERSION_STRING },
                { "fail-after-tokens", required_argument, NULL, ARG_FAIL_AFTER },
                { "fail-status",       required_argument, NULL, ARG_FAIL_STATUS },
                { "stall",             no_argument,       NULL, ARG_STALL },
                { "stall-all",         no_argument,       NULL, ARG_STALL_ALL },
                { "allow-any-host",    no_argument,       NULL, ARG_ANY_HOST },
                { "verbose",           no_argument,       NULL, ARG_VERBOSE },
                {}
        };
        unsigned long v;
        int c, r, idx;

        while ((idx = -1, c = getopt_long(argc, argv, "h", options, &idx)) >= 0) {
                r = 0;
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_LISTEN:
                        free(d->listen_host);
                        d->listen_host = NULL;
                        r = double_text_parse_listen(optarg, &d->listen_host, &d->listen_port);
                        break;
                case ARG_MODELS:
                        *ret_models = optarg;
                        break;
                case ARG_TOKENS:
                        r = parse_unsigned(optarg, 1, DOUBLE_TEXT_MAX_TOKENS, &v);
                        d->natural_tokens = d->default_natural_tokens = (unsigned) v;
                        break;
                case ARG_TOKEN_DELAY:
                        r = parse_unsigned(optarg, 0, 3600000, &v);
                        d->token_delay_ms = d->default_token_delay_ms = (unsigned) v;
                        break;
                case ARG_NUM_PARALLEL:
                        r = parse_unsigned(optarg, 1, DOUBLE_CACHE_MAX_SLOTS, &v);
                        d->num_parallel = (unsigned) v;
                        break;
                case ARG_PREFILL:
                        r = parse_cost(optarg, &d->prefill_us_per_byte);
                        d->default_prefill_us_per_byte = d->prefill_us_per_byte;
                        break;
                case ARG_EMBED:
                        r = parse_cost(optarg, &d->embed_us_per_input);
                        d->default_embed_us_per_input = d->embed_us_per_input;
                        break;
                case ARG_MULTIUSER_CACHE:
                        d->cache_policy = DOUBLE_CACHE_MULTIUSER;
                        break;
                case ARG_MAX_QUEUE:
                        r = parse_unsigned(optarg, 0, DOUBLE_MAX_JOBS, &v);
                        d->max_queue = (unsigned) v;
                        break;
                case ARG_VERSION_STRING:
                        free(d->version);
                        d->version = strdup(optarg);
                        if (!d->version)
                                r = -ENOMEM;
                        break;
                case ARG_FAIL_AFTER:
                        r = parse_unsigned(optarg, 0, UINT32_MAX, &v);
                        d->fail_after_tokens = (unsigned) v;
                        break;
                case ARG_FAIL_STATUS:
                        r = parse_unsigned(optarg, 100, 599, &v);
                        d->fail_status = (int) v;
                        break;
                case ARG_STALL:
                        d->stall = true;
                        break;
                case ARG_STALL_ALL:
                        d->stall_all = true;
                        break;
                case ARG_ANY_HOST:
                        d->host_check = false;
                        break;
                case ARG_VERBOSE:
                        d->verbose = true;
                        break;
                default:
                        return -EINVAL;
                }
                if (r < 0) {
                        fprintf(stderr, "ollama-double: invalid value for --%s: '%s'\n",
                                idx >= 0 ? options[idx].name : "?", optarg);
                        return r;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "ollama-double: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

int main(int argc, char **argv) {
        _cleanup_(double_freep) Double *d = NULL;
        const char *models = "llama3.2:latest,all-minilm:latest";
        int r;

        r = double_new(&d);
        if (r < 0) {
                fprintf(stderr, "ollama-double: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        r = double_parse_argv(d, argc, argv, &models);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        if (sodium_init() < 0) {
                fprintf(stderr, "ollama-double: cannot initialise libsodium\n");
                return EXIT_FAILURE;
        }
        r = double_add_models(d, models);
        if (r < 0)
                return EXIT_FAILURE;
        /* One slot per request served at once, as Ollama's runner has OLLAMA_NUM_PARALLEL. */
        r = double_cache_new(&(DoubleCacheConfig) {
                                .slots = d->num_parallel,
                                .max_prefix = DOUBLE_CACHE_MAX_PREFIX,
                                .max_bytes = DOUBLE_CACHE_MAX_BYTES,
                                .max_models = DOUBLE_MAX_MODELS,
                                .policy = d->cache_policy,
                             }, &d->cache);
        if (r < 0) {
                fprintf(stderr, "ollama-double: cannot set up the prompt cache: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }

        (void) signal(SIGPIPE, SIG_IGN);
        r = double_listen(d);
        if (r < 0) {
                fprintf(stderr, "ollama-double: cannot listen on %s:%u: %s\n", d->listen_host, d->listen_port,
                        strerror(-r));
                return EXIT_FAILURE;
        }

        if (event_base_dispatch(d->base) < 0)
                return EXIT_FAILURE;

        d = double_free(d);
        libevent_global_shutdown();
        return EXIT_SUCCESS;
}
