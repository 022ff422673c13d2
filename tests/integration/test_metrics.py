#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# GET /metrics (docs/metrics.md) on a 3-node mesh: the text parses under a strict reading of the
# Prometheus text format 0.0.4, the request counters move by what was sent (one model served
# here, one forwarded, with its routing decision), the histograms are consistent, gossip sees 3
# alive members, discovery its seed, shardd the shards it holds, every daemon its RSS and fds, the
# mesh listener answers only with the authenticator, promtool (Debian's prometheus) accepts it, a
# real Prometheus server scraping the three nodes answers its query API with the series of each,
# and a peer whose Ollama fails counts failovers away from it and a cooldown.
import json
import math
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
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
MODELS = {'a': 'alpha:latest,shared:latest', 'b': 'bravo:latest,shared:latest', 'c': 'charlie:latest,shared:latest'}
NAMES = ['a', 'b', 'c']
DAEMONS = ('shimd', 'routerd', 'gossipd', 'shardd', 'discoveryd')
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


# ---- a stand-in for systemd on the node's private bus, for mycelia_process_restarts_total ----
# The D-Bus wire format as far as this needs it (little-endian; basic types and variants of them),
# written here because the integration tests are standard library only (docs/testing.md): they run
# under whatever python3 meson found, which need not have dbus-python.

def _pad(buf, n):
    buf.extend(b'\0' * (-len(buf) % n))


def _put(buf, sig, v):
    """Marshals one value of a basic type or a variant (v: (signature, value))."""
    if sig == 'y':
        buf.append(v)
    elif sig == 'u':
        _pad(buf, 4)
        buf.extend(struct.pack('<I', v))
    elif sig in 'so':
        b = v.encode()
        _pad(buf, 4)
        buf.extend(struct.pack('<I', len(b)) + b + b'\0')
    elif sig == 'g':
        b = v.encode()
        buf.extend(bytes([len(b)]) + b + b'\0')
    elif sig == 'v':
        _put(buf, 'g', v[0])
        _put(buf, v[0], v[1])
    else:
        raise ValueError(sig)


def _get(data, pos, sig):
    if sig == 'y':
        return data[pos], pos + 1
    if sig == 'u':
        pos += -pos % 4
        return struct.unpack_from('<I', data, pos)[0], pos + 4
    if sig in 'so':
        pos += -pos % 4
        n = struct.unpack_from('<I', data, pos)[0]
        return data[pos + 4:pos + 4 + n].decode(), pos + 5 + n
    if sig == 'g':
        n = data[pos]
        return data[pos + 1:pos + 1 + n].decode(), pos + 2 + n
    if sig == 'v':
        inner, pos = _get(data, pos, 'g')
        if len(inner) != 1:
            raise ValueError('variant of %r' % inner)
        return _get(data, pos, inner)
    raise ValueError(sig)


FIELDS = {1: 'o', 2: 's', 3: 's', 4: 's', 5: 'u', 6: 's', 7: 's', 8: 'g'}


def _message(mtype, serial, fields, sig='', args=()):
    body = bytearray()
    for s, v in zip(sig, args):
        _put(body, s, v)
    if sig:
        fields = fields + [(8, sig)]
    head = bytearray(b'l' + bytes([mtype, 0, 1]) + struct.pack('<III', len(body), serial, 0))
    start = len(head)
    for code, v in fields:
        _pad(head, 8)
        head.append(code)
        _put(head, 'v', (FIELDS[code], v))
    struct.pack_into('<I', head, 12, len(head) - start)
    _pad(head, 8)
    return bytes(head + body)


class FakeSystemd(threading.Thread):
    """org.freedesktop.systemd1 on a private bus, as far as GET /metrics asks it: Properties.Get
    of org.freedesktop.systemd1.Service MainPID and NRestarts on unit objects. units: {unit
    name: (main_pid, n_restarts)}; any other unit answers MainPID 0, as systemd does for a unit
    it does not have."""

    def __init__(self, address, units):
        super().__init__(daemon=True)
        self.units = {'/org/freedesktop/systemd1/unit/' + ''.join(
            c if c.isalnum() else '_%02x' % ord(c) for c in name): v for name, v in units.items()}
        self.asked = []
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(address[len('unix:path='):])
        self.sock.sendall(b'\0AUTH EXTERNAL %s\r\n' % str(os.getuid()).encode().hex().encode())
        if not self._line().startswith(b'OK'):
            raise RuntimeError('auth refused')
        self.sock.sendall(b'BEGIN\r\n')
        self.serial = 0
        self._call('/org/freedesktop/DBus', 'org.freedesktop.DBus', 'Hello')
        self._call('/org/freedesktop/DBus', 'org.freedesktop.DBus', 'RequestName', 'su',
                   ('org.freedesktop.systemd1', 4))
        self.buf = b''
        # The name is ours once the bus answered RequestName (serial 2).
        while True:
            mtype, serial, fields, body = self._read()
            if mtype == 2 and fields.get(5) == 2:
                break
        self.start()

    def _line(self):
        out = b''
        while not out.endswith(b'\r\n'):
            out += self.sock.recv(1)
        return out

    def _call(self, path, iface, member, sig='', args=()):
        self.serial += 1
        self.sock.sendall(_message(1, self.serial, [(1, path), (2, iface), (3, member),
                                                    (6, 'org.freedesktop.DBus')], sig, args))

    def _recv(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _read(self):
        head = self._recv(16)
        mtype = head[1]
        body_len, serial, fields_len = struct.unpack_from('<III', head, 4)
        rest = self._recv(fields_len + (-(16 + fields_len) % 8) + body_len)
        data = head + rest
        fields, pos = {}, 16
        while pos < 16 + fields_len:
            pos += -pos % 8
            code = data[pos]
            fields[code], pos = _get(data, pos + 1, 'v')
        body = data[16 + fields_len + (-(16 + fields_len) % 8):]
        return mtype, serial, fields, body

    def run(self):
        try:
            while True:
                mtype, serial, fields, body = self._read()
                if mtype != 1:
                    continue
                sender, path, member = fields.get(7), fields.get(1), fields.get(3)
                self.serial += 1
                if member == 'Get' and fields.get(8) == 'ss':
                    iface, pos = _get(body, 0, 's')
                    prop, _ = _get(body, pos, 's')
                    self.asked.append((path, prop))
                    main_pid, restarts = self.units.get(path, (0, 0))
                    if iface == 'org.freedesktop.systemd1.Service' and prop in ('MainPID', 'NRestarts'):
                        self.sock.sendall(_message(2, self.serial, [(5, serial), (6, sender)], 'v',
                                                   [('u', main_pid if prop == 'MainPID' else restarts)]))
                        continue
                self.sock.sendall(_message(3, self.serial, [(4, 'org.freedesktop.DBus.Error.UnknownProperty'),
                                                            (5, serial), (6, sender)], 's', ['no such property']))
        except (EOFError, OSError):
            pass

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class MetricsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.doubles, cls.nodes = start_mesh(NAMES, MODELS, double_args=('--tokens', '8'))
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
        # B served the forwarded two from its mesh listener, and names their model: it reads
        # the body for the label (it never routes them).
        self.assertEqual(moved(before_b, after_b, total, listener='mesh', endpoint='generate', model='bravo:latest',
                               code='200', node='b'), 2)
        self.assertEqual(value(after_b, total, listener='mesh', model=''), 0)
        # Each request was a routing decision under the table's policy: alpha and bravo have one
        # node each ("only_node"); the model nobody serves found none ("no_node").
        picks = 'mycelia_route_picks_total'
        self.assertEqual(moved(before, after, picks, reason='only_node'), 5)
        self.assertEqual(moved(before, after, picks, reason='no_node'), 1)
        self.assertEqual(moved(before, after, picks), 6)
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
                             ('mycelia_process_open_fds', 'gauge'),
                             ('mycelia_route_picks_total', 'counter'),
                             ('mycelia_route_node_retries_total', 'counter'),
                             ('mycelia_route_node_failovers_total', 'counter'),
                             ('mycelia_route_node_cooldowns_total', 'counter'),
                             ('mycelia_discovery_peers', 'gauge'),
                             ('mycelia_shard_shards_held', 'gauge'),
                             ('mycelia_shard_sync_lag_seconds', 'gauge'),
                             ('mycelia_shard_sync_bytes_moved_total', 'counter')]:
            self.assertIn(family, fams)
            self.assertEqual(fams[family]['type'], kind, family)
        for daemon in DAEMONS:
            self.assertEqual(value(fams, 'mycelia_daemon_up', daemon=daemon), 1, daemon)
        self.assertEqual(value(fams, 'mycelia_gossip_members', state='alive'), 3)
        self.assertEqual(value(fams, 'mycelia_route_nodes', state='up'), 3)
        self.assertEqual(value(fams, 'mycelia_build_info'), 1)
        self.assertGreater(value(fams, 'mycelia_gossip_datagrams_sent_total'), 0)
        self.assertGreater(value(fams, 'mycelia_process_resident_memory_bytes'), 1 << 20)
        self.assertGreater(value(fams, 'mycelia_process_open_fds'), 3)
        self.assertEqual(value(fams, 'mycelia_route_node_up', node='b'), 1)

        # Every daemon of the node, found by its bus name's pid: all run as this user here.
        for daemon in DAEMONS:
            self.assertGreater(value(fams, 'mycelia_process_resident_memory_bytes', daemon=daemon), 1 << 20, daemon)
            self.assertGreater(value(fams, 'mycelia_process_open_fds', daemon=daemon), 2, daemon)
        # No systemd on the launcher's bus: restarts are not known, so not shown.
        self.assertNotIn('mycelia_process_restarts_total', fams)

        # Per node: one series (node, node_id) for each node of the table, no other; failovers
        # by reason.
        ids = {n.node_id: name for name, n in self.nodes.items()}
        for family in ('mycelia_route_node_retries_total', 'mycelia_route_node_cooldowns_total'):
            got = {(l['node'], l['node_id']) for _, l, _ in fams[family]['samples']}
            self.assertEqual(got, {(name, i) for i, name in ids.items()}, family)
        got = {(l['node_id'], l['reason']) for _, l, _ in fams['mycelia_route_node_failovers_total']['samples']}
        self.assertEqual(got, {(i, r) for i in ids for r in ('failure', 'status')})
        # Picks: the labels are a fixed set.
        for _, l, _ in fams['mycelia_route_picks_total']['samples']:
            self.assertIn(l['policy'], ('round-robin', 'least-loaded', 'gravity', 'latency', 'local-first'))
            self.assertIn(l['reason'], ('gravity_hit', 'rendezvous', 'overloaded', 'no_context', 'round_robin',
                                        'least_loaded', 'faster_of_two', 'local', 'local_busy', 'only_node',
                                        'all_cooling', 'no_node', 'other'))

        # Discovery: a is the seed of the others, and has none itself (no mDNS in the tests).
        self.assertEqual(value(fams, 'mycelia_discovery_peers', source='seed'), 0)
        self.assertEqual(value(fams, 'mycelia_discovery_peers', source='mdns'), 0)
        _, fams_b = self.scrape(self.nodes['b'])
        self.assertEqual(value(fams_b, 'mycelia_discovery_peers', source='seed'), 1)

    def test_2c_shards_held(self):
        """A collection's shards: each node's mycelia_shard_shards_held is what its shardd lists
        in ShardStore1.Shards (this test's collection is the only one), and there are some."""
        a = self.nodes['a']
        r = a.request('POST', '/api/mycelia/collections', {'name': 'metrics', 'dimension': 4})
        self.assertEqual(r.status // 100, 2, r)
        docs = [{'id': 'd%d' % i, 'embedding': [1.0, i, 0.5, -1.0]} for i in range(40)]
        r = a.request('POST', '/api/mycelia/collections/metrics/documents', {'documents': docs})
        self.assertEqual(r.status, 200, r)

        def held():
            return sum(value(self.scrape(n)[1], 'mycelia_shard_shards_held') for n in self.nodes.values())
        wait_until(lambda: held() > 0, 10, what='shards held')

        def agree():
            return all(value(self.scrape(n)[1], 'mycelia_shard_shards_held') ==
                       len(n.call('org.mycelia.ShardStore1', 'Shards', 's', 'metrics')[0])
                       for n in self.nodes.values())
        # Sync may still move a shard between two reads: they agree once it rests.
        wait_until(agree, 10, what='shards_held and ShardStore1.Shards agree')
        for node in self.nodes.values():
            fams = self.scrape(node)[1]
            self.assertGreaterEqual(value(fams, 'mycelia_shard_sync_lag_seconds'), 0)
            self.assertLess(value(fams, 'mycelia_shard_sync_lag_seconds'), 60)

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

    def test_2d_restarts_under_systemd(self):
        """With org.freedesktop.systemd1 on the bus (a stand-in): NRestarts of a unit whose
        MainPID is the pid owning the daemon's bus name; nothing for a unit running another pid
        or none."""
        a = self.nodes['a']
        fake = FakeSystemd(a.bus, {'mycelia-routerd.service': (a.routerd_pid(), 2),
                                   'mycelia-shimd.service': (a.shimd_pid(), 0),
                                   'mycelia-gossipd.service': (1, 5)})
        try:
            _, fams = self.scrape(a)
        finally:
            fake.close()
        self.assertEqual(fams['mycelia_process_restarts_total']['type'], 'counter')
        self.assertEqual({l['daemon']: v for _, l, v in fams['mycelia_process_restarts_total']['samples']},
                         {'routerd': 2, 'shimd': 0})
        self.assertIn(('/org/freedesktop/systemd1/unit/mycelia_2dshardd_2eservice', 'NRestarts'), fake.asked)
        # Gone again: so is the family.
        self.assertNotIn('mycelia_process_restarts_total', self.scrape(a)[1])

    def test_3_mesh_listener_needs_the_authenticator(self):
        b = self.nodes['b']
        mesh = harness.split_addr('http://' + b.mesh)
        status, _, answer = harness.mesh_tls_request(mesh, self.key, 'GET', '/metrics')
        self.assertEqual(status, 401, answer)
        headers = {'X-Mycelia-Auth': mesh_auth(self.key, 'GET', '/metrics', b.node_id, b'')}
        status, head, answer = harness.mesh_tls_request(mesh, self.key, 'GET', '/metrics', b'', headers)
        self.assertEqual(status, 200, answer)
        fams = parse_metrics(answer.decode())
        self.assertEqual(value(fams, 'mycelia_gossip_members', state='alive'), 3)

    def test_4_promtool(self):
        if not PROMTOOL:
            self.skipTest('promtool not installed (Debian package prometheus)')
        for node in self.nodes.values():
            text, _ = self.scrape(node)
            p = subprocess.run([PROMTOOL, 'check', 'metrics'], input=text, capture_output=True, text=True,
                               timeout=30)
            self.assertEqual((p.returncode, p.stdout, p.stderr), (0, '', ''), text)

    def test_5_prometheus_scrapes_the_mesh(self):
        """A real Prometheus on a free loopback port, scraping the three nodes every second: its
        query API returns mycelia_gossip_members{state="alive"} 3 from each, up 1, and the new
        families' series of every node."""
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

            want = {t: 3.0 for t in targets}
            try:
                wait_until(lambda: query('mycelia_gossip_members{state="alive",job="mycelia"}') == want, 30,
                           interval=0.5, what='prometheus has scraped the three nodes')
            except Exception:
                print(prom.tail(), query('up'), sep='\n')
                raise
            self.assertEqual(query('up{job="mycelia"}'), {t: 1.0 for t in targets})
            self.assertEqual(query('mycelia_daemon_up{daemon="gossipd"}'), {t: 1.0 for t in targets})
            # Each node's view of each node, and of each of its own daemons.
            every = {t: 3.0 for t in targets}
            for family in ('mycelia_route_node_retries_total', 'mycelia_route_node_cooldowns_total'):
                self.assertEqual(query('count by (instance) (%s)' % family), every, family)
            self.assertEqual(query('count by (instance) (mycelia_route_node_failovers_total)'),
                             {t: 6.0 for t in targets})
            self.assertEqual(query('count by (instance) (mycelia_process_resident_memory_bytes)'),
                             {t: float(len(DAEMONS)) for t in targets})
            self.assertEqual(query('sum by (instance) (mycelia_discovery_peers)'),
                             {t: (0.0 if i == 0 else 1.0) for i, t in enumerate(targets)})
            self.assertEqual(set(query('sum by (instance) (mycelia_route_picks_total)')), set(targets))
            self.assertEqual(set(query('mycelia_shard_shards_held')), set(targets))
        finally:
            prom.stop(timeout=10)
            shutil.rmtree(workdir, ignore_errors=True)

    def test_6_daemon_down_leaves_its_families_out(self):
        """Run late: stops shardd on b for a moment (SIGSTOP: it keeps its bus name, answers nothing)."""
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

    def test_7_failovers_and_cooldowns_by_node(self):
        """Run last: c's Ollama answers 503 to every inference. Requests for the shared model from
        a, round-robin, that land on c move to another node before their first byte (each a
        failover away from c, reason "status"); three in a row cool c down on a's routerd, which
        Router1.Cooldowns counts and the metrics show for c only."""
        a, c = self.nodes['a'], self.nodes['c']
        _, before = self.scrape(a)
        labels = {'node': 'c', 'node_id': c.node_id}
        self.doubles['c'].faults(fail_status=503)
        try:
            served = []

            def cooled():
                r = a.request('POST', '/api/generate', {'model': 'shared', 'prompt': 'hi', 'stream': False},
                              headers={'X-Mycelia-Policy': 'round-robin'}, timeout=30)
                self.assertEqual(r.status, 200, r)
                served.append(r.header('X-Mycelia-Served-By'))
                return value(self.scrape(a)[1], 'mycelia_route_node_cooldowns_total', **labels) >= 1
            wait_until(cooled, 20, interval=0.05, what="c's first cooldown on a")
        finally:
            self.doubles['c'].faults()
        self.assertNotIn('c', served)
        _, after = self.scrape(a)

        def moved(family, **l):
            return value(after, family, **l) - value(before, family, **l)
        fo = 'mycelia_route_node_failovers_total'
        self.assertGreaterEqual(moved(fo, reason='status', **labels), 3)
        self.assertEqual(moved(fo, reason='failure', **labels), 0)
        for name in ('a', 'b'):
            self.assertEqual(moved(fo, node=name), 0, name)
            self.assertEqual(moved('mycelia_route_node_cooldowns_total', node=name), 0, name)
        self.assertEqual(moved('mycelia_route_node_cooldowns_total', **labels), 1)
        # The totals without the node label agree.
        self.assertEqual(moved('mycelia_shim_failovers_total', reason='status'), moved(fo, reason='status'))
        # Round-robin decisions, the first picks and the failovers' picks.
        self.assertGreaterEqual(moved('mycelia_route_picks_total', policy='round-robin'), len(served) + 3)


if __name__ == '__main__':
    testenv.main()
