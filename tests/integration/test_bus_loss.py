#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Losing and regaining the bus (docs/architecture.md, "Losing the bus"): each daemon alone on a
# private bus whose dbus-daemon is killed and started again on the same socket. The daemon stays
# up while the bus is gone (the shim keeps serving HTTP, by the last routing table), then owns its
# name again and answers a property Get within a few seconds; the shim reads Router1 again.
import os
import signal
import time
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import BusError, Double, PrivateBus, Proc, make_tmpdir, random_node_id, wait_until, write_mesh_key

testenv.require_env('MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD', 'MYCELIA_DISCOVERYD', 'MYCELIA_SHARDD', 'MYCELIA_SHIMD',
                    'OLLAMA_DOUBLE')

# From the kill of dbus-daemon to the name owned again: the retries back off to 5 s at most, and
# the bus is down for about a second here, so a few seconds.
REGAIN_TIMEOUT = 8.0


class RestartableBus(PrivateBus):
    """PrivateBus whose dbus-daemon can be SIGKILLed and started again on the same socket path
    (dbus-daemon replaces the stale socket file)."""

    def kill(self):
        self.proc.kill_tree()

    def restart(self):
        argv = self.proc.argv
        self.proc = Proc(argv, name='dbus-daemon', logdir=self.dir)
        self.proc.wait_line(r'unix:', timeout=10)


def get(bus, service, prop, path=None, iface=None):
    try:
        return harness.bus_get_property(bus.address, service, prop, path=path, iface=iface)
    except (BusError, TimeoutError, KeyError, ValueError):
        return None


def owned(bus, service):
    try:
        harness.bus_pid_of(bus.address, service)
        return True
    except (BusError, TimeoutError, KeyError, ValueError, IndexError):
        return False


class BusLoss(unittest.TestCase):
    def setUp(self):
        self.bus = RestartableBus()
        self.dir = make_tmpdir('mycelia-busloss-')
        self.procs = []
        self.doubles = []

    def tearDown(self):
        for p in reversed(self.procs):
            p.stop()
        for d in self.doubles:
            d.stop()
        self.bus.stop()

    def start(self, env_name, name, *args):
        state = os.path.join(self.dir, name)
        os.makedirs(state, exist_ok=True)
        argv = [testenv.env_path(env_name), '--bus', self.bus.address, '--state-dir', state,
                '--node-id', random_node_id(), '--log-level', 'debug'] + [str(a) for a in args]
        p = Proc(argv, name=name, logdir=self.dir)
        self.procs.append(p)
        return p

    def wait_prop(self, service, prop, timeout=10.0, what=None, pred=lambda v: v is not None, path=None, iface=None):
        def ok():
            v = get(self.bus, service, prop, path=path, iface=iface)
            return v if pred(v) else None
        try:
            return wait_until(ok, timeout, what=what or '%s.%s' % (service, prop))
        except TimeoutError as e:
            raise TimeoutError('%s\n%s' % (e, '\n'.join(p.tail() for p in self.procs)))

    def lose_and_regain(self, procs, service, prop, while_lost=None, path=None, iface=None):
        """Kills dbus-daemon, checks procs stay alive (and runs while_lost), starts it again and
        waits until service is owned and answers a Get of prop. Returns seconds to regain."""
        self.bus.kill()
        time.sleep(0.5)
        for p in procs:
            self.assertTrue(p.alive(), '%s exited when the bus went:\n%s' % (p.name, p.tail()))
        if while_lost:
            while_lost()
        time.sleep(0.5)
        for p in procs:
            self.assertTrue(p.alive(), '%s exited while the bus was gone:\n%s' % (p.name, p.tail()))
        self.bus.restart()
        t0 = time.monotonic()
        self.wait_prop(service, prop, REGAIN_TIMEOUT, what='%s back on the new bus' % service, path=path, iface=iface)
        self.assertTrue(owned(self.bus, service))
        for p in procs:
            self.assertTrue(p.alive(), '%s exited after the bus came back:\n%s' % (p.name, p.tail()))
        return time.monotonic() - t0

    def test_routerd(self):
        d = Double('--token-delay-ms', '0')
        self.doubles.append(d)
        p = self.start('MYCELIA_ROUTERD', 'routerd', '--upstream', d.url)
        self.wait_prop('org.mycelia.Router1', 'Nodes', pred=lambda v: v and v[0][3] == 'up')
        self.lose_and_regain([p], 'org.mycelia.Router1', 'Nodes')
        # The table survived: the local node is still up with its models.
        nodes = get(self.bus, 'org.mycelia.Router1', 'Nodes')
        self.assertEqual(nodes[0][3], 'up', nodes)
        self.assertTrue(nodes[0][7], nodes)
        # And a second loss works the same.
        self.lose_and_regain([p], 'org.mycelia.Router1', 'Policy')

    def test_gossipd(self):
        key = write_mesh_key(os.path.join(self.dir, 'mesh.key'))
        port = harness.free_port()
        p = self.start('MYCELIA_GOSSIPD', 'gossipd', '--gossip', '127.0.0.1:%d' % port, '--mesh-key', key)
        local = self.wait_prop('org.mycelia.Gossip1', 'LocalNode')
        self.lose_and_regain([p], 'org.mycelia.Gossip1', 'LocalNode')
        again = get(self.bus, 'org.mycelia.Gossip1', 'LocalNode')
        # Same node, same incarnation: it never left or restarted.
        self.assertEqual(again[0], local[0])
        self.assertEqual(again[4], local[4])

    def test_discoveryd(self):
        p = self.start('MYCELIA_DISCOVERYD', 'discoveryd', '--mdns=no', '--seed', '127.0.0.1:9')
        self.wait_prop('org.mycelia.Discovery1', 'Peers', pred=lambda v: v is not None and len(v) == 1)
        self.lose_and_regain([p], 'org.mycelia.Discovery1', 'Peers')
        self.assertEqual(len(get(self.bus, 'org.mycelia.Discovery1', 'Peers')), 1)

    def test_shardd(self):
        port = harness.free_port()
        p = self.start('MYCELIA_SHARDD', 'shardd', '--shard', '127.0.0.1:%d' % port)
        self.wait_prop('org.mycelia.ShardStore1', 'LocalNodeId')
        harness.bus_call(self.bus.address, 'org.mycelia.ShardStore1', 'CreateCollection', 'suss', 'kept', 4, 'cosine', '')

        def listener_serves():
            # Peers keep reaching the transfer listener (refused here: no mesh key, no authenticator).
            r = harness.http_request(('127.0.0.1', port), 'GET', '/shard/digest', timeout=5)
            self.assertIn(r.status, (400, 401, 403, 404), r)
        self.lose_and_regain([p], 'org.mycelia.ShardStore1', 'Collections', while_lost=listener_serves)
        names = [c[0] for c in get(self.bus, 'org.mycelia.ShardStore1', 'Collections')]
        self.assertEqual(names, ['kept'])

    def test_shimd_with_routerd(self):
        d = Double('--token-delay-ms', '0')
        self.doubles.append(d)
        routerd = self.start('MYCELIA_ROUTERD', 'routerd', '--upstream', d.url)
        self.wait_prop('org.mycelia.Router1', 'Nodes', pred=lambda v: v and v[0][3] == 'up')
        shimd = self.start('MYCELIA_SHIMD', 'shimd', '--api', '127.0.0.1:0', '--upstream', d.url)
        api = self.wait_prop('org.mycelia.Shim1', 'ApiAddress')
        self.wait_prop('org.mycelia.Shim1', 'RouterConnected', pred=lambda v: v is True)
        model = d.chat_model()
        body = {'model': model, 'prompt': 'hi', 'stream': False}

        def serves():
            r = harness.http_request(harness.split_addr(api), 'POST', '/api/generate', body)
            self.assertEqual(r.status, 200, r)
            r = harness.http_request(harness.split_addr(api), 'GET', '/api/tags')
            self.assertEqual(r.status, 200, r)
            self.assertIn(model, [m['name'] for m in r.json()['models']])
            # The status (docs/topology-page.md) answers at once, from the last table, without
            # gossipd and shardd (not on this bus at all).
            r = harness.http_request(harness.split_addr(api), 'GET', '/api/mycelia/status')
            self.assertEqual(r.status, 200, r)
            self.assertLess(r.elapsed, 3.0)
            s = r.json()
            self.assertEqual((s['daemons']['gossipd'], s['daemons']['shardd']), (False, False))
            self.assertIn(model, [m for n in s['nodes'] for m in n['models']])
            # So do the metrics (docs/metrics.md): the shim's own families, the others left out.
            r = harness.http_request(harness.split_addr(api), 'GET', '/metrics')
            self.assertEqual(r.status, 200, r)
            self.assertLess(r.elapsed, 3.0)
            text = r.body.decode()
            self.assertIn('mycelia_daemon_up{daemon="gossipd"} 0', text)
            self.assertIn('mycelia_shim_requests_total{', text)
            self.assertIn('mycelia_process_resident_memory_bytes{daemon="shimd"}', text)
        serves()
        self.lose_and_regain([shimd, routerd], 'org.mycelia.Shim1', 'ApiAddress', while_lost=serves)
        # The routing table is read again once routerd is back on the new bus.
        self.wait_prop('org.mycelia.Shim1', 'RouterConnected', REGAIN_TIMEOUT, pred=lambda v: v is True)
        self.assertTrue(owned(self.bus, 'org.mycelia.Router1'))
        serves()
        self.assertTrue(shimd.alive() and routerd.alive())


if __name__ == '__main__':
    testenv.main()
