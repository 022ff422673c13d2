# SPDX-License-Identifier: LGPL-2.1-or-later
# What every Python test file shares: the paths meson passes in the environment, skipping, and the
# exit code meson reads (0 pass, 1 fail, 77 skipped), with the rule that under CI a skip fails.
"""Skips, environment lookups and the runner of every tests/**/test_*.py. Standard library only.

A test file finds this module through sys.path: tests/integration/harness.py puts tests/ on it,
the other files do it themselves from their own __file__ (so they also run by hand).

The rules (docs/testing.md):
- A path meson names is required: a variable that is unset or names no existing file is a
  failure (exit 1), never a skip. A binary that was not built is a wiring mistake.
- skip_all(reason) ends a file that cannot run here (not root, a tool missing): exit 77 with
  'SKIP: reason'. Under CI=true it exits 1 with 'FAIL: would skip under CI: reason' instead,
  unless the reason is allowed there (allowed_in_ci=True). Call it before the tests run (module
  level or a preflight), never from inside a test: unittest would count the SystemExit as an error.
- Inside a test, self.skipTest(reason) is a skip that fails the file under CI=true;
  skip_allowed_in_ci(reason) is one that CI accepts (what the machine may lack, like IPv6).
- main() runs the file's tests: any failure -> 1; no test run -> 1; under CI=true any skip not
  allowed there -> 1, naming each; every test skipped -> 77; else 0.
"""

import os
import sys
import time
import unittest

SKIP_EXIT = 77
FAIL_EXIT = 1
# A skip reason starting with this is allowed under CI=true.
ALLOWED_IN_CI = 'allowed in CI: '


def in_ci():
    return os.environ.get('CI') == 'true'


def fail_now(message):
    print('FAIL: ' + message, flush=True)
    sys.exit(FAIL_EXIT)


def skip_all(reason, allowed_in_ci=False):
    """Ends the file as skipped (77); under CI=true as failed (1) unless allowed_in_ci."""
    if in_ci() and not allowed_in_ci:
        fail_now('would skip under CI: ' + reason)
    print('SKIP: ' + reason, flush=True)
    sys.exit(SKIP_EXIT)


def skip_allowed_in_ci(reason):
    """Skips the running test with a reason CI accepts: for what a CI machine may lack."""
    raise unittest.SkipTest(ALLOWED_IN_CI + reason)


def env_value(name):
    """The value meson set in name; fails (exit 1) when it is unset or empty."""
    v = os.environ.get(name)
    if not v:
        fail_now('environment variable %s is not set (run the test through meson test)' % name)
    return v


def env_path(name):
    """The existing file or folder meson named in name; fails (exit 1) otherwise."""
    p = env_value(name)
    if not os.path.exists(p):
        fail_now('environment variable %s names %s, which does not exist (not built?)' % (name, p))
    return p


def require_env(*names):
    """Fails (exit 1) unless every variable names an existing file; returns the paths."""
    return [env_path(n) for n in names]


def main(cleanup=None):
    """unittest.main on __main__ with a last line 'summary FILE: N run, P passed, F failed,
    S skipped, T s', then exits by the rules above. cleanup, if given, runs before the exit."""
    t0 = time.monotonic()
    rc = FAIL_EXIT
    try:
        res = unittest.main(module='__main__', verbosity=2, exit=False, buffer=False).result
        n_run = res.testsRun
        n_fail = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses)
        n_skip = len(res.skipped)
        # A setUpClass that skips or fails records one entry for its class (not a TestCase) and
        # runs none of its tests; a failed subTest names its test in test_case.
        not_passed = set()
        entries = [t for t, _ in res.failures + res.errors + res.skipped] + res.unexpectedSuccesses
        for test in entries:
            test = getattr(test, 'test_case', test)
            if isinstance(test, unittest.TestCase):
                not_passed.add(test.id())
        n_pass = n_run - len(not_passed)
        print('\nsummary %s: %d run, %d passed, %d failed, %d skipped, %.1fs' % (
            os.path.basename(sys.argv[0]), n_run, n_pass, n_fail, n_skip,
            time.monotonic() - t0), flush=True)
        not_allowed = [(t, why) for t, why in res.skipped if not why.startswith(ALLOWED_IN_CI)]
        if n_fail:
            rc = FAIL_EXIT
        elif n_run == 0 and n_skip == 0:
            print('FAIL: no test ran (none found, or none matched the names given)', flush=True)
            rc = FAIL_EXIT
        elif in_ci() and not_allowed:
            for test, why in not_allowed:
                print('FAIL: skipped under CI: %s: %s' % (test.id(), why), flush=True)
            rc = FAIL_EXIT
        elif n_pass <= 0:
            print('SKIP: every test skipped', flush=True)
            rc = SKIP_EXIT
        else:
            rc = 0
    finally:
        if cleanup is not None:
            cleanup()
    sys.exit(rc)
