#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The generated units as meson installs them: `systemd-analyze verify` finds nothing to say, and
# `systemd-analyze security --offline=yes` rates every service "OK" or better.
"""verify checks that ExecStart= exists, so it runs on a copy of the generated units whose
libexec paths point at the build tree's daemons (symlinks in a temporary folder); nothing else
is changed. Any output of verify is a failure, not only its exit status: it reports unknown keys
as warnings and still exits 0."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import testenv  # noqa: E402  (tests/testenv.py)

DAEMONS = ('gossipd', 'discoveryd', 'routerd', 'shardd', 'shimd')
# systemd-analyze security: lower is better. These names are 252's, best first.
GOOD_ENOUGH = ('PERFECT', 'SAFE', 'OK')


def preflight():
    testenv.require_env('MYCELIA_UNITS_DIR', *['MYCELIA_%sD' % d[:-1].upper() for d in DAEMONS])
    testenv.env_value('MYCELIA_UNIT_NAMES')
    testenv.env_value('MYCELIA_PKGLIBEXECDIR')
    if not shutil.which('systemd-analyze'):
        testenv.skip_all('systemd-analyze is not installed (package systemd)')


class Units(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.units_dir = testenv.env_path('MYCELIA_UNITS_DIR')
        cls.names = testenv.env_value('MYCELIA_UNIT_NAMES').split()
        # Where the units say the daemons are once installed: need not exist here.
        cls.pkglibexecdir = testenv.env_value('MYCELIA_PKGLIBEXECDIR')
        cls.tmp = tempfile.mkdtemp(prefix='mycelia-units-')
        libexec = os.path.join(cls.tmp, 'libexec')
        units = os.path.join(cls.tmp, 'units')
        os.mkdir(libexec)
        os.mkdir(units)
        for d in DAEMONS:
            os.symlink(testenv.env_path('MYCELIA_%sD' % d[:-1].upper()),
                       os.path.join(libexec, 'mycelia-' + d))
        for n in cls.names:
            with open(os.path.join(cls.units_dir, n)) as f:
                text = f.read()
            with open(os.path.join(units, n), 'w') as f:
                f.write(text.replace(cls.pkglibexecdir + '/', libexec + '/'))
        cls.test_units = units

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_every_unit_generated(self):
        expected = {'mycelia-%s.service' % d for d in DAEMONS} | {
            'mycelia-gossipd.socket', 'mycelia-shardd.socket', 'mycelia-shimd.socket', 'mycelia-shimd-mesh.socket',
            'mycelia.target'}
        self.assertEqual(set(self.names), expected)
        for n in self.names:
            with open(os.path.join(self.units_dir, n)) as f:
                text = f.read()
            self.assertIsNone(re.search(r'@[A-Za-z_]+@|\\@', text), '%s has an unsubstituted @variable@' % n)

    def test_target_wants_every_unit(self):
        # `systemctl start mycelia.target` (and the packages, which only enable the target) start
        # every socket and service; each of them stops with it (PartOf=).
        with open(os.path.join(self.units_dir, 'mycelia.target')) as f:
            wants = set()
            for line in f:
                if line.startswith('Wants='):
                    wants.update(line[len('Wants='):].split())
        self.assertEqual(wants, set(self.names) - {'mycelia.target'})
        for n in wants:
            with open(os.path.join(self.units_dir, n)) as f:
                self.assertIn('\nPartOf=mycelia.target\n', f.read(), n)

    def test_verify(self):
        paths = [os.path.join(self.test_units, n) for n in self.names]
        # verify runs man(1) on Documentation=man:... : give it the project's own pages, as
        # installed (MANPATH/man1/), so a page the units name but man/ lacks fails here.
        man_root = tempfile.mkdtemp(prefix='mycelia-man-')
        os.mkdir(os.path.join(man_root, 'man1'))
        src_man = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'man')
        for page in os.listdir(src_man):
            if page.endswith('.1'):
                shutil.copy(os.path.join(src_man, page), os.path.join(man_root, 'man1', page))
        try:
            p = subprocess.run(['systemd-analyze', 'verify'] + paths, capture_output=True, timeout=60,
                               cwd=self.test_units, env=dict(os.environ, MANPATH=man_root))
        finally:
            shutil.rmtree(man_root, ignore_errors=True)
        out = (p.stdout + p.stderr).decode(errors='replace').strip()
        print('systemd-analyze verify %s: rc=%d%s' % (' '.join(self.names), p.returncode,
                                                      (', output:\n' + out) if out else ', no output'),
              file=sys.stderr)
        self.assertEqual(p.returncode, 0, out)
        self.assertEqual(out, '', 'systemd-analyze verify had something to say')

    def test_security(self):
        scores = {}
        for n in self.names:
            if not n.endswith('.service'):
                continue
            p = subprocess.run(['systemd-analyze', 'security', '--offline=yes', '--no-pager', os.path.join(self.test_units, n)],
                               capture_output=True, timeout=60, cwd=self.test_units)
            out = (p.stdout + p.stderr).decode(errors='replace')
            m = re.search(r'Overall exposure level for %s: ([0-9.]+) ([A-Z]+)' % re.escape(n), out)
            self.assertIsNotNone(m, 'no exposure level for %s:\n%s' % (n, out))
            scores[n] = (float(m.group(1)), m.group(2))
            print('%s: exposure %s %s' % (n, m.group(1), m.group(2)), file=sys.stderr)
            self.assertIn(m.group(2), GOOD_ENOUGH, '%s is rated %s %s, worse than OK:\n%s' % (
                n, m.group(1), m.group(2), out))
        self.assertEqual(len(scores), len(DAEMONS))
        # shardd is the one that writes user data to disk: never less hardened than routerd.
        self.assertLessEqual(scores['mycelia-shardd.service'][0], scores['mycelia-routerd.service'][0])


if __name__ == '__main__':
    preflight()
    testenv.main()
