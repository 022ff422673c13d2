#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The shim's client connections (docs/shim-limits.md, "Connections"): past [shim]
# max_connections new connections wait in the listen backlog while the open ones are served, and
# clients that send their request a line at a time (slowloris) are closed after idle_timeout, so
# they cannot hold the connections the others need.
import select
import socket
import threading
import time
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import Double, Node, parse_raw_response, wait_until

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'OLLAMA_DOUBLE')

SHIM1 = 'org.mycelia.Shim1'
CAP = 20
VERSION_REQUEST = b'GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'


def connect(addr):
    s = socket.create_connection(addr, timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def readable(s, timeout):
    return bool(select.select([s], [], [], timeout)[0])


def read_response(s, timeout=10.0):
    """One whole response (Content-Length) from s; parse_raw_response()'s (status, headers, body)."""
    deadline = time.monotonic() + timeout
    data = b''
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not readable(s, left):
            raise TimeoutError('no whole response within %.1f s (got %r)' % (timeout, data[:200]))
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b'\r\n\r\n')
        if sep:
            length = [int(line.split(b':', 1)[1]) for line in head.split(b'\r\n')
                      if line.lower().startswith(b'content-length:')]
            if length and len(body) >= length[0]:
                break
    return parse_raw_response(data)


class Slowloris(threading.Thread):
    """One connection that sends a request head a header line every `interval` s, for ever: until
    the shim closes it (closed_at is then set) or stop()."""

    def __init__(self, addr, interval=0.4):
        super().__init__(daemon=True)
        self.sock = connect(addr)
        self.interval = interval
        self.stopping = threading.Event()
        self.closed_at = None
        self.sock.sendall(b'POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\n')
        self.start()

    def run(self):
        n = 0
        try:
            while not self.stopping.wait(self.interval):
                if readable(self.sock, 0) and not self.sock.recv(4096):
                    break       # EOF: closed by the shim
                self.sock.sendall(b'X-Slow-%d: x\r\n' % n)
                n += 1
        except OSError:
            pass                # reset or broken pipe: closed by the shim
        if not self.stopping.is_set():
            self.closed_at = time.monotonic()

    def stop(self):
        self.stopping.set()
        self.join(5)
        self.sock.close()


class ConnectionCap(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.double = Double()
        # A long idle_timeout: the idle connections below must stay until the test closes them.
        cls.node = Node(cls.double.url, '--max-connections', str(CAP), '--idle-timeout', '60s')

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.double.stop()

    def connections(self):
        return self.node.prop(SHIM1, 'Connections')

    def test_past_the_cap_connections_wait_and_the_open_ones_are_served(self):
        held = []
        try:
            for _ in range(CAP):
                held.append(connect(self.node.addr))
            wait_until(lambda: self.connections() == CAP, 5, what='%d connections open' % CAP)
            paused = self.node.prop(SHIM1, 'AcceptPaused')
            self.assertGreaterEqual(paused, 1)

            # One more: the kernel completes its handshake (the listen backlog), the shim does not
            # take it, so its request gets no answer yet.
            waiting = connect(self.node.addr)
            held.append(waiting)
            waiting.sendall(VERSION_REQUEST)
            self.assertFalse(readable(waiting, 1.0), 'a connection past max_connections was served')
            self.assertEqual(self.connections(), CAP)

            # The connections it has are served meanwhile, keep-alive and all.
            for s in held[:3]:
                s.sendall(VERSION_REQUEST)
                status, _, body = read_response(s)
                self.assertEqual(status, 200, body)
                self.assertIn(b'"version"', body)

            # One closes: the waiting one is taken and answered.
            held.pop(5).close()
            status, _, body = read_response(waiting)
            self.assertEqual(status, 200, body)
            wait_until(lambda: self.connections() == CAP, 5, what='the waiting connection counted')
        finally:
            for s in held:
                s.close()
        wait_until(lambda: self.connections() == 0, 5, what='every connection closed and forgotten')
        # Accepting resumed for good: a burst of new clients is served.
        for _ in range(CAP * 2):
            r = self.node.request('GET', '/api/version', timeout=5)
            self.assertEqual(r.status, 200)


class SlowHeaders(unittest.TestCase):
    IDLE = 2.0

    @classmethod
    def setUpClass(cls):
        cls.double = Double()
        cls.node = Node(cls.double.url, '--max-connections', str(CAP), '--idle-timeout', '%gs' % cls.IDLE)
        cls.model = cls.double.chat_model()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.double.stop()

    def test_slow_header_clients_are_closed_and_cannot_starve_the_others(self):
        before = self.node.prop(SHIM1, 'ClientsTimedOut')
        # Every connection the shim allows taken by clients that never finish their head; each
        # sends a header line well within idle_timeout, which alone would keep it open for ever.
        loris = []
        try:
            for _ in range(CAP):
                loris.append(Slowloris(self.node.addr))
            t0 = time.monotonic()
            wait_until(lambda: self.node.prop(SHIM1, 'Connections') == CAP, 5, what='the slow clients connected')
            # A real client, behind them in the backlog, is served once they are closed.
            r = self.node.request('POST', '/api/generate', {'model': self.model, 'prompt': 'hi', 'stream': False},
                                  timeout=self.IDLE + 8)
            waited = time.monotonic() - t0
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.json()['done'])
            print('served after %.2f s behind %d slow-header clients (idle_timeout %g s)' % (waited, CAP, self.IDLE))
            wait_until(lambda: all(s.closed_at for s in loris), self.IDLE + 3,
                       what='every slow-header client closed by the shim')
            for s in loris:
                # Closed for its slowness, not before: each had idle_timeout from its accept.
                self.assertGreaterEqual(s.closed_at - t0, self.IDLE - 0.5)
            self.assertGreaterEqual(self.node.prop(SHIM1, 'ClientsTimedOut') - before, CAP)
        finally:
            for s in loris:
                s.stop()

    def test_slow_header_clients_below_the_cap_do_not_slow_the_others(self):
        loris = [Slowloris(self.node.addr) for _ in range(CAP // 2)]
        try:
            for _ in range(20):
                r = self.node.request('GET', '/api/version', timeout=2)
                self.assertEqual(r.status, 200)
        finally:
            for s in loris:
                s.stop()


if __name__ == '__main__':
    testenv.main()
