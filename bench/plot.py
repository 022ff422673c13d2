#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The figures of bench/RESULTS.md: one function per benchmark, drawn as SVG from the numbers a
# run left in bench/plots/<name>.json, so a figure can be redrawn without running it again.
"""bench/plot.py [--dir DIR] NAME... | all

Redraws DIR/NAME.svg (default DIR: bench/plots) from DIR/NAME.json with matplotlib (Debian's
python3-matplotlib, hence /usr/bin/python3; Agg backend, no display, no network). NAME is one of
scaleout, gravity, failure-detection, search, resume; `all` draws every NAME whose JSON exists.

The benchmarks call save(): it writes the JSON, then draws in the same process when matplotlib
imports there, else runs this file with /usr/bin/python3 (the benchmarks themselves stay standard
library only and may run under another python3).
"""

import argparse
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_DIR = os.path.join(HERE, 'plots')
SYSTEM_PYTHON = '/usr/bin/python3'
FOOT = 0.075


# --- What the benchmarks call (standard library only) ------------------------------------------

def add_arguments(ap):
    """--plot DIR and --no-plot on a benchmark's argparse parser."""
    ap.add_argument('--plot', metavar='DIR', default=DEFAULT_DIR,
                    help='write NAME.json and NAME.svg of this run there (default bench/plots)')
    ap.add_argument('--no-plot', action='store_true', help='neither write the JSON nor draw')


def provenance(command):
    """What every JSON says about its run: the command, when, on which tree and machine."""
    try:
        commit = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(['git', '--no-optional-locks', '-C', ROOT, 'status', '--porcelain'],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = '', ''
    return {'command': command, 'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
            'commit': (commit or 'unknown') + (' plus uncommitted changes' if dirty else ''),
            'cpus': os.cpu_count(), 'kernel': platform.release()}


def save(name, data, plot_dir, program):
    """Writes plot_dir/name.json, then draws plot_dir/name.svg. Never raises for the drawing:
    a benchmark's numbers are printed already, a missing figure is said on stderr."""
    os.makedirs(plot_dir, exist_ok=True)
    path = os.path.join(plot_dir, name + '.json')
    with open(path + '.tmp', 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write('\n')
    os.replace(path + '.tmp', path)
    try:
        if importlib.util.find_spec('matplotlib') is not None:
            svg = draw(name, plot_dir)
        else:
            # Its stdout (the SVG's path) must not land in the benchmark's report.
            r = subprocess.run([SYSTEM_PYTHON, os.path.abspath(__file__), '--dir', plot_dir, name],
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError('%s exited %d: %s' % (SYSTEM_PYTHON, r.returncode,
                                                         (r.stderr.strip().splitlines() or ['?'])[-1]))
            svg = r.stdout.strip()
        print('# %s: plot %s (numbers in %s)' % (program, svg, path), file=sys.stderr, flush=True)
    except Exception as e:  # noqa: BLE001  the run's numbers are out already
        print('# %s: no plot (%s); the numbers are in %s: %s bench/plot.py --dir %s %s' % (
            program, e, path, SYSTEM_PYTHON, plot_dir, name), file=sys.stderr, flush=True)


def load(name, plot_dir):
    with open(os.path.join(plot_dir, name + '.json')) as f:
        return json.load(f)


# --- Drawing (matplotlib) ----------------------------------------------------------------------

def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    matplotlib.rcParams.update({
        'svg.fonttype': 'none',        # text stays text: smaller, diffable, searchable
        'svg.hashsalt': 'mycelia',     # stable element ids, so a redraw of the same JSON is the same file
        'font.size': 11, 'axes.titlesize': 13, 'axes.labelsize': 11, 'legend.fontsize': 10,
        'xtick.labelsize': 10, 'ytick.labelsize': 10,
        'axes.grid': True, 'grid.alpha': 0.3, 'axes.axisbelow': True,
        'figure.dpi': 100,
    })
    import matplotlib.pyplot as plt
    return plt


def _footer(fig, data):
    """The run's command, date and tree in small print under the figure (tight_layout leaves
    FOOT of the height for it)."""
    fig.text(0.01, 0.01, '%s\n%s  ·  %s  ·  %s CPUs' % (data['command'], data['date'], data['commit'], data['cpus']),
             fontsize=8, color='0.4', ha='left', va='bottom', linespacing=1.4)


def _write(fig, plot_dir, name):
    path = os.path.join(plot_dir, name + '.svg')
    fig.savefig(path, format='svg', metadata={'Date': None, 'Creator': None})
    return path


def quantile(v, q):
    """The sample at rank ceil(q n): the p-th percentile the benchmarks' tables use."""
    v = sorted(v)
    if not v:
        return float('nan')
    return v[max(0, min(len(v) - 1, math.ceil(round(q * len(v), 9)) - 1))]


def fig_scaleout(data, plt):
    """Aggregate tokens/s by mesh size against N times one node (the ideal line)."""
    rows = data['rows']
    ns = [r['nodes'] for r in rows]
    tps = [r['tokens_per_s'] for r in rows]
    one = tps[0]
    fig, ax = plt.subplots(figsize=(7, 4.8))
    ideal = [n * one for n in ns]
    ax.plot(ns, ideal, '--', color='0.45', label='ideal: N × one node (%.0f tokens/s)' % one)
    ax.fill_between(ns, [0.95 * x for x in ideal], ideal, color='0.85', label='target: ≥ 0.95 × ideal')
    ax.plot(ns, tps, 'o-', color='tab:blue', lw=2, ms=7, label='measured')
    for n, t, i in zip(ns, tps, ideal):
        ax.annotate('%.0f (×%.2f)' % (t, t / i), (n, t), textcoords='offset points', xytext=(8, -14), fontsize=10)
    ax.set_xticks(ns)
    ax.set_xlim(min(ns) - 0.3, max(ns) + 0.5)
    ax.set_ylim(0, max(ideal + tps) * 1.15)
    ax.set_xlabel('nodes in the mesh (N), every client on the first node')
    ax.set_ylabel('aggregate tokens/s')
    ax.set_title('Scale-out: aggregate tokens/s against the ideal line')
    ax.legend(loc='upper left')
    fig.tight_layout(rect=(0, FOOT, 1, 1))
    _footer(fig, data)
    return fig


def fig_gravity(data, plt):
    """Time to first token with gravity and with round-robin: CDF and p50/p95/p99."""
    from matplotlib import ticker
    colors = {'gravity': 'tab:green', 'round-robin': 'tab:orange'}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.6), gridspec_kw={'width_ratios': [3, 2]})
    qs = (0.50, 0.95, 0.99)
    width = 0.38
    for i, policy in enumerate(('gravity', 'round-robin')):
        v = sorted(x * 1e3 for x in data['ttft_s'][policy])
        if not v:
            continue
        a1.step(v, [(k + 1) / len(v) for k in range(len(v))], where='post', color=colors[policy], lw=2,
                label='%s (%d requests)' % (policy, len(v)))
        vals = [quantile(v, q) for q in qs]
        xs = [j + (i - 0.5) * width for j in range(len(qs))]
        bars = a2.bar(xs, vals, width, color=colors[policy], label=policy)
        for b, val in zip(bars, vals):
            a2.annotate('%.0f' % val, (b.get_x() + b.get_width() / 2, val), textcoords='offset points',
                        xytext=(0, 2), ha='center', fontsize=9)
    a1.set_xscale('log')
    a1.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
    a1.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: '%g' % x))
    a1.xaxis.set_minor_formatter(ticker.NullFormatter())
    a1.set_xlabel('time to first token (ms, log scale)')
    a1.set_ylabel('fraction of requests')
    a1.set_ylim(0, 1.02)
    a1.set_title('TTFT distribution')
    a1.legend(loc='lower right')
    a2.set_xticks(range(len(qs)))
    a2.set_xticklabels(['p50', 'p95', 'p99'])
    a2.set_ylabel('time to first token (ms)')
    a2.set_title('TTFT percentiles (all rounds)')
    a2.set_ylim(0, a2.get_ylim()[1] * 1.3)  # room for the legend
    a2.legend(loc='upper left')
    fig.suptitle('Context gravity against round-robin: 3 nodes, %d conversations × %d turns, %d slot(s) per node'
                 % (data['conversations'], data['turns'], data['parallel']), fontsize=13)
    fig.tight_layout(rect=(0, FOOT, 1, 1))
    _footer(fig, data)
    return fig


def fig_failure_detection(data, plt):
    """SWIM failure detection by cluster size: every kill's time, p50 and p99 per N."""
    ns = [r['nodes'] for r in data['rows']]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for key, label, color, dx in (('suspect_ms', 'suspect-or-dead at every node (routing stops)', 'tab:blue', 0.93),
                                  ('dead_ms', 'dead at every node', 'tab:red', 1.07)):
        for r in data['rows']:
            ax.scatter([r['nodes'] * dx] * len(r[key]), r[key], s=14, color=color, alpha=0.35, lw=0)
        ax.plot(ns, [quantile(r[key], 0.5) for r in data['rows']], 'o-', color=color, lw=2, label=label + ', p50')
        ax.plot(ns, [quantile(r[key], 0.99) for r in data['rows']], 's--', color=color, lw=1.5, label=label + ', p99')
    ax.set_xscale('log')
    ax.set_xticks(ns)
    ax.set_xticklabels(['%d\n(%d kills)' % (r['nodes'], len(r['suspect_ms'])) for r in data['rows']])
    ax.set_xlim(min(ns) / 1.6, max(ns) * 1.6)
    ax.set_ylim(0, 1.5 * max(x for r in data['rows'] for x in r['suspect_ms'] + r['dead_ms']))  # room for the legend
    ax.set_xlabel('simulated nodes N (log scale)')
    ax.set_ylabel('time from the kill (ms)')
    ax.set_title('SWIM failure detection by cluster size (simulator, %g%% loss)' % (data['loss'] * 100))
    ax.legend(loc='upper left', fontsize=9)
    fig.tight_layout(rect=(0, FOOT, 1, 1))
    _footer(fig, data)
    return fig


def fig_search(data, plt):
    """Queries/s of shardd's index and of faiss IndexFlatIP per size, one at a time and batched."""
    import statistics
    runs = sorted(data['runs'].values(), key=lambda r: (r['rows'] * r['dim'], r['rows']))
    fig, ax = plt.subplots(figsize=(max(7, 2.6 * len(runs) + 2), 5))
    series = (('faiss', 'single', 'faiss, one query at a time', '#f4a582'),
              ('ours', 'single', 'shardd, one query at a time', '#92c5de'),
              ('faiss', 'batch', 'faiss, batches', '#ca0020'),
              ('ours', 'batch', 'shardd, batches', '#0571b0'))
    width = 0.2
    top, bottom = 0, float('inf')
    for i, (who, mode, label, color) in enumerate(series):
        xs, ys = [], []
        for j, r in enumerate(runs):
            xs.append(j + (i - 1.5) * width)
            ys.append(statistics.median(r['qps'][who][mode]))
        bars = ax.bar(xs, ys, width, color=color, label=label)
        top, bottom = max(top, max(ys)), min(bottom, min(ys))
        if who == 'ours':
            for b, r in zip(bars, runs):
                q = r['qps']
                ratio = statistics.median(q['ours'][mode]) / statistics.median(q['faiss'][mode])
                ax.annotate('×%.2f' % ratio, (b.get_x() + b.get_width() / 2, b.get_height()),
                            textcoords='offset points', xytext=(0, 3), ha='center', fontsize=9)
    ax.set_yscale('log')
    ax.set_ylim(bottom / 2, top * 12)  # room for the legend
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(['%s × %d\nbatch %d, top-%d\n%s' % (format(r['rows'], ','), r['dim'], r['batch'], r['k'],
                                                           r['date'][:10]) for r in runs])
    ax.set_xlabel('vectors × dimensions (normalized float32), exact search')
    ax.set_ylabel('queries/s, one thread (log scale)')
    ax.set_title('Vector search: shardd index against faiss IndexFlatIP (×: shardd / faiss)')
    ax.legend(loc='upper left', ncol=2, fontsize=9)
    fig.tight_layout(rect=(0, FOOT, 1, 1))
    last = max(runs, key=lambda r: r['date'])
    if len(runs) > 1:
        last = dict(last, command='bench/search.py, one run per size (its command in search.json)')
    _footer(fig, last)
    return fig


def fig_resume(data, plt):
    """Stream resume: every kill's gap from the kill to the next line at the client, as a CDF per
    kind, with p50 and p99 marked and the target (failure detection + one TTFT)."""
    from matplotlib import ticker
    labels = {'node': 'whole node killed', 'ollama': 'its Ollama killed'}
    colors = {'node': 'tab:red', 'ollama': 'tab:blue'}
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    lo = data['target_ms']
    for kind, r in data['kinds'].items():
        v = sorted(r['gaps_ms'])
        if not v:
            continue
        lo = min(lo, v[0])
        p50, p99 = quantile(v, 0.5), quantile(v, 0.99)
        ax.step(v, [(k + 1) / len(v) for k in range(len(v))], where='post', color=colors.get(kind), lw=2,
                label='%s: p50 %.0f ms (o), p99 %.0f ms (s); %d of %d streams correct' % (
                    labels.get(kind, kind), p50, p99, r['correct'], r['kills']))
        ax.plot([p50], [0.5], ls='none', marker='o', color=colors.get(kind), ms=7)
        ax.plot([p99], [0.99], ls='none', marker='s', color=colors.get(kind), ms=7)
    ax.axvline(data['target_ms'], ls='--', color='0.3')
    ax.annotate('target %.0f ms\n(failure detection %.0f\n+ TTFT p50 %.0f)' % (
        data['target_ms'], data['detection_ms'], quantile(data['ttft_ms'], 0.5)), (data['target_ms'], 0.75),
        textcoords='offset points', xytext=(-8, 0), ha='right', fontsize=9, color='0.3')
    ax.set_xscale('log')
    ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: '%g' % x))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlim(lo / 1.5, data['target_ms'] * 1.5)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel('from the kill to the next line at the client (ms, log scale)')
    ax.set_ylabel('fraction of kills')
    ax.set_title('Stream resume: the serving node dies after %d of %d tokens' % (data['cut_after'], data['tokens']))
    ax.legend(loc='lower right', fontsize=9)
    fig.tight_layout(rect=(0, FOOT, 1, 1))
    _footer(fig, data)
    return fig


FIGURES = {'scaleout': fig_scaleout, 'gravity': fig_gravity, 'failure-detection': fig_failure_detection,
           'search': fig_search, 'resume': fig_resume}


def draw(name, plot_dir=DEFAULT_DIR):
    """Draws plot_dir/name.svg from plot_dir/name.json; returns the SVG's path."""
    plt = _pyplot()
    fig = FIGURES[name](load(name, plot_dir), plt)
    try:
        return _write(fig, plot_dir, name)
    finally:
        plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--dir', default=DEFAULT_DIR, help='where NAME.json is and NAME.svg goes (default bench/plots)')
    ap.add_argument('names', nargs='+', metavar='NAME', help=', '.join(FIGURES) + ' or all')
    a = ap.parse_args()
    names = [n for n in FIGURES if os.path.exists(os.path.join(a.dir, n + '.json'))] if a.names == ['all'] else a.names
    bad = [n for n in names if n not in FIGURES]
    if bad:
        ap.error('unknown figure %s (known: %s)' % (', '.join(bad), ', '.join(FIGURES)))
    for n in names:
        print(draw(n, a.dir))


if __name__ == '__main__':
    main()
