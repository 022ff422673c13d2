#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Nodes started by mycelia-node on loopback form one mesh through seeds: they converge, notice a
# killed gossipd, take it back with a higher incarnation, drop a node that leaves, and keep out a
# node with another mesh key. Membership is read where a user reads it: Gossip1 over busctl.
import os
import signal
import time
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import Double, Node, pid_alive, wait_until, write_mesh_key

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'OLLAMA_DOUBLE')

# Different model sets, so that each node is told apart by what it serves.
MODELS = ('llama3.2:latest,all-minilm:latest', 'qwen2.5:0.5b,all-minilm:latest',
          'mistral:7b,nomic-embed-text:latest')

# Three nodes of the LAN defaults agree within a few probe rounds; generous for a loaded CI box.
CONVERGE_TIMEOUT = 15.0


def safe_members(node):
    try:
        return node.members(timeout=2)
    except (harness.BusError, TimeoutError, KeyError, ValueError):
        return {}


def alive_ids(node):
    return {i for i, m in safe_members(node).items() if m.state == 'alive'}


class Mesh:
    """n nodes on loopback, each in front of its own double, one shared mesh key, nodes 2..n
    seeded with node 1's gossip address."""

    def __init__(self, n=3, prefix='mesh'):
        self.dir = harness.make_tmpdir('mycelia-mesh-')
        self.key = write_mesh_key(os.path.join(self.dir, 'mesh.key'))
        self.doubles = []
        self.nodes = []
        for i in range(n):
            d = Double('--token-delay-ms', '0', '--tokens', '3', '--models', MODELS[i % len(MODELS)])
            self.doubles.append(d)
            seeds = ['--seed', self.nodes[0].gossip] if self.nodes else []
            self.nodes.append(Node(d.url, '--mesh-key', self.key, *seeds,
                                   name='%s-%d' % (prefix, i + 1)))
        for node in self.nodes:
            assert node.gossip and node.mesh, 'ready line without gossip=/mesh=: %s' % node.tail()

    def ids(self):
        return {n.node_id for n in self.nodes}

    def wait_converged(self, nodes=None, timeout=CONVERGE_TIMEOUT):
        nodes = nodes or self.nodes
        want = {n.node_id for n in nodes}
        t0 = time.monotonic()
        wait_until(lambda: all(want <= alive_ids(n) for n in nodes), timeout, interval=0.1,
                   what='%d nodes alive in every Members' % len(nodes))
        return time.monotonic() - t0

    def stop(self):
        for n in self.nodes:
            n.stop()
        for d in self.doubles:
            d.stop()


class Converge(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mesh = Mesh(3, 'conv')
        cls.took = cls.mesh.wait_converged()
        print('3 nodes converged %.2fs after the last was ready' % cls.took)

    @classmethod
    def tearDownClass(cls):
        cls.mesh.stop()

    def test_ready_line_fields(self):
        for n in self.mesh.nodes:
            self.assertEqual(n.ready_node_id, n.node_id)
            host, port = harness.split_addr(n.gossip)
            self.assertEqual(host, '127.0.0.1')
            self.assertGreater(port, 0)
            self.assertGreater(harness.split_addr(n.mesh)[1], 0)

    def test_three_alive_everywhere(self):
        for n in self.mesh.nodes:
            members = n.members()
            self.assertEqual(set(members), self.mesh.ids(), members)
            for m in members.values():
                self.assertEqual(m.state, 'alive', members)
            local = n.prop('org.mycelia.Gossip1', 'LocalNode')
            self.assertEqual(local[0], n.node_id)

    def test_members_carry_names_and_addresses(self):
        by_id = {n.node_id: n for n in self.mesh.nodes}
        members = self.mesh.nodes[0].members()
        for i, m in members.items():
            self.assertEqual(m.name, by_id[i].name)
            self.assertIn(by_id[i].gossip, m.addresses)

    def test_metadata_mesh_address_published(self):
        # shimd publishes its mesh listener with SetLocalMetadata; a peer routes to it.
        by_id = {n.node_id: n for n in self.mesh.nodes}

        def published():
            members = self.mesh.nodes[0].members()
            return all(harness.split_addr(members[i].meta.get('mesh', 'x:0'))[1]
                       == harness.split_addr(by_id[i].mesh)[1] for i in by_id)
        wait_until(published, 10, what='every member with its mesh address in metadata')

    def test_wrong_key_never_a_member(self):
        before = [int(n.gossip_counters().get('dropped_key', 0)) for n in self.mesh.nodes]
        d = Double('--token-delay-ms', '0', '--models', 'intruder:latest')
        other_key = write_mesh_key(os.path.join(self.mesh.dir, 'other.key'))
        seeds = []
        for n in self.mesh.nodes:
            seeds += ['--seed', n.gossip]
        intruder = Node(d.url, '--mesh-key', other_key, *seeds, name='intruder')
        try:
            # Every node hears from it (its seeds), and drops what it sends.
            def dropped():
                now = [int(n.gossip_counters().get('dropped_key', 0)) for n in self.mesh.nodes]
                return all(a > b for a, b in zip(now, before)) and now
            now = wait_until(dropped, 10, interval=0.2, what='dropped_key growing on every node')
            # Several probe and join rounds later it is still nowhere.
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                for n in self.mesh.nodes:
                    self.assertNotIn(intruder.node_id, n.members(), 'the node without the key became a member')
                time.sleep(0.2)
            self.assertEqual(set(intruder.members()), {intruder.node_id})
            print('dropped_key before %s, after %s' % (before, now))
        finally:
            intruder.stop()
            d.stop()


class GossipdKilled(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mesh = Mesh(3, 'kill')
        cls.mesh.wait_converged()

    @classmethod
    def tearDownClass(cls):
        cls.mesh.stop()

    def incarnation_at_others(self, victim):
        return [n.members()[victim.node_id].incarnation for n in self.mesh.nodes if n is not victim]

    def rejoined(self, victim, old_pid, old_incarnation):
        others = [n for n in self.mesh.nodes if n is not victim]

        def back():
            pid = victim.gossipd_pid()
            if pid == old_pid:
                return False
            for n in others:
                m = safe_members(n).get(victim.node_id)
                if not m or m.state != 'alive' or m.incarnation <= old_incarnation:
                    return False
            return alive_ids(victim) >= self.mesh.ids()
        wait_until(back, 15, interval=0.05, what='%s rejoined with a higher incarnation' % victim.name)

    def test_1_kill9_restarted_and_rejoins(self):
        victim = self.mesh.nodes[2]
        old_pid = victim.gossipd_pid()
        old_inc = max(self.incarnation_at_others(victim))
        os.kill(old_pid, signal.SIGKILL)
        t0 = time.monotonic()
        self.rejoined(victim, old_pid, old_inc)
        self.assertTrue(victim.proc.alive())
        print('gossipd of %s back, incarnation %d -> %s, after %.2fs' % (
            victim.name, old_inc, self.incarnation_at_others(victim), time.monotonic() - t0))

    def test_2_failure_noticed_while_down(self):
        # The launcher restarts a killed gossipd within ~0.1 s, often before a probe notices. Hold
        # the launcher (SIGSTOP: no restart) so the others must detect the failure, then let it go.
        victim = self.mesh.nodes[1]
        others = [n for n in self.mesh.nodes if n is not victim]
        old_pid = victim.gossipd_pid()
        old_inc = max(self.incarnation_at_others(victim))
        os.kill(victim.pid, signal.SIGSTOP)
        try:
            os.kill(old_pid, signal.SIGKILL)
            t0 = time.monotonic()
            wait_until(lambda: not pid_alive(old_pid), 2, what='gossipd gone after SIGKILL')
            seen = {}

            def noticed():
                for n in others:
                    m = safe_members(n).get(victim.node_id)
                    state = m.state if m else 'gone'
                    if state != 'alive':
                        seen.setdefault(n.name, {}).setdefault(state, round(time.monotonic() - t0, 2))
                return all(any(s in ('dead', 'gone') for s in seen.get(n.name, {})) for n in others)
            wait_until(noticed, 10, interval=0.02, what='the others mark %s failed' % victim.name)
            print('states seen after the kill (s): %s' % seen)
        finally:
            os.kill(victim.pid, signal.SIGCONT)
        self.rejoined(victim, old_pid, old_inc)


class NodeLeaves(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mesh = Mesh(3, 'leave')
        cls.mesh.wait_converged()

    @classmethod
    def tearDownClass(cls):
        cls.mesh.stop()

    def test_sigterm_node_left_within_2s(self):
        victim = self.mesh.nodes[2]
        others = self.mesh.nodes[:2]
        t0 = time.monotonic()
        victim.proc.signal(signal.SIGTERM)
        seen = {}

        def left():
            for n in others:
                m = safe_members(n).get(victim.node_id)
                if n.name not in seen and (m is None or m.state == 'left'):
                    seen[n.name] = (m.state if m else 'gone', round(time.monotonic() - t0, 3))
            return len(seen) == len(others)
        wait_until(left, 2.0, interval=0.02, what='%s left at both others within 2 s' % victim.name)
        print('left seen (state, s): %s' % seen)
        self.assertEqual(victim.proc.wait(10), 0)
        # Nobody marks it dead afterwards, and the two others stay alive.
        time.sleep(1)
        for n in others:
            m = n.members().get(victim.node_id)
            self.assertTrue(m is None or m.state == 'left', m)
            self.assertEqual(alive_ids(n), {o.node_id for o in others})



def have_ipv6_loopback():
    import socket
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(('::1', 0))
        return True
    except OSError:
        return False


class Ipv6Mesh(unittest.TestCase):
    """Gossip, push-pull, the seed and the mesh API on [::1]: two nodes join through an IPv6
    seed, and a request for the model only the second has is forwarded over IPv6."""

    def test_join_and_forward_over_ipv6(self):
        if not have_ipv6_loopback():
            testenv.skip_allowed_in_ci('no IPv6 loopback (::1) on this machine')
        d = harness.make_tmpdir('mycelia-v6-')
        key = write_mesh_key(os.path.join(d, 'mesh.key'))
        da = Double('--token-delay-ms', '0', '--models', 'v6-alpha:latest')
        db = Double('--token-delay-ms', '0', '--models', 'v6-bravo:latest')
        a = b = None
        try:
            a = Node(da.url, '--mesh-key', key, '--gossip', '[::1]:0', '--mesh', '[::1]:0',
                     name='v6-a')
            self.assertTrue(a.gossip.startswith('[::1]:'), a.gossip)
            b = Node(db.url, '--mesh-key', key, '--gossip', '[::1]:0', '--mesh', '[::1]:0', '--seed', a.gossip,
                     name='v6-b')

            def routed():
                for n in a.prop('org.mycelia.Router1', 'Nodes'):
                    if n[0] == b.node_id and n[3] == 'up' and 'v6-bravo:latest' in n[7]:
                        return n
                return None
            entry = wait_until(routed, CONVERGE_TIMEOUT, what="b up with its model in a's routing table")
            self.assertTrue(entry[2].startswith('http://[::1]:'), entry[2])
            self.assertEqual(a.members()[b.node_id].addresses, [b.gossip])
            before = db.stats()['completed']
            r = a.request('POST', '/api/generate', {'model': 'v6-bravo', 'prompt': 'hi', 'stream': False})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()['model'], 'v6-bravo')
            self.assertEqual(db.stats()['last_path'], '/api/generate')
            self.assertGreater(db.stats()['completed'], before)
        finally:
            for x in (b, a):
                if x:
                    x.stop()
            da.stop()
            db.stop()

if __name__ == '__main__':
    testenv.main()
