#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Load (issue 11): 1,000 concurrent streaming clients on one node. The same load straight to the
# Ollama double and through one node's shim in front of it, side by side in one run.
"""bench/load.py [BUILD_DIR] [--clients N] [--tokens N] [--token-delay-ms D] [--rounds R]

Run by hand, never by meson test (tests/integration/test_load_streams.py runs the same client
once, with assertions). Python 3 standard library only; run it with /usr/bin/python3.

One Ollama double (--parallel N, --max-queue 4N: it never queues a request of this load) and one
mycelia-node launcher in front of it ([shim] max_requests raised to N + 100: its default, 512,
mirrors OLLAMA_MAX_QUEUE and would answer the rest 503). Each round opens N streaming
POST /api/generate requests at once, each with a prompt of its own, from one process (non-blocking
sockets on one epoll loop): all connected and sent before any stream can end (a stream lasts
tokens x token delay), then every NDJSON stream is read to its end. A round goes (a) straight to
the double and (b) through the node's API address; rounds alternate which path goes first.
The client is Python, not bench/stream-client.c (mycelia-stream-bench): that one opens up to 1,024
at once but sends one prompt to all, so no answer can be checked against its own prompt, and it
reports no whole-stream time. Both paths share this client and its cost (its CPU is reported).

Both listeners have the kernel's somaxconn for a backlog (the double's as Ollama's Go listener,
the shim's as the launcher binds it): with libevent's 128, 1,000 connect()s at once overflowed it
(SYNs dropped, retried by the kernel after 1 s; seen: TTFT p99 1.1 s direct). Kernel listen
overflows and slow connect()s are reported per path.

Per path: time to first token (from the stream's connect() to its first complete NDJSON line) and
whole-stream time (connect() to the chunked terminator), p50/p99 over every stream of every
round, and the added p50/p99 (shim - direct). Errors: a status other than 200, a line that does
not parse, no final done:true, a cut or timed-out stream, or a text that differs from the double's
own answer for that prompt (asked once with the token delay at 0 before the load: the double's
text is a pure function of model and prompt).

The shim's memory per connection: its VmRSS idle before the first load (after a warm-up through
it), its peak while the streams are open (sampled every 50 ms in a thread, with its open fds),
(peak - idle) / N. VmHWM (the kernel's own peak) is printed beside it.

Prints a Markdown section for bench/RESULTS.md on stdout; progress on stderr. Exit 1 when any
stream failed.
"""

import argparse
import errno
import http.client
import json
import os
import resource
import selectors
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# A stream that sends nothing for this long has failed (timed out); no round may last longer than
# ROUND_DEADLINE either. Both bound every socket operation of the non-blocking client.
SILENCE_TIMEOUT = 20.0
ROUND_DEADLINE = 90.0
SAMPLE_INTERVAL = 0.050
MAX_CLIENTS = 1024          # the double serves at most 1024 requests at once (--parallel)


def quantile(v, q):
    """Nearest-rank quantile (as stream-client.c), NaN for an empty list."""
    if not v:
        return float('nan')
    v = sorted(v)
    k = max(1, min(len(v), int(q * len(v) + 0.999999)))
    return v[k - 1]


def raise_nofile(need):
    """Raises this process's RLIMIT_NOFILE soft limit to the hard one (and the hard one to need
    when it is lower and the process may: root). Children (the double, the launcher and so its
    daemons) inherit it. Returns None when at least need fds are allowed, else why not."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return None
        except (ValueError, OSError):
            return ('RLIMIT_NOFILE hard limit is %d, %d concurrent streams need about %d '
                    '(ulimit -Hn; raising it needs root)' % (hard, need // 2 - 300, need))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as e:
        return 'cannot raise RLIMIT_NOFILE from %d to %d: %s' % (soft, hard, e)
    return None


def fds_needed(clients):
    """What the test process needs: one socket per client, plus what the harness opens (logs,
    pipes, busctl), with room."""
    return 2 * clients + 600


# --------------------------------------------------------------------------------------------
# The client: N streaming requests at once on one epoll loop


def prompts(n, tag='load'):
    """n distinct prompts."""
    return ['%s stream %d: tell me about the number %d' % (tag, i, i * 7919 % 100003) for i in range(n)]


def generate_body(model, prompt):
    return json.dumps({'model': model, 'prompt': prompt, 'stream': True}).encode()


class Stream:
    __slots__ = ('i', 'sock', 'req', 'off', 'state', 'buf', 'body', 'status', 'chunked', 'left',
                 't_start', 't_connected', 't_sent', 't_first', 't_end', 't_last_rx', 'err', 'clean_end')

    def __init__(self, i, req):
        self.i = i
        self.sock = None
        self.req = req
        self.off = 0
        self.state = 'connect'  # connect, send, head, size, data, crlf, trailer, length, done
        self.buf = bytearray()
        self.body = bytearray()
        self.status = None
        self.chunked = False
        self.left = 0
        self.t_start = self.t_connected = self.t_sent = self.t_first = self.t_end = None
        self.t_last_rx = None
        self.err = None
        self.clean_end = False

    def connect_time(self):
        return None if self.t_connected is None else self.t_connected - self.t_start

    def ttft(self):
        return None if self.t_first is None else self.t_first - self.t_start

    def total(self):
        return None if self.t_end is None or self.err else self.t_end - self.t_start


class RunResult:
    def __init__(self):
        self.streams = []
        self.t_begin = None         # before the first connect()
        self.t_all_sent = None      # when the last request was written whole
        self.t_done = None
        self.cpu = 0.0              # this process's CPU seconds during the round


def _feed(st, data, now):
    """The HTTP/1.1 response parser: head, then a chunked or Content-Length body into st.body.
    Sets st.state 'done' at the body's end; raises ValueError on a framing error."""
    st.buf += data
    buf = st.buf
    while True:
        if st.state == 'head':
            k = buf.find(b'\r\n\r\n')
            if k < 0:
                if len(buf) > 65536:
                    raise ValueError('response head larger than 64 KiB')
                return
            head = bytes(buf[:k]).decode('latin-1').split('\r\n')
            del buf[:k + 4]
            parts = head[0].split(' ', 2)
            if len(parts) < 2 or not parts[0].startswith('HTTP/1.'):
                raise ValueError('bad status line %r' % head[0][:80])
            st.status = int(parts[1])
            if 100 <= st.status < 200:
                continue
            hdr = {}
            for line in head[1:]:
                name, _, value = line.partition(':')
                hdr[name.strip().lower()] = value.strip()
            if 'chunked' in hdr.get('transfer-encoding', '').lower():
                st.chunked = True
                st.state = 'size'
            elif 'content-length' in hdr:
                st.left = int(hdr['content-length'])
                st.state = 'length'
                if st.left == 0:
                    st.state = 'done'
                    st.clean_end = True
                    return
            else:
                raise ValueError('response with neither chunked encoding nor Content-Length')
        elif st.state == 'size':
            k = buf.find(b'\r\n')
            if k < 0:
                if len(buf) > 4096:
                    raise ValueError('chunk size line too long')
                return
            size = int(bytes(buf[:k]).split(b';', 1)[0].strip() or b'x', 16)
            del buf[:k + 2]
            if size == 0:
                st.state = 'trailer'
            else:
                st.left = size
                st.state = 'data'
        elif st.state in ('data', 'length'):
            if not buf:
                return
            take = buf[:st.left]
            del buf[:st.left]
            st.left -= len(take)
            if st.t_first is None and b'\n' in take:
                st.t_first = now
            st.body += take
            if st.left == 0:
                if st.state == 'length':
                    st.state = 'done'
                    st.clean_end = True
                    return
                st.state = 'crlf'
        elif st.state == 'crlf':
            if len(buf) < 2:
                return
            if buf[:2] != b'\r\n':
                raise ValueError('chunk not followed by CRLF: %r' % bytes(buf[:10]))
            del buf[:2]
            st.state = 'size'
        elif st.state == 'trailer':
            k = buf.find(b'\r\n')
            if k < 0:
                return
            line = buf[:k]
            del buf[:k + 2]
            if not line:
                st.state = 'done'
                st.clean_end = True
                return
        else:
            return


def run_streams(addr, path, bodies, silence_timeout=SILENCE_TIMEOUT, deadline=ROUND_DEADLINE):
    """Opens len(bodies) streaming POST requests to addr at once (non-blocking connect() of all,
    then one epoll loop sends every request and reads every answer to its end). Returns a
    RunResult; a stream that failed has .err set. Bounded: a stream silent for silence_timeout
    fails, and the whole round ends after deadline seconds (what is left fails as timed out)."""
    host, port = addr
    res = RunResult()
    sel = selectors.DefaultSelector()
    active = {}
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    res.t_begin = time.monotonic()
    for i, body in enumerate(bodies):
        req = (('POST %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: mycelia-bench-load\r\n'
                'Content-Type: application/json\r\nAccept: application/x-ndjson\r\n'
                'Content-Length: %d\r\n\r\n') % (path, host, port, len(body))).encode() + body
        st = Stream(i, req)
        res.streams.append(st)
        st.t_start = st.t_last_rx = time.monotonic()
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as e:
            st.err = 'socket(): %s' % e
            st.state = 'done'
            st.t_end = time.monotonic()
            continue
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rc = s.connect_ex((host, port))
        if rc not in (0, errno.EINPROGRESS):
            st.err = 'connect(): %s' % os.strerror(rc)
            st.state = 'done'
            st.t_end = time.monotonic()
            s.close()
            continue
        st.sock = s
        active[s.fileno()] = st
        sel.register(s, selectors.EVENT_WRITE, st)
    n_unsent = len(active)
    end_by = res.t_begin + deadline
    next_check = time.monotonic() + 0.1

    def finish(st, now, err=None):
        nonlocal n_unsent
        if st.state in ('connect', 'send'):
            n_unsent -= 1
            if n_unsent == 0:
                res.t_all_sent = now
        st.t_end = now
        if err and not st.err:
            st.err = err
        st.state = 'done'
        try:
            sel.unregister(st.sock)
        except (KeyError, ValueError):
            pass
        active.pop(st.sock.fileno(), None)
        st.sock.close()

    try:
        while active:
            now = time.monotonic()
            events = sel.select(timeout=max(0.0, min(0.1, end_by - now)))
            for key, mask in events:
                st = key.data
                s = st.sock
                if st.state == 'connect':
                    e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if e:
                        finish(st, time.monotonic(), 'connect(): %s' % os.strerror(e))
                        continue
                    st.t_connected = time.monotonic()
                    st.state = 'send'
                if st.state == 'send':
                    try:
                        st.off += s.send(st.req[st.off:])
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as e:
                        finish(st, time.monotonic(), 'send(): %s' % e)
                        continue
                    if st.off < len(st.req):
                        continue
                    st.t_sent = time.monotonic()
                    st.state = 'head'
                    n_unsent -= 1
                    if n_unsent == 0:
                        res.t_all_sent = st.t_sent
                    sel.modify(s, selectors.EVENT_READ, st)
                    continue
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    finish(st, time.monotonic(), 'recv(): %s' % e)
                    continue
                t = time.monotonic()
                st.t_last_rx = t
                if not data:
                    finish(st, t, 'connection closed %s' % ('before the answer' if st.status is None
                                                             else 'mid-body (%s)' % st.state))
                    continue
                try:
                    _feed(st, data, t)
                except ValueError as e:
                    finish(st, t, 'bad response: %s' % e)
                    continue
                if st.state == 'done':
                    finish(st, t)
            now = time.monotonic()
            if now >= next_check or now >= end_by:
                next_check = now + 0.1
                for st in list(active.values()):
                    if now >= end_by:
                        finish(st, now, 'timed out: round deadline (%.0f s) reached in state %s' % (deadline, st.state))
                    elif now - st.t_last_rx > silence_timeout:
                        finish(st, now, 'timed out: %.0f s of silence in state %s' % (silence_timeout, st.state))
    finally:
        for st in list(active.values()):
            finish(st, time.monotonic(), 'aborted')
        sel.close()
    res.t_done = time.monotonic()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    res.cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return res


def check_stream(st, expect):
    """None when the stream is a complete, correct answer, else why not. expect: the double's own
    (text, eval_count) for the stream's prompt."""
    if st.err:
        return st.err
    if st.status != 200:
        return 'status %s: %r' % (st.status, bytes(st.body[:160]))
    body = bytes(st.body)
    if not body.endswith(b'\n'):
        return 'NDJSON body does not end with a newline: %r' % body[-80:]
    text = []
    last = None
    for n, line in enumerate(body.split(b'\n')[:-1]):
        try:
            last = json.loads(line)
        except ValueError as e:
            return 'line %d does not parse (%s): %r' % (n, e, line[:160])
        if not isinstance(last, dict):
            return 'line %d is not an object: %r' % (n, line[:160])
        if 'error' in last:
            return 'error object: %r' % last['error']
        text.append(last.get('response', ''))
    if last is None or last.get('done') is not True:
        return 'no final done:true (last line %r)' % (last,)
    got = ''.join(text)
    if expect is not None:
        want_text, want_count = expect
        if got != want_text:
            return 'text differs from the double\'s: %r... vs %r...' % (got[:60], want_text[:60])
        if last.get('eval_count') != want_count:
            return 'eval_count %r, the double says %r' % (last.get('eval_count'), want_count)
    return None


def judge(res, expected):
    """[(stream index, why)] of the streams that failed. expected: [(text, eval_count)] by index."""
    bad = []
    for st in res.streams:
        why = check_stream(st, expected[st.i] if expected is not None else None)
        if why:
            bad.append((st.i, why))
    return bad


def summarize_failures(bad, total):
    """'K of N streams failed: reason x count; e.g. stream #i: why'."""
    if not bad:
        return 'all %d streams complete and correct' % total
    kinds = {}
    for i, why in bad:
        kind = why.split(':', 1)[0]
        kinds.setdefault(kind, []).append((i, why))
    parts = ['%s x %d (e.g. stream #%d: %s)' % (k, len(v), v[0][0], v[0][1][:200])
             for k, v in sorted(kinds.items(), key=lambda kv: -len(kv[1]))]
    return '%d of %d streams failed: %s' % (len(bad), total, '; '.join(parts))


def reference_answers(double, model, prompt_list, timeout=10.0):
    """The double's own answer (text, eval_count) for each prompt, asked one at a time on one
    kept-alive connection with stream:false. The caller sets the token delay to 0 first
    (/__double/faults): the text does not depend on it."""
    conn = http.client.HTTPConnection(double.host, double.port, timeout=timeout)
    out = []
    try:
        for p in prompt_list:
            conn.request('POST', '/api/generate', body=json.dumps({'model': model, 'prompt': p, 'stream': False}),
                         headers={'Content-Type': 'application/json'})
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError('the double answered %d to %r: %r' % (r.status, p, data[:200]))
            obj = json.loads(data)
            out.append((obj['response'], obj['eval_count']))
    finally:
        conn.close()
    return out


# --------------------------------------------------------------------------------------------
# The shim's process: pid, RSS, fds


def shimd_pid(harness, node):
    """mycelia-shimd's pid under the node's launcher (bench/chaos.py's node_processes() way)."""
    for p in harness.proc_descendants(node.proc.pid):
        if harness.pid_alive(p) and harness.proc_exe_name(p) == 'mycelia-shimd':
            return p
    raise RuntimeError('no mycelia-shimd under launcher %d' % node.proc.pid)


def fd_count(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


def status_kib(pid, field):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError('no %s for pid %d' % (field, pid))


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        rest = f.read().rsplit(')', 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf('SC_CLK_TCK')


def wait_fds_settle(pid, target, timeout=10.0):
    """Polls pid's open fd count until it is at most target; returns the last count."""
    deadline = time.monotonic() + timeout
    while True:
        n = fd_count(pid)
        if n <= target or time.monotonic() >= deadline:
            return n
        time.sleep(0.05)


class Sampler:
    """Samples a process's VmRSS (KiB) and open fds every interval in a thread."""

    def __init__(self, pid, interval=SAMPLE_INTERVAL):
        self.pid = pid
        self.interval = interval
        self.samples = []       # (t, rss KiB, fds)
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_ev.is_set():
            try:
                self.samples.append((time.monotonic(), status_kib(self.pid, 'VmRSS'), fd_count(self.pid)))
            except (OSError, RuntimeError):
                pass
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.thread.join(5)
        return self

    def peak_rss(self):
        return max((s[1] for s in self.samples), default=None)

    def peak_fds(self):
        return max((s[2] for s in self.samples), default=None)


# --------------------------------------------------------------------------------------------
# The benchmark


def listen_overflows():
    """The kernel's TcpExt ListenOverflows (SYNs or handshakes dropped because a listener's accept
    queue was full), for the whole network namespace; None when unreadable."""
    try:
        with open('/proc/net/netstat') as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith('TcpExt:'):
            d = dict(zip(names.split()[1:], values.split()[1:]))
            return int(d['ListenOverflows']) if 'ListenOverflows' in d else None
    return None


def shim_counters(node):
    out = {}
    for name in ('RequestsTotal', 'RequestsFailed', 'RejectedBusy', 'UpstreamErrors', 'ClientCancelled',
                 'AcceptPaused', 'ClientsTimedOut'):
        try:
            out[name] = int(node.prop('org.mycelia.Shim1', name))
        except Exception:  # noqa: BLE001 a counter this build lacks is left out
            pass
    return out


def set_token_delay(double, ms):
    """ms None: back to the command line's value."""
    double.faults(**({} if ms is None else {'token_delay_ms': ms}))


def parse_args(argv):
    ap = argparse.ArgumentParser(description='N concurrent streaming clients, straight to the double and '
                                             'through one node (issue 11).')
    ap.add_argument('build', nargs='?', default=None, help='build tree (default: build/ in the source tree)')
    ap.add_argument('--clients', type=int, default=1000, help='concurrent streams (1..%d)' % MAX_CLIENTS)
    ap.add_argument('--tokens', type=int, default=32, help='tokens per answer')
    ap.add_argument('--token-delay-ms', type=int, default=20, help='delay before each token at the double')
    ap.add_argument('--rounds', type=int, default=5, help='rounds; each runs both paths')
    args = ap.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        ap.error('--clients 1..%d (the double serves at most %d at once)' % (MAX_CLIENTS, MAX_CLIENTS))
    if not 1 <= args.tokens <= 10000 or not 0 <= args.token_delay_ms <= 1000 or not 1 <= args.rounds <= 50:
        ap.error('--tokens 1..10000, --token-delay-ms 0..1000, --rounds 1..50')
    return args


def ms(x):
    return '%.1f ms' % (x * 1e3)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    why = raise_nofile(fds_needed(args.clients))
    if why:
        sys.exit('bench/load.py: %s' % why)
    sys.path.insert(0, HERE)
    import benchenv
    build = args.build or os.path.join(benchenv.ROOT, 'build')
    harness = benchenv.use_build(build, 'bench/load.py')
    command = 'bench/load.py %s --clients %d --tokens %d --token-delay-ms %d --rounds %d' % (
        args.build or 'build', args.clients, args.tokens, args.token_delay_ms, args.rounds)
    n = args.clients

    def log(msg):
        print('load: ' + msg, file=sys.stderr, flush=True)

    try:
        return run(harness, args, command, n, log)
    finally:
        harness.teardown_all()


def run(harness, args, command, n, log):
    double = harness.Double('--parallel', str(n), '--max-queue', str(4 * n), '--tokens', str(args.tokens),
                            '--token-delay-ms', str(args.token_delay_ms))
    # [shim] max_requests defaults to 512, as OLLAMA_MAX_QUEUE: past it the shim answers 503.
    node = harness.Node(double.url, '--max-requests', str(n + 100), '--log-level', 'warning', name='load')
    model = double.chat_model()
    shim = shimd_pid(harness, node)
    plist = prompts(n)
    bodies = [generate_body(model, p) for p in plist]

    log('reference answers from the double (token delay 0)...')
    set_token_delay(double, 0)
    expected = reference_answers(double, model, plist)
    # Warm-up through the shim (not measured): its code and first buffers in memory.
    warm = run_streams(node.addr, '/api/generate', bodies[:20])
    bad = judge(warm, expected[:20])
    if bad:
        sys.exit('bench/load.py: warm-up through the shim failed: ' + summarize_failures(bad, 20))
    set_token_delay(double, None)
    time.sleep(0.5)
    fds_idle = fd_count(shim)
    rss_idle = status_kib(shim, 'VmRSS')
    counters0 = shim_counters(node)
    stats0 = double.stats()
    log('shimd pid %d idle: VmRSS %d KiB, %d fds' % (shim, rss_idle, fds_idle))

    paths = {'direct': double.addr, 'shim': node.addr}
    res = {'direct': [], 'shim': []}
    failures = {'direct': [], 'shim': []}
    samplers = []
    cpu = {'direct': [0.0, 0.0, 0.0, 0.0], 'shim': [0.0, 0.0, 0.0, 0.0]}   # client, double, shim, wall
    overflows = {'direct': 0, 'shim': 0}
    for r in range(args.rounds):
        order = ('direct', 'shim') if r % 2 == 0 else ('shim', 'direct')
        for path in order:
            c_double, c_shim = cpu_seconds(double.proc.pid), cpu_seconds(shim)
            lo0 = listen_overflows()
            sampler = Sampler(shim) if path == 'shim' else None
            rr = run_streams(paths[path], '/api/generate', bodies)
            if sampler:
                samplers.append(sampler.stop())
            cpu[path][0] += rr.cpu
            cpu[path][1] += cpu_seconds(double.proc.pid) - c_double
            cpu[path][2] += cpu_seconds(shim) - c_shim
            cpu[path][3] += rr.t_done - rr.t_begin
            lo1 = listen_overflows()
            if lo0 is not None and lo1 is not None:
                overflows[path] += lo1 - lo0
            bad = judge(rr, expected)
            res[path].append(rr)
            failures[path] += [(r, i, why) for i, why in bad]
            early = sum(1 for st in rr.streams if st.t_end is not None and rr.t_all_sent is not None
                        and st.t_end < rr.t_all_sent)
            log('round %d %-6s: %s; all sent after %.0f ms, round %.2f s, %d ended before the last was sent, '
                'listen overflows +%s%s' % (
                r + 1, path, summarize_failures(bad, n),
                ((rr.t_all_sent or rr.t_done) - rr.t_begin) * 1e3, rr.t_done - rr.t_begin, early,
                '?' if lo0 is None or lo1 is None else lo1 - lo0,
                ('; shimd peak %d KiB, %d fds' % (sampler.peak_rss(), sampler.peak_fds())) if sampler else ''))
            # Let the connections close on every side before the next round.
            harness.wait_until(lambda: double.stats()['active'] == 0, 20, interval=0.05,
                               what='the double idle after the round')
            wait_fds_settle(shim, fds_idle + 80, timeout=10)
            time.sleep(0.3)

    fds_after = wait_fds_settle(shim, fds_idle + 8, timeout=5)
    rss_after = status_kib(shim, 'VmRSS')
    hwm = status_kib(shim, 'VmHWM')
    counters1 = shim_counters(node)
    stats1 = double.stats()

    def pct(path, f, q):
        return quantile([v for rr in res[path] for st in rr.streams for v in [f(st)] if v is not None], q)

    ttft = {p: (pct(p, Stream.ttft, 0.5), pct(p, Stream.ttft, 0.99)) for p in res}
    conn = {p: (pct(p, Stream.connect_time, 0.99), sum(1 for rr in res[p] for st in rr.streams
                                                       if (st.connect_time() or 0) >= 0.9)) for p in res}
    total = {p: (pct(p, Stream.total, 0.5), pct(p, Stream.total, 0.99)) for p in res}
    peak_rss = max(s.peak_rss() for s in samplers)
    peak_fds = max(s.peak_fds() for s in samplers)
    first_peak = samplers[0].peak_rss()
    n_errors = {p: len(failures[p]) for p in res}
    early = {p: sum(1 for rr in res[p] for st in rr.streams
                    if st.t_end is not None and rr.t_all_sent is not None and st.t_end < rr.t_all_sent)
             for p in res}
    sent_ms = {p: quantile([((rr.t_all_sent or rr.t_done) - rr.t_begin) * 1e3 for rr in res[p]], 1.0) for p in res}

    out = []
    p = out.append
    p('## %s: %d concurrent streaming clients on one node (bench/load.py, issue 11)' % (
        time.strftime('%Y-%m-%d ~%H:%M UTC', time.gmtime()), n))
    p('')
    p('%d streaming `POST /api/generate` at once, each with a prompt of its own, from one Python process '
      '(one epoll loop), %d rounds; each round runs the load straight to the double and through one '
      'node\'s shim in front of the same double (alternating which goes first). Double: `--parallel %d '
      '--max-queue %d --tokens %d --token-delay-ms %d`, so a stream lasts ~%.2f s. Node: one launcher, '
      '`--max-requests %d --log-level warning` (`[shim] max_requests` defaults to 512, as OLLAMA_MAX_QUEUE).'
      % (n, args.rounds, n, 4 * n, args.tokens, args.token_delay_ms, args.tokens * args.token_delay_ms / 1e3,
         n + 100))
    p('')
    p('```')
    p(command)
    p('```')
    p('')
    p('- Machine: %d CPUs, load average %s at the end; client, double and shim share them.' % (
        os.cpu_count(), ' '.join(open('/proc/loadavg').read().split()[:3])))
    p('- Listen backlogs: somaxconn for the double (as Ollama) and the shim. '
      'Kernel listen overflows (whole host) during the rounds: %d direct, %d shim; connect() p99 %s direct, '
      '%s through the shim; connects that took over 0.9 s (a dropped SYN, retried after 1 s): %d direct, %d shim.' % (
          overflows['direct'], overflows['shim'], ms(conn['direct'][0]), ms(conn['shim'][0]),
          conn['direct'][1], conn['shim'][1]))
    p('- Every request of a round was connected and sent before any stream could end: the last was '
      'written %.0f ms (worst round) after the first connect() direct, %.0f ms through the shim; '
      'streams that ended before that: %d direct, %d shim.' % (sent_ms['direct'], sent_ms['shim'],
                                                              early['direct'], early['shim']))
    p('')
    p('| path | streams | errors | TTFT p50 | TTFT p99 | whole stream p50 | whole stream p99 | client CPU | double CPU | shim CPU |')
    p('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for path, label in (('direct', 'straight to the double'), ('shim', 'through the shim')):
        c = cpu[path]
        p('| %s | %d | %s | %s | %s | %s | %s | %.2f s | %.2f s | %s |' % (
            label, n * args.rounds, ('**%d**' % n_errors[path]) if n_errors[path] else '0',
            ms(ttft[path][0]), ms(ttft[path][1]), ms(total[path][0]), ms(total[path][1]),
            c[0], c[1], ('%.2f s' % c[2]) if path == 'shim' else '-'))
    p('| **added by the shim** | | | %+.1f ms | **%+.1f ms** | %+.1f ms | **%+.1f ms** | | | |' % (
        (ttft['shim'][0] - ttft['direct'][0]) * 1e3, (ttft['shim'][1] - ttft['direct'][1]) * 1e3,
        (total['shim'][0] - total['direct'][0]) * 1e3, (total['shim'][1] - total['direct'][1]) * 1e3))
    p('')
    p('CPU: seconds used during the rounds of that path, all rounds together (%.1f s of wall time '
      'direct, %.1f s through the shim): per stream, the shim %.2f ms, the double %.2f ms.' % (
          cpu['direct'][3], cpu['shim'][3], cpu['shim'][2] * 1e3 / (n * args.rounds),
          cpu['shim'][1] * 1e3 / (n * args.rounds)))
    p('')
    p('| mycelia-shimd | value |')
    p('|---|---:|')
    p('| VmRSS idle (after a 20-stream warm-up) | %d KiB |' % rss_idle)
    p('| VmRSS peak with %d streams open (sampled every %d ms) | %d KiB (first round %d KiB) |' % (
        n, SAMPLE_INTERVAL * 1000, peak_rss, first_peak))
    p('| **memory per connection** (a client connection and its upstream one), (peak - idle) / %d | **%.1f KiB** |' % (
        n, (peak_rss - rss_idle) / n))
    p('| VmHWM at the end (the kernel\'s peak, not missed between samples) | %d KiB: (VmHWM - idle) / %d = %.1f KiB |' % (
        hwm, n, (hwm - rss_idle) / n))
    p('| VmRSS after the last round | %d KiB |' % rss_after)
    p('| open fds idle / peak / after | %d / %d / %d |' % (fds_idle, peak_fds, fds_after))
    d = {k: counters1.get(k, 0) - counters0.get(k, 0) for k in counters1}
    p('| Shim1 counters during the rounds | %s |' % ', '.join('%s +%d' % (k, v) for k, v in d.items()))
    p('| double: requests / completed / cancelled / failed / connections during the rounds | %s |' % ' / '.join(
        '+%d' % (stats1[k] - stats0[k]) for k in ('requests', 'completed', 'cancelled', 'failed', 'connections')))
    if any(failures.values()):
        p('')
        p('Failures:')
        for path in res:
            for r, i, why in failures[path][:20]:
                p('- %s, round %d, stream #%d: %s' % (path, r + 1, i, why))
            if len(failures[path]) > 20:
                p('- %s: %d more' % (path, len(failures[path]) - 20))
    print('\n'.join(out), flush=True)
    return 1 if any(failures.values()) else 0


if __name__ == '__main__':
    sys.exit(main())
