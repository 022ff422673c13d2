#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# A stream survives the death of the node serving it (docs/stream-resume.md): three launchers on
# loopback, a streamed chat from the first served by the second; the second's whole node (or only
# its Ollama) is killed after some tokens, and the client's one stream carries on from the third
# node: its text equals the uninterrupted answer, no line twice, none missing, one final object
# whose counts cover both parts. What must not be resumed ends with the error object as before.
import json
import os
import re
import signal
import threading
import time
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from test_failover import kill_node

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'OLLAMA_DOUBLE')

NAMES = ('ra', 'rb', 'rc')
MODEL = 'shared:latest'
TOKENS = 40
CUT_AFTER = 6
# A resumable stream silent this long after its first byte counts as a dead node (the default
# is 30 s; the tokens here come every 60 ms).
RESUME_STALL = 1.0
MESSAGES = [{'role': 'user', 'content': 'Tell me a long story about the mesh.'}]


class Resume(unittest.TestCase):
    def setUp(self):
        self.doubles, self.nodes = harness.start_mesh(
            NAMES, MODEL, double_args=('--tokens', str(TOKENS), '--num-parallel', '4', '--token-delay-ms', '60'),
            node_args=('--resume-stall', '%gs' % RESUME_STALL))
        self.a = self.nodes['ra']

    def tearDown(self):
        for d in self.doubles.values():
            if d.proc and d.proc.pid:
                try:
                    os.kill(d.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        harness.stop_mesh(self.doubles, self.nodes)

    def uninterrupted(self, path, body):
        """The whole answer, from a double directly (every double gives the same one)."""
        r = self.doubles['rc'].request('POST', path, dict(body, stream=False), timeout=30)
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def open_on_b(self, path, body, headers=None):
        """A stream entering at a and served by rb: round-robin moves every request to the next
        node, so at most three tries (each one closed at once when another node serves it)."""
        for _ in range(6):
            s = self.a.stream('POST', path, body, headers=dict(headers or {}, **{'X-Mycelia-Policy': 'round-robin'}),
                              timeout=30)
            if s.status == 200 and s.header('X-Mycelia-Served-By') == 'rb':
                return s
            s.close()
        self.fail('no stream was served by rb')

    def resumes(self):
        text = self.a.request('GET', '/metrics', timeout=10).body.decode()
        m = re.search(r'^mycelia_shim_resumes_total (\d+)$', text, re.M)
        return int(m.group(1))

    def chat_resumed(self, kill):
        want = self.uninterrupted('/api/chat', {'model': MODEL, 'messages': MESSAGES})
        before = self.resumes()
        s = self.open_on_b('/api/chat', {'model': MODEL, 'messages': MESSAGES, 'options': {'seed': 3}})
        objs, raw = [], []
        with s:
            it = s.lines()
            for _ in range(CUT_AFTER):
                t, line = next(it)
                raw.append(line)
                objs.append(json.loads(line))
            t_kill = time.monotonic()
            kill()
            gap = None
            for t, line in it:
                if gap is None:
                    gap = t - t_kill
                raw.append(line)
                objs.append(json.loads(line))
            clean = s.clean_end
        self.assertTrue(clean, 'the chunked body did not end cleanly')
        self.assertFalse([o for o in objs if 'error' in o], objs[-3:])
        text = ''.join(o['message']['content'] for o in objs)
        self.assertEqual(text, want['message']['content'])
        # One line per token, then one final object: nothing repeated, nothing lost.
        self.assertEqual(len(objs), TOKENS + 1)
        self.assertTrue(all(not o['done'] for o in objs[:-1]))
        final = objs[-1]
        self.assertTrue(final['done'])
        self.assertEqual(final['done_reason'], 'stop')
        self.assertEqual(final['eval_count'], TOKENS)
        self.assertEqual(final['mycelia_resumed'], 1)
        self.assertGreater(final['eval_duration'], 0)
        self.assertGreater(final['total_duration'], final['eval_duration'])
        self.assertEqual(self.resumes(), before + 1)
        # The topology page's document counts it too.
        status = self.a.request('GET', '/api/mycelia/status', timeout=10).json()
        self.assertEqual(status['requests']['resumed'], before + 1)
        print('chat resumed: the next token %.0f ms after the kill' % (gap * 1000))
        return gap

    def test_kill_whole_node_mid_chat(self):
        self.chat_resumed(lambda: kill_node(self.nodes['rb']))

    def test_kill_only_its_ollama_mid_chat(self):
        # rb's shim ends its stream with an error object; a holds it back and resumes.
        self.chat_resumed(lambda: self.doubles['rb'].kill())

    def test_stalled_node_mid_chat(self):
        # rb's Ollama stops (SIGSTOP): nothing fails, rb's shim just waits; a cuts the silent
        # stream after resume_stall and resumes it elsewhere.
        gap = self.chat_resumed(lambda: os.kill(self.doubles['rb'].proc.pid, signal.SIGSTOP))
        self.assertGreaterEqual(gap, RESUME_STALL * 0.9)

    def test_openai_stream_resumed(self):
        body = {'model': MODEL, 'messages': MESSAGES, 'stream': True, 'stream_options': {'include_usage': True}}
        want = self.uninterrupted('/v1/chat/completions', body)
        s = self.open_on_b('/v1/chat/completions', body)
        frames = []
        with s:
            it = s.sse_frames()
            for _ in range(CUT_AFTER):
                frames.append(next(it)[1])
            kill_node(self.nodes['rb'])
            frames += [d for _, d in it]
            clean = s.clean_end
        self.assertTrue(clean)
        self.assertEqual(frames[-1], '[DONE]')
        chunks = [json.loads(f) for f in frames[:-1]]
        self.assertFalse([c for c in chunks if 'error' in c], chunks[-3:])
        self.assertEqual(len({c['id'] for c in chunks}), 1, 'the continuation has another id')
        text = ''.join(c['choices'][0]['delta'].get('content', '') for c in chunks if c['choices'])
        self.assertEqual(text, want['choices'][0]['message']['content'])
        usage = [c['usage'] for c in chunks if c.get('usage')]
        self.assertEqual(usage[-1]['completion_tokens'], TOKENS)
        self.assertEqual(chunks[-1]['mycelia_resumed'], 1)

    def test_raw_generate_resumed(self):
        body = {'model': MODEL, 'prompt': 'Once upon a time', 'raw': True}
        want = self.uninterrupted('/api/generate', body)
        s = self.open_on_b('/api/generate', body)
        with s:
            it = s.lines()
            objs = [json.loads(next(it)[1]) for _ in range(CUT_AFTER)]
            kill_node(self.nodes['rb'])
            objs += [json.loads(line) for _, line in it]
        self.assertFalse([o for o in objs if 'error' in o], objs[-3:])
        self.assertEqual(''.join(o['response'] for o in objs), want['response'])
        self.assertEqual(objs[-1]['eval_count'], TOKENS)
        self.assertEqual(objs[-1]['mycelia_resumed'], 1)

    def not_resumed(self, path, body, headers=None):
        before = self.resumes()
        s = self.open_on_b(path, body, headers)
        with s:
            it = s.lines()
            for _ in range(CUT_AFTER):
                next(it)
            kill_node(self.nodes['rb'])
            rest = [json.loads(line) for _, line in it]
            clean = s.clean_end
        self.assertTrue(rest and 'error' in rest[-1], rest[-3:])
        self.assertTrue(clean)
        self.assertEqual(self.resumes(), before)

    def test_generate_without_raw_not_resumed(self):
        self.not_resumed('/api/generate', {'model': MODEL, 'prompt': 'Once upon a time'})

    def test_format_not_resumed(self):
        self.not_resumed('/api/chat', {'model': MODEL, 'messages': MESSAGES, 'format': 'json'})

    def test_header_turns_it_off(self):
        self.not_resumed('/api/chat', {'model': MODEL, 'messages': MESSAGES}, {'X-Mycelia-Resume': 'no'})

    def test_whole_answer_retried_from_the_start(self):
        # Not streamed: nothing reached the client when rb dies mid-answer, so the request starts
        # again elsewhere and the client gets the whole answer once.
        body = {'model': MODEL, 'messages': MESSAGES, 'stream': False}
        want = self.uninterrupted('/api/chat', body)
        for _ in range(4):
            result = {}

            def ask():
                result['r'] = self.a.request('POST', '/api/chat', body, headers={'X-Mycelia-Policy': 'round-robin'},
                                             timeout=30)
            t = threading.Thread(target=ask)
            t.start()
            time.sleep(0.5)
            if self.doubles['rb'].stats()['active'] > 0:
                kill_node(self.nodes['rb'])
                t.join(30)
                r = result['r']
                self.assertEqual(r.status, 200, r.body)
                self.assertIn(r.header('X-Mycelia-Served-By'), ('ra', 'rc'))
                self.assertEqual(r.json()['message']['content'], want['message']['content'])
                return
            t.join(30)
        self.fail('no request went to rb')


if __name__ == '__main__':
    testenv.main()
