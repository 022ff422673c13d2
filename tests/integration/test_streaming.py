#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Tokens pass through the node as the upstream produces them (no batching), every NDJSON line is
# whole JSON, and connections are kept alive on both sides of the proxy.
import http.client
import json
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import Double, Node

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'OLLAMA_DOUBLE')

TOKEN_DELAY = 0.150
N_TOKENS = 6
# The proxy must not batch: each gap at the client stays close to the double's delay.
MIN_GAP = 0.100


class Streaming(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.double = Double('--token-delay-ms', str(int(TOKEN_DELAY * 1000)), '--tokens', str(N_TOKENS))
        cls.node = Node(cls.double.url)
        cls.model = cls.double.chat_model()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.double.stop()

    def check_gaps(self, times, what):
        self.assertGreaterEqual(len(times), N_TOKENS, '%s: %d token events' % (what, len(times)))
        gaps = [b - a for a, b in zip(times, times[1:])]
        small = [round(g, 3) for g in gaps if g < MIN_GAP]
        self.assertEqual(small, [], '%s: tokens arrived batched; gaps %s' % (what, [round(g, 3) for g in gaps]))
        span = times[-1] - times[0]
        self.assertGreaterEqual(span, (N_TOKENS - 1) * TOKEN_DELAY * 0.8,
                                '%s: first token only %.3fs before the last' % (what, span))

    def test_generate_tokens_arrive_as_produced(self):
        body = {'model': self.model, 'prompt': 'Tell me a story'}
        direct = self.double.request('POST', '/api/generate', body).ndjson()
        n_direct = sum(1 for l in direct if not l.get('done'))
        self.assertEqual(n_direct, N_TOKENS, 'the double did not send %d tokens: %r' % (N_TOKENS, direct))
        with self.node.stream('POST', '/api/generate', body) as s:
            self.assertEqual(s.status, 200)
            self.assertEqual(s.content_type, 'application/x-ndjson')
            times, objs = [], []
            for t, line in s.lines():
                obj = json.loads(line)      # every line is one complete JSON object
                objs.append(obj)
                if not obj.get('done'):
                    times.append(t)
            self.assertIsNone(s.partial_tail, 'stream ended with a partial line %r' % s.partial_tail)
            self.assertTrue(s.clean_end, 'chunked body not terminated')
        self.assertEqual(len(objs), len(direct))
        self.assertTrue(objs[-1]['done'])
        self.assertEqual(''.join(o.get('response', '') for o in objs),
                         ''.join(o.get('response', '') for o in direct))
        self.check_gaps(times, '/api/generate')

    def test_chat_tokens_arrive_as_produced(self):
        body = {'model': self.model, 'messages': [{'role': 'user', 'content': 'hi'}]}
        with self.node.stream('POST', '/api/chat', body) as s:
            self.assertEqual(s.status, 200)
            times = [t for t, line in s.lines() if not json.loads(line).get('done')]
        self.check_gaps(times, '/api/chat')

    def test_sse_frames_arrive_as_produced(self):
        body = {'model': self.model, 'messages': [{'role': 'user', 'content': 'hi'}], 'stream': True}
        with self.node.stream('POST', '/v1/chat/completions', body) as s:
            self.assertEqual(s.status, 200)
            self.assertTrue(s.content_type.startswith('text/event-stream'), s.content_type)
            frames = list(s.sse_frames())
            self.assertTrue(s.clean_end)
        self.assertEqual(frames[-1][1], '[DONE]')
        times = []
        for t, data in frames[:-1]:
            obj = json.loads(data)
            if obj.get('choices') and obj['choices'][0].get('delta', {}).get('content'):
                times.append(t)
        self.check_gaps(times, '/v1/chat/completions')

    def test_keepalive_reuse(self):
        """20 requests on one client connection: one client connection, few upstream ones."""
        before = self.double.stats()
        conn = http.client.HTTPConnection(*self.node.addr, timeout=15)
        try:
            socks = set()
            for i in range(20):
                r = harness.http_request(None, 'POST', '/api/show', {'model': self.model}, conn=conn)
                self.assertEqual(r.status, 200, 'request %d: %r' % (i, r))
                socks.add(id(conn.sock))
                self.assertIsNotNone(conn.sock, 'request %d: the shim closed the client connection' % i)
        finally:
            conn.close()
        after = self.double.stats()
        self.assertEqual(len(socks), 1, 'the client connection was not kept alive')
        self.assertGreaterEqual(after['requests'] - before['requests'], 20)
        new_conns = after['connections'] - before['connections']
        print('20 requests: %d new upstream connections' % new_conns)
        self.assertLessEqual(new_conns, 3, 'upstream connections not reused: %d new for 20 requests' % new_conns)


if __name__ == '__main__':
    testenv.main()
