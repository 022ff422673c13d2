#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Failures around the proxy: upstream errors before and after the first byte, stalls, client
# hang-ups, the request and size limits, bad bytes, and a slow reader's memory bound.
import json
import os
import time
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import Double, Node, parse_raw_response, raw_exchange, wait_until

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'OLLAMA_DOUBLE')

BUSY_TEXT = 'server busy, please try again.  maximum pending requests exceeded'


def assert_json_error(tc, body, what):
    try:
        obj = json.loads(body.decode('utf-8'))
    except ValueError:
        tc.fail('%s: body is not JSON: %r' % (what, body[:300]))
    tc.assertIsInstance(obj, dict, what)
    tc.assertIn('error', obj, '%s: no "error" in %r' % (what, obj))
    return obj


class UpstreamFaults(unittest.TestCase):
    """One double, one node with --upstream-timeout 2s; faults switched on through the double's
    control endpoint."""

    @classmethod
    def setUpClass(cls):
        cls.double = Double('--token-delay-ms', '20', '--tokens', '12')
        cls.node = Node(cls.double.url, '--upstream-timeout', '2s')
        cls.model = cls.double.chat_model()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.double.stop()

    def tearDown(self):
        # Every test leaves the double healthy.
        self.double.faults()

    def gen(self):
        return {'model': self.model, 'prompt': 'Why is the sky blue?'}

    def test_status_before_first_byte_passes_through(self):
        self.double.faults(fail_status=500)
        direct = self.double.request('POST', '/api/generate', self.gen())
        self.double.faults(fail_status=500)
        via = self.node.request('POST', '/api/generate', self.gen())
        self.assertEqual(direct.status, 500, 'double: %r' % direct)
        self.assertEqual(via.status, 500, 'node: %r' % via)
        self.assertEqual(via.json(), direct.json())

    def test_error_after_first_byte_ndjson(self):
        self.double.faults(fail_after_tokens=3)
        t0 = time.monotonic()
        with self.node.stream('POST', '/api/generate', self.gen(), timeout=10) as s:
            self.assertEqual(s.status, 200)
            lines = [json.loads(l) for _, l in s.lines()]
            clean = s.clean_end
        self.assertLess(time.monotonic() - t0, 8)
        tokens = [l for l in lines if 'error' not in l]
        errors = [l for l in lines if 'error' in l]
        self.assertEqual(len(tokens), 3, 'lines: %r' % lines)
        self.assertFalse(any(l.get('done') for l in tokens), 'a token line says done: %r' % lines)
        self.assertEqual(len(errors), 1, 'want exactly one error line, got %r' % lines)
        self.assertIn('error', lines[-1], 'the error line is not the last one: %r' % lines)
        self.assertIsInstance(lines[-1]['error'], str)
        self.assertTrue(clean, 'the chunked stream was cut instead of ended')

    def test_error_after_first_byte_sse(self):
        self.double.faults(fail_after_tokens=3)
        body = {'model': self.model, 'messages': [{'role': 'user', 'content': 'hi'}], 'stream': True}
        with self.node.stream('POST', '/v1/chat/completions', body, timeout=10) as s:
            self.assertEqual(s.status, 200)
            frames = [d for _, d in s.sse_frames()]
        self.assertTrue(frames, 'no SSE frames')
        content = [f for f in frames if f != '[DONE]' and 'error' not in json.loads(f)]
        self.assertGreaterEqual(len(content), 3, frames)
        errs = [f for f in frames if f != '[DONE]' and 'error' in json.loads(f)]
        self.assertEqual(len(errs), 1, 'want one error frame: %r' % frames)
        last = frames[-1]
        self.assertNotEqual(last, '[DONE]', 'stream ended as if it succeeded: %r' % frames)
        self.assertIn('error', json.loads(last), frames)

    def test_stall_times_out(self):
        self.double.faults(stall=True)
        t0 = time.monotonic()
        s = self.node.stream('POST', '/api/generate', self.gen(), timeout=10)
        try:
            if s.status == 200:
                lines = [json.loads(l) for _, l in s.lines()]
                self.assertTrue(lines and 'error' in lines[-1], 'stalled stream did not end in an error: %r' % lines)
            else:
                self.assertGreaterEqual(s.status, 500)
                assert_json_error(self, s.read_all(), 'stalled request')
        finally:
            s.close()
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 5.5, 'stalled upstream: request took %.1fs with --upstream-timeout 2s' % elapsed)
        self.assertGreater(elapsed, 1.5, 'stall ended before the 2s upstream timeout (%.1fs)' % elapsed)

    def test_client_disconnect_cancels_upstream(self):
        self.double.faults(token_delay_ms=200)
        before = self.double.stats()['cancelled']
        s = self.node.stream('POST', '/api/generate', self.gen(), timeout=10)
        self.assertEqual(s.status, 200)
        it = s.lines()
        next(it)
        s.close()
        t0 = time.monotonic()
        wait_until(lambda: self.double.stats()['cancelled'] > before, 2.0,
                   what='upstream request cancelled after the client hung up')
        self.assertLess(time.monotonic() - t0, 2.5)


class UpstreamGone(unittest.TestCase):
    def test_upstream_killed_gives_502(self):
        double = Double('--token-delay-ms', '0')
        node = Node(double.url)
        try:
            model = double.chat_model()
            self.assertEqual(node.request('POST', '/api/show', {'model': model}).status, 200)
            double.kill()
            for path, body in (('/api/generate', {'model': model, 'prompt': 'x'}),
                               ('/api/generate', {'model': model, 'prompt': 'x', 'stream': False}),
                               ('/api/chat', {'model': model, 'messages': [{'role': 'user', 'content': 'x'}]})):
                t0 = time.monotonic()
                r = node.request('POST', path, body, timeout=15)
                elapsed = time.monotonic() - t0
                self.assertEqual(r.status, 502, '%s with upstream dead: %r' % (path, r))
                assert_json_error(self, r.body, path)
                self.assertLess(elapsed, 7, '%s took %.1fs with upstream dead' % (path, elapsed))
        finally:
            node.stop()
            double.stop()


class Busy(unittest.TestCase):
    def test_max_requests_503(self):
        double = Double('--num-parallel', '1', '--token-delay-ms', '100', '--tokens', '100')
        node = Node(double.url, '--max-requests', '2')
        socks = []
        try:
            model = double.chat_model()
            body = {'model': model, 'prompt': 'slow'}
            for _ in range(2):
                socks.append(harness.send_request(node.addr, 'POST', '/api/generate', body))
            wait_until(lambda: node.prop('org.mycelia.Shim1', 'RequestsActive') >= 2, 5,
                       what='two requests active in the shim')
            wait_until(lambda: double.stats()['requests'] >= 2, 5, what='two requests at the double')
            r = node.request('POST', '/api/generate', body, timeout=10)
            self.assertEqual(r.status, 503, 'third request: %r' % r)
            self.assertEqual(r.json(), {'error': BUSY_TEXT})
            self.assertGreaterEqual(node.prop('org.mycelia.Shim1', 'RejectedBusy'), 1)
        finally:
            for s in socks:
                s.close()
            node.stop()
            double.stop()


class Limits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.double = Double('--token-delay-ms', '0', '--tokens', '4')
        cls.node = Node(cls.double.url, '--max-body-size', '1M')
        cls.model = cls.double.chat_model()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.double.stop()

    def head(self, method, path, *headers):
        return ('%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n' % (
            method, path, self.node.addr[1], ''.join(h + '\r\n' for h in headers))).encode()

    def assert_still_serving(self):
        r = self.node.request('GET', '/api/version', timeout=5)
        self.assertEqual(r.status, 200, 'node stopped serving: %r' % r)

    def test_body_within_limit(self):
        prompt = 'word ' * (512 * 1024 // 5)
        r = self.node.request('POST', '/api/generate', {'model': self.model, 'prompt': prompt, 'stream': False})
        self.assertEqual(r.status, 200, r)

    def test_body_too_big(self):
        n = 2 * 1024 * 1024
        body = b'{"model":"%s","prompt":"' % self.model.encode() + b'a' * (n - 100)
        body = body + b' ' * (n - 2 - len(body)) + b'"}'
        raw, _ = raw_exchange(self.node.addr, self.head('POST', '/api/generate', 'Content-Type: application/json',
                                                        'Content-Length: %d' % len(body)), body=body)
        status, headers, rbody = parse_raw_response(raw)
        self.assertEqual(status, 413, raw[:300])
        assert_json_error(self, rbody, '413 body')
        self.assertGreaterEqual(self.node.prop('org.mycelia.Shim1', 'RejectedTooLarge'), 1)
        self.assert_still_serving()

    def test_expect_continue_too_big(self):
        raw, _ = raw_exchange(self.node.addr, self.head('POST', '/api/generate', 'Content-Type: application/json',
                                                        'Content-Length: %d' % (2 * 1024 * 1024),
                                                        'Expect: 100-continue'))
        self.assertTrue(raw, 'no answer to Expect: 100-continue with a too-big Content-Length')
        self.assertFalse(raw.startswith(b'HTTP/1.1 100'), 'server said 100 Continue to a too-big body: %r' % raw[:200])
        status, _, rbody = parse_raw_response(raw)
        self.assertEqual(status, 413, raw[:300])
        assert_json_error(self, rbody, '413 after Expect')
        self.assert_still_serving()

    def test_header_block_too_big(self):
        big = 'X-Filler: ' + 'a' * (128 * 1024)
        raw, closed = raw_exchange(self.node.addr, self.head('GET', '/api/version', big))
        self.assertTrue(raw, 'connection closed without a status for a 128 KiB header block')
        status, _, _ = parse_raw_response(raw)
        self.assertTrue(400 <= status < 500, 'status %d for a 128 KiB header block' % status)
        self.assert_still_serving()

    def test_garbage(self):
        for junk in (b'\x00\x01\x02\xff\xfe garbage\r\n\r\n',
                     b'GET\r\n\r\n',
                     b'GET / HTTP/9.9\r\n\r\n',
                     b'POST /api/generate HTTP/1.1\r\nContent-Length: -5\r\n\r\n',
                     b'POST /api/generate HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
                     b'\r\n' * 100):
            raw, closed = raw_exchange(self.node.addr, junk, timeout=5)
            if raw:
                status, _, _ = parse_raw_response(raw)
                self.assertTrue(400 <= status < 500, 'status %d for %r' % (status, junk[:40]))
            else:
                self.assertTrue(closed, 'no answer and connection left open for %r' % junk[:40])
            self.assert_still_serving()


class SlowReader(unittest.TestCase):
    def test_slow_reader_memory_bound(self):
        # A stream of ~25 MB produced as fast as the double can; the client reads 1 byte / 10 ms.
        double = Double('--token-delay-ms', '0', '--tokens', '250000')
        budget = harness.parse_size(os.environ.get('IT_MAX_STREAM_BUFFER', '1M'))
        with harness.asan_quarantine_off():
            node = Node(double.url, '--max-stream-buffer', str(budget))
        try:
            model = double.chat_model()
            pid = node.shimd_pid()
            node.request('POST', '/api/show', {'model': model})
            base = harness.proc_rss_kib(pid)
            sock = harness.send_request(node.addr, 'POST', '/api/generate', {'model': model, 'prompt': 'long'},
                                        rcvbuf=4096)
            peak = base
            got = 0
            t_end = time.monotonic() + 4.0
            while time.monotonic() < t_end:
                d = sock.recv(1)
                if not d:
                    break
                got += 1
                time.sleep(0.01)
                if got % 25 == 0:
                    peak = max(peak, harness.proc_rss_kib(pid))
            peak = max(peak, harness.proc_rss_kib(pid))
            sock.close()
            growth = peak - base
            print('shimd RSS %d KiB -> peak %d KiB while the client read %d bytes' % (base, peak, got))
            self.assertGreater(got, 50, 'the stream did not start')
            # The shim holds at most max-stream-buffer response bytes for a slow client. Allow
            # 4x that for allocator and buffer-chain overhead plus 4 MiB of fixed slack.
            bound = (4 * budget + 4 * 1024 * 1024) // 1024
            self.assertLess(growth, bound,
                            'shimd RSS grew by %d KiB (from %d KiB; bound %d KiB for --max-stream-buffer %d) '
                            'while a slow client read %d bytes of a ~25 MB stream' % (
                                growth, base, bound, budget, got))
            r = node.request('GET', '/api/version', timeout=5)
            self.assertEqual(r.status, 200)
        finally:
            node.stop()
            double.stop()


if __name__ == '__main__':
    testenv.main()
