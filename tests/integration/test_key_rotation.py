#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Rotating the mesh key of a running 3-node mesh under a client loop (docs/key-rotation.md):
# `myceliactl key install` on every node, `key use` on every node, `key remove` of the old key on
# every node, while clients keep sending requests that cross nodes (forwarded over TLS with the
# mesh key, signed with it) and writing and querying a sharded collection (shard transfers over
# TLS). Not one request may fail; afterwards the old key is refused and gossip is whole.
import json
import os
import subprocess
import threading
import time
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import wait_until, write_mesh_key

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD', 'MYCELIA_DISCOVERYD',
                    'MYCELIA_SHARDD', 'OLLAMA_DOUBLE', 'MYCELIACTL')

NAMES = ('ra', 'rb', 'rc')
GOSSIP1 = 'org.mycelia.Gossip1'


def key_id(key_file):
    """The key's id as TLS identities and Keys show it (harness.mesh_tls_psk())."""
    return harness.mesh_tls_psk(key_file)[1].split()[1]


class ClientLoop(threading.Thread):
    """Requests through every node, pinned to the next one (a hop each), and collection writes and
    queries; every failure is kept with what it was."""

    def __init__(self, nodes):
        super().__init__(daemon=True)
        self.nodes = nodes
        self.stop_event = threading.Event()
        self.done = 0
        self.failures = []

    def one(self, i):
        entry, target = self.nodes[i % 3], self.nodes[(i + 1) % 3]
        if i % 4 == 3:
            docs = [{'id': 'd%d' % i, 'text': 'doc %d' % i, 'embedding': [1, i % 7, 0]}]
            r = entry.request('POST', '/api/mycelia/collections/rot/documents', {'documents': docs}, timeout=15)
            if r.status == 200:
                r = entry.request('POST', '/api/mycelia/collections/rot/query', {'embedding': [1, 0, 0], 'k': 3},
                                  timeout=15)
                if r.status == 200 and r.json().get('partial'):
                    return 'query partial: %r' % r.json()
        else:
            r = entry.request('POST', '/api/generate', {'model': 'shared', 'prompt': 'hi %d' % i, 'stream': i % 2 == 0},
                              headers={'X-Mycelia-Node': target.name}, timeout=15)
            if r.status == 200 and r.header('X-Mycelia-Served-By') != target.name:
                return 'served by %s, not %s' % (r.header('X-Mycelia-Served-By'), target.name)
            if r.status == 200 and i % 2 == 0 and b'"done":true' not in r.body:
                return 'stream without its end: %r' % r.body[-200:]
        return None if r.status == 200 else '%d %r' % (r.status, r.body[:200])

    def run(self):
        i = 0
        while not self.stop_event.is_set():
            try:
                why = self.one(i)
            except Exception as e:  # noqa: BLE001 a connection error is a failure too
                why = repr(e)
            if why:
                self.failures.append((time.monotonic(), i, why))
            self.done += 1
            i += 1

    def stop(self):
        self.stop_event.set()
        self.join(30)


class KeyRotation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doubles, nodes = harness.start_mesh(NAMES, 'shared:latest')
        cls.nodes = [nodes[n] for n in NAMES]
        cls.old_key = cls.nodes[0].argv[cls.nodes[0].argv.index('--mesh-key') + 1]
        cls.new_key = write_mesh_key(os.path.join(harness.make_tmpdir('mycelia-rotation-'), 'new.key'))

    @classmethod
    def tearDownClass(cls):
        harness.stop_mesh(cls.doubles, {n.name: n for n in cls.nodes})

    def ctl(self, node, *args):
        p = subprocess.run([os.environ['MYCELIACTL'], '--bus', node.bus] + list(args), capture_output=True, text=True,
                           timeout=10)
        self.assertEqual(p.returncode, 0, 'myceliactl %s on %s: %s%s' % (' '.join(args), node.name, p.stdout, p.stderr))
        return p.stdout

    def keys(self, node):
        return [tuple(k) for k in node.prop(GOSSIP1, 'Keys')]

    def test_rotation_under_load(self):
        old_id, new_id = key_id(self.old_key), key_id(self.new_key)
        a = self.nodes[0]
        r = a.request('POST', '/api/mycelia/collections', {'name': 'rot', 'dimension': 3})
        self.assertEqual(r.status, 200, r)
        for n in self.nodes:
            self.assertEqual(self.keys(n), [(old_id, True)])

        loop = ClientLoop(self.nodes)
        loop.start()
        try:
            time.sleep(1.0)
            steps = (('install', self.new_key, [(old_id, True), (new_id, False)]),
                     ('use', self.new_key, [(new_id, True), (old_id, False)]),
                     ('remove', old_id, [(new_id, True)]))
            for verb, arg, want in steps:
                # One node at a time, requests flowing in between: every mixed state is lived in.
                for n in self.nodes:
                    self.ctl(n, 'key', verb, arg)
                    self.assertEqual(self.keys(n), want, '%s after key %s' % (n.name, verb))
                    time.sleep(0.7)
            time.sleep(1.0)
        finally:
            loop.stop()
        print('%d requests during the rotation, %d failed' % (loop.done, len(loop.failures)))
        self.assertGreater(loop.done, 30, 'the client loop barely ran')
        self.assertEqual(loop.failures, [], 'requests failed during the rotation')

        # The list as myceliactl prints it.
        out = json.loads(self.ctl(a, '--json', 'key', 'list'))
        self.assertEqual(out, [{'id': new_id, 'primary': True}])
        # Gossip whole under the new key alone.
        for n in self.nodes:
            wait_until(lambda: sorted(m.state for m in n.members().values()) == ['alive'] * 3, 10,
                       what='%s seeing 3 alive members' % n.name)
        # The old key is refused at the TLS handshake of both kinds of listener.
        b = self.nodes[1]
        self.assertIsNone(harness.mesh_tls_request(b.mesh, self.old_key, 'GET', '/api/tags'))
        self.assertIsNone(harness.mesh_tls_request(b.shard, self.old_key, 'GET', '/shard/digest', purpose='shard'))
        self.assertIsNotNone(harness.mesh_tls_request(b.mesh, self.new_key, 'GET', '/api/tags'))

        # The keyring is kept: a restarted shim and gossipd read it from the state dir.
        os.kill(b.shimd_pid(), 9)
        os.kill(b.gossipd_pid(), 9)
        wait_until(lambda: self.keys(b) == [(new_id, True)], 15, what='gossipd back with the new keyring')
        wait_until(lambda: b.request('POST', '/api/generate', {'model': 'shared', 'prompt': 'x', 'stream': False},
                                     headers={'X-Mycelia-Node': 'rc'}, timeout=5).status == 200, 15,
                   what='the restarted shim forwarding with the new key')

        # Misuse: the primary key cannot be removed; garbage is refused.
        p = subprocess.run([os.environ['MYCELIACTL'], '--bus', a.bus, 'key', 'remove', new_id], capture_output=True,
                           text=True, timeout=10)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('primary', p.stderr)
        p = subprocess.run([os.environ['MYCELIACTL'], '--bus', a.bus, 'key', 'install', 'not-a-key'],
                           capture_output=True, text=True, timeout=10)
        self.assertNotEqual(p.returncode, 0)


if __name__ == '__main__':
    testenv.main()
