#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# mycelia-shardd across a real mesh (docs/shardd.md): three launchers on loopback with R = 2.
# 10,000 documents written through one node are stored twice (the per-node counts add up to
# 20,000) and found from every node; a whole node crashes (frozen, then SIGKILLed, so gossip
# must detect it): every document is still found, and
# the survivors copy what it held until each document is on both of them again; the node comes
# back with its store and catches up (writes made while it was away included) until every shard's
# holders have equal digests; a fourth node joins, takes its share, and the others drop what they
# handed over (the counts add up to exactly two copies again).
import json
import math
import os
import random
import subprocess
import time
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import BusError, wait_until

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD', 'MYCELIA_DISCOVERYD',
                    'MYCELIA_SHARDD', 'OLLAMA_DOUBLE')

NAME = 'org.mycelia.ShardStore1'
DIM = 8
N_DOCS = 10000
BATCH = 250
SETTLE = 90.0
NODE_ARGS = ('--shard-sync-interval', '2s')


def vec(rng):
    v = [rng.gauss(0, 1) for _ in range(DIM)]
    n = math.sqrt(sum(x * x for x in v))
    return [round(x / n, 6) for x in v]


class ShardMesh(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doubles, cls.nodes = harness.start_mesh(('ka', 'kb', 'kc'), 'm:latest', node_args=NODE_ARGS)
        cls.rng = random.Random(11)
        cls.docs = {}

    @classmethod
    def tearDownClass(cls):
        harness.stop_mesh(cls.doubles, cls.nodes)

    # ---- helpers ----

    def call(self, node, method, sig, *args):
        return node.call(NAME, method, sig, *args)

    def shard_nodes(self, node):
        try:
            return {t[0]: t[2] for t in node.prop(NAME, 'Nodes')}
        except (BusError, TimeoutError):
            return {}

    def counts(self):
        out = {}
        for name, node in self.nodes.items():
            try:
                cols = {c[0]: c for c in node.prop(NAME, 'Collections')}
            except (BusError, TimeoutError):
                continue
            out[name] = cols['kb1'][6] if 'kb1' in cols else 0
        return out

    def put(self, node, n):
        ids = []
        for k in range(0, n, BATCH):
            docs = []
            for _ in range(min(BATCH, n - k)):
                doc_id = 'doc-%06d' % len(self.docs)
                self.docs[doc_id] = vec(self.rng)
                docs.append({'id': doc_id, 'embedding': self.docs[doc_id], 'text': doc_id, 'metadata': {'i': len(self.docs)}})
            ids += self.call(node, 'Put', 'ss', 'kb1', json.dumps({'documents': docs}))[0]
        return ids

    def find(self, node, doc_id):
        ans = json.loads(self.call(node, 'Search', 'ss', 'kb1',
                                   json.dumps({'embedding': self.docs[doc_id], 'k': 1}))[0])
        return ans

    def check_found(self, nodes, sample, settle=10.0):
        """Each document of sample is the top hit from one of nodes. An answer may be partial for
        a moment after a membership change, and says so (a shard whose only complete copy was on
        the node that died, until the survivor that now holds it is brought up to date): it is
        asked again for up to settle seconds; a wrong answer that is not partial fails at once."""
        for i, doc_id in enumerate(sample):
            node = nodes[i % len(nodes)]
            deadline = time.monotonic() + settle
            ans = self.find(node, doc_id)
            while ans['partial'] and time.monotonic() < deadline:
                time.sleep(0.2)
                ans = self.find(node, doc_id)
            self.assertFalse(ans['partial'], ans)
            if [r['id'] for r in ans['results']] != [doc_id]:
                where = {}
                for n in nodes:
                    try:
                        where[n.name] = (self.call(n, 'Get', 'ss', 'kb1', doc_id)[0][:40], n.prop(NAME, 'Nodes'))
                    except BusError as e:
                        where[n.name] = str(e)
                self.fail('%s not found from %s: %r; %r\n%s' % (doc_id, node.name, ans, where, node.tail()))
            self.assertAlmostEqual(ans['results'][0]['score'], 1.0, places=4)

    def digests_agree(self, nodes):
        """Every shard's holders (as the first node computes them) report equal digests."""
        holders = {t[0]: t[1] for t in self.call(nodes[0], 'Holders', 's', 'kb1')[0]}
        by_node = {}
        for node in nodes:
            by_node[node.node_id] = {t[0]: t[5] for t in self.call(node, 'Shards', 's', 'kb1')[0]}
        self.mismatch = []
        for shard, hs in holders.items():
            digests = {by_node.get(h, {}).get(shard) for h in hs}
            if len(digests) != 1 or None in digests:
                self.mismatch.append((shard, [(h[:6], by_node.get(h, {}).get(shard)) for h in hs]))
        return not self.mismatch

    # ---- the story, in order ----

    def test_mesh(self):
        a, b, c = self.nodes['ka'], self.nodes['kb'], self.nodes['kc']
        ids = {n.node_id for n in (a, b, c)}
        wait_until(lambda: all(set(self.shard_nodes(n)) == ids for n in (a, b, c)), 30,
                   what='every shardd seeing the three')

        # A collection made on one node is known on all.
        self.call(a, 'CreateCollection', 'suss', 'kb1', DIM, 'cosine', '')
        wait_until(lambda: len(self.counts()) == 3, 10, what='kb1 on every node')

        # 10,000 documents through one node: two copies of each, spread over the three.
        self.assertEqual(len(self.put(a, N_DOCS)), N_DOCS)
        counts = self.counts()
        self.assertEqual(sum(counts.values()), 2 * N_DOCS, counts)
        for name, n in counts.items():
            self.assertGreater(n, N_DOCS // 3, counts)
        sample = random.Random(3).sample(sorted(self.docs), 150)
        self.check_found([a, b, c], sample)

        # kill -9 of a whole node: queries still find everything, then the survivors restore two
        # copies of each document between themselves.
        c_state, c_id = c.state_dir, c.node_id
        c.proc.crash()
        self.check_found([a, b], sample[:60])
        wait_until(lambda: set(self.shard_nodes(a)) == {a.node_id, b.node_id} and
                   set(self.shard_nodes(b)) == {a.node_id, b.node_id}, 30, what='kc gone from the shard members')
        del self.nodes['kc']
        wait_until(lambda: self.counts().get('ka') == N_DOCS and self.counts().get('kb') == N_DOCS, SETTLE,
                   what='every document on both survivors (%r)' % (self.counts(),))
        self.check_found([a, b], sample)
        # Written while kc is away: kc must catch up on these.
        extra = self.put(b, 500)
        self.assertEqual(self.counts(), {'ka': N_DOCS + 500, 'kb': N_DOCS + 500})

        # kc comes back with its store and id: it catches up until every shard's holders agree.
        c = harness.Node(self.doubles['kc'].url, '--seed', a.gossip, '--mesh-key', self.mesh_key(a),
                         '--state-dir', c_state, '--node-id', c_id, *NODE_ARGS, name='kc')
        c.real_state_dir = c_state
        self.nodes['kc'] = c
        ids = {a.node_id, b.node_id, c.node_id}
        wait_until(lambda: all(set(self.shard_nodes(n)) == ids for n in (a, b, c)), 30, what='kc back')
        total = N_DOCS + 500
        try:
            wait_until(lambda: sum(self.counts().values()) == 2 * total and self.digests_agree([a, b, c]), SETTLE,
                       what='two copies of everything and equal digests')
        except TimeoutError as e:
            raise AssertionError('%s\n%r\n%r' % (e, self.state(), self.mismatch[:5]))
        self.check_found([c], [d for d in extra[:30]] + sample[:30])

        # A fourth node joins: it takes its share and the others drop what they handed over, and
        # say so with Rebalanced.
        monitor = subprocess.Popen(['busctl', '--address=' + a.bus, 'monitor', '--json=short',
                                    "--match=type='signal',interface='%s',member='Rebalanced'" % NAME],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        d = harness.Node(self.doubles['ka'].url, '--seed', a.gossip, '--mesh-key', self.mesh_key(a), *NODE_ARGS,
                         name='kd')
        self.nodes['kd'] = d
        ids.add(d.node_id)
        wait_until(lambda: all(set(self.shard_nodes(n)) == ids for n in (a, b, c, d)), 30, what='kd known')
        wait_until(lambda: self.counts().get('kd', 0) > 0 and sum(self.counts().values()) == 2 * total and
                   self.digests_agree([a, b, c, d]), SETTLE,
                   what='kd holding its share, two copies in all (%r)' % (self.counts(),))
        for name, n in self.counts().items():
            self.assertGreater(n, total // 4, self.counts())
        self.check_found([d, a], sample[:40])
        sync = dict(a.prop(NAME, 'Sync'))
        self.assertGreater(sync['shards_dropped'] + dict(b.prop(NAME, 'Sync'))['shards_dropped'], 0)
        monitor.terminate()
        out, _ = monitor.communicate(timeout=10)
        signals = [json.loads(line) for line in out.splitlines() if line.strip().startswith('{')]
        rebalanced = [m['payload']['data'] for m in signals if m.get('member') == 'Rebalanced']
        self.assertTrue(rebalanced, out[-2000:])
        # (transfers done, failed, bytes moved, shards dropped): ka sent kd its share.
        self.assertTrue(any(r[0] > 0 and r[2] > 0 for r in rebalanced), rebalanced)

    def test_zz_deleted_while_away(self):
        # A collection deleted while a node is away stays deleted when it comes back: its push of
        # the old copy is refused (410) and it deletes its own; one made again under that name is
        # another collection and lives.
        a, b = self.nodes['ka'], self.nodes['kb']
        c = self.nodes['kc']
        self.call(a, 'CreateCollection', 'suss', 'gone1', DIM, 'cosine', '')
        docs = [{'id': 'g%d' % i, 'embedding': vec(self.rng)} for i in range(60)]
        self.call(a, 'Put', 'ss', 'gone1', json.dumps({'documents': docs}))
        names = lambda n: {t[0] for t in n.prop(NAME, 'Collections')}
        wait_until(lambda: all('gone1' in names(n) for n in self.nodes.values()), 10, what='gone1 everywhere')
        c_state, c_id = getattr(c, 'real_state_dir', c.state_dir), c.node_id
        c.proc.crash()
        del self.nodes['kc']
        self.call(a, 'DeleteCollection', 's', 'gone1')
        wait_until(lambda: all('gone1' not in names(n) for n in self.nodes.values()), 10, what='gone1 deleted')
        c = harness.Node(self.doubles['kc'].url, '--seed', a.gossip, '--mesh-key', self.mesh_key(a),
                         '--state-dir', c_state, '--node-id', c_id, *NODE_ARGS, name='kc')
        self.nodes['kc'] = c
        self.assertIn('gone1', names(c))        # its old copy, until it meets the others
        wait_until(lambda: 'gone1' not in names(c), SETTLE, what='gone1 deleted on the returning node too')
        time.sleep(3)   # a sync round or more later, it has not come back anywhere
        self.assertTrue(all('gone1' not in names(n) for n in self.nodes.values()))
        self.call(b, 'CreateCollection', 'suss', 'gone1', DIM, 'cosine', '')
        wait_until(lambda: all('gone1' in names(n) for n in self.nodes.values()), 10, what='the new gone1 everywhere')

    def state(self):
        """For failure messages: counts, and each node's Sync."""
        out = {'counts': self.counts()}
        for name, node in self.nodes.items():
            try:
                out[name] = dict(node.prop(NAME, 'Sync'))
            except (BusError, TimeoutError):
                pass
        return out

    def mesh_key(self, node):
        for i, arg in enumerate(node.argv):
            if arg == '--mesh-key':
                return node.argv[i + 1]
        raise AssertionError('no --mesh-key in %r' % node.argv)


if __name__ == '__main__':
    testenv.main()
