#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The SWIM simulator benchmark: N = 10, 100, 1000 nodes with the LAN defaults and 5% loss,
# several seeds and kills each; prints a Markdown section for bench/RESULTS.md.
# Usage: bench/swim-sim.sh BUILD_DIR [SEEDS] [KILLS]   (defaults: 5 seeds, 5 kills; N=1000 runs
# min(SEEDS, 2) seeds of 3 kills, it takes minutes per seed)
#        bench/swim-sim.sh --load BUILD_DIR [SEEDS] [WINDOW]   gossip traffic per node with every
# node's load changing every second against the same mesh idle, and against the load as
# metadata, the earlier way (defaults: 3 seeds, a 20 s window; N=1000 runs 1 seed)
# Options anywhere: --plot DIR (default bench/plots) writes the detection times by N as
# DIR/failure-detection.json and draws DIR/failure-detection.svg (bench/plot.py); --no-plot does
# neither. The --load mode draws nothing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
plot_dir="$here/plots"
args=()
while [ $# -gt 0 ]; do
        case "$1" in
        --plot) plot_dir=${2:?--plot takes a directory}; shift 2 ;;
        --plot=*) plot_dir=${1#--plot=}; shift ;;
        --no-plot) plot_dir=; shift ;;
        *) args+=("$1"); shift ;;
        esac
done
set -- "${args[@]+"${args[@]}"}"

if [ "${1:-}" = "--load" ]; then
        shift
        build=${1:?usage: bench/swim-sim.sh --load BUILD_DIR [SEEDS] [WINDOW]}
        seeds=${2:-3}
        window=${3:-20}
        sim="$build/tests/sim/swim-sim"
        [ -x "$sim" ] || { echo "no $sim; build first" >&2; exit 1; }
        out=$(mktemp -d /tmp/swim-sim-load.XXXXXX)
        for n in 10 100 1000; do
                s=$seeds
                [ "$n" -ge 1000 ] && s=1
                for seed in $(seq 1 "$s"); do
                        for mode in none static change meta; do
                                echo "swim-sim: N=$n seed=$seed load=$mode" >&2
                                "$sim" --nodes "$n" --loss 0.05 --seed "$seed" --kills 0 --window "$window" --load "$mode" \
                                        >>"$out/n$n-$mode.jsonl" 2>>"$out/n$n.err"
                        done
                done
        done
        python3 - "$out" "$(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)" "$seeds" "$window" <<'PY'
import json, os, sys, platform

out, commit, seeds, window = sys.argv[1:5]

def runs(n, mode):
    return [json.loads(l) for l in open(os.path.join(out, f'n{n}-{mode}.jsonl'))]

def avg(v):
    return sum(v) / len(v)

print(f"- Commit: {commit} plus the working tree; command: `bench/swim-sim.sh --load BUILD {seeds} {window}`"
      f" ({seeds} seeds for N = 10 and 100, 1 for N = 1000; each run: `swim-sim --nodes N --loss 0.05 --seed S"
      f" --kills 0 --window {window} --load MODE`)")
print(f"- Machine: {os.cpu_count()} CPUs, {platform.machine()}, kernel {platform.release()}")
print("- LAN defaults, 5% loss; bytes and packets are those sent per live node per second (datagrams and push-pull)"
      f" over a {window} s window of steady state that starts 2 s after convergence (loads change from 1 s after it). Modes: *no load* sets none (as"
      " before this change), *idle* sets one with swim_set_local_load() at start, *changing* sets a new one on every"
      " node every second, *as metadata* sets metadata \"in_flight\" on every node every second (what routerd did"
      " before). Same seed, same mesh: only the load differs.")
print("- Load age: of every (observer, member) pair, sampled once a second just before the change, how long ago the"
      " observer heard the member's load (p50 / p99 / max); never: pairs with none yet; current: pairs holding"
      " the value the member has now (for *as metadata*: its in_flight metadata).")
print()
print("| N | runs | no load B/node/s | idle B/node/s | changing B/node/s | **changing / idle** | changing / no load"
      " | as metadata B/node/s | as metadata / no load | packets/node/s idle / changing / as metadata"
      " | load age p50 / p99 / max | never | current: changing / as metadata |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in (10, 100, 1000):
    r = {m: runs(n, m) for m in ('none', 'static', 'change', 'meta')}
    b = {m: avg([x['bytes_per_node_per_s'] for x in r[m]]) for m in r}
    p = {m: avg([x['packets_per_node_per_s'] for x in r[m]]) for m in r}
    c = r['change']
    print(f"| {n} | {len(c)} | {b['none']:.0f} | {b['static']:.0f} | {b['change']:.0f} |"
          f" **{b['change'] / b['static']:.2f}** | {b['change'] / b['none']:.2f} | {b['meta']:.0f} |"
          f" {b['meta'] / b['none']:.1f} | {p['static']:.1f} / {p['change']:.1f} / {p['meta']:.1f} |"
          f" {avg([x['load_age_p50_ms'] for x in c]) / 1000:.1f} / {avg([x['load_age_p99_ms'] for x in c]) / 1000:.1f}"
          f" / {max(x['load_age_max_ms'] for x in c) / 1000:.1f} s |"
          f" {avg([x['load_never_pct'] for x in c]):.1f}% |"
          f" {avg([x['load_current_pct'] for x in c]):.0f}% / {avg([x['load_current_pct'] for x in r['meta']]):.0f}% |")
PY
        echo "raw results: $out" >&2
        exit 0
fi

build=${1:?usage: bench/swim-sim.sh BUILD_DIR [SEEDS] [KILLS]}
seeds=${2:-5}
kills=${3:-5}
sim="$build/tests/sim/swim-sim"
[ -x "$sim" ] || { echo "no $sim; build first" >&2; exit 1; }
out=$(mktemp -d /tmp/swim-sim-bench.XXXXXX)

for n in 10 100 1000; do
        s=$seeds k=$kills
        if [ "$n" -ge 1000 ]; then
                s=$(( seeds < 2 ? seeds : 2 )) k=3
        fi
        for seed in $(seq 1 "$s"); do
                echo "swim-sim: N=$n seed=$seed kills=$k" >&2
                "$sim" --nodes "$n" --loss 0.05 --seed "$seed" --kills "$k" >>"$out/n$n.jsonl" 2>>"$out/n$n.err"
        done
done

python3 - "$out" "$(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "$here" "$plot_dir" "$seeds" "$kills" <<'PY'
import json, math, os, sys, platform

out, commit = sys.argv[1], sys.argv[2]
here, plot_dir, seeds, kills = sys.argv[3:7]

def pct(v, p):
    v = sorted(v)
    if not v:
        return float('nan')
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]

rows = []
plot_rows = []
for n in (10, 100, 1000):
    runs = [json.loads(l) for l in open(os.path.join(out, f'n{n}.jsonl'))]
    plot_rows.append({'nodes': n, 'runs': len(runs), 'suspect_ms': [x for r in runs for x in r['suspect_all_ms']],
                      'dead_ms': [x for r in runs for x in r['dead_all_ms']],
                      'false_deaths': sum(r['false_deaths'] for r in runs),
                      'all_checks': all(r['all_dead'] and r['meta_ok'] for r in runs)})
    sus = [x for r in runs for x in r['suspect_all_ms']]
    dead = [x for r in runs for x in r['dead_all_ms']]
    meta = [r['meta_spread_s'] * 1000 for r in runs]
    join = [r['meta_join_s'] * 1000 for r in runs]
    rows.append((n, len(runs), len(sus), pct(sus, 50), pct(sus, 99), max(sus), pct(dead, 50), pct(dead, 99),
                 max(dead), pct(join, 50), max(join), pct(meta, 50), max(meta),
                 sum(r['packets_per_node_per_s'] for r in runs) / len(runs),
                 sum(r['bytes_per_node_per_s'] for r in runs) / len(runs),
                 sum(r['false_deaths'] for r in runs), all(r['all_dead'] and r['meta_ok'] for r in runs),
                 sum(r['converge_s'] for r in runs) / len(runs)))

print(f"- Commit: {commit} plus the working tree; command: `bench/swim-sim.sh BUILD` (5 seeds x 5 kills for N = 10 and 100,"
      " 2 seeds x 3 kills for N = 1000)")
print(f"- Machine: {os.cpu_count()} CPUs, {platform.machine()}, kernel {platform.release()}")
print("- LAN defaults (swim_config_lan), 5% independent datagram loss, 1-2 ms latency, push-pull over a lossless"
      " \"TCP\"; joins one node every 10 ms by push-pull with a random node already in; kills one node at a time"
      " after convergence. Times are from the kill until every live node holds the node suspect-or-dead (routing"
      " stops using it) or dead; metadata: a node joins, and once all know it, sets \"models\"; packets and bytes"
      " are sent datagrams per live node over 10 s of steady state.")
print()
print("| N | runs | kills | suspect-or-dead everywhere p50 | p99 | max | dead everywhere p50 | p99 | max |"
      " new node known by all p50 / max | its metadata at all p50 / max | packets/node/s | bytes/node/s |"
      " false deaths | all checks | converged after first start (avg) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (n, runs, k, s50, s99, smax, d50, d99, dmax, j50, jmax, m50, mmax, pps, bps, fd, ok, conv) in rows:
    print(f"| {n} | {runs} | {k} | {s50:.0f} ms | {s99:.0f} ms | {smax:.0f} ms | {d50:.0f} ms | {d99:.0f} ms |"
          f" {dmax:.0f} ms | {j50:.0f} / {jmax:.0f} ms | {m50:.0f} / {mmax:.0f} ms | {pps:.1f} | {bps:.0f} | {fd} |"
          f" {'yes' if ok else 'NO'} | {conv:.1f} s |")

if plot_dir:
    sys.path.insert(0, here)
    import plot
    data = plot.provenance(f'bench/swim-sim.sh BUILD {seeds} {kills}')
    data.update(rows=plot_rows, loss=0.05, seeds=int(seeds), kills=int(kills))
    plot.save('failure-detection', data, plot_dir, 'bench/swim-sim.sh')
PY
echo "raw results: $out" >&2
