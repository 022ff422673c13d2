#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# A real systemd supervises a node: the installed units, D-Bus policy and sysusers/tmpfiles in a
# container booted with systemd-nspawn; restarts after kill -9 (shardd's collections survive
# theirs), socket activation, myceliactl, the audit trail read back from the journal.
"""The container boots the host's own root read-only with an empty, volatile /etc and /var
(`systemd-nspawn -D / --volatile=yes`, ../../TESTBED notes), plus the host's /etc/alternatives
(read-only), where the links of the host's /usr to OpenBLAS point. The project, installed with
`meson install --destdir` from a --prefix=/usr build, is laid over the container's /usr with
--overlay-ro, so every file sits where a package puts it; units meson installs under /lib are
folded into usr/lib (Debian 12 is merged-/usr). One test-only file is added to that overlay: a
preset that leaves mycelia.target disabled at the first boot, so the node starts when the test
has made its mesh key. The Ollama test double and the client loop are bound in at /opt/mycelia-test.

Needs root, systemd-nspawn and nsenter; otherwise exits 77 (1 under CI=true). When the build
under test is not configured with --prefix=/usr, a second build with that prefix (no tests) is
made once, under this build's tests/systemd/prefix-usr. The container is stopped on every exit path (SIGTERM to
nspawn, which powers it off; SIGKILL to its PID 1 if that does not end it)."""

import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import testenv  # noqa: E402  (tests/testenv.py)

DAEMONS = ('gossipd', 'discoveryd', 'routerd', 'shardd', 'shimd')
BUS = {'gossipd': ('org.mycelia.Gossip1', 'Members'), 'discoveryd': ('org.mycelia.Discovery1', 'Peers'),
       'routerd': ('org.mycelia.Router1', 'Nodes'), 'shardd': ('org.mycelia.ShardStore1', 'Collections'),
       'shimd': ('org.mycelia.Shim1', 'RequestsTotal')}
SOCKETS = ('mycelia-gossipd.socket', 'mycelia-shardd.socket', 'mycelia-shimd.socket', 'mycelia-shimd-mesh.socket')
API = 'http://127.0.0.1:11434'
SHARD = 'http://127.0.0.1:11437'
SHARDSTORE = ('org.mycelia.ShardStore1', '/org/mycelia/ShardStore1', 'org.mycelia.ShardStore1')
MODEL = 'llama3.2:latest'
AUDIT_MESSAGE_ID = 'efa495bb8cd04be794418a911dd693bf'     # common/audit-record.h
RESTART_WITHIN = 2.0
PR_SET_PDEATHSIG = 1


def preflight():
    testenv.require_env('MYCELIA_BUILD_ROOT', 'MYCELIA_SOURCE_ROOT', 'OLLAMA_DOUBLE')
    testenv.env_value('MYCELIA_PREFIX')
    if os.geteuid() != 0:
        testenv.skip_all('needs root to boot a container with systemd-nspawn')
    for tool in ('systemd-nspawn', 'nsenter', 'meson'):
        if not shutil.which(tool):
            testenv.skip_all('%s is not installed (package %s)' % (
                tool, {'systemd-nspawn': 'systemd-container', 'nsenter': 'util-linux'}.get(tool, tool)))
    if not os.path.exists('/usr/bin/python3'):
        testenv.skip_all('/usr/bin/python3 is missing: the client loop inside the container needs it')
    if not os.path.isdir('/usr/lib/systemd') or not os.path.exists('/usr/share/dbus-1/system.conf'):
        testenv.skip_all('the host /usr has no systemd or dbus-daemon to boot a container from')


def run(argv, timeout=120, check=True, **kw):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError('%s failed (rc=%d):\n%s%s' % (' '.join(argv), p.returncode,
                                                         p.stdout.decode(errors='replace'),
                                                         p.stderr.decode(errors='replace')))
    return p


def installed_tree(tmp):
    """DESTDIR of a --prefix=/usr build: this build when it has that prefix, else a second one."""
    build = testenv.env_path('MYCELIA_BUILD_ROOT')
    prefix = testenv.env_value('MYCELIA_PREFIX')
    if prefix != '/usr':
        sub = os.path.join(build, 'tests', 'systemd', 'prefix-usr')
        if not os.path.exists(os.path.join(sub, 'build.ninja')):
            print('# this build has prefix %s; configuring %s with --prefix=/usr' % (prefix, sub),
                  file=sys.stderr)
            run(['meson', 'setup', '--prefix=/usr', '-Dtests=false', sub,
                 testenv.env_path('MYCELIA_SOURCE_ROOT')], timeout=300)
        run(['meson', 'compile', '-C', sub], timeout=600)
        build = sub
    destdir = os.path.join(tmp, 'destdir')
    run(['meson', 'install', '-C', build, '--no-rebuild', '--quiet', '--destdir', destdir], timeout=300)
    return destdir


def stage_usr(destdir, stage):
    """The /usr to lay over the container's: DESTDIR/usr plus DESTDIR/lib folded into usr/lib."""
    usr = os.path.join(stage, 'usr')
    shutil.copytree(os.path.join(destdir, 'usr'), usr, symlinks=True)
    for top in ('lib', 'lib64', 'bin', 'sbin'):
        src = os.path.join(destdir, top)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(usr, top), symlinks=True, dirs_exist_ok=True)
    preset = os.path.join(usr, 'lib', 'systemd', 'system-preset')
    os.makedirs(preset, exist_ok=True)
    with open(os.path.join(preset, '00-mycelia-test.preset'), 'w') as f:
        f.write('# test only: the test starts mycelia.target once the mesh key exists\ndisable mycelia.target\n')
    return usr


def _pdeathsig_term():
    # If the test dies, nspawn gets SIGTERM and powers the container off by itself.
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Container:
    def __init__(self, usr, opt, out):
        self.name = 'mycelia-sv-%d' % os.getpid()
        self.log_path = os.path.join(os.path.dirname(out), 'nspawn.log')
        self.log = open(self.log_path, 'wb')
        argv = ['systemd-nspawn', '-D', '/', '--volatile=yes', '--private-network', '--register=no',
                '--keep-unit', '--boot', '-M', self.name, '--console=pipe',
                '--overlay-ro=/usr:%s:/usr' % usr,
                # What dpkg configured for the host's /usr: libopenblas.so.0 (mycelia-shardd) is a
                # link through /etc/alternatives, which the empty volatile /etc lacks.
                '--bind-ro=/etc/alternatives',
                '--bind-ro=%s:/opt/mycelia-test' % opt,
                '--bind=%s:/opt/mycelia-out' % out,
                '--', 'systemd.mask=avahi-daemon.service', 'systemd.mask=avahi-daemon.socket',
                'systemd.mask=systemd-firstboot.service',
                # Nothing comes online in a private network: do not let the boot wait for it.
                'systemd.mask=systemd-networkd-wait-online.service',
                'systemd.mask=NetworkManager-wait-online.service']
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=_pdeathsig_term)
        self.leader = None
        try:
            self._wait_booted()
        except BaseException:
            self.stop()
            raise

    def _wait_booted(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            p = subprocess.run(['pgrep', '-x', 'systemd', '-P', str(self.proc.pid)], capture_output=True)
            if p.returncode == 0:
                self.leader = int(p.stdout.split()[0])
                break
            time.sleep(0.05)
        if self.leader is None:
            raise RuntimeError('the container did not start:\n' + self.log_tail())
        # PID 1 answers on its private socket only after a moment; then wait for the boot to end.
        state = ''
        try:
            while time.monotonic() < deadline:
                state = self.out('systemctl', 'is-system-running', '--wait', check=False, timeout=30)
                if state in ('running', 'degraded'):
                    break
                time.sleep(0.05)
        except subprocess.TimeoutExpired:
            pass
        if state not in ('running', 'degraded'):
            jobs = self.out('systemctl', 'list-jobs', '--no-pager', check=False)
            raise RuntimeError('the container did not finish booting (%r); jobs:\n%s\n%s' % (
                state, jobs, self.log_tail()))
        print('# container %s: PID 1 is %d, %s' % (self.name, self.leader, state), file=sys.stderr)

    def log_tail(self, n=40):
        self.log.flush()
        with open(self.log_path, 'rb') as f:
            return '\n'.join(f.read().decode(errors='replace').splitlines()[-n:])

    def run(self, *argv, check=True, timeout=30):
        return run(['nsenter', '-t', str(self.leader), '-a'] + list(argv), check=check, timeout=timeout)

    def out(self, *argv, **kw):
        return self.run(*argv, **kw).stdout.decode(errors='replace').strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                if self.leader:
                    try:
                        os.kill(self.leader, signal.SIGKILL)   # PID 1 of the namespace: all of it
                    except ProcessLookupError:
                        pass
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


class Supervision(unittest.TestCase):
    tmp = None
    container = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix='mycelia-systemd-')
        atexit.register(cls._cleanup)
        try:
            cls._setup()
        except BaseException:
            cls._cleanup()
            raise

    @classmethod
    def _setup(cls):
        t0 = time.monotonic()
        destdir = installed_tree(cls.tmp)
        usr = stage_usr(destdir, os.path.join(cls.tmp, 'stage'))
        opt = os.path.join(cls.tmp, 'opt')
        os.mkdir(opt)
        shutil.copy(testenv.env_path('OLLAMA_DOUBLE'), os.path.join(opt, 'ollama-double'))
        shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'client_loop.py'), opt)
        cls.outdir = os.path.join(cls.tmp, 'out')
        os.mkdir(cls.outdir)
        os.chmod(cls.outdir, 0o777)
        cls.container = c = Container(usr, opt, cls.outdir)
        print('# installed, staged and booted in %.1fs' % (time.monotonic() - t0), file=sys.stderr)

        # What a package's postinst does: sysusers/tmpfiles ran at boot; make the mesh key.
        c.run('myceliactl', 'keygen')
        c.run('chgrp', 'mycelia', '/etc/mycelia/mesh.key')
        c.run('systemd-run', '--unit=ollama-double', '--quiet', '--property=Type=exec',
              '/opt/mycelia-test/ollama-double', '--listen', '127.0.0.1:11435',
              '--token-delay-ms', '2', '--tokens', '10', '--num-parallel', '4')
        c.run('systemctl', 'start', 'mycelia.target', timeout=60)
        cls.wait_all_active(15)

    @classmethod
    def _cleanup(cls):
        # Idempotent: runs from tearDownClass, and from atexit when SIGTERM (meson's timeout)
        # or an error ended the run elsewhere.
        c, cls.container = cls.container, None
        if c:
            c.stop()
        if cls.tmp:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            cls.tmp = None

    @classmethod
    def tearDownClass(cls):
        cls._cleanup()

    # helpers ------------------------------------------------------------------------------

    @classmethod
    def states(cls):
        units = ['mycelia-%s.service' % d for d in DAEMONS]
        out = cls.container.run('systemctl', 'is-active', *units, check=False).stdout.decode().split()
        return dict(zip(DAEMONS, out))

    @classmethod
    def wait_all_active(cls, timeout):
        deadline = time.monotonic() + timeout
        while True:
            st = cls.states()
            if all(v == 'active' for v in st.values()):
                return
            if time.monotonic() > deadline:
                status = cls.container.out('systemctl', 'status', '--no-pager', '-n', '20', 'mycelia*', check=False)
                raise AssertionError('not all daemons active: %r\n%s' % (st, status))
            time.sleep(0.1)

    def main_pid(self, d):
        return int(self.container.out('systemctl', 'show', '-P', 'MainPID', 'mycelia-%s.service' % d))

    def bus_owner_pid(self, name):
        p = self.container.run('busctl', 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
                               'org.freedesktop.DBus', 'GetConnectionUnixProcessID', 's', name, check=False)
        m = re.match(rb'u (\d+)', p.stdout)
        return int(m.group(1)) if p.returncode == 0 and m else None

    def curl(self, path, timeout=5, base=API):
        p = self.container.run('curl', '-sS', '-m', str(timeout), '-o', '/dev/null', '-w', '%{http_code}',
                               base + path, check=False, timeout=timeout + 5)
        return p.stdout.decode().strip()

    def shard_store(self, method, signature, *args):
        """busctl call on ShardStore1 as root; the reply's data."""
        out = self.container.out('busctl', '--json=short', 'call', *SHARDSTORE, method, signature, *args)
        return json.loads(out)['data'] if out else None

    # tests ----------------------------------------------------------------------------------

    def test_1_all_active_and_on_the_bus(self):
        st = self.states()
        self.assertEqual(st, {d: 'active' for d in DAEMONS})
        for unit in SOCKETS + ('mycelia.target',):
            self.assertEqual(self.container.out('systemctl', 'is-active', unit, check=False), 'active', unit)
        for d in DAEMONS:
            name, prop = BUS[d]
            path = '/' + name.replace('.', '/')
            self.assertEqual(self.bus_owner_pid(name), self.main_pid(d), '%s owned by mycelia-%sd' % (name, d))
            # Reads are open on the system bus: as root and as nobody.
            for who in ([], ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--']):
                out = self.container.out(*(who + ['busctl', '--json=short', 'get-property', name, path, name, prop]))
                self.assertIn('"data"', out)
                self.container.run(*(who + ['busctl', 'introspect', name, path]))
        # The daemons run as mycelia, with no capabilities.
        for d in DAEMONS:
            status = self.container.out('cat', '/proc/%d/status' % self.main_pid(d))
            uid = self.container.out('id', '-u', 'mycelia')
            self.assertRegex(status, r'Uid:\s+%s\s' % uid)
            self.assertRegex(status, r'CapEff:\s+0+\n')

    def test_2_api_through_socket_activation(self):
        self.assertEqual(self.curl('/api/tags'), '200')
        # Stop the service, keep the socket: the next connection starts mycelia-shimd again.
        self.container.run('systemctl', 'stop', 'mycelia-shimd.service')
        self.assertEqual(self.container.out('systemctl', 'is-active', 'mycelia-shimd.service', check=False), 'inactive')
        self.assertEqual(self.container.out('systemctl', 'is-active', 'mycelia-shimd.socket', check=False), 'active')
        self.assertEqual(self.curl('/api/tags'), '200')
        self.assertEqual(self.container.out('systemctl', 'is-active', 'mycelia-shimd.service', check=False), 'active')
        # And a generation through the whole node: shimd -> routerd's route -> the double.
        p = self.container.run('curl', '-sS', '-m', '10', API + '/api/generate', '-d',
                               json.dumps({'model': MODEL, 'prompt': 'hi', 'stream': False}))
        self.assertTrue(json.loads(p.stdout).get('done'), p.stdout)

    def shard_answers(self):
        """Whether shardd takes a connection on 11437. It speaks TLS with the mesh key only
        (docs/mesh-tls.md), so curl's plain HTTP gets the connection closed without a word:
        curl's exit 52 (empty reply), where nobody listening would be exit 7."""
        p = self.container.run('curl', '-sS', '-m', '5', '-o', '/dev/null', SHARD + '/shard/digest',
                               check=False, timeout=10)
        return p.returncode == 52

    def test_2_shard_transfers_through_socket_activation(self):
        self.assertTrue(self.shard_answers())
        self.container.run('systemctl', 'stop', 'mycelia-shardd.service')
        self.assertEqual(self.container.out('systemctl', 'is-active', 'mycelia-shardd.service', check=False), 'inactive')
        self.assertEqual(self.container.out('systemctl', 'is-active', 'mycelia-shardd.socket', check=False), 'active')
        self.assertTrue(self.shard_answers())
        self.assertEqual(self.container.out('systemctl', 'is-active', 'mycelia-shardd.service', check=False), 'active')

    def test_3_myceliactl_status(self):
        p = self.container.run('myceliactl', 'status', check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        out = p.stdout.decode()
        self.assertIn(MODEL, out, out)
        self.container.run('myceliactl', 'members')
        p = self.container.run('myceliactl', '--json', 'route', MODEL, check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_3_one_node_id_made_at_first_start(self):
        # The five daemons started at once with an empty StateDirectory: one id, made once, in
        # /var/lib/mycelia/node-id, and every daemon uses it (docs/node-identity.md).
        text = self.container.out('cat', '/var/lib/mycelia/node-id')
        self.assertRegex(text, r'^[0-9a-f]{32}$')
        # UMask=0077 in the units: only the daemons' user reads it.
        self.assertEqual(self.container.out('stat', '-c', '%U %a', '/var/lib/mycelia/node-id'), 'mycelia 600')

        def prop(name, p):
            out = self.container.out('busctl', '--json=short', 'get-property', name, '/' + name.replace('.', '/'),
                                     name, p)
            return json.loads(out)['data']
        self.assertEqual(prop('org.mycelia.Router1', 'LocalNodeId'), text)
        self.assertEqual(prop('org.mycelia.ShardStore1', 'LocalNodeId'), text)
        self.assertEqual(prop('org.mycelia.Gossip1', 'LocalNode')[0], text)
        self.assertEqual(prop('org.mycelia.Gossip1', 'IdConflict'), '')
        p = self.container.run('myceliactl', '--json', 'status', check=False)
        self.assertEqual(json.loads(p.stdout)['id'], text)
        self.assertEqual(self.container.out('ls', '-A', '/var/lib/mycelia').split().count('node-id'), 1)
        self.assertNotRegex(self.container.out('ls', '-A', '/var/lib/mycelia'), r'\.node-id\.')

    def test_4_kill_9_restarts_while_clients_keep_going(self):
        out = '/opt/mycelia-out/client-loop.jsonl'
        stop = '/opt/mycelia-out/stop'
        self.container.run('systemd-run', '--unit=mycelia-client-loop', '--quiet', '--property=Type=exec',
                           '/usr/bin/python3', '/opt/mycelia-test/client_loop.py', API, MODEL, out, stop)
        kills = {}
        try:
            time.sleep(1.0)
            for d in DAEMONS:
                old = self.main_pid(d)
                before = time.monotonic()
                self.container.run('kill', '-9', str(old))
                after = time.monotonic()
                kills[d] = (before, after)
                name = BUS[d][0]
                deadline = after + RESTART_WITHIN
                while True:
                    st = self.container.out('systemctl', 'is-active', 'mycelia-%s.service' % d, check=False)
                    pid = self.main_pid(d)
                    if st == 'active' and pid not in (0, old) and self.bus_owner_pid(name) == pid:
                        break
                    if time.monotonic() > deadline:
                        self.fail('mycelia-%s not back within %.1fs of kill -9 (state %s, MainPID %d):\n%s' % (
                            d, RESTART_WITHIN, st, pid, self.container.out(
                                'journalctl', '--no-pager', '-n', '20', '-u', 'mycelia-%s.service' % d, check=False)))
                    time.sleep(0.02)
                print('# mycelia-%s: kill -9 -> active and on the bus again in %.2fs' % (d, time.monotonic() - before),
                      file=sys.stderr)
                time.sleep(0.7)   # clients keep going between the kills
            self.assertEqual(set(self.states().values()), {'active'})
        finally:
            open(os.path.join(self.outdir, 'stop'), 'w').close()
            for _ in range(100):
                if self.container.out('systemctl', 'is-active', 'mycelia-client-loop.service', check=False) != 'active':
                    break
                time.sleep(0.1)
        with open(os.path.join(self.outdir, 'client-loop.jsonl')) as f:
            results = [json.loads(line) for line in f if line.strip()]
        ok = [r for r in results if r['ok']]
        failed = [r for r in results if not r['ok']]
        b, a = kills['shimd']
        # A request in flight when shimd was killed may fail: it was inside the killed process.
        excused = [r for r in failed if r['start'] <= a and r['end'] >= b]
        bad = [r for r in failed if r not in excused]
        print('# client loop: %d requests, %d ok, %d failed inside the killed shimd, %d other failures' % (
            len(results), len(ok), len(excused), len(bad)), file=sys.stderr)
        for r in excused:
            print('#   inside the killed shimd: %s %s' % (r['path'], r['error']), file=sys.stderr)
        self.assertGreater(len(ok), 20, 'the client loop barely ran')
        self.assertEqual(bad, [], 'requests failed outside the killed shimd (kills at %r)' % kills)

    def test_4_shardd_keeps_its_collections_across_kill_9(self):
        # Put answers once the documents are on disk (docs/shardd.md): a kill -9 right after
        # loses nothing, and only shardd restarts.
        self.shard_store('CreateCollection', 'suss', 'kept', '3', 'cosine', '')
        ids = self.shard_store('Put', 'ss', 'kept', json.dumps({'documents': [{'id': 'a', 'embedding': [1, 0, 0]}]}))
        self.assertEqual(ids, [['a']])
        others = {k: self.main_pid(k) for k in DAEMONS if k != 'shardd'}
        old = self.main_pid('shardd')
        before = time.monotonic()
        self.container.run('kill', '-9', str(old))
        deadline = time.monotonic() + RESTART_WITHIN
        while True:
            pid = self.main_pid('shardd')
            if pid not in (0, old) and self.bus_owner_pid(SHARDSTORE[0]) == pid:
                break
            if time.monotonic() > deadline:
                self.fail('mycelia-shardd not back within %.1fs of kill -9:\n%s' % (RESTART_WITHIN, self.container.out(
                    'journalctl', '--no-pager', '-n', '20', '-u', 'mycelia-shardd.service', check=False)))
            time.sleep(0.02)
        print('# mycelia-shardd: kill -9 -> back on the bus in %.2fs' % (time.monotonic() - before), file=sys.stderr)
        doc = json.loads(self.shard_store('Get', 'ss', 'kept', 'a')[0])
        self.assertEqual((doc['id'], doc['embedding']), ('a', [1, 0, 0]))
        self.assertIn('kept', [c[0] for c in json.loads(self.container.out(
            'busctl', '--json=short', 'get-property', *SHARDSTORE, 'Collections'))['data']])
        self.assertEqual({k: self.main_pid(k) for k in others}, others, 'kill -9 of shardd moved another daemon')
        self.assertEqual(self.states(), {d: 'active' for d in DAEMONS})
        # The store is where the unit lets it write: the state directory, the mycelia user's.
        self.assertEqual(self.container.out('stat', '-c', '%U %a', '/var/lib/mycelia/shards').split()[0], 'mycelia')

    def test_4_z_metrics_count_the_restarts(self):
        # After the kills above: GET /metrics reads each unit's NRestarts from this real systemd
        # (docs/metrics.md, "Restarts") and each daemon's RSS and fds from /proc, as the mycelia
        # user it runs as.
        text = self.container.out('curl', '-sS', '-m', '10', API + '/metrics')
        samples = {}
        for line in text.splitlines():
            m = re.match(r'(mycelia_process_[a-z_]+)\{daemon="([a-z]+)"\} (\d+)$', line)
            if m:
                samples[(m.group(1), m.group(2))] = int(m.group(3))
        for d in DAEMONS:
            restarts = int(self.container.out('systemctl', 'show', '-P', 'NRestarts', 'mycelia-%s.service' % d))
            self.assertEqual(samples.get(('mycelia_process_restarts_total', d)), restarts, d)
            self.assertGreater(samples.get(('mycelia_process_resident_memory_bytes', d), 0), 0, d)
            self.assertGreater(samples.get(('mycelia_process_open_fds', d), 0), 0, d)
        # Every daemon was killed once by the client-loop test, shardd once more.
        self.assertGreaterEqual(samples[('mycelia_process_restarts_total', 'shardd')], 2)
        self.assertGreaterEqual(samples[('mycelia_process_restarts_total', 'gossipd')], 1)

    def test_5_stopping_one_leaves_the_others(self):
        for d in ('routerd', 'gossipd', 'discoveryd', 'shardd'):
            others = {k: self.main_pid(k) for k in DAEMONS if k != d}
            old = self.main_pid(d)
            self.container.run('systemctl', 'stop', 'mycelia-%s.service' % d)
            # The stopped one may already be back through D-Bus activation (a peer daemon's call
            # to its name), so what is checked is that its process ended and the others did not
            # move.
            self.assertNotEqual(self.container.run('kill', '-0', str(old), check=False).returncode, 0)
            st = self.states()
            self.assertEqual({k: v for k, v in st.items() if k != d}, {k: 'active' for k in others})
            self.assertEqual({k: self.main_pid(k) for k in others}, others)
            self.assertEqual(self.curl('/api/tags'), '200', 'api with mycelia-%s stopped' % d)
            self.container.run('systemctl', 'start', 'mycelia-%s.service' % d)
            self.wait_all_active(5)

    def test_6_dbus_activation(self):
        # A call to a stopped daemon's name starts its unit (SystemdService=), as nobody too.
        self.container.run('systemctl', 'stop', 'mycelia-discoveryd.service')
        self.assertEqual(self.container.out('systemctl', 'is-active', 'mycelia-discoveryd.service', check=False),
                         'inactive')
        self.container.run('setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--',
                           'busctl', 'get-property', 'org.mycelia.Discovery1', '/org/mycelia/Discovery1',
                           'org.mycelia.Discovery1', 'Published')
        self.assertEqual(self.container.out('systemctl', 'is-active', 'mycelia-discoveryd.service', check=False),
                         'active')

    def test_7_audit_trail(self):
        # Every request leaves one journal entry with the trail's MESSAGE_ID and its fields
        # (docs/audit.md); the prompt is not kept by default ([audit] content=no).
        marker = 'amber-lighthouse-%d' % os.getpid()
        body = json.dumps({'model': MODEL, 'prompt': 'say ' + marker, 'stream': False})
        p = self.container.run('curl', '-sS', '-m', '10', API + '/api/generate', '-d', body)
        answer = json.loads(p.stdout)
        self.assertTrue(answer.get('done'), p.stdout)
        self.assertEqual(self.curl('/api/tags'), '200')
        self.assertEqual(self.curl('/api/nope'), '404')

        def audit_entries():
            out = self.container.out('journalctl', '--no-pager', '-o', 'json', 'MESSAGE_ID=' + AUDIT_MESSAGE_ID,
                                     check=False)
            return [json.loads(line) for line in out.splitlines() if line.strip()]
        deadline = time.monotonic() + 10
        while True:
            entries = audit_entries()
            gen = [e for e in entries if e.get('MYCELIA_AUDIT_ENDPOINT') == 'POST /api/generate'
                   and e.get('MYCELIA_AUDIT_MODEL') == MODEL]
            tags = [e for e in entries if e.get('MYCELIA_AUDIT_ENDPOINT') == 'GET /api/tags']
            nope = [e for e in entries if e.get('MYCELIA_AUDIT_ENDPOINT') == 'GET /api/nope']
            if gen and tags and nope:
                break
            if time.monotonic() > deadline:
                self.fail('audit entries not in the journal: %r' % entries[-5:])
            time.sleep(0.2)
        e = gen[-1]
        self.assertEqual(e['SYSLOG_IDENTIFIER'], 'mycelia-shimd')
        self.assertEqual(e['PRIORITY'], '6')
        self.assertEqual(e['_SYSTEMD_UNIT'], 'mycelia-shimd.service')
        self.assertEqual(e['MYCELIA_AUDIT_TOKEN'], '-')      # loopback: no token needed
        self.assertRegex(e['MYCELIA_AUDIT_CLIENT'], r'^127\.0\.0\.1:\d+$')
        self.assertEqual(e['MYCELIA_AUDIT_STATUS'], '200')
        self.assertTrue(e['MYCELIA_AUDIT_ENTRY_NODE'])
        self.assertEqual(e['MYCELIA_AUDIT_SERVED_BY'], e['MYCELIA_AUDIT_ENTRY_NODE'])
        self.assertEqual(e['NODE'], e['MYCELIA_AUDIT_ENTRY_NODE'])
        self.assertEqual(int(e['MYCELIA_AUDIT_PROMPT_TOKENS']), answer['prompt_eval_count'])
        self.assertEqual(int(e['MYCELIA_AUDIT_COMPLETION_TOKENS']), answer['eval_count'])
        self.assertGreaterEqual(int(e['MYCELIA_AUDIT_DURATION_MS']), 0)
        self.assertRegex(e['MESSAGE'], r'^POST /api/generate %s 200 via \S+, %d\+%d tokens, \d+ ms \(no token\)$' % (
            re.escape(MODEL), answer['prompt_eval_count'], answer['eval_count']))
        self.assertEqual(nope[-1]['MYCELIA_AUDIT_STATUS'], '404')
        self.assertEqual(tags[-1]['MYCELIA_AUDIT_MODEL'], '-')
        # Not kept by default: no prompt field, and the text nowhere in the journal.
        self.assertNotIn('MYCELIA_AUDIT_PROMPT', e)
        everything = self.container.out('journalctl', '--no-pager', '-o', 'json', check=False)
        self.assertNotIn(marker, everything)

        # myceliactl audit reads the same entries back.
        p = self.container.run('myceliactl', 'audit', '--json', '--since', '-10min', check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        rows = [json.loads(line) for line in p.stdout.decode().splitlines()]
        mine = [r for r in rows if r['endpoint'] == 'POST /api/generate' and r['model'] == MODEL]
        self.assertTrue(mine, rows[-5:])
        r = mine[-1]
        self.assertEqual((r['token'], r['status'], r['prompt_tokens'], r['completion_tokens']),
                         (None, 200, answer['prompt_eval_count'], answer['eval_count']))
        self.assertEqual(r['served_by'], e['MYCELIA_AUDIT_SERVED_BY'])
        self.assertNotIn('prompt', r)
        table = self.container.out('myceliactl', 'audit', '--since', 'today')
        self.assertIn('POST /api/generate', table)
        self.assertRegex(table, r'\d+ requests since today\.')
        self.assertEqual(self.container.run('myceliactl', 'audit', '--since', 'soon', check=False).returncode, 2)


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == '__main__':
    signal.signal(signal.SIGTERM, _on_sigterm)
    preflight()
    testenv.main()
