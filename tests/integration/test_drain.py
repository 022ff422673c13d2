#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# mycelia-shimd stops gracefully on SIGTERM (docs/shim-drain.md): streams in flight finish, new
# connections wait in the launcher's backlog for the next shimd, idle keep-alive connections are
# closed, what outlives --drain-timeout ends with an error object, and shimd exits 0.
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import Double, Node, pid_alive, wait_until

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'OLLAMA_DOUBLE')

TOKEN_DELAY_MS = 100


def launcher_log(node):
    with open(node.proc.log_path, 'rb') as f:
        return f.read().decode('utf-8', 'replace')


def wait_shimd_exit(node, pid, timeout):
    """Waits until shimd pid is gone; returns how the launcher says it ended."""
    wait_until(lambda: not pid_alive(pid), timeout, interval=0.02, what='shimd %d gone' % pid)
    rx = re.compile(r'mycelia-shimd (exited with status \d+|was killed by \S+)')

    def said():
        m = rx.findall(launcher_log(node))
        return m[-1] if m else None
    return wait_until(said, 5, what='the launcher logging how shimd %d ended' % pid)


class BackgroundRequest(threading.Thread):
    """One request on a fresh connection, made from a thread; result is a Response or the
    exception it raised."""

    def __init__(self, node, method, path, body=None, timeout=20.0):
        super().__init__(daemon=True)
        self.args = (method, path, body)
        self.node = node
        self.timeout = timeout
        self.result = None
        self.t_done = None

    def run(self):
        try:
            self.result = self.node.request(*self.args, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 a failure is a result here
            self.result = e
        self.t_done = time.monotonic()


class Drain(unittest.TestCase):
    def start(self, tokens, *node_args):
        self.double = Double('--token-delay-ms', str(TOKEN_DELAY_MS), '--tokens', str(tokens),
                             '--num-parallel', '8')
        self.addCleanup(self.double.stop)
        self.node = Node(self.double.url, *node_args)
        self.addCleanup(self.node.stop)
        self.model = self.double.chat_model()

    def open_stream(self):
        s = self.node.stream('POST', '/api/generate', {'model': self.model, 'prompt': 'drain me', 'stream': True},
                             timeout=20)
        self.addCleanup(s.close)
        self.assertEqual(s.status, 200)
        lines = s.lines()
        first = next(lines)
        self.assertNotIn('error', json.loads(first[1]), first)
        return s, lines, [first]

    def test_stream_in_flight_finishes_and_new_requests_wait(self):
        # 15 tokens, 100 ms apart: the stream lasts about 1.5 s, well within the 8 s default.
        self.start(15)
        old = self.node.shimd_pid()

        # An idle keep-alive connection: it must be closed as the drain begins.
        idle = socket.create_connection(harness.split_addr(self.node.api_url), timeout=5)
        self.addCleanup(idle.close)
        host, port = harness.split_addr(self.node.api_url)
        idle.sendall(b'GET /api/version HTTP/1.1\r\nHost: %s:%d\r\n\r\n' % (host.encode(), port))
        got = b''
        while b'\r\n\r\n' not in got or not got.rstrip().endswith(b'}'):
            got += idle.recv(4096)
        self.assertIn(b' 200 ', got.split(b'\r\n', 1)[0])

        s, lines, seen = self.open_stream()
        t_term = time.monotonic()
        os.kill(old, signal.SIGTERM)

        # The idle connection is closed at once (EOF), well before the stream ends.
        idle.settimeout(1.0)
        try:
            eof = idle.recv(4096)
        except socket.timeout:
            self.fail('the idle keep-alive connection was not closed within 1 s of SIGTERM')
        except ConnectionResetError:
            eof = b''
        self.assertEqual(eof, b'', 'unexpected bytes on the idle connection: %r' % eof)
        t_idle_closed = time.monotonic() - t_term

        # New connections during the drain: never refused; they wait in the launcher's backlog
        # and the next shimd answers them.
        time.sleep(0.2)
        self.assertTrue(pid_alive(old), 'shimd exited before its stream finished')
        late = [BackgroundRequest(self.node, 'GET', '/api/version'),
                BackgroundRequest(self.node, 'POST', '/api/generate',
                                  {'model': self.model, 'prompt': 'late', 'stream': False})]
        for r in late:
            r.start()

        for t, line in lines:
            seen.append((t, line))
        t_stream_end = time.monotonic()
        objs = [json.loads(l) for _, l in seen]
        self.assertTrue(s.clean_end, 'the stream was cut off: %r' % objs[-3:])
        self.assertEqual([o for o in objs if 'error' in o], [], 'error objects in the stream')
        self.assertTrue(objs[-1].get('done'), 'last object is not done:true: %r' % objs[-1])
        self.assertEqual(len(objs), 16, 'expected 15 tokens and the final object')

        how = wait_shimd_exit(self.node, old, 10)
        t_exit = time.monotonic()
        self.assertEqual(how, 'exited with status 0', launcher_log(self.node)[-2000:])
        self.assertLess(t_exit - t_stream_end, 1.0, 'shimd lingered after its last request')

        for r in late:
            r.join(20)
            self.assertFalse(r.is_alive(), 'a request made during the drain never finished')
            self.assertIsInstance(r.result, harness.Response, 'a request made during the drain failed: %r'
                                  % (r.result,))
            self.assertEqual(r.result.status, 200, r.result)
            # Not answered by the draining shimd: it accepted nothing new.
            self.assertGreater(r.t_done, t_stream_end, 'answered while the old shimd drained: it accepted a '
                               'new connection')
        self.assertNotEqual(self.node.shimd_pid(), old)
        print('idle connection closed after %.3fs; stream ended %.2fs after SIGTERM; shimd exited %.3fs '
              'after it; requests made during the drain answered by the next shimd'
              % (t_idle_closed, t_stream_end - t_term, t_exit - t_stream_end))

    def test_drain_timeout_cancels_with_error_object(self):
        # 40 tokens, 100 ms apart: 4 s, longer than --drain-timeout 1s.
        self.start(40, '--drain-timeout', '1s')
        old = self.node.shimd_pid()
        s, lines, seen = self.open_stream()
        t_term = time.monotonic()
        os.kill(old, signal.SIGTERM)
        for t, line in lines:
            seen.append((t, line))
        took = time.monotonic() - t_term
        last = json.loads(seen[-1][1])
        self.assertTrue(s.clean_end, 'the stream was cut off instead of ending with an error object')
        self.assertIn('error', last, 'the stream did not end with an error object: %r' % seen[-3:])
        self.assertIn('shutting down', last['error'])
        self.assertFalse(any(json.loads(l).get('done') for _, l in seen), 'the stream finished?')
        self.assertGreater(took, 0.8, 'cancelled before the drain timeout')
        self.assertLess(took, 2.0, 'not cancelled at the drain timeout')
        how = wait_shimd_exit(self.node, old, 5)
        self.assertEqual(how, 'exited with status 0', launcher_log(self.node)[-2000:])
        # The upstream request was cancelled too (Ollama stops generating).
        wait_until(lambda: self.double.stats()['active'] == 0, 5, what='the double\'s request cancelled')
        print('stream ended with %r %.2fs after SIGTERM (drain timeout 1 s)' % (last, took))

    def test_second_sigterm_exits_at_once(self):
        self.start(40)
        old = self.node.shimd_pid()
        s, lines, seen = self.open_stream()
        os.kill(old, signal.SIGTERM)
        time.sleep(0.3)
        self.assertTrue(pid_alive(old), 'shimd did not wait for its stream')
        t_second = time.monotonic()
        os.kill(old, signal.SIGTERM)
        how = wait_shimd_exit(self.node, old, 5)
        took = time.monotonic() - t_second
        self.assertEqual(how, 'exited with status 0', launcher_log(self.node)[-2000:])
        self.assertLess(took, 0.5, 'the second SIGTERM did not stop shimd at once')
        for t, line in lines:
            seen.append((t, line))
        self.assertFalse(any(json.loads(l).get('done') for _, l in seen if l.startswith('{')))
        print('second SIGTERM: shimd gone %.3fs later' % took)

    @unittest.skipUnless(shutil.which('dbus-monitor'), 'needs dbus-monitor')
    def test_outcomes_reach_routerd_before_exit(self):
        self.start(3)
        wait_until(lambda: any(n[3] == 'up' for n in self.node.prop('org.mycelia.Router1', 'Nodes')), 5,
                   what='the local node up in Router1.Nodes')
        mon = subprocess.Popen(['dbus-monitor', '--address', self.node.bus,
                                "type='method_call',interface='org.mycelia.Router1',member='ReportOutcome'"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(mon.kill)
        time.sleep(0.5)  # the monitor is attached
        old = self.node.shimd_pid()
        r = self.node.request('POST', '/api/generate', {'model': self.model, 'prompt': 'x', 'stream': False})
        self.assertEqual(r.status, 200, r)
        # Within the 100 ms a batch of outcomes waits: only the flush at exit sends it.
        os.kill(old, signal.SIGTERM)
        self.assertEqual(wait_shimd_exit(self.node, old, 5), 'exited with status 0')
        time.sleep(0.3)
        mon.terminate()
        out = mon.communicate(timeout=5)[0].decode('utf-8', 'replace')
        self.assertIn('member=ReportOutcome', out, 'no ReportOutcome from the stopping shimd')
        self.assertIn('string "%s"' % self.model, out)


if __name__ == '__main__':
    testenv.main()
