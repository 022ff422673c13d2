# SPDX-License-Identifier: LGPL-2.1-or-later
# What the Python benchmarks share: the binaries of a build tree, named in the environment the
# way meson names them for the tests, and the integration harness that runs and reaps them.
"""use_build(BUILD_DIR, program) sets MYCELIA_NODE, ... OLLAMA_DOUBLE (keeping any the
environment already names, as meson's test environment does), exits naming the first one that
is not built, and returns the harness module (tests/integration/harness.py)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BINARIES = (('MYCELIA_NODE', 'services/node/mycelia-node'),
            ('MYCELIA_SHIMD', 'services/shimd/mycelia-shimd'),
            ('MYCELIA_ROUTERD', 'services/routerd/mycelia-routerd'),
            ('MYCELIA_GOSSIPD', 'services/gossipd/mycelia-gossipd'),
            ('MYCELIA_DISCOVERYD', 'services/discoveryd/mycelia-discoveryd'),
            ('MYCELIA_SHARDD', 'services/shardd/mycelia-shardd'),
            ('OLLAMA_DOUBLE', 'tests/ollama-double/ollama-double'))


def use_build(build, program):
    for var, rel in BINARIES:
        path = os.environ.get(var) or os.path.join(build, rel)
        if not os.access(path, os.X_OK):
            sys.exit('%s: %s is not built (ninja -C %s)' % (program, path, build))
        os.environ[var] = path
    sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))
    import harness  # noqa: E402  (after the environment it reads)
    return harness
