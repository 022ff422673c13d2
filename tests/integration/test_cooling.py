#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The circuit breaker across a real mesh (docs/router-outcomes.md): three launchers on loopback,
# each in front of its own Ollama double serving one shared model. One double answers 503 to
# inference: the entry node's routerd cools that node down after three failed attempts (Nodes
# state "cooling", Router1.Cooling with the deadline, myceliactl status), requests keep
# succeeding and stop reaching it; at the deadline it is offered again (half-open), a failure
# there cools it for twice as long, and once its Ollama is fixed one request closes the breaker.
import json
import subprocess
import time
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import wait_until

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'OLLAMA_DOUBLE', 'MYCELIACTL')

NAMES = ('ca', 'cb', 'cc')
CONVERGE_TIMEOUT = 20.0
# node-breaker.h: the first cooling lasts at most 1 s, the second at most 2 s, each at most a
# tenth shorter (jitter).
FIRST_BACKOFF = 1.0
SECOND_BACKOFF = 2.0
# Reports reach routerd every 100 ms, property reads and process starts take a little more.
SLACK = 1.5


def ctl(*args, bus=None, timeout=15):
    argv = [testenv.env_path('MYCELIACTL')] + (['--bus', bus] if bus else []) + [str(a) for a in args]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def generate(node, policy='round-robin'):
    """One request for the shared model; it must succeed. Returns the name of the node that
    answered."""
    r = node.request('POST', '/api/generate', {'model': 'shared', 'prompt': 'hello', 'stream': False},
                     headers={'X-Mycelia-Policy': policy}, timeout=30)
    if r.status != 200:
        raise AssertionError('generate answered %d: %r' % (r.status, r.body[:300]))
    return r.header('X-Mycelia-Served-By')


class Cooling(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doubles, cls.nodes = harness.start_mesh(
            NAMES, {name: '%s:latest,shared:latest' % name for name in NAMES},
            double_args=('--tokens', '4', '--token-delay-ms', '0', '--num-parallel', '16'),
            node_args=('--parallel', '16'), timeout=CONVERGE_TIMEOUT)
        cls.a = cls.nodes['ca']
        cls.b = cls.nodes['cb']

    @classmethod
    def tearDownClass(cls):
        harness.stop_mesh(cls.doubles, cls.nodes)

    def tearDown(self):
        self.doubles['cb'].faults()

    # Router1.Cooling on node ca as {node_id: (state, until_usec)}.
    def cooling(self):
        return {t[0]: (t[1], int(t[2])) for t in self.a.prop('org.mycelia.Router1', 'Cooling')}

    def b_cooling(self):
        return self.cooling().get(self.b.node_id)

    def b_state(self):
        return self.a.router_nodes().get(self.b.node_id, ('gone',))[0]

    def b_requests(self):
        """Requests cb's Ollama received (any path)."""
        return self.doubles['cb'].stats()['requests']

    def send_until(self, pred, limit, what):
        """Sends requests for the shared model through ca until pred() holds; every one must
        succeed. Returns the names of the nodes that answered."""
        served = []
        for _ in range(limit):
            served.append(generate(self.a))
            v = pred()
            if v:
                return served
        # Reports travel every 100 ms: give the last ones time to arrive.
        wait_until(pred, 2.0, what=what)
        return served

    def test_failing_node_cools_down_and_comes_back(self):
        self.assertEqual(self.cooling(), {})

        # cb's Ollama fails every inference; the shim retries each failed attempt elsewhere.
        self.doubles['cb'].faults(fail_status=503)
        served = self.send_until(lambda: self.b_cooling(), 60, 'cb cooling on ca')
        self.assertNotIn('cb', served, served)
        state, until = self.b_cooling()
        now = time.time() * 1e6
        self.assertEqual(state, 'open')
        self.assertGreater(until, now - 0.2e6)
        self.assertLessEqual(until - now, FIRST_BACKOFF * 1e6)
        self.assertEqual(self.b_state(), 'cooling')

        # Operators see it: a Cooling line and the state in the routes table, and in --json.
        rc, out, err = ctl('status', bus=self.a.bus)
        self.assertEqual(rc, 0, err)
        line = next((l for l in out.splitlines() if l.strip().startswith('Cooling:')), None)
        self.assertIsNotNone(line, out)
        self.assertIn('cb (%s)' % self.b.node_id[:12], line)
        self.assertIn('until %s' % time.strftime('%H:%M:%S', time.localtime(until / 1e6)), line)
        self.assertIn('half-open then', line)
        row = next(l for l in out.splitlines() if l.startswith(self.b.node_id[:12]))
        self.assertIn('cooling', row.split())
        rc, out, err = ctl('--json', 'status', bus=self.a.bus)
        self.assertEqual(rc, 0, err)
        st = json.loads(out)
        self.assertEqual(st['cooling'], [{'id': self.b.node_id, 'name': 'cb', 'state': 'open',
                                          'until_usec': until}])
        self.assertEqual({r['name']: r['state'] for r in st['routes']}['cb'], 'cooling')

        # At the deadline it is offered again; without traffic it stays half-open.
        wait_until(lambda: self.b_cooling() == ('half-open', 0), (until / 1e6 - time.time()) + SLACK,
                   what='cb half-open after its first cooling')
        self.assertEqual(self.b_state(), 'up')
        rc, out, err = ctl('status', bus=self.a.bus)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r'Cooling: cb \(%s\) half-open' % self.b.node_id[:12])

        # Still failing: the first request it gets cools it again, for twice as long.
        served = self.send_until(lambda: (self.b_cooling() or ('',))[0] == 'open', 30, 'cb cooling again')
        self.assertNotIn('cb', served, served)
        state, until = self.b_cooling()
        left = until - time.time() * 1e6
        self.assertEqual(state, 'open')
        self.assertGreater(left, FIRST_BACKOFF * 1e6)
        self.assertLessEqual(left, SECOND_BACKOFF * 1e6)
        self.assertEqual(self.b_state(), 'cooling')

        # While it cools, requests keep succeeding and none is sent to it at all (no failed
        # attempt to pay). Stop short of the deadline.
        before = self.b_requests()
        n = 0
        while time.time() * 1e6 < until - 0.3e6:
            self.assertNotEqual(generate(self.a), 'cb')
            n += 1
        self.assertGreater(n, 0)
        # cb's routerd may poll its Ollama's /api/tags meanwhile: one request, not an inference.
        self.assertLessEqual(self.b_requests() - before, 1)

        # Fixed: at the deadline it is half-open, and its first good answer closes the breaker.
        self.doubles['cb'].faults()
        t_fixed = time.time()
        wait_until(lambda: self.b_cooling() == ('half-open', 0), (until / 1e6 - t_fixed) + SLACK,
                   what='cb half-open after its second cooling')
        served = self.send_until(lambda: self.b_cooling() is None, 30, 'cb closed')
        self.assertIn('cb', served, served)
        self.assertLessEqual(time.time() - t_fixed, SECOND_BACKOFF + 2 * SLACK)
        self.assertEqual(self.cooling(), {})
        self.assertEqual(self.b_state(), 'up')
        rc, out, err = ctl('--json', 'status', bus=self.a.bus)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)['cooling'], [])
        rc, out, err = ctl('status', bus=self.a.bus)
        self.assertNotIn('Cooling:', out)

        # Closed means the backoff starts over: three more failures cool it for 1 s again.
        self.doubles['cb'].faults(fail_status=503)
        self.send_until(lambda: self.b_cooling(), 60, 'cb cooling once more')
        state, until = self.b_cooling()
        self.assertEqual(state, 'open')
        self.assertLessEqual(until - time.time() * 1e6, FIRST_BACKOFF * 1e6)

    def test_client_errors_do_not_cool(self):
        # What the client causes says nothing about the node: 4xx answers and clients that hang
        # up, each many more times than three in a row, on cb only (the model only cb has).
        wait_until(lambda: self.b_cooling() is None and self.b_state() == 'up', 35,
                   what='cb closed before the test')
        for _ in range(6):
            r = self.a.request('POST', '/v1/chat/completions', {'model': 'cb', 'messages': []})
            self.assertEqual(r.status, 400, r)
            self.assertEqual(r.header('X-Mycelia-Served-By'), 'cb')
        self.doubles['cb'].faults(token_delay_ms=200)
        cancelled = self.doubles['cb'].stats()['cancelled']
        for _ in range(6):
            s = self.a.stream('POST', '/api/generate', {'model': 'cb', 'prompt': 'x', 'stream': True})
            self.assertEqual(s.status, 200)
            s.sock.close()
        wait_until(lambda: self.doubles['cb'].stats()['cancelled'] >= cancelled + 6, 5,
                   what="cb's Ollama seeing the clients go")
        time.sleep(0.3)
        self.assertIsNone(self.b_cooling())
        self.assertEqual(self.b_state(), 'up')

    def test_waits_for_the_only_node_to_recover(self):
        # A model only cb serves, cb cooling down: a request waits for the end of the cooling
        # ([router] cooling_wait, 10 s by default, is longer) and is then sent, instead of
        # failing at once or being sent early (docs/routing-policies.md).
        # The test before may leave cb half-open: one good answer closes it.
        wait_until(lambda: self.b_cooling() in (None, ('half-open', 0)), 5, what='cb not cooling')
        r = self.a.request('POST', '/api/generate', {'model': 'cb', 'prompt': 'x', 'stream': False})
        self.assertEqual(r.status, 200, r)
        wait_until(lambda: self.b_cooling() is None and self.b_state() == 'up', 5,
                   what='cb closed before the test')
        self.doubles['cb'].faults(fail_status=503)
        for _ in range(3):
            r = self.a.request('POST', '/api/generate', {'model': 'cb', 'prompt': 'x', 'stream': False})
            self.assertEqual(r.status, 503, r)
        wait_until(lambda: (self.b_cooling() or ('',))[0] == 'open', 2.0, what='cb cooling')
        state, until = self.b_cooling()
        self.doubles['cb'].faults()
        waits = self.a.prop('org.mycelia.Shim1', 'CoolingWaits')
        t0 = time.time()
        r = self.a.request('POST', '/api/generate', {'model': 'cb', 'prompt': 'x', 'stream': False}, timeout=30)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header('X-Mycelia-Served-By'), 'cb')
        # Sent at the deadline, not before (the clocks agree to well under 50 ms here).
        self.assertGreaterEqual(time.time(), until / 1e6 - 0.05, (t0, until / 1e6))
        self.assertEqual(self.a.prop('org.mycelia.Shim1', 'CoolingWaits'), waits + (1 if until / 1e6 > t0 else 0))
        self.assertGreater(until / 1e6, t0, 'the cooling ended before the request was sent; nothing was tested')
        # Its answer closes the breaker.
        wait_until(lambda: self.b_cooling() is None, 3.0, what='cb closed')


if __name__ == '__main__':
    testenv.main()
