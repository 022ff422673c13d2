#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Stream resume (docs/stream-resume.md): time from the death of the node serving a streamed chat
# to the next token at the client, whose one stream the entry node continues on another node.
"""bench/resume.py [BUILD_DIR] [--kills N] [--kind node|ollama|both] [--plot DIR | --no-plot]

Run by hand, never by meson test. Python 3 standard library only (the figure: bench/plot.py).

Three mycelia-node launchers on loopback (harness.start_mesh: ra, rb, rc), each in front of its
own Ollama double (--tokens 40 --token-delay-ms 20 --num-parallel 4, model shared:latest). For
each kind, N times (--kills N each, default 50; --kind both does N of each, node first):

  1. a streamed /api/chat enters at ra with X-Mycelia-Policy: round-robin and is reopened until
     X-Mycelia-Served-By says rb (as tests/integration/test_resume.py does);
  2. after 6 token lines the victim is SIGKILLed: node = the launcher rb and every process under
     it (the pids read from /proc before the stream opens, as test_failover.kill_node does, so
     that the kill is one burst of kill(2) calls), ollama = only rb's double;
     t_kill = time.monotonic() right after the last kill(2) returned;
  3. gap = arrival of the next complete line at the client - t_kill. ra's journal notice
     ("... after K tokens; resuming the stream on node X") says how many lines rb had relayed;
     when K > 6, lines written before the kill were still in flight and the first line of the
     continuation is line K+1: its gap is reported apart ("first continuation line");
  4. the stream is judged: a clean chunked end, no error object, the joined text equal to the
     uninterrupted answer (asked of rc's double directly), 41 lines with one final object last,
     eval_count 40, mycelia_resumed 1, ra's mycelia_shim_resumes_total one higher;
  5. the victim is restarted (node: a new launcher on the same state dir, id and ports, seeded
     with ra's gossip address as before; ollama: a new double on the same port) and the run
     waits until ra's routing table has all three nodes up with models (start_mesh's all_up);
     then one short chat pinned to rb through ra (X-Mycelia-Node, num_predict 1): its success
     ends ra's run of failures for rb, else every third kill in a row opens ra's circuit breaker
     for rb (docs/router-outcomes.md) and the next waits 1, 2, 4 ... 30 s for it to close.

Before the kills, 20 fresh chats through ra (round-robin, so local and forwarded alike) give the
time to first token: connect-and-send to the first complete line. The issue's target is "below
gossip's failure-detection time plus one time-to-first-token"; the failure-detection time is the
SWIM simulator's N = 10 'dead at every node' p50 of bench/RESULTS.md (1164 ms, --detection-ms).
Prints a markdown table and the command; writes DIR/resume.json and draws DIR/resume.svg.
"""

import argparse
import json
import os
import re
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

sys.path.insert(0, HERE)
import plot  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
ap.add_argument('build', nargs='?', default=os.path.join(ROOT, 'build'))
ap.add_argument('--kills', type=int, default=50, help='kills of each kind (1..200, default 50)')
ap.add_argument('--kind', choices=('node', 'ollama', 'both'), default='both')
ap.add_argument('--ttft-requests', type=int, default=20)
ap.add_argument('--detection-ms', type=float, default=1164.0,
                help="gossip's failure-detection time for the target (default: RESULTS.md, SWIM simulator, "
                     "N = 10, dead at every node, p50)")
plot.add_arguments(ap)
ARGS = ap.parse_args()
if not (1 <= ARGS.kills <= 200 and 1 <= ARGS.ttft_requests <= 200):
    ap.error('--kills 1..200, --ttft-requests 1..200')

import benchenv  # noqa: E402

harness = benchenv.use_build(os.path.abspath(ARGS.build), 'bench/resume.py')
from harness import proc_descendants, wait_until  # noqa: E402

NAMES = ('ra', 'rb', 'rc')
MODEL = 'shared:latest'
TOKENS = 40
CUT_AFTER = 6
DOUBLE_ARGS = ('--tokens', str(TOKENS), '--token-delay-ms', '20', '--num-parallel', '4')
MESSAGES = [{'role': 'user', 'content': 'Tell me a long story about the mesh.'}]
BODY = {'model': MODEL, 'messages': MESSAGES, 'options': {'seed': 3}}
RR = {'X-Mycelia-Policy': 'round-robin'}
BACK_TIMEOUT = 30.0
NOTICE_RX = re.compile(r'Request (\d+): node (\S+) (.*?) after (\d+) tokens; resuming the stream on node (\S+) \((.*)\)\.')


def log(msg):
    print('# ' + msg, file=sys.stderr, flush=True)


class Mesh:
    def __init__(self):
        self.doubles, self.nodes = harness.start_mesh(NAMES, MODEL, double_args=DOUBLE_ARGS, timeout=BACK_TIMEOUT)
        self.a, self.b = self.nodes['ra'], self.nodes['rb']
        self.ids = {n.node_id: name for name, n in self.nodes.items()}
        self.log_offset = os.path.getsize(self.a.proc.log_path)

    def all_up(self):
        t = self.a.router_nodes()
        return len(t) == len(NAMES) and all(s == 'up' and m for s, m in t.values())

    def wait_whole(self):
        wait_until(self.all_up, BACK_TIMEOUT, interval=0.05, what="ra's routing table with all 3 nodes up")

    def reset_breaker(self):
        """One short answer from rb through ra (pinned): a success closes ra's breaker run for rb
        (docs/router-outcomes.md), so that each kill is the first failure in a row and rb never
        cools down for 1, 2 ... 30 s because the benchmark keeps killing it. Retried (after ra's
        table is whole again) until BACK_TIMEOUT; returns the answers that were not a success."""
        deadline = time.monotonic() + BACK_TIMEOUT
        misses = []
        while True:
            r = self.a.request('POST', '/api/chat', dict(BODY, stream=False, options={'seed': 3, 'num_predict': 1}),
                               headers={'X-Mycelia-Node': 'rb'}, timeout=30)
            if r.status == 200 and r.header('X-Mycelia-Served-By') == 'rb':
                return misses
            misses.append('%d from %s: %s' % (r.status, r.header('X-Mycelia-Served-By'),
                                              r.body[:200].decode('utf-8', 'replace')))
            if time.monotonic() > deadline:
                raise RuntimeError('no answer from rb through ra in %.0f s: %s' % (BACK_TIMEOUT, misses[-1]))
            time.sleep(0.2)
            self.wait_whole()

    def cooling(self):
        """ra's Router1.Cooling entries for rb."""
        return [t for t in self.a.prop('org.mycelia.Router1', 'Cooling') if t[0] == self.b.node_id]

    def resumes(self):
        text = self.a.request('GET', '/metrics', timeout=10).body.decode()
        return int(re.search(r'^mycelia_shim_resumes_total (\d+)$', text, re.M).group(1))

    def new_log(self):
        """What ra's launcher wrote to stderr (its daemons' journal lines) since the last call."""
        with open(self.a.proc.log_path, 'rb') as f:
            f.seek(self.log_offset)
            data = f.read()
        self.log_offset += len(data)
        return data.decode('utf-8', 'replace')

    def restart_node(self):
        """A new launcher for rb on its state dir, id and ports (chaos.py's crash restart)."""
        b = self.b
        old = b.proc
        old.kill_tree()
        try:
            old.log.close()
        except OSError:
            pass
        host, port = b.addr
        argv = b.argv + ['--api', '%s:%d' % (host, port), '--gossip', b.gossip, '--mesh', b.mesh,
                         '--shard', b.shard]
        b.proc = harness.Proc(argv, name='mycelia-node', logdir=b.dir)
        m = b.proc.wait_line(harness.READY_RX, timeout=BACK_TIMEOUT)
        fields = dict(f.split('=', 1) for f in m.group(3).split() if '=' in f)
        if m.group(1) != b.api_url or fields.get('node') != b.node_id:
            raise RuntimeError('rb restarted with api %s node %s, was %s %s' % (
                m.group(1), fields.get('node'), b.api_url, b.node_id))

    def restart_ollama(self):
        d = self.doubles['rb']
        d.proc.kill_tree()
        try:
            d.proc.log.close()
        except OSError:
            pass
        d.start(d.port)

    def stop(self):
        harness.stop_mesh(self.doubles, self.nodes)


def open_on_b(mesh):
    """A chat entering at ra and served by rb (round-robin: at most three tries while every node
    is up; a few more, with a pause, in case ra still holds rb cooled after the last kill)."""
    for i in range(30):
        s = mesh.a.stream('POST', '/api/chat', BODY, headers=RR, timeout=30)
        if s.status == 200 and s.header('X-Mycelia-Served-By') == 'rb':
            return s, i + 1
        s.close()
        if i % 3 == 2:
            time.sleep(0.2)
    raise RuntimeError('no stream was served by rb in 30 tries')


def one_kill(mesh, kind, want):
    """One stream, one kill: returns a dict with the gap(s) and the verdict."""
    res = {'kind': kind, 'ok': False, 'problems': []}
    if kind == 'node':
        victims = [mesh.b.pid] + proc_descendants(mesh.b.pid)
    else:
        victims = [mesh.doubles['rb'].proc.pid]
    before = mesh.resumes()
    mesh.new_log()
    s, tries = open_on_b(mesh)
    res['tries'] = tries
    objs, times = [], []
    with s:
        it = s.lines()
        for _ in range(CUT_AFTER):
            t, line = next(it)
            times.append(t)
            objs.append(json.loads(line))
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        t_kill = time.monotonic()
        try:
            for t, line in it:
                times.append(t)
                objs.append(json.loads(line))
        except (TimeoutError, harness.ProtocolError, ValueError) as e:
            res['problems'].append('stream: %r' % e)
        clean = s.clean_end
    after = times[CUT_AFTER:]
    res['gap_s'] = after[0] - t_kill if after else None
    ra_log = mesh.new_log()
    res['ra_log'] = [line for line in ra_log.splitlines() if re.search(r'cool|in a row|suspect|resum', line)]
    notices = NOTICE_RX.findall(ra_log)
    k = None
    if len(notices) != 1:
        res['problems'].append('%d resume notices in ra\'s log: %r' % (len(notices), notices))
    else:
        _, node, why, k, to, reason = notices[0]
        k = int(k)
        res.update(relayed_before_cut=k, cut=why, resumed_on=mesh.ids.get(to, to), reason=reason)
        if mesh.ids.get(node) != 'rb':
            res['problems'].append('the notice names node %s, not rb' % node)
    first_cont = k if k is not None else CUT_AFTER
    res['first_continuation_gap_s'] = (times[first_cont] - t_kill) if len(times) > first_cont else None
    # The verdict.
    if not clean:
        res['problems'].append('the chunked body did not end cleanly')
    errs = [o for o in objs if 'error' in o]
    if errs:
        res['problems'].append('error object(s): %r' % errs[:2])
    text = ''.join(o.get('message', {}).get('content', '') for o in objs)
    if text != want:
        res['problems'].append('joined text differs from the uninterrupted answer (%d against %d chars)' % (
            len(text), len(want)))
    finals = [i for i, o in enumerate(objs) if o.get('done')]
    if len(objs) != TOKENS + 1 or finals != [len(objs) - 1]:
        res['problems'].append('%d lines, final objects at %r (want %d lines, one final last)' % (
            len(objs), finals, TOKENS + 1))
    final = objs[-1] if objs else {}
    if final.get('eval_count') != TOKENS:
        res['problems'].append('eval_count %r' % final.get('eval_count'))
    if final.get('mycelia_resumed') != 1:
        res['problems'].append('mycelia_resumed %r' % final.get('mycelia_resumed'))
    res['resumes_delta'] = mesh.resumes() - before
    if res['resumes_delta'] != 1:
        res['problems'].append('mycelia_shim_resumes_total +%d' % res['resumes_delta'])
    res['ok'] = not res['problems']
    return res


def run_kind(mesh, kind, n, want):
    results = []
    for i in range(n):
        t0 = time.monotonic()
        try:
            r = one_kill(mesh, kind, want)
        except Exception as e:  # noqa: BLE001 - a kill that goes wrong is a finding, reported
            r = {'kind': kind, 'ok': False, 'problems': ['%s: %s' % (type(e).__name__, e)], 'gap_s': None,
                 'first_continuation_gap_s': None}
        t1 = time.monotonic()
        r['index'] = i + 1
        try:
            r['cooling_after_kill'] = mesh.cooling()
            mesh.restart_node() if kind == 'node' else mesh.restart_ollama()
            mesh.wait_whole()
            r['reset_misses'] = mesh.reset_breaker()
            r['restart_log'] = [line for line in mesh.new_log().splitlines()
                                if re.search(r'cool|in a row|suspect|resum', line)]
        except Exception as e:  # noqa: BLE001  the victim not back: reported, and this kind stops
            r['not_back'] = str(e).split('\n')[0]
            results.append(r)
            log('%s kill %d: the victim is not back: %s; stopping this kind' % (kind, i + 1, r['not_back']))
            return results, True
        r['back_s'] = time.monotonic() - t1
        results.append(r)
        if r['cooling_after_kill'] or r['reset_misses']:
            log('%s kill %d: ra cooling rb %r, reset misses %r, ra log %r %r' % (
                kind, i + 1, r['cooling_after_kill'], r['reset_misses'], r['ra_log'], r['restart_log']))
        log('%s kill %d/%d: gap %s ms, first continuation line %s ms, K=%s on %s, back %.2fs, cycle %.1fs%s' % (
            kind, i + 1, n, ms(r.get('gap_s')), ms(r.get('first_continuation_gap_s')), r.get('relayed_before_cut'),
            r.get('resumed_on'), r['back_s'], time.monotonic() - t0, '' if r['ok'] else ' FAILED %r' % r['problems']))
    return results, False


def ms(v):
    return '-' if v is None else '%.0f' % (v * 1e3)


def ttft(mesh, n):
    out = []
    for _ in range(n):
        with mesh.a.stream('POST', '/api/chat', BODY, headers=RR, timeout=30) as s:
            it = s.lines()
            t, _line = next(it)
            out.append((t - s.t_start, s.header('X-Mycelia-Served-By')))
            for _ in it:
                pass
    return out


def q(v, p):
    return plot.quantile(v, p) if v else float('nan')


def main():
    kinds = ('node', 'ollama') if ARGS.kind == 'both' else (ARGS.kind,)
    command = 'bench/resume.py BUILD --kills %d --kind %s' % (ARGS.kills, ARGS.kind)
    t_start = time.monotonic()
    mesh = Mesh()
    want = mesh.doubles['rc'].request('POST', '/api/chat', dict(BODY, stream=False), timeout=30).json()
    want = want['message']['content']
    tt = ttft(mesh, ARGS.ttft_requests)
    ttft_s = [x for x, _ in tt]
    ttft_p50 = q(ttft_s, 0.5)
    log('TTFT p50 %.1f ms over %d chats (served by %s)' % (
        ttft_p50 * 1e3, len(tt), ', '.join('%s %d' % (n, sum(1 for _, w in tt if w == n)) for n in NAMES)))
    by_kind, aborted = {}, {}
    try:
        for kind in kinds:
            by_kind[kind], aborted[kind] = run_kind(mesh, kind, ARGS.kills, want)
    finally:
        mesh.stop()
    elapsed = time.monotonic() - t_start
    target_ms = ARGS.detection_ms + ttft_p50 * 1e3

    print('## Stream resume: time from the serving node\'s death to the next token (bench/resume.py)\n')
    print('`%s`, %d CPUs, %.0f s.\n' % (command.replace('BUILD', ARGS.build), os.cpu_count(), elapsed))
    print('| kill | kills | streams correct | next line after the kill p50 / p90 / p99 / max (ms) | '
          'first continuation line p50 / p99 / max (ms) | lines in flight at the kill | p99 / target |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    rows = {}
    for kind in kinds:
        rs = by_kind[kind]
        gaps = [r['gap_s'] * 1e3 for r in rs if r.get('gap_s') is not None]
        cont = [r['first_continuation_gap_s'] * 1e3 for r in rs if r.get('first_continuation_gap_s') is not None]
        inflight = [r['relayed_before_cut'] - CUT_AFTER for r in rs if r.get('relayed_before_cut') is not None]
        ok = sum(1 for r in rs if r['ok'])
        label = 'whole node (launcher tree)' if kind == 'node' else 'its Ollama only'
        print('| %s | %d%s | %d / %d | %.0f / %.0f / %.0f / %.0f | %.0f / %.0f / %.0f | %s | %.2f |' % (
            label, len(rs), ' (stopped early)' if aborted[kind] else '', ok, len(rs),
            q(gaps, 0.5), q(gaps, 0.9), q(gaps, 0.99), max(gaps, default=float('nan')),
            q(cont, 0.5), q(cont, 0.99), max(cont, default=float('nan')),
            '%d of %d kills (max %d)' % (sum(1 for x in inflight if x), len(inflight), max(inflight, default=0)),
            q(gaps, 0.99) / target_ms))
        rows[kind] = {'gaps_ms': gaps, 'first_continuation_ms': cont, 'correct': ok, 'kills': len(rs),
                      'aborted': aborted[kind],
                      'resumed_on': {n: sum(1 for r in rs if r.get('resumed_on') == n) for n in NAMES},
                      'failures': [{'kill': r['index'], 'problems': r['problems']} for r in rs if not r['ok']],
                      'back_s': [r['back_s'] for r in rs if 'back_s' in r],
                      'not_back': [{'kill': r['index'], 'error': r['not_back']} for r in rs if 'not_back' in r],
                      'cooling_after_kill': [{'kill': r['index'], 'cooling': r['cooling_after_kill'],
                                              'ra_log': r.get('ra_log', [])}
                                             for r in rs if r.get('cooling_after_kill')],
                      'reset_misses': [{'kill': r['index'], 'misses': r['reset_misses'],
                                        'ra_log': r.get('restart_log', [])} for r in rs if r.get('reset_misses')]}
    print()
    print('- Target (the issue): below gossip\'s failure-detection time plus one time-to-first-token = '
          '%.0f ms (SWIM simulator N = 10, dead at every node, p50) + %.1f ms (TTFT p50 of %d fresh chats '
          'through ra, round-robin) = **%.0f ms**.' % (ARGS.detection_ms, ttft_p50 * 1e3, len(ttft_s), target_ms))
    for kind in kinds:
        r = rows[kind]
        print('- %s: resumed on %s; victim back (restarted, ra\'s table whole, one answer from rb) p50 %.2f s, '
              'max %.2f s; ra cooling rb right after the stream: %d of %d kills; the pinned answer from rb '
              'refused at first after %d restarts.' % (
                  kind, ', '.join('%s %d' % kv for kv in r['resumed_on'].items() if kv[1]), q(r['back_s'], 0.5),
                  max(r['back_s'], default=float('nan')), len(r['cooling_after_kill']), r['kills'],
                  len(r['reset_misses'])))
        for f in r['failures']:
            print('  - FAILED stream, kill %d: %s' % (f['kill'], '; '.join(f['problems'])))
        for f in r['not_back']:
            print('  - NOT BACK after kill %d (the rest of this kind not run): %s' % (f['kill'], f['error']))
        for f in r['cooling_after_kill']:
            print('  - kill %d: ra had rb in Router1.Cooling right after the stream: %r' % (f['kill'], f['cooling']))
        for f in r['reset_misses']:
            print('  - kill %d: the pinned answer after the restart: %s' % (f['kill'], ' | '.join(f['misses'])))
    sys.stdout.flush()
    if not ARGS.no_plot:
        data = plot.provenance(command)
        data.update(kills=ARGS.kills, tokens=TOKENS, cut_after=CUT_AFTER, token_delay_ms=20,
                    ttft_ms=[x * 1e3 for x in ttft_s], detection_ms=ARGS.detection_ms, target_ms=target_ms,
                    kinds=rows)
        plot.save('resume', data, ARGS.plot, 'bench/resume.py')
    if any(rows[k]['correct'] != ARGS.kills for k in kinds):
        sys.exit(1)


if __name__ == '__main__':
    try:
        main()
    finally:
        harness.teardown_all()
