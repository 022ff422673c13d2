#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The routing policies across a real mesh (docs/routing-policies.md, docs/context-gravity.md):
# three launchers on loopback, each in front of its own Ollama double with one model of its own
# and one shared. Every answer names its node in X-Mycelia-Served-By. Round-robin spreads evenly,
# a model on one node always goes there, gravity keeps every turn of a conversation on one node
# and spreads concurrent conversations within the bounded load, least-loaded and latency avoid a
# slow node, a 5xx before the first byte is retried on another node, an unknown X-Mycelia-Policy
# is a 400.
import collections
import threading
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import wait_until

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'OLLAMA_DOUBLE')

NAMES = ('ra', 'rb', 'rc')
MODELS = {'ra': 'alpha:latest,shared:latest', 'rb': 'bravo:latest,shared:latest',
          'rc': 'charlie:latest,shared:latest'}
CONVERGE_TIMEOUT = 20.0
EPS = 0.25
SYSTEM = 'You are a helpful assistant. ' * 40


def chat(node, messages, policy=None, model='shared', timeout=30.0):
    headers = {'X-Mycelia-Policy': policy} if policy else None
    r = node.request('POST', '/api/chat', {'model': model, 'messages': messages, 'stream': False},
                     headers=headers, timeout=timeout)
    if r.status != 200:
        raise AssertionError('chat answered %d: %r' % (r.status, r.body[:300]))
    return r.header('X-Mycelia-Served-By'), r.json()['message']['content']


def generate(node, model, policy=None, timeout=30.0):
    headers = {'X-Mycelia-Policy': policy} if policy else None
    r = node.request('POST', '/api/generate', {'model': model, 'prompt': 'hello', 'stream': False},
                     headers=headers, timeout=timeout)
    if r.status != 200:
        raise AssertionError('generate answered %d: %r' % (r.status, r.body[:300]))
    return r.header('X-Mycelia-Served-By')


class Conversation:
    """One chat conversation: a shared system prompt, then turns; each turn sends the whole
    history, as clients do, and keeps the answer."""

    def __init__(self, topic):
        self.messages = [{'role': 'system', 'content': SYSTEM}]
        self.topic = topic
        self.served = []

    def turn(self, node, **kw):
        self.messages.append({'role': 'user', 'content': 'Turn %d about %s: tell me more.' % (
            len(self.served) + 1, self.topic)})
        by, answer = chat(node, self.messages, **kw)
        self.messages.append({'role': 'assistant', 'content': answer})
        self.served.append(by)
        return by


def run_threads(fns):
    errors = []

    def wrap(fn):
        try:
            fn()
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)
    threads = [threading.Thread(target=wrap, args=(f,)) for f in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]


class Routing(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doubles, cls.nodes = harness.start_mesh(
            NAMES, MODELS, double_args=('--tokens', '4', '--token-delay-ms', '0', '--num-parallel', '64'),
            node_args=('--parallel', '64'), timeout=CONVERGE_TIMEOUT)
        cls.a = cls.nodes['ra']

    @classmethod
    def tearDownClass(cls):
        harness.stop_mesh(cls.doubles, cls.nodes)

    def set_delay(self, name, ms):
        r = harness.http_request(self.doubles[name].addr, 'POST', '/__double/faults', {'token_delay_ms': ms})
        self.assertEqual(r.status, 200, r)

    def test_model_on_one_node_goes_there(self):
        for model, name in (('charlie', 'rc'), ('bravo', 'rb'), ('alpha', 'ra')):
            for policy in (None, 'round-robin', 'least-loaded', 'latency', 'local-first'):
                self.assertEqual(generate(self.a, model, policy), name, '%s with %s' % (model, policy))

    def test_round_robin_spreads_evenly(self):
        served = collections.Counter(generate(self.a, 'shared', 'round-robin') for _ in range(300))
        self.assertEqual(set(served), set(NAMES), served)
        for name in NAMES:
            self.assertLessEqual(abs(served[name] - 100), 10, served)

    def test_unknown_policy_is_a_400(self):
        r = self.a.request('POST', '/api/generate', {'model': 'shared', 'prompt': 'x', 'stream': False},
                           headers={'X-Mycelia-Policy': 'fastest'})
        self.assertEqual(r.status, 400, r)
        self.assertIn('X-Mycelia-Policy', r.json()['error'])
        # The shim's own answers name the node that made them too.
        self.assertEqual(r.header('X-Mycelia-Served-By'), 'ra')
        r = self.a.request('POST', '/v1/chat/completions',
                           {'model': 'shared', 'messages': [{'role': 'user', 'content': 'x'}]},
                           headers={'X-Mycelia-Policy': 'fastest'})
        self.assertEqual(r.status, 400, r)
        self.assertIn('X-Mycelia-Policy', r.json()['error']['message'])

    def test_conversations_keep_to_one_node(self):
        # Ten 10-turn conversations one after another, by the default policy (gravity).
        convs = [Conversation('topic %d' % i) for i in range(10)]
        for turn in range(10):
            for c in convs:
                c.turn(self.a)
        for c in convs:
            self.assertEqual(len(set(c.served)), 1, '%s went to %s' % (c.topic, c.served))
        placed = collections.Counter(c.served[0] for c in convs)
        self.assertGreater(len(placed), 1, 'every conversation on one node: %s' % placed)

    def test_concurrent_conversations_spread_within_the_bound(self):
        # 30 conversations at once, each turn in flight together (the doubles answer slowly),
        # three turns each: every conversation stays on its node, and no node holds more than
        # (1 + eps) times the mean, plus one.
        for name in NAMES:
            self.set_delay(name, 40)
        try:
            convs = [Conversation('concurrent %d' % i) for i in range(30)]
            for _ in range(3):
                run_threads([lambda c=c: c.turn(self.a) for c in convs])
        finally:
            for name in NAMES:
                self.set_delay(name, 0)
        for c in convs:
            self.assertEqual(len(set(c.served)), 1, '%s went to %s' % (c.topic, c.served))
        placed = collections.Counter(c.served[0] for c in convs)
        self.assertLessEqual(max(placed.values()), (1 + EPS) * 10 + 1, placed)
        self.assertEqual(sum(placed.values()), 30)

    def test_least_loaded_and_latency_avoid_a_slow_node(self):
        self.set_delay('rb', 150)
        try:
            # least-loaded: 30 streams at once; the slow node keeps its requests longest.
            served = collections.Counter()
            lock = threading.Lock()

            def one():
                by = generate(self.a, 'shared', 'least-loaded')
                with lock:
                    served[by] += 1
            for _ in range(3):
                run_threads([one] * 10)
            self.assertLess(served['rb'], 10, served)

            # latency: once measured (each node's time to first token reaches routerd in the
            # shim's outcome reports), the slow node is never the better of two.
            for _ in range(12):
                generate(self.a, 'shared', 'round-robin')
            wait_until(lambda: self.ttfb_known(), 5, what='time to first token of every node')
            served = collections.Counter(generate(self.a, 'shared', 'latency') for _ in range(30))
            self.assertLessEqual(served['rb'], 1, served)
        finally:
            self.set_delay('rb', 0)

    def test_error_status_goes_elsewhere(self):
        # rb's Ollama answers 503 to inference: a routed request retries on another node before
        # anything reached the client; a model only rb has gets rb's own answer. Failing again
        # and again, rb is cooled down (docs/router-outcomes.md); a model only it serves still
        # goes there, not to an Ollama without it.
        rb = self.nodes['rb'].node_id
        r = harness.http_request(self.doubles['rb'].addr, 'POST', '/__double/faults', {'fail_status': 503})
        self.assertEqual(r.status, 200, r)
        try:
            r = self.a.request('POST', '/api/generate', {'model': 'bravo', 'prompt': 'x', 'stream': False})
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.header('X-Mycelia-Served-By'), 'rb')
            self.assertIn('error', r.json())
            served = collections.Counter(generate(self.a, 'shared', 'round-robin') for _ in range(30))
            self.assertNotIn('rb', served, served)
            self.assertEqual(sum(served.values()), 30)
            wait_until(lambda: self.a.router_nodes()[rb][0] == 'cooling', 2, what='rb cooling down')
            r = self.a.request('POST', '/api/generate', {'model': 'bravo', 'prompt': 'x', 'stream': False})
            self.assertEqual((r.status, r.header('X-Mycelia-Served-By')), (503, 'rb'), r)
        finally:
            harness.http_request(self.doubles['rb'].addr, 'POST', '/__double/faults', {})
            wait_until(lambda: self.a.router_nodes().get(rb, ('',))[0] == 'up', 35, what='rb offered again')

    def test_show_goes_to_a_node_with_the_model(self):
        r = self.a.request('POST', '/api/show', {'model': 'charlie'})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header('X-Mycelia-Served-By'), 'rc')
        self.assertIn('details', r.json())

    def test_node_pinning(self):
        pin = {'X-Mycelia-Node': 'rb'}
        for policy in ('round-robin', 'gravity'):
            for _ in range(10):
                r = self.a.request('POST', '/api/generate', {'model': 'shared', 'prompt': 'hi', 'stream': False},
                                   headers=dict(pin, **{'X-Mycelia-Policy': policy}))
                self.assertEqual((r.status, r.header('X-Mycelia-Served-By')), (200, 'rb'), r)
        # By id too.
        rb_id = self.nodes['rb'].node_id
        r = self.a.request('POST', '/api/generate', {'model': 'shared', 'prompt': 'hi', 'stream': False},
                           headers={'X-Mycelia-Node': rb_id})
        self.assertEqual(r.header('X-Mycelia-Served-By'), 'rb')
        # The pinned node lacks the model, or there is no such node: 404, not another node.
        r = self.a.request('POST', '/api/generate', {'model': 'charlie', 'prompt': 'hi', 'stream': False}, headers=pin)
        self.assertEqual(r.status, 404, r)
        self.assertIn("not found on node 'rb'", r.json()['error'])
        r = self.a.request('POST', '/v1/chat/completions',
                           {'model': 'shared', 'messages': [{'role': 'user', 'content': 'x'}]},
                           headers={'X-Mycelia-Node': 'nowhere'})
        self.assertEqual(r.status, 404, r)
        self.assertIn("nowhere", r.json()['error']['message'])

    def test_model_management_local_unless_pinned(self):
        copy = {'source': 'charlie:latest', 'destination': 'charlie-copy:latest'}
        # Here: node ra's Ollama has no charlie.
        r = self.a.request('POST', '/api/copy', copy)
        self.assertEqual(r.status, 404, r)
        # Pinned: node rc's Ollama copies it.
        r = self.a.request('POST', '/api/copy', copy, headers={'X-Mycelia-Node': 'rc'})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header('X-Mycelia-Served-By'), 'rc')
        tags = harness.http_request(self.doubles['rc'].addr, 'GET', '/api/tags').json()
        self.assertIn('charlie-copy:latest', [m['name'] for m in tags['models']])
        # rc's routerd reads its model list again at once (Router1.RefreshModels), and gossip
        # brings it to ra well before [router] tags_interval (10 s).
        wait_until(lambda: 'charlie-copy:latest' in [m['name'] for m in self.a.request('GET', '/api/tags').json()['models']],
                   3, what='the copy in the mesh-wide model list')
        r = self.a.request('GET', '/api/tags', headers={'X-Mycelia-Node': 'rc'})
        self.assertIn('charlie-copy:latest', [m['name'] for m in r.json()['models']])

    def test_tags_and_models_list_the_mesh(self):
        r = self.a.request('GET', '/api/tags')
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header('X-Mycelia-Served-By'), 'ra')
        models = r.json()['models']
        names = [m['name'] for m in models]
        # (Other tests may add models on the nodes: what must be there, each once.)
        self.assertLessEqual({'alpha:latest', 'bravo:latest', 'charlie:latest', 'shared:latest'}, set(names), names)
        self.assertEqual(len(names), len(set(names)), names)
        # This node's own entries come as its Ollama sent them, first.
        local = harness.http_request(self.doubles['ra'].addr, 'GET', '/api/tags').json()['models']
        self.assertEqual(models[:len(local)], local)
        for m in models[len(local):]:
            self.assertEqual((m['model'], m['size'], m['digest']), (m['name'], 0, ''))
        r = self.a.request('GET', '/v1/models')
        self.assertEqual(r.status, 200, r)
        ids = [m['id'] for m in r.json()['data']]
        self.assertLessEqual({'alpha:latest', 'bravo:latest', 'charlie:latest', 'shared:latest'}, set(ids), ids)
        self.assertEqual(len(ids), len(set(ids)), ids)
        # Pinned: that node's own list.
        r = self.a.request('GET', '/api/tags', headers={'X-Mycelia-Node': 'rb'})
        self.assertEqual(sorted(m['name'] for m in r.json()['models']), ['bravo:latest', 'shared:latest'])

    def test_embed_split_and_merged_in_order(self):
        inputs = ['text number %d about routing' % i for i in range(200)]
        want = harness.http_request(self.doubles['rb'].addr, 'POST', '/api/embed',
                                    {'model': 'shared', 'input': inputs}).json()['embeddings']
        r = self.a.request('POST', '/api/embed', {'model': 'shared', 'input': inputs}, timeout=60)
        self.assertEqual(r.status, 200, r)
        got = r.json()
        self.assertEqual(got['embeddings'], want)
        self.assertEqual(got['model'], 'shared')
        self.assertGreater(got['prompt_eval_count'], 0)
        served = r.header('X-Mycelia-Served-By').split(', ')
        self.assertEqual(sorted(served), list(NAMES), served)
        # The OpenAI form too, index by index.
        r = self.a.request('POST', '/v1/embeddings', {'model': 'shared', 'input': inputs}, timeout=60)
        self.assertEqual(r.status, 200, r)
        data = r.json()['data']
        self.assertEqual([d['index'] for d in data], list(range(200)))
        self.assertEqual([d['embedding'] for d in data], want)
        # Few inputs: one node, not split.
        r = self.a.request('POST', '/api/embed', {'model': 'shared', 'input': inputs[:10]})
        self.assertEqual(r.json()['embeddings'], want[:10])
        self.assertNotIn(',', r.header('X-Mycelia-Served-By'))

    def test_embed_chunk_retried_elsewhere(self):
        inputs = ['retry %d' % i for i in range(120)]
        want = harness.http_request(self.doubles['ra'].addr, 'POST', '/api/embed',
                                    {'model': 'shared', 'input': inputs}).json()['embeddings']
        r = harness.http_request(self.doubles['rc'].addr, 'POST', '/__double/faults', {'fail_status': 500})
        self.assertEqual(r.status, 200, r)
        try:
            r = self.a.request('POST', '/api/embed', {'model': 'shared', 'input': inputs}, timeout=60)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()['embeddings'], want)
            self.assertNotIn('rc', r.header('X-Mycelia-Served-By').split(', '))
        finally:
            harness.http_request(self.doubles['rc'].addr, 'POST', '/__double/faults', {})

    def test_ps_merges_every_node(self):
        # Load the shared model on every node, then ask one: every node's entry is there.
        for name in NAMES:
            r = self.a.request('POST', '/api/generate', {'model': 'shared', 'prompt': 'x', 'stream': False},
                               headers={'X-Mycelia-Node': name})
            self.assertEqual(r.status, 200, r)
        r = self.a.request('GET', '/api/ps')
        self.assertEqual(r.status, 200, r)
        models = r.json()['models']
        self.assertEqual([m['name'] for m in models].count('shared:latest'), 3, models)
        self.assertEqual(sorted(r.header('X-Mycelia-Served-By').split(', ')), list(NAMES))
        # Pinned: one node's.
        r = self.a.request('GET', '/api/ps', headers={'X-Mycelia-Node': 'rb'})
        self.assertEqual([m['name'] for m in r.json()['models']].count('shared:latest'), 1)

    def ttfb_known(self):
        data = self.a.prop('org.mycelia.Router1', 'Nodes')
        return all(self.ttfb_of(t) > 0 for t in data)

    @staticmethod
    def ttfb_of(t):
        # (id, name, address, state, in_flight, capacity, ttfb_usec, models)
        return t[6]


if __name__ == '__main__':
    testenv.main()
