#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Bearer tokens on the API listener (docs/api-auth.md): a node with --api-auth token and tokens
# made by myceliactl refuses requests without a valid token (401, Ollama's or OpenAI's error
# shape, WWW-Authenticate), serves them with one (streaming too), keeps a model-restricted token
# to its models (403), forgets a revoked token within a second without a restart, leaves GET /
# open, and never passes the Authorization header on to Ollama.
import http.server
import json
import os
import subprocess
import threading
import time
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import Double, Node, wait_until

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'MYCELIA_SHARDD', 'OLLAMA_DOUBLE', 'MYCELIACTL')

SHIM1 = 'org.mycelia.Shim1'


def ctl(*args, timeout=15):
    p = subprocess.run([testenv.env_path('MYCELIACTL')] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def add_token(path, name, models=None):
    rc, out, err = ctl('--json', '--tokens', path, 'token', 'add', name,
                       *(['--models', models] if models else []))
    if rc != 0:
        raise RuntimeError('myceliactl token add %s failed (%d): %s' % (name, rc, err))
    return json.loads(out)['secret']


def bearer(secret):
    return {'Authorization': 'Bearer ' + secret}


class ApiTokens(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = harness.make_tmpdir('mycelia-tokens-')
        cls.tokens = os.path.join(cls.dir, 'tokens')
        cls.model, cls.other = 'llama3.2:latest', 'qwen2.5:7b'
        cls.embed = 'nomic-embed-text:latest'
        cls.double = Double('--token-delay-ms', '20', '--tokens', '4', '--models',
                            ','.join((cls.model, cls.other, cls.embed)))
        cls.full = add_token(cls.tokens, 'full')
        # Named without its tag: Ollama's "llama3.2" is "llama3.2:latest".
        short = cls.model[:-len(':latest')] if cls.model.endswith(':latest') else cls.model
        cls.limited = add_token(cls.tokens, 'limited', short)
        cls.node = Node(cls.double.url, '--api-auth', 'token', '--tokens', cls.tokens, name='tokens')

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.double.stop()

    def chat(self, model, headers=None, path='/api/chat', stream=False):
        body = {'model': model, 'messages': [{'role': 'user', 'content': 'hi'}], 'stream': stream}
        return self.node.request('POST', path, body, headers=headers)

    def assert_401(self, r, openai=False, presented=False):
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.content_type, 'application/json; charset=utf-8')
        www = r.header('WWW-Authenticate')
        self.assertIsNotNone(www, r)
        self.assertTrue(www.startswith('Bearer'), www)
        if presented:
            self.assertIn('invalid_token', www)
        if openai:
            err = r.json()['error']
            self.assertEqual(err['message'], 'unauthorized')
            self.assertIn('type', err)
        else:
            self.assertEqual(r.json(), {'error': 'unauthorized'})

    def test_no_token_is_401_in_ollama_shape(self):
        self.assert_401(self.chat(self.model))
        self.assert_401(self.node.request('GET', '/api/tags'))
        self.assert_401(self.node.request('POST', '/api/generate', {'model': self.model, 'prompt': 'x'}))

    def test_metrics_need_any_token(self):
        """GET /metrics (docs/metrics.md) is gated like a list: 401 without a token, served to any
        token, one restricted to models too."""
        self.assert_401(self.node.request('GET', '/metrics'))
        for secret in (self.full, self.limited):
            r = self.node.request('GET', '/metrics', headers=bearer(secret))
            self.assertEqual(r.status, 200, r)
            self.assertIn(b'\nmycelia_shim_rejected_requests_total{reason="unauthorized"} ', r.body)

    def test_wrong_token_is_401(self):
        self.assert_401(self.chat(self.model, bearer('myc_not-a-token')), presented=True)
        self.assert_401(self.chat(self.model, bearer(self.full + 'x')), presented=True)
        self.assert_401(self.chat(self.model, {'Authorization': 'Basic ' + self.full}), presented=True)
        self.assert_401(self.chat(self.model, {'Authorization': 'Bearer '}), presented=True)

    def test_openai_paths_get_the_openai_shape(self):
        self.assert_401(self.chat(self.model, path='/v1/chat/completions'), openai=True)
        self.assert_401(self.node.request('GET', '/v1/models'), openai=True)

    def test_right_token_streams(self):
        body = {'model': self.model, 'prompt': 'Tell me a story'}
        with self.node.stream('POST', '/api/generate', body, headers=bearer(self.full)) as s:
            self.assertEqual(s.status, 200)
            self.assertEqual(s.content_type, 'application/x-ndjson')
            times, objs = [], []
            for t, line in s.lines():
                objs.append(json.loads(line))
                times.append(t)
            self.assertTrue(s.clean_end)
        self.assertTrue(objs[-1]['done'], objs)
        self.assertGreaterEqual(len(objs), 5)
        self.assertGreater(times[-1] - times[0], 0.04, 'tokens did not arrive as produced')
        # The scheme in any case, as RFC 9110 has it.
        r = self.node.request('GET', '/api/tags', headers={'Authorization': 'bearer ' + self.full})
        self.assertEqual(r.status, 200, r)
        r = self.chat(self.model, bearer(self.full), path='/v1/chat/completions', stream=True)
        self.assertEqual(r.status, 200, r)
        self.assertIn(b'data: [DONE]', r.body)

    def test_liveness_stays_open(self):
        r = self.node.request('GET', '/')
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b'Ollama is running')
        self.assertEqual(self.node.request('HEAD', '/').status, 200)

    def test_restricted_token_keeps_to_its_models(self):
        r = self.chat(self.model, bearer(self.limited))
        self.assertEqual(r.status, 200, r)
        r = self.chat(self.model.upper(), bearer(self.limited))     # names compare as Ollama's do
        self.assertNotEqual(r.status, 403, r)
        r = self.chat(self.other, bearer(self.limited))
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json(), {'error': "token 'limited' may not use model '%s'" % self.other})
        r = self.chat(self.other, bearer(self.limited), path='/v1/chat/completions')
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json()['error']['message'], "token 'limited' may not use model '%s'" % self.other)
        # Model management could swap another model in under its name: only unrestricted tokens.
        r = self.node.request('POST', '/api/copy', {'source': self.other, 'destination': self.model},
                              headers=bearer(self.limited))
        self.assertEqual(r.status, 403, r)
        self.assertIn("token 'limited' may not use POST /api/copy", r.json()['error'])
        self.assertEqual(self.node.request('GET', '/api/tags', headers=bearer(self.limited)).status, 200)
        # The unrestricted token may use the other model.
        self.assertEqual(self.chat(self.other, bearer(self.full)).status, 200)

    def test_collections_embed_with_the_clients_token(self):
        # The shim embeds a collection's texts through its own API listener, as the client.
        wait_until(lambda: self.node.request('GET', '/api/mycelia/collections',
                                             headers=bearer(self.full)).status == 200, 15,
                   what="the launcher's shardd on the bus")
        body = {'name': 'kb', 'model': self.embed}
        self.assert_401(self.node.request('POST', '/api/mycelia/collections', body))
        r = self.node.request('POST', '/api/mycelia/collections', body, headers=bearer(self.full))
        self.assertEqual(r.status, 200, r)
        self.assertGreater(r.json()['dimension'], 0)
        # A token restricted to another model meets the rule on that embedding request.
        r = self.node.request('POST', '/api/mycelia/collections', dict(body, name='kb2'),
                              headers=bearer(self.limited))
        self.assertNotEqual(r.status, 200, r)
        self.assertIn("token 'limited' may not use model '%s'" % self.embed, r.json()['error'])

    def test_rejections_are_counted(self):
        before = int(self.node.prop(SHIM1, 'RejectedUnauthorized'))
        for _ in range(3):
            self.assert_401(self.node.request('GET', '/api/version'))
        self.assertEqual(int(self.node.prop(SHIM1, 'RejectedUnauthorized')), before + 3)

    def test_revoke_takes_effect_without_restart(self):
        secret = add_token(self.tokens, 'shortlived')
        pid = self.node.shimd_pid()
        # Added while running: usable within a second or so.
        wait_until(lambda: self.node.request('GET', '/api/version', headers=bearer(secret)).status == 200, 3,
                   what='a token added while the node runs to be accepted')
        rc, out, err = ctl('--tokens', self.tokens, 'token', 'revoke', 'shortlived')
        self.assertEqual(rc, 0, err)
        t0 = time.monotonic()
        wait_until(lambda: self.node.request('GET', '/api/version', headers=bearer(secret)).status == 401, 3,
                   interval=0.05, what='the revoked token to be refused')
        self.assertLess(time.monotonic() - t0, 1.6)
        self.assertEqual(self.node.shimd_pid(), pid, 'mycelia-shimd restarted')
        self.assertEqual(self.node.request('GET', '/api/version', headers=bearer(self.full)).status, 200)
        rc, out, _ = ctl('--json', '--tokens', self.tokens, 'token', 'list')
        self.assertEqual(rc, 0)
        self.assertEqual([t['name'] for t in json.loads(out)], ['full', 'limited'])
        self.assertNotIn(self.full, out)

    def test_myceliactl_token(self):
        st = os.stat(self.tokens)
        self.assertEqual(st.st_mode & 0o777, 0o640)
        with open(self.tokens) as f:
            text = f.read()
        self.assertNotIn(self.full, text)           # only hashes are written
        rc, out, err = ctl('--tokens', self.tokens, 'token', 'list')
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r'(?m)^full +\(any\)$')
        self.assertRegex(out, r'(?m)^limited +%s$' % self.model.split(':')[0].replace('.', r'\.'))
        self.assertNotRegex(out, r'[0-9a-f]{64}')
        self.assertEqual(ctl('--tokens', self.tokens, 'token', 'add', 'full')[0], 1)
        self.assertEqual(ctl('--tokens', self.tokens, 'token', 'revoke', 'nobody')[0], 1)
        self.assertEqual(ctl('--tokens', self.tokens, 'token', 'add', 'no/slash')[0], 2)
        self.assertEqual(ctl('--tokens', self.tokens, 'token', 'add', 'x', '--models', 'a,,b')[0], 2)
        self.assertEqual(ctl('--tokens', self.tokens, 'token', 'list', '--models', 'a')[0], 2)
        self.assertEqual(ctl('--tokens', self.tokens, 'token', 'frobnicate')[0], 2)
        # Plain add: the secret alone on stdout, the explanation on stderr.
        rc, out, err = ctl('--tokens', os.path.join(self.dir, 'other'), 'token', 'add', 'plain')
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r'^myc_[A-Za-z0-9_-]{43}\n$')
        self.assertIn("Added token 'plain'", err)


class Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in upstream that records the headers it is sent."""
    seen = []
    protocol_version = 'HTTP/1.1'

    def answer(self):
        n = int(self.headers.get('Content-Length') or 0)
        if n:
            self.rfile.read(n)
        Recorder.seen.append((self.command, self.path, dict(self.headers)))
        body = b'{"models":[]}' if self.path == '/api/tags' else b'{"version":"0.0.0"}'
        self.send_response(200)
        self.send_header('Content-Type', 'application/json; charset=utf-8')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = answer

    def log_message(self, *a):
        pass


class Secrets(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = harness.make_tmpdir('mycelia-tokens-')
        cls.tokens = os.path.join(cls.dir, 'tokens')
        cls.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Recorder)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.secret = add_token(cls.tokens, 'alice')
        cls.node = Node('http://127.0.0.1:%d' % cls.server.server_address[1], '--api-auth', 'token',
                        '--tokens', cls.tokens, name='secrets')

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.server.shutdown()

    def test_authorization_is_not_forwarded(self):
        Recorder.seen.clear()
        r = self.node.request('GET', '/api/version', headers=dict(bearer(self.secret), **{
            'X-Mycelia-Token': 'mallory'}))
        self.assertEqual(r.status, 200, r)
        mine = [h for m, p, h in Recorder.seen if p == '/api/version']
        self.assertEqual(len(mine), 1, Recorder.seen)
        names = {k.lower() for k in mine[0]}
        self.assertNotIn('authorization', names)
        self.assertFalse([k for k in names if k.startswith('x-mycelia-')], mine[0])

    def test_missing_tokens_file_refuses_everything(self):
        node = Node(self.node.upstream, '--api-auth', 'token', '--tokens', os.path.join(self.dir, 'none'),
                    name='no-tokens')
        try:
            self.assertEqual(node.request('GET', '/api/version', headers=bearer(self.secret)).status, 401)
            self.assertEqual(node.request('GET', '/').status, 200)
            wait_until(lambda: 'No tokens file' in node.tail(), 5, what='the warning about the missing file')
            self.assertEqual(node.tail().count('No tokens file'), 1, node.tail())
            # The file made later is read without a restart.
            add_token(os.path.join(self.dir, 'none'), 'late')
            wait_until(lambda: node.request('GET', '/api/version', headers=bearer(self.secret)).status == 401 and
                       'Read 1 token' in node.tail(), 3, what='the new tokens file to be read')
        finally:
            node.stop()

    def test_api_auth_none_and_bad_values(self):
        node = Node(self.node.upstream, '--api-auth', 'none', name='open')
        try:
            self.assertEqual(node.request('GET', '/api/version').status, 200)
        finally:
            node.stop()
        p = subprocess.run([testenv.env_path('MYCELIA_SHIMD'), '--api-auth', 'maybe', '--api', '127.0.0.1:0',
                            '--bus', 'unix:path=/nonexistent'], capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 1)
        self.assertIn("Invalid [shim] api_auth 'maybe'", p.stderr)


if __name__ == '__main__':
    testenv.main()
