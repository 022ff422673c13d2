#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Turns the raw numbers bench/run.sh collected (wrk and mycelia-stream-bench "key=value" lines)
# into the Markdown report: tables per measurement, ratios shim/nginx, and the targets.

import sys

ADDED_P50_TARGET_US = 100


def read_meta(path):
    meta = {'nginx_cmd': []}
    with open(path) as f:
        for line in f:
            key, _, value = line.rstrip('\n').partition('=')
            if key == 'nginx_cmd':
                meta['nginx_cmd'].append(value)
            else:
                meta[key] = value
    return meta


def read_results(path):
    res = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            target, test = parts[0], parts[1]
            kv = {}
            for p in parts[2:]:
                k, _, v = p.partition('=')
                try:
                    kv[k] = float(v)
                except ValueError:
                    kv[k] = v
            res[(target, test)] = kv
    return res


def us(v):
    if v is None:
        return 'n/a'
    if abs(v) >= 10000:
        return f'{v / 1000:.1f} ms'
    return f'{v:.0f} µs'


def signed_us(v):
    if v is None:
        return 'n/a'
    s = us(abs(v))
    return ('+' if v >= 0 else '−') + s


def main():
    meta = read_meta(sys.argv[1])
    res = read_results(sys.argv[2])
    commands = open(sys.argv[3]).read().splitlines() if len(sys.argv) > 3 else []
    targets = meta['targets'].split()
    label = {t: meta.get('label.' + t, t) for t in targets}
    conns = meta['connections']
    kk = meta['stream_concurrency']
    slow = meta['slow_delay_ms']
    clk = float(meta.get('clk_tck', '100'))

    def get(t, test, key):
        v = res.get((t, test), {}).get(key)
        return v if isinstance(v, float) else None

    def added(t, test, key):
        a, d = get(t, test, key), get('direct', test, key)
        return None if a is None or d is None else a - d

    def errors(t, test):
        r = res.get((t, test))
        if r is None:
            return 'no result'
        n = sum(int(r.get(k, 0)) for k in ('err_connect', 'err_read', 'err_write', 'err_status', 'err_timeout'))
        return str(n)

    def cpu_per_req(t, test):
        ticks, reqs = get(t, test, 'cpu_ticks'), get(t, test, 'requests')
        if ticks is None or not reqs:
            return 'n/a'
        return f'{ticks / clk * 1e6 / reqs:.0f} µs'

    out = []
    w = out.append
    w(f'# Mycelia benchmark run, {meta["date"]}')
    w('')
    w(f'- Machine: {meta["nproc"]} CPUs, {meta["cpu"]}, kernel {meta["kernel"]}')
    w(f'- Commit: {meta["commit"]}, build dir {meta["build_dir"]} (buildtype {meta["buildtype"]})')
    w(f'- Command: `{meta["command"]}`')
    w(f'- Tools: nginx {meta["nginx"]}, {meta["wrk"]}')
    w(f'- Double: `{meta["double_cmd"]}`')
    if meta.get('node_cmd'):
        w(f'- Shim: `{meta["node_cmd"]}`')
    for c in meta['nginx_cmd']:
        w(f'- nginx: `{c}`')
    w('')
    w('nginx runs with one worker because mycelia-shimd is one event loop on one core; the '
      '"auto" row (one worker per core) is for reference. wrk uses one thread; on this 2-core machine '
      'wrk, the proxy and the double share the cores. "CPU/req" is the CPU time of the path\'s own '
      'server processes (the double for direct, the proxy alone otherwise) per request.')
    w('')

    w(f'## Throughput: {conns} connections, wrk 1 thread, {meta["duration"]} s each')
    w('')
    w('| path | GET /api/version req/s | p50 | p99 | CPU/req | POST /api/generate (stream:false) req/s | p50 | p99 | CPU/req | errors |')
    w('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    tv, tg = f'version-c{conns}', f'generate-c{conns}'
    for t in targets:
        rv, rg = get(t, tv, 'rps'), get(t, tg, 'rps')
        w(f'| {label[t]} | {rv or 0:.0f} | {us(get(t, tv, "p50_us"))} | {us(get(t, tv, "p99_us"))} '
          f'| {cpu_per_req(t, tv)} | {rg or 0:.0f} | {us(get(t, tg, "p50_us"))} | {us(get(t, tg, "p99_us"))} '
          f'| {cpu_per_req(t, tg)} | {errors(t, tv)} / {errors(t, tg)} |')
    w('')

    w('## Latency: 1 connection (added = path p50 − direct p50)')
    w('')
    w('| path | GET /api/version p50 | p99 | added p50 | POST /api/generate p50 | p99 | added p50 | errors |')
    w('|---|---:|---:|---:|---:|---:|---:|---:|')
    for t in targets:
        w(f'| {label[t]} | {us(get(t, "version-c1", "p50_us"))} | {us(get(t, "version-c1", "p99_us"))} '
          f'| {signed_us(added(t, "version-c1", "p50_us")) if t != "direct" else "—"} '
          f'| {us(get(t, "generate-c1", "p50_us"))} | {us(get(t, "generate-c1", "p99_us"))} '
          f'| {signed_us(added(t, "generate-c1", "p50_us")) if t != "direct" else "—"} '
          f'| {errors(t, "version-c1")} / {errors(t, "generate-c1")} |')
    w('')

    for delay in ('0', slow):
        w(f'## Streaming /api/generate: {meta["tokens"]} tokens, double --token-delay-ms {delay}')
        w('')
        w('TTFT: request start (connect) to the first complete NDJSON line; TBT: gap between '
          'consecutive token lines of one response (the final done line is not a token); '
          'a new connection per request.')
        w('')
        w('| path | concurrency | requests ok/failed | TTFT p50 | TTFT p99 | added TTFT p50 | TBT p50 | TBT p99 | TBT min |')
        w('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
        for k in ('1', kk):
            test = f'stream{delay}-k{k}'
            for t in targets:
                if (t, test) not in res:
                    w(f'| {label[t]} | {k} | no result | | | | | | |')
                    continue
                w(f'| {label[t]} | {k} | {get(t, test, "ok"):.0f}/{get(t, test, "failed"):.0f} '
                  f'| {us(get(t, test, "ttft_p50_us"))} | {us(get(t, test, "ttft_p99_us"))} '
                  f'| {signed_us(added(t, test, "ttft_p50_us")) if t != "direct" else "—"} '
                  f'| {us(get(t, test, "tbt_p50_us"))} | {us(get(t, test, "tbt_p99_us"))} '
                  f'| {us(get(t, test, "tbt_min_us"))} |')
        w('')

    w('## Ratios and targets')
    w('')
    for base in ('nginx1', 'nginxauto'):
        if 'shim' not in targets or base not in targets:
            continue
        for test, name in ((tv, 'GET /api/version'), (tg, 'POST /api/generate')):
            s, n = get('shim', test, 'rps'), get(base, test, 'rps')
            if s is None or not n:
                continue
            verdict = ''
            if base == 'nginx1':
                verdict = ' — target shim ≥ nginx: ' + ('met' if s >= n else 'MISSED')
            w(f'- Throughput {name}, shim / {label[base]}: {s:.0f} / {n:.0f} = **{s / n:.2f}**{verdict}')
    for t in ('shim', 'nginx1', 'nginxauto'):
        if t not in targets:
            continue
        for test, name in (('generate-c1', 'POST /api/generate'), ('version-c1', 'GET /api/version')):
            a = added(t, test, 'p50_us')
            if a is None:
                continue
            verdict = ''
            if t == 'shim':
                verdict = f' — target ≤ {ADDED_P50_TARGET_US} µs: ' + ('met' if a <= ADDED_P50_TARGET_US else 'MISSED')
            w(f'- Added p50 latency, {label[t]}, {name} at 1 connection: {signed_us(a)}{verdict}')
    if 'shim' in targets and 'nginx1' in targets:
        a_s, a_n = added('shim', 'generate-c1', 'p50_us'), added('nginx1', 'generate-c1', 'p50_us')
        if a_s is not None and a_n is not None and a_n > 0:
            w(f'- Added p50 latency ratio shim / nginx (1 worker), POST /api/generate: **{a_s / a_n:.2f}**')
    for t in targets:
        a = added(t, 'stream0-k1', 'ttft_p50_us')
        if t != 'direct' and a is not None:
            w(f'- Added TTFT p50, {label[t]}, sequential, no token delay: {signed_us(a)}')
    for t in targets:
        for k in ('1', kk):
            test = f'stream{slow}-k{k}'
            p50, mn = get(t, test, 'tbt_p50_us'), get(t, test, 'tbt_min_us')
            if p50 is None:
                continue
            batched = mn is not None and mn < float(slow) * 1000 / 2
            w(f'- TBT at {slow} ms token delay, {label[t]}, concurrency {k}: p50 {us(p50)}, min {us(mn)}'
              f' — ' + ('SOME TOKENS ARRIVED BATCHED' if batched else 'not batched'))
    w('')
    if meta.get('double_stats'):
        w(f'Double stats after the run: `{meta["double_stats"]}`')
        w('')
    w('<details><summary>Load commands, in the order run</summary>')
    w('')
    w('```')
    out.extend(commands)
    w('```')
    w('</details>')
    print('\n'.join(out))


if __name__ == '__main__':
    main()
