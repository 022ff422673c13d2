#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# myceliactl against two real nodes on loopback: what status, members, route and shards print (tables
# and --json), join and leave, keygen, and the exit codes scripts rely on (docs/myceliactl.md).
import base64
import json
import os
import stat
import subprocess
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import Double, Node, wait_until, write_mesh_key

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'MYCELIA_SHARDD', 'OLLAMA_DOUBLE', 'MYCELIACTL')

SHARDSTORE = 'org.mycelia.ShardStore1'


def read(path):
    with open(path) as f:
        return f.read()


def ctl(*args, bus=None, timeout=15):
    argv = [testenv.env_path('MYCELIACTL')] + (['--bus', bus] if bus else []) + [str(a) for a in args]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


class TestCtl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = harness.make_tmpdir('mycelia-ctl-')
        key = write_mesh_key(os.path.join(cls.dir, 'mesh.key'))
        cls.d1 = Double('--token-delay-ms', '0', '--models', 'alpha:latest')
        cls.d2 = Double('--token-delay-ms', '0', '--models', 'beta:latest')
        cls.n1 = Node(cls.d1.url, '--mesh-key', key, name='ctl-one')
        cls.n2 = Node(cls.d2.url, '--mesh-key', key, '--seed', cls.n1.gossip,
                      name='ctl-two')

        def routed():
            rc, out, _ = ctl('--json', 'status', bus=cls.n1.bus)
            if rc != 0:
                return False
            routes = json.loads(out)['routes']
            return sum(1 for r in routes if r['state'] == 'up' and r['models']) == 2
        wait_until(routed, 15, what='both nodes up with models in node 1 routing table')

    @classmethod
    def tearDownClass(cls):
        for x in (cls.n2, cls.n1, cls.d2, cls.d1):
            x.stop()

    def test_status_table(self):
        rc, out, err = ctl('status', bus=self.n1.bus)
        self.assertEqual(rc, 0, err)
        self.assertIn('ctl-one', out)
        # Every daemon of the node, in start order.
        self.assertIn('gossipd up discoveryd up routerd up shardd up shimd up', out)
        self.assertIn('2 alive, 0 suspect, 0 dead, 0 left', out)
        self.assertIn('alpha:latest', out)
        self.assertIn('beta:latest', out)     # the routing table lists the peer's models
        self.assertEqual(err, '')
        # No command means status.
        rc2, out2, _ = ctl(bus=self.n1.bus)
        self.assertEqual(rc2, 0)
        self.assertIn('ctl-one', out2)

    def test_top(self):
        """top (issue 13): the status view refreshed, with this node's request rate."""
        for _ in range(5):
            self.n1.request('POST', '/api/generate', {'model': 'alpha', 'prompt': 'hi', 'stream': False})
        rc, out, err = ctl('top', '--iterations', '3', '--interval', '0.2', bus=self.n1.bus)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.count('gossipd up discoveryd up routerd up shardd up shimd up'), 3, out)
        self.assertEqual(out.count('Requests: '), 3, out)
        self.assertRegex(out, r'Requests: \d+ in flight, \d+ in all\.')        # the first view: no rate yet
        self.assertRegex(out, r'Requests: \d+ in flight, [0-9.]+/s, \d+ in all\.')
        self.assertNotIn('\033[2J', out)       # not a terminal: the screen is not cleared
        for bad in (('--iterations', '0'), ('--interval', '0'), ('--interval', 'x')):
            rc, _, err = ctl('top', *bad, bus=self.n1.bus)
            self.assertEqual(rc, 2, err)

    def test_status_json(self):
        rc, out, err = ctl('--json', 'status', bus=self.n1.bus)
        self.assertEqual(rc, 0, err)
        st = json.loads(out)
        self.assertEqual(st['id'], self.n1.node_id)
        self.assertEqual(st['daemons'], {'mycelia-gossipd': True, 'mycelia-discoveryd': True,
                                         'mycelia-routerd': True, 'mycelia-shardd': True,
                                         'mycelia-shimd': True})
        self.assertEqual({m['name'] for m in st['members']}, {'ctl-one', 'ctl-two'})
        by_name = {r['name']: r for r in st['routes']}
        self.assertEqual(by_name['ctl-two']['models'], ['beta:latest'])
        self.assertTrue(by_name['ctl-two']['address'].startswith('http://127.0.0.1:'))

    def test_members(self):
        rc, out, err = ctl('members', bus=self.n2.bus)
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith('ID'), out)
        self.assertIn('2 members listed.', out)
        rc, out, _ = ctl('--no-legend', 'members', bus=self.n2.bus)
        self.assertEqual(rc, 0)
        self.assertEqual(len(out.splitlines()), 2, out)
        self.assertTrue(all(' alive ' in l for l in out.splitlines()), out)
        rc, out, _ = ctl('--json', 'members', bus=self.n2.bus)
        members = json.loads(out)
        one = next(m for m in members if m['name'] == 'ctl-one')
        self.assertEqual(one['addresses'], [self.n1.gossip])
        self.assertEqual(one['metadata']['models'], 'alpha:latest')
        self.assertEqual(one['metadata']['mesh'], self.n1.mesh)

    def test_route(self):
        rc, out, err = ctl('route', 'beta', bus=self.n1.bus)
        self.assertEqual(rc, 0, err)
        self.assertIn(self.n2.node_id, out)
        rc, out, _ = ctl('--json', 'route', 'alpha:latest', bus=self.n1.bus)
        self.assertEqual(rc, 0)
        self.assertEqual(json.loads(out)['id'], self.n1.node_id)
        rc, out, err = ctl('route', 'no-such-model', bus=self.n1.bus)
        self.assertEqual(rc, 4)
        self.assertIn('No live node serves no-such-model', err)

    def test_join_arguments(self):
        rc, out, err = ctl('join', 'not-an-address', bus=self.n1.bus)
        self.assertEqual(rc, 1, out)
        self.assertIn('mycelia-gossipd:', err)
        rc, out, err = ctl('--json', 'join', self.n2.gossip, bus=self.n1.bus)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)['accepted'], 1)

    def test_usage_errors(self):
        self.assertEqual(ctl('frobnicate')[0], 2)
        self.assertEqual(ctl('route')[0], 2)
        self.assertEqual(ctl('members', 'extra')[0], 2)
        self.assertEqual(ctl('--no-such-option')[0], 2)

    def test_bus_unreachable(self):
        rc, out, err = ctl('members', bus='unix:path=' + os.path.join(self.dir, 'no-bus.sock'))
        self.assertEqual(rc, 3)
        self.assertIn('Cannot connect to the bus', err)

    def collection_kb(self):
        """Makes collection kb on node 1 once, with 4 live documents and 1 deleted, and returns its
        entry of ShardStore1.Collections."""
        one, cls = self.n1, type(self)
        if not getattr(cls, 'kb', None):
            ids = {one.node_id, self.n2.node_id}
            wait_until(lambda: {t[0] for t in one.prop(SHARDSTORE, 'Nodes') if t[2]} == ids, 15,
                       what="both shardds alive in node 1's shard members")
            one.call(SHARDSTORE, 'CreateCollection', 'suss', 'kb', 4, 'cosine', '')
            docs = [{'id': 'doc-%d' % i, 'embedding': [1, i, 0.5, -1], 'text': 'doc %d' % i} for i in range(5)]
            self.assertEqual(len(one.call(SHARDSTORE, 'Put', 'ss', 'kb', json.dumps({'documents': docs}))[0]), 5)
            one.call(SHARDSTORE, 'Delete', 'ss', 'kb', 'doc-4')
            [cls.kb] = one.prop(SHARDSTORE, 'Collections')
        # Two nodes, two replicas: node 1 holds every shard, so all 4 live documents.
        self.assertEqual([cls.kb[i] for i in (0, 1, 2, 3, 6)], ['kb', 4, 'cosine', '', 4])
        return cls.kb

    def test_shards(self):
        one, two = self.n1, self.n2
        _, _, _, _, n_shards, replicas, _ = self.collection_kb()

        rc, out, err = ctl('shards', bus=one.bus)
        self.assertEqual((rc, err), (0, ''))
        self.assertTrue(out.startswith('      Nodes: '), out)
        self.assertRegex(out, r'ctl-one \(%s\) http://127\.0\.0\.1:\d+ alive, this node\n' % one.node_id[:12])
        self.assertRegex(out, r'ctl-two \(%s\) http://127\.0\.0\.1:\d+ alive\n' % two.node_id[:12])
        self.assertRegex(out, r'Sync: \d+ rounds; transfers \d+ pending, \d+ done, \d+ failed; \S+ moved; '
                              r'\d+ shards dropped')
        if 'blobs_stored' in dict(one.prop(SHARDSTORE, 'Sync')):
            self.assertRegex(out, r'\n      Blobs: \d+ stored here, \d+ pushed, \d+ dropped\n')
        self.assertRegex(out, r'\nNAME +DIMENSION +METRIC +MODEL +SHARDS +REPLICAS +DOCS-HERE\n')
        self.assertRegex(out, r'\nkb +4 +cosine +- +%d +%d +4\n' % (n_shards, replicas))
        self.assertIn('1 collections listed.', out)

        rc, out, err = ctl('--json', 'shards', bus=one.bus)
        self.assertEqual(rc, 0, err)
        st = json.loads(out)
        self.assertEqual(st['id'], one.node_id)
        self.assertEqual({(n['id'], n['name'], n['local'], n['state']) for n in st['nodes']},
                         {(one.node_id, 'ctl-one', True, 'alive'), (two.node_id, 'ctl-two', False, 'alive')})
        self.assertTrue(all(n['url'].startswith('http://127.0.0.1:') for n in st['nodes']), st['nodes'])
        # Every counter shardd has, by its name (the values move on between the two reads).
        self.assertLessEqual({'rounds', 'transfers_pending', 'transfers_done', 'transfers_failed', 'bytes_moved',
                              'shards_dropped'}, set(st['sync']))
        self.assertEqual(set(st['sync']), set(dict(one.prop(SHARDSTORE, 'Sync'))))
        self.assertEqual(st['collections'], [{'name': 'kb', 'dimension': 4, 'metric': 'cosine', 'model': None,
                                              'shards': n_shards, 'replicas': replicas, 'documents': 4}])

    def test_shards_collection(self):
        """A row per shard: the holders by name, this node starred, and the counts of the shards
        stored here."""
        one, two = self.n1, self.n2
        _, _, _, _, n_shards, replicas, _ = self.collection_kb()

        rc, out, err = ctl('shards', 'kb', bus=one.bus)
        self.assertEqual((rc, err), (0, ''))
        self.assertIn('Collection: kb (dimension 4, cosine), %d shards, %d replicas, 4 documents here' %
                      (n_shards, replicas), out)
        lines = out.splitlines()
        head = lines.index(next(l for l in lines if l.startswith('SHARD ')))
        self.assertEqual(lines[head].split(), ['SHARD', 'HOLDERS', 'DOCS', 'TOMBSTONES', 'BYTES', 'LOG-HEAD', 'DIGEST'])
        rows = [l.split() for l in lines[head + 1:lines.index('', head)]]
        self.assertEqual([int(r[0]) for r in rows], list(range(n_shards)))
        for r in rows:
            self.assertEqual(sorted(r[1].split(',')), ['ctl-one*', 'ctl-two'], r)
        stored = [r for r in rows if r[2] != '-']
        self.assertEqual(sum(int(r[2]) for r in stored), 4, out)
        self.assertEqual(sum(int(r[3]) for r in stored), 1, out)
        self.assertIn('%d shards, %d stored here; * marks this node.' % (n_shards, len(stored)), out)

        rc, out, err = ctl('--json', 'shards', 'kb', bus=one.bus)
        self.assertEqual(rc, 0, err)
        st = json.loads(out)
        self.assertEqual((st['id'], st['collection']['name'], st['collection']['documents']), (one.node_id, 'kb', 4))
        self.assertEqual([s['shard'] for s in st['shards']], list(range(n_shards)))
        for s in st['shards']:
            self.assertEqual({(h['id'], h['name'], h['local']) for h in s['holders']},
                             {(one.node_id, 'ctl-one', True), (two.node_id, 'ctl-two', False)})
        here = {t[0]: tuple(t[1:]) for t in one.call(SHARDSTORE, 'Shards', 's', 'kb')[0]}
        self.assertEqual({s['shard']: (s['documents'], s['tombstones'], s['bytes'], s['log_head'], s['digest'])
                          for s in st['shards'] if s['stored']}, here)
        self.assertTrue(all(s['documents'] is None and s['digest'] is None for s in st['shards'] if not s['stored']))

    def test_shards_unknown_collection(self):
        self.collection_kb()
        rc, out, err = ctl('shards', 'nope', bus=self.n1.bus)
        self.assertEqual((rc, out), (1, ''))
        self.assertEqual(err, 'mycelia-shardd: collection "nope" not found\n')
        self.assertEqual(ctl('--json', 'shards', 'nope', bus=self.n1.bus)[:2], (1, ''))
        self.assertEqual(ctl('shards', 'kb', 'extra', bus=self.n1.bus)[0], 2)

    def test_keygen(self):
        path = os.path.join(self.dir, 'new.key')
        rc, out, err = ctl('keygen', path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o640)
        before = read(path)
        self.assertEqual(len(base64.b64decode(before.strip(), validate=True)), 32)
        rc, out, err = ctl('keygen', path)
        self.assertEqual(rc, 1)
        self.assertIn('refusing to replace', err)
        self.assertEqual(read(path), before)


class TestCtlDaemonDown(unittest.TestCase):
    """A node whose gossipd (and discoveryd and shardd) is not running: the commands that need it
    say so and exit 3."""

    def test_gossipd_down(self):
        d = Double('--token-delay-ms', '0')
        try:
            n = Node(d.url, name='lonely',
                     daemons=('MYCELIA_ROUTERD', 'MYCELIA_SHIMD'))
            try:
                rc, out, err = ctl('members', bus=n.bus)
                self.assertEqual(rc, 3)
                self.assertIn('mycelia-gossipd is not running', err)
                rc, out, err = ctl('status', bus=n.bus)
                self.assertEqual(rc, 3)
                self.assertIn('gossipd DOWN', out)
                self.assertIn('routerd up shardd DOWN shimd up', out)
                # What runs still answers.
                rc, out, err = ctl('route', d.chat_model(), bus=n.bus)
                self.assertEqual(rc, 0, err)
            finally:
                n.stop()
        finally:
            d.stop()


class TestCtlShardsDown(unittest.TestCase):
    """A node without mycelia-shardd: shards says it is not running, in one line, and exits 3."""

    def test_shardd_down(self):
        d = Double('--token-delay-ms', '0')
        try:
            n = Node(d.url, name='no-shards', daemons=('MYCELIA_GOSSIPD', 'MYCELIA_ROUTERD', 'MYCELIA_SHIMD'))
            try:
                for args in (('shards',), ('--json', 'shards'), ('shards', 'kb')):
                    rc, out, err = ctl(*args, bus=n.bus)
                    self.assertEqual((rc, out), (3, ''), args)
                    self.assertEqual(err, 'mycelia-shardd is not running (org.mycelia.ShardStore1 has no owner '
                                          'on the bus).\n', args)
            finally:
                n.stop()
        finally:
            d.stop()


class TestCtlLeave(unittest.TestCase):
    def test_leave(self):
        dir = harness.make_tmpdir('mycelia-ctl-leave-')
        key = write_mesh_key(os.path.join(dir, 'mesh.key'))
        d = Double('--token-delay-ms', '0')
        a = b = None
        try:
            a = Node(d.url, '--mesh-key', key, name='stay')
            b = Node(d.url, '--mesh-key', key, '--seed', a.gossip, name='go')
            wait_until(lambda: b.node_id in a.members() and a.members()[b.node_id].state == 'alive', 15,
                       what='b alive at a')
            inc = a.members()[b.node_id].incarnation
            rc, out, err = ctl('leave', bus=b.bus)
            self.assertEqual(rc, 0, err)
            self.assertIn('Left the mesh', out)
            # a sees b leave; the launcher then restarts b's gossipd, which rejoins higher.
            wait_until(lambda: a.members()[b.node_id].incarnation > inc, 10, what='b left or rejoined at a')
        finally:
            for x in (b, a):
                if x:
                    x.stop()
            d.stop()


if __name__ == '__main__':
    testenv.main()
