#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Embeddings fanned out over the mesh against one node, in one run: 3 mycelia-node launchers on
# loopback, each in front of an Ollama double that takes a fixed time per input.
"""bench/embed.py [BUILD_DIR] [--inputs N] [--us-per-input F] [--repeats R]

Run by hand, never by meson test. Python 3 standard library only.

The same POST /api/embed of N inputs, R times each way, alternating: pinned to one node with
X-Mycelia-Node (no split: one node embeds everything), and unpinned (split over the three nodes
serving the model). Prints a Markdown section for bench/RESULTS.md: median and best wall time,
and the ratio.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('build', nargs='?', default=os.path.join(ROOT, 'build'))
ap.add_argument('--inputs', type=int, default=3000)
ap.add_argument('--us-per-input', type=float, default=1000.0)
ap.add_argument('--repeats', type=int, default=5)
ARGS = ap.parse_args()
if not (1 <= ARGS.inputs <= 20000 and 1 <= ARGS.repeats <= 20):
    ap.error('--inputs 1..20000, --repeats 1..20')

sys.path.insert(0, HERE)
import benchenv  # noqa: E402

harness = benchenv.use_build(os.path.abspath(ARGS.build), 'bench/embed.py')
from harness import Double, Node, wait_until, write_mesh_key  # noqa: E402


def main():
    tmp = harness.make_tmpdir('mycelia-bench-embed-')
    key = write_mesh_key(os.path.join(tmp, 'mesh.key'))
    nodes = []
    for name in ('e1', 'e2', 'e3'):
        d = Double('--models', 'shared:latest', '--embed-us-per-input', str(ARGS.us_per_input))
        seeds = ['--seed', nodes[0].gossip] if nodes else []
        nodes.append(Node(d.url, '--mesh-key', key, '--log-level', 'warning', *seeds, name=name))
    entry = nodes[0]

    def all_up():
        data = entry.prop('org.mycelia.Router1', 'Nodes')
        return len(data) == 3 and all(t[3] == 'up' for t in data)
    wait_until(all_up, 30, what='the routing table with all three nodes up')

    inputs = ['document %d: the quick brown fox jumps over the lazy dog' % i for i in range(ARGS.inputs)]
    times = {'one node': [], 'three nodes': []}
    first = None
    for rep in range(ARGS.repeats):
        for label, headers in (('one node', {'X-Mycelia-Node': 'e1'}), ('three nodes', None)):
            t0 = time.monotonic()
            r = entry.request('POST', '/api/embed', {'model': 'shared', 'input': inputs}, headers=headers,
                              timeout=600)
            dt = time.monotonic() - t0
            if r.status != 200:
                sys.exit('HTTP %d: %r' % (r.status, r.body[:200]))
            emb = r.json()['embeddings']
            if first is None:
                first = emb
            elif emb != first:
                sys.exit('the %s answer differs from the first one' % label)
            times[label].append(dt)
            print('# %s: %.3f s (%s)' % (label, dt, r.header('X-Mycelia-Served-By')), file=sys.stderr, flush=True)

    one, three = statistics.median(times['one node']), statistics.median(times['three nodes'])
    print('## Embeddings fanned out (bench/embed.py)\n')
    print('`bench/embed.py --inputs %d --us-per-input %g --repeats %d`, %d cores.\n' % (
        ARGS.inputs, ARGS.us_per_input, ARGS.repeats, os.cpu_count()))
    print('| path | median | best |')
    print('|---|---:|---:|')
    for label in ('one node', 'three nodes'):
        print('| %s | %.3f s | %.3f s |' % (label, statistics.median(times[label]), min(times[label])))
    print('\nSpeed-up on three nodes: %.2fx (median). The answers were identical every time.' % (one / three))


if __name__ == '__main__':
    try:
        main()
    finally:
        harness.teardown_all()
