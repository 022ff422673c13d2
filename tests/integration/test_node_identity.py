#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Node identity as a new user meets it (docs/node-identity.md): two launchers on one machine with
# their own state directories and no --node-id form a mesh, each keeps its id across a restart;
# a third node started from a copy of the first one's state directory is reported by both
# holders of the id (error log naming both addresses, Gossip1.IdConflict, myceliactl status).
import json
import os
import re
import shutil
import subprocess
import unittest

import harness
from harness import Double, Node, wait_until, write_mesh_key

harness.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'MYCELIA_SHARDD', 'OLLAMA_DOUBLE', 'MYCELIACTL')

ID_RX = re.compile(r'^[0-9a-f]{32}\n$')
CONVERGE_TIMEOUT = 15


def read(path):
    with open(path) as f:
        return f.read()


def ctl(bus, *args):
    p = subprocess.run([harness.env_path('MYCELIACTL'), '--bus', bus] + list(args),
                       capture_output=True, text=True, timeout=15)
    return p.returncode, p.stdout, p.stderr


def gossip_prop(node, name):
    return harness.bus_get_property(node.bus, 'org.mycelia.Gossip1', name)


class NodeIdentity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = harness.make_tmpdir('mycelia-identity-')
        cls.key = write_mesh_key(os.path.join(cls.dir, 'mesh.key'))
        cls.double = Double('--token-delay-ms', '0')
        # No --node-id anywhere in this file: every id comes from a state directory.
        cls.one = Node(cls.double.url, '--mesh-key', cls.key, node_id=None, name='id-one')
        cls.two = Node(cls.double.url, '--mesh-key', cls.key, '--seed', cls.one.gossip, node_id=None,
                       name='id-two')

    @classmethod
    def tearDownClass(cls):
        for n in (cls.two, cls.one, cls.double):
            n.stop()

    def test_1_two_launchers_form_a_mesh(self):
        ids = []
        for n in (self.one, self.two):
            text = read(os.path.join(n.state_dir, 'node-id'))
            self.assertRegex(text, ID_RX, 'STATE_DIR/node-id of %s' % n.name)
            self.assertEqual(n.ready_node_id, text.strip(), 'the ready line names the id of the file')
            self.assertEqual(harness.bus_get_property(n.bus, 'org.mycelia.Router1', 'LocalNodeId'), text.strip())
            self.assertEqual(harness.bus_get_property(n.bus, 'org.mycelia.ShardStore1', 'LocalNodeId'), text.strip())
            ids.append(text.strip())
        self.assertNotEqual(ids[0], ids[1], 'two state directories made one id')
        # Each launcher picked its own free port for every listener, so both share the host.
        for field in ('gossip', 'mesh', 'shard'):
            a, b = getattr(self.one, field), getattr(self.two, field)
            self.assertTrue(a and b and a != b, '%s= of the ready lines: %r and %r' % (field, a, b))

        def both_alive(n):
            m = n.members()
            return all(i in m and m[i].state == 'alive' for i in ids)
        wait_until(lambda: both_alive(self.one) and both_alive(self.two), CONVERGE_TIMEOUT,
                   what='each launcher sees the other alive')
        for n in (self.one, self.two):
            self.assertEqual(gossip_prop(n, 'IdConflict'), '')

    def test_2_id_kept_across_a_restart(self):
        d = harness.make_tmpdir('mycelia-identity-restart-')
        first = Node(self.double.url, '--mesh-key', self.key, '--state-dir', d, node_id=None, name='id-again')
        try:
            made = read(os.path.join(d, 'node-id'))
            self.assertEqual(first.ready_node_id, made.strip())
        finally:
            self.assertEqual(first.stop(), 0)
        again = Node(self.double.url, '--mesh-key', self.key, '--state-dir', d, node_id=None, name='id-again')
        try:
            self.assertEqual(again.ready_node_id, made.strip())
            self.assertEqual(read(os.path.join(d, 'node-id')), made)
        finally:
            again.stop()

    def test_3_copied_state_directory_is_reported(self):
        # A node made from a copy of node one's state directory (its node-id file): two nodes,
        # one id. It joins through node two, as a cloned machine would.
        d = harness.make_tmpdir('mycelia-identity-clone-')
        shutil.copy(os.path.join(self.one.state_dir, 'node-id'), os.path.join(d, 'node-id'))
        clone = Node(self.double.url, '--mesh-key', self.key, '--seed', self.two.gossip, '--state-dir', d,
                     node_id=None, name='id-clone')
        try:
            self.assertEqual(clone.ready_node_id, self.one.ready_node_id)
            wait_until(lambda: gossip_prop(self.one, 'IdConflict') == clone.gossip, CONVERGE_TIMEOUT,
                       what='node one reports the clone at %s' % clone.gossip)
            wait_until(lambda: gossip_prop(clone, 'IdConflict') == self.one.gossip, CONVERGE_TIMEOUT,
                       what='the clone reports node one at %s' % self.one.gossip)

            counters = dict(self.one.gossip_counters())
            self.assertGreater(counters['id_conflicts'], 0)

            # The error line names the id and both addresses, on both sides.
            for n, other in ((self.one, clone), (clone, self.one)):
                rx = re.compile(r'error: Node id %s is also used by the node at %s \(this node is at %s\)' % (
                    n.ready_node_id, re.escape(other.gossip), re.escape(n.gossip)))
                wait_until(lambda: rx.search(read(n.proc.log_path)), 5,
                           what='the error line in the log of %s' % n.name)

            rc, out, err = ctl(self.one.bus, 'status')
            self.assertEqual(rc, 0, err)
            self.assertRegex(out, r'CONFLICT: .*node at %s' % re.escape(clone.gossip))
            rc, out, err = ctl(clone.bus, '--json', 'status')
            self.assertEqual(rc, 0, err)
            self.assertEqual(json.loads(out)['id_conflict'], self.one.gossip)
            # Node two, which holds one member for the id, has no conflict of its own.
            self.assertEqual(gossip_prop(self.two, 'IdConflict'), '')
        finally:
            clone.stop()


if __name__ == '__main__':
    harness.main()
