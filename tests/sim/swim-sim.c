/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* swim-sim: N in-process SWIM nodes (libgossipd's pure core) on a simulated lossy network with a
 * virtual clock and a seeded PRNG; joins, kills, a metadata update, and optionally every node's
 * load changing every second; prints one JSON line. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "swim-wire.h"
#include "swim.h"

#define MS USEC_PER_MSEC
#define SEC USEC_PER_SEC
#define T0 (1000 * SEC)
#define LATENCY_SLOTS 16        /* delivery within 1..latency_max ms, latency_max < this */
#define KILLS_MAX 64
/* Load ages are counted in 10 ms buckets up to this; older ones land in the last bucket. */
#define AGE_BUCKET_MS 10
#define AGE_BUCKETS 60000

/* What the nodes do with their load (--load). */
typedef enum LoadMode {
        LOAD_NONE,      /* nothing: as before loads existed */
        LOAD_STATIC,    /* swim_set_local_load() once at start: the idle mesh */
        LOAD_CHANGE,    /* swim_set_local_load() with a new value every second */
        LOAD_META,      /* the earlier way: metadata "in_flight" with a new value every second */
        _LOAD_MAX,
} LoadMode;

static const char *const load_mode_table[_LOAD_MAX] = {
        [LOAD_NONE] = "none",
        [LOAD_STATIC] = "static",
        [LOAD_CHANGE] = "change",
        [LOAD_META] = "meta",
};

typedef struct Packet {
        uint32_t from, to;
        size_t size;
        uint8_t *data;
} Packet;

typedef struct Slot {
        Packet *p;
        size_t n, alloc;
} Slot;

typedef struct Node {
        Swim *swim;
        uint64_t rng;
        bool up, started;
        char id[NODE_ID_LEN + 1];
} Node;

typedef struct Sim {
        size_t n, n_alloc;
        Node *nodes;
        usec_t now;
        uint64_t rng;
        double loss;
        unsigned latency_max_ms;
        SwimConfig config;
        Slot slots[LATENCY_SLOTS];
        uint64_t false_deaths, false_suspicions, packets, lost;
        const char *victim;     /* currently killed node id, for event classification */

        LoadMode load;
        usec_t next_load_change;        /* USEC_INFINITY: not changing (yet) */
        unsigned load_tick;             /* changes so far: a node's value is a function of it */
        bool load_sampling;             /* sample what nodes hold of each other at each change */
        uint64_t *age_hist;             /* (observer, member) pairs by age of the held load */
        uint64_t pairs, pairs_never, pairs_current;
} Sim;

static const uint8_t sim_key[SWIM_KEY_SIZE] = { 's', 'i', 'm' };

static uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static void sim_random(void *buf, size_t n, void *userdata) {
        uint8_t *b = buf;

        for (size_t i = 0; i < n; i += 8) {
                uint64_t v = splitmix64(userdata);

                memcpy(b + i, &v, MIN((size_t) 8, n - i));
        }
}

static double uniform(Sim *sim) {
        return (double) (splitmix64(&sim->rng) >> 11) / (double) (UINT64_C(1) << 53);
}

static SwimAddr node_addr(size_t i) {
        SwimAddr a = { .family = AF_INET, .port = 11436 };

        a.addr[0] = 10;
        a.addr[1] = (uint8_t) ((i + 1) >> 16);
        a.addr[2] = (uint8_t) ((i + 1) >> 8);
        a.addr[3] = (uint8_t) (i + 1);
        return a;
}

static ssize_t addr_node(Sim *sim, const SwimAddr *a) {
        size_t i = ((size_t) a->addr[1] << 16 | (size_t) a->addr[2] << 8 | a->addr[3]);

        if (a->family != AF_INET || a->addr[0] != 10 || i == 0 || i > sim->n)
                return -1;
        return (ssize_t) i - 1;
}

static void die(const char *what) {
        fprintf(stderr, "swim-sim: %s\n", what);
        exit(2);
}

/* Moves what node i wants to send onto the wire, dropping some. */
static void drain(Sim *sim, size_t i) {
        const void *data;
        size_t size;
        SwimAddr to;

        while (swim_next_datagram(sim->nodes[i].swim, &to, &data, &size) > 0) {
                ssize_t j = addr_node(sim, &to);
                unsigned lat;
                Slot *s;

                sim->packets++;
                if (j < 0 || uniform(sim) < sim->loss) {
                        sim->lost++;
                        continue;
                }
                lat = 1 + (unsigned) (splitmix64(&sim->rng) % sim->latency_max_ms);
                s = &sim->slots[(sim->now / MS + lat) % LATENCY_SLOTS];
                if (s->n == s->alloc) {
                        s->alloc = MAX(s->alloc * 2, (size_t) 64);
                        s->p = realloc(s->p, s->alloc * sizeof(Packet));
                        if (!s->p)
                                die("out of memory");
                }
                s->p[s->n] = (Packet) { .from = (uint32_t) i, .to = (uint32_t) j, .size = size, .data = malloc(size) };
                if (!s->p[s->n].data)
                        die("out of memory");
                memcpy(s->p[s->n].data, data, size);
                s->n++;
        }
}

static void push_pull(Sim *sim, size_t a, size_t b) {
        void *req = NULL, *rep = NULL;
        size_t req_size, rep_size;

        if (!sim->nodes[b].up)
                return;         /* the connection is refused */
        if (swim_push_pull_build(sim->nodes[a].swim, sim->now, false, &req, &req_size) < 0)
                die("push-pull build");
        if (swim_push_pull_receive(sim->nodes[b].swim, sim->now, req, req_size) == 1) {
                if (swim_push_pull_build(sim->nodes[b].swim, sim->now, true, &rep, &rep_size) < 0)
                        die("push-pull build");
                (void) swim_push_pull_receive(sim->nodes[a].swim, sim->now, rep, rep_size);
        }
        free(req);
        free(rep);
        drain(sim, a);
        drain(sim, b);
}

/* Node i's in_flight after the load_tick-th change: never the same twice in a row. */
static uint32_t load_value(unsigned tick, size_t i) {
        return (uint32_t) ((tick + i) % 8);
}

#define LOAD_CAPACITY 4

static void node_set_load(Sim *sim, size_t i) {
        Swim *w = sim->nodes[i].swim;
        char v[16];

        switch (sim->load) {
        case LOAD_STATIC:
        case LOAD_CHANGE:
                (void) swim_set_local_load(w, load_value(sim->load_tick, i), LOAD_CAPACITY);
                break;
        case LOAD_META:
                snprintf(v, sizeof(v), "%" PRIu32, load_value(sim->load_tick, i));
                (void) swim_set_local_meta(w, sim->now, "in_flight", v);
                break;
        default:
                break;
        }
}

/* How current every node's view of every other node's load is, just before the next change:
 * the age of what it holds (LOAD) and whether it is the value the node has now (both ways). */
static void load_sample(Sim *sim) {
        for (size_t i = 0; i < sim->n; i++) {
                Swim *w = sim->nodes[i].swim;

                if (!sim->nodes[i].up)
                        continue;
                for (size_t k = 0; k < swim_n_members(w); k++) {
                        const SwimMember *m = swim_member(w, k);
                        size_t j;
                        uint32_t now_value;

                        if (m->local || m->state != SWIM_STATE_ALIVE)
                                continue;
                        /* Ids are seed then index in hex (node_start()). */
                        j = (size_t) strtoull(m->id + 16, NULL, 16);
                        if (j >= sim->n || !sim->nodes[j].up)
                                continue;
                        now_value = load_value(sim->load_tick, j);
                        sim->pairs++;
                        if (sim->load == LOAD_META) {
                                for (size_t x = 0; x < m->n_meta; x++)
                                        if (streq(m->meta_keys[x], "in_flight") &&
                                            strtoul(m->meta_values[x], NULL, 10) == now_value)
                                                sim->pairs_current++;
                                continue;
                        }
                        if (m->load_at == 0) {
                                sim->pairs_never++;
                                continue;
                        }
                        sim->age_hist[MIN((sim->now - m->load_at) / MS / AGE_BUCKET_MS, (usec_t) AGE_BUCKETS - 1)]++;
                        if (m->load_in_flight == now_value)
                                sim->pairs_current++;
                }
        }
}

static void load_tick(Sim *sim) {
        if (sim->now < sim->next_load_change)
                return;
        if (sim->load_sampling)
                load_sample(sim);
        sim->next_load_change += SEC;
        if (sim->load == LOAD_STATIC)
                return;
        sim->load_tick++;
        for (size_t i = 0; i < sim->n; i++)
                if (sim->nodes[i].up)
                        node_set_load(sim, i);
}

/* The age below which p per cent of the sampled pairs' loads are, in ms; -1 without samples. */
static double age_percentile(Sim *sim, double p) {
        uint64_t total = 0, seen = 0, want;

        for (size_t b = 0; b < AGE_BUCKETS; b++)
                total += sim->age_hist[b];
        if (total == 0)
                return -1;
        want = (uint64_t) ceil(p / 100.0 * (double) total);
        for (size_t b = 0; b < AGE_BUCKETS; b++) {
                seen += sim->age_hist[b];
                if (seen >= MAX(want, (uint64_t) 1))
                        return (double) ((b + 1) * AGE_BUCKET_MS);
        }
        return (double) (AGE_BUCKETS * AGE_BUCKET_MS);
}

static void node_start(Sim *sim, size_t i, uint64_t seed) {
        char name[32];
        SwimLocal l;
        Node *n;

        /* Allocated once: each Swim holds a pointer to its node's rng. */
        if (i >= sim->n_alloc)
                die("too many nodes");
        if (i >= sim->n)
                sim->n = i + 1;
        n = &sim->nodes[i];
        *n = (Node) { .rng = seed * 1000003 + i, .up = true, .started = true };
        snprintf(n->id, sizeof(n->id), "%016" PRIx64 "%016zx", seed, i);
        snprintf(name, sizeof(name), "sim%zu", i);
        l = (SwimLocal) { .id = n->id, .name = name, .addr = node_addr(i), .incarnation = 1 };
        if (swim_new(&n->swim, &sim->config, &l, sim_random, &n->rng, sim->now) < 0)
                die("swim_new");
        if (swim_set_keys(n->swim, &sim_key, 1) < 0)
                die("swim_set_keys");
        (void) swim_set_local_meta(n->swim, sim->now, "api", "0.0.0.0:11434");
        node_set_load(sim, i);
}

static bool node_is(Sim *sim, const char *id) {
        return sim->victim && streq(id, sim->victim);
}

/* Reads every live node's events: a FAILED or a suspicion about a node that is up is false. */
static void scan_events(Sim *sim) {
        for (size_t i = 0; i < sim->n; i++) {
                SwimEvent e;

                if (!sim->nodes[i].up)
                        continue;
                while (swim_next_event(sim->nodes[i].swim, &e) > 0) {
                        const SwimMember *m;
                        bool up_node = false;

                        if (e.type != SWIM_EVENT_FAILED && e.type != SWIM_EVENT_UPDATED)
                                continue;
                        if (node_is(sim, e.id))
                                continue;
                        for (size_t j = 0; j < sim->n; j++)
                                if (sim->nodes[j].up && streq(sim->nodes[j].id, e.id)) {
                                        up_node = true;
                                        break;
                                }
                        if (!up_node)
                                continue;
                        if (e.type == SWIM_EVENT_FAILED) {
                                sim->false_deaths++;
                                fprintf(stderr, "swim-sim: t=%.3fs node %zu declared live node %s dead\n",
                                        (double) (sim->now - T0) / SEC, i, e.id);
                        } else if ((m = swim_member_find(sim->nodes[i].swim, e.id)) && m->state == SWIM_STATE_SUSPECT)
                                sim->false_suspicions++;
                }
        }
}

/* One millisecond of simulated time. */
static void step(Sim *sim) {
        Slot *s;

        sim->now += MS;
        s = &sim->slots[(sim->now / MS) % LATENCY_SLOTS];
        for (size_t k = 0; k < s->n; k++) {
                Packet *p = &s->p[k];

                if (sim->nodes[p->to].up) {
                        SwimAddr from = node_addr(p->from);

                        (void) swim_receive_datagram(sim->nodes[p->to].swim, sim->now, &from, p->data, p->size);
                        drain(sim, p->to);
                }
                free(p->data);
        }
        s->n = 0;
        load_tick(sim);

        for (size_t i = 0; i < sim->n; i++) {
                Node *n = &sim->nodes[i];
                SwimAddr pp;

                if (!n->up)
                        continue;
                if (swim_next_deadline(n->swim) <= sim->now) {
                        (void) swim_tick(n->swim, sim->now);
                        drain(sim, i);
                }
                if (swim_push_pull_due(n->swim, sim->now, &pp) > 0) {
                        ssize_t j = addr_node(sim, &pp);

                        if (j >= 0)
                                push_pull(sim, i, (size_t) j);
                }
        }
}

static size_t n_up(Sim *sim) {
        size_t c = 0;

        for (size_t i = 0; i < sim->n; i++)
                c += sim->nodes[i].up;
        return c;
}

/* Every live node holds every live node alive (not suspect) and nothing else alive. */
static bool converged(Sim *sim) {
        size_t up = n_up(sim);

        for (size_t i = 0; i < sim->n; i++) {
                Swim *w = sim->nodes[i].swim;

                if (!sim->nodes[i].up)
                        continue;
                if (swim_n_alive(w) != up)
                        return false;
                for (size_t j = 0; j < swim_n_members(w); j++)
                        if (swim_member(w, j)->state == SWIM_STATE_SUSPECT)
                                return false;
        }
        return true;
}

/* How many live nodes see `id` in one of the given states (absent counts as dead). */
static size_t count_seeing(Sim *sim, const char *id, bool suspect_ok) {
        size_t c = 0;

        for (size_t i = 0; i < sim->n; i++) {
                const SwimMember *m;

                if (!sim->nodes[i].up)
                        continue;
                m = swim_member_find(sim->nodes[i].swim, id);
                if (!m || m->state == SWIM_STATE_DEAD || m->state == SWIM_STATE_LEFT ||
                    (suspect_ok && m->state == SWIM_STATE_SUSPECT))
                        c++;
        }
        return c;
}

static size_t count_meta(Sim *sim, const char *id, const char *key, const char *value) {
        size_t c = 0;

        for (size_t i = 0; i < sim->n; i++) {
                const SwimMember *m;

                if (!sim->nodes[i].up)
                        continue;
                m = swim_member_find(sim->nodes[i].swim, id);
                if (!m || m->state != SWIM_STATE_ALIVE)
                        continue;
                for (size_t k = 0; k < m->n_meta; k++)
                        if (streq(m->meta_keys[k], key) && streq(m->meta_values[k], value)) {
                                c++;
                                break;
                        }
        }
        return c;
}

static void run_for(Sim *sim, usec_t d) {
        usec_t end = sim->now + d;

        while (sim->now < end) {
                step(sim);
                if ((sim->now / MS) % 100 == 0)
                        scan_events(sim);
        }
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;

        return x < y ? -1 : x > y;
}

static double percentile(double *v, size_t n, double p) {
        size_t i;

        if (n == 0)
                return -1;
        qsort(v, n, sizeof(double), cmp_double);
        i = (size_t) ceil(p / 100.0 * (double) n);
        return v[i > 0 ? i - 1 : 0];
}

static void usage(void) {
        printf("swim-sim [--nodes N] [--loss P] [--seed S] [--kills K] [--soak SECONDS] [--latency-max-ms MS]\n"
               "         [--load none|static|change|meta] [--window SECONDS] [--check]\n"
               "Runs N simulated SWIM nodes with the LAN defaults: converge, measure the traffic for\n"
               "--window seconds (10), kill K nodes one after another, soak, then a new node joins and\n"
               "publishes metadata. Prints one JSON line; --check exits 1 when a killed node is not dead\n"
               "everywhere, a live node was declared dead, or the metadata did not reach every node.\n"
               "--load: none (default), static (swim_set_local_load() once: the idle mesh), change (a new\n"
               "load on every node every second from convergence on), meta (the same as metadata\n"
               "\"in_flight\", the earlier way); with a load, the JSON says how old and how current what\n"
               "nodes hold of each other's load was during the window. SWIM_SIM_DEBUG=1 prints each\n"
               "kill's spread every 100 ms.\n");
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "nodes", required_argument, NULL, 'n' },
                { "loss", required_argument, NULL, 'l' },
                { "seed", required_argument, NULL, 's' },
                { "kills", required_argument, NULL, 'k' },
                { "soak", required_argument, NULL, 'S' },
                { "latency-max-ms", required_argument, NULL, 'L' },
                { "load", required_argument, NULL, 'D' },
                { "window", required_argument, NULL, 'W' },
                { "check", no_argument, NULL, 'c' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        size_t n_nodes = 50, kills = 3, n_det = 0;
        double det_suspect[KILLS_MAX], det_dead[KILLS_MAX], converge_s, meta_join_s = -1, meta_spread_s = -1;
        double soak = 0, pps, bps, window_s = 10;
        uint64_t seed = 1, pk0, by0;
        usec_t t, window;
        bool check = false, all_dead = true, meta_ok = false;
        char victims[KILLS_MAX][NODE_ID_LEN + 1];
        Sim sim = { .loss = 0.05, .latency_max_ms = 2 };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'n':
                        n_nodes = strtoul(optarg, NULL, 10);
                        break;
                case 'l':
                        sim.loss = strtod(optarg, NULL);
                        break;
                case 's':
                        seed = strtoull(optarg, NULL, 10);
                        break;
                case 'k':
                        kills = strtoul(optarg, NULL, 10);
                        break;
                case 'S':
                        soak = strtod(optarg, NULL);
                        break;
                case 'L':
                        sim.latency_max_ms = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 'D':
                        sim.load = _LOAD_MAX;
                        for (LoadMode l = 0; l < _LOAD_MAX; l++)
                                if (streq(optarg, load_mode_table[l]))
                                        sim.load = l;
                        if (sim.load == _LOAD_MAX)
                                die("--load takes none, static, change or meta");
                        break;
                case 'W':
                        window_s = strtod(optarg, NULL);
                        break;
                case 'c':
                        check = true;
                        break;
                case 'h':
                        usage();
                        return 0;
                default:
                        return 2;
                }
        if (n_nodes < 3 || n_nodes > SWIM_MEMBERS_MAX - 1 || kills > KILLS_MAX || kills >= n_nodes - 1 ||
            sim.loss < 0 || sim.loss >= 1 || sim.latency_max_ms < 1 || sim.latency_max_ms >= LATENCY_SLOTS ||
            !(window_s >= 1 && window_s <= 3600))
                die("bad arguments (--help)");

        swim_config_lan(&sim.config);
        sim.n_alloc = n_nodes + 1;
        sim.nodes = calloc(sim.n_alloc, sizeof(Node));
        if (!sim.nodes)
                die("out of memory");
        sim.rng = seed;
        sim.now = T0;
        sim.next_load_change = USEC_INFINITY;
        sim.age_hist = calloc(AGE_BUCKETS, sizeof(uint64_t));
        if (!sim.age_hist)
                die("out of memory");

        /* Joins: one node every 10 ms, each by push-pull with a random node already in. */
        node_start(&sim, 0, seed);
        for (size_t i = 1; i < n_nodes; i++) {
                size_t via = (size_t) (splitmix64(&sim.rng) % i);

                run_for(&sim, 10 * MS);
                node_start(&sim, i, seed);
                push_pull(&sim, i, via);
        }
        for (t = 0; !converged(&sim) && t < 300 * SEC; t += 100 * MS)
                run_for(&sim, 100 * MS);
        converge_s = (double) (sim.now - T0) / SEC;
        if (!converged(&sim))
                die("did not converge within 300 s");
        /* Loads change every second from now on; the 2 s before the window let the traffic
         * that causes settle (the metadata way keeps retransmitting each change a while). */
        if (sim.load != LOAD_NONE)
                sim.next_load_change = sim.now + SEC;
        run_for(&sim, 2 * SEC);

        /* Steady-state traffic. */
        window = (usec_t) (window_s * SEC);
        sim.load_sampling = true;
        pk0 = by0 = 0;
        for (size_t i = 0; i < sim.n; i++) {
                pk0 += swim_counters(sim.nodes[i].swim)->datagrams_sent;
                by0 += swim_counters(sim.nodes[i].swim)->bytes_sent;
        }
        run_for(&sim, window);
        pps = bps = 0;
        for (size_t i = 0; i < sim.n; i++) {
                pps += (double) swim_counters(sim.nodes[i].swim)->datagrams_sent;
                bps += (double) swim_counters(sim.nodes[i].swim)->bytes_sent;
        }
        pps = (pps - (double) pk0) / (double) n_up(&sim) / ((double) window / SEC);
        bps = (bps - (double) by0) / (double) n_up(&sim) / ((double) window / SEC);
        sim.load_sampling = false;

        /* Kills, one after another. */
        for (size_t k = 0; k < kills; k++) {
                size_t v;
                usec_t t_kill, t_suspect = 0, t_dead = 0;
                size_t up;

                do
                        v = 1 + (size_t) (splitmix64(&sim.rng) % (sim.n - 1));
                while (!sim.nodes[v].up);
                scan_events(&sim);
                sim.nodes[v].up = false;
                memcpy(victims[k], sim.nodes[v].id, sizeof(victims[k]));
                sim.victim = victims[k];
                up = n_up(&sim);
                t_kill = sim.now;
                while (sim.now - t_kill < 30 * SEC) {
                        step(&sim);
                        if ((sim.now / MS) % 100 == 0)
                                scan_events(&sim);
                        if (!t_suspect && count_seeing(&sim, victims[k], true) == up)
                                t_suspect = sim.now;
                        if (getenv("SWIM_SIM_DEBUG") && (sim.now - t_kill) % (100 * MS) == 0)
                                fprintf(stderr, "kill %zu +%4" PRIu64 " ms: %zu/%zu suspect-or-dead, %zu dead\n", k,
                                        (sim.now - t_kill) / MS, count_seeing(&sim, victims[k], true), up,
                                        count_seeing(&sim, victims[k], false));
                        if (count_seeing(&sim, victims[k], false) == up) {
                                t_dead = sim.now;
                                break;
                        }
                }
                if (!t_dead)
                        all_dead = false;
                det_suspect[n_det] = t_suspect ? (double) (t_suspect - t_kill) / MS : -1;
                det_dead[n_det] = t_dead ? (double) (t_dead - t_kill) / MS : -1;
                n_det++;
                run_for(&sim, 1 * SEC);
                scan_events(&sim);
                sim.victim = NULL;
        }

        if (soak > 0)
                run_for(&sim, (usec_t) (soak * SEC));
        scan_events(&sim);

        /* A new node joins and publishes its models. */
        {
                size_t nn = sim.n, via;
                usec_t t_join = sim.now, t_meta;
                size_t up;

                do
                        via = (size_t) (splitmix64(&sim.rng) % nn);
                while (!sim.nodes[via].up);
                node_start(&sim, nn, seed);
                push_pull(&sim, nn, via);
                up = n_up(&sim);
                while (sim.now - t_join < 30 * SEC && count_seeing(&sim, sim.nodes[nn].id, false) > 0)
                        step(&sim);
                /* count_seeing() counts "absent": zero means everyone has it. */
                meta_join_s = (double) (sim.now - t_join) / SEC;
                (void) swim_set_local_meta(sim.nodes[nn].swim, sim.now, "models", "llama3.2,qwen2.5");
                t_meta = sim.now;
                while (sim.now - t_meta < 30 * SEC) {
                        if (count_meta(&sim, sim.nodes[nn].id, "models", "llama3.2,qwen2.5") == up) {
                                meta_ok = true;
                                break;
                        }
                        step(&sim);
                }
                meta_spread_s = meta_ok ? (double) (sim.now - t_meta) / SEC : -1;
                if (!meta_ok)
                        fprintf(stderr, "swim-sim: metadata reached %zu of %zu nodes; %zu do not know the node\n",
                                count_meta(&sim, sim.nodes[nn].id, "models", "llama3.2,qwen2.5"), up,
                                count_seeing(&sim, sim.nodes[nn].id, true));
                run_for(&sim, 1 * SEC);
                scan_events(&sim);
        }

        printf("{\"nodes\":%zu,\"loss\":%.3f,\"seed\":%" PRIu64 ",\"converge_s\":%.3f,\"kills\":%zu,"
               "\"suspect_all_ms\":[", n_nodes, sim.loss, seed, converge_s, n_det);
        for (size_t k = 0; k < n_det; k++)
                printf("%s%.0f", k ? "," : "", det_suspect[k]);
        printf("],\"dead_all_ms\":[");
        for (size_t k = 0; k < n_det; k++)
                printf("%s%.0f", k ? "," : "", det_dead[k]);
        {
                double sus[KILLS_MAX], dead[KILLS_MAX];

                memcpy(sus, det_suspect, sizeof(sus));
                memcpy(dead, det_dead, sizeof(dead));
                printf("],\"suspect_all_p50_ms\":%.0f,\"suspect_all_p99_ms\":%.0f,"
                       "\"dead_all_p50_ms\":%.0f,\"dead_all_p99_ms\":%.0f,",
                       percentile(sus, n_det, 50), percentile(sus, n_det, 99),
                       percentile(dead, n_det, 50), percentile(dead, n_det, 99));
        }
        printf("\"all_dead\":%s,\"false_deaths\":%" PRIu64 ",\"false_suspicions\":%" PRIu64 ",\"soak_s\":%.0f,"
               "\"meta_join_s\":%.3f,\"meta_spread_s\":%.3f,\"meta_ok\":%s,"
               "\"packets_per_node_per_s\":%.1f,\"bytes_per_node_per_s\":%.0f,\"packets\":%" PRIu64 ",\"lost\":%" PRIu64 ",",
               all_dead ? "true" : "false", sim.false_deaths, sim.false_suspicions, soak, meta_join_s, meta_spread_s,
               meta_ok ? "true" : "false", pps, bps, sim.packets, sim.lost);
        /* Of the (observer, member) pairs sampled once a second in the window, just before each
         * change: how old the load held was, how many held none, how many held the value the
         * member has now (with "meta": the in_flight metadata). */
        printf("\"load\":\"%s\",\"window_s\":%.0f,\"load_age_p50_ms\":%.0f,\"load_age_p99_ms\":%.0f,"
               "\"load_age_max_ms\":%.0f,\"load_never_pct\":%.2f,\"load_current_pct\":%.2f}\n",
               load_mode_table[sim.load], window_s, age_percentile(&sim, 50), age_percentile(&sim, 99),
               age_percentile(&sim, 100),
               sim.pairs ? 100.0 * (double) sim.pairs_never / (double) sim.pairs : -1,
               sim.pairs ? 100.0 * (double) sim.pairs_current / (double) sim.pairs : -1);

        for (size_t i = 0; i < sim.n; i++)
                swim_free(sim.nodes[i].swim);
        for (size_t i = 0; i < LATENCY_SLOTS; i++) {
                for (size_t k = 0; k < sim.slots[i].n; k++)
                        free(sim.slots[i].p[k].data);
                free(sim.slots[i].p);
        }
        free(sim.nodes);
        free(sim.age_hist);

        if (check && (!all_dead || sim.false_deaths > 0 || !meta_ok)) {
                fprintf(stderr, "swim-sim: check failed: all_dead=%d false_deaths=%" PRIu64 " meta_ok=%d\n",
                        all_dead, sim.false_deaths, meta_ok);
                return 1;
        }
        return 0;
}
