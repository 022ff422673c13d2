/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One table of options maps INI keys and --flags onto MyceliaConfig fields, so every daemon
 * and the launcher accept the same names, and the file and the command line cannot disagree. */
#include <ctype.h>
#include <ini.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "log.h"

typedef enum ConfigType {
        CONFIG_STRING,
        CONFIG_SIZE,
        CONFIG_UINT,
        CONFIG_DURATION,
        CONFIG_BOOL,
        CONFIG_LIST,    /* comma-separated; a repeated flag appends */
} ConfigType;

typedef struct ConfigOption {
        const char *section;
        const char *key;
        const char *flag;
        ConfigType type;
        size_t offset;
        const char *default_value;
        const char *help;
} ConfigOption;

#define O(s, k, f, t, field, d, h) { s, k, f, t, offsetof(MyceliaConfig, field), d, h }

static const ConfigOption config_options[] = {
        O("node", "name", "name", CONFIG_STRING, node_name, "", "human name of this node (default: hostname)"),
        O("node", "id", "node-id", CONFIG_STRING, node_id, "", "node id, 32 hex digits (default: made on first start, kept in STATE_DIR/node-id)"),
        O("node", "state_dir", "state-dir", CONFIG_STRING, state_dir, LOCALSTATEDIR "/lib/mycelia", "state directory"),
        O("node", "log_level", "log-level", CONFIG_STRING, log_level, "", "debug, info, notice, warning, err (default: $MYCELIA_LOG_LEVEL, else info)"),
        O("node", "mesh_key", "mesh-key", CONFIG_STRING, mesh_key, SYSCONFDIR "/mycelia/mesh.key", "file with the mesh key (base64 of 32 bytes; myceliactl keygen)"),
        O("bus", "address", "bus", CONFIG_STRING, bus_address, "", "D-Bus address (default: the system bus)"),
        O("shim", "api", "api", CONFIG_STRING, api_listen, "127.0.0.1:11434", "ADDR:PORT of the Ollama API for local clients"),
        O("shim", "mesh", "mesh", CONFIG_STRING, mesh_listen, "", "ADDR:PORT of the mesh API for peers, 11438 by convention (empty: off)"),
        O("shim", "max_body_size", "max-body-size", CONFIG_SIZE, max_body_size, "100M", "largest request body accepted"),
        O("shim", "max_header_size", "max-header-size", CONFIG_SIZE, max_header_size, "64K", "largest request header block accepted"),
        O("shim", "max_requests", "max-requests", CONFIG_UINT, max_requests, "512", "concurrent requests before 503 server busy"),
        O("shim", "max_connections", "max-connections", CONFIG_UINT, max_connections, "4096", "client connections per listener; past it new ones wait in the listen backlog"),
        O("shim", "max_stream_buffer", "max-stream-buffer", CONFIG_SIZE, max_stream_buffer, "1M", "response bytes held for a slow client before reading from upstream pauses"),
        O("shim", "idle_timeout", "idle-timeout", CONFIG_DURATION, idle_timeout, "60s", "client connection idle timeout"),
        O("shim", "connect_timeout", "connect-timeout", CONFIG_DURATION, connect_timeout, "5s", "upstream connect timeout"),
        O("shim", "upstream_timeout", "upstream-timeout", CONFIG_DURATION, upstream_timeout, "300s", "upstream silence before a request fails"),
        O("shim", "drain_timeout", "drain-timeout", CONFIG_DURATION, drain_timeout, "8s", "on SIGTERM, how long requests in flight may finish (below TimeoutStopSec=10s)"),
        O("shim", "api_auth", "api-auth", CONFIG_STRING, api_auth, "auto", "who may use the API: auto (a token is needed unless it is bound to loopback), token (always), none (never: open to anyone who reaches it)"),
        O("shim", "tokens", "tokens", CONFIG_STRING, tokens_file, SYSCONFDIR "/mycelia/tokens", "file of the API's bearer tokens (myceliactl token add)"),
        O("shim", "www_dir", "www-dir", CONFIG_STRING, www_dir, PKGDATADIR "/www", "folder of the topology page served at /mycelia/ (empty: no page)"),
        O("upstream", "url", "upstream", CONFIG_STRING, upstream_url, "http://127.0.0.1:11435", "URL of this node's Ollama"),
        O("upstream", "parallel", "parallel", CONFIG_UINT, upstream_parallel, "1", "requests this node's Ollama serves at once (its OLLAMA_NUM_PARALLEL), published as capacity"),
        O("router", "policy", "policy", CONFIG_STRING, route_policy, "gravity", "routing policy: gravity, round-robin, least-loaded, latency, local-first"),
        O("router", "retries", "retries", CONFIG_UINT, route_retries, "2", "a request that fails before its first byte (refused, reset, 5xx, timeout) is retried on this many other nodes at most (up to 7)"),
        O("router", "resume", "resume", CONFIG_BOOL, resume, "yes", "a streamed chat (or raw generate) whose serving node dies or stalls mid-answer continues on another node, in the same stream"),
        O("router", "resume_max_bytes", "resume-max-bytes", CONFIG_SIZE, resume_max_bytes, "1M", "answer text kept per stream for resuming it; a longer answer is not resumed"),
        O("router", "resume_attempts", "resume-attempts", CONFIG_UINT, resume_attempts, "1", "continuations of one stream at most (0: none; up to 7)"),
        O("router", "resume_stall", "resume-stall", CONFIG_DURATION, resume_stall, "30s", "a resumable stream whose node sends nothing for this long after the first byte is resumed elsewhere"),
        O("router", "embed_split", "embed-split", CONFIG_UINT, embed_split, "64", "embeddings of more inputs than this are split over the nodes serving the model (0: never)"),
        O("router", "gravity_eps", "gravity-eps", CONFIG_STRING, gravity_eps, "0.25", "gravity: a context stays on its node while that node has at most (1 + eps) times the mean load"),
        O("router", "cooling_wait", "cooling-wait", CONFIG_DURATION, cooling_wait, "10s", "when every node serving a model cools down, a request waits this long at most for the first to recover"),
        O("router", "tags_interval", "tags-interval", CONFIG_DURATION, tags_interval, "10s", "how often the upstream's model list is refreshed"),
        O("router", "probe_interval", "probe-interval", CONFIG_DURATION, probe_interval, "1s", "how often a down upstream is probed"),
        O("shard", "listen", "shard", CONFIG_STRING, shard_listen, "0.0.0.0:11437", "ADDR:PORT of shardd's transfer listener for peers"),
        O("shard", "advertise", "shard-advertise", CONFIG_STRING, shard_advertise, "", "ADDR:PORT peers reach shardd at (default: derived from the listen address)"),
        O("shard", "shards", "shards", CONFIG_UINT, shard_count, "64", "virtual shards of a new collection (1 to 4096)"),
        O("shard", "replicas", "replicas", CONFIG_UINT, shard_replicas, "2", "nodes each shard of a new collection lives on (1 to 8)"),
        O("shard", "write_quorum", "write-quorum", CONFIG_UINT, write_quorum, "0", "holders that must have a write on disk before it is acknowledged (0: 2, or 1 when replicas is 1)"),
        O("shard", "transfer_rate", "transfer-rate", CONFIG_SIZE, transfer_rate, "50M", "bytes per second shard transfers may use"),
        O("shard", "sync_interval", "shard-sync-interval", CONFIG_DURATION, shard_sync_interval, "30s", "how often the holders of a shard compare and repair it"),
        O("shard", "blob_max_size", "blob-max-size", CONFIG_SIZE, blob_max_size, "100M", "largest blob (adapter, model file) shardd stores, as the shim's max_body_size; bodies are held in memory while they travel"),
        O("gossip", "listen", "gossip", CONFIG_STRING, gossip_listen, "0.0.0.0:11436", "ADDR:PORT of SWIM gossip (UDP) and push-pull (TCP)"),
        O("gossip", "advertise", "gossip-advertise", CONFIG_STRING, gossip_advertise, "", "ADDR:PORT peers reach this node's gossip at (default: derived from the listen address)"),
        O("gossip", "probe_interval", "gossip-probe-interval", CONFIG_DURATION, gossip_probe_interval, "200ms", "one member is probed this often"),
        O("gossip", "probe_timeout", "gossip-probe-timeout", CONFIG_DURATION, gossip_probe_timeout, "100ms", "ack wait before indirect probes"),
        O("gossip", "suspicion_mult", "gossip-suspicion-mult", CONFIG_UINT, gossip_suspicion_mult, "4", "suspicion timeout in probe intervals, times log10(members)"),
        O("gossip", "push_pull_interval", "gossip-push-pull-interval", CONFIG_DURATION, gossip_push_pull_interval, "30s", "full-state exchange with one member this often"),
        O("discovery", "seeds", "seed", CONFIG_LIST, seeds, "", "HOST:PORT gossip address of a peer to join; repeatable, or comma-separated"),
        O("discovery", "mdns", "mdns", CONFIG_BOOL, mdns, "yes", "publish and browse _mycelia._tcp with avahi-daemon"),
        O("discovery", "avahi_bus", "avahi-bus", CONFIG_STRING, avahi_bus, "unix:path=/run/dbus/system_bus_socket", "D-Bus address of the system bus avahi-daemon is on"),
        O("audit", "enabled", "audit", CONFIG_BOOL, audit_enabled, "yes", "one journal entry per request the shim answers, whatever log_level says"),
        O("audit", "content", "audit-content", CONFIG_BOOL, audit_content, "no", "the audit trail keeps each request's body (the prompt), up to 64K"),
};

int parse_size(const char *s, uint64_t *ret) {
        unsigned long long n;
        uint64_t mult = 1;
        char *end;

        if (isempty(s) || *s == '-')
                return -EINVAL;
        errno = 0;
        n = strtoull(s, &end, 10);
        if (errno != 0 || end == s)
                return -EINVAL;
        switch (toupper((unsigned char) *end)) {
        case 'K': mult = 1ULL << 10; end++; break;
        case 'M': mult = 1ULL << 20; end++; break;
        case 'G': mult = 1ULL << 30; end++; break;
        case 'T': mult = 1ULL << 40; end++; break;
        default: break;
        }
        if (toupper((unsigned char) *end) == 'B')
                end++;
        if (*end)
                return -EINVAL;
        if (n > UINT64_MAX / mult)
                return -ERANGE;
        *ret = (uint64_t) n * mult;
        return 0;
}

int parse_duration(const char *s, usec_t *ret) {
        static const struct {
                const char *suffix;
                usec_t mult;
        } units[] = {
                { "us", 1 },
                { "ms", USEC_PER_MSEC },
                { "s", USEC_PER_SEC },
                { "", USEC_PER_SEC },
                { "m", 60 * USEC_PER_SEC },
                { "min", 60 * USEC_PER_SEC },
                { "h", 3600 * USEC_PER_SEC },
        };
        unsigned long long n;
        char *end;

        if (isempty(s) || *s == '-')
                return -EINVAL;
        errno = 0;
        n = strtoull(s, &end, 10);
        if (errno != 0 || end == s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (streq(end, units[i].suffix)) {
                        if (n > UINT64_MAX / units[i].mult)
                                return -ERANGE;
                        *ret = (usec_t) n * units[i].mult;
                        return 0;
                }
        return -EINVAL;
}

static int config_option_apply(MyceliaConfig *c, const ConfigOption *o, const char *value) {
        void *field = (uint8_t *) c + o->offset;
        uint64_t u;
        int r;

        switch (o->type) {
        case CONFIG_STRING: {
                char *copy = strdup(value);
                if (!copy)
                        return -ENOMEM;
                free(*(char **) field);
                *(char **) field = copy;
                return 0;
        }
        case CONFIG_SIZE:
                r = parse_size(value, &u);
                if (r < 0)
                        return r;
                *(uint64_t *) field = u;
                return 0;
        case CONFIG_UINT:
                r = parse_size(value, &u);
                if (r < 0)
                        return r;
                if (u > UINT32_MAX)
                        return -ERANGE;
                *(unsigned *) field = (unsigned) u;
                return 0;
        case CONFIG_DURATION:
                return parse_duration(value, (usec_t *) field);
        case CONFIG_BOOL:
                r = parse_boolean(value);
                if (r < 0)
                        return r;
                *(bool *) field = r;
                return 0;
        case CONFIG_LIST: {
                /* The file and the first flag replace the default; config_list_append() adds. */
                char *copy = strdup(value);
                if (!copy)
                        return -ENOMEM;
                free(*(char **) field);
                *(char **) field = copy;
                return 0;
        }
        }
        return -EINVAL;
}

void config_init(MyceliaConfig *c) {
        *c = (MyceliaConfig) {};
        for (size_t i = 0; i < ELEMENTSOF(config_options); i++)
                /* Defaults are literals from the table above and always parse. */
                (void) config_option_apply(c, &config_options[i], config_options[i].default_value);
}

void config_done(MyceliaConfig *c) {
        for (size_t i = 0; i < ELEMENTSOF(config_options); i++)
                if (IN_SET(config_options[i].type, CONFIG_STRING, CONFIG_LIST)) {
                        char **p = (char **) ((uint8_t *) c + config_options[i].offset);
                        free(*p);
                        *p = NULL;
                }
}

int parse_boolean(const char *s) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (strcaseeq(s, yes[i]))
                        return 1;
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (strcaseeq(s, no[i]))
                        return 0;
        return -EINVAL;
}

static int config_list_append(MyceliaConfig *c, const ConfigOption *o, const char *value) {
        char **field = (char **) ((uint8_t *) c + o->offset);
        char *joined;

        if (isempty(*field))
                return config_option_apply(c, o, value);
        if (asprintf(&joined, "%s,%s", *field, value) < 0)
                return -ENOMEM;
        free(*field);
        *field = joined;
        return 0;
}

int config_set(MyceliaConfig *c, const char *section, const char *key, const char *value) {
        for (size_t i = 0; i < ELEMENTSOF(config_options); i++) {
                const ConfigOption *o = &config_options[i];

                if (streq(o->section, section) && streq(o->key, key))
                        return config_option_apply(c, o, value);
        }
        return -ENOENT;
}

static const ConfigOption *config_option_by_flag(const char *flag) {
        for (size_t i = 0; i < ELEMENTSOF(config_options); i++)
                if (streq(config_options[i].flag, flag))
                        return &config_options[i];
        return NULL;
}

typedef struct IniContext {
        MyceliaConfig *config;
        const char *path;
        int error;
} IniContext;

static int config_ini_handler(void *userdata, const char *section, const char *key, const char *value) {
        IniContext *ctx = userdata;
        int r;

        r = config_set(ctx->config, section, key, value);
        if (r == -ENOENT) {
                /* Unknown keys are tolerated so that an older daemon reads a newer file. */
                fprintf(stderr, "%s: ignoring unknown option [%s] %s\n", ctx->path, section, key);
                return 1;
        }
        if (r < 0) {
                fprintf(stderr, "%s: invalid value for [%s] %s: '%s'\n", ctx->path, section, key, value);
                ctx->error = r;
                return 0;
        }
        return 1;
}

static int config_parse_file(MyceliaConfig *c, const char *path, bool must_exist) {
        IniContext ctx = { .config = c, .path = path };
        FILE *f;
        int r;

        f = fopen(path, "re");
        if (!f) {
                if (errno == ENOENT && !must_exist)
                        return 0;
                r = -errno;
                fprintf(stderr, "Failed to open %s: %s\n", path, strerror(-r));
                return r;
        }
        r = ini_parse_file(f, config_ini_handler, &ctx);
        fclose(f);
        if (ctx.error < 0)
                return ctx.error;
        if (r != 0) {
                fprintf(stderr, "%s:%d: syntax error\n", path, r);
                return -EINVAL;
        }
        return 0;
}

/* Splits "--flag=value" or "--flag value"; returns the number of argv slots used, or 0 if
 * argv[i] is not a --flag. */
static int flag_split(int argc, char **argv, int i, char *name, size_t name_size, const char **ret_value) {
        const char *arg = argv[i], *eq;

        if (!strneq(arg, "--", 2) || arg[2] == '\0')
                return 0;
        arg += 2;
        eq = strchr(arg, '=');
        if (eq) {
                snprintf(name, name_size, "%.*s", (int) (eq - arg), arg);
                *ret_value = eq + 1;
                return 1;
        }
        snprintf(name, name_size, "%s", arg);
        *ret_value = i + 1 < argc ? argv[i + 1] : NULL;
        return 2;
}

int config_load(MyceliaConfig *c, int argc, char **argv, int *ret_unknown, int *ret_n_unknown) {
        const char *config_path = NULL;
        int n_unknown = 0, r;

        /* Pass 1: --config and --help. */
        for (int i = 1; i < argc; i++) {
                const char *value;
                char name[64];
                int used;

                if (streq(argv[i], "--help") || streq(argv[i], "-h"))
                        return 1;
                used = flag_split(argc, argv, i, name, sizeof(name), &value);
                if (used > 0 && streq(name, "config")) {
                        if (!value) {
                                fprintf(stderr, "--config needs a file name\n");
                                return -EINVAL;
                        }
                        config_path = value;
                        i += used - 1;
                }
        }

        r = config_parse_file(c, config_path ?: CONFIG_DEFAULT_PATH, config_path != NULL);
        if (r < 0)
                return r;

        /* Pass 2: flags override the file; a list flag given more than once accumulates. */
        bool list_seen[ELEMENTSOF(config_options)] = {};
        for (int i = 1; i < argc; i++) {
                const ConfigOption *o;
                const char *value;
                char name[64];
                int used;

                used = flag_split(argc, argv, i, name, sizeof(name), &value);
                if (used > 0 && streq(name, "config")) {
                        i += used - 1;
                        continue;
                }
                o = used > 0 ? config_option_by_flag(name) : NULL;
                if (!o) {
                        if (ret_unknown)
                                ret_unknown[n_unknown] = i;
                        n_unknown++;
                        continue;
                }
                if (!value) {
                        fprintf(stderr, "--%s needs a value\n", name);
                        return -EINVAL;
                }
                if (o->type == CONFIG_LIST && list_seen[o - config_options])
                        r = config_list_append(c, o, value);
                else
                        r = config_option_apply(c, o, value);
                if (o->type == CONFIG_LIST)
                        list_seen[o - config_options] = true;
                if (r < 0) {
                        fprintf(stderr, "Invalid value for --%s: '%s'\n", name, value);
                        return r;
                }
                i += used - 1;
        }

        if (!isempty(c->log_level)) {
                int level = log_level_from_string(c->log_level);
                if (level < 0) {
                        fprintf(stderr, "Invalid log level '%s'\n", c->log_level);
                        return -EINVAL;
                }
                log_set_max_level(level);
        }

        if (ret_n_unknown)
                *ret_n_unknown = n_unknown;
        return 0;
}

void config_help(FILE *f) {
        fprintf(f, "  --config FILE              configuration file (default %s)\n", CONFIG_DEFAULT_PATH);
        for (size_t i = 0; i < ELEMENTSOF(config_options); i++) {
                const ConfigOption *o = &config_options[i];
                char flag[64];

                snprintf(flag, sizeof(flag), "--%s VALUE", o->flag);
                fprintf(f, "  %-26s %s [%s] %s, default '%s'\n", flag, o->help, o->section, o->key,
                        o->default_value);
        }
}
