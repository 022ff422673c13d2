#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The shim's collections API (/api/mycelia/, docs/collections-api.md) on a real node with a real
# mycelia-shardd: collections made with a dimension or from a model, documents stored with
# embeddings or with texts embedded through the mesh (checked against the Ollama double's
# vectors), queries by embedding and by text with filters, the error statuses, the limits, a
# client that leaves, and 503 while shardd is not on the bus.
import json
import os
import socket
import time
import unittest
import urllib.parse

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import BusError, Double, Node, Proc, wait_until

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_SHARDD', 'OLLAMA_DOUBLE')

API = '/api/mycelia/collections'
SHARDSTORE = 'org.mycelia.ShardStore1'
NOT_RUNNING = 'the shard store is not running'
DIM = 8   # the double's embeddings (tests/ollama-double/README.md)
# Whether the launcher runs shardd itself (harness.NODE_DAEMONS names it when it does).
LAUNCHER_RUNS_SHARDD = 'MYCELIA_SHARDD' in dict(harness.NODE_DAEMONS)
WITHOUT_SHARDD = [var for var, _ in harness.NODE_DAEMONS if var != 'MYCELIA_SHARDD']


def shardd_on_bus(bus):
    try:
        harness.bus_get_property(bus, SHARDSTORE, 'LocalNodeId')
        return True
    except (BusError, TimeoutError):
        return False


class ShardStoreByHand:
    """mycelia-shardd started by the test on a node's bus, for nodes whose launcher does not run
    it: what stopping it means is then the test's to decide."""

    def __init__(self, bus, node_id):
        self.bus = bus
        self.node_id = node_id
        self.state = harness.make_tmpdir('mycelia-shardd-')
        self.proc = None
        self.start()

    def start(self):
        self.proc = Proc([testenv.env_path('MYCELIA_SHARDD'), '--bus', self.bus, '--state-dir', self.state,
                          '--node-id', self.node_id, '--shard', '127.0.0.1:0', '--name', 'by-hand'],
                         name='shardd')
        try:
            wait_until(lambda: shardd_on_bus(self.bus), 10, what='ShardStore1 on the bus')
        except TimeoutError as e:
            raise TimeoutError('%s\n%s' % (e, self.proc.tail()))

    def stop(self):
        self.proc.stop()
        wait_until(lambda: not shardd_on_bus(self.bus), 10, what='ShardStore1 gone from the bus')


def node_with_shardd(upstream, *args, **kw):
    """A node whose shim finds ShardStore1 on its bus: the launcher's shardd, or one by hand."""
    node = Node(upstream, *args, **kw)
    by_hand = None
    if LAUNCHER_RUNS_SHARDD:
        wait_until(lambda: shardd_on_bus(node.bus), 15, what="the launcher's shardd on the bus")
    else:
        by_hand = ShardStoreByHand(node.bus, node.node_id)
    return node, by_hand


def quote(s):
    return urllib.parse.quote(s, safe='')


class Collections(unittest.TestCase):
    """One double, one node with its shardd; --max-requests 2 (a request that embeds holds two:
    its own and the /api/embed it sends to this shim) and --max-body-size 1M."""

    @classmethod
    def setUpClass(cls):
        cls.double = Double()
        cls.model = cls.double.embed_model()
        cls.node, cls.by_hand = node_with_shardd(cls.double.url, '--max-requests', '2', '--max-body-size', '1M',
                                                 name='coll')

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        if cls.by_hand:
            cls.by_hand.proc.stop()
        cls.double.stop()

    def tearDown(self):
        self.double.faults()

    # ---- helpers ----

    def req(self, method, path, body=None, headers=None):
        r = self.node.request(method, path, body, headers)
        # Every answer, error or not, names this node as the shim's own answers do.
        self.assertEqual(r.header('X-Mycelia-Served-By'), 'coll', '%s %s: %r' % (method, path, r))
        self.assertEqual((r.content_type or '').split(';')[0], 'application/json', repr(r))
        return r

    def ok(self, method, path, body=None):
        r = self.req(method, path, body)
        self.assertEqual(r.status, 200, '%s %s: %r' % (method, path, r))
        return r.json()

    def error(self, status, method, path, body=None, headers=None):
        r = self.req(method, path, body, headers)
        self.assertEqual(r.status, status, '%s %s: %r' % (method, path, r))
        obj = r.json()
        self.assertEqual(list(obj), ['error'], repr(obj))
        self.assertIsInstance(obj['error'], str)
        return obj['error']

    def create(self, name, **kw):
        return self.ok('POST', API, dict(name=name, **kw))

    def put(self, name, docs):
        return self.ok('POST', '%s/%s/documents' % (API, name), {'documents': docs})['ids']

    def query(self, name, **q):
        return self.ok('POST', '%s/%s/query' % (API, name), q)

    def get(self, name, doc_id):
        return self.ok('GET', '%s/%s/documents/%s' % (API, name, quote(doc_id)))

    def listed(self):
        return {c['name']: c for c in self.ok('GET', API)['collections']}

    def embed(self, texts):
        return self.double.request('POST', '/api/embed', {'model': self.model, 'input': texts}).json()['embeddings']

    def assertVectorEqual(self, got, want):
        self.assertEqual(len(got), len(want))
        for a, b in zip(got, want):
            self.assertAlmostEqual(a, b, places=6)

    # ---- collections ----

    def test_create_with_dimension_and_list(self):
        self.assertEqual(self.create('dim3', dimension=3, metric='ip'),
                         {'name': 'dim3', 'dimension': 3, 'metric': 'ip', 'model': None})
        self.assertEqual(self.create('dim4', dimension=4, model='some-model'),
                         {'name': 'dim4', 'dimension': 4, 'metric': 'cosine', 'model': 'some-model'})
        c = self.listed()
        self.assertEqual(c['dim3'], {'name': 'dim3', 'dimension': 3, 'metric': 'ip', 'model': None, 'documents': 0})
        self.assertEqual(c['dim4']['model'], 'some-model')
        self.put('dim3', [{'id': 'a', 'embedding': [1, 2, 3]}, {'id': 'b', 'embedding': [3, 2, 1]}])
        self.assertEqual(self.listed()['dim3']['documents'], 2)

    def test_create_with_model(self):
        before = self.double.stats()['embed_inputs']
        self.assertEqual(self.create('bymodel', model=self.model),
                         {'name': 'bymodel', 'dimension': DIM, 'metric': 'cosine', 'model': self.model})
        # The dimension was learnt from one embedding, through the shim's own /api/embed.
        self.assertEqual(self.double.stats()['embed_inputs'], before + 1)
        self.assertEqual(self.listed()['bymodel']['dimension'], DIM)

    def test_create_refused(self):
        self.create('taken', dimension=2)
        self.assertIn('already exists', self.error(409, 'POST', API, {'name': 'taken', 'dimension': 2}))
        for body in ({'name': '.hidden', 'dimension': 2}, {'name': 'a/b', 'dimension': 2},
                     {'name': 'x' * 129, 'dimension': 2}, {'dimension': 2}, {'name': 'nodim'},
                     {'name': 'neg', 'dimension': -1}, {'name': 'frac', 'dimension': 1.5},
                     {'name': 'metric', 'dimension': 2, 'metric': 'l2'}, [1, 2]):
            self.error(400, 'POST', API, body)
        # shardd's bounds come back with shardd's words.
        self.assertIn('dimension', self.error(400, 'POST', API, {'name': 'huge', 'dimension': 100000}))
        self.assertNotIn('huge', self.listed())
        # A model the mesh does not have: the embedding's failure, as a client error.
        msg = self.error(400, 'POST', API, {'name': 'nomodel', 'model': 'no-such-model'})
        self.assertIn('no-such-model', msg)

    def test_delete_collection(self):
        self.create('gone', dimension=2)
        self.put('gone', [{'id': 'a', 'embedding': [1, 0]}])
        self.assertEqual(self.ok('DELETE', API + '/gone'), {})
        self.assertNotIn('gone', self.listed())
        self.assertIn('not found', self.error(404, 'DELETE', API + '/gone'))
        self.error(404, 'GET', API + '/gone/documents/a')
        self.error(404, 'POST', API + '/gone/query', {'embedding': [1, 0]})
        self.error(404, 'POST', API + '/gone/documents', {'documents': [{'embedding': [1, 0]}]})
        # Texts to embed need the collection's model: still 404, and nothing embedded.
        before = self.double.stats()['embed_inputs']
        self.error(404, 'POST', API + '/gone/documents', {'documents': [{'text': 'x'}]})
        self.error(404, 'POST', API + '/gone/query', {'text': 'x'})
        self.assertEqual(self.double.stats()['embed_inputs'], before)

    # ---- documents and queries ----

    def test_documents_with_embeddings(self):
        self.create('vecs', dimension=3)
        docs = [{'id': 'x', 'text': 'ex', 'embedding': [1, 0, 0], 'metadata': {'kind': 'a', 'n': 1}},
                {'id': 'y', 'embedding': [0, 1, 0], 'metadata': {'kind': 'b', 'n': 2}},
                {'id': 'z', 'embedding': [0.9, 0.1, 0], 'metadata': {'kind': 'b', 'n': 3}},
                {'embedding': [0, 0, 1]}]
        ids = self.put('vecs', docs)
        self.assertEqual(ids[:3], ['x', 'y', 'z'])
        self.assertRegex(ids[3], r'^[0-9a-f]{32}$')
        got = self.get('vecs', 'x')
        self.assertEqual((got['id'], got['text'], got['metadata']), ('x', 'ex', {'kind': 'a', 'n': 1}))
        self.assertVectorEqual(got['embedding'], [1, 0, 0])

        ans = self.query('vecs', embedding=[1, 0, 0], k=2)
        self.assertEqual([r['id'] for r in ans['results']], ['x', 'z'])
        # With both, the embedding is the query: the text is not embedded.
        before = self.double.stats()['embed_inputs']
        self.assertEqual(self.query('vecs', embedding=[1, 0, 0], text='not embedded', k=2), ans)
        self.assertEqual(self.double.stats()['embed_inputs'], before)
        self.assertFalse(ans['partial'])
        self.assertAlmostEqual(ans['results'][0]['score'], 1.0, places=5)
        # where filters pass through to shardd.
        ans = self.query('vecs', embedding=[1, 0, 0], k=10, where={'kind': 'b'})
        self.assertEqual([r['id'] for r in ans['results']], ['z', 'y'])
        ans = self.query('vecs', embedding=[1, 0, 0], k=10, where={'n': {'$gte': 2}, 'kind': {'$ne': 'b'}})
        self.assertEqual(ans['results'], [])
        self.error(400, 'POST', API + '/vecs/query', {'embedding': [1, 0, 0], 'where': {'n': {'$near': 1}}})
        # shardd's checks: wrong dimension, and a document given neither.
        self.assertIn('dimension', self.error(400, 'POST', API + '/vecs/documents',
                                              {'documents': [{'embedding': [1, 0]}]}))
        self.assertIn('documents[1]', self.error(400, 'POST', API + '/vecs/documents',
                                                 {'documents': [{'embedding': [1, 0, 0]}, {'id': 'q'}]}))
        self.error(400, 'POST', API + '/vecs/query', {'k': 3})

        # Delete, then 404.
        self.assertEqual(self.ok('DELETE', API + '/vecs/documents/y'), {})
        self.assertIn('not found', self.error(404, 'GET', API + '/vecs/documents/y'))
        self.assertEqual(self.listed()['vecs']['documents'], 3)

    def test_ids_with_escapes(self):
        self.create('esc', dimension=2)
        weird = 'a/b c%d+e?f#g\u00e9'
        self.assertEqual(self.put('esc', [{'id': weird, 'embedding': [1, 1]}]), [weird])
        self.assertEqual(self.get('esc', weird)['id'], weird)
        self.assertEqual(self.ok('DELETE', '%s/esc/documents/%s' % (API, quote(weird))), {})
        # A name may be escaped too; what is decoded is what is checked.
        self.assertEqual(self.put('esc', [{'id': 'p', 'embedding': [1, 0]}]), ['p'])
        self.assertEqual(self.ok('GET', API + '/%65sc/documents/p')['id'], 'p')

    def test_texts_embedded_through_the_mesh(self):
        self.create('texts', model=self.model)
        texts = ['the sky is blue', 'grass is green', 'the sea is deep', 'snow is white']
        before = self.double.stats()
        total = self.node.prop('org.mycelia.Shim1', 'RequestsTotal')
        ids = self.put('texts', [{'id': 'd%d' % i, 'text': t, 'metadata': {'i': i}} for i, t in enumerate(texts)] +
                       [{'id': 'own', 'embedding': [1] * DIM}])
        self.assertEqual(ids, ['d0', 'd1', 'd2', 'd3', 'own'])
        after = self.double.stats()
        # One /api/embed with all four texts, none for the document that had its embedding: the
        # shim saw two requests, the client's and its own.
        self.assertEqual(after['embed_inputs'] - before['embed_inputs'], len(texts))
        self.assertEqual(self.node.prop('org.mycelia.Shim1', 'RequestsTotal') - total, 2)
        want = self.embed(texts)
        for i in range(len(texts)):
            got = self.get('texts', 'd%d' % i)
            self.assertEqual(got['text'], texts[i])
            self.assertVectorEqual(got['embedding'], want[i])
        self.assertVectorEqual(self.get('texts', 'own')['embedding'], [1] * DIM)

        # Query by text: the document with that text first, at cosine 1.
        for i, t in enumerate(texts):
            ans = self.query('texts', text=t, k=3)
            self.assertEqual(ans['results'][0]['id'], 'd%d' % i, ans)
            self.assertAlmostEqual(ans['results'][0]['score'], 1.0, places=5)
        ans = self.query('texts', text=texts[0], k=5, where={'i': {'$gte': 2}})
        self.assertEqual({r['id'] for r in ans['results']}, {'d2', 'd3'})
        # By embedding, the same answer as by its text.
        by_vec = self.query('texts', embedding=want[1], k=5)
        self.assertEqual([r['id'] for r in by_vec['results']][:4],
                         [r['id'] for r in self.query('texts', text=texts[1], k=5)['results']][:4])

    def test_texts_need_a_model(self):
        self.create('nomodel', dimension=DIM)
        before = self.double.stats()['embed_inputs']
        self.assertIn('no model', self.error(400, 'POST', API + '/nomodel/documents',
                                             {'documents': [{'embedding': [1] * DIM}, {'text': 'hi'}]}))
        self.assertIn('no model', self.error(400, 'POST', API + '/nomodel/query', {'text': 'hi'}))
        # Neither an embedding nor a text: refused before anything is asked.
        self.assertIn('documents[0]', self.error(400, 'POST', API + '/nomodel/documents',
                                                 {'documents': [{'id': 'x', 'metadata': {}}]}))
        self.assertEqual(self.double.stats()['embed_inputs'], before)

    # ---- limits and bad requests ----

    def test_too_many_documents(self):
        self.create('many', dimension=1, model=self.model)
        before = self.double.stats()['embed_inputs']
        msg = self.error(413, 'POST', API + '/many/documents', {'documents': [{'embedding': [1]}] * 4097})
        self.assertIn('4096', msg)
        # Texts too: refused before any of them is embedded.
        self.error(413, 'POST', API + '/many/documents', {'documents': [{'text': 't'}] * 4097})
        self.assertEqual(self.double.stats()['embed_inputs'], before)
        self.assertEqual(len(self.put('many', [{'embedding': [1]}] * 4096)), 4096)

    def test_body_too_large(self):
        # The shim's own max_body_size (1M here), answered by libevent before the body is read.
        body = b'{"documents":[' + b' ' * (2 << 20) + b']}'
        head = ('POST %s/any/documents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                'Content-Length: %d\r\n\r\n' % (API, len(body))).encode()
        raw, _ = harness.raw_exchange(self.node.addr, head, body=body)
        status, headers, rbody = harness.parse_raw_response(raw)
        self.assertEqual(status, 413, raw[:300])
        self.assertIn('too large', json.loads(rbody)['error'])
        self.assertEqual(headers.get('x-mycelia-served-by'), 'coll')

    def test_malformed_requests(self):
        self.create('mal', dimension=2)
        for path in (API, API + '/mal/documents', API + '/mal/query'):
            self.assertIn('JSON', self.error(400, 'POST', path, '{"name": "x",', {'Content-Type': 'application/json'}))
            self.assertIn('JSON', self.error(400, 'POST', path, '{} trailing', {'Content-Type': 'application/json'}))
            self.assertEqual(self.error(400, 'POST', path, ''), 'missing request body')
        self.error(400, 'POST', API + '/mal/documents', {'documents': 'no'})
        self.error(400, 'POST', API + '/mal/query', [1])
        # A body that is not UTF-8 never reaches the bus (D-Bus strings are UTF-8).
        self.assertIn('UTF-8', self.error(400, 'POST', API + '/mal/documents',
                                          b'{"documents":[{"text":"\xff","embedding":[1,1]}]}',
                                          {'Content-Type': 'application/json'}))

    def test_routes_and_methods(self):
        for path in ('/api/mycelia', '/api/mycelia/', '/api/mycelia/nothing', API + '/', API + '/x/y',
                     API + '/x/documents/a/b', API + '//documents', API + '/x/query/more'):
            self.error(404, 'GET', path)
        for method, path in (('DELETE', API), ('PUT', API), ('GET', API + '/x'), ('POST', API + '/x'),
                             ('GET', API + '/x/documents'), ('POST', API + '/x/documents/a'),
                             ('GET', API + '/x/query'), ('HEAD', API + '/x/query')):
            r = self.node.request(method, path)
            self.assertEqual(r.status, 405, '%s %s: %r' % (method, path, r))
            self.assertEqual(r.header('X-Mycelia-Served-By'), 'coll')
        for path in (API + '/.x', API + '/a%2Fb/documents', API + '/%zz', API + '/x/documents/%00',
                     API + '/x/documents/' + 'i' * 257):
            self.error(400, 'GET' if 'documents/' in path else 'DELETE', path)
        # The query string is no part of the route.
        self.assertIn('collections', self.ok('GET', API + '?verbose=1'))
        # Paths next to the prefix are the proxy's as before: the double answers them.
        r = self.node.request('GET', '/api/myceliaX')
        self.assertEqual(r.status, 404)
        self.assertEqual(r.body, b'404 page not found')

    def test_client_that_leaves_is_forgotten(self):
        self.create('leave', model=self.model)
        self.double.faults(stall=True)
        cancelled = self.node.prop('org.mycelia.Shim1', 'ClientCancelled')
        stalled = self.double.stats()['stalled']
        body = json.dumps({'documents': [{'text': 'waits forever'}]}).encode()
        s = socket.create_connection(self.node.addr, timeout=5)
        s.sendall(b'POST ' + (API + '/leave/documents').encode() + b' HTTP/1.1\r\nHost: x\r\n'
                  b'Content-Type: application/json\r\nContent-Length: %d\r\n\r\n' % len(body) + body)
        wait_until(lambda: self.double.stats()['stalled'] == stalled + 1, 5, what='the embedding held by the double')
        # Its request and the /api/embed it sent: the limit of 2 is reached.
        self.assertEqual(self.node.prop('org.mycelia.Shim1', 'RequestsActive'), 2)
        busy = self.node.request('GET', API)
        self.assertEqual(busy.status, 503, repr(busy))
        self.assertIn('server busy', busy.json()['error'])
        s.close()
        # Both go: the embedding is cancelled at the double, nothing stays in flight.
        wait_until(lambda: self.node.prop('org.mycelia.Shim1', 'RequestsActive') == 0, 5,
                   what='no request in flight')
        wait_until(lambda: self.double.stats()['stalled'] == stalled, 5, what='the double sees the cancel')
        self.assertGreaterEqual(self.node.prop('org.mycelia.Shim1', 'ClientCancelled'), cancelled + 2)
        self.double.faults()
        self.assertNotIn('waits forever', json.dumps(self.query('leave', text='waits forever', k=5)))

    def test_embedding_failure(self):
        self.create('fails', model=self.model)
        self.double.faults(fail_status=500)
        msg = self.error(502, 'POST', API + '/fails/documents', {'documents': [{'text': 'x'}]})
        self.assertIn(self.model, msg)
        self.assertIn('injected failure', msg)
        self.double.faults()
        self.assertEqual(self.listed()['fails']['documents'], 0)


class ShardStoreAbsent(unittest.TestCase):
    """A node whose launcher runs no shardd: 503 until one appears on its bus, answers while it
    runs, 503 again once it stopped; the shim's other answers unchanged throughout."""

    @classmethod
    def setUpClass(cls):
        cls.double = Double()
        cls.node = Node(cls.double.url, name='noshard', daemons=WITHOUT_SHARDD)

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.double.stop()

    def assert_not_running(self):
        for method, path, body in (('GET', API, None), ('POST', API, {'name': 'a', 'dimension': 2}),
                                   ('DELETE', API + '/a', None), ('GET', API + '/a/documents/x', None),
                                   ('POST', API + '/a/documents', {'documents': [{'embedding': [1, 2]}]}),
                                   ('POST', API + '/a/documents', {'documents': [{'text': 'needs the model'}]}),
                                   ('POST', API + '/a/query', {'text': 'x'})):
            r = self.node.request(method, path, body)
            self.assertEqual(r.status, 503, '%s %s: %r' % (method, path, r))
            self.assertEqual(r.json(), {'error': NOT_RUNNING})
            self.assertEqual(r.header('X-Mycelia-Served-By'), 'noshard')
        self.assertEqual(self.node.request('GET', '/api/tags').status, 200)

    def test_absent_started_stopped(self):
        self.assertFalse(shardd_on_bus(self.node.bus))
        self.assert_not_running()
        by_hand = ShardStoreByHand(self.node.bus, self.node.node_id)
        try:
            r = self.node.request('POST', API, {'name': 'a', 'dimension': 2})
            self.assertEqual(r.status, 200, repr(r))
            self.assertEqual(self.node.request('GET', API).json()['collections'][0]['name'], 'a')
            # Larger than one D-Bus message may be (dbus-daemon drops the connection of a
            # sender that tries): 413 before anything is sent, and the shim keeps its bus.
            big = {'documents': [{'text': 't' * (1 << 20), 'embedding': [1, 2]} for _ in range(33)]}
            r = self.node.request('POST', API + '/a/documents', big, timeout=60)
            self.assertEqual(r.status, 413, repr(r))
            self.assertIn('too large for the shard store', r.json()['error'])
            # Still on its bus: routerd's table reaches it (a moment after start, under load).
            wait_until(lambda: self.node.prop('org.mycelia.Shim1', 'RouterConnected') is True, 10,
                       what='the shim connected to routerd')
            r = self.node.request('POST', API + '/a/documents', {'documents': [{'embedding': [1, 2]}]})
            self.assertEqual(r.status, 200, repr(r))
        finally:
            by_hand.stop()
        self.assert_not_running()


class RagAffinity(unittest.TestCase):
    """Context gravity for RAG: a query and the chat after it that carry one X-Mycelia-Affinity go
    to the node that answered the query (its shardd holds shards of the collection), where without
    the query the key alone would place the chat elsewhere (rendezvous)."""

    @classmethod
    def setUpClass(cls):
        cls.doubles, cls.nodes = harness.start_mesh(['r1', 'r2', 'r3'], 'chat:latest', double_args=('--tokens', '2'))
        for n in cls.nodes.values():
            wait_until(lambda: shardd_on_bus(n.bus), 15, what="the launcher's shardd on the bus")

    @classmethod
    def tearDownClass(cls):
        harness.stop_mesh(cls.doubles, cls.nodes)

    def chat(self, node, key):
        r = node.request('POST', '/api/chat', {'model': 'chat', 'stream': False,
                                               'messages': [{'role': 'user', 'content': 'about ' + key}]},
                         headers={'X-Mycelia-Affinity': key})
        self.assertEqual(r.status, 200, r)
        return r.header('X-Mycelia-Served-By')

    def test_query_then_chat_stays(self):
        r1, r2 = self.nodes['r1'], self.nodes['r2']
        r = r1.request('POST', API, {'name': 'rag', 'dimension': 2})
        self.assertEqual(r.status, 200, r)
        r = r1.request('POST', API + '/rag/documents', {'documents': [{'id': 'a', 'text': 'ctx', 'embedding': [1, 0]}]})
        self.assertEqual(r.status, 200, r)
        # A key that r2, which never saw it, places on another node than r1 (rendezvous: the same
        # on every node for a key nobody holds).
        key = next(k for k in ('rag-%d' % i for i in range(64)) if self.chat(r2, k) != 'r1')
        r = r1.request('POST', API + '/rag/query', {'embedding': [1, 0], 'k': 1},
                       headers={'X-Mycelia-Affinity': key})
        self.assertEqual(r.status, 200, r)
        self.assertEqual([h['id'] for h in r.json()['results']], ['a'])
        for _ in range(3):
            self.assertEqual(self.chat(r1, key), 'r1')
        # Another key with no query before it still goes by rendezvous, as r2 saw.
        other = next(k for k in ('free-%d' % i for i in range(64)) if self.chat(r2, k) != 'r1')
        self.assertNotEqual(self.chat(r1, other), 'r1')


class MeshEmbedding(unittest.TestCase):
    """Two nodes; the texts of one Put are more than [router] embed_split, so the shim's own
    /api/embed is split over both nodes' Ollamas, as any client's would be."""

    @classmethod
    def setUpClass(cls):
        cls.doubles, cls.nodes = harness.start_mesh(['m1', 'm2'], 'all-minilm', node_args=('--embed-split', '4'))
        cls.node = cls.nodes['m1']
        cls.by_hand = None
        if LAUNCHER_RUNS_SHARDD:
            wait_until(lambda: shardd_on_bus(cls.node.bus), 15, what="the launcher's shardd on the bus")
        else:
            cls.by_hand = ShardStoreByHand(cls.node.bus, cls.node.node_id)

    @classmethod
    def tearDownClass(cls):
        if cls.by_hand:
            cls.by_hand.proc.stop()
        harness.stop_mesh(cls.doubles, cls.nodes)

    def test_split_over_the_mesh(self):
        r = self.node.request('POST', API, {'name': 'mesh', 'model': 'all-minilm'})
        self.assertEqual(r.status, 200, repr(r))
        before = {n: d.stats()['embed_inputs'] for n, d in self.doubles.items()}
        texts = ['text number %d' % i for i in range(20)]
        r = self.node.request('POST', API + '/mesh/documents',
                              {'documents': [{'id': str(i), 'text': t} for i, t in enumerate(texts)]})
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.header('X-Mycelia-Served-By'), 'm1')
        got = {n: d.stats()['embed_inputs'] - before[n] for n, d in self.doubles.items()}
        self.assertEqual(sum(got.values()), len(texts), got)
        self.assertGreater(got['m2'], 0, 'the peer embedded nothing: %r' % got)
        want = self.doubles['m2'].request('POST', '/api/embed', {'model': 'all-minilm', 'input': texts}).json()
        for i in (0, 19):
            doc = self.node.request('GET', API + '/mesh/documents/%d' % i).json()
            for a, b in zip(doc['embedding'], want['embeddings'][i]):
                self.assertAlmostEqual(a, b, places=6)


if __name__ == '__main__':
    testenv.main()
