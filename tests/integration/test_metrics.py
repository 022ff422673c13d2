#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# GET /metrics (docs/metrics.md) on a 2-node mesh: the text parses under a strict reading of the
# Prometheus text format 0.0.4, the request counters move by what was sent (one model served
# here, one forwarded), the histograms are consistent, gossip sees 2 alive members, the mesh
# listener answers only with the authenticator, promtool (Debian's prometheus) accepts it, and a
# real Prometheus server scraping both nodes answers its query API with the expected series.
import json
import math
import os
import re
import shutil
import socket
import subprocess
import time
import unittest
import urllib.parse

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import start_mesh, stop_mesh, wait_until
from test_mesh_forward import mesh_auth

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'MYCELIA_SHARDD', 'OLLAMA_DOUBLE')

PROMTOOL = shutil.which('promtool')
PROMETHEUS = shutil.which('prometheus')
MODELS = {'a': 'alpha:latest,shared:latest', 'b': 'bravo:latest,shared:latest'}
CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
SAMPLE_RX = re.compile(r'^(%s)(\{(.*)\})? (\S+)$' % NAME)
LABEL_RX = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def parse_value(s):
    if s in ('+Inf', '-Inf', 'NaN'):
        return float(s.replace('Inf', 'inf').replace('NaN', 'nan'))
    return float(s)


def parse_labels(text):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL_RX.match(text, pos)
        if not m:
            raise ValueError('bad labels at %r' % text[pos:])
        if m.group(1) in labels:
            raise ValueError('label %s twice' % m.group(1))
        labels[m.group(1)] = re.sub(r'\\(.)', lambda e: {'n': '\n'}.get(e.group(1), e.group(1)), m.group(2))
        pos = m.end()
    return labels


def parse_metrics(text):
    """{family: {'type', 'help', 'samples': [(name, labels, value)]}}, strictly: every sample after
    its family's HELP and TYPE, a family declared once and contiguous, no series twice."""
    if not text.endswith('\n'):
        raise ValueError('the text does not end with a newline')
    families, current, seen = {}, None, set()
    for line in text[:-1].split('\n'):
        if line.startswith('# HELP '):
            name, _, help_text = line[7:].partition(' ')
            if name in families:
                raise ValueError('family %s declared twice' % name)
            families[name] = {'help': help_text, 'type': None, 'samples': []}
            current = name
            continue
        if line.startswith('# TYPE '):
            name, _, kind = line[7:].partition(' ')
            if name != current or families[name]['type'] is not None:
                raise ValueError('TYPE %s not right after its HELP' % name)
            if kind not in ('counter', 'gauge', 'histogram'):
                raise ValueError('type %r' % kind)
            families[name]['type'] = kind
            continue
        m = SAMPLE_RX.match(line)
        if not m or current is None:
            raise ValueError('bad line %r' % line)
        name, labels, value = m.group(1), parse_labels(m.group(3) or ''), parse_value(m.group(4))
        fam = families[current]
        allowed = {current} if fam['type'] != 'histogram' else {current + s for s in ('_bucket', '_sum', '_count')}
        if name not in allowed:
            raise ValueError('sample %s outside its family %s' % (name, current))
        if fam['type'] == 'counter' and not name.endswith('_total'):
            raise ValueError('counter %s without _total' % name)
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise ValueError('series twice: %r' % (key,))
        seen.add(key)
        fam['samples'].append((name, labels, value))
    for name, fam in families.items():
        if fam['type'] is None:
            raise ValueError('%s has no TYPE' % name)
    return families


def value(families, family, **labels):
    """The sum of the family's samples whose labels include labels (0 when none)."""
    fam = families.get(family)
    if not fam:
        return 0
    return sum(v for n, l, v in fam['samples'] if n == family and all(l.get(k) == x for k, x in labels.items()))


def histograms(families, family):
    """{label tuple: (buckets [(le, count)], sum, count)} of one histogram family."""
    out = {}
    for name, labels, v in families[family]['samples']:
        key = tuple(sorted((k, x) for k, x in labels.items() if k != 'le'))
        h = out.setdefault(key, {'buckets': [], 'sum': None, 'count': None})
        if name.endswith('_bucket'):
            h['buckets'].append((parse_value(labels['le']), v))
        elif name.endswith('_sum'):
            h['sum'] = v
        else:
            h['count'] = v
    return out


class MetricsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.doubles, cls.nodes = start_mesh(['a', 'b'], MODELS, double_args=('--tokens', '8'))
        a = cls.nodes['a']
        cls.key = a.argv[a.argv.index('--mesh-key') + 1]

    @classmethod
    def tearDownClass(cls):
        stop_mesh(cls.doubles, cls.nodes)

    def scrape(self, node):
        r = node.request('GET', '/metrics')
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header('Content-Type'), CONTENT_TYPE)
        return r.body.decode(), parse_metrics(r.body.decode())

    def test_1_counts_move(self):
        a, b = self.nodes['a'], self.nodes['b']
        _, before = self.scrape(a)
        _, before_b = self.scrape(b)
        for _ in range(3):
            r = a.request('POST', '/api/generate', {'model': 'alpha', 'prompt': 'hi', 'stream': True})
            self.assertEqual(r.status, 200, r)
        for _ in range(2):
            r = a.request('POST', '/api/generate', {'model': 'bravo', 'prompt': 'hi', 'stream': False})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header('X-Mycelia-Served-By'), 'b')
        r = a.request('POST', '/api/generate', {'model': 'no-such-model', 'prompt': 'hi', 'stream': False})
        self.assertEqual(r.status, 404, r)
        _, after = self.scrape(a)
        _, after_b = self.scrape(b)

        def moved(fams0, fams1, family, **labels):
            return value(fams1, family, **labels) - value(fams0, family, **labels)

        total = 'mycelia_shim_requests_total'
        self.assertEqual(moved(before, after, total, listener='api', endpoint='generate', model='alpha:latest',
                               code='200', node='a'), 3)
        self.assertEqual(moved(before, after, total, listener='api', endpoint='generate', model='bravo:latest',
                               code='200', node='b'), 2)
        # A model nobody serves is "other": clients cannot make series by naming models.
        self.assertEqual(moved(before, after, total, endpoint='generate', model='other', code='404'), 1)
        self.assertEqual(value(after, total, model='no-such-model'), 0)
        # B served the forwarded two from its mesh listener.
        self.assertEqual(moved(before_b, after_b, total, listener='mesh', endpoint='generate', code='200',
                               node='b'), 2)
        # 8 tokens a stream at the double; a non-streamed answer is one object.
        self.assertEqual(moved(before, after, 'mycelia_shim_generated_tokens_total', model='alpha:latest'), 24)
        self.assertEqual(moved(before, after, 'mycelia_shim_received_requests_total'), 7)  # + the scrape

        for family in ('mycelia_shim_time_to_first_byte_seconds', 'mycelia_shim_request_duration_seconds'):
            hs = histograms(after, family)
            key = (('endpoint', 'generate'), ('listener', 'api'))
            self.assertIn(key, hs, family)
            before_count = histograms(before, family).get(key, {'count': 0})['count']
            self.assertEqual(hs[key]['count'] - before_count, 6, family)
            for labels, h in hs.items():
                les = [le for le, _ in h['buckets']]
                counts = [c for _, c in h['buckets']]
                self.assertEqual(les, sorted(les), (family, labels))
                self.assertTrue(math.isinf(les[-1]), (family, labels))
                self.assertEqual(counts, sorted(counts), (family, labels))
                self.assertEqual(counts[-1], h['count'], (family, labels))
                self.assertGreaterEqual(h['sum'], 0)
                self.assertLessEqual(h['sum'], h['count'] * 120 + 1)

    def test_2_families(self):
        a = self.nodes['a']
        _, fams = self.scrape(a)
        for family, kind in [('mycelia_build_info', 'gauge'), ('mycelia_daemon_up', 'gauge'),
                             ('mycelia_shim_requests_in_flight', 'gauge'),
                             ('mycelia_shim_rejected_requests_total', 'counter'),
                             ('mycelia_shim_failovers_total', 'counter'),
                             ('mycelia_shim_client_sent_bytes_total', 'counter'),
                             ('mycelia_route_nodes', 'gauge'), ('mycelia_route_node_capacity', 'gauge'),
                             ('mycelia_gossip_members', 'gauge'), ('mycelia_gossip_datagrams_sent_total', 'counter'),
                             ('mycelia_gossip_bytes_received_total', 'counter'),
                             ('mycelia_shard_collections', 'gauge'), ('mycelia_shard_sync_rounds_total', 'counter'),
                             ('mycelia_process_resident_memory_bytes', 'gauge'),
                             ('mycelia_process_open_fds', 'gauge')]:
            self.assertIn(family, fams)
            self.assertEqual(fams[family]['type'], kind, family)
        for daemon in ('shimd', 'routerd', 'gossipd', 'shardd'):
            self.assertEqual(value(fams, 'mycelia_daemon_up', daemon=daemon), 1, daemon)
        self.assertEqual(value(fams, 'mycelia_gossip_members', state='alive'), 2)
        self.assertEqual(value(fams, 'mycelia_route_nodes', state='up'), 2)
        self.assertEqual(value(fams, 'mycelia_build_info'), 1)
        self.assertGreater(value(fams, 'mycelia_gossip_datagrams_sent_total'), 0)
        self.assertGreater(value(fams, 'mycelia_process_resident_memory_bytes'), 1 << 20)
        self.assertGreater(value(fams, 'mycelia_process_open_fds'), 3)
        self.assertEqual(value(fams, 'mycelia_route_node_up', node='b'), 1)

    def test_2b_head(self):
        """HEAD: the head of a GET, its Content-Length, no body."""
        raw, _ = harness.raw_exchange(self.nodes['a'].addr,
                                      b'HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
        head, sep, rest = raw.partition(b'\r\n\r\n')
        self.assertTrue(sep, raw)
        self.assertTrue(head.startswith(b'HTTP/1.1 200 '), head)
        self.assertIn(b'\r\nContent-Type: ' + CONTENT_TYPE.encode(), head)
        length = re.search(rb'\r\nContent-Length: (\d+)', head)
        self.assertIsNotNone(length, head)
        self.assertGreater(int(length.group(1)), 1000)
        self.assertEqual(rest, b'')

    def test_3_mesh_listener_needs_the_authenticator(self):
        b = self.nodes['b']
        mesh = harness.split_addr('http://' + b.mesh)
        status, _, answer = harness.mesh_tls_request(mesh, self.key, 'GET', '/metrics')
        self.assertEqual(status, 401, answer)
        headers = {'X-Mycelia-Auth': mesh_auth(self.key, 'GET', '/metrics', b.node_id, b'')}
        status, head, answer = harness.mesh_tls_request(mesh, self.key, 'GET', '/metrics', b'', headers)
        self.assertEqual(status, 200, answer)
        fams = parse_metrics(answer.decode())
        self.assertEqual(value(fams, 'mycelia_gossip_members', state='alive'), 2)

    def test_4_promtool(self):
        if not PROMTOOL:
            self.skipTest('promtool not installed (Debian package prometheus)')
        for node in self.nodes.values():
            text, _ = self.scrape(node)
            p = subprocess.run([PROMTOOL, 'check', 'metrics'], input=text, capture_output=True, text=True,
                               timeout=30)
            self.assertEqual((p.returncode, p.stdout, p.stderr), (0, '', ''), text)

    def test_5_prometheus_scrapes_the_mesh(self):
        """A real Prometheus on a free loopback port, scraping both nodes every second: its query
        API returns mycelia_gossip_members{state="alive"} 2 from each, and up 1."""
        if not PROMETHEUS:
            self.skipTest('prometheus not installed (Debian package prometheus)')
        workdir = harness.make_tmpdir('mycelia-prom-')
        targets = ['%s:%d' % harness.split_addr(n.api_url) for n in self.nodes.values()]
        config = os.path.join(workdir, 'prometheus.yml')
        with open(config, 'w') as f:
            f.write('global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n'
                    'scrape_configs:\n  - job_name: mycelia\n    static_configs:\n'
                    '      - targets: %s\n' % json.dumps(targets))
        port = harness.free_port()
        prom = harness.Proc([PROMETHEUS, '--config.file=' + config, '--storage.tsdb.path=' + os.path.join(workdir, 'data'),
                             '--web.listen-address=127.0.0.1:%d' % port, '--log.level=warn'],
                            name='prometheus', logdir=workdir)
        addr = ('127.0.0.1', port)
        try:
            def ready():
                try:
                    return harness.http_request(addr, 'GET', '/-/ready', timeout=2).status == 200
                except OSError:
                    return False
            wait_until(ready, 30, what='prometheus ready')

            def query(q):
                r = harness.http_request(addr, 'GET', '/api/v1/query?query=' + urllib.parse.quote(q), timeout=5)
                self.assertEqual(r.status, 200, r)
                data = r.json()
                self.assertEqual(data['status'], 'success', data)
                return {x['metric']['instance']: float(x['value'][1]) for x in data['data']['result']}

            want = {t: 2.0 for t in targets}
            try:
                wait_until(lambda: query('mycelia_gossip_members{state="alive",job="mycelia"}') == want, 30,
                           interval=0.5, what='prometheus has scraped both nodes')
            except Exception:
                print(prom.tail(), query('up'), sep='\n')
                raise
            self.assertEqual(query('up{job="mycelia"}'), {t: 1.0 for t in targets})
            self.assertEqual(query('mycelia_daemon_up{daemon="gossipd"}'), {t: 1.0 for t in targets})
        finally:
            prom.stop(timeout=10)
            shutil.rmtree(workdir, ignore_errors=True)

    def test_6_daemon_down_leaves_its_families_out(self):
        """Run last: stops shardd on b for a moment (SIGSTOP: it keeps its bus name, answers nothing)."""
        b = self.nodes['b']
        pid = b.shardd_pid()
        cancelled = value(self.scrape(b)[1], 'mycelia_shim_client_cancelled_total')
        os.kill(pid, 19)  # SIGSTOP: shardd holds its name but answers nothing
        try:
            # A scraper that leaves while the scrape waits for shardd: the scrape is dropped.
            with socket.create_connection(harness.split_addr(b.api_url), timeout=5) as sock:
                sock.sendall(b'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n')
                time.sleep(0.2)
            r = b.request('GET', '/metrics', timeout=10)
            self.assertEqual(r.status, 200, r)
            self.assertLess(r.elapsed, 3.0)
            fams = parse_metrics(r.body.decode())
            self.assertEqual(value(fams, 'mycelia_daemon_up', daemon='shardd'), 0)
            self.assertEqual(value(fams, 'mycelia_daemon_up', daemon='gossipd'), 1)
            self.assertNotIn('mycelia_shard_collections', fams)
            self.assertEqual(value(fams, 'mycelia_shim_client_cancelled_total'), cancelled + 1)
        finally:
            os.kill(pid, 18)  # SIGCONT
        wait_until(lambda: value(self.scrape(b)[1], 'mycelia_daemon_up', daemon='shardd') == 1, 10,
                   what='shardd answering again')


if __name__ == '__main__':
    testenv.main()
