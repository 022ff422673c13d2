#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# mycelia-shimd serves on a listening socket handed over by systemd (LISTEN_FDS, fd name "api")
# instead of binding its own: run through systemd-socket-activate on a private bus.
import shutil
import socket
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import Double, PrivateBus, Proc, wait_until

testenv.require_env('MYCELIA_SHIMD', 'OLLAMA_DOUBLE')
for tool in ('systemd-socket-activate', 'dbus-daemon', 'busctl'):
    if not shutil.which(tool):
        testenv.skip_all('%s not installed' % tool)


def refused(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(('127.0.0.1', port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


class SocketActivation(unittest.TestCase):
    def test_shimd_takes_the_api_fd(self):
        double = Double('--token-delay-ms', '0', '--tokens', '3')
        bus = PrivateBus()
        port = harness.free_port()
        other = harness.free_port()
        while other == port:
            other = harness.free_port()
        act = Proc(['systemd-socket-activate', '-l', '127.0.0.1:%d' % port, '--fdname=api',
                    testenv.env_path('MYCELIA_SHIMD'), '--bus', bus.address, '--upstream', double.url,
                    # The address shimd would bind by hand: it must not, it got a socket.
                    '--api', '127.0.0.1:%d' % other, '--node-id', harness.NODE_ID, '--name', 'sa',
                    '--state-dir', harness.make_tmpdir()],
                   name='socket-activate')
        try:
            wait_until(lambda: not refused(port), 5, what='systemd-socket-activate listening on %d' % port)
            # The first connection starts shimd; the request waits in the backlog until it runs.
            r = harness.http_request(('127.0.0.1', port), 'GET', '/', timeout=10)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b'Ollama is running')
            tags = harness.http_request(('127.0.0.1', port), 'GET', '/api/tags', timeout=10)
            self.assertEqual(tags.status, 200, tags)
            model = double.chat_model()
            g = harness.http_request(('127.0.0.1', port), 'POST', '/api/generate',
                                     {'model': model, 'prompt': 'x', 'stream': False}, timeout=10)
            self.assertEqual(g.status, 200, g)
            self.assertTrue(refused(other), 'shimd also bound its own --api address %d' % other)
            self.assertTrue(act.alive(), 'shimd exited\n' + act.tail())
            addr = wait_until(lambda: harness.bus_get_property(bus.address, 'org.mycelia.Shim1', 'ApiAddress'),
                              5, what='Shim1 on the private bus')
            self.assertEqual(addr, '127.0.0.1:%d' % port)
        finally:
            rc = act.stop(5)
            bus.stop()
            double.stop()
        self.assertEqual(rc, 0, 'shimd exit status after SIGTERM\n' + act.tail())


if __name__ == '__main__':
    testenv.main()
