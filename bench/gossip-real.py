#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Real processes on loopback: N mycelia-node launchers (default 8) joined by seeds. Measures how
# fast a SIGKILLed node leaves every Members and routing table, and how fast metadata spreads.
"""bench/gossip-real.py [BUILD_DIR] [--nodes N] [--kills K] [--updates U] [--timeout S]

Run by hand, never by meson test. Python 3 standard library and busctl only.

(a) K times: SIGKILL one whole node (its launcher stopped first, then every process of it, so
    nothing leaves gracefully and nothing is restarted). Each other node ("observer") is
    watched with `busctl monitor`; per observer: time until its gossipd reports the victim
    suspect (MemberUpdated state suspect), failed (MemberFailed), and until its routerd's
    Router1.Nodes no longer has the victim up (PropertiesChanged). Times are the monitor's
    receive timestamps minus the time of the kill. The victim is then replaced by a fresh node.
(b) U times: SetLocalMetadata("bench", VALUE) on one node; per observer, time until its
    gossipd reports the new value (MemberUpdated).

Prints a Markdown section (the command, the configuration, p50/p99/max) for bench/RESULTS.md.
Every process runs under the integration harness, which kills them all on any exit path.
"""

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('build', nargs='?', default=os.path.join(ROOT, 'build'))
    ap.add_argument('--nodes', type=int, default=8)
    ap.add_argument('--kills', type=int, default=10)
    ap.add_argument('--updates', type=int, default=10)
    ap.add_argument('--timeout', type=float, default=600.0, help='the whole run, seconds')
    ap.add_argument('--round-timeout', type=float, default=15.0)
    a = ap.parse_args()
    if not 3 <= a.nodes <= 16 or not 1 <= a.kills <= 50 or not 0 <= a.updates <= 100:
        ap.error('--nodes 3..16, --kills 1..50, --updates 0..100')
    return a


ARGS = parse_args()
BUILD = os.path.abspath(ARGS.build)
sys.path.insert(0, HERE)
import benchenv  # noqa: E402

harness = benchenv.use_build(BUILD, 'bench/gossip-real.py')
from harness import Double, Node, Proc, proc_descendants, random_node_id, wait_until, write_mesh_key  # noqa: E402

T_START = time.monotonic()


def left():
    return ARGS.timeout - (time.monotonic() - T_START)


def log(msg):
    print('[%6.1fs] %s' % (time.monotonic() - T_START, msg), file=sys.stderr, flush=True)


class Monitor:
    """`busctl monitor` on one node's bus: Gossip1 signals and Router1's PropertiesChanged, each
    with the receive time busctl reports (timestamp-realtime, µs) or, failing that, ours."""

    def __init__(self, node):
        self.node = node
        self.proc = Proc(['busctl', '--address=' + node.bus, '--json=short', 'monitor',
                          "--match=type='signal',interface='org.mycelia.Gossip1'",
                          "--match=type='signal',path='/org/mycelia/Router1',"
                          "interface='org.freedesktop.DBus.Properties'"],
                         name='busctl-monitor', logdir=node.dir)
        self.seen = 0

    def events(self):
        """New messages since the last call: (realtime seconds, message dict)."""
        with self.proc.cond:
            new = self.proc.lines[self.seen:]
            self.seen = len(self.proc.lines)
        out = []
        mono_to_real = time.time() - time.monotonic()
        for t_mono, line in new:
            line = line.strip()
            if not line.startswith('{'):
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            ts = msg.get('timestamp-realtime')
            t = ts / 1e6 if isinstance(ts, (int, float)) and ts > 0 else t_mono + mono_to_real
            out.append((t, msg))
        return out

    def stop(self):
        self.proc.stop(timeout=2)


def member_of(msg):
    data = (msg.get('payload') or {}).get('data') or []
    return data[0] if data and isinstance(data[0], list) and len(data[0]) >= 6 else None


def router_nodes_of(msg):
    """Nodes from a Router1 PropertiesChanged, or 'invalidated', or None."""
    data = (msg.get('payload') or {}).get('data') or []
    if len(data) < 3 or data[0] != 'org.mycelia.Router1':
        return None
    changed = data[1] or {}
    if 'Nodes' in changed:
        return changed['Nodes'].get('data')
    if 'Nodes' in (data[2] or []):
        return 'invalidated'
    return None


def alive_ids(node):
    try:
        return {m.id for m in node.members(timeout=3).values() if m.state == 'alive'}
    except Exception:  # noqa: BLE001 a node being started or stopped
        return set()


def routed_up_ids(node):
    try:
        return {n[0] for n in node.prop('org.mycelia.Router1', 'Nodes') if n[3] == 'up'}
    except Exception:  # noqa: BLE001
        return set()


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def fmt_ms(x):
    return '—' if x is None else '%.0f ms' % (x * 1000)


class Bench:
    def __init__(self):
        self.dir = harness.make_tmpdir('mycelia-gossip-bench-')
        self.key = write_mesh_key(os.path.join(self.dir, 'mesh.key'))
        self.double = Double('--token-delay-ms', '0', '--tokens', '3')
        self.nodes = []
        self.monitors = {}
        self.serial = 0

    def start_node(self, seeds):
        self.serial += 1
        args = ['--mesh-key', self.key, '--log-level', 'warning']
        for s in seeds:
            args += ['--seed', s]
        node = Node(self.double.url, *args, node_id=random_node_id(), name='bench-%d' % self.serial)
        self.nodes.append(node)
        self.monitors[node.node_id] = Monitor(node)
        return node

    def wait_mesh(self, timeout):
        ids = {n.node_id for n in self.nodes}
        t0 = time.monotonic()
        wait_until(lambda: all(ids <= alive_ids(n) for n in self.nodes), timeout, interval=0.2,
                   what='%d nodes alive everywhere' % len(ids))
        t_members = time.monotonic() - t0
        try:
            wait_until(lambda: all(ids <= routed_up_ids(n) for n in self.nodes), timeout, interval=0.2,
                       what='%d nodes up in every Router1.Nodes' % len(ids))
        except TimeoutError as e:
            log('routing tables incomplete: %s' % e)
            return t_members, None
        return t_members, time.monotonic() - t0

    def kill_node(self, victim):
        """SIGKILL of every process of a node at once: the launcher is stopped first so it
        restarts nothing, its children die before it can pass them a SIGTERM."""
        os.kill(victim.pid, signal.SIGSTOP)
        kids = proc_descendants(victim.pid)
        t_kill = time.time()
        for p in kids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.kill(victim.pid, signal.SIGKILL)
        return t_kill

    def kill_round(self, r):
        victim = self.nodes[1 + (r % (len(self.nodes) - 1))]
        observers = [n for n in self.nodes if n is not victim]
        for n in observers:
            self.monitors[n.node_id].events()     # drop what came before
        self.monitors.pop(victim.node_id).stop()
        t_kill = self.kill_node(victim)
        vid = victim.node_id
        res = {n.node_id: {} for n in observers}
        deadline = time.monotonic() + ARGS.round_timeout

        while time.monotonic() < deadline:
            for n in observers:
                got = res[n.node_id]
                for t, msg in self.monitors[n.node_id].events():
                    member = msg.get('member')
                    m = member_of(msg)
                    if m and m[0] == vid:
                        if m[3] == 'suspect' or member == 'MemberFailed':
                            got.setdefault('suspect', t - t_kill)
                        if member == 'MemberFailed' or m[3] in ('dead', 'left'):
                            got.setdefault('failed', t - t_kill)
                            got.setdefault('failed_how', '%s/%s' % (member, m[3]))
                    nodes = router_nodes_of(msg)
                    if nodes == 'invalidated':
                        nodes = self.safe_nodes(n)
                    if nodes is not None and 'route_out' not in got:
                        if not any(x[0] == vid and x[3] == 'up' for x in nodes):
                            got['route_out'] = t - t_kill
            if all({'suspect', 'failed', 'route_out'} <= set(g) for g in res.values()):
                break
            time.sleep(0.01)
        self.nodes.remove(victim)
        victim.stop(timeout=2)
        missing = {n.name: sorted({'suspect', 'failed', 'route_out'} - set(res[n.node_id]))
                   for n in observers if {'suspect', 'failed', 'route_out'} - set(res[n.node_id])}
        worst = {k: max((g[k] for g in res.values() if k in g), default=None)
                 for k in ('suspect', 'failed', 'route_out')}
        log('kill %d: %s; slowest observer suspect %s, failed %s, out of routing %s%s' % (
            r + 1, victim.name, fmt_ms(worst['suspect']), fmt_ms(worst['failed']),
            fmt_ms(worst['route_out']), '; MISSING %s' % missing if missing else ''))
        return res, missing

    def safe_nodes(self, node):
        try:
            return node.prop('org.mycelia.Router1', 'Nodes')
        except Exception:  # noqa: BLE001
            return None

    def meta_round(self, r):
        src = self.nodes[r % len(self.nodes)]
        observers = [n for n in self.nodes if n is not src]
        value = 'r%d-%d' % (r, int(time.time() * 1000) % 100000)
        for n in observers:
            self.monitors[n.node_id].events()
        t0 = time.time()
        src.call('org.mycelia.Gossip1', 'SetLocalMetadata', 'ss', 'bench', value)
        res = {}
        deadline = time.monotonic() + ARGS.round_timeout
        while time.monotonic() < deadline and len(res) < len(observers):
            for n in observers:
                for t, msg in self.monitors[n.node_id].events():
                    m = member_of(msg)
                    if m and m[0] == src.node_id and (m[5] or {}).get('bench') == value:
                        res.setdefault(n.node_id, t - t0)
            time.sleep(0.01)
        log('metadata %d from %s: %d/%d observers, slowest %s' % (
            r + 1, src.name, len(res), len(observers), fmt_ms(max(res.values(), default=None))))
        for n in observers:
            if n.node_id not in res:
                m = n.members(timeout=3).get(src.node_id)
                log('  %s did not report it; its Members has %s with bench=%r' % (
                    n.name, m, m.meta.get('bench') if m else None))
        return res, len(observers) - len(res)


def main():
    b = Bench()
    n = ARGS.nodes
    log('starting %d nodes' % n)
    first = b.start_node([])
    for _ in range(n - 1):
        b.start_node([first.gossip])
    t_members, t_routes = b.wait_mesh(30)
    log('converged: Members %.2fs, routing tables %s after the last node was ready' % (
        t_members, '%.2fs' % t_routes if t_routes is not None else 'never'))

    per_obs = {'suspect': [], 'failed': [], 'route_out': []}
    per_kill = {'suspect': [], 'failed': [], 'route_out': []}
    missing_total = 0
    hows = {}
    for r in range(ARGS.kills):
        if left() < 60:
            log('stopping early: the run is out of time')
            break
        res, missing = b.kill_round(r)
        missing_total += sum(len(v) for v in missing.values())
        for g in res.values():
            hows[g.get('failed_how')] = hows.get(g.get('failed_how'), 0) + 1
            for k in per_obs:
                if k in g:
                    per_obs[k].append(g[k])
        for k in per_kill:
            vals = [g[k] for g in res.values() if k in g]
            if len(vals) == len(res):
                per_kill[k].append(max(vals))
        # Back to N nodes, seeded by every live one, before the next kill.
        new = b.start_node([x.gossip for x in b.nodes])
        t_m, t_r = b.wait_mesh(30)
        log('%s joined: alive everywhere %.2fs, in every routing table %s after it was ready' % (
            new.name, t_m, '%.2fs' % t_r if t_r is not None else 'never'))
        time.sleep(1)

    meta_obs, meta_all, meta_missing, meta_rounds = [], [], 0, 0
    for r in range(ARGS.updates):
        if left() < 20:
            break
        meta_rounds += 1
        res, miss = b.meta_round(r)
        meta_missing += miss
        meta_obs += list(res.values())
        if miss == 0:
            meta_all.append(max(res.values()))
        time.sleep(0.3)

    kills = len(per_kill['failed']) if per_kill['failed'] else ARGS.kills
    cmd = 'bench/gossip-real.py %s --nodes %d --kills %d --updates %d' % (
        ARGS.build, ARGS.nodes, ARGS.kills, ARGS.updates)
    try:
        commit = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'], capture_output=True,
                                text=True).stdout.strip()
        dirty = subprocess.run(['git', '-C', ROOT, 'status', '--porcelain'], capture_output=True,
                               text=True).stdout.strip()
    except OSError:
        commit, dirty = '?', ''
    print()
    print('## %s, gossip on real processes: %d nodes on loopback' % (time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), n))
    print()
    print('- Command: `%s`' % cmd)
    print('- Tree: %s%s; machine: %d CPUs, kernel %s' % (commit, ' plus uncommitted changes' if dirty else '',
                                                          os.cpu_count(), platform.release()))
    print('- Nodes: `mycelia-node --mesh-key K --seed FIRST --log-level warning` (launcher defaults: '
          'gossip and mesh on 127.0.0.1, LAN gossip defaults: probe 200 ms, probe timeout 100 ms, '
          'suspicion mult 4), all in front of one Ollama test double')
    print('- Converged after start: Members %.2f s, routing tables %s' % (
        t_members, '%.2f s' % t_routes if t_routes is not None else 'never'))
    print()
    print('### (a) SIGKILL of a whole node (%d kills, %d observers each)' % (kills, n - 1))
    print()
    print('| from the kill until | per observer p50 | p99 | max | slowest observer per kill p50 | p99 |')
    print('|---|---:|---:|---:|---:|---:|')
    labels = {'suspect': 'Gossip1: suspect (or failed)', 'failed': 'Gossip1: MemberFailed',
              'route_out': 'Router1.Nodes: not up'}
    for k in ('suspect', 'failed', 'route_out'):
        print('| %s | %s | %s | %s | %s | %s |' % (
            labels[k], fmt_ms(percentile(per_obs[k], 50)), fmt_ms(percentile(per_obs[k], 99)),
            fmt_ms(max(per_obs[k], default=None)), fmt_ms(percentile(per_kill[k], 50)),
            fmt_ms(percentile(per_kill[k], 99))))
    print()
    print('Samples: %d per row (p99 of fewer than 100 samples is the largest but one or the largest). '
          'Observations missing within %.0f s: %d. How failure was reported: %s.' % (
              len(per_obs['failed']), ARGS.round_timeout, missing_total,
              ', '.join('%s x%d' % (k, v) for k, v in sorted(hows.items(), key=lambda kv: str(kv[0])))))
    print()
    print('### (b) SetLocalMetadata on one node until the others show it (%d updates)' % meta_rounds)
    print()
    print('| | p50 | p99 | max |')
    print('|---|---:|---:|---:|')
    print('| per observer | %s | %s | %s |' % (fmt_ms(percentile(meta_obs, 50)), fmt_ms(percentile(meta_obs, 99)),
                                              fmt_ms(max(meta_obs, default=None))))
    print('| until all %d others | %s | %s | %s |' % (n - 1, fmt_ms(percentile(meta_all, 50)),
                                                     fmt_ms(percentile(meta_all, 99)), fmt_ms(max(meta_all, default=None))))
    print()
    print('Observations missing within %.0f s: %d.' % (ARGS.round_timeout, meta_missing))
    return 0


if __name__ == '__main__':
    rc = 1
    try:
        rc = main()
    finally:
        harness.teardown_all()
    sys.exit(rc)
