#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Context gravity against round-robin on real processes: 3 mycelia-node launchers on loopback,
# each in front of an Ollama double with a prompt cache, and concurrent multi-turn conversations
# that share a 4 KB system prompt. Both policies in one run, side by side.
"""bench/gravity.py [BUILD_DIR] [--parallel N] [--conversations C] [--turns T] [--rounds R] [--plot DIR | --no-plot]

Run by hand, never by meson test. Python 3 standard library only.

Per policy (X-Mycelia-Policy on every request, so the mesh is the same for both): C conversations
at once, each T turns; a turn sends the whole history with "stream": true and reads the answer,
then the next turn starts at once. Each policy gets a system prompt of its own (so neither
inherits the other's cache) of 4 KB. Measured per request: time to first token (from sending to
the first NDJSON line) and total time; per run: wall time and tokens per second over all nodes;
from the doubles' /__double/stats, the bytes prefilled and the cache hit bytes. R rounds alternate
the order of the policies. The doubles model Ollama's runner (tests/ollama-double/README.md):
--parallel N slots each keeping its last prompt, prefill paid per byte not in the slot.

Prints a Markdown section for bench/RESULTS.md. Then writes every request's TTFT per policy and
the table's numbers to DIR/gravity.json (default bench/plots) and draws DIR/gravity.svg (CDF and
p50/p95/p99 of TTFT, bench/plot.py); --no-plot does neither.
"""

import argparse
import http.client
import json
import os
import platform
import random
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import plot  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('build', nargs='?', default=os.path.join(ROOT, 'build'))
    ap.add_argument('--parallel', type=int, default=1, help="each double's slots (OLLAMA_NUM_PARALLEL)")
    ap.add_argument('--conversations', type=int, default=12)
    ap.add_argument('--turns', type=int, default=10)
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--prefill-us-per-byte', type=float, default=50.0)
    ap.add_argument('--token-delay-ms', type=int, default=10)
    ap.add_argument('--tokens', type=int, default=16)
    plot.add_arguments(ap)
    a = ap.parse_args()
    if not (1 <= a.parallel <= 16 and 1 <= a.conversations <= 64 and 1 <= a.turns <= 30 and 1 <= a.rounds <= 5):
        ap.error('--parallel 1..16, --conversations 1..64, --turns 1..30, --rounds 1..5')
    return a


ARGS = parse_args()
BUILD = os.path.abspath(ARGS.build)
import benchenv  # noqa: E402

harness = benchenv.use_build(BUILD, 'bench/gravity.py')
from harness import Double, Node, wait_until, write_mesh_key  # noqa: E402

NAMES = ('g1', 'g2', 'g3')
TTFTS = {'gravity': [], 'round-robin': []}  # every request's, all rounds: for the plot only


def system_prompt(tag):
    text = 'You are %s, a careful assistant. Answer briefly and cite the user\'s words. ' % tag
    return (text * (4096 // len(text) + 1))[:4096]


def stream_chat(addr, body, policy):
    """One streaming /api/chat; returns (ttft_s, total_s, answer, served_by)."""
    data = json.dumps(body).encode()
    conn = http.client.HTTPConnection(addr[0], addr[1], timeout=120)
    t0 = time.monotonic()
    try:
        conn.request('POST', '/api/chat', body=data, headers={'Content-Type': 'application/json',
                                                              'X-Mycelia-Policy': policy})
        r = conn.getresponse()
        if r.status != 200:
            raise RuntimeError('HTTP %d: %r' % (r.status, r.read()[:200]))
        ttft, parts = None, []
        for line in r:
            if not line.strip():
                continue
            if ttft is None:
                ttft = time.monotonic() - t0
            msg = json.loads(line)
            parts.append(msg.get('message', {}).get('content', ''))
        return ttft, time.monotonic() - t0, ''.join(parts), r.getheader('X-Mycelia-Served-By')
    finally:
        conn.close()


def run_policy(policy, entry, doubles, tag):
    before = [d_stats(d) for d in doubles]
    ttfts, totals, errors = [], [], []
    served = {}
    lock = threading.Lock()

    def conversation(i):
        msgs = [{'role': 'system', 'content': system_prompt(tag)}]
        # A user reads and types: 0-50 ms between turns, seeded, so that turns do not march in
        # lockstep (round-robin would then send each conversation to the same node by chance).
        think = random.Random('%s-%d' % (tag, i))
        for t in range(ARGS.turns):
            time.sleep(think.uniform(0, 0.05))
            msgs.append({'role': 'user', 'content': 'Conversation %d, turn %d: what about item %d?' % (i, t, t * 7 + i)})
            try:
                ttft, total, answer, by = stream_chat(entry.addr, {'model': 'shared', 'messages': msgs, 'stream': True},
                                                      policy)
            except Exception as e:  # noqa: B902 - counted and reported
                with lock:
                    errors.append(str(e))
                return
            msgs.append({'role': 'assistant', 'content': answer})
            with lock:
                ttfts.append(ttft)
                totals.append(total)
                served.setdefault(i, []).append(by)

    t0 = time.monotonic()
    threads = [threading.Thread(target=conversation, args=(i,)) for i in range(ARGS.conversations)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    wall = time.monotonic() - t0
    TTFTS[policy].extend(ttfts)
    after = [d_stats(d) for d in doubles]
    prefill = sum(a['prefill_bytes'] - b['prefill_bytes'] for a, b in zip(after, before))
    hit = sum(a['cache_hit_bytes'] - b['cache_hit_bytes'] for a, b in zip(after, before))
    moves = sum(len(set(v)) - 1 for v in served.values())
    return {
        'policy': policy, 'requests': len(ttfts), 'errors': len(errors),
        'ttft_p50': statistics.median(ttfts), 'ttft_p95': quantile(ttfts, 0.95),
        'total_p50': statistics.median(totals), 'total_p95': quantile(totals, 0.95),
        'wall': wall, 'tokens_per_s': len(ttfts) * ARGS.tokens / wall,
        'prefill_bytes': prefill, 'hit_bytes': hit, 'moves': moves,
    }


def quantile(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


def d_stats(d):
    r = harness.http_request(d.addr, 'GET', '/__double/stats')
    return r.json()


def main():
    tmp = harness.make_tmpdir('mycelia-bench-gravity-')
    key = write_mesh_key(os.path.join(tmp, 'mesh.key'))
    doubles, nodes = [], []
    for name in NAMES:
        doubles.append(Double('--models', 'shared:latest', '--parallel', str(ARGS.parallel),
                              '--prefill-us-per-byte', str(ARGS.prefill_us_per_byte),
                              '--token-delay-ms', str(ARGS.token_delay_ms), '--tokens', str(ARGS.tokens)))
        seeds = ['--seed', nodes[0].gossip] if nodes else []
        nodes.append(Node(doubles[-1].url, '--mesh-key', key, '--parallel', str(ARGS.parallel),
                          '--log-level', 'warning', *seeds, name=name))
    entry = nodes[0]

    def all_up():
        data = entry.prop('org.mycelia.Router1', 'Nodes')
        return len(data) == 3 and all(t[3] == 'up' and 'shared:latest' in t[7] for t in data)
    wait_until(all_up, 30, what='the routing table with all three nodes up')

    results = {'gravity': [], 'round-robin': []}
    for rnd in range(ARGS.rounds):
        order = ('round-robin', 'gravity') if rnd % 2 == 0 else ('gravity', 'round-robin')
        for policy in order:
            r = run_policy(policy, entry, doubles, '%s-%d' % (policy, rnd))
            results[policy].append(r)
            print('# round %d %s: %r' % (rnd, policy, r), file=sys.stderr, flush=True)

    for n in nodes:
        n.stop()
    for d in doubles:
        d.stop()
    report(results)
    sys.stdout.flush()
    if not ARGS.no_plot:
        save_plot(results)


def save_plot(results):
    data = plot.provenance('bench/gravity.py BUILD --parallel %d --conversations %d --turns %d --rounds %d '
                           '--prefill-us-per-byte %g --token-delay-ms %d --tokens %d' % (
                               ARGS.parallel, ARGS.conversations, ARGS.turns, ARGS.rounds,
                               ARGS.prefill_us_per_byte, ARGS.token_delay_ms, ARGS.tokens))
    data.update(parallel=ARGS.parallel, conversations=ARGS.conversations, turns=ARGS.turns, rounds=ARGS.rounds,
                prefill_us_per_byte=ARGS.prefill_us_per_byte, token_delay_ms=ARGS.token_delay_ms,
                tokens=ARGS.tokens, ttft_s={p: [round(x, 6) for x in v] for p, v in TTFTS.items()},
                rounds_results=results)
    plot.save('gravity', data, ARGS.plot, 'bench/gravity.py')


def report(results):
    def agg(policy, k):
        return statistics.median(r[k] for r in results[policy])
    g, rr = 'gravity', 'round-robin'
    print('## Context gravity (bench/gravity.py)\n')
    print('`bench/gravity.py %s--parallel %d --conversations %d --turns %d --rounds %d '
          '--prefill-us-per-byte %g --token-delay-ms %d --tokens %d` on %s, %d cores.\n' % (
              '', ARGS.parallel, ARGS.conversations, ARGS.turns, ARGS.rounds, ARGS.prefill_us_per_byte,
              ARGS.token_delay_ms, ARGS.tokens, platform.node() and 'this machine', os.cpu_count()))
    print('| policy | requests | errors | TTFT p50 | TTFT p95 | total p50 | total p95 | tokens/s | prefilled KB | cache hit KB | extra nodes per conversation |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for p in (g, rr):
        print('| %s | %d | %d | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.0f | %.0f | %.0f | %d |' % (
            p, sum(r['requests'] for r in results[p]), sum(r['errors'] for r in results[p]),
            agg(p, 'ttft_p50') * 1e3, agg(p, 'ttft_p95') * 1e3, agg(p, 'total_p50') * 1e3,
            agg(p, 'total_p95') * 1e3, agg(p, 'tokens_per_s'), agg(p, 'prefill_bytes') / 1024,
            agg(p, 'hit_bytes') / 1024, sum(r['moves'] for r in results[p])))
    print('\nRatios gravity / round-robin (medians over rounds): TTFT p50 %.2f, TTFT p95 %.2f, '
          'throughput %.2f.' % (agg(g, 'ttft_p50') / agg(rr, 'ttft_p50'), agg(g, 'ttft_p95') / agg(rr, 'ttft_p95'),
                                agg(g, 'tokens_per_s') / agg(rr, 'tokens_per_s')))


if __name__ == '__main__':
    try:
        main()
    finally:
        harness.teardown_all()
