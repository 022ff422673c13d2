#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Chaos soak (issue 11): three launchers on loopback under a steady mixed client load while daemons,
# whole nodes and node freezes are inflicted at seeded random; counts what the clients saw go wrong.
"""bench/chaos.py [BUILD_DIR] [--seconds N] [--seed S] [--rate R] [--threads T] [--loss PCT]

Three mycelia-node launchers (harness.start_mesh), each in front of its own Ollama double. T client
threads send R requests/s in all (open loop: each thread keeps its own schedule) to a random node's
shim, each a random one of: /api/chat, /api/generate, /v1/chat/completions (each streaming or
not) and /api/embed. Meanwhile, one at a time with a random pause between them, a seeded random
event hits a random node:

  kill:<daemon>  kill -9 of mycelia-shimd, -routerd, -gossipd, -discoveryd or -shardd (the
         launcher restarts it); back = its bus name owned by the new process (for shimd
         also GET /api/version answered on the node's API port)
  crash          Proc.crash() of the whole node (SIGSTOP of the tree, then SIGKILL), down for
         0.5-2 s, then a new launcher on the same state dir, id and ports; back = its
         ready line, then every node's routing table with all nodes up
  freeze         SIGSTOP of the node's whole tree for 3 s, then SIGCONT; back = every node's
         routing table with all nodes up again

With --loss PCT (root, package nftables), PCT % of the packets between nodes (to or from a gossip,
mesh or shard port) are dropped for the whole soak; the run then lives in a network namespace
of its own (see install_loss()).

The first events are a shuffle of all seven kinds, so every kind happens in any run long enough
for seven events; later ones are drawn at random. Every event is logged with its time.

What counts (targets 0): a request that failed (non-200, a connection error, an answer that does
not parse or misses its final object, or a stream that ended with an error object) unless its
entry shim was killed while it ran or its entry node was down (crash); a request that hung past
its timeout; a stream that ended without done:true (NDJSON) / [DONE] (SSE) and without an
Ollama-style error object. A request served by a peer whose shim was killed (or whose node
crashed) while it ran, and that ended with an error object, failed inside a killed shim too: it
is excused and reported apart (once bytes went out the entry shim cannot retry it elsewhere,
docs/shim-proxy.md); cut or hung, it counts. Excused too, on a line of its own: a stream
served by a peer that was frozen and that ended with an error object when gossip declared the
peer dead (docs/mesh-forwarding.md ends a removed peer's streams that way, and a 3 s freeze is
longer than gossip takes to remove a silent node). RSS and open fds of every process of every node
are read from /proc after warm-up and at the end.

The core, run_chaos(harness, ...), is what tests/integration/test_chaos.py runs for 60 s.
Run this file with /usr/bin/python3; it only needs the standard library.
"""

import argparse
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

NAMES = ('ca', 'cb', 'cc')
CHAT_MODEL = 'shared'
EMBED_MODEL = 'all-minilm'
MODELS = 'shared:latest,all-minilm:latest'
# Short streams with a small token delay, so that streams are in flight when things are killed.
DOUBLE_ARGS = ('--tokens', '8', '--token-delay-ms', '5', '--num-parallel', '32')

# (executable, bus name) of the launcher's daemons.
DAEMONS = (('mycelia-shimd', 'org.mycelia.Shim1'), ('mycelia-routerd', 'org.mycelia.Router1'),
           ('mycelia-gossipd', 'org.mycelia.Gossip1'), ('mycelia-discoveryd', 'org.mycelia.Discovery1'),
           ('mycelia-shardd', 'org.mycelia.ShardStore1'))
EVENT_KINDS = tuple('kill:' + exe for exe, _ in DAEMONS) + ('crash', 'freeze')

REQUEST_KINDS = ('chat', 'chat-stream', 'generate', 'generate-stream', 'embed', 'v1-chat', 'v1-chat-stream')

REQUEST_TIMEOUT = 10.0      # seconds of silence from the server before a request counts as hung
REQUEST_DEADLINE = 25.0     # a whole request; past it, hung too
FREEZE_SECONDS = 3.0
BACK_TIMEOUT = 30.0         # an event whose victim is not back by then is reported as not back


def quantile(v, q):
    if not v:
        return float('nan')
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


# --------------------------------------------------------------------------------------------
# One client request


def request_body(kind, n):
    text = 'chaos %d' % n
    stream = kind.endswith('-stream')
    if kind.startswith('chat'):
        return '/api/chat', {'model': CHAT_MODEL, 'messages': [{'role': 'user', 'content': text}],
                             'stream': stream}
    if kind.startswith('generate'):
        return '/api/generate', {'model': CHAT_MODEL, 'prompt': text, 'stream': stream}
    if kind == 'embed':
        return '/api/embed', {'model': EMBED_MODEL, 'input': [text, text + ' b', text + ' c']}
    return '/v1/chat/completions', {'model': CHAT_MODEL, 'messages': [{'role': 'user', 'content': text}],
                                    'stream': stream}


def judge_body(kind, status, body):
    """('ok', '') or ('fail', why) for a complete non-streaming answer."""
    if status != 200:
        return 'fail', 'status %d %r' % (status, body[:160])
    try:
        obj = json.loads(body.decode('utf-8'))
    except ValueError as e:
        return 'fail', 'answer does not parse: %s %r' % (e, body[:160])
    if kind == 'embed':
        ok = isinstance(obj.get('embeddings'), list) and len(obj['embeddings']) == 3
    elif kind == 'v1-chat':
        ok = bool(obj.get('choices')) and obj['choices'][0].get('finish_reason')
    else:
        ok = obj.get('done') is True
    return ('ok', '') if ok else ('fail', 'incomplete answer %r' % body[:160])


def judge_ndjson(s):
    """Reads an NDJSON stream to its end: ok, fail (ended with an error object) or cut."""
    last = None
    for _, line in s.lines():
        if line.strip():
            last = line
    if s.partial_tail:
        return 'cut', 'ended mid-line %r' % s.partial_tail[:120]
    try:
        obj = json.loads(last) if last is not None else None
    except ValueError:
        return 'cut', 'last line does not parse %r' % last[:120]
    if isinstance(obj, dict) and 'error' in obj:
        return 'fail', 'stream ended with error %r' % obj['error']
    if not s.clean_end:
        return 'cut', 'chunked body not ended (last line %r)' % (last or '')[:120]
    if isinstance(obj, dict) and obj.get('done') is True:
        return 'ok', ''
    return 'cut', 'no done:true and no error (last line %r)' % (last or '')[:120]


def judge_sse(s):
    frames = [d for _, d in s.sse_frames()]
    if s.partial_tail:
        return 'cut', 'ended mid-frame %r' % s.partial_tail[:120]
    for d in frames:
        if d.startswith('{') and '"error"' in d:
            try:
                if 'error' in json.loads(d):
                    return 'fail', 'stream ended with error %s' % d[:200]
            except ValueError:
                pass
    if not s.clean_end:
        return 'cut', 'chunked body not ended (%d frames)' % len(frames)
    if frames and frames[-1] == '[DONE]':
        return 'ok', ''
    return 'cut', 'no [DONE] and no error (last frame %r)' % (frames[-1][:120] if frames else None)


def one_request(harness, addr, kind, n):
    """Returns (outcome, detail, served_by, got_head). outcome: ok, fail, hang, cut."""
    path, body = request_body(kind, n)
    t0 = time.monotonic()
    served_by = None
    got_head = False
    try:
        s = harness.RawStream(addr, 'POST', path, body, timeout=REQUEST_TIMEOUT)
    except (TimeoutError, socket.timeout) as e:
        return 'hang', 'no answer head: %s' % e, None, False
    except (OSError, harness.ProtocolError) as e:
        return 'fail', 'before the answer head: %r' % e, None, False
    try:
        got_head = True
        served_by = s.header('X-Mycelia-Served-By')
        stream = kind.endswith('-stream')
        ctype = (s.content_type or '').split(';')[0].strip()
        if stream and s.status == 200 and ctype in ('application/x-ndjson', 'text/event-stream'):
            if ctype == 'text/event-stream':
                out, why = judge_sse(s)
            else:
                out, why = judge_ndjson(s)
        else:
            data = s.read_all()
            if not s.clean_end:
                out, why = ('cut' if stream else 'fail'), 'answer cut: %r' % data[:120]
            else:
                out, why = judge_body(kind, s.status, data)
        if time.monotonic() - t0 > REQUEST_DEADLINE:
            return 'hang', 'took %.1fs' % (time.monotonic() - t0), served_by, got_head
        return out, why, served_by, got_head
    except (TimeoutError, socket.timeout) as e:
        return 'hang', 'mid-answer: %s' % e, served_by, got_head
    except (OSError, harness.ProtocolError, UnicodeDecodeError) as e:
        return ('cut' if kind.endswith('-stream') else 'fail'), 'mid-answer: %r' % e, served_by, got_head
    finally:
        s.close()


class Clients:
    """threads open-loop client threads sending rate requests/s in all."""

    def __init__(self, harness, nodes, rate, threads, seed):
        self.harness = harness
        self.nodes = nodes
        self.rate = rate
        self.results = []       # dicts
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.late = 0           # sends that could not keep the schedule (thread busy)
        self.inflight = {}      # thread index -> the request it is waiting for
        self.threads = [threading.Thread(target=self.run, args=(i, seed), daemon=True)
                        for i in range(threads)]
        self.period = threads / float(rate)
        for t in self.threads:
            t.start()

    def run(self, i, seed):
        rng = random.Random('%s/client/%d' % (seed, i))
        names = sorted(self.nodes)
        n = 0
        nxt = time.monotonic() + rng.uniform(0, self.period)
        while not self.stop_ev.is_set():
            now = time.monotonic()
            if now < nxt:
                self.stop_ev.wait(nxt - now)
                continue
            if now > nxt + self.period:
                # Behind by more than one slot: do not fire a burst to catch up.
                with self.lock:
                    self.late += 1
                nxt = now
            nxt += self.period
            name = rng.choice(names)
            kind = rng.choice(REQUEST_KINDS)
            n += 1
            t0 = time.monotonic()
            with self.lock:
                self.inflight[i] = {'t0': t0, 'node': name, 'kind': kind}
            out, why, served_by, got_head = one_request(self.harness, self.nodes[name].addr, kind,
                                                        i * 1000000 + n)
            with self.lock:
                if self.inflight.pop(i, None) is None:
                    return      # finish() recorded it as hung
                self.results.append({'t0': t0, 't1': time.monotonic(), 'node': name, 'kind': kind,
                                     'out': out, 'why': why, 'served_by': served_by,
                                     'head': got_head})

    def finish(self):
        """Stops the threads. A request still running REQUEST_DEADLINE after the stop (a stream
        that trickles forever, which no socket timeout catches) is recorded as hung."""
        self.stop_ev.set()
        deadline = time.monotonic() + REQUEST_DEADLINE
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self.lock:
            for i, r in sorted(self.inflight.items()):
                self.results.append(dict(r, t1=time.monotonic(), out='hang', served_by=None, head=None,
                                         why='still running %.1fs after the load stopped' % REQUEST_DEADLINE))
            self.inflight.clear()


# --------------------------------------------------------------------------------------------
# Processes of a node


def node_processes(harness, node):
    """{name: pid} of the launcher and every live process under it (dbus-daemon, daemons)."""
    out = {}
    if not harness.pid_alive(node.proc.pid):
        return out
    out['mycelia-node'] = node.proc.pid
    for p in harness.proc_descendants(node.proc.pid):
        if harness.pid_alive(p):
            out.setdefault(harness.proc_exe_name(p), p)
    return out


def proc_age(pid):
    """Seconds since pid started."""
    with open('/proc/%d/stat' % pid) as f:
        start = int(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/uptime') as f:
        up = float(f.read().split()[0])
    return up - start / os.sysconf('SC_CLK_TCK')


def resources(harness, nodes):
    """{(node, process): (pid, rss KiB, open fds, age s)}."""
    snap = {}
    for name, node in sorted(nodes.items()):
        for exe, pid in node_processes(harness, node).items():
            try:
                rss = harness.proc_rss_kib(pid)
                fds = len(os.listdir('/proc/%d/fd' % pid))
                age = proc_age(pid)
            except (OSError, RuntimeError, ValueError, IndexError):
                continue
            snap[(name, exe)] = (pid, rss, fds, age)
    return snap


def daemon_pid(harness, node, exe):
    return node_processes(harness, node).get(exe)


# --------------------------------------------------------------------------------------------
# Events


class Chaos:
    def __init__(self, harness, nodes, seed, log):
        self.harness = harness
        self.nodes = nodes
        self.rng = random.Random('%s/chaos' % seed)
        self.log = log
        self.events = []        # dicts, in order
        self.t_origin = time.monotonic()
        order = list(EVENT_KINDS)
        self.rng.shuffle(order)
        self.queue = order

    def next_kind(self):
        if self.queue:
            return self.queue.pop(0)
        return self.rng.choice(EVENT_KINDS)

    def mesh_whole(self, timeout):
        """Waits until every node's routing table has every node up with models."""
        n = len(self.nodes)

        def whole():
            for node in self.nodes.values():
                t = node.router_nodes()
                if len(t) != n or not all(s == 'up' and m for s, m in t.values()):
                    return False
            return True
        self.harness.wait_until(whole, timeout, interval=0.1, what='every routing table whole')

    def run_one(self, kind, name):
        node = self.nodes[name]
        ev = {'kind': kind, 'node': name, 't': time.monotonic(), 'back': None, 'detail': '',
              'windows': []}
        self.log('%7.2fs  event %s on %s' % (ev['t'] - self.t_origin, kind, name))
        try:
            if kind.startswith('kill:'):
                self.kill_daemon(node, kind[5:], ev)
            elif kind == 'crash':
                self.crash(node, ev)
            else:
                self.freeze(node, ev)
        except Exception as e:  # noqa: BLE001 - an event that does not come back is a finding
            ev['detail'] = ('NOT BACK: %s' % e).split('\n')[0]
            ev['error'] = str(e)
        self.log('%7.2fs    %s on %s: %s%s' % (time.monotonic() - self.t_origin, kind, name,
                                               'back after %.2fs' % ev['back'] if ev['back'] is not None
                                               else 'not back', (' (%s)' % ev['detail']) if ev['detail'] else ''))
        self.events.append(ev)
        return ev

    def kill_daemon(self, node, exe, ev):
        h = self.harness
        service = dict(DAEMONS)[exe]
        old = daemon_pid(h, node, exe)
        if old is None:
            raise RuntimeError('no %s under the launcher' % exe)
        t0 = time.monotonic()
        os.kill(old, signal.SIGKILL)
        ev['t'] = t0
        ev['pid'] = old
        if exe == 'mycelia-shimd':
            ev['windows'].append(('shim', t0, t0))
        deadline = t0 + BACK_TIMEOUT

        def owned():
            new = daemon_pid(h, node, exe)
            if new is None or new == old:
                return False
            try:
                return h.bus_pid_of(node.bus, service) == new
            except (h.BusError, TimeoutError, ValueError, KeyError, TypeError):
                return False
        h.wait_until(owned, deadline - time.monotonic(), interval=0.05,
                     what='%s owned again by a new %s' % (service, exe))
        ev['back'] = time.monotonic() - t0
        if exe == 'mycelia-shimd':
            def answers():
                r = node.request('GET', '/api/version', timeout=2)
                return r.status == 200
            h.wait_until(answers, deadline - time.monotonic(), interval=0.05,
                         what='the API port answering')
            ev['api_back'] = time.monotonic() - t0
            ev['detail'] = 'API answering after %.2fs' % ev['api_back']

    def crash(self, node, ev):
        h = self.harness
        t0 = time.monotonic()
        node.proc.crash()
        ev['t'] = t0
        time.sleep(self.rng.uniform(0.5, 2.0))
        host, port = node.addr
        seeds = []
        for other in self.nodes.values():
            if other is not node:
                seeds += ['--seed', other.gossip]
        # The same state dir (so the same id, key and bus path) and the same addresses, as a
        # node that reboots; seeded with every other node (the first node had no seed).
        argv = node.argv + ['--api', '%s:%d' % (host, port), '--gossip', node.gossip,
                            '--mesh', node.mesh, '--shard', node.shard] + seeds
        t_restart = time.monotonic()
        window = ['node', t0, float('inf')]     # its shim is down until the new launcher is ready
        ev['windows'].append(window)
        node.proc = h.Proc(argv, name='mycelia-node', logdir=node.dir)
        m = node.proc.wait_line(h.READY_RX, timeout=BACK_TIMEOUT)
        t_ready = time.monotonic()
        window[2] = t_ready
        fields = dict(f.split('=', 1) for f in m.group(3).split() if '=' in f)
        if m.group(1) != node.api_url or fields.get('node') != node.node_id:
            raise RuntimeError('restarted with api %s node %s, was %s %s' % (
                m.group(1), fields.get('node'), node.api_url, node.node_id))
        self.mesh_whole(BACK_TIMEOUT)
        ev['back'] = time.monotonic() - t0
        ev['detail'] = 'down %.2fs, ready %.2fs after the restart, mesh whole %.2fs after it' % (
            t_restart - t0, t_ready - t_restart, time.monotonic() - t_restart)

    def freeze(self, node, ev):
        h = self.harness
        pids = [node.proc.pid] + h.proc_descendants(node.proc.pid)
        t0 = time.monotonic()
        for p in pids:
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        ev['t'] = t0
        # What the other nodes' routing tables said of the frozen node meanwhile.
        seen = set()
        try:
            while time.monotonic() < t0 + FREEZE_SECONDS:
                for other in self.nodes.values():
                    if other is not node:
                        st = other.router_nodes().get(node.node_id)
                        seen.add(st[0] if st else 'absent')
                time.sleep(0.2)
        finally:
            for p in pids:
                try:
                    os.kill(p, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        t_cont = time.monotonic()
        ev['windows'].append(('freeze', t0, t_cont))
        self.mesh_whole(BACK_TIMEOUT)
        ev['back'] = time.monotonic() - t_cont
        ev['detail'] = 'routing tables whole %.2fs after SIGCONT; peers saw it %s while frozen' % (
            ev['back'], '/'.join(sorted(seen)))


# --------------------------------------------------------------------------------------------
# Packet loss between nodes (optional)
#
# The kernel here has no netem; nf_tables' numgen does the same for loss. The rules must not touch
# the machine's own loopback (other work runs there), so the whole run moves into a network
# namespace of its own first: unshare(CLONE_NEWNET) of this thread, which every thread and process
# started after it inherits. Loss is taken on the input hook, where a drop is silent as on a wire
# (a drop on output would make the sender's sendto() fail with EPERM). Only traffic to or from a
# node's gossip, mesh or shard port is lossy: node to node; clients and doubles are not.

CLONE_NEWNET = 0x40000000


def enter_private_netns():
    """None once this thread (and what it starts later) is in a new network namespace with lo up;
    else why not."""
    if os.geteuid() != 0:
        return 'not root'
    if not shutil.which('nft') or not shutil.which('ip'):
        return 'nft (package nftables) or ip not installed'
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        return 'unshare(CLONE_NEWNET) failed: %s' % os.strerror(ctypes.get_errno())
    subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)
    return None


def node_ports(nodes):
    ports = set()
    for node in nodes.values():
        for addr in (node.gossip, node.mesh, node.shard):
            if addr:
                ports.add(int(addr.rsplit(':', 1)[1]))
    return sorted(ports)


def install_loss(ports, percent):
    """Drops percent % of the packets to or from ports (each packet draws once)."""
    script = """table inet chaos_loss {
    set node_ports { type inet_service; elements = { %s }; }
    chain lossy { numgen random mod 1000 < %d counter drop; }
    chain input {
        type filter hook input priority 0; policy accept;
        th dport @node_ports counter goto lossy
        th sport @node_ports counter goto lossy
    }
}
""" % (', '.join(str(p) for p in ports), int(round(percent * 10)))
    subprocess.run(['nft', '-f', '-'], input=script.encode(), check=True)


def loss_counters():
    """(packets dropped, packets between nodes) so far, from the rules' counters; None if unknown."""
    try:
        out = subprocess.run(['nft', 'list', 'table', 'inet', 'chaos_loss'],
                             capture_output=True, check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return None
    dropped, seen = 0, 0
    for line in out.split('\n'):
        if 'counter packets' not in line:
            continue
        n = int(line.split('counter packets', 1)[1].split()[0])
        if 'goto lossy' in line:
            seen += n
        else:
            dropped += n
    return dropped, seen


# --------------------------------------------------------------------------------------------
# The run


class ChaosResult:
    pass


def classify(results, events):
    """Sets each request's excuse: None, 'entry shim killed', 'serving shim killed' or 'serving
    node frozen'."""
    shim_down = []          # (node, t_from, t_to): its shim was killed or its node down then
    frozen = []             # (node, t_from, t_to): SIGSTOPped then
    for ev in events:
        for what, a, b in ev['windows']:
            if what in ('shim', 'node'):
                shim_down.append((ev['node'], a, b))
            elif what == 'freeze':
                frozen.append((ev['node'], a, b))
    for r in results:
        r['excuse'] = None
        if r['out'] == 'ok':
            continue
        for name, a, b in shim_down:
            if r['node'] == name and r['t0'] <= b and r['t1'] >= a:
                r['excuse'] = 'entry shim killed'
                break
        # Served by a peer whose shim was killed while it answered: once bytes went out the entry
        # shim cannot retry (docs/shim-proxy.md), it can only end the answer with an error object.
        # Excused when it did so ('fail'); a cut or a hang is never excused here.
        if r['excuse'] is None and r['served_by'] and r['out'] == 'fail':
            for name, a, b in shim_down:
                if r['served_by'] == name and r['t0'] <= b and r['t1'] >= a:
                    r['excuse'] = 'serving shim killed'
                    break
        # Served by a peer that froze while it answered: 3 s is longer than gossip takes to
        # declare it dead (~1.3 s), and a peer that leaves the mesh has its streams ended with an
        # error object (docs/mesh-forwarding.md, "When a peer goes away during a request"): the
        # documented design, reported on its own line; a cut or a hang is never excused here.
        if r['excuse'] is None and r['served_by'] and r['out'] == 'fail':
            for name, a, b in frozen:
                if r['served_by'] == name and r['t0'] <= b and r['t1'] >= a and 'left the mesh' in r['why']:
                    r['excuse'] = 'serving node frozen'
                    break


def events_near(events, r, t_origin):
    out = []
    for ev in events:
        end = ev['t'] + (ev['back'] or BACK_TIMEOUT) + FREEZE_SECONDS
        if r['t0'] <= end and r['t1'] >= ev['t'] - 0.5:
            out.append('%s@%s %.2fs' % (ev['kind'], ev['node'], ev['t'] - t_origin))
    return out


def run_chaos(harness, seconds, seed, rate, threads=6, log=print, warmup=2.0, loss=0.0):
    """Starts a mesh, runs the soak for seconds, stops everything; returns a ChaosResult. With
    loss (percent), the caller has entered a private network namespace (enter_private_netns)."""
    res = ChaosResult()
    res.seconds, res.seed, res.rate, res.threads, res.loss = seconds, seed, rate, threads, loss
    res.loss_dropped = None
    t_setup = time.monotonic()
    doubles, nodes = harness.start_mesh(NAMES, MODELS, double_args=DOUBLE_ARGS,
                                        node_args=('--log-level', 'warning'))
    res.setup_seconds = time.monotonic() - t_setup
    clients = None
    try:
        if loss:
            install_loss(node_ports(nodes), loss)
            log('%g%% packet loss on node-to-node traffic (ports %s)' % (
                loss, ', '.join(str(p) for p in node_ports(nodes))))
        clients = Clients(harness, nodes, rate, threads, seed)
        time.sleep(warmup)
        res.start = resources(harness, nodes)
        chaos = Chaos(harness, nodes, seed, log)
        t_begin = time.monotonic()
        chaos.t_origin = t_begin
        t_end = t_begin + seconds
        log('%7.2fs  chaos starts: %d s, seed %s, %g requests/s from %d threads' % (
            0, seconds, seed, rate, threads))
        while True:
            time.sleep(chaos.rng.uniform(0.5, 2.0))
            # Leave room for the slowest event (a crash: ~2 s down, ~1 s to come back and
            # ~2 s for the mesh) to end before the load stops.
            if time.monotonic() > t_end - 8.0:
                break
            chaos.run_one(chaos.next_kind(), chaos.rng.choice(NAMES))
        left = t_end - time.monotonic()
        if left > 0:
            time.sleep(left)
        res.wall = time.monotonic() - t_begin
        clients.finish()
        if loss:
            res.loss_dropped = loss_counters()
        # Every daemon back and the mesh whole before the end sample and the last check.
        try:
            chaos.mesh_whole(BACK_TIMEOUT)
            res.final_mesh = 'whole'
        except TimeoutError as e:
            res.final_mesh = 'NOT WHOLE: %s' % str(e).split('\n')[0]
        time.sleep(1.0)
        res.end = resources(harness, nodes)
        res.final_check = final_check(harness, nodes)
        res.events = chaos.events
        res.t_origin = t_begin
        res.results = [r for r in clients.results if r['t0'] >= t_begin]
        res.warmup_results = [r for r in clients.results if r['t0'] < t_begin]
        res.late = clients.late
        res.logs = {n: nodes[n].proc.log_path for n in nodes}
    finally:
        if clients is not None:
            clients.finish()
        harness.stop_mesh(doubles, nodes)
    tally(res)
    return res


def final_check(harness, nodes):
    """Every kind of request once through every node after the soak: a list of failures."""
    bad = []
    for name in sorted(nodes):
        for kind in REQUEST_KINDS:
            out, why, _, _ = one_request(harness, nodes[name].addr, kind, 0)
            if out != 'ok':
                bad.append('%s %s: %s %s' % (name, kind, out, why))
    return bad


def tally(res):
    classify(res.results, res.events)
    rs = res.results
    res.sent = len(rs)
    res.ok = sum(1 for r in rs if r['out'] == 'ok')
    res.excused = [r for r in rs if r['out'] != 'ok' and r['excuse']]
    res.failed = [r for r in rs if r['out'] == 'fail' and not r['excuse']]
    res.hung = [r for r in rs if r['out'] == 'hang' and not r['excuse']]
    res.cut = [r for r in rs if r['out'] == 'cut' and not r['excuse']]
    res.serving_killed = [r for r in res.excused if r['excuse'] == 'serving shim killed']
    res.serving_frozen = [r for r in res.excused if r['excuse'] == 'serving node frozen']
    res.warmup_bad = [r for r in res.warmup_results if r['out'] != 'ok']
    res.growth = []
    for key in sorted(set(res.start) | set(res.end)):
        a, b = res.start.get(key), res.end.get(key)
        res.growth.append((key, a, b))
    res.not_back = [ev for ev in res.events if ev['back'] is None]


def max_growth(res, exclude_restarted=False):
    """(largest RSS growth KiB, largest fd growth) over every process kept from start to end."""
    rss, fds = 0, 0
    for key, a, b in res.growth:
        if a is None or b is None:
            continue
        if exclude_restarted and a[0] != b[0]:
            continue
        rss = max(rss, b[1] - a[1])
        fds = max(fds, b[2] - a[2])
    return rss, fds


# --------------------------------------------------------------------------------------------
# Report


def report(res, command):
    out = []
    p = out.append
    rs = res.results
    p('```')
    p(command)
    p('```')
    p('')
    p('- %d s of chaos (%.1f s wall), seed %s, %g requests/s asked from %d client threads, %d sent '
      '(%.1f/s; %d sends behind schedule); %d events; mesh set up in %.1f s; after warm-up (%d requests, %d not ok)'
      % (res.seconds, res.wall, res.seed, res.rate, res.threads, res.sent, res.sent / res.wall, res.late,
         len(res.events), res.setup_seconds, len(res.warmup_results), len(res.warmup_bad)))
    if res.loss:
        p('- %g%% packet loss on every packet to or from a node\'s gossip, mesh or shard port (nf_tables '
          'numgen on the input hook, in a private network namespace): %s'
          % (res.loss, '%d of %d packets dropped' % res.loss_dropped if res.loss_dropped else 'count unknown'))
    else:
        p('- No packet loss (%s)' % getattr(res, 'loss_note', 'not asked for: --loss'))
    p('')
    p('| counted (target 0) | count |')
    p('|---|---:|')
    p('| requests failed outside a killed shim | **%d** |' % len(res.failed))
    p('| requests hung past their timeout (%.0f s of silence, %.0f s in all) | **%d** |'
      % (REQUEST_TIMEOUT, REQUEST_DEADLINE, len(res.hung)))
    p('| streams cut without done/[DONE] or an error object | **%d** |' % len(res.cut))
    p('| (excused: entry shim killed or entry node down while it ran) | %d |' % (
        len(res.excused) - len(res.serving_killed) - len(res.serving_frozen)))
    p('| (excused: serving peer\'s shim killed mid-answer, ended with an error object) | %d |'
      % len(res.serving_killed))
    p('| (by design: serving peer frozen 3 s, declared dead, its stream ended with an error object) | %d |'
      % len(res.serving_frozen))
    p('| events whose victim did not come back within %.0f s | %d |' % (BACK_TIMEOUT, len(res.not_back)))
    p('| after the soak: every routing table whole; one request of each kind through each node | %s; %s |' % (
        'yes' if res.final_mesh == 'whole' else '**no**',
        'all ok' if not res.final_check else '**%d failed**' % len(res.final_check)))
    p('')
    p('| request | sent | ok | failed | hung | cut | excused | p50 | p99 | max |')
    p('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for kind in REQUEST_KINDS:
        k = [r for r in rs if r['kind'] == kind]
        lat = [r['t1'] - r['t0'] for r in k if r['out'] == 'ok']
        p('| %s | %d | %d | %d | %d | %d | %d | %.0f ms | %.0f ms | %.0f ms |' % (
            kind, len(k), sum(1 for r in k if r['out'] == 'ok'),
            sum(1 for r in res.failed if r['kind'] == kind), sum(1 for r in res.hung if r['kind'] == kind),
            sum(1 for r in res.cut if r['kind'] == kind), sum(1 for r in res.excused if r['kind'] == kind),
            1000 * quantile(lat, 0.5), 1000 * quantile(lat, 0.99), 1000 * (max(lat) if lat else float('nan'))))
    p('')
    p('| event | times | back p50 | back max | what "back" is |')
    p('|---|---:|---:|---:|---|')
    what = {'crash': 'from the crash: down 0.5-2 s, new launcher ready, every routing table whole',
            'freeze': 'from SIGCONT (after 3 s stopped): every routing table whole'}
    for kind in EVENT_KINDS:
        evs = [e for e in res.events if e['kind'] == kind]
        backs = [e['back'] for e in evs if e['back'] is not None]
        p('| %s | %d | %s | %s | %s |' % (
            kind, len(evs), '%.2f s' % quantile(backs, 0.5) if backs else '-',
            '%.2f s' % max(backs) if backs else '-',
            what.get(kind, 'from kill -9: its bus name owned by the new process')
            + (api_note(evs) if kind == 'kill:mycelia-shimd' else '')
            + ('' if len(backs) == len(evs) else ' — %d NOT BACK' % (len(evs) - len(backs)))))
    p('')
    p('| node | process | start RSS | end RSS | growth | start fds | end fds | growth | restarted | end process age |')
    p('|---|---|---:|---:|---:|---:|---:|---:|---|---:|')
    for (name, exe), a, b in res.growth:
        if a is None or b is None:
            p('| %s | %s | %s | %s | - | %s | %s | - | %s | %s |' % (
                name, exe, '%d KiB' % a[1] if a else '-', '%d KiB' % b[1] if b else '-',
                a[2] if a else '-', b[2] if b else '-', 'gone' if b is None else 'new',
                '%.0f s' % b[3] if b else '-'))
            continue
        p('| %s | %s | %d KiB | %d KiB | %+d KiB | %d | %d | %+d | %s | %.0f s |' % (
            name, exe, a[1], b[1], b[1] - a[1], a[2], b[2], b[2] - a[2], 'yes' if a[0] != b[0] else 'no', b[3]))
    rss, fds = max_growth(res)
    rss_kept, fds_kept = max_growth(res, exclude_restarted=True)
    p('')
    kept = sum(1 for _, a, b in res.growth if a and b and a[0] == b[0])
    p('- Largest growth, start to end, of any process role (a restarted one compared with the one it '
      'replaced): RSS %+d KiB, fds %+d; %s' % (
          rss, fds, 'of the %d processes that lived through the whole run: RSS %+d KiB, fds %+d.' % (
              kept, rss_kept, fds_kept) if kept else 'no process lived through the whole run.'))
    return '\n'.join(out)


def api_note(evs):
    api = [e['api_back'] for e in evs if e.get('api_back') is not None]
    if not api:
        return ''
    return '; GET /api/version answered by it: p50 %.2f s, max %.2f s' % (quantile(api, 0.5), max(api))


def details(res):
    out = []
    p = out.append
    p('Event log (seconds from the start of the chaos):')
    for ev in res.events:
        p('  %7.2f  %-20s %s  %s%s' % (ev['t'] - res.t_origin, ev['kind'], ev['node'],
                                       'back %.2fs' % ev['back'] if ev['back'] is not None else 'NOT BACK',
                                       ('  ' + ev['detail']) if ev['detail'] else ''))
    for title, rows in (('Failed (counted)', res.failed), ('Hung', res.hung), ('Cut', res.cut),
                        ('Excused', res.excused), ('Warm-up, not ok', res.warmup_bad)):
        if not rows:
            continue
        p('%s: %d' % (title, len(rows)))
        for r in rows[:40]:
            p('  %7.2f..%7.2f %-16s via %s served by %s: %s %s [near: %s]' % (
              r['t0'] - res.t_origin, r['t1'] - res.t_origin, r['kind'], r['node'], r['served_by'],
              r['out'], r['why'], ', '.join(events_near(res.events, r, res.t_origin))))
    if res.final_check:
        p('Final check failures:')
        for f in res.final_check:
            p('  ' + f)
    return '\n'.join(out)


def parse_args(argv):
    ap = argparse.ArgumentParser(description='Chaos soak of a three-node mesh on loopback (issue 11).')
    ap.add_argument('build', nargs='?', default=None, help='build tree (default: build/ in the source tree)')
    ap.add_argument('--seconds', type=float, default=600)
    ap.add_argument('--seed', default='11')
    ap.add_argument('--rate', type=float, default=20.0, help='requests per second, all threads together')
    ap.add_argument('--threads', type=int, default=6)
    ap.add_argument('--loss', type=float, default=0.0,
                    help='percent of node-to-node packets to drop (root, nft; the run moves into a '
                         'private network namespace)')
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import benchenv
    build = args.build or os.path.join(benchenv.ROOT, 'build')
    harness = benchenv.use_build(build, 'bench/chaos.py')
    command = 'bench/chaos.py %s --seconds %g --seed %s --rate %g --threads %d' % (
        args.build or 'build', args.seconds, args.seed, args.rate, args.threads)
    loss, loss_note = args.loss, None
    if loss:
        command += ' --loss %g' % loss
        why = enter_private_netns()
        if why:
            print('bench/chaos.py: no packet loss: %s' % why, file=sys.stderr)
            loss, loss_note = 0.0, 'asked for, but ' + why

    def log(msg):
        print(msg, flush=True)
    res = run_chaos(harness, args.seconds, args.seed, args.rate, args.threads, log=log, loss=loss)
    if loss_note:
        res.loss_note = loss_note
    print()
    print(details(res))
    print()
    print(report(res, command))
    bad = len(res.failed) + len(res.hung) + len(res.cut) + len(res.not_back) + len(res.final_check)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
