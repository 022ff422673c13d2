#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The shard store's two benchmarks of issue 10 on real processes: ingest through the shim's
# collections API (1 node against 3 with R = 2), and the rebalance after kill -9 of a node.
"""bench/shards.py [BUILD_DIR] [--docs N] [--batch B] [--concurrency C] [--queries Q]
                 [--transfer-rate RATE] [--no-single] [--timeout S]

Run by hand, never by meson test. Python 3 standard library only. Everything on loopback; every
process is started through tests/integration/harness.py and killed on every way out. About 2 to
2.5 minutes at the defaults on 2 cores.

1. Ingest. N documents (dimension 384, normalized, values rounded to 6 digits, a text of about 40
   bytes and two metadata fields each) with their embeddings, posted in batches of B, C requests
   at a time (default 1) each on a kept-alive connection, to the first node's
   POST /api/mycelia/collections/bench/documents: once on a single node (--replicas 1, so W = 1),
   then on three launchers (--replicas 2 and the default write quorum, W = 2). Documents/s over
   the whole ingest, per-batch latency p50/p99, the CPU seconds of each process, and the bytes
   the sync rounds moved meanwhile (ShardStore1.Sync).
2. Rebalance. On the three nodes after the ingest: the third node's Shards answer (what it held:
   the minimum that has to be copied), then the whole node killed at once (its launcher's process
   tree frozen with SIGSTOP, then SIGKILLed), then polling ShardStore1 on the two survivors: Nodes
   (suspected, then gone: declared dead) and Collections (documents held here) until both hold
   all N, two copies of everything again. Sync's bytes_moved then, once the rounds are idle, and
   after the next periodic round: bytes moved against the minimum; bytes / [shard] transfer_rate
   per sending node is the part of the copy time the throttle takes.

After each phase a sample of Q stored embeddings is queried (k = 1) and must come back as its own
id, not partial, so a fast but wrong run cannot pass; the run exits 1 when any check failed.

The vectors: N / 64 random unit vectors and 64 cyclic shifts of each. A shift
keeps the norm, so every document is a distinct unit vector and its own nearest neighbour, and the
JSON of 100,000 documents is made in a second instead of a minute of Python. Exact search does not
care how the vectors are distributed.

Prints a Markdown section for bench/RESULTS.md on stdout; progress on stderr.
"""

import argparse
import http.client
import json
import math
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

COLLECTION = 'bench'
DIM = 384
SHIFTS = 64                     # documents per random base vector (cyclic shifts of it)
STORE = 'org.mycelia.ShardStore1'
DEFAULT_RATE = '50M'             # [shard] transfer_rate's default (common/config.c)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('build', nargs='?', default=os.path.join(ROOT, 'build'))
    ap.add_argument('--docs', type=int, default=100000, help='documents to ingest (default 100000)')
    ap.add_argument('--batch', type=int, default=500, help='documents per request (default 500)')
    ap.add_argument('--concurrency', type=int, default=1, help='requests in flight, each on its own connection')
    ap.add_argument('--queries', type=int, default=200, help='stored embeddings queried after each phase')
    ap.add_argument('--transfer-rate', default=None,
                    help='[shard] transfer_rate of the three nodes, e.g. 1G (default: the daemon default, 50M)')
    ap.add_argument('--no-single', action='store_true', help='skip the single-node ingest')
    ap.add_argument('--timeout', type=float, default=240.0, help='seconds the rebalance may take before it fails')
    a = ap.parse_args()
    if not (1000 <= a.docs <= 1000000 and 1 <= a.batch <= 4096 and 1 <= a.queries <= 5000 and
            1 <= a.concurrency <= 8):
        ap.error('--docs 1000..1000000, --batch 1..4096, --queries 1..5000, --concurrency 1..8')
    return a


ARGS = parse_args()
BUILD = os.path.abspath(ARGS.build)
sys.path.insert(0, HERE)
import benchenv  # noqa: E402

harness = benchenv.use_build(BUILD, 'bench/shards.py')
from harness import BusError, parse_size, start_mesh, stop_mesh, wait_until  # noqa: E402

RATE = parse_size(ARGS.transfer_rate or DEFAULT_RATE)
FAILURES = []


def log(msg):
    print('# %s' % msg, file=sys.stderr, flush=True)


def check(ok, what):
    if not ok:
        FAILURES.append(what)
        log('CHECK FAILED: ' + what)
    return ok


def quantile(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


# ---- the documents ----

class Corpus:
    """N documents: ids d000000..., embeddings as JSON text (cyclic shifts of random unit vectors)."""

    def __init__(self, n, seed=20261208):
        rng = random.Random(seed)
        self.n = n
        self.bases = []
        for _ in range((n + SHIFTS - 1) // SHIFTS):
            v = [rng.gauss(0, 1) for _ in range(DIM)]
            s = 1 / math.sqrt(sum(x * x for x in v))
            self.bases.append([repr(round(x * s, 6)) for x in v])

    def doc_id(self, i):
        return 'd%06d' % i

    def embedding_json(self, i):
        e = self.bases[i // SHIFTS]
        k = i % SHIFTS
        return '[' + ','.join(e[k:] + e[:k]) + ']'

    def bodies(self, batch):
        """The request bodies, made before the clock starts (bytes)."""
        out = []
        for start in range(0, self.n, batch):
            docs = ['{"id":"%s","text":"document %d of the shard benchmark","metadata":{"i":%d,"topic":%d},'
                    '"embedding":%s}' % (self.doc_id(i), i, i, i % 16, self.embedding_json(i))
                    for i in range(start, min(self.n, start + batch))]
            out.append(('{"documents":[' + ','.join(docs) + ']}').encode())
        return out


# ---- processes and their CPU ----

CLK_TCK = os.sysconf('SC_CLK_TCK')


def proc_cpu(pid):
    with open('/proc/%d/stat' % pid) as f:
        rest = f.read().rsplit(')', 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK     # utime + stime


def cpu_snapshot(nodes):
    """{(node name, program): CPU seconds} over each launcher's process tree, plus this process and
    the machine's /proc/stat totals (user+system, iowait, idle, in seconds)."""
    out = {}
    for name, node in nodes.items():
        for pid in [node.pid] + harness.proc_descendants(node.pid):
            try:
                key = (name, harness.proc_exe_name(pid))
                out[key] = out.get(key, 0.0) + proc_cpu(pid)
            except (OSError, ValueError, IndexError):
                pass
    t = os.times()
    out[('client', 'bench/shards.py')] = t.user + t.system
    with open('/proc/stat') as f:
        v = [int(x) / CLK_TCK for x in f.readline().split()[1:]]
    out['machine'] = {'busy': v[0] + v[1] + v[2] + v[5] + v[6] + v[7], 'iowait': v[4], 'idle': v[3],
                      'wall': time.monotonic()}
    return out


def cpu_diff(a, b):
    d = {k: b[k] - a.get(k, 0.0) for k in b if k != 'machine'}
    m = {k: b['machine'][k] - a['machine'][k] for k in b['machine']}
    return d, m


# ---- talking to a node ----

def shard_prop(node, name):
    return node.prop(STORE, name)


def documents_here(node):
    try:
        for c in shard_prop(node, 'Collections'):
            if c[0] == COLLECTION:
                return int(c[6])
    except (BusError, TimeoutError, ValueError):
        return None
    return 0


def sync_counters(node):
    return {k: int(v) for k, v in dict(shard_prop(node, 'Sync')).items()}


def shard_member_ids(node):
    """{node id: alive} from ShardStore1.Nodes; None while it cannot be read."""
    try:
        return {t[0]: bool(t[2]) for t in shard_prop(node, 'Nodes')}
    except (BusError, TimeoutError, ValueError):
        return None


def create_collection(node):
    r = node.request('POST', '/api/mycelia/collections', {'name': COLLECTION, 'dimension': DIM, 'metric': 'cosine'})
    if r.status != 200:
        raise RuntimeError('creating the collection: %r' % r)


def verify_queries(corpus, nodes, what):
    """Q stored embeddings, k = 1, asked round-robin of nodes: each must answer its own id, complete."""
    sample = random.Random('%s-%d' % (what, corpus.n)).sample(range(corpus.n), min(ARGS.queries, corpus.n))
    wrong, partial, times = [], 0, []
    conns = {n.name: http.client.HTTPConnection(n.addr[0], n.addr[1], timeout=60) for n in nodes}
    try:
        for j, i in enumerate(sample):
            node = nodes[j % len(nodes)]
            body = ('{"embedding":%s,"k":1}' % corpus.embedding_json(i)).encode()
            t0 = time.monotonic()
            r = node.request('POST', '/api/mycelia/collections/%s/query' % COLLECTION, body,
                             {'Content-Type': 'application/json'}, timeout=60, conn=conns[node.name])
            times.append(time.monotonic() - t0)
            ans = r.json() if r.status == 200 else {'results': [], 'error': r.body[:200]}
            got = [x.get('id') for x in ans.get('results', [])]
            if got != [corpus.doc_id(i)]:
                wrong.append((corpus.doc_id(i), node.name, got or ans.get('error')))
            partial += bool(ans.get('partial'))
    finally:
        for c in conns.values():
            c.close()
    ok = check(not wrong and partial == 0, '%s: %d of %d queries wrong, %d partial (first: %r)' % (
        what, len(wrong), len(sample), partial, wrong[:3]))
    return {'n': len(sample), 'wrong': len(wrong), 'partial': partial, 'ok': ok,
            'p50': statistics.median(times), 'p99': quantile(times, 0.99)}


# ---- the phases ----

def wait_shard_members(nodes, n):
    ids = {node.node_id for node in nodes.values()}
    wait_until(lambda: all(set(shard_member_ids(node) or {}) == ids for node in nodes.values()), 30,
               what='every shardd listing the %d nodes' % n)


def ingest(label, nodes, bodies, corpus):
    """Posts every body to the first node; returns the measurements."""
    entry = next(iter(nodes.values()))
    create_collection(entry)
    wait_until(lambda: all(documents_here(n) == 0 for n in nodes.values()), 15,
               what='collection %s known on every node' % COLLECTION)
    sync0 = {name: sync_counters(n) for name, n in nodes.items()}
    path = '/api/mycelia/collections/%s/documents' % COLLECTION
    lat, stored, errors = [], [0], []
    next_batch = iter(range(len(bodies)))
    lock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection(entry.addr[0], entry.addr[1], timeout=120)
        try:
            while not errors:
                with lock:
                    k = next(next_batch, None)
                if k is None:
                    return
                t = time.monotonic()
                conn.request('POST', path, body=bodies[k], headers={'Content-Type': 'application/json'})
                r = conn.getresponse()
                data = r.read()
                dt = time.monotonic() - t
                if r.status != 200:
                    raise RuntimeError('%s: batch %d answered %d: %r' % (label, k, r.status, data[:300]))
                n = len(json.loads(data)['ids'])
                with lock:
                    lat.append(dt)
                    stored[0] += n
                    if len(lat) % 40 == 0:
                        log('%s: %d documents, %.0f docs/s so far' % (label, stored[0],
                                                                       stored[0] / (time.monotonic() - t0)))
        except Exception as e:  # noqa: BLE001 - reported below, stops the others
            errors.append(e)
        finally:
            conn.close()

    cpu0 = cpu_snapshot(nodes)
    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(ARGS.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    stored = stored[0]
    wall = time.monotonic() - t0
    cpu, machine = cpu_diff(cpu0, cpu_snapshot(nodes))
    sync1 = {name: sync_counters(n) for name, n in nodes.items()}
    counts = {name: documents_here(n) for name, n in nodes.items()}
    copies = 1 if len(nodes) == 1 else 2
    check(stored == corpus.n, '%s: %d ids answered for %d documents' % (label, stored, corpus.n))
    check(sum(c or 0 for c in counts.values()) == copies * corpus.n,
          '%s: per-node counts %r do not add up to %d copies' % (label, counts, copies))
    res = {
        'label': label, 'nodes': len(nodes), 'wall': wall, 'docs_s': corpus.n / wall, 'batches': len(bodies),
        'p50': statistics.median(lat), 'p99': quantile(lat, 0.99), 'max': max(lat),
        'mb': sum(len(b) for b in bodies) / 1e6, 'counts': counts, 'cpu': cpu, 'machine': machine,
        'sync_bytes': sum(sync1[n]['bytes_moved'] - sync0[n]['bytes_moved'] for n in nodes),
        'sync_rounds': sum(sync1[n]['rounds'] - sync0[n]['rounds'] for n in nodes),
    }
    log('%s: %d docs in %.1f s = %.0f docs/s, batch p50 %.0f ms p99 %.0f ms, counts %r' % (
        label, corpus.n, wall, res['docs_s'], res['p50'] * 1e3, res['p99'] * 1e3, counts))
    res['verify'] = verify_queries(corpus, list(nodes.values()), label)
    return res


def rebalance(nodes, corpus):
    names = list(nodes)
    a, b, victim = nodes[names[0]], nodes[names[1]], nodes[names[2]]
    survivors = (a, b)
    shards = victim.call(STORE, 'Shards', 's', COLLECTION)[0]
    min_docs = sum(int(t[1]) for t in shards)
    min_bytes = sum(int(t[3]) for t in shards)
    held = {n.name: documents_here(n) for n in survivors}
    # The shards both survivors hold already: nothing of them has to move.
    mine = [{int(t[0]): (int(t[3]), t[5]) for t in n.call(STORE, 'Shards', 's', COLLECTION)[0]} for n in survivors]
    shared = [k for k in mine[0] if k in mine[1]]
    shared_same = sum(mine[0][k][1] == mine[1][k][1] for k in shared)
    shared_bytes = sum(mine[0][k][0] for k in shared)
    # Let a sync round that is running finish first, so its bytes are not counted as the rebalance's.
    wait_until(lambda: all(sync_counters(n)['transfers_pending'] == 0 for n in nodes.values()), 120,
               what='no sync round running before the kill')
    sync0 = {n.name: sync_counters(n) for n in survivors}
    cpu0 = cpu_snapshot({n.name: n for n in survivors})
    log('rebalance: killing %s (%d shards, %d documents, %.1f MB stored); survivors hold %r' % (
        victim.name, len(shards), min_docs, min_bytes / 1e6, held))
    # The whole node at once, as when its machine dies: frozen first (launcher, then every daemon),
    # then SIGKILLed. Without the freeze, the launcher's death reaches the daemons as SIGTERM
    # (PR_SET_PDEATHSIG) before their own SIGKILL, and gossipd may still announce that it leaves.
    tree = [victim.pid] + harness.proc_descendants(victim.pid)
    t0 = time.monotonic()
    for pid in tree:
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            pass
    victim.proc.kill_tree()
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    del nodes[victim.name]
    suspect, dead, full = {}, {}, {}
    deadline = t0 + ARGS.timeout
    while time.monotonic() < deadline and len(full) < 2:
        for n in survivors:
            if n.name not in dead:
                m = shard_member_ids(n)
                now = time.monotonic() - t0
                if m is not None and victim.node_id not in m:
                    dead[n.name] = now
                    suspect.setdefault(n.name, now)
                elif m is not None and m.get(victim.node_id) is False:
                    suspect.setdefault(n.name, now)
            if n.name not in full and documents_here(n) == corpus.n:
                full[n.name] = time.monotonic() - t0
        time.sleep(0.05)
    check(len(full) == 2, 'rebalance: survivors did not both hold all %d documents within %.0f s (%r)' % (
        corpus.n, ARGS.timeout, {n.name: documents_here(n) for n in survivors}))
    at_full = {n.name: sync_counters(n) for n in survivors}
    cpu, machine = cpu_diff(cpu0, cpu_snapshot({n.name: n for n in survivors}))
    # Whatever the sync rounds still do after that (pushing back, comparing digests) counts too.
    try:
        wait_until(lambda: all(sync_counters(n)['transfers_pending'] == 0 for n in survivors), 120, interval=0.2,
                   what='the survivors\' sync rounds to finish')
    except TimeoutError as e:
        check(False, 'rebalance: %s' % e)
    idle = time.monotonic() - t0
    sync1 = {n.name: sync_counters(n) for n in survivors}
    # And the next periodic round ([shard] sync_interval, 30 s): does it move anything more?
    t_wait = time.monotonic()
    try:
        wait_until(lambda: all(sync_counters(n)['rounds'] > sync1[n.name]['rounds'] and
                               sync_counters(n)['transfers_pending'] == 0 for n in survivors), 75, interval=0.5,
                   what='the next periodic sync round on both survivors')
        sync2 = {n.name: sync_counters(n) for n in survivors}
    except TimeoutError as e:
        log(str(e))
        sync2 = None
    log('rebalance: next periodic round after %.1f s more' % (time.monotonic() - t_wait))
    moved_at_full = {k: at_full[k]['bytes_moved'] - sync0[k]['bytes_moved'] for k in at_full}
    moved = {k: sync1[k]['bytes_moved'] - sync0[k]['bytes_moved'] for k in sync1}
    res = {
        'victim': victim.name, 'survivors': [n.name for n in survivors], 'min_docs': min_docs,
        'min_bytes': min_bytes, 'shards': len(shards), 'suspect': suspect, 'dead': dead, 'full': full,
        'idle': idle, 'moved_at_full': moved_at_full, 'moved': moved, 'sync0': sync0, 'sync1': sync1,
        'sync2': sync2, 'shared': len(shared), 'shared_same': shared_same, 'shared_bytes': shared_bytes,
        'cpu': cpu, 'machine': machine, 'counts': {n.name: documents_here(n) for n in survivors},
    }
    log('rebalance: dead at %r, all documents at %r, idle at %.1f s, moved %r (minimum %d)' % (
        dead, full, idle, moved, min_bytes))
    res['verify'] = verify_queries(corpus, list(survivors), 'after the rebalance')
    return res


# ---- the report ----

def machine_line():
    model = ''
    try:
        with open('/proc/cpuinfo') as f:
            model = next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), '')
    except OSError:
        pass
    try:
        commit = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'], capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ''
    built = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(os.stat(os.environ['MYCELIA_SHARDD']).st_mtime))
    return ('%d CPUs (%s), kernel %s, load average at the start %.2f; source HEAD %s at the start of the run, '
            'mycelia-shardd built %s' % (os.cpu_count(), model or platform.machine(), platform.release(),
                                         os.getloadavg()[0], commit or '?', built))


def cpu_table(res, wall):
    """Rows: program, CPU seconds summed over the nodes, share of one core over the wall time."""
    by_prog = {}
    for (node, prog), sec in res['cpu'].items():
        by_prog[prog] = by_prog.get(prog, 0.0) + sec
    rows = sorted(by_prog.items(), key=lambda kv: -kv[1])
    out = ', '.join('%s %.1f s (%.0f%%)' % (p, s, 100 * s / wall) for p, s in rows if s >= 0.05)
    per_node = sorted((node, sec) for (node, prog), sec in res['cpu'].items() if prog == 'mycelia-shardd')
    if len(per_node) > 1:
        out += ' (mycelia-shardd per node: %s)' % ', '.join('%s %.1f s' % kv for kv in per_node)
    return out


def report(single, mesh, reb, corpus, machine, load_end):
    rate_flag = ' --transfer-rate %s' % ARGS.transfer_rate if ARGS.transfer_rate else ''
    print('## Shard store: ingest and rebalance (bench/shards.py)\n')
    print('```\nninja -C BUILD\nbench/shards.py BUILD --docs %d --batch %d --concurrency %d --queries %d%s%s\n```'
          '\n' % (corpus.n, ARGS.batch, ARGS.concurrency, ARGS.queries, rate_flag,
                  ' --no-single' if ARGS.no_single else ''))
    print('- Machine: %s; load average at the end %.2f' % (machine, load_end))
    print('- Documents: %d, dimension %d, normalized, 6 digits; a text of about 40 bytes and {"i", "topic"} each; '
          '%d per request, %.0f MB of JSON in all; %d request(s) at a time, each on a kept-alive connection to '
          'the first node\'s shim' % (corpus.n, DIM, ARGS.batch, mesh['mb'], ARGS.concurrency))
    print('- Nodes: `mycelia-node --log-level warning` on loopback, each in front of an Ollama double '
          '(unused: the embeddings are given); [shard] transfer_rate %s, sync_interval 30 s (defaults '
          'otherwise)\n' % (ARGS.transfer_rate or '50M (default)'))
    print('### Ingest\n')
    print('| mesh | documents/s | wall | batch p50 | batch p99 | batch max | documents per node | '
          'sync bytes during ingest | queries k=1 right (partial) |')
    print('|---|---:|---:|---:|---:|---:|---|---:|---:|')
    for r in (single, mesh):
        if not r:
            continue
        print('| %s | **%.0f** | %.1f s | %.0f ms | %.0f ms | %.0f ms | %s | %.1f MB | %d/%d (%d) |' % (
            r['label'], r['docs_s'], r['wall'], r['p50'] * 1e3, r['p99'] * 1e3, r['max'] * 1e3,
            ' / '.join(str(v) for v in r['counts'].values()), r['sync_bytes'] / 1e6,
            r['verify']['n'] - r['verify']['wrong'], r['verify']['n'], r['verify']['partial']))
    print()
    for r in (single, mesh):
        if not r:
            continue
        m = r['machine']
        print('- CPU during the %s ingest (seconds, %% of one core): %s. Machine (other work included): %.0f%% of '
              'all cores busy, iowait %.1f s.' % (r['label'], cpu_table(r, r['wall']),
                                                  100 * m['busy'] / (os.cpu_count() * m['wall']), m['iowait']))
    if single and mesh:
        print('- 3 nodes (R = 2, W = 2) / 1 node (R = 1): **%.2f** of the single node\'s documents/s.' % (
            mesh['docs_s'] / single['docs_s']))
    print('\n### Rebalance after kill -9 of %s\n' % reb['victim'])
    total = max(reb['full'].values()) if len(reb['full']) == 2 else float('nan')
    dead = max(reb['dead'].values()) if len(reb['dead']) == 2 else float('nan')
    moved = sum(reb['moved'].values())
    moved_full = sum(reb['moved_at_full'].values())
    names = reb['survivors']
    print('| from the kill until | survivor %s | survivor %s |' % tuple(names))
    print('|---|---:|---:|')
    for what, key in (('suspected (Nodes: alive false)', 'suspect'), ('declared dead (gone from Nodes)', 'dead'),
                      ('holding all %d documents' % corpus.n, 'full')):
        print('| %s | %s |' % (what, ' | '.join('%.2f s' % reb[key][n] if n in reb[key] else '—' for n in names)))
    print('| bytes sent (Sync bytes_moved) by then | %s |' % ' | '.join('%.1f MB' % (reb['moved_at_full'][n] / 1e6)
                                                                      for n in names))
    print('| bytes sent once its sync rounds were idle (%.1f s) | %s |' % (
        reb['idle'], ' | '.join('%.1f MB' % (reb['moved'][n] / 1e6) for n in names)))
    print()
    throttle = max(reb['moved_at_full'][n] / RATE for n in names)
    print('- **R = 2 again %.1f s after the kill**: %.1f s until gossip declared the node dead, then %.1f s of '
          'copying.' % (total, dead, total - dead))
    print('- Minimum: what %s held, %d documents in %d shards, %.1f MB stored (its Shards answer, field '
          'bytes). Moved by the time both held everything: %.1f MB = **%.2fx the minimum**; by the end of the '
          'sync rounds %.1f MB = **%.2fx**.' % (
              reb['victim'], reb['min_docs'], reb['shards'], reb['min_bytes'] / 1e6, moved_full / 1e6,
              moved_full / reb['min_bytes'], moved / 1e6, moved / reb['min_bytes']))
    again = 2 * reb['shared_bytes'] + reb['min_bytes']
    print('- The survivors already both held %d shards (%.1f MB each, equal digests in %d of them) before the '
          'kill; pushing those to each other again would be %.1f MB, which with the minimum makes %.1f MB '
          '(%.2fx).' % (reb['shared'], reb['shared_bytes'] / 1e6, reb['shared_same'], 2 * reb['shared_bytes'] / 1e6,
                        again / 1e6, again / reb['min_bytes']))
    if reb['sync2']:
        later = sum(reb['sync2'][n]['bytes_moved'] - reb['sync1'][n]['bytes_moved'] for n in names)
        total_moved = sum(reb['sync2'][n]['bytes_moved'] - reb['sync0'][n]['bytes_moved'] for n in names)
        print('- The next periodic sync round (no change since: both hold the same documents) moved %.1f MB '
              'more: %.1f MB in all since the kill = **%.2fx the minimum**.' % (
                  later / 1e6, total_moved / 1e6, total_moved / reb['min_bytes']))
    else:
        print('- The next periodic sync round did not finish within 75 s.')
    print('- Throttle: %s bytes/s per sending node; the larger sender\'s bytes / rate = **%.1f s** of the %.1f s '
          'of copying.' % (ARGS.transfer_rate or '50M', throttle, total - dead))
    m = reb['machine']
    print('- CPU of the survivors from the kill until both held everything: %s; machine (other work included) '
          '%.0f%% busy, iowait %.1f s.' % (cpu_table(reb, total), 100 * m['busy'] / (os.cpu_count() * m['wall']),
                                           m['iowait']))
    for n in names:
        s0, s1 = reb['sync0'][n], reb['sync2'][n] if reb['sync2'] else reb['sync1'][n]
        print('- Sync on %s, before -> after: %s.' % (n, ', '.join('%s %d -> %d' % (k, s0[k], s1[k]) for k in s0)))
    v = reb['verify']
    print('- Queries k=1 after the rebalance, alternating the survivors: %d/%d right, %d partial.' % (
        v['n'] - v['wrong'], v['n'], v['partial']))
    print('\nChecks: %s.' % ('all passed' if not FAILURES else 'FAILED: ' + '; '.join(FAILURES)))


def main():
    machine = machine_line()
    t_start = time.monotonic()
    log('making %d documents' % ARGS.docs)
    corpus = Corpus(ARGS.docs)
    bodies = corpus.bodies(ARGS.batch)
    log('%d requests, %.0f MB of JSON, made in %.1f s' % (len(bodies), sum(map(len, bodies)) / 1e6,
                                                          time.monotonic() - t_start))
    node_args = ['--log-level', 'warning']
    single = None
    if not ARGS.no_single:
        doubles, nodes = start_mesh(('s1',), 'm:latest', node_args=node_args + ['--replicas', '1'])
        wait_shard_members(nodes, 1)
        single = ingest('1 node, R = 1', nodes, bodies, corpus)
        stop_mesh(doubles, nodes)
    rate = ['--transfer-rate', ARGS.transfer_rate] if ARGS.transfer_rate else []
    doubles, nodes = start_mesh(('sa', 'sb', 'sc'), 'm:latest', node_args=node_args + ['--replicas', '2'] + rate)
    wait_shard_members(nodes, 3)
    mesh = ingest('3 nodes, R = 2, W = 2', nodes, bodies, corpus)
    del bodies
    reb = rebalance(nodes, corpus)
    stop_mesh(doubles, nodes)
    log('whole run %.0f s' % (time.monotonic() - t_start))
    report(single, mesh, reb, corpus, machine, os.getloadavg()[0])
    return 1 if FAILURES else 0


if __name__ == '__main__':
    try:
        rc = main()
    finally:
        harness.teardown_all()
    sys.exit(rc)
