#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The system bus policy in dbus/org.mycelia.*.conf on a private system bus: only the mycelia user
# owns the names, state-changing calls (and ShardStore1's Get and Search, which return stored
# documents) need root or the mycelia group, properties and introspection are open to anyone.
"""Runs dbus-daemon with /usr/share/dbus-1/system.conf, rewritten to listen in a temporary
directory and to include only the project's policy files (TESTBED.md), and the five real
daemons as the mycelia user (setpriv). Needs root (to create the user when it is missing and to
switch users); otherwise it exits 77 (1 under CI=true). A user or group it creates is removed at
the end."""

import os
import pwd
import grp
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'integration'))
import harness  # noqa: E402  (tests/integration/harness.py, which puts tests/ on sys.path)
import testenv  # noqa: E402
from harness import Double, Proc, wait_until  # noqa: E402

DAEMONS = ('gossipd', 'discoveryd', 'routerd', 'shardd', 'shimd')
NAMES = {'gossipd': 'org.mycelia.Gossip1', 'discoveryd': 'org.mycelia.Discovery1',
         'routerd': 'org.mycelia.Router1', 'shardd': 'org.mycelia.ShardStore1', 'shimd': 'org.mycelia.Shim1'}
SHARDSTORE = 'org.mycelia.ShardStore1'
ACCESS_DENIED = 'org.freedesktop.DBus.Error.AccessDenied'
SYSTEM_CONF = '/usr/share/dbus-1/system.conf'


def preflight():
    testenv.require_env(*['MYCELIA_%sD' % d[:-1].upper() for d in DAEMONS],
                        'OLLAMA_DOUBLE', 'MYCELIA_DBUS_DIR', 'MYCELIA_SYSUSERS_CONF')
    if os.geteuid() != 0:
        testenv.skip_all('needs root: it runs the daemons as the mycelia user and callers as nobody')
    for tool in ('dbus-daemon', 'dbus-send', 'busctl', 'setpriv'):
        if not shutil.which(tool):
            testenv.skip_all('%s is not installed' % tool)
    if not os.path.exists(SYSTEM_CONF):
        testenv.skip_all('%s is missing (package dbus-daemon)' % SYSTEM_CONF)
    try:
        pwd.getpwnam('nobody')
    except KeyError:
        testenv.skip_all('there is no user nobody to call as')


def system_bus_config(socket_path, policy_dir):
    """/usr/share/dbus-1/system.conf without user, fork, syslog, pidfile, activation helpers and
    includes, listening on socket_path and including only policy_dir."""
    with open(SYSTEM_CONF) as f:
        conf = f.read()
    conf = re.sub(r'<!--.*?-->', '', conf, flags=re.S)
    for tag in ('user', 'pidfile', 'servicehelper', 'includedir', 'listen'):
        conf = re.sub(r'<%s>.*?</%s>' % (tag, tag), '', conf, flags=re.S)
    conf = re.sub(r'<include\b[^>]*>.*?</include>', '', conf, flags=re.S)
    for tag in ('fork', 'syslog', 'standard_system_servicedirs'):
        conf = conf.replace('<%s/>' % tag, '')
    extra = '<listen>unix:path=%s</listen>\n  <includedir>%s</includedir>\n</busconfig>' % (socket_path, policy_dir)
    return conf.replace('</busconfig>', extra)


class Users:
    """The mycelia user and group, from the project's sysusers.d file when missing."""

    def __init__(self):
        self.created_user = self.created_group = False

    def ensure(self):
        try:
            pwd.getpwnam('mycelia')
        except KeyError:
            self.created_user = True
        try:
            grp.getgrnam('mycelia')
        except KeyError:
            self.created_group = True
        if self.created_user or self.created_group:
            subprocess.run(['systemd-sysusers', os.environ['MYCELIA_SYSUSERS_CONF']], check=True,
                           capture_output=True, timeout=30)
        pwd.getpwnam('mycelia')
        grp.getgrnam('mycelia')

    def cleanup(self):
        if self.created_user:
            subprocess.run(['userdel', 'mycelia'], capture_output=True, timeout=30)
        if self.created_group:
            try:
                grp.getgrnam('mycelia')
                subprocess.run(['groupdel', 'mycelia'], capture_output=True, timeout=30)
            except KeyError:
                pass


def as_user(user, group, groups=None):
    """setpriv prefix: run as user:group with exactly the supplementary groups given."""
    argv = ['setpriv', '--reuid=' + user, '--regid=' + group]
    argv += ['--groups=' + ','.join(groups)] if groups else ['--clear-groups']
    return argv + ['--']


def label(prefix):
    return ' '.join(prefix[1:-1]).replace('--', '') if prefix else 'root'


NOBODY = None        # filled in setUpClass: setpriv prefix for nobody without groups
GROUP_MEMBER = None  # nobody with the mycelia group as a supplementary group
ROOT = []


class Policy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        global NOBODY, GROUP_MEMBER
        cls.users = Users()
        cls.users.ensure()
        nogroup = grp.getgrgid(pwd.getpwnam('nobody').pw_gid).gr_name
        NOBODY = as_user('nobody', nogroup)
        GROUP_MEMBER = as_user('nobody', nogroup, ['mycelia'])
        cls.mycelia = as_user('mycelia', 'mycelia')

        cls.dir = harness.make_tmpdir('mycelia-policy-')
        os.chmod(cls.dir, 0o755)
        # The binaries may sit in a build tree other users cannot enter: copy them.
        cls.bins = {}
        for d in DAEMONS:
            src = os.environ['MYCELIA_%sD' % d[:-1].upper()]
            cls.bins[d] = os.path.join(cls.dir, 'mycelia-' + d)
            shutil.copy(src, cls.bins[d])
        policy_dir = os.path.join(cls.dir, 'system.d')
        os.mkdir(policy_dir)
        for f in os.listdir(os.environ['MYCELIA_DBUS_DIR']):
            if f.endswith('.conf'):
                shutil.copy(os.path.join(os.environ['MYCELIA_DBUS_DIR'], f), policy_dir)
        cls.socket = os.path.join(cls.dir, 'system_bus_socket')
        conf = os.path.join(cls.dir, 'system.conf')
        with open(conf, 'w') as f:
            f.write(system_bus_config(cls.socket, policy_dir))
        cls.bus_proc = Proc(['dbus-daemon', '--config-file=' + conf, '--nofork', '--nopidfile',
                             '--print-address=1'], name='dbus-daemon', logdir=cls.dir)
        cls.bus_proc.wait_line(r'^unix:', timeout=10)
        cls.address = 'unix:path=' + cls.socket

        cls.double = Double('--token-delay-ms', '0', '--tokens', '2', logdir=cls.dir)
        cls.model = cls.double.chat_model()

        # What the daemons need as mycelia: an empty config, a state dir, a mesh key it can read.
        cls.state = os.path.join(cls.dir, 'state')
        os.mkdir(cls.state)
        os.chmod(cls.state, 0o770)
        shutil.chown(cls.state, 'mycelia', 'mycelia')
        cls.config = os.path.join(cls.dir, 'mycelia.conf')
        open(cls.config, 'w').close()
        cls.key = os.path.join(cls.dir, 'mesh.key')
        with open(cls.key, 'w') as f:
            f.write(__import__('base64').b64encode(os.urandom(32)).decode() + '\n')
        os.chmod(cls.key, 0o640)
        shutil.chown(cls.key, 'root', 'mycelia')
        cls.daemons = {}

    @classmethod
    def tearDownClass(cls):
        try:
            harness.teardown_all()
        finally:
            cls.users.cleanup()

    # helpers ------------------------------------------------------------------------------

    def daemon_argv(self, d, state):
        return [self.bins[d], '--config', self.config, '--state-dir', state, '--mesh-key', self.key,
                '--node-id', '0123456789abcdef0123456789abcdef', '--gossip', '127.0.0.1:0', '--mdns', 'no',
                '--api', '127.0.0.1:0', '--mesh', '', '--shard', '127.0.0.1:0', '--upstream', self.double.url,
                '--tags-interval', '1s', '--probe-interval', '1s']

    def start_daemon(self, d, prefix, state=None):
        # [bus] address stays empty: the daemon takes the system bus, here DBUS_SYSTEM_BUS_ADDRESS.
        return Proc(prefix + self.daemon_argv(d, state or self.state), name='%s-as-%s' % (d, label(prefix)),
                    env={'DBUS_SYSTEM_BUS_ADDRESS': self.address, 'NOTIFY_SOCKET': ''}, logdir=self.dir)

    def owner(self, name):
        p = subprocess.run(['busctl', '--address=' + self.address, 'status', name],
                           capture_output=True, timeout=10)
        m = re.search(rb'^UID=(\d+)', p.stdout, re.M)
        return int(m.group(1)) if p.returncode == 0 and m else None

    def call(self, who, name, iface, method, *args, path=None):
        """dbus-send as who; returns (error name or None, output)."""
        path = path or '/' + name.replace('.', '/')
        argv = who + ['dbus-send', '--bus=' + self.address, '--print-reply', '--reply-timeout=5000',
                      '--dest=' + name, path, '%s.%s' % (iface, method)] + list(args)
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
        out = (p.stdout + p.stderr).decode(errors='replace')
        m = re.search(r'Error ([A-Za-z0-9_.]+):', out)
        return (m.group(1) if m else None), out

    def assert_denied(self, who, *call, **kw):
        err, out = self.call(who, *call, **kw)
        self.assertEqual(err, ACCESS_DENIED, 'expected AccessDenied for %s %r: %s' % (label(who), call, out))

    def assert_allowed(self, who, *call, **kw):
        err, out = self.call(who, *call, **kw)
        self.assertIsNone(err, 'expected success for %s %r: %s' % (label(who), call, out))
        return out

    # tests, in order: ownership first (the names are free), then the calls ------------------

    def test_1_ownership(self):
        # Neither root nor another user, even one in the mycelia group (so that it can read the
        # key and write the state), may own the names: the daemon stops with the bus's refusal.
        # These runs get a scratch state directory: shardd creates its store before it asks for
        # its name, and a store made by root or nobody would shut out the mycelia user later.
        scratch = os.path.join(self.dir, 'scratch-state')
        os.mkdir(scratch)
        os.chmod(scratch, 0o777)
        for who, label in ((GROUP_MEMBER, 'nobody in group mycelia'), (ROOT, 'root')):
            for d in DAEMONS:
                p = self.start_daemon(d, who, scratch)
                rc = p.wait(15)
                self.assertNotEqual(rc, 0, '%s as %s should not get %s' % (d, label, NAMES[d]))
                p.stop()
                self.assertRegex(p.tail(), r'Failed to acquire (the bus name )?%s: (Permission denied|.*not allowed to own)' % re.escape(NAMES[d]),
                                 '%s as %s: %s' % (d, label, p.tail()))
                self.assertIsNone(self.owner(NAMES[d]))
        # The mycelia user may: all five come up on the bus.
        uid = pwd.getpwnam('mycelia').pw_uid
        for d in DAEMONS:
            type(self).daemons[d] = self.start_daemon(d, self.mycelia)
            wait_until(lambda: self.owner(NAMES[d]) == uid, 10, what='%s owned by mycelia' % NAMES[d])
        for d in DAEMONS:
            self.assertTrue(self.daemons[d].alive(), self.daemons[d].tail())

    def require_daemons(self):
        if len(self.daemons) != len(DAEMONS) or not all(p.alive() for p in self.daemons.values()):
            self.skipTest('the daemons did not come up (see test_1_ownership)')

    def test_2_reads_open(self):
        self.require_daemons()
        for who in (NOBODY, GROUP_MEMBER, ROOT):
            for d in DAEMONS:
                n = NAMES[d]
                self.assert_allowed(who, n, 'org.freedesktop.DBus.Introspectable', 'Introspect')
                self.assert_allowed(who, n, 'org.freedesktop.DBus.Properties', 'GetAll', 'string:' + n)
                self.assert_allowed(who, n, 'org.freedesktop.DBus.Peer', 'Ping')
            self.assert_allowed(who, NAMES['gossipd'], 'org.freedesktop.DBus.Properties', 'Get',
                                'string:org.mycelia.Gossip1', 'string:Members')
            self.assert_allowed(who, NAMES['shimd'], 'org.freedesktop.DBus.Properties', 'Get',
                                'string:org.mycelia.Shim1', 'string:RequestsTotal')
            # Route answers where a request would go; it reads, so it is open.
            wait_until(lambda: self.call(who, NAMES['routerd'], 'org.mycelia.Router1', 'Route',
                                         'string:' + self.model, 'string:', 'array:string:')[0] is None,
                       10, what='Router1.Route(%s) answers' % self.model)
            # busctl, as a user would type it.
            p = subprocess.run(who + ['busctl', '--address=' + self.address, 'get-property', NAMES['routerd'],
                                      '/org/mycelia/Router1', 'org.mycelia.Router1', 'Nodes'],
                               capture_output=True, timeout=10)
            self.assertEqual(p.returncode, 0, p.stderr)

    def test_3_state_changes_need_privilege(self):
        self.require_daemons()
        g, r = NAMES['gossipd'], NAMES['routerd']
        calls = [
            (g, 'org.mycelia.Gossip1', 'Join', 'array:string:127.0.0.1:9'),
            (g, 'org.mycelia.Gossip1', 'SetLocalMetadata', 'string:policy-test', 'string:1'),
            (g, 'org.mycelia.Gossip1', 'SetLocalLoad', 'uint32:0', 'uint32:0'),
            (r, 'org.mycelia.Router1', 'ReportOutcome', 'array:string:'),
            (g, 'org.mycelia.Gossip1', 'Leave'),
        ]
        for c in calls:
            self.assert_denied(NOBODY, *c)
        # Properties are read-only; Set is refused by the policy before the daemon sees it.
        self.assert_denied(NOBODY, NAMES['shimd'], 'org.freedesktop.DBus.Properties', 'Set',
                           'string:org.mycelia.Shim1', 'string:RequestsTotal', 'variant:uint64:0')
        # Root and members of the mycelia group may (sd-bus leaves the decision to the policy:
        # the methods are SD_BUS_VTABLE_UNPRIVILEGED).
        for who in (ROOT, GROUP_MEMBER):
            self.assert_allowed(who, g, 'org.mycelia.Gossip1', 'Join', 'array:string:127.0.0.1:9')
            self.assert_allowed(who, g, 'org.mycelia.Gossip1', 'SetLocalMetadata', 'string:policy-test', 'string:1')
            self.assert_allowed(who, g, 'org.mycelia.Gossip1', 'SetLocalLoad', 'uint32:0', 'uint32:0')
        # ReportOutcome takes arrays of structs, which dbus-send cannot write: busctl.
        for who, ok in ((NOBODY, False), (ROOT, True), (GROUP_MEMBER, True)):
            p = subprocess.run(who + ['busctl', '--address=' + self.address, 'call', r, '/org/mycelia/Router1',
                                      'org.mycelia.Router1', 'ReportOutcome', 'a(ssttuus)a(su)', '0', '0'],
                               capture_output=True, timeout=10)
            if ok:
                self.assertEqual(p.returncode, 0, p.stderr)
            else:
                self.assertNotEqual(p.returncode, 0)
                self.assertIn(b'Access denied', p.stderr)
        self.assertTrue(self.daemons['gossipd'].alive())

    def test_3b_shard_store_needs_privilege(self):
        # ShardStore1: every method, reads of stored documents (Get, Search) included, is for
        # root and the mycelia group; its properties are open (test_2). docs/systemd.md.
        self.require_daemons()
        s = SHARDSTORE

        def calls(name):
            doc = '{"documents":[{"id":"a","text":"policy","embedding":[1,0,0]}]}'
            return [(s, s, 'CreateCollection', 'string:' + name, 'uint32:3', 'string:cosine', 'string:'),
                    (s, s, 'Put', 'string:' + name, 'string:' + doc),
                    (s, s, 'Get', 'string:' + name, 'string:a'),
                    (s, s, 'Search', 'string:' + name, 'string:{"embedding":[1,0,0],"k":1}'),
                    (s, s, 'Delete', 'string:' + name, 'string:a'),
                    (s, s, 'DeleteCollection', 'string:' + name)]
        for who, name in ((ROOT, 'policy-root'), (GROUP_MEMBER, 'policy-group')):
            for c in calls(name):
                out = self.assert_allowed(who, *c)
                if c[2] == 'Get':
                    self.assertIn('policy', out)
        # nobody: refused by the bus, also on a collection that exists and holds a document.
        self.assert_allowed(ROOT, *calls('policy-nobody')[0])
        self.assert_allowed(ROOT, *calls('policy-nobody')[1])
        for c in calls('policy-nobody'):
            self.assert_denied(NOBODY, *c)
        self.assert_allowed(NOBODY, s, 'org.freedesktop.DBus.Properties', 'Get', 'string:' + s, 'string:Collections')
        self.assertTrue(self.daemons['shardd'].alive(), self.daemons['shardd'].tail())

    def test_4_leave_allowed_for_the_group(self):
        self.require_daemons()
        # Last, because Leave makes gossipd exit (0) once its peers were told.
        self.assert_allowed(GROUP_MEMBER, NAMES['gossipd'], 'org.mycelia.Gossip1', 'Leave')
        self.assertEqual(self.daemons['gossipd'].wait(10), 0, self.daemons['gossipd'].tail())


if __name__ == '__main__':
    preflight()
    testenv.main()
