#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Requests cross the mesh: three launchers on loopback joined by seeds, each in front of its own
# Ollama double with different models. A model only B has, asked at A, is served by B (also
# streamed); B's mesh API refuses requests without a valid X-Mycelia-Auth; a SIGKILLed node is out
# of A's routing table within 2 s and requests for models others have keep succeeding.
import base64
import hashlib
import hmac
import http.client
import json
import os
import signal
import time
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import Double, Node, random_node_id, wait_until, write_mesh_key

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'OLLAMA_DOUBLE')

MODELS = {'a': 'alpha:latest,shared:latest', 'b': 'bravo:latest,shared:latest',
          'c': 'charlie:latest,shared:latest'}
# Routing needs gossip to converge and every routerd to have read its peers' models.
CONVERGE_TIMEOUT = 20.0


def mesh_auth(key_file, method, target, node_id, body, ts=None):
    """The X-Mycelia-Auth value as docs/mesh-forwarding.md defines it (an independent
    implementation of common/mesh-auth.c, so the format is checked from outside too)."""
    with open(key_file) as f:
        key = base64.b64decode(f.read().strip())
    sub = hashlib.blake2b(b'mycelia-http-v1', key=key, digest_size=32).digest()
    ts = str(int(time.time()) if ts is None else ts)
    nonce = os.urandom(8).hex()
    text = '\n'.join(['v1', ts, nonce, method, target, node_id,
                      hashlib.blake2b(body, digest_size=32).hexdigest()])
    return 'v1 %s %s %s' % (ts, nonce, hmac.new(sub, text.encode(), hashlib.sha256).hexdigest())


def generate(node, model, stream=False, headers=None, timeout=15.0):
    return node.request('POST', '/api/generate', {'model': model, 'prompt': 'hello', 'stream': stream},
                        headers=headers, timeout=timeout)


class MeshForwardTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = harness.make_tmpdir('mycelia-fwd-')
        cls.key = write_mesh_key(os.path.join(cls.dir, 'mesh.key'))
        cls.doubles = {}
        cls.nodes = {}
        for name in ('a', 'b', 'c'):
            cls.doubles[name] = Double('--models', MODELS[name], '--tokens', '8', '--token-delay-ms', '40')
            seeds = ['--seed', cls.nodes['a'].gossip] if cls.nodes else []
            cls.nodes[name] = Node(cls.doubles[name].url, '--mesh-key', cls.key, *seeds,
                                   name='fwd-' + name)
        a, b, c = cls.nodes['a'], cls.nodes['b'], cls.nodes['c']

        def a_routes_to_b_and_c():
            t = a.router_nodes()
            return (t.get(b.node_id, ('', []))[0] == 'up' and 'bravo:latest' in t[b.node_id][1] and
                    t.get(c.node_id, ('', []))[0] == 'up' and 'charlie:latest' in t[c.node_id][1])

        try:
            wait_until(a_routes_to_b_and_c, CONVERGE_TIMEOUT, what="A's routing table with B and C up")
        except Exception:
            print(a.router_nodes(), a.tail(), sep='\n')
            raise

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes.values():
            n.stop()
        for d in cls.doubles.values():
            d.stop()

    def test_1_forwarded_to_the_node_that_has_the_model(self):
        a, b = self.nodes['a'], self.nodes['b']
        before_a = self.doubles['a'].stats()['requests']
        before_b = self.doubles['b'].stats()['requests']
        r = generate(a, 'bravo')
        self.assertEqual(r.status, 200, r)
        body = r.json()
        self.assertEqual(body['model'], 'bravo')
        self.assertTrue(body['done'])
        self.assertEqual(self.doubles['b'].stats()['requests'], before_b + 1)
        self.assertEqual(self.doubles['a'].stats()['requests'], before_a)
        # B's Ollama saw its own address as Host (the mesh listener rewrote it), not A's.
        self.assertEqual(self.doubles['b'].stats()['last_host'], '%s:%d' % self.doubles['b'].addr)
        self.assertEqual(b.prop('org.mycelia.Shim1', 'RejectedUnauthenticated'), 0)

    def test_2_streaming_across_the_hop(self):
        a = self.nodes['a']
        with a.stream('POST', '/api/generate', {'model': 'bravo', 'prompt': 'hi'}) as s:
            self.assertEqual(s.status, 200)
            times, lines = [], []
            for t, line in s.lines():
                times.append(t)
                lines.append(json.loads(line))
        self.assertGreaterEqual(len(lines), 8)
        self.assertTrue(lines[-1]['done'])
        self.assertTrue(all(not l['done'] for l in lines[:-1]))
        # Tokens arrive as produced (40 ms apart at the double), not in one burst at the end.
        self.assertGreater(times[-1] - times[0], 0.2)

    def test_3_client_cannot_forge_mesh_headers(self):
        a = self.nodes['a']
        r = generate(a, 'bravo', headers={'X-Mycelia-Auth': 'v1 1 0000000000000000 00', 'X-Mycelia-Hop': '1'})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()['model'], 'bravo')

    def test_4_mesh_listener_requires_the_authenticator(self):
        b = self.nodes['b']
        mesh = harness.split_addr('http://' + b.mesh)
        body = json.dumps({'model': 'bravo', 'prompt': 'x', 'stream': False}).encode()
        before = b.prop('org.mycelia.Shim1', 'RejectedUnauthenticated')
        before_requests = self.doubles['b'].stats()['requests']
        cases = {
            'missing': None,
            'garbage': 'v1 garbage',
            'wrong node': mesh_auth(self.key, 'POST', '/api/generate', '0' * 32, body),
            'stale': mesh_auth(self.key, 'POST', '/api/generate', b.node_id, body, ts=int(time.time()) - 600),
            'other path': mesh_auth(self.key, 'POST', '/api/chat', b.node_id, body),
        }
        for what, value in cases.items():
            headers = {'Content-Type': 'application/json'}
            if value:
                headers['X-Mycelia-Auth'] = value
            # Over TLS with the right key (docs/mesh-tls.md): the authenticator is checked next.
            status, _, answer = harness.mesh_tls_request(mesh, self.key, 'POST', '/api/generate', body, headers)
            self.assertEqual(status, 401, '%s: %r' % (what, answer))
            self.assertEqual(json.loads(answer), {'error': 'mesh authentication failed'})
        self.assertEqual(b.prop('org.mycelia.Shim1', 'RejectedUnauthenticated'), before + len(cases))
        self.assertEqual(self.doubles['b'].stats()['requests'], before_requests)

        # A correct one, made here from the documented format, is served by B's own Ollama.
        headers = {'Content-Type': 'application/json',
                   'X-Mycelia-Auth': mesh_auth(self.key, 'POST', '/api/generate', b.node_id, body)}
        status, _, answer = harness.mesh_tls_request(mesh, self.key, 'POST', '/api/generate', body, headers)
        self.assertEqual(status, 200, answer)
        self.assertEqual(self.doubles['b'].stats()['requests'], before_requests + 1)
        # The same authenticator again, within its window: a replay, refused (a member could
        # replay what it saw; docs/mesh-forwarding.md, "Replays").
        status, _, answer = harness.mesh_tls_request(mesh, self.key, 'POST', '/api/generate', body, headers)
        self.assertEqual(status, 401, answer)
        self.assertEqual(b.prop('org.mycelia.Shim1', 'RejectedUnauthenticated'), before + len(cases) + 1)
        self.assertEqual(self.doubles['b'].stats()['requests'], before_requests + 1)

    def test_5_mesh_listener_speaks_tls_with_the_mesh_key_only(self):
        """Plain HTTP, TLS with another key, and TLS with the right key for another purpose are all
        refused at the handshake, before any HTTP is read, and counted."""
        b = self.nodes['b']
        mesh = harness.split_addr('http://' + b.mesh)
        body = json.dumps({'model': 'bravo', 'prompt': 'x', 'stream': False}).encode()
        headers = {'Content-Type': 'application/json',
                   'X-Mycelia-Auth': mesh_auth(self.key, 'POST', '/api/generate', b.node_id, body)}
        before = b.prop('org.mycelia.Shim1', 'MeshTlsRefused')
        before_requests = self.doubles['b'].stats()['requests']
        # Plain HTTP, even with a valid authenticator: no answer at all.
        with self.assertRaises((ConnectionError, harness.ProtocolError, http.client.HTTPException)):
            harness.http_request(mesh, 'POST', '/api/generate', body, headers)
        other = write_mesh_key(os.path.join(self.dir, 'other.key'))
        self.assertIsNone(harness.mesh_tls_request(mesh, other, 'POST', '/api/generate', body, headers))
        self.assertIsNone(harness.mesh_tls_request(mesh, self.key, 'POST', '/api/generate', body, headers,
                                                   purpose='shard'))
        wait_until(lambda: b.prop('org.mycelia.Shim1', 'MeshTlsRefused') == before + 3, 5,
                   what='three refused handshakes counted')
        self.assertEqual(self.doubles['b'].stats()['requests'], before_requests)

    def test_8_silently_vanished_peer_does_not_hold_a_stream(self):
        # SIGSTOP: B's sockets stay open and say nothing (as a powered-off machine's would), so
        # only gossip can tell A that B is gone; the stream must end with an error object then,
        # not after upstream_timeout.
        a, b = self.nodes['a'], self.nodes['b']
        self.doubles['b'].faults(token_delay_ms=1000)
        pids = [b.pid] + harness.proc_descendants(b.pid)

        def signal_all(sig):
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
        try:
            with a.stream('POST', '/api/generate', {'model': 'bravo', 'prompt': 'hi'}, timeout=20) as s:
                self.assertEqual(s.status, 200)
                it = s.lines()
                next(it)
                signal_all(signal.SIGSTOP)
                t0 = time.monotonic()
                rest = [json.loads(line) for _, line in it]
                elapsed = time.monotonic() - t0
        finally:
            signal_all(signal.SIGCONT)
            self.doubles['b'].faults(token_delay_ms=40)
        print('stream to the stopped peer ended after %.2fs' % elapsed)
        self.assertIn('error', rest[-1], rest[-3:])
        self.assertIn('left the mesh', rest[-1]['error'])
        self.assertLess(elapsed, 5.0)
        # B comes back (refutes or rejoins) and is routed to again.
        wait_until(lambda: a.router_nodes().get(b.node_id, ('down',))[0] == 'up', CONVERGE_TIMEOUT,
                   what='B up again in A\'s routing table')

    def test_9_killed_node_leaves_the_table_fast(self):
        a, b = self.nodes['a'], self.nodes['b']
        wait_until(lambda: a.router_nodes().get(b.node_id, ('down',))[0] == 'up', CONVERGE_TIMEOUT,
                   what='B up in A\'s routing table')
        b.proc.kill_tree()
        t0 = time.monotonic()
        wait_until(lambda: a.router_nodes().get(b.node_id, ('down',))[0] != 'up', 5.0,
                   interval=0.05, what="B out of A's routing table")
        elapsed = time.monotonic() - t0
        print('killed node out of the routing table after %.2fs' % elapsed)
        self.assertLess(elapsed, 2.0, 'B was still up in A\'s Router1.Nodes after %.2fs' % elapsed)
        for _ in range(10):
            r = generate(a, 'shared', timeout=10)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()['model'], 'shared')



class MeshWithoutKeyTest(unittest.TestCase):
    """shimd with a mesh listener but no loadable mesh key: the API serves from the local Ollama,
    the mesh listener refuses everything (an unauthenticated mesh API would be an open relay)."""

    def test_api_serves_and_mesh_refuses(self):
        d = Double('--token-delay-ms', '0')
        bus = harness.PrivateBus()
        shim = harness.Proc([testenv.env_path('MYCELIA_SHIMD'), '--bus', bus.address, '--api', '127.0.0.1:0',
                             '--mesh', '127.0.0.1:0', '--upstream', d.url, '--node-id', random_node_id(),
                             '--mesh-key', os.path.join(bus.dir, 'no-such.key')], name='shimd')
        try:
            def addresses():
                try:
                    return (harness.bus_get_property(bus.address, 'org.mycelia.Shim1', 'ApiAddress'),
                            harness.bus_get_property(bus.address, 'org.mycelia.Shim1', 'MeshAddress'))
                except (harness.BusError, TimeoutError, KeyError, ValueError):
                    return None
            api, mesh = wait_until(addresses, 10, what='shimd on the bus')
            model = d.chat_model()
            body = {'model': model, 'prompt': 'hi', 'stream': False}
            r = harness.http_request(harness.split_addr(api), 'POST', '/api/generate', body)
            self.assertEqual(r.status, 200, r)
            served = d.stats()['requests']
            r = harness.http_request(harness.split_addr(mesh), 'POST', '/api/generate', body,
                                     headers={'X-Mycelia-Auth': 'v1 1 00 00'})
            self.assertEqual(r.status, 401, r)
            self.assertIn('error', r.json())
            self.assertEqual(d.stats()['requests'], served, 'the mesh listener reached the Ollama')
            self.assertIsNone(shim.popen.poll(), 'shimd exited without a mesh key')
        finally:
            shim.stop(timeout=5)
            bus.stop()
            d.stop()

if __name__ == '__main__':
    testenv.main()
