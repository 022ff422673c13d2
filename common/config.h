/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The node's configuration: /etc/mycelia/mycelia.conf (INI, read with libinih), overridden by
 * --config FILE and by one command-line flag per option. One table serves every daemon. */
#pragma once

#include <stdio.h>

#include "build-config.h"
#include "macro.h"

#define CONFIG_DEFAULT_PATH SYSCONFDIR "/mycelia/mycelia.conf"

typedef struct MyceliaConfig {
        /* [node] */
        char *node_name;          /* human name; hostname when unset */
        char *node_id;            /* 32 hex digits; when unset, STATE_DIR/node-id (node-id.h) */
        char *state_dir;
        char *log_level;
        char *mesh_key;           /* file with the mesh key: base64 of 32 bytes */
        /* [bus] */
        char *bus_address;        /* empty: the system bus (honours DBUS_SYSTEM_BUS_ADDRESS) */
        /* [shim] */
        char *api_listen;         /* ADDR:PORT for local Ollama clients */
        char *mesh_listen;        /* ADDR:PORT for requests forwarded by peers; empty: off */
        uint64_t max_body_size;   /* bytes */
        uint64_t max_header_size; /* bytes */
        unsigned max_requests;    /* concurrent requests before 503 */
        unsigned max_connections; /* client connections per listener before accepting pauses */
        uint64_t max_stream_buffer; /* bytes of a response held for a slow client before pausing upstream */
        usec_t idle_timeout;      /* client connection idle/read timeout */
        usec_t connect_timeout;   /* upstream connect timeout */
        usec_t upstream_timeout;  /* upstream silence before the request fails */
        usec_t drain_timeout;     /* SIGTERM: requests in flight may finish for this long */
        char *api_auth;           /* auto, token or none: who may use the API listener; parsed by shimd */
        char *tokens_file;        /* the API's bearer tokens (docs/api-auth.md) */
        char *www_dir;            /* the topology page's files; empty: no page */
        /* [upstream] */
        char *upstream_url;       /* this node's Ollama */
        unsigned upstream_parallel; /* its OLLAMA_NUM_PARALLEL: the capacity routing divides load by */
        /* [router] */
        char *route_policy;
        unsigned embed_split;     /* split embedding requests with more inputs over nodes; 0: never */
        unsigned route_retries;   /* retries before the first byte, on other nodes */
        bool resume;              /* a stream cut mid-answer continues on another node (docs/stream-resume.md) */
        uint64_t resume_max_bytes; /* text kept per stream for that; past it a stream is not resumed */
        unsigned resume_attempts; /* continuations per request at most */
        usec_t resume_stall;      /* a resumable stream silent this long after its first byte is cut and resumed */
        char *gravity_eps;        /* decimal, > 0 and <= 10; parsed by shimd */
        usec_t cooling_wait;      /* every node serving a model cools down: wait this long at most for one */
        usec_t tags_interval;     /* how often the upstream's /api/tags is re-read */
        usec_t probe_interval;    /* how often a down upstream is probed */
        /* [shard] */
        char *shard_listen;       /* ADDR:PORT of shardd's transfer listener (peers' shardd) */
        char *shard_advertise;    /* ADDR:PORT peers reach it at; empty: derived */
        unsigned shard_count;     /* virtual shards of a new collection */
        unsigned shard_replicas;  /* R: nodes each shard lives on */
        unsigned write_quorum;    /* W: holders with a write on disk before it is acknowledged; 0: min(2, R) */
        uint64_t transfer_rate;   /* bytes/s of shard transfers, so inference keeps its latency */
        usec_t shard_sync_interval; /* how often holders compare and repair their shards */
        uint64_t blob_max_size;   /* largest blob shardd stores (docs/blobs.md) */
        /* [gossip] */
        char *gossip_listen;      /* ADDR:PORT for SWIM datagrams (UDP) and push-pull (TCP) */
        char *gossip_advertise;   /* ADDR:PORT peers reach our gossip at; empty: derived */
        usec_t gossip_probe_interval;
        usec_t gossip_probe_timeout;
        unsigned gossip_suspicion_mult;
        usec_t gossip_push_pull_interval;
        /* [discovery] */
        char *seeds;              /* "HOST:PORT,..." gossip addresses; --seed is repeatable */
        bool mdns;                /* publish and browse _mycelia._tcp with Avahi */
        char *avahi_bus;          /* D-Bus address of the system bus avahi-daemon is on */
        /* [audit] */
        bool audit_enabled;       /* one journal entry per request (docs/audit.md) */
        bool audit_content;       /* the audit trail keeps each request's body */
} MyceliaConfig;

void config_init(MyceliaConfig *c);
void config_done(MyceliaConfig *c);

/* Applies defaults, then the config file (--config FILE, else CONFIG_DEFAULT_PATH when it
 * exists), then flags. Flags this table does not know are left for the caller: their indexes
 * are returned in ret_unknown (argv order, at most argc entries), count in ret_n_unknown.
 * Returns -EINVAL with a message on stderr for a bad value, or 1 if --help was asked. */
int config_load(MyceliaConfig *c, int argc, char **argv, int *ret_unknown, int *ret_n_unknown);

/* Parses one "section.key=value" or known key by name, used by the file and flag readers. */
int config_set(MyceliaConfig *c, const char *section, const char *key, const char *value);

/* Prints one "  --flag VALUE   description" line per option. */
void config_help(FILE *f);

/* "100M" -> 104857600. Suffixes K, M, G (powers of 1024), optional trailing B. */
int parse_size(const char *s, uint64_t *ret);
/* "yes"/"no", "true"/"false", "on"/"off", "1"/"0" -> 1 or 0; -EINVAL otherwise. */
int parse_boolean(const char *s);
/* "5s", "250ms", "2m", "1h", "10us"; a bare number is seconds. */
int parse_duration(const char *s, usec_t *ret);
