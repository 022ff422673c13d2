#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# What a hop through the mesh costs: the same request answered by the entry node's own Ollama and
# by a peer's, side by side in one run, on keep-alive connections, one at a time.
"""bench/forward.py [BUILD_DIR] [--requests N]

Run by hand, never by meson test. Python 3 standard library only.

Two launchers on loopback, each in front of an Ollama double (token delay 0). Through the first
node, alternating in batches of 50: POST /api/generate ("stream": false, 4 tokens) pinned with
X-Mycelia-Node to the first node (its own Ollama) and to the second (one hop: the peer's mesh
API, signed, then its Ollama). Prints p50/p99 of each and the added latency of the hop.
"""

import argparse
import http.client
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('build', nargs='?', default=os.path.join(ROOT, 'build'))
ap.add_argument('--requests', type=int, default=2000)
ARGS = ap.parse_args()
if not 100 <= ARGS.requests <= 100000:
    ap.error('--requests 100..100000')

sys.path.insert(0, HERE)
import benchenv  # noqa: E402

harness = benchenv.use_build(os.path.abspath(ARGS.build), 'bench/forward.py')
from harness import Double, Node, wait_until, write_mesh_key  # noqa: E402


def quantile(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


def main():
    tmp = harness.make_tmpdir('mycelia-bench-forward-')
    key = write_mesh_key(os.path.join(tmp, 'mesh.key'))
    nodes = []
    for name in ('f1', 'f2'):
        d = Double('--models', 'shared:latest', '--tokens', '4', '--num-parallel', '8')
        seeds = ['--seed', nodes[0].gossip] if nodes else []
        nodes.append(Node(d.url, '--mesh-key', key, '--log-level', 'warning', *seeds, name=name))
    entry = nodes[0]

    def both_up():
        data = entry.prop('org.mycelia.Router1', 'Nodes')
        return len(data) == 2 and all(t[3] == 'up' for t in data)
    wait_until(both_up, 30, what='the routing table with both nodes up')

    body = json.dumps({'model': 'shared', 'prompt': 'hello', 'stream': False}).encode()
    conn = http.client.HTTPConnection(entry.addr[0], entry.addr[1], timeout=30)
    times = {'f1': [], 'f2': []}
    for batch in range(ARGS.requests // 100):
        for target in ('f1', 'f2'):
            for _ in range(50):
                t0 = time.perf_counter()
                conn.request('POST', '/api/generate', body=body, headers={'X-Mycelia-Node': target,
                                                                         'Content-Type': 'application/json'})
                r = conn.getresponse()
                r.read()
                dt = time.perf_counter() - t0
                if r.status != 200 or r.getheader('X-Mycelia-Served-By') != target:
                    sys.exit('unexpected answer: %d from %s' % (r.status, r.getheader('X-Mycelia-Served-By')))
                if batch > 0:   # the first batch warms up
                    times[target].append(dt)
    conn.close()

    local, hop = times['f1'], times['f2']
    print('## A hop through the mesh (bench/forward.py)\n')
    print('`bench/forward.py --requests %d`, %d cores; %d samples each.\n' % (ARGS.requests, os.cpu_count(), len(local)))
    print('| answered by | p50 | p99 |')
    print('|---|---:|---:|')
    print('| the entry node\'s Ollama | %.0f µs | %.0f µs |' % (quantile(local, 0.5) * 1e6, quantile(local, 0.99) * 1e6))
    print('| a peer\'s Ollama (one hop) | %.0f µs | %.0f µs |' % (quantile(hop, 0.5) * 1e6, quantile(hop, 0.99) * 1e6))
    print('\nAdded by the hop: p50 +%.0f µs, p99 +%.0f µs.' % (
        (quantile(hop, 0.5) - quantile(local, 0.5)) * 1e6, (quantile(hop, 0.99) - quantile(local, 0.99)) * 1e6))


if __name__ == '__main__':
    try:
        main()
    finally:
        harness.teardown_all()
