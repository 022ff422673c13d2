#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# What TLS between nodes costs (issue 12, docs/mesh-tls.md): a forwarded request through a build
# with plain node-to-node HTTP and through one with TLS, side by side in one run.
"""bench/tls.py PLAIN_BUILD [TLS_BUILD] [--requests N] [--rounds R] [--stream-tokens T]

Run by hand, never by meson test. Python 3 standard library only; /usr/bin/python3.

PLAIN_BUILD is a build tree of a commit before TLS between nodes (0d2e4d2, say:
`git worktree add /tmp/plain 0d2e4d2 && meson setup /tmp/plain/build /tmp/plain && ninja -C
/tmp/plain/build`), TLS_BUILD one with it (default: build/ of this tree). Each round starts, for
each build in turn (the order alternates between rounds), two launchers on loopback in front of
their own Ollama double (token delay 0) and, through the first node, on one keep-alive client
connection:

- latency: N POST /api/generate ("stream": false, 4 tokens) pinned with X-Mycelia-Node to the
  peer (one hop: the peer's mesh listener, then its Ollama), and N pinned to the entry node's own
  Ollama (no hop: the same for both builds, a yardstick for the machine's noise);
- throughput: 20 streaming /api/generate of T tokens each (the double's /__double/faults sets
  the token count) pinned to the peer: NDJSON bytes received per second of the whole stream.

The entry node's connections to its peer are pooled, so a handshake is paid once per
connection: the latency rows show it is not paid per request (and the run counts the TCP
connections the entry shim opened to the peer's mesh port, from /proc).

Prints a Markdown section for bench/RESULTS.md.
"""

import argparse
import http.client
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchenv  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('plain')
ap.add_argument('tls', nargs='?', default=os.path.join(ROOT, 'build'))
ap.add_argument('--requests', type=int, default=1000, help='per round, build and target')
ap.add_argument('--rounds', type=int, default=3)
ap.add_argument('--stream-tokens', type=int, default=3000)
ARGS = ap.parse_args()
if not 100 <= ARGS.requests <= 20000 or not 1 <= ARGS.rounds <= 20 or not 10 <= ARGS.stream_tokens <= 100000:
    ap.error('--requests 100..20000, --rounds 1..20, --stream-tokens 10..100000')

BUILDS = {'plain': os.path.abspath(ARGS.plain), 'tls': os.path.abspath(ARGS.tls)}
harness = benchenv.use_build(BUILDS['tls'], 'bench/tls.py')


def use(build):
    """Points the harness at build's binaries (it reads the environment when it starts them)."""
    for var, rel in benchenv.BINARIES:
        path = os.path.join(build, rel)
        if not os.access(path, os.X_OK):
            sys.exit('bench/tls.py: %s is not built' % path)
        os.environ[var] = path


def quantile(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


def one_round(build, results):
    use(BUILDS[build])
    tmp = harness.make_tmpdir('mycelia-bench-tls-')
    key = harness.write_mesh_key(os.path.join(tmp, 'mesh.key'))
    doubles, nodes = [], []
    try:
        for name in ('t1', 't2'):
            d = harness.Double('--models', 'shared:latest', '--tokens', '4', '--num-parallel', '8')
            doubles.append(d)
            seeds = ['--seed', nodes[0].gossip] if nodes else []
            nodes.append(harness.Node(d.url, '--mesh-key', key, '--log-level', 'warning', *seeds, name=name))
        entry, peer = nodes

        def both_up():
            data = entry.prop('org.mycelia.Router1', 'Nodes')
            return len(data) == 2 and all(t[3] == 'up' for t in data)
        harness.wait_until(both_up, 30, what='the routing table with both nodes up')

        conn = http.client.HTTPConnection(entry.addr[0], entry.addr[1], timeout=60)

        def generate(target, stream=False):
            body = json.dumps({'model': 'shared', 'prompt': 'hello', 'stream': stream}).encode()
            t0 = time.perf_counter()
            conn.request('POST', '/api/generate', body=body, headers={'X-Mycelia-Node': target,
                                                                     'Content-Type': 'application/json'})
            r = conn.getresponse()
            data = r.read()
            dt = time.perf_counter() - t0
            if r.status != 200 or r.getheader('X-Mycelia-Served-By') != target:
                sys.exit('unexpected answer: %d from %s' % (r.status, r.getheader('X-Mycelia-Served-By')))
            return dt, len(data)

        for _ in range(50):     # warm-up, not counted
            generate('t2')
            generate('t1')
        for i in range(ARGS.requests):
            results[build]['hop'].append(generate('t2')[0])
            results[build]['local'].append(generate('t1')[0])
        doubles[1].faults(tokens=ARGS.stream_tokens)
        for _ in range(20):
            dt, n = generate('t2', stream=True)
            results[build]['stream_s'] += dt
            results[build]['stream_bytes'] += n
        conn.close()
        mesh_port = harness.split_addr(peer.mesh)[1]
        results[build]['connections'].append(harness.tcp_connections_to(entry.shimd_pid(), mesh_port))
    finally:
        for n in nodes:
            n.stop()
        for d in doubles:
            d.stop()


def main():
    results = {b: {'hop': [], 'local': [], 'stream_s': 0.0, 'stream_bytes': 0, 'connections': []} for b in BUILDS}
    for r in range(ARGS.rounds):
        for build in (('plain', 'tls') if r % 2 == 0 else ('tls', 'plain')):
            print('round %d: %s' % (r + 1, build), file=sys.stderr, flush=True)
            one_round(build, results)

    def us(x):
        return '%.0f µs' % (x * 1e6)
    rows = {}
    for b, res in results.items():
        rows[b] = (quantile(res['hop'], 0.5), quantile(res['hop'], 0.99), quantile(res['local'], 0.5),
                   quantile(res['local'], 0.99), res['stream_bytes'] / res['stream_s'] / 1e6)
    print('## TLS between nodes: what a forwarded request costs (bench/tls.py)\n')
    print('```\nbench/tls.py %s %s --requests %d --rounds %d --stream-tokens %d\n```\n' % (
        ARGS.plain, ARGS.tls, ARGS.requests, ARGS.rounds, ARGS.stream_tokens))
    print('%d cores, load average %s at the end; %d samples per row, %d rounds, builds alternating.\n' % (
        os.cpu_count(), ' '.join(open('/proc/loadavg').read().split()[:3]), len(results['tls']['hop']), ARGS.rounds))
    print('| build | one hop p50 | one hop p99 | no hop p50 | no hop p99 | forwarded stream | entry shim\'s connections to the peer |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for b in ('plain', 'tls'):
        h50, h99, l50, l99, mbs = rows[b]
        print('| %s | %s | %s | %s | %s | %.1f MB/s | %s |' % (
            'plain HTTP' if b == 'plain' else 'TLS 1.3 (PSK)', us(h50), us(h99), us(l50), us(l99), mbs,
            ', '.join(str(c) for c in results[b]['connections'])))
    p, t = rows['plain'], rows['tls']
    print('\nTLS against plain, one hop: p50 %+.0f µs (x%.2f), p99 %+.0f µs (x%.2f); forwarded stream '
          'throughput x%.2f. The no-hop rows (identical code on both builds) show the noise.' % (
              (t[0] - p[0]) * 1e6, t[0] / p[0], (t[1] - p[1]) * 1e6, t[1] / p[1], t[4] / p[4]))


if __name__ == '__main__':
    try:
        main()
    finally:
        harness.teardown_all()
