#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Aggregate tokens per second of a mesh of N = 1, 2, 3 nodes, each in front of an Ollama double
# that serves one request at a time at a fixed token rate, all clients talking to the first node.
"""bench/scaleout.py [BUILD_DIR] [--seconds S] [--clients-per-node C] [--plot DIR | --no-plot]

Run by hand, never by meson test. Python 3 standard library only.

For each N, a fresh mesh: N launchers on loopback, doubles with --parallel 1, --token-delay-ms
10 and 20 tokens per answer (about 100 tokens/s each), nodes with --parallel 1. C*N client
threads send non-streamed /api/generate requests for S seconds to the first node, with the
default policy (gravity: no context, so least-loaded). Prints tokens/s per N and the ratio to
N times one node (target: at least 0.95). Then writes DIR/scaleout.json (default bench/plots) and
draws DIR/scaleout.svg against the ideal line (bench/plot.py); --no-plot does neither.
"""

import argparse
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

sys.path.insert(0, HERE)
import plot  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('build', nargs='?', default=os.path.join(ROOT, 'build'))
ap.add_argument('--seconds', type=float, default=10.0)
ap.add_argument('--clients-per-node', type=int, default=3)
plot.add_arguments(ap)
ARGS = ap.parse_args()
if not (2 <= ARGS.seconds <= 120 and 1 <= ARGS.clients_per_node <= 16):
    ap.error('--seconds 2..120, --clients-per-node 1..16')

import benchenv  # noqa: E402

harness = benchenv.use_build(os.path.abspath(ARGS.build), 'bench/scaleout.py')
from harness import Double, Node, wait_until, write_mesh_key  # noqa: E402

TOKENS = 20


def run_mesh(n):
    tmp = harness.make_tmpdir('mycelia-bench-scale-')
    key = write_mesh_key(os.path.join(tmp, 'mesh.key'))
    doubles, nodes = [], []
    for i in range(n):
        doubles.append(Double('--models', 'shared:latest', '--parallel', '1', '--token-delay-ms', '10',
                              '--tokens', str(TOKENS)))
        seeds = ['--seed', nodes[0].gossip] if nodes else []
        nodes.append(Node(doubles[-1].url, '--mesh-key', key, '--parallel', '1', '--log-level', 'warning', *seeds,
                          name='s%d' % (i + 1)))
    entry = nodes[0]

    def all_up():
        data = entry.prop('org.mycelia.Router1', 'Nodes')
        return len(data) == n and all(t[3] == 'up' for t in data)
    wait_until(all_up, 30, what='the routing table with all %d nodes up' % n)

    tokens = [0]
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + ARGS.seconds

    def client():
        while time.monotonic() < stop:
            r = entry.request('POST', '/api/generate', {'model': 'shared', 'prompt': 'count', 'stream': False},
                              timeout=60)
            with lock:
                if r.status == 200:
                    tokens[0] += json.loads(r.body)['eval_count']
                else:
                    errors[0] += 1
    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(ARGS.clients_per_node * n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(ARGS.seconds + 120)
    elapsed = time.monotonic() - t0
    for x in nodes:
        x.stop()
    for d in doubles:
        d.stop()
    return tokens[0] / elapsed, errors[0]


def main():
    rows = []
    for n in (1, 2, 3):
        tps, errors = run_mesh(n)
        rows.append((n, tps, errors))
        print('# N=%d: %.0f tokens/s, %d errors' % (n, tps, errors), file=sys.stderr, flush=True)
    one = rows[0][1]
    print('## Scale-out (bench/scaleout.py)\n')
    print('`bench/scaleout.py --seconds %g --clients-per-node %d`, %d cores.\n' % (
        ARGS.seconds, ARGS.clients_per_node, os.cpu_count()))
    print('| nodes | tokens/s | errors | / (N x one node) |')
    print('|---:|---:|---:|---:|')
    for n, tps, errors in rows:
        print('| %d | %.0f | %d | %.2f |' % (n, tps, errors, tps / (n * one)))
    sys.stdout.flush()
    if not ARGS.no_plot:
        data = plot.provenance('bench/scaleout.py BUILD --seconds %g --clients-per-node %d' % (
            ARGS.seconds, ARGS.clients_per_node))
        data.update(seconds=ARGS.seconds, clients_per_node=ARGS.clients_per_node,
                    rows=[{'nodes': n, 'tokens_per_s': tps, 'errors': errors} for n, tps, errors in rows])
        plot.save('scaleout', data, ARGS.plot, 'bench/scaleout.py')


if __name__ == '__main__':
    try:
        main()
    finally:
        harness.teardown_all()
