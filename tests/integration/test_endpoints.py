#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every endpoint of the Ollama API through a node, compared with the same request sent straight
# to the Ollama test double: status, Content-Type and body must match.
import hashlib
import socket
import json
import os
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import Double, Node, body_diff

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'OLLAMA_DOUBLE')


class Endpoints(unittest.TestCase):
    double = None
    node = None

    @classmethod
    def setUpClass(cls):
        cls.double = Double('--token-delay-ms', '0')
        cls.node = Node(cls.double.url)
        cls.chat_model = cls.double.chat_model()
        cls.embed_model = cls.double.embed_model()

    @classmethod
    def tearDownClass(cls):
        if cls.node:
            cls.node.stop()
        if cls.double:
            cls.double.stop()

    def compare(self, method, path, body=None, headers=None, node_path=None, node_body=None,
                expect_status=None, between=None, subst=()):
        """Sends the request straight to the double and through the node; asserts both answer
        alike and returns (direct, via). between() runs in between (to undo a change the direct
        request made); subst lists (via_text, direct_text) replaced in the node's body first."""
        direct = self.double.request(method, path, body, headers)
        if between:
            between()
        via = self.node.request(method, node_path or path, body if node_body is None else node_body, headers)
        for a, b in subst:
            via.body = via.body.replace(a.encode(), b.encode())
        what = '%s %s' % (method, node_path or path)
        if expect_status is not None:
            self.assertEqual(direct.status, expect_status,
                             '%s: the double itself answered %r (test assumption broken)' % (what, direct))
        self.assertEqual(via.status, direct.status,
                         '%s: status via node %d, direct %d; body via node %r' % (
                             what, via.status, direct.status, via.body[:300]))
        self.assertEqual(via.content_type, direct.content_type,
                         '%s: Content-Type via node %r, direct %r' % (what, via.content_type, direct.content_type))
        diffs = body_diff(direct, via)
        self.assertEqual(diffs, [], '%s: body differs (direct vs node):\n  %s' % (what, '\n  '.join(diffs[:20])))
        return direct, via

    # -- plain GETs ---------------------------------------------------------------------------
    def test_root(self):
        d, v = self.compare('GET', '/', expect_status=200)
        self.assertEqual(v.body, b'Ollama is running')
        self.assertTrue(v.content_type.startswith('text/plain'), v.content_type)

    def test_root_head(self):
        d, v = self.compare('HEAD', '/', expect_status=200)
        self.assertEqual(v.body, b'')

    def head_then_get(self, addr, who):
        """HEAD answers carry no body: on one kept-alive connection, the bytes after each HEAD
        answer's header block must be the next response's status line (http.client hides a
        stray body, so this reads the socket by hand)."""
        s = socket.create_connection(addr, timeout=5)
        try:
            for path in ('/', '/api/version', '/api/tags', '/api/blobs/sha256:' + '0' * 64):
                s.sendall(('HEAD %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n' % ((path,) + tuple(addr))).encode())
                s.sendall(('GET /api/version HTTP/1.1\r\nHost: %s:%d\r\n\r\n' % tuple(addr)).encode())
                buf = b''
                while b'"version"' not in buf or not buf.endswith(b'}'):
                    d = s.recv(65536)
                    self.assertTrue(d, '%s: connection closed after HEAD %s: %r' % (who, path, buf))
                    buf += d
                head, _, rest = buf.partition(b'\r\n\r\n')
                self.assertRegex(head, rb'^HTTP/1\.1 (200|404) ', '%s: HEAD %s' % (who, path))
                self.assertTrue(rest.startswith(b'HTTP/1.1 200 '),
                                '%s: HEAD %s answered with a body: %r' % (who, path, rest[:60]))
        finally:
            s.close()

    def test_head_keepalive(self):
        self.head_then_get(self.node.addr, 'node')

    def test_head_keepalive_double(self):
        # The double must be faithful for the comparisons above to mean anything (Go's
        # net/http never writes a body after a HEAD answer).
        self.head_then_get(self.double.addr, 'ollama-double')

    def test_version(self):
        d, v = self.compare('GET', '/api/version', expect_status=200)
        self.assertIn('version', v.json())
        self.compare('HEAD', '/api/version', expect_status=200)

    def test_tags(self):
        d, v = self.compare('GET', '/api/tags', expect_status=200)
        self.assertTrue(v.json()['models'])
        self.compare('HEAD', '/api/tags', expect_status=200)

    def test_ps(self):
        self.compare('GET', '/api/ps', expect_status=200)

    def test_show(self):
        self.compare('POST', '/api/show', {'model': self.chat_model}, expect_status=200)

    # -- generation ---------------------------------------------------------------------------
    def test_generate_stream(self):
        d, v = self.compare('POST', '/api/generate', {'model': self.chat_model, 'prompt': 'Why is the sky blue?'},
                            expect_status=200)
        self.assertEqual(v.content_type, 'application/x-ndjson')
        lines = v.ndjson()
        self.assertGreater(len(lines), 1)
        self.assertTrue(lines[-1]['done'])

    def test_generate_no_stream(self):
        d, v = self.compare('POST', '/api/generate',
                            {'model': self.chat_model, 'prompt': 'Why is the sky blue?', 'stream': False},
                            expect_status=200)
        self.assertTrue(v.content_type.startswith('application/json'), v.content_type)
        self.assertTrue(v.json()['done'])

    def test_chat_stream(self):
        body = {'model': self.chat_model, 'messages': [{'role': 'user', 'content': 'hello there'}]}
        d, v = self.compare('POST', '/api/chat', body, expect_status=200)
        lines = v.ndjson()
        self.assertEqual(lines[0]['message']['role'], 'assistant')
        self.assertTrue(lines[-1]['done'])

    def test_chat_no_stream(self):
        body = {'model': self.chat_model, 'messages': [{'role': 'user', 'content': 'hello there'}],
                'stream': False}
        self.compare('POST', '/api/chat', body, expect_status=200)

    def test_embed(self):
        d, v = self.compare('POST', '/api/embed', {'model': self.embed_model, 'input': ['one', 'two']},
                            expect_status=200)
        self.assertEqual(len(v.json()['embeddings']), 2)

    def test_embeddings_legacy(self):
        d, v = self.compare('POST', '/api/embeddings', {'model': self.embed_model, 'prompt': 'one'},
                            expect_status=200)
        self.assertTrue(v.json()['embedding'])

    # -- model management ---------------------------------------------------------------------
    def test_pull(self):
        d, v = self.compare('POST', '/api/pull', {'model': self.chat_model}, expect_status=200)
        self.assertEqual(v.ndjson()[-1], {'status': 'success'})
        self.compare('POST', '/api/pull', {'model': self.chat_model, 'stream': False}, expect_status=200)

    def test_push(self):
        self.compare('POST', '/api/push', {'model': self.chat_model})

    def delete_direct(self, name):
        r = self.double.request('DELETE', '/api/delete', {'model': name})
        self.assertEqual(r.status, 200, 'cleanup: %r' % r)

    def test_create(self):
        d, v = self.compare('POST', '/api/create', {'model': 'it-create', 'from': self.chat_model},
                            expect_status=200, between=lambda: self.delete_direct('it-create'))
        self.assertEqual(v.ndjson()[-1], {'status': 'success'})
        self.delete_direct('it-create')

    def test_copy_delete(self):
        copy = {'source': self.chat_model, 'destination': 'it-copy'}
        self.compare('POST', '/api/copy', copy, expect_status=200,
                     between=lambda: self.delete_direct('it-copy'))
        tags = [m['name'] for m in self.double.request('GET', '/api/tags').json()['models']]
        self.assertIn('it-copy:latest', tags, 'copy through the node did not reach the upstream')
        self.compare('DELETE', '/api/delete', {'model': 'it-copy'}, expect_status=200,
                     between=lambda: self.assertEqual(self.double.request('POST', '/api/copy', copy).status, 200))
        # Gone now: both 404.
        self.compare('DELETE', '/api/delete', {'model': 'it-copy'}, expect_status=404)
        self.compare('POST', '/api/copy', {'source': 'it-no-such-model', 'destination': 'x'}, expect_status=404)

    def test_blobs(self):
        # A blob cannot be deleted through the API: each side uploads its own content and the
        # node's digests are mapped to the direct ones before the bodies are compared.
        data_d = os.urandom(4096)
        data_n = os.urandom(4096)
        dig_d = 'sha256:' + hashlib.sha256(data_d).hexdigest()
        dig_n = 'sha256:' + hashlib.sha256(data_n).hexdigest()
        self.compare('HEAD', '/api/blobs/' + dig_d, node_path='/api/blobs/' + dig_n, expect_status=404)
        d, v = self.compare('POST', '/api/blobs/' + dig_d, data_d, node_path='/api/blobs/' + dig_n,
                            node_body=data_n, expect_status=201)
        self.compare('HEAD', '/api/blobs/' + dig_d, node_path='/api/blobs/' + dig_n, expect_status=200)
        # Body that does not hash to the digest in the path.
        bad = 'sha256:' + hashlib.sha256(b'other').hexdigest()
        got_d = 'sha256:' + hashlib.sha256(b'not this').hexdigest()
        got_n = 'sha256:' + hashlib.sha256(b'not that').hexdigest()
        self.compare('POST', '/api/blobs/' + bad, b'not this', node_body=b'not that', expect_status=400,
                     subst=[(got_n, got_d)])

    # -- OpenAI compatibility -----------------------------------------------------------------
    def test_v1_chat_stream(self):
        body = {'model': self.chat_model, 'messages': [{'role': 'user', 'content': 'hi'}], 'stream': True}
        d, v = self.compare('POST', '/v1/chat/completions', body, expect_status=200)
        self.assertTrue(v.content_type.startswith('text/event-stream'), v.content_type)
        events, terminated = harness.sse_events(v.body)
        self.assertTrue(terminated, 'SSE body does not end with a blank line')
        self.assertEqual(events[-1], '[DONE]')
        first = json.loads(events[0])
        self.assertEqual(first['object'], 'chat.completion.chunk')

    def test_v1_chat_stream_usage(self):
        body = {'model': self.chat_model, 'messages': [{'role': 'user', 'content': 'hi'}], 'stream': True,
                'stream_options': {'include_usage': True}}
        self.compare('POST', '/v1/chat/completions', body, expect_status=200)

    def test_v1_chat(self):
        body = {'model': self.chat_model, 'messages': [{'role': 'user', 'content': 'hi'}]}
        d, v = self.compare('POST', '/v1/chat/completions', body, expect_status=200)
        self.assertEqual(v.json()['object'], 'chat.completion')

    def test_v1_completions(self):
        self.compare('POST', '/v1/completions', {'model': self.chat_model, 'prompt': 'Say this'},
                     expect_status=200)
        self.compare('POST', '/v1/completions', {'model': self.chat_model, 'prompt': 'Say this', 'stream': True},
                     expect_status=200)

    def test_v1_embeddings(self):
        self.compare('POST', '/v1/embeddings', {'model': self.embed_model, 'input': 'hello'}, expect_status=200)

    def test_v1_models(self):
        d, v = self.compare('GET', '/v1/models', expect_status=200)
        self.assertEqual(v.json()['object'], 'list')
        d, v = self.compare('GET', '/v1/models/' + self.chat_model, expect_status=200)
        self.assertEqual(v.json()['id'], self.chat_model)

    # -- errors -------------------------------------------------------------------------------
    def test_error_missing_body(self):
        d, v = self.compare('POST', '/api/generate', expect_status=400)
        self.assertIn('error', v.json())

    def test_error_bad_json(self):
        d, v = self.compare('POST', '/api/chat', b'{"model": ', {'Content-Type': 'application/json'},
                            expect_status=400)
        self.assertIsInstance(v.json()['error'], str)

    def test_error_unknown_model(self):
        for path, body in (('/api/generate', {'model': 'it-nope', 'prompt': 'x'}),
                           ('/api/show', {'model': 'it-nope'})):
            d, v = self.compare('POST', path, body, expect_status=404)
            self.assertEqual(v.json(), {'error': "model 'it-nope' not found"}, path)
        # Ollama's chat handler words it differently ('model "x" not found, try pulling it first').
        d, v = self.compare('POST', '/api/chat', {'model': 'it-nope', 'messages': [{'role': 'user', 'content': 'x'}]},
                            expect_status=404)
        self.assertIn('not found', v.json()['error'])

    def test_error_unknown_model_v1(self):
        d, v = self.compare('POST', '/v1/chat/completions',
                            {'model': 'it-nope', 'messages': [{'role': 'user', 'content': 'x'}]}, expect_status=404)
        err = v.json()['error']
        self.assertIn('it-nope', err['message'])
        self.assertIn('not found', err['message'])
        self.compare('GET', '/v1/models/it-nope', expect_status=404)

    def test_error_unknown_path(self):
        self.compare('GET', '/api/it-no-such-endpoint', expect_status=404)
        self.compare('POST', '/it/nothing/here', {'a': 1}, expect_status=404)

    # -- what the upstream sees ---------------------------------------------------------------
    def test_host_rewritten(self):
        """Ollama on loopback rejects foreign Host headers: the shim must send the upstream's."""
        want = '127.0.0.1:%d' % self.double.port
        seen = None
        for _ in range(5):
            # http.client sends Host: 127.0.0.1:<shim port>, which is not the upstream's.
            r = self.node.request('GET', '/api/ps')
            self.assertEqual(r.status, 200, r)
            st = self.double.stats()
            if st.get('last_path') == '/api/ps':
                seen = st.get('last_host')
                break
        self.assertIsNotNone(seen, 'the double never saw /api/ps as its last path (stats %r)' % st)
        self.assertEqual(seen, want)


if __name__ == '__main__':
    testenv.main()
