#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Blobs across a real mesh (docs/blobs.md): three launchers with R = 2. A blob POSTed to one
# node's /api/blobs/sha256:... is stored on exactly its two holders (files under
# STATE_DIR/blobs), seen from every node (HEAD 200, HasBlob true); an unknown digest is 404, a
# body that does not match its digest 400, a malformed digest 400, one over [shard] blob_max_size
# 413. kill -9 of a holder: the blob is still seen and fetched (GetBlob) from the survivors, and
# sync copies it until both survivors hold it. An /api/create naming a blob (its "adapters" or
# "files") works on whichever node serves it: that node's shim brings the blob from the mesh into
# its own Ollama first, and a blob the mesh does not have gets Ollama's own 400.
import hashlib
import os
import random
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import BusError, wait_until

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD', 'MYCELIA_DISCOVERYD',
                    'MYCELIA_SHARDD', 'OLLAMA_DOUBLE')

NAME = 'org.mycelia.ShardStore1'
NODE_ARGS = ('--shard-sync-interval', '2s', '--blob-max-size', '4M')


def digest_of(data):
    return 'sha256:' + hashlib.sha256(data).hexdigest()


class Blobs(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doubles, cls.nodes = harness.start_mesh(('ba', 'bb', 'bc'), 'm:latest', node_args=NODE_ARGS)
        cls.rng = random.Random(10)

    @classmethod
    def tearDownClass(cls):
        harness.stop_mesh(cls.doubles, cls.nodes)

    def shard_nodes(self, node):
        try:
            return {t[0]: t[2] for t in node.prop(NAME, 'Nodes')}
        except (BusError, TimeoutError):
            return {}

    def holders_on_disk(self, digest, data, nodes):
        """The nodes with the blob's file, and its bytes right."""
        out = []
        for n in nodes:
            path = os.path.join(n.state_dir, 'blobs', digest.replace(':', '-'))
            if os.path.exists(path):
                with open(path, 'rb') as f:
                    self.assertEqual(f.read(), data, '%s holds a damaged copy' % n.name)
                out.append(n.name)
        return out

    def post(self, node, digest, data):
        return node.request('POST', '/api/blobs/' + digest, data,
                            headers={'Content-Type': 'application/octet-stream'}, timeout=60)

    def three_nodes(self):
        """The nodes, once every shardd sees all three."""
        a, b, c = self.nodes['ba'], self.nodes['bb'], self.nodes['bc']
        ids = {n.node_id for n in (a, b, c)}
        wait_until(lambda: all(set(self.shard_nodes(n)) == ids for n in (a, b, c)), 30,
                   what='every shardd sees the three nodes')
        return a, b, c

    def create(self, via, body, pin=None):
        headers = {'X-Mycelia-Node': pin.name} if pin else None
        return via.request('POST', '/api/create', body, headers=headers, timeout=60)

    # Runs before test_blobs (the names sort so), which kills a node.
    def test_adapters_reach_the_serving_ollama(self):
        a, b, c = self.three_nodes()

        data = self.rng.randbytes(1 << 20)
        digest = digest_of(data)
        self.assertEqual(self.post(a, digest, data).status, 201)
        holders = self.holders_on_disk(digest, data, (a, b, c))
        # Served by the node that does not hold the blob when that is not A (GetBlob then fetches
        # it from a holder), else by C.
        target = next((n for n in (b, c) if n.name not in holders), c)
        double = self.doubles[target.name]
        self.assertEqual(double.request('HEAD', '/api/blobs/' + digest).status, 404)

        body = {'model': 'mine', 'from': 'm:latest', 'adapters': {'a.gguf': digest}, 'stream': False}
        r = self.create(a, body, pin=target)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json(), {'status': 'success'})
        self.assertEqual(r.header('X-Mycelia-Served-By'), target.name)
        self.assertEqual(double.request('HEAD', '/api/blobs/' + digest).status, 200)
        # Again: the Ollama has it now, and the create goes straight on.
        self.assertEqual(self.create(a, body, pin=target).status, 200)

        # A create served where it arrived (no pin), naming the blob in "files" (streamed).
        other = next(n for n in (a, b, c) if n is not target)
        self.assertEqual(self.doubles[other.name].request('HEAD', '/api/blobs/' + digest).status, 404)
        r = self.create(other, {'model': 'mine2', 'files': {'w.gguf': digest}})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.ndjson()[-1], {'status': 'success'})
        self.assertEqual(self.doubles[other.name].request('HEAD', '/api/blobs/' + digest).status, 200)

        # A blob the mesh does not have: the create reaches the Ollama unchanged, whose 400 the
        # client reads, word for word as the Ollama answers it directly.
        unknown = digest_of(b'never stored anywhere')
        body = {'model': 'mine3', 'from': 'm:latest', 'adapters': {'a.gguf': unknown}, 'stream': False}
        direct = double.request('POST', '/api/create', body)
        self.assertEqual(direct.status, 400, direct.body)
        self.assertIn('blob not found for a.gguf (digest %s)' % unknown, direct.json()['error'])
        r = self.create(a, body, pin=target)
        self.assertEqual((r.status, r.json()), (400, direct.json()))

    def test_blobs(self):
        a, b, c = self.three_nodes()

        data = self.rng.randbytes(3 << 20)
        digest = digest_of(data)
        r = self.post(a, digest, data)
        self.assertEqual(r.status, 201, r.body)
        # Acknowledged: on both holders' disks (W = 2 = R), and on no other node.
        self.assertEqual(len(self.holders_on_disk(digest, data, (a, b, c))), 2)
        # Again: the mesh has it, 200 as from Ollama.
        self.assertEqual(self.post(b, digest, data).status, 200)

        for n in (a, b, c):
            r = n.request('HEAD', '/api/blobs/' + digest)
            self.assertEqual((r.status, r.body), (200, b''), n.name)
            self.assertEqual(n.call(NAME, 'HasBlob', 's', digest), [True])
        unknown = digest_of(b'never stored')
        self.assertEqual(c.request('HEAD', '/api/blobs/' + unknown).status, 404)
        self.assertEqual(c.call(NAME, 'HasBlob', 's', unknown), [False])
        with self.assertRaises(BusError) as e:
            c.call(NAME, 'GetBlob', 's', unknown)
        self.assertIn('not found', str(e.exception))

        # Refused: a body that is not its digest, a name that is not a digest, too large.
        r = self.post(c, unknown, b'something else')
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()['error'], 'digest mismatch, expected "%s", got "%s"' % (unknown, digest_of(b'something else')))
        self.assertEqual(self.post(c, 'sha256:1234', b'x').status, 400)
        self.assertEqual(c.request('HEAD', '/api/blobs/nope').status, 400)
        with self.assertRaises(BusError) as e:
            c.call(NAME, 'HasBlob', 's', 'sha256:xyz')
        self.assertIn('invalid digest', str(e.exception))
        big = self.rng.randbytes(5 << 20)
        r = self.post(c, digest_of(big), big)
        self.assertEqual(r.status, 413, r.body)
        self.assertFalse(c.call(NAME, 'HasBlob', 's', digest_of(big))[0])

        # kill -9 of a holder: the survivors still have it, and sync brings it to both.
        holders = self.holders_on_disk(digest, data, (a, b, c))
        victim = self.nodes[holders[0]]
        survivors = [n for n in (a, b, c) if n is not victim]
        victim.proc.kill_tree()
        wait_until(lambda: all(set(k for k, alive in self.shard_nodes(n).items() if alive) ==
                               {s.node_id for s in survivors} for n in survivors), 60,
                   what='the survivors see the holder gone')
        for n in survivors:
            self.assertEqual(n.request('HEAD', '/api/blobs/' + digest).status, 200, n.name)
            self.assertEqual(n.call(NAME, 'HasBlob', 's', digest), [True])
            n.call(NAME, 'GetBlob', 's', digest)     # an fd: answered without an error
        wait_until(lambda: len(self.holders_on_disk(digest, data, survivors)) == 2, 60,
                   what='sync copies the blob to both survivors')
        self.assertGreater(sum(dict(n.prop(NAME, 'Sync')).get('blobs_pushed', 0) for n in survivors), 0)


if __name__ == '__main__':
    testenv.main()
