#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Three hosts with real mDNS in network namespaces (tests/../TESTBED recipe): nodes find each
# other through avahi-daemon with no seeds, gossip makes them members, requests cross nodes.
"""The netns test of issue 3.

A hub namespace holds a bridge; namespaces n1..n3 (random suffix, so parallel runs never
collide) each get eth0 = 10.77.0.N/24 on it, a tmpfs on /run, a system dbus-daemon on
/run/dbus/system_bus_socket and an avahi-daemon (allow-interfaces=eth0, use-ipv6=no). One
long-lived process per namespace (its dbus-daemon) holds the mount namespace; everything else
enters with nsenter -t PID -n -m.

test_discoveryd_alone: mycelia-discoveryd run directly in each namespace (own name on a private
bus, avahi on the namespace's system bus): each lists the other two as mdns peers with their
ids, TXT gossip port and SRV mesh port, and Published is true.

test_full_mesh: mycelia-node (launcher with all five daemons) in each namespace in front
of its own Ollama test double, no seeds: every node's Gossip1.Members shows 3 alive within
20 s, and node 1 answers a request for a model only node 3's double serves.

Needs root, ip netns, avahi-daemon, dbus-daemon, nsenter; otherwise exits 77 with the reason
(1 under CI=true: tests/testenv.py). Environment (set by meson, each must name a built file):
MYCELIA_DISCOVERYD, MYCELIA_NODE, MYCELIA_GOSSIPD, MYCELIA_ROUTERD, MYCELIA_SHARDD, MYCELIA_SHIMD,
OLLAMA_DOUBLE.
"""

import atexit
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import testenv  # noqa: E402  (tests/testenv.py)

N_NODES = 3
SUBNET = '10.77.0.'
CONVERGE_TIMEOUT = 20.0
MESH_PORT = 11438
GOSSIP_PORT = 11436
SHARD_PORT = 11437
API_PORT = 11434
ONLY_N3_MODEL = 'only-n3:latest'
COMMON_MODEL = 'llama3.2:latest'


def check_prerequisites():
    testenv.require_env('MYCELIA_DISCOVERYD', 'MYCELIA_NODE', 'MYCELIA_GOSSIPD', 'MYCELIA_ROUTERD',
                        'MYCELIA_SHARDD', 'MYCELIA_SHIMD', 'OLLAMA_DOUBLE')
    if os.geteuid() != 0:
        testenv.skip_all('needs root (network namespaces, mounts)')
    for tool in ('ip', 'nsenter', 'dbus-daemon', 'busctl', 'openssl'):
        if not shutil.which(tool):
            testenv.skip_all('%s not found' % tool)
    if not os.path.exists('/usr/sbin/avahi-daemon') and not shutil.which('avahi-daemon'):
        testenv.skip_all('avahi-daemon not installed (package avahi-daemon)')
    probe = 'mycprobe%06x' % random.getrandbits(24)
    r = subprocess.run(['ip', 'netns', 'add', probe], capture_output=True, text=True)
    if r.returncode != 0:
        testenv.skip_all('cannot create network namespaces: ' + r.stderr.strip())
    subprocess.run(['ip', 'netns', 'del', probe], capture_output=True)


def avahi_daemon_path():
    return shutil.which('avahi-daemon') or '/usr/sbin/avahi-daemon'


def run(argv, check=True, timeout=30):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError('%s failed (%d): %s' % (' '.join(map(str, argv)), r.returncode,
                                                   r.stderr.strip()))
    return r


class Proc:
    """A child in its own process group, stdout lines collected by a thread, stderr to a file."""

    def __init__(self, argv, log_dir, name, env=None):
        self.name = name
        self.log_path = os.path.join(log_dir, name + '.log')
        self.log = open(self.log_path, 'ab')
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.argv = [str(a) for a in argv]
        self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=self.log, env=full_env, start_new_session=True)
        self.lines = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    @property
    def pid(self):
        return self.popen.pid

    def _drain(self):
        for raw in self.popen.stdout:
            line = raw.decode(errors='replace').rstrip('\n')
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(self, rx, timeout):
        deadline = time.monotonic() + timeout
        pat = re.compile(rx)
        seen = 0
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    m = pat.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self.thread.is_alive()):
                    raise AssertionError('%s: no line matching %r within %.0fs (exit %s); log %s:\n%s'
                                         % (self.name, rx, timeout, self.popen.poll(), self.log_path,
                                            tail(self.log_path)))
                self.cond.wait(min(left, 0.2))

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)
        self.log.close()
        return self.popen.returncode


def tail(path, n=30):
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-n:])
    except OSError:
        return ''


AVAHI_CONF = """[server]
host-name={host}
use-ipv4=yes
use-ipv6=no
allow-interfaces=eth0
enable-dbus=yes
ratelimit-interval-usec=1000000
ratelimit-burst=1000

[wide-area]
enable-wide-area=no

[publish]
publish-hinfo=no
publish-workstation=no

[reflector]
enable-reflector=no
"""


class Testbed:
    """The namespaces, their dbus-daemons and avahi-daemons. close() undoes all of it and is
    safe to call more than once, from atexit and from signal handlers too."""

    def __init__(self):
        self.suffix = '%06x' % random.getrandbits(24)
        self.dir = tempfile.mkdtemp(prefix='mycelia-netns-')
        self.hub = 'mych' + self.suffix
        self.nodes = ['myc%d%s' % (i, self.suffix) for i in range(1, N_NODES + 1)]
        self.netns = []
        self.procs = []
        self.holders = {}       # netns -> Proc of its system dbus-daemon (holds the mount ns)
        self.avahi = {}         # netns -> Proc of its avahi-daemon
        self.closed = False
        self._lock = threading.Lock()

    def add_proc(self, p):
        with self._lock:
            self.procs.append(p)
        return p

    def setup(self):
        run(['ip', 'netns', 'add', self.hub])
        self.netns.append(self.hub)
        run(['ip', '-n', self.hub, 'link', 'add', 'br0', 'type', 'bridge'])
        run(['ip', '-n', self.hub, 'link', 'set', 'br0', 'up'])
        for i, ns in enumerate(self.nodes, 1):
            run(['ip', 'netns', 'add', ns])
            self.netns.append(ns)
            run(['ip', 'link', 'add', 'veth%d' % i, 'netns', ns, 'type', 'veth', 'peer', 'name',
                 'hub%d' % i, 'netns', self.hub])
            run(['ip', '-n', self.hub, 'link', 'set', 'hub%d' % i, 'master', 'br0', 'up'])
            run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
            run(['ip', '-n', ns, 'link', 'set', 'veth%d' % i, 'name', 'eth0'])
            run(['ip', '-n', ns, 'addr', 'add', '%s%d/24' % (SUBNET, i), 'dev', 'eth0'])
            run(['ip', '-n', ns, 'link', 'set', 'eth0', 'up'])
        for i, ns in enumerate(self.nodes, 1):
            self._start_system_bus(ns)
        for i, ns in enumerate(self.nodes, 1):
            self._start_avahi(ns, i)

    def _start_system_bus(self, ns):
        # This process's mount namespace (made by ip netns exec) gets the tmpfs on /run; it
        # lives as long as the dbus-daemon, which every later nsenter joins.
        script = ('mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/dbus && '
                  'exec dbus-daemon --system --nofork --nopidfile --print-address=1')
        p = self.add_proc(Proc(['ip', 'netns', 'exec', ns, 'sh', '-c', script], self.dir,
                               'dbus-' + ns))
        p.wait_line(r'^unix:', 10)
        self.holders[ns] = p

    def restart_avahi(self, ns):
        i = self.nodes.index(ns) + 1
        self.avahi[ns].stop()
        self._start_avahi(ns, i)

    def _start_avahi(self, ns, i):
        conf = os.path.join(self.dir, 'avahi-%s.conf' % ns)
        with open(conf, 'w') as f:
            f.write(AVAHI_CONF.format(host='mycnode%d-%s' % (i, self.suffix)))
        p = self.add_proc(Proc(self.nsenter(ns, avahi_daemon_path(), '-f', conf, '--no-drop-root',
                                            '--no-chroot', '--no-rlimits'),
                               self.dir, 'avahi-%s-%d' % (ns, len(self.procs))))
        self.avahi[ns] = p
        deadline = time.monotonic() + 10
        while 'Server startup complete' not in tail(p.log_path, 200):
            if p.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError('avahi-daemon in %s did not start:\n%s' % (ns, tail(p.log_path)))
            time.sleep(0.05)

    def nsenter(self, ns, *argv):
        return ['nsenter', '-t', str(self.holders[ns].pid), '-n', '-m'] + [str(a) for a in argv]

    def close(self):
        with self._lock:
            if self.closed:
                return
            self.closed = True
            procs = list(reversed(self.procs))
        # Our children first (avahi and dbus last: they were started first), by their pids.
        for p in procs:
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001 - cleanup goes on whatever happens
                print('cleanup: %s: %s' % (p.name, e), file=sys.stderr)
        for ns in reversed(self.netns):
            # Anything still in a namespace (a daemon that escaped its group) goes with it.
            r = subprocess.run(['ip', 'netns', 'pids', ns], capture_output=True, text=True)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(['ip', 'netns', 'del', ns], capture_output=True)
        if os.environ.get('MYCELIA_KEEP_LOGS'):
            print('logs kept in ' + self.dir, file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


TESTBED = None


def busctl_json(address, *args, ns_argv=None, timeout=10):
    argv = ['busctl', '--address=' + address, '--json=short'] + list(args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def get_property(address, service, path, interface, prop):
    j = busctl_json(address, 'get-property', service, path, interface, prop)
    return None if j is None else j.get('data')


def wait_for(fn, timeout, interval=0.2):
    """Polls fn until it returns something true; returns (value, seconds) or (last, None)."""
    start = time.monotonic()
    last = None
    while True:
        last = fn()
        if last:
            return last, time.monotonic() - start
        if time.monotonic() - start > timeout:
            return last, None
        time.sleep(interval)


def private_bus(tb, name):
    """A private bus on a socket file: reachable from every namespace and from here."""
    d = os.path.join(tb.dir, name)
    os.makedirs(d, exist_ok=True)
    sock = os.path.join(d, 'bus.sock')
    conf = os.path.join(d, 'bus.conf')
    with open(conf, 'w') as f:
        f.write('<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"\n'
                ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
                '<busconfig><type>custom</type><listen>unix:path=%s</listen><auth>EXTERNAL</auth>'
                '<policy context="default"><allow send_destination="*" eavesdrop="true"/>'
                '<allow eavesdrop="true"/><allow own="*"/></policy></busconfig>\n' % sock)
    p = tb.add_proc(Proc(['dbus-daemon', '--config-file=' + conf, '--nofork', '--nopidfile',
                          '--print-address=1'], tb.dir, 'bus-' + name))
    p.wait_line(r'^unix:', 10)
    return 'unix:path=' + sock


class NetnsMdnsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tb = TESTBED
        cls.ids = ['%032x' % random.getrandbits(128) for _ in cls.tb.nodes]

    def test_1_discoveryd_alone(self):
        tb = self.tb
        buses, procs = [], []
        for i, ns in enumerate(tb.nodes, 1):
            bus = private_bus(tb, 'disc%d' % i)
            buses.append(bus)
            argv = tb.nsenter(ns, os.environ['MYCELIA_DISCOVERYD'], '--bus', bus,
                              '--node-id', self.ids[i - 1], '--name', 'disc%d' % i,
                              '--mesh', '0.0.0.0:%d' % (MESH_PORT + i),
                              '--gossip', '0.0.0.0:%d' % (GOSSIP_PORT + i), '--log-level', 'debug')
            procs.append(tb.add_proc(Proc(argv, tb.dir, 'discoveryd-%d' % i)))

        def all_found():
            views = []
            for i in range(N_NODES):
                peers = get_property(buses[i], 'org.mycelia.Discovery1', '/org/mycelia/Discovery1',
                                     'org.mycelia.Discovery1', 'Peers') or []
                mdns = {p[0]: p for p in peers if p[2] == 'mdns'}
                if set(mdns) != set(self.ids) - {self.ids[i]}:
                    return None
                views.append(mdns)
            return views

        views, took = wait_for(all_found, CONVERGE_TIMEOUT)
        if took is None:
            self.fail('discoveryd did not find both others on every node within %.0fs; logs:\n%s'
                      % (CONVERGE_TIMEOUT, '\n'.join(tail(p.log_path, 15) for p in procs)))
        print('discoveryd alone: all %d nodes see the others via mDNS after %.2fs'
              % (N_NODES, took), flush=True)
        for i, view in enumerate(views):
            for j, nid in enumerate(self.ids):
                if j == i:
                    continue
                pid_, name, source, mesh, gossip = view[nid]
                self.assertEqual(name, 'disc%d' % (j + 1))
                self.assertEqual(mesh, '%s%d:%d' % (SUBNET, j + 1, MESH_PORT + j + 1))
                self.assertEqual(gossip, ['%s%d:%d' % (SUBNET, j + 1, GOSSIP_PORT + j + 1)])
        for bus in buses:
            published = get_property(bus, 'org.mycelia.Discovery1', '/org/mycelia/Discovery1',
                                     'org.mycelia.Discovery1', 'Published')
            self.assertIs(published, True)

        def peers_of(i):
            return get_property(buses[i], 'org.mycelia.Discovery1', '/org/mycelia/Discovery1',
                                'org.mycelia.Discovery1', 'Peers') or []

        # avahi-daemon of node 1 restarts: discoveryd reconnects, republishes, browses again.
        tb.restart_avahi(tb.nodes[0])

        def n1_back():
            published = get_property(buses[0], 'org.mycelia.Discovery1', '/org/mycelia/Discovery1',
                                     'org.mycelia.Discovery1', 'Published')
            return published is True and len([p for p in peers_of(0) if p[2] == 'mdns']) == 2

        _, took = wait_for(n1_back, 15)
        self.assertIsNotNone(took, 'node 1 did not recover from an avahi-daemon restart:\n'
                             + tail(procs[0].log_path, 20))
        print('avahi-daemon restart on node 1: republished and both peers back after %.2fs' % took,
              flush=True)

        # A name collision: a fourth discoveryd (node 2's namespace) wants the name 'disc1'.
        bus4 = private_bus(tb, 'disc4')
        id4 = '%032x' % random.getrandbits(128)
        p4 = tb.add_proc(Proc(tb.nsenter(tb.nodes[1], os.environ['MYCELIA_DISCOVERYD'], '--bus', bus4,
                                         '--node-id', id4, '--name', 'disc1', '--mesh', '0.0.0.0:2001',
                                         '--gossip', '0.0.0.0:2002'), tb.dir, 'discoveryd-4'))

        seen = []

        def renamed():
            peers = peers_of(2)
            seen.append(sorted((p[1], p[0][:6]) for p in peers))
            names = sorted(p[1] for p in peers if p[0] in (id4, self.ids[0]))
            # Which of the two keeps the name is avahi's call (probe tie-break or a late
            # announcement): both must end up listed under distinct names.
            if len(names) == 2 and names[0] == 'disc1' and names[1].startswith('disc1 #'):
                return names[1]
            return None

        name4, took = wait_for(renamed, 15)
        self.assertIsNotNone(took, 'the colliding service never showed up renamed: %s\n%s'
                             % (seen[-3:], tail(p4.log_path, 20)))
        print('collision: two nodes named "disc1" are listed as "disc1" and %r' % name4, flush=True)
        self.assertEqual(p4.stop(), 0)
        # Node 1 may have been the one renamed; the checks below go by id.

        # A clean stop says goodbye: the others see it vanish.
        self.assertEqual(procs[2].stop(), 0)

        def gone():
            for i in range(2):
                peers = get_property(buses[i], 'org.mycelia.Discovery1', '/org/mycelia/Discovery1',
                                     'org.mycelia.Discovery1', 'Peers') or []
                if any(p[0] == self.ids[2] for p in peers):
                    return False
            return True

        _, took = wait_for(gone, 10)
        self.assertIsNotNone(took, 'a stopped discoveryd still listed by the others after 10s')
        print('goodbye of node 3 seen by the others after %.2fs' % took, flush=True)
        for p in procs[:2]:
            self.assertEqual(p.stop(), 0)

    def test_2_full_mesh(self):
        tb = self.tb
        key = os.path.join(tb.dir, 'mesh.key')
        import base64
        with open(key, 'w') as f:
            f.write(base64.b64encode(os.urandom(32)).decode() + '\n')
        os.chmod(key, 0o640)

        libexec = os.path.join(tb.dir, 'libexec')
        os.makedirs(libexec, exist_ok=True)
        for var, exe in (('MYCELIA_GOSSIPD', 'mycelia-gossipd'),
                         ('MYCELIA_DISCOVERYD', 'mycelia-discoveryd'),
                         ('MYCELIA_ROUTERD', 'mycelia-routerd'), ('MYCELIA_SHARDD', 'mycelia-shardd'),
                         ('MYCELIA_SHIMD', 'mycelia-shimd')):
            os.symlink(os.path.abspath(os.environ[var]), os.path.join(libexec, exe))

        nodes = []
        for i, ns in enumerate(tb.nodes, 1):
            models = COMMON_MODEL + (',' + ONLY_N3_MODEL if i == 3 else '')
            double = tb.add_proc(Proc(tb.nsenter(ns, os.environ['OLLAMA_DOUBLE'], '--listen',
                                                 '127.0.0.1:0', '--models', models),
                                      tb.dir, 'double-%d' % i))
            upstream = double.wait_line(r'listening on (http://\S+)', 10).group(1)
            state = os.path.join(tb.dir, 'state%d' % i)
            os.makedirs(state)
            # Node 2's API on its LAN address, [shim] api_auth left at auto: it must ask for a
            # token (check_api_on_the_lan); the others stay on loopback, as by default.
            api = ['--api', '0.0.0.0:%d' % API_PORT, '--tokens', self.tokens_file(tb)] if i == 2 else \
                ['--api', '127.0.0.1:0']
            node = tb.add_proc(Proc(tb.nsenter(
                ns, os.environ['MYCELIA_NODE'], '--state-dir', state, *api,
                '--mesh', '0.0.0.0:%d' % MESH_PORT, '--gossip', '0.0.0.0:%d' % GOSSIP_PORT,
                '--shard', '0.0.0.0:%d' % SHARD_PORT,
                '--upstream', upstream, '--mesh-key', key, '--node-id', self.ids[i - 1],
                '--name', 'n%d' % i, '--libexec-dir', libexec), tb.dir, 'node-%d' % i))
            m = node.wait_line(r'mycelia-node: ready api=(\S+) bus=(\S+)', 30)
            self.assertIn(' shard=0.0.0.0:%d' % SHARD_PORT, m.string, 'shardd on its own port')
            nodes.append({'ns': ns, 'proc': node, 'api': m.group(1), 'bus': m.group(2)})

        def members_alive():
            counts = []
            for n in nodes:
                members = get_property(n['bus'], 'org.mycelia.Gossip1', '/org/mycelia/Gossip1',
                                       'org.mycelia.Gossip1', 'Members') or []
                alive = {m[0] for m in members if m[3] == 'alive'}
                if alive != set(self.ids):
                    return None
                counts.append(len(alive))
            return counts

        counts, took = wait_for(members_alive, CONVERGE_TIMEOUT)
        if took is None:
            detail = []
            for n in nodes:
                members = get_property(n['bus'], 'org.mycelia.Gossip1', '/org/mycelia/Gossip1',
                                       'org.mycelia.Gossip1', 'Members')
                peers = get_property(n['bus'], 'org.mycelia.Discovery1', '/org/mycelia/Discovery1',
                                     'org.mycelia.Discovery1', 'Peers')
                detail.append('%s: members=%s peers=%s\n%s' % (n['ns'], members, peers,
                                                              tail(n['proc'].log_path, 20)))
            self.fail('3 alive members not reached on every node within %.0fs:\n%s'
                      % (CONVERGE_TIMEOUT, '\n'.join(detail)))
        print('full mesh: every node has 3 alive members after %.2fs (no seeds, mDNS only)' % took,
              flush=True)

        # Cross-node forwarding: node 1 is asked for a model only node 3's double serves. Once
        # routerd on node 1 lists it (from gossip metadata "models"), the shim must forward.
        def n1_routes_n3_model():
            table = get_property(nodes[0]['bus'], 'org.mycelia.Router1', '/org/mycelia/Router1',
                                 'org.mycelia.Router1', 'Nodes') or []
            return [n for n in table if n[0] == self.ids[2] and n[3] == 'up'
                    and ONLY_N3_MODEL in n[7]]

        routed, took = wait_for(n1_routes_n3_model, CONVERGE_TIMEOUT)
        self.assertTrue(routed, 'routerd on node 1 never listed node 3 up with %s: %s' % (
            ONLY_N3_MODEL, get_property(nodes[0]['bus'], 'org.mycelia.Router1',
                                        '/org/mycelia/Router1', 'org.mycelia.Router1', 'Nodes')))
        body = json.dumps({'model': ONLY_N3_MODEL, 'prompt': 'hello', 'stream': False})
        script = ('import sys, urllib.request\n'
                  'req = urllib.request.Request(sys.argv[1] + "/api/generate", data=sys.argv[2].encode(),'
                  ' headers={"Content-Type": "application/json"})\n'
                  'try:\n'
                  '    r = urllib.request.urlopen(req, timeout=15)\n'
                  '    print(r.status); print(r.read().decode())\n'
                  'except urllib.error.HTTPError as e:\n'
                  '    print(e.code); print(e.read().decode())\n')
        r = run(tb.nsenter(nodes[0]['ns'], sys.executable, '-c', script, nodes[0]['api'], body),
                check=False, timeout=30)
        lines = r.stdout.splitlines()
        self.assertTrue(lines and lines[0] == '200', 'node 1 answered %r (stderr %r)'
                        % (r.stdout, r.stderr))
        answer = json.loads(lines[1])
        self.assertEqual(answer.get('model'), ONLY_N3_MODEL)
        self.assertTrue(answer.get('done'))
        print('node 1 answered a request for %s (served by node 3)' % ONLY_N3_MODEL, flush=True)

        self.check_tls_capture(tb, nodes, key)
        self.check_api_on_the_lan(tb, nodes)

        for n in nodes:
            self.assertEqual(n['proc'].stop(timeout=15), 0, 'mycelia-node in %s' % n['ns'])

    TOKEN_SECRET = 'myc_netns-test-secret-0123456789'

    def tokens_file(self, tb):
        """A tokens file with one token, "tester", in the format of docs/api-auth.md."""
        import hashlib
        path = os.path.join(tb.dir, 'tokens')
        if not os.path.exists(path):
            with open(path, 'w') as f:
                f.write('tester %s\n' % hashlib.sha256(self.TOKEN_SECRET.encode()).hexdigest())
            os.chmod(path, 0o640)
        return path

    def check_api_on_the_lan(self, tb, nodes):
        """Issue 12: an API bound to a LAN address refuses strangers. Node 2's API listens on
        0.0.0.0 with api_auth=auto; from node 1's namespace, over the bridge, a request without a
        token gets 401 in Ollama's shape, one with a wrong token 401, one with the token 200,
        and the liveness check stays open."""
        url = 'http://%s2:%d' % (SUBNET, API_PORT)
        script = ('import json, sys, urllib.request\n'
                  'def get(path, token=None):\n'
                  '    req = urllib.request.Request(sys.argv[1] + path)\n'
                  '    if token:\n'
                  '        req.add_header("Authorization", "Bearer " + token)\n'
                  '    try:\n'
                  '        r = urllib.request.urlopen(req, timeout=10)\n'
                  '        return [r.status, r.read().decode()]\n'
                  '    except urllib.error.HTTPError as e:\n'
                  '        return [e.code, e.read().decode()]\n'
                  'print(json.dumps([get("/api/tags"), get("/api/tags", "myc_wrong"), get("/api/tags", sys.argv[2]),'
                  ' get("/")]))\n')
        r = run(tb.nsenter(nodes[0]['ns'], sys.executable, '-c', script, url, self.TOKEN_SECRET), check=False,
                timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        (s1, b1), (s2, _), (s3, b3), (s4, _) = json.loads(r.stdout)
        self.assertEqual((s1, json.loads(b1)), (401, {'error': 'unauthorized'}), 'no token')
        self.assertEqual(s2, 401, 'a wrong token')
        self.assertEqual(s3, 200, 'the token: %s' % b3[:200])
        self.assertIn('models', json.loads(b3))
        self.assertEqual(s4, 200, 'GET / (liveness) stays open')
        print('node 2\'s API on the LAN: 401 without a token or with a wrong one, 200 with one', flush=True)

    def check_tls_capture(self, tb, nodes, key):
        """Issue 12: a capture of node 1's link, taken while a chat is forwarded to node 3 and a
        collection's documents travel to their holders, holds none of the prompt's, the answer's
        or the documents' text, only TLS records; a client with another key is refused at the
        handshake and counted (docs/mesh-tls.md)."""
        if not shutil.which('tcpdump'):
            testenv.skip_all('tcpdump is not installed (tools/deps installs it)')
        secret = 'the-walrus-sings-%08x' % random.getrandbits(32)
        pcap = os.path.join(tb.dir, 'n1.pcap')
        dump = subprocess.Popen(tb.nsenter(nodes[0]['ns'], 'tcpdump', '-i', 'eth0', '-U', '-s', '0', '-w', pcap,
                                           'tcp port %d or tcp port %d' % (MESH_PORT, SHARD_PORT)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            ready = dump.stderr.readline().decode()
            self.assertIn('listening on', ready, 'tcpdump did not start: %r' % ready)
            script = ('import json, sys, urllib.request\n'
                      'def call(path, body):\n'
                      '    req = urllib.request.Request(sys.argv[1] + path, data=json.dumps(body).encode(),'
                      ' headers={"Content-Type": "application/json"})\n'
                      '    return json.loads(urllib.request.urlopen(req, timeout=30).read())\n'
                      'chat = call("/api/chat", {"model": sys.argv[2], "stream": False,'
                      ' "messages": [{"role": "user", "content": sys.argv[3]}]})\n'
                      'call("/api/mycelia/collections", {"name": "secrets", "dimension": 3})\n'
                      'docs = [{"id": "d%d" % i, "text": sys.argv[3] + " document %d" % i,'
                      ' "embedding": [1, i, 0]} for i in range(12)]\n'
                      'call("/api/mycelia/collections/secrets/documents", {"documents": docs})\n'
                      'print(json.dumps(chat))\n')
            r = run(tb.nsenter(nodes[0]['ns'], sys.executable, '-c', script, nodes[0]['api'], ONLY_N3_MODEL,
                               secret), check=False, timeout=60)
            self.assertEqual(r.returncode, 0, 'requests through node 1 failed: %s %s' % (r.stdout, r.stderr))
            answer = json.loads(r.stdout.splitlines()[-1])['message']['content']
            self.assertGreater(len(answer), 20)
            time.sleep(1.0)     # the shard copies' writes to their holders
        finally:
            dump.send_signal(signal.SIGINT)
            dump.wait(10)
            dump.stderr.close()
        with open(pcap, 'rb') as f:
            data = f.read()
        # The capture saw the traffic (TLS application data records: 0x17 0x03 0x03)...
        self.assertIn(b'\x17\x03\x03', data, 'no TLS records in the capture (%d bytes)' % len(data))
        # ...and none of what it carried.
        self.assertNotIn(secret.encode(), data, 'the prompt crossed the LAN in clear')
        self.assertNotIn(answer.encode(), data, 'the answer crossed the LAN in clear')
        for words in zip(answer.split(), answer.split()[1:], answer.split()[2:]):
            self.assertNotIn(' '.join(words).encode(), data, 'part of the answer crossed the LAN in clear')
        for needle in (b'POST /', b'HTTP/1.1', b'X-Mycelia-Auth'):
            self.assertNotIn(needle, data, 'HTTP in clear on the mesh or shard port')
        print('capture of node 1: %d bytes of TLS on ports %d/%d, no prompt, answer or document text'
              % (len(data), MESH_PORT, SHARD_PORT), flush=True)

        # Another key: refused at the handshake, nothing served, counted by node 3's shim.
        import hashlib
        raw = os.urandom(32)
        before = get_property(nodes[2]['bus'], 'org.mycelia.Shim1', '/org/mycelia/Shim1', 'org.mycelia.Shim1',
                              'MeshTlsRefused')
        psk = hashlib.blake2b(b'mycelia-tls-api-v1', key=raw, digest_size=32).hexdigest()
        ident = 'mycelia-tls-api-v1 ' + hashlib.blake2b(b'mycelia-key-id-v1', key=raw, digest_size=8).hexdigest()
        r = subprocess.run(tb.nsenter(nodes[0]['ns'], 'openssl', 's_client', '-quiet', '-tls1_3', '-psk', psk,
                                      '-psk_identity', ident, '-connect', '%s3:%d' % (SUBNET, MESH_PORT)),
                           input=b'GET /api/tags HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=15)
        self.assertNotIn(b'HTTP/1.1', r.stdout, 'a client with another key was answered')
        after = get_property(nodes[2]['bus'], 'org.mycelia.Shim1', '/org/mycelia/Shim1', 'org.mycelia.Shim1',
                             'MeshTlsRefused')
        self.assertEqual(after, before + 1, 'the refused handshake was not counted')


def main():
    global TESTBED
    check_prerequisites()
    TESTBED = Testbed()
    atexit.register(TESTBED.close)

    def on_signal(sig, frame):
        TESTBED.close()
        sys.exit(128 + sig)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    try:
        TESTBED.setup()
    except Exception as e:  # noqa: BLE001
        TESTBED.close()
        testenv.fail_now('testbed setup failed: %s' % e)
    testenv.main(cleanup=TESTBED.close)


if __name__ == '__main__':
    main()
