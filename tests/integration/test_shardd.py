#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# mycelia-shardd alone on a private bus (docs/shardd.md): org.mycelia.ShardStore1 matches
# dbus/org.mycelia.ShardStore1.xml; collections are created, refused when invalid or taken;
# documents are stored, read, replaced and deleted; search is the exact top k of a brute-force
# reference, with filters; bad input gets the error the shim maps to 400/404/409/413; and a
# kill -9 in the middle of a write loop loses no write that was acknowledged.
import json
import math
import os
import random
import signal
import threading
import time
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import BusError, PrivateBus, Proc, wait_until
from test_bus import interface_model, model_diff

testenv.require_env('MYCELIA_SHARDD', 'MYCELIA_DBUS_XML_DIR')

NAME = 'org.mycelia.ShardStore1'
DIM = 8


def normalized(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


class ShardStore(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bus = PrivateBus()
        cls.state = harness.make_tmpdir('mycelia-shardd-')
        cls.node_id = harness.random_node_id()
        cls.proc = None
        cls.start()

    @classmethod
    def tearDownClass(cls):
        if cls.proc:
            cls.proc.stop()
        cls.bus.stop()

    @classmethod
    def start(cls):
        cls.proc = Proc([testenv.env_path('MYCELIA_SHARDD'), '--bus', cls.bus.address, '--state-dir', cls.state,
                         '--node-id', cls.node_id, '--shard', '127.0.0.1:0', '--log-level', 'debug'], name='shardd')
        try:
            wait_until(lambda: cls.has_name(), 10, what='ShardStore1 on the bus')
        except TimeoutError as e:
            raise TimeoutError('%s\n%s' % (e, cls.proc.tail()))

    @classmethod
    def has_name(cls):
        try:
            harness.bus_get_property(cls.bus.address, NAME, 'LocalNodeId')
            return True
        except (BusError, TimeoutError):
            return False

    def call(self, method, signature='', *args):
        return harness.bus_call(self.bus.address, NAME, method, signature, *args)

    def error_name(self, method, *typed_args):
        name, out = harness.dbus_send_error_name(self.bus.address, NAME, method, *typed_args)
        return name, out

    def collections(self):
        return {c[0]: c for c in harness.bus_get_property(self.bus.address, NAME, 'Collections')}

    def put(self, collection, docs):
        return self.call('Put', 'ss', collection, json.dumps({'documents': docs}))[0]

    def search(self, collection, query):
        return json.loads(self.call('Search', 'ss', collection, json.dumps(query))[0])

    def test_introspection(self):
        with open(os.path.join(testenv.env_path('MYCELIA_DBUS_XML_DIR'), NAME + '.xml')) as f:
            doc = interface_model(f.read(), NAME)
        live = interface_model(harness.introspect_xml(self.bus.address, NAME, '/org/mycelia/ShardStore1'), NAME)
        self.assertEqual(model_diff(doc, live), [])
        self.assertEqual(harness.bus_get_property(self.bus.address, NAME, 'LocalNodeId'), self.node_id)

    def test_collections(self):
        self.call('CreateCollection', 'suss', 'c1', 4, 'cosine', 'nomic-embed-text')
        self.call('CreateCollection', 'suss', 'c2', 3, 'ip', '')
        c = self.collections()
        self.assertEqual(c['c1'], ['c1', 4, 'cosine', 'nomic-embed-text', 64, 2, 0])
        self.assertEqual(c['c2'][:4], ['c2', 3, 'ip', ''])
        self.assertEqual(self.error_name('CreateCollection', 'string:c1', 'uint32:4', 'string:cosine', 'string:')[0],
                         NAME + '.Exists')
        for bad in (('string:.hidden', 'uint32:4', 'string:cosine'), ('string:a/b', 'uint32:4', 'string:cosine'),
                    ('string:x', 'uint32:0', 'string:cosine'), ('string:x', 'uint32:8193', 'string:cosine'),
                    ('string:x', 'uint32:4', 'string:l2')):
            self.assertEqual(self.error_name('CreateCollection', *bad, 'string:')[0], NAME + '.Invalid', bad)
        self.call('DeleteCollection', 's', 'c2')
        self.assertNotIn('c2', self.collections())
        self.assertEqual(self.error_name('DeleteCollection', 'string:c2')[0], NAME + '.NotFound')
        # The name is free again at once.
        self.call('CreateCollection', 'suss', 'c2', 5, 'ip', '')
        self.assertEqual(self.collections()['c2'][1], 5)

    def test_documents_and_exact_search(self):
        rng = random.Random(7)
        self.call('CreateCollection', 'suss', 'docs', DIM, 'cosine', '')
        docs = [{'id': 'd%03d' % i, 'text': 'text %d' % i,
                 'embedding': [rng.uniform(-1, 1) for _ in range(DIM)],
                 'metadata': {'n': i, 'kind': ['a', 'b', 'c'][i % 3]}} for i in range(300)]
        ids = []
        for k in range(0, 300, 100):
            ids += self.put('docs', docs[k:k + 100])
        self.assertEqual(ids, [d['id'] for d in docs])
        self.assertEqual(self.collections()['docs'][6], 300)
        # Without an id one is made; with one, it is kept.
        made = self.put('docs', [{'embedding': [1.0] * DIM}])
        self.assertEqual(len(made), 1)
        self.assertRegex(made[0], r'^[0-9a-f]{32}$')

        got = json.loads(self.call('Get', 'ss', 'docs', 'd007')[0])
        self.assertEqual(got['id'], 'd007')
        self.assertEqual(got['text'], 'text 7')
        self.assertEqual(got['metadata'], {'n': 7, 'kind': 'b'})
        for a, b in zip(got['embedding'], docs[7]['embedding']):
            self.assertAlmostEqual(a, b, places=5)

        def reference(q, k, pred=lambda d: True):
            qn = normalized(q)
            scored = [(sum(a * b for a, b in zip(qn, normalized(d['embedding']))), d['id']) for d in docs if pred(d)]
            scored.sort(key=lambda t: (-t[0], t[1]))
            return scored[:k]

        for _ in range(5):
            q = [rng.uniform(-1, 1) for _ in range(DIM)]
            ans = self.search('docs', {'embedding': q, 'k': 10})
            self.assertFalse(ans['partial'])
            want = reference(q, 10)
            self.assertEqual([r['id'] for r in ans['results'] if r['id'] in {d['id'] for d in docs}][:10],
                             [i for _, i in want][:len([r for r in ans['results'] if r['id'] != made[0]])])
            for r in ans['results']:
                if r['id'] != made[0]:
                    self.assertEqual(r['text'], 'text %d' % int(r['id'][1:]))
            where = {'$and': [{'kind': {'$in': ['a', 'c']}}, {'n': {'$gte': 50}}]}
            ans = self.search('docs', {'embedding': q, 'k': 7, 'where': where})
            want = reference(q, 7, lambda d: d['metadata']['kind'] in ('a', 'c') and d['metadata']['n'] >= 50)
            self.assertEqual([r['id'] for r in ans['results']], [i for _, i in want])
            for r, (score, _) in zip(ans['results'], want):
                self.assertAlmostEqual(r['score'], score, places=4)

        # Replace and delete.
        self.put('docs', [{'id': 'd001', 'text': 'new', 'embedding': [0.5] * DIM, 'metadata': {'n': -1}}])
        self.assertEqual(json.loads(self.call('Get', 'ss', 'docs', 'd001')[0])['text'], 'new')
        ans = self.search('docs', {'embedding': [0.5] * DIM, 'k': 1, 'where': {'n': -1}})
        self.assertEqual([r['id'] for r in ans['results']], ['d001'])
        self.call('Delete', 'ss', 'docs', 'd001')
        self.assertEqual(self.error_name('Get', 'string:docs', 'string:d001')[0], NAME + '.NotFound')
        # A delete is a tombstone write: deleting again is not an error (it may exist on another holder).
        self.call('Delete', 'ss', 'docs', 'd001')
        ans = self.search('docs', {'embedding': [0.5] * DIM, 'k': 1, 'where': {'n': -1}})
        self.assertEqual(ans['results'], [])
        self.assertEqual(self.collections()['docs'][6], 300)

    def test_bad_input(self):
        self.call('CreateCollection', 'suss', 'bad', 3, 'cosine', '')
        cases = [
            ('{"documents": [{"embedding": [1, 2]}]}', 'Invalid', 'has 2 dimensions'),
            ('{"documents": [{"embedding": [1, NaN, 2]}]}', 'Invalid', 'not a finite'),
            ('{"documents": [{"embedding": [1, 1e300, 2]}]}', 'Invalid', 'not a finite'),
            ('{"documents": [{"embedding": [0, 0, 0]}]}', 'Invalid', 'zero vector'),
            ('{"documents": [{"text": "no vector"}]}', 'Invalid', 'no "embedding"'),
            ('{"documents": [{"embedding": [1, 2, 3], "metadata": [1]}]}', 'Invalid', '"metadata" must be an object'),
            ('{"documents": [{"id": "x", "embedding": [1, 2, 3]}, {"id": "x", "embedding": [1, 2, 3]}]}',
             'Invalid', 'given twice'),
            ('{"documents": []}', 'Invalid', 'empty'),
            ('{"documents": [', 'Invalid', 'invalid JSON'),
            ('[]', 'Invalid', 'JSON object'),
            ('{"documents": [{"id": "%s", "embedding": [1, 2, 3]}]}' % ('i' * 257), 'TooLarge', 'longer than'),
            (json.dumps({'documents': [{'embedding': [1, 2, 3]}] * 4097}), 'TooLarge', 'more than 4096'),
        ]
        for body, error, message in cases:
            name, out = self.error_name('Put', 'string:bad', 'string:' + body)
            self.assertEqual(name, NAME + '.' + error, (body[:80], out))
            self.assertIn(message, out, body[:80])
        for query, message in (({'embedding': [1, 2]}, 'has 2 dimensions'), ({'embedding': [1, 2, 3], 'k': 0}, '"k"'),
                               ({'embedding': [1, 2, 3], 'k': 1001}, '"k"'),
                               ({'embedding': [1, 2, 3], 'where': {'n': {'$regex': 'x'}}}, '$regex'),
                               ({'k': 3}, 'no "embedding"')):
            name, out = self.error_name('Search', 'string:bad', 'string:' + json.dumps(query))
            self.assertEqual(name, NAME + '.Invalid', (query, out))
            self.assertIn(message, out)
        self.assertEqual(self.error_name('Put', 'string:nope', 'string:{}')[0], NAME + '.NotFound')
        self.assertEqual(self.error_name('Search', 'string:nope', 'string:{}')[0], NAME + '.NotFound')
        # Nothing of the refused requests was stored, and the daemon still serves.
        self.assertEqual(self.collections()['bad'][6], 0)

    def test_zz_kill_9_loses_no_acknowledged_write(self):
        cls = type(self)
        self.call('CreateCollection', 'suss', 'crash', DIM, 'ip', '')
        acked = []
        for round_ in range(3):
            stop = threading.Event()

            def writer():
                i = 0
                while not stop.is_set():
                    doc_id = 'r%d-%05d' % (round_, i)
                    try:
                        self.put('crash', [{'id': doc_id, 'embedding': [float(i)] * DIM, 'text': doc_id}])
                    except (BusError, TimeoutError):
                        return
                    acked.append(doc_id)
                    i += 1

            t = threading.Thread(target=writer)
            t.start()
            time.sleep(0.3 + random.random() * 0.4)
            cls.proc.signal(signal.SIGKILL)
            cls.proc.wait(5)
            stop.set()
            t.join(15)
            self.assertGreater(len(acked), 0)
            cls.start()
        # A write committed but killed before its answer left is there too: at most one per kill.
        held = self.collections()['crash'][6]
        self.assertGreaterEqual(held, len(acked))
        self.assertLessEqual(held, len(acked) + 3)
        for doc_id in acked:
            got = json.loads(self.call('Get', 'ss', 'crash', doc_id)[0])
            self.assertEqual(got['text'], doc_id)


if __name__ == '__main__':
    testenv.main()
