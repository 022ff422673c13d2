#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The shard index (services/shardd/shard-search.c, through mycelia-search-bench) against faiss's
# IndexFlatIP on the same vectors and queries, single-threaded, in one run.
"""bench/search.py [BUILD_DIR] [--rows N] [--dim D] [--queries Q] [--batch B] [--k K] [--seed S] [--repeats R]
                 [--plot DIR | --no-plot]

Run by hand, never by meson test, with /usr/bin/python3: it has Debian's python3-numpy and
python3-faiss (a pyenv python3 first on PATH has neither).

Generates N x D float32 vectors and Q queries (standard normal, normalized, seeded), writes them as
raw float32 files, and R times in turn: faiss IndexFlatIP one query at a time, then in batches of
B; mycelia-search-bench (BUILD_DIR/bench) on the same files, the same two ways. One thread each:
faiss.omp_set_num_threads(1) and OPENBLAS_NUM_THREADS=1 (faiss scores batches with OpenBLAS
sgemm, whose own threads omp_set_num_threads does not reach); the bench calls
openblas_set_num_threads(1). Prints a Markdown section for bench/RESULTS.md: queries/s (median of
the repeats), the ratio ours/faiss of each repeat and of the medians, and recall@K of our ids
against faiss's. Then adds this run's queries/s to DIR/search.json (default bench/plots), replacing
an earlier run of the same N x D, batch and K and keeping the other sizes, and draws
DIR/search.svg with every size it holds (bench/plot.py); --no-plot does neither.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

# Before numpy and faiss load OpenBLAS, which reads it once.
os.environ['OPENBLAS_NUM_THREADS'] = '1'
os.environ['OMP_NUM_THREADS'] = '1'

import numpy as np  # noqa: E402
import faiss  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import plot  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('build', nargs='?', default=os.path.join(ROOT, 'build'))
ap.add_argument('--rows', type=int, default=100000)
ap.add_argument('--dim', type=int, default=384)
ap.add_argument('--queries', type=int, default=1000)
ap.add_argument('--batch', type=int, default=32)
ap.add_argument('--k', type=int, default=10)
ap.add_argument('--seed', type=int, default=20261207)
ap.add_argument('--repeats', type=int, default=3)
plot.add_arguments(ap)
ARGS = ap.parse_args()
if not (1 <= ARGS.rows <= 10000000 and 1 <= ARGS.dim <= 8192 and 1 <= ARGS.queries <= 100000 and
        1 <= ARGS.batch <= 4096 and 1 <= ARGS.k <= 1000 and 1 <= ARGS.repeats <= 20):
    ap.error('--rows 1..10^7, --dim 1..8192, --queries 1..10^5, --batch 1..4096, --k 1..1000, --repeats 1..20')

BENCH = os.path.join(os.path.abspath(ARGS.build), 'bench', 'mycelia-search-bench')
MODES = ('single', 'batch%d' % ARGS.batch)


def normalized(rng, n):
    x = rng.standard_normal((n, ARGS.dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32)


def faiss_run(index, xq, batch):
    """(queries/s, ids per query) for xq in batches of batch."""
    index.search(xq[:1], ARGS.k)  # warm-up, as the bench does
    ids = []
    t0 = time.perf_counter()
    for i in range(0, len(xq), batch):
        _, labels = index.search(xq[i:i + batch], ARGS.k)
        ids.extend(labels)
    dt = time.perf_counter() - t0
    return len(xq) / dt, [[int(v) for v in row if v >= 0] for row in ids]


def ours_run(vectors, queries):
    """{mode: (queries/s, ids per query)} from one run of mycelia-search-bench."""
    out = subprocess.run([BENCH, '--dim', str(ARGS.dim), '--vectors', vectors, '--queries', queries,
                          '--k', str(ARGS.k), '--batch', str(ARGS.batch)],
                         check=True, capture_output=True, text=True).stdout
    qps, ids = {}, {m: [None] * ARGS.queries for m in MODES}
    for line in out.splitlines():
        f = line.split()
        if f[0] in MODES and f[1] == 'qps':
            qps[f[0]] = float(f[2])
        elif f[0] in MODES:
            ids[f[0]][int(f[1])] = [int(v) for v in f[2:]]
    return {m: (qps[m], ids[m]) for m in MODES}


def recall(ours, theirs):
    return statistics.mean(len(set(a) & set(b)) / ARGS.k for a, b in zip(ours, theirs))


def main():
    if not os.access(BENCH, os.X_OK):
        sys.exit('bench/search.py: %s is not built (ninja -C %s)' % (BENCH, ARGS.build))
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(ARGS.seed)
    xb, xq = normalized(rng, ARGS.rows), normalized(rng, ARGS.queries)
    index = faiss.IndexFlatIP(ARGS.dim)
    index.add(xb)

    qps = {(who, m): [] for who in ('faiss', 'ours') for m in MODES}
    recalls = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix='mycelia-bench-search-') as tmp:
        vectors, queries = os.path.join(tmp, 'vectors.f32'), os.path.join(tmp, 'queries.f32')
        xb.tofile(vectors)
        xq.tofile(queries)
        for rep in range(ARGS.repeats):
            theirs = {MODES[0]: faiss_run(index, xq, 1), MODES[1]: faiss_run(index, xq, ARGS.batch)}
            ours = ours_run(vectors, queries)
            for m in MODES:
                qps['faiss', m].append(theirs[m][0])
                qps['ours', m].append(ours[m][0])
                recalls[m].append(recall(ours[m][1], theirs[m][1]))
                print('# repeat %d %s: faiss %.1f q/s, ours %.1f q/s, recall@%d %.4f' % (
                    rep + 1, m, theirs[m][0], ours[m][0], ARGS.k, recalls[m][-1]), file=sys.stderr, flush=True)

    print('## Search (shardd index vs faiss IndexFlatIP)\n')
    print('`/usr/bin/python3 bench/search.py BUILD --rows %d --dim %d --queries %d --batch %d --k %d --seed %d '
          '--repeats %d`, %d cores, one thread each.\n' % (
              ARGS.rows, ARGS.dim, ARGS.queries, ARGS.batch, ARGS.k, ARGS.seed, ARGS.repeats, os.cpu_count()))
    print('| mode | faiss q/s | shardd q/s | ratio (medians) | ratio per repeat | recall@%d |' % ARGS.k)
    print('|---|---:|---:|---:|---|---:|')
    for m in MODES:
        f, o = qps['faiss', m], qps['ours', m]
        label = 'one query at a time' if m == 'single' else 'batches of %d' % ARGS.batch
        print('| %s | %.1f | %.1f | %.2f | %s | %.4f |' % (
            label, statistics.median(f), statistics.median(o), statistics.median(o) / statistics.median(f),
            ', '.join('%.2f' % (b / a) for a, b in zip(f, o)), min(recalls[m])))
    print('\nfaiss %s, numpy %s, OpenBLAS core %s.' % (faiss.__version__, np.__version__, openblas_core()))
    sys.stdout.flush()
    if not ARGS.no_plot:
        save_plot(qps, recalls)


def save_plot(qps, recalls):
    try:
        data = plot.load('search', ARGS.plot)
    except (OSError, ValueError):
        data = {'runs': {}}
    run = plot.provenance('/usr/bin/python3 bench/search.py BUILD --rows %d --dim %d --queries %d --batch %d '
                          '--k %d --seed %d --repeats %d' % (ARGS.rows, ARGS.dim, ARGS.queries, ARGS.batch,
                                                              ARGS.k, ARGS.seed, ARGS.repeats))
    run.update(rows=ARGS.rows, dim=ARGS.dim, queries=ARGS.queries, batch=ARGS.batch, k=ARGS.k, seed=ARGS.seed,
               repeats=ARGS.repeats, faiss=faiss.__version__,
               qps={who: {'single' if m == 'single' else 'batch': qps[who, m] for m in MODES}
                    for who in ('faiss', 'ours')},
               recall={'single' if m == 'single' else 'batch': min(recalls[m]) for m in MODES})
    data['runs']['%dx%d-batch%d-k%d' % (ARGS.rows, ARGS.dim, ARGS.batch, ARGS.k)] = run
    plot.save('search', data, ARGS.plot, 'bench/search.py')


def openblas_core():
    try:
        import ctypes
        lib = ctypes.CDLL('libopenblas.so.0')
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return 'unknown'


if __name__ == '__main__':
    main()
