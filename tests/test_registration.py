#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every test file in the tree is run by a test meson registered: a test-*.c, test_*.py or
# *.test.mjs that no meson.build names would otherwise never run, and nothing would say so.
"""Compares the test files on disk with what meson registered, from the build's
meson-info/intro-tests.json (the commands of the registered tests) and intro-targets.json (the
sources of the executables those commands run):

- tests/unit/test-*.c and tests/ollama-double/test-*.c: a source of an executable that a
  registered test runs (the headers beside them, unit-test.h and the fixtures, are not tests);
- tests/**/test_*.py: a script on the command line of a registered test;
- tests/clients/*.test.mjs: likewise. When meson did not register the client tests at all
  (-Dclient-tests=disabled, or no node with auto) the check is a skip, which fails under CI.

Each pattern must find at least one file: a pattern that matches nothing (a moved folder, a
typo) would otherwise pass by checking nothing. Environment (set by meson): MYCELIA_BUILD_ROOT,
MYCELIA_SOURCE_ROOT, MYCELIA_CLIENT_TESTS ('registered' or why not).
"""

import glob
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testenv  # noqa: E402

BUILD_ROOT, SOURCE_ROOT = testenv.require_env('MYCELIA_BUILD_ROOT', 'MYCELIA_SOURCE_ROOT')
CLIENT_TESTS = testenv.env_value('MYCELIA_CLIENT_TESTS')
INFO = os.path.join(BUILD_ROOT, 'meson-info')

C_PATTERNS = ('tests/unit/test-*.c', 'tests/ollama-double/test-*.c')
PY_PATTERN = 'tests/**/test_*.py'
MJS_PATTERN = 'tests/clients/*.test.mjs'


def on_disk(pattern):
    """Real paths of the files pattern (relative to the source root) matches, node_modules left
    out (npm packages may ship their own tests)."""
    paths = glob.glob(os.path.join(SOURCE_ROOT, pattern), recursive=True)
    return sorted(os.path.realpath(p) for p in paths
                  if os.path.isfile(p) and 'node_modules' not in p.split(os.sep))


def rel(path):
    return os.path.relpath(path, os.path.realpath(SOURCE_ROOT))


def load(name):
    path = os.path.join(INFO, name)
    if not os.path.exists(path):
        testenv.fail_now('%s is missing: MYCELIA_BUILD_ROOT is not a configured meson build' % path)
    with open(path) as f:
        return json.load(f)


class Registration(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tests = load('intro-tests.json')
        targets = load('intro-targets.json')
        # Every word of every registered test's command that is a path: scripts, executables.
        cls.words = {os.path.realpath(w) for t in tests for w in t['cmd'] if os.path.isabs(w)}
        # The sources of the executables those commands run.
        cls.sources = set()
        for target in targets:
            if any(os.path.realpath(f) in cls.words for f in target.get('filename', [])):
                for ts in target.get('target_sources', []):
                    cls.sources.update(os.path.realpath(s) for s in ts.get('sources', []))
        cls.n_tests = len(tests)

    def assert_all_run(self, files, run_by, what):
        self.assertNotEqual(files, [], 'no %s found on disk: the pattern is broken' % what)
        unregistered = [rel(f) for f in files if f not in run_by]
        self.assertEqual(unregistered, [], '%s on disk that no registered meson test runs (add '
                         'them to a meson.build): %s' % (what, ', '.join(unregistered)))
        print('%d %s, each run by a registered test' % (len(files), what), flush=True)

    def test_meson_registered_tests(self):
        self.assertGreater(self.n_tests, 0, 'intro-tests.json lists no test')

    def test_c_tests(self):
        for pattern in C_PATTERNS:
            self.assert_all_run(on_disk(pattern), self.sources, pattern)

    def test_python_tests(self):
        self.assert_all_run(on_disk(PY_PATTERN), self.words, PY_PATTERN)

    def test_client_tests(self):
        files = on_disk(MJS_PATTERN)
        self.assertNotEqual(files, [], 'no %s found on disk: the pattern is broken' % MJS_PATTERN)
        if CLIENT_TESTS != 'registered':
            self.skipTest('client tests not registered by meson: ' + CLIENT_TESTS)
        self.assert_all_run(files, self.words, MJS_PATTERN)


if __name__ == '__main__':
    testenv.main()
