#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The launcher mycelia-node supervises its daemons: a SIGKILLed daemon comes back and the node
# keeps serving (shardd with its collections, on the same shard socket); SIGTERM stops everything
# cleanly.
import json
import os
import signal
import threading
import time
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import Double, Node, pid_alive, proc_descendants, wait_until

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'MYCELIA_SHARDD', 'OLLAMA_DOUBLE')

SHARDSTORE = 'org.mycelia.ShardStore1'


class Restarts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.double = Double('--token-delay-ms', '0', '--tokens', '3')
        cls.node = Node(cls.double.url)
        cls.model = cls.double.chat_model()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.double.stop()

    def api_ok(self):
        r = self.node.request('GET', '/api/version', timeout=2)
        return r.status == 200

    def test_kill_shimd(self):
        old = self.node.shimd_pid()
        self.assertTrue(self.api_ok())
        os.kill(old, signal.SIGKILL)
        t0 = time.monotonic()
        wait_until(lambda: not pid_alive(old), 2, what='shimd gone after SIGKILL')

        def back():
            pid = self.node.shimd_pid()
            return pid != old and self.api_ok()
        wait_until(back, 5, interval=0.1, what='a new shimd serving %s' % self.node.api_url)
        took = time.monotonic() - t0
        self.assertTrue(self.node.proc.alive(), 'the launcher died with its shimd')
        r = self.node.request('POST', '/api/generate', {'model': self.model, 'prompt': 'x', 'stream': False})
        self.assertEqual(r.status, 200, r)
        print('shimd back after %.2fs' % took)

    def test_kill_routerd_keeps_serving(self):
        old = self.node.routerd_pid()
        results = []
        stop = threading.Event()

        def load():
            while not stop.is_set():
                try:
                    r = self.node.request('POST', '/api/generate',
                                          {'model': self.model, 'prompt': 'x', 'stream': False}, timeout=5)
                    results.append(r.status)
                except Exception as e:  # noqa: BLE001 a failure is a result here
                    results.append(repr(e))
                time.sleep(0.02)

        th = threading.Thread(target=load, daemon=True)
        th.start()
        try:
            time.sleep(0.3)
            os.kill(old, signal.SIGKILL)
            t0 = time.monotonic()

            def back():
                pid = self.node.routerd_pid()
                nodes = self.node.prop('org.mycelia.Router1', 'Nodes')
                return pid != old and nodes
            nodes = wait_until(back, 5, what='a new routerd answering Router1.Nodes')
            print('routerd back after %.2fs' % (time.monotonic() - t0))
            self.assertEqual(nodes[0][0], self.node.node_id)
            # The routing table refills from the upstream.
            wait_until(lambda: any(n[3] == 'up' for n in self.node.prop('org.mycelia.Router1', 'Nodes')), 5,
                       what='local node up again in the new routerd')
            time.sleep(0.5)
        finally:
            stop.set()
            th.join(10)
        bad = [r for r in results if r != 200]
        self.assertGreater(len(results), 5, 'too few requests made: %r' % results)
        self.assertEqual(bad, [], 'requests failed while routerd restarted (%d of %d)' % (len(bad), len(results)))
        self.assertTrue(self.node.proc.alive())

    def shard_listener_status(self):
        # Over TLS with the node's mesh key (the launcher made it in the state dir), unsigned, so
        # shardd refuses it: what counts is that shardd answers on that address.
        key = os.path.join(self.node.state_dir, 'mesh.key')
        answer = harness.mesh_tls_request(self.node.shard, key, 'GET', '/shard/digest', purpose='shard')
        return answer[0] if answer else None

    def test_kill_shardd_keeps_its_collections(self):
        self.assertRegex(self.node.shard, r'^127\.0\.0\.1:[1-9][0-9]*$', 'shard= of the ready line')
        self.assertEqual(self.shard_listener_status(), 401)
        self.node.call(SHARDSTORE, 'CreateCollection', 'suss', 'kept', '3', 'cosine', '')
        self.node.call(SHARDSTORE, 'Put', 'ss', 'kept',
                       json.dumps({'documents': [{'id': 'a', 'text': 'alpha', 'embedding': [1, 0, 0]}]}))
        others = {'shimd': self.node.shimd_pid(), 'routerd': self.node.routerd_pid(),
                  'gossipd': self.node.gossipd_pid(), 'discoveryd': self.node.discoveryd_pid()}
        old = self.node.shardd_pid()
        os.kill(old, signal.SIGKILL)
        t0 = time.monotonic()
        wait_until(lambda: not pid_alive(old), 2, what='shardd gone after SIGKILL')
        def new_owner():
            # The bus name's owner, not a pid from /proc: a new process is there before it has
            # taken the name (slower under the sanitizers).
            try:
                return harness.bus_pid_of(self.node.bus, SHARDSTORE) not in (old, None)
            except (harness.BusError, TimeoutError, ValueError, KeyError):
                return False
        wait_until(new_owner, 10, what='a new shardd owning %s' % SHARDSTORE)
        print('shardd back after %.2fs' % (time.monotonic() - t0))
        # Acknowledged means on disk: the new shardd serves what the old one stored.
        doc = json.loads(self.node.call(SHARDSTORE, 'Get', 'ss', 'kept', 'a')[0])
        self.assertEqual((doc['id'], doc['text']), ('a', 'alpha'))
        self.assertIn('kept', [c[0] for c in self.node.prop(SHARDSTORE, 'Collections')])
        # On the socket the launcher bound once and handed over again.
        self.assertEqual(self.shard_listener_status(), 401)
        self.assertEqual({'shimd': self.node.shimd_pid(), 'routerd': self.node.routerd_pid(),
                          'gossipd': self.node.gossipd_pid(), 'discoveryd': self.node.discoveryd_pid()},
                         others, 'another daemon moved when shardd was killed')
        self.assertTrue(self.api_ok())


class Stop(unittest.TestCase):
    def test_sigterm_stops_everything(self):
        double = Double('--token-delay-ms', '0')
        try:
            node = Node(double.url)
            kids = proc_descendants(node.pid)
            names = sorted(harness.proc_exe_name(p) for p in kids)
            self.assertTrue(any(n == 'mycelia-shimd' for n in names), names)
            self.assertTrue(any(n == 'mycelia-routerd' for n in names), names)
            self.assertTrue(any(n == 'mycelia-shardd' for n in names), names)
            sock = node.bus.split('unix:path=', 1)[1].split(',', 1)[0]
            self.assertTrue(os.path.exists(sock), 'bus socket %s missing while running' % sock)
            node.proc.signal(signal.SIGTERM)
            rc = node.proc.wait(10)
            self.assertEqual(rc, 0, 'launcher exit status after SIGTERM\n' + node.tail())
            left = [(p, harness.proc_exe_name(p)) for p in kids if pid_alive(p)]
            self.assertEqual(left, [], 'children left running after the launcher exited')
            self.assertFalse(os.path.exists(sock), 'bus socket %s left behind' % sock)
        finally:
            double.stop()


if __name__ == '__main__':
    testenv.main()
