#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# mycelia-gossipd alone (no launcher): three daemons on loopback, each on its own private bus,
# converge, detect a kill -9, rejoin from the state dir, leave gracefully, keep a wrong key out.
# MYCELIA_GOSSIPD_WRAPPER (e.g. "valgrind --leak-check=full --log-file=/tmp/vg.%p") runs every
# GossipNode of the test under that command (the socket-activated one runs bare).
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import PrivateBus, Proc, busctl, make_tmpdir, wait_until

testenv.require_env('MYCELIA_GOSSIPD', 'MYCELIA_DISCOVERYD', 'MYCELIA_DBUS_XML_DIR')

# The introspection diff of the launcher's bus test, for Gossip1 (its module needs the
# launcher's binaries in the environment, which meson sets for every integration test). An
# import that fails fails this file.
from test_bus import interface_model, model_diff  # noqa: E402

IFACE = 'org.mycelia.Gossip1'
PATH = '/org/mycelia/Gossip1'


def write_key(path):
    """A fresh mesh key file: base64 of 32 random bytes, as mesh_key_generate() writes it."""
    import base64
    with open(path, 'w') as f:
        f.write(base64.b64encode(os.urandom(32)).decode() + '\n')
    return path


def free_gossip_port():
    """A port number free on 127.0.0.1 for both UDP and TCP right now."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(('127.0.0.1', 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(('127.0.0.1', port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError('no port free for both UDP and TCP')


class SignalMonitor:
    """busctl monitor of Gossip1's signals on one bus, lines kept for the test to search."""

    def __init__(self, bus):
        self.lines = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(['busctl', '--address=' + bus, 'monitor', '--json=short',
                                      "--match=type='signal',interface='%s'" % IFACE],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self):
        for raw in iter(self.proc.stdout.readline, b''):
            with self.lock:
                self.lines.append(raw.decode('utf-8', 'replace'))

    def seen(self, member, node_id):
        with self.lock:
            return any('"member":"%s"' % member in l and node_id in l for l in self.lines)

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=5)
        self.thread.join(timeout=5)
        self.proc.stdout.close()


class GossipNode:
    """One mycelia-gossipd on its own private bus, gossiping on 127.0.0.1:PORT."""

    def __init__(self, name, key, port=None):
        self.name = name
        self.key = key
        self.node_id = os.urandom(16).hex()
        self.bus_daemon = PrivateBus()
        self.bus = self.bus_daemon.address
        self.dir = make_tmpdir('mycelia-gossip-')
        self.state_dir = os.path.join(self.dir, 'state')
        self.port = port or free_gossip_port()
        self.addr = '127.0.0.1:%d' % self.port
        self.proc = None
        self.start()

    def start(self):
        argv = [testenv.env_path('MYCELIA_GOSSIPD'), '--bus', self.bus, '--node-id', self.node_id,
                '--name', self.name, '--gossip', self.addr, '--mesh-key', self.key,
                '--state-dir', self.state_dir, '--log-level', 'debug']
        wrapper = os.environ.get('MYCELIA_GOSSIPD_WRAPPER')
        if wrapper:
            argv = wrapper.split() + argv
        self.proc = Proc(argv, name='gossipd-' + self.name, logdir=self.dir)
        wait_until(lambda: self._ready(), 30 if wrapper else 10, what='%s on its bus' % self.name)

    def _ready(self):
        if not self.proc.alive():
            raise RuntimeError('gossipd %s exited:\n%s' % (self.name, self.proc.tail()))
        return self.local()

    def prop(self, name):
        return busctl(self.bus, 'get-property', IFACE, PATH, IFACE, name)['data']

    def members(self):
        """{id: (id, name, addresses, state, incarnation, meta)}"""
        return {t[0]: t for t in self.prop('Members')}

    def local(self):
        return self.prop('LocalNode')

    def counters(self):
        return self.prop('Counters')

    def call(self, method, signature='', *args):
        argv = ['call', IFACE, PATH, IFACE, method]
        if signature:
            argv += [signature] + [str(a) for a in args]
        r = busctl(self.bus, *argv)
        return r['data'] if r else None

    def state_of(self, node_id):
        m = self.members().get(node_id)
        return m[3] if m else None

    def kill(self):
        self.proc.kill_tree()

    def stop(self):
        if self.proc:
            self.proc.stop(timeout=5)
        self.bus_daemon.stop()


def read_file(path):
    with open(path) as f:
        return f.read()


def alive_ids(node):
    return sorted(i for i, m in node.members().items() if m[3] == 'alive')


class Gossip(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.keydir = make_tmpdir('mycelia-key-')
        cls.key = write_key(os.path.join(cls.keydir, 'mesh.key'))
        cls.nodes = []
        cls.nodes = [GossipNode(n, cls.key) for n in ('a', 'b', 'c')]
        cls.a, cls.b, cls.c = cls.nodes
        for n in (cls.b, cls.c):
            accepted = n.call('Join', 'as', 1, cls.a.addr)
            assert accepted == [1], accepted
        cls.ids = sorted(n.node_id for n in cls.nodes)

    @classmethod
    def tearDownClass(cls):
        for n in cls.nodes:
            n.stop()

    def wait_converged(self, nodes, ids, timeout=10):
        for n in nodes:
            wait_until(lambda: alive_ids(n) == ids, timeout,
                       what='%s seeing %d alive members' % (n.name, len(ids)))

    def test_01_converge(self):
        t0 = time.monotonic()
        self.wait_converged(self.nodes, self.ids)
        print('converged in %.2fs' % (time.monotonic() - t0))
        for n in self.nodes:
            local = n.local()
            self.assertEqual(local[0], n.node_id)
            self.assertEqual(local[1], n.name)
            self.assertEqual(local[2], [n.addr])
            self.assertEqual(local[3], 'alive')
            self.assertIn('version', local[5])
            self.assertEqual(local[5].get('proto'), '1')
            # Everyone sees n as n sees itself.
            for o in self.nodes:
                m = o.members()[n.node_id]
                self.assertEqual(m[1], n.name)
                self.assertEqual(m[2], [n.addr])
        # The command the issue names prints the members.
        out = busctl(self.a.bus, 'get-property', IFACE, PATH, IFACE, 'Members', json_out=False)
        for n in self.nodes:
            self.assertIn(n.node_id, out)

    def test_02_introspection(self):
        with open(os.path.join(testenv.env_path('MYCELIA_DBUS_XML_DIR'), IFACE + '.xml')) as f:
            doc = interface_model(f.read(), IFACE)
        live = interface_model(harness.introspect_xml(self.a.bus, IFACE, PATH), IFACE)
        self.assertIsNotNone(live)
        diffs = model_diff(doc, live)
        self.assertEqual(diffs, [], 'dbus/%s.xml and mycelia-gossipd disagree:\n  %s' % (IFACE, '\n  '.join(diffs)))
        # Counters: every name the XML lists is served.
        with open(os.path.join(testenv.env_path('MYCELIA_DBUS_XML_DIR'), IFACE + '.xml')) as f:
            comment = re.search(r'Packet and protocol counters:(.*?)-->', f.read(), re.S).group(1)
        words = set(re.findall(r'[a-z][a-z_]*', re.sub(r'\([^)]*\)', '', comment)))
        served = set(self.a.counters())
        self.assertEqual(served - words, set(), 'counters served but not listed in the XML comment')
        self.assertEqual({w for w in words if '_' in w} - served, set(), 'counters listed but not served')
        self.assertIn('probes', served)

    def test_03_metadata(self):
        self.wait_converged(self.nodes, self.ids)
        self.a.call('SetLocalMetadata', 'ss', 'models', 'llama3.2:latest,qwen')
        for n in (self.b, self.c):
            wait_until(lambda: n.members()[self.a.node_id][5].get('models') == 'llama3.2:latest,qwen', 5,
                       what='metadata at %s' % n.name)
        self.a.call('SetLocalMetadata', 'ss', 'models', '')
        wait_until(lambda: 'models' not in self.b.members()[self.a.node_id][5], 5, what='metadata removed')
        for key, value in (('Bad Key', 'x'), ('k', 'a\nb'), ('x' * 33, 'v')):
            err, out = harness.dbus_send_error_name(self.a.bus, IFACE, 'SetLocalMetadata',
                                                    'string:' + key, 'string:' + value)
            self.assertEqual(err, 'org.freedesktop.DBus.Error.InvalidArgs', out)
        err, out = harness.dbus_send_error_name(self.a.bus, IFACE, 'SetLocalMetadata',
                                                'string:big', 'string:' + 'v' * 5000)
        self.assertEqual(err, 'org.freedesktop.DBus.Error.InvalidArgs', out)

    def test_04_join_arguments(self):
        err, out = harness.dbus_send_error_name(self.a.bus, IFACE, 'Join', 'array:string:nope,host.example:1')
        self.assertEqual(err, 'org.freedesktop.DBus.Error.InvalidArgs', out)
        err, out = harness.dbus_send_error_name(self.a.bus, IFACE, 'Join', 'array:string:')
        self.assertEqual(err, 'org.freedesktop.DBus.Error.InvalidArgs', out)
        # One of two parses; an address nobody listens on costs a failed push-pull, nothing else.
        self.assertEqual(self.a.call('Join', 'as', 2, 'garbage', '127.0.0.1:9'), [1])
        self.assertTrue(self.a.proc.alive())

    def test_05_wrong_key(self):
        self.wait_converged(self.nodes, self.ids)
        before = {n.name: n.counters()['dropped_key'] for n in self.nodes}
        other_key = write_key(os.path.join(self.keydir, 'other.key'))
        d = GossipNode('d', other_key)
        try:
            self.assertEqual(d.call('Join', 'as', 3, *[n.addr for n in self.nodes]), [3])
            # The others also try to reach d (they do not know it, so they cannot).
            wait_until(lambda: all(n.counters()['dropped_key'] > before[n.name] for n in self.nodes), 10,
                       what='dropped_key growing on every node')
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                for n in self.nodes:
                    self.assertNotIn(d.node_id, n.members(), 'wrong-key node became a member of %s' % n.name)
                self.assertEqual(list(d.members()), [d.node_id])
                time.sleep(0.3)
        finally:
            d.stop()

    def test_06_kill_and_rejoin(self):
        self.wait_converged(self.nodes, self.ids)
        monitors = [SignalMonitor(self.a.bus), SignalMonitor(self.b.bus)]
        try:
            time.sleep(0.3)   # monitors attached
            # c has written its peers to its state dir (at most every 2 s).
            members_file = os.path.join(self.c.state_dir, 'gossip', 'members')
            wait_until(lambda: all(n.node_id in read_file(members_file) for n in (self.a, self.b)), 5,
                       what='c saving its members')
            inc_before = self.a.members()[self.c.node_id][4]
            t0 = time.monotonic()
            self.c.kill()
            for n in (self.a, self.b):
                wait_until(lambda: n.state_of(self.c.node_id) == 'dead', 10, interval=0.05,
                           what='%s marking c dead' % n.name)
            print('kill -9 detected in %.2fs' % (time.monotonic() - t0))
            for mon in monitors:
                wait_until(lambda: mon.seen('MemberFailed', self.c.node_id), 3, what='MemberFailed signal')

            # Same state dir and port: back with a higher incarnation, quickly.
            t0 = time.monotonic()
            self.c.start()
            self.wait_converged(self.nodes, self.ids, timeout=10)
            print('rejoined in %.2fs' % (time.monotonic() - t0))
            for n in (self.a, self.b):
                self.assertGreater(n.members()[self.c.node_id][4], inc_before)
            self.assertGreater(self.c.local()[4], inc_before)
            for mon in monitors:
                wait_until(lambda: mon.seen('MemberJoined', self.c.node_id), 3, what='MemberJoined signal')
        finally:
            for mon in monitors:
                mon.stop()

    def test_07_sigterm_leaves(self):
        self.wait_converged(self.nodes, self.ids)
        mon = SignalMonitor(self.a.bus)
        try:
            time.sleep(0.3)
            t0 = time.monotonic()
            self.b.proc.signal(signal.SIGTERM)
            for n in (self.a, self.c):
                wait_until(lambda: n.state_of(self.b.node_id) == 'left', 2, interval=0.05,
                           what='%s marking b left within 2 s' % n.name)
            print('SIGTERM leave seen in %.2fs' % (time.monotonic() - t0))
            self.assertEqual(self.b.proc.wait(5), 0)
            wait_until(lambda: mon.seen('MemberLeft', self.b.node_id), 3, what='MemberLeft signal')
            # Left is not failed: no one suspected it first.
            self.assertFalse(mon.seen('MemberFailed', self.b.node_id))
            # Back again from its state dir.
            self.b.start()
            self.wait_converged(self.nodes, self.ids)
        finally:
            mon.stop()

    def test_08_leave_method(self):
        self.wait_converged(self.nodes, self.ids)
        self.c.call('Leave')
        self.assertEqual(self.c.proc.wait(5), 0)
        for n in (self.a, self.b):
            wait_until(lambda: n.state_of(self.c.node_id) == 'left', 2, interval=0.05,
                       what='%s marking c left' % n.name)
        text = read_file(os.path.join(self.c.state_dir, 'gossip', 'members'))
        self.assertRegex(text, r'(?m)^incarnation \d+$')
        self.assertIn(self.a.node_id, text)

    def test_09_socket_activation(self):
        """The "gossip" fds (one UDP, one TCP) are used instead of binding --gossip."""
        import fcntl
        # One port number for UDP and TCP: the kernel picks a free UDP port, whose TCP twin
        # another test running beside this one may hold; then try another (at most 50 times).
        for _ in range(50):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            u.bind(('127.0.0.1', 0))
            port = u.getsockname()[1]
            try:
                t.bind(('127.0.0.1', port))
                break
            except OSError:
                u.close()
                t.close()
        else:
            self.fail('no port number free for both UDP and TCP in 50 tries')
        t.listen(16)
        # Out of the way of 3 and 4, where the wrapper puts them for LISTEN_FDS.
        fd_u, fd_t = fcntl.fcntl(u.fileno(), fcntl.F_DUPFD, 20), fcntl.fcntl(t.fileno(), fcntl.F_DUPFD, 20)
        u.close()
        t.close()
        bus = PrivateBus()
        d = make_tmpdir('mycelia-gossip-')
        node_id = os.urandom(16).hex()
        # --gossip names an address this host does not have: binding it would fail.
        wrapper = ('import os, sys\n'
                   'os.dup2(%d, 3); os.dup2(%d, 4); os.close(%d); os.close(%d)\n'
                   'os.environ["LISTEN_PID"] = str(os.getpid())\n'
                   'os.execv(sys.argv[1], sys.argv[1:])\n' % (fd_u, fd_t, fd_u, fd_t))
        argv = [sys.executable, '-c', wrapper, testenv.env_path('MYCELIA_GOSSIPD'), '--bus', bus.address, '--node-id', node_id,
                '--name', 'sa', '--gossip', '192.0.2.1:1', '--mesh-key', self.key, '--state-dir', d]
        p = Proc(argv, name='gossipd-sa', logdir=d, pass_fds=(fd_u, fd_t),
                 env={'LISTEN_FDS': '2', 'LISTEN_FDNAMES': 'gossip:gossip'})
        os.close(fd_u)
        os.close(fd_t)
        try:
            def local_node():
                if not p.alive():
                    raise AssertionError('socket-activated gossipd exited:\n' + p.tail())
                return busctl(bus.address, 'get-property', IFACE, PATH, IFACE, 'LocalNode')['data']
            local = wait_until(local_node, 10, what='socket-activated gossipd on its bus')
            self.assertEqual(local[2], ['127.0.0.1:%d' % port])
            busctl(bus.address, 'call', IFACE, PATH, IFACE, 'Join', 'as', 1, self.a.addr)
            wait_until(lambda: self.a.state_of(node_id) == 'alive', 5, what='socket-activated node joined')
        finally:
            p.signal(signal.SIGTERM)
            rc = p.wait(5)
            bus.stop()
        self.assertEqual(rc, 0, p.tail())
        wait_until(lambda: self.a.state_of(node_id) == 'left', 2, what='socket-activated node left')

    def test_10_discovery_seed(self):
        """gossipd joins what discoveryd finds: here a static seed, discoveryd started after it."""
        exe = testenv.env_path('MYCELIA_DISCOVERYD')
        e = GossipNode('e', self.key)
        try:
            time.sleep(0.5)
            self.assertEqual(list(e.members()), [e.node_id])
            disc = Proc([exe, '--bus', e.bus, '--node-id', e.node_id, '--name', 'e', '--mdns', 'no',
                         '--seed', self.a.addr, '--gossip', e.addr, '--state-dir', e.state_dir],
                        name='discoveryd-e', logdir=e.dir)
            try:
                wait_until(lambda: self.a.state_of(e.node_id) == 'alive', 10,
                           what='e joined through its discoveryd seed\n' + disc.tail())
                wait_until(lambda: e.state_of(self.a.node_id) == 'alive', 5, what='e seeing a')
            finally:
                disc.stop()
        finally:
            e.stop()

    def test_11_restart_keeps_metadata_and_waits_for_the_mesh(self):
        """A restarted gossipd announces the node with the metadata it had, and serves Gossip1
        only once it knows the mesh again: routerd and shardd read Members when the name
        appears and drop whom it does not list."""
        b = self.b
        self.wait_converged([self.a, b], sorted([self.a.node_id, b.node_id]))
        b.call('SetLocalMetadata', 'ss', 'mesh', 'http://127.0.0.1:1/ with spaces')
        members_file = os.path.join(b.state_dir, 'gossip', 'members')
        wait_until(lambda: 'meta mesh http://127.0.0.1:1/ with spaces\n' in read_file(members_file), 5,
                   what='b saving its metadata')
        inc_before = self.a.members()[b.node_id][4]
        b.kill()
        b.start()
        # The name is served: the members it lists are the mesh, not b alone.
        self.assertIn(self.a.node_id, alive_ids(b), 'Gossip1 served before the rejoin')
        self.assertEqual(b.local()[5].get('mesh'), 'http://127.0.0.1:1/ with spaces')
        # The peers never see the new incarnation bare.
        wait_until(lambda: self.a.members()[b.node_id][4] > inc_before, 10, what='a seeing b again')
        self.assertEqual(self.a.members()[b.node_id][5].get('mesh'), 'http://127.0.0.1:1/ with spaces')
        # Removing a key removes it from the file too.
        b.call('SetLocalMetadata', 'ss', 'mesh', '')
        wait_until(lambda: 'meta mesh' not in read_file(members_file), 5, what='b forgetting its metadata')


if __name__ == '__main__':
    testenv.main()
