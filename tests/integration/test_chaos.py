#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Chaos soak, short (issue 11): bench/chaos.py's core for 60 s on three launchers: daemons killed,
# nodes crashed and restarted, nodes frozen, under mixed client load. Nothing may fail, hang or cut.
"""One implementation: the soak is bench/chaos.py's run_chaos(); this file runs it for 60 s and
asserts. Bounds on resource growth (start sample after 2 s of warm-up, end sample after the load):

- open fds of any process: at most 6 x client threads more. Requests in flight never exceed the
  client threads (each waits for its answer), and a shim's fds beyond its fixed set are: client
  connections (at most the threads), idle pooled connections to its double and to each of two
  peers (at most the threads each: the pool keeps only what was once in use at the same time),
  and the peers' idle pooled connections to its mesh port (the threads each). Anything above
  that is not a pool: a leak of one fd per request (hundreds per shim) is far above it; one per
  event (~8 per node) may stay below, so the report prints every process's growth.
- RSS of any process: at most 4 MiB more. The run sends ~1,000 requests; a shim handles (as
  entry or as the forwarded-to node) ~600 of them: a leak of 7 KiB per request (a response
  buffer) passes the bound. Seen: under 1 MiB.
"""
import contextlib
import os
import sys
import unittest
import warnings

import harness  # puts tests/ on sys.path, for testenv
import testenv

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'MYCELIA_SHARDD', 'OLLAMA_DOUBLE')

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                'bench'))
import chaos  # noqa: E402  bench/chaos.py

# harness.RawStream leaves its socket to the garbage collector when connect() fails (a crashed
# node refuses): unittest would print a ResourceWarning for each.
warnings.filterwarnings('ignore', category=ResourceWarning)

SECONDS = 60
SEED = os.environ.get('CHAOS_SEED', '2026')
RATE = 20.0
THREADS = 6
FD_GROWTH_MAX = 6 * THREADS
RSS_GROWTH_MAX_KIB = 4096


class ChaosSoak(unittest.TestCase):
    def test_soak(self):
        # Under the sanitizer stage, AddressSanitizer's quarantine would be what RSS measures.
        quarantine_off = getattr(harness, 'asan_quarantine_off', contextlib.nullcontext)
        with quarantine_off():
            res = chaos.run_chaos(harness, SECONDS, SEED, RATE, THREADS)
        print(chaos.details(res))
        print(chaos.report(res, 'tests/integration/test_chaos.py (seed %s)' % SEED))
        # Every kind of event happened (the first seven are a shuffle of all kinds).
        self.assertEqual({e['kind'] for e in res.events}, set(chaos.EVENT_KINDS))
        # Each client thread waits for its answer, and a frozen node holds it for up to 3 s, so the
        # rate sent drops during freezes (~16/s of 20 seen); half of it means the load did not run.
        self.assertGreater(res.sent, SECONDS * RATE * 0.5, 'the clients did not keep their rate')
        self.assertEqual(res.warmup_bad, [], 'requests failed before any chaos')
        self.assertEqual(len(res.failed), 0, 'requests failed outside a killed shim')
        self.assertEqual(len(res.hung), 0, 'requests hung past their timeout')
        self.assertEqual(len(res.cut), 0, 'streams cut without an error object')
        self.assertEqual(res.not_back, [], 'victims that did not come back')
        self.assertEqual(res.final_mesh, 'whole')
        self.assertEqual(res.final_check, [], 'requests failed after the soak')
        for (name, exe), a, b in res.growth:
            self.assertIsNotNone(b, '%s of %s is gone at the end' % (exe, name))
            if a is None:
                continue
            self.assertLessEqual(b[2] - a[2], FD_GROWTH_MAX, 'fds of %s on %s: %d -> %d' % (exe, name, a[2], b[2]))
            self.assertLessEqual(b[1] - a[1], RSS_GROWTH_MAX_KIB, 'RSS of %s on %s: %d -> %d KiB' % (
                exe, name, a[1], b[1]))


if __name__ == '__main__':
    testenv.main()
