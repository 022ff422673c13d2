# SPDX-License-Identifier: LGPL-2.1-or-later
# Integration test harness: starts the Ollama test double and a whole mycelia-node on loopback,
# talks HTTP (plain, streaming, raw), D-Bus (busctl) and tears everything down on every exit path.
"""Helpers shared by tests/integration/test_*.py. Python 3 standard library only.

Paths come from the environment meson sets: MYCELIA_NODE, MYCELIA_SHIMD, MYCELIA_ROUTERD,
MYCELIA_GOSSIPD, MYCELIA_DISCOVERYD, MYCELIA_SHARDD, OLLAMA_DOUBLE, MYCELIACTL, MYCELIA_DBUS_XML_DIR, read through
tests/testenv.py (which this module puts on sys.path: skips, env lookups and the runner, main()).
Every wait has a timeout; every process is started in its own process group with
PR_SET_PDEATHSIG and is killed by teardown (atexit, SIGTERM).
"""

import atexit
import contextlib
import ctypes
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# tests/testenv.py. Also under these names here, for test files that call harness.require_env()
# or harness.main(): the same functions, not copies.
from testenv import env_path, main, require_env  # noqa: E402,F401

# --------------------------------------------------------------------------------------------
# Process management

_procs = []            # every Proc ever started, for atexit teardown
_tmpdirs = []
_lock = threading.Lock()

# tools/check's sanitizer stage (docs/testing.md, "Sanitizers") names a folder that must stay
# empty. Every process this file starts writes its AddressSanitizer and LeakSanitizer reports
# there, named after this file; UndefinedBehaviorSanitizer ignores log_path and writes to stderr,
# so teardown copies every process log holding a report there too. A daemon the launcher
# restarted after a report, or one that reported a leak at exit, fails the stage even when the
# test passed.
SANITIZER_LOG_DIR = os.environ.get('MYCELIA_SANITIZER_LOG_DIR')
SANITIZER_REPORT = re.compile(rb'runtime error: |^==\d+==ERROR: |^SUMMARY: \w+Sanitizer', re.M)
if SANITIZER_LOG_DIR:
    os.environ['ASAN_OPTIONS'] = '%s:log_path=%s' % (
        os.environ.get('ASAN_OPTIONS', ''),
        os.path.join(SANITIZER_LOG_DIR, os.path.basename(sys.argv[0]) + '.asan'))

PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _libc = None


def _child_setup():
    # Die with the test process even if it is SIGKILLed (meson timeout), and get a process group
    # of our own so teardown can kill the whole tree.
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def make_tmpdir(prefix='mycelia-it-'):
    d = tempfile.mkdtemp(prefix=prefix)
    with _lock:
        _tmpdirs.append(d)
    return d


def proc_children(pid):
    """Direct children of pid, from /proc."""
    out = []
    for ent in os.listdir('/proc'):
        if not ent.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % ent, 'rb') as f:
                stat = f.read().decode('utf-8', 'replace')
        except OSError:
            continue
        # comm may contain spaces and parens: ppid is the 2nd field after the last ')'.
        rest = stat[stat.rfind(')') + 2:].split()
        if len(rest) >= 2 and int(rest[1]) == pid:
            out.append(int(ent))
    return out


def proc_descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in proc_children(p):
            if c not in out:
                out.append(c)
                todo.append(c)
    return out


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            stat = f.read().decode('utf-8', 'replace')
    except OSError:
        return False
    state = stat[stat.rfind(')') + 2:].split()[0]
    return state not in ('Z', 'X')


def proc_exe_name(pid):
    try:
        return os.path.basename(os.readlink('/proc/%d/exe' % pid))
    except OSError:
        try:
            with open('/proc/%d/comm' % pid) as f:
                return f.read().strip()
        except OSError:
            return ''


def proc_rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise RuntimeError('no VmRSS for pid %d' % pid)


class Proc:
    """A child process with its stdout drained by a thread into a list of timestamped lines and
    its stderr in a log file."""

    def __init__(self, argv, name=None, env=None, logdir=None, pass_fds=()):
        self.argv = [str(a) for a in argv]
        self.name = name or os.path.basename(self.argv[0])
        logdir = logdir or make_tmpdir()
        self.log_path = os.path.join(logdir, '%s.%d.log' % (self.name, int(time.monotonic() * 1000)))
        self.log = open(self.log_path, 'wb')
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.lines = []
        self.cond = threading.Condition()
        self.eof = False
        self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=self.log, env=full_env, start_new_session=True,
                                      preexec_fn=_child_setup, pass_fds=pass_fds)
        self.pid = self.popen.pid
        with _lock:
            _procs.append(self)
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self):
        f = self.popen.stdout
        try:
            for raw in iter(f.readline, b''):
                line = raw.decode('utf-8', 'replace').rstrip('\n')
                with self.cond:
                    self.lines.append((time.monotonic(), line))
                    self.cond.notify_all()
        except (OSError, ValueError):
            pass
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait_line(self, pattern, timeout=10.0):
        """Returns the re.Match of the first stdout line matching pattern; raises on timeout or
        if the process exits first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        idx = 0
        with self.cond:
            while True:
                while idx < len(self.lines):
                    m = rx.search(self.lines[idx][1])
                    idx += 1
                    if m:
                        return m
                if self.eof:
                    self.popen.poll()
                    raise RuntimeError('%s exited (rc=%s) before printing /%s/\n%s' % (
                        self.name, self.popen.returncode, pattern, self.tail()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError('%s did not print /%s/ within %.1fs\n%s' % (
                        self.name, pattern, timeout, self.tail()))
                self.cond.wait(min(left, 0.5))

    def tail(self, n=40):
        try:
            if not self.log.closed:
                self.log.flush()
            with open(self.log_path, 'rb') as f:
                data = f.read().decode('utf-8', 'replace').splitlines()
        except OSError:
            data = []
        out = [l for _, l in self.lines[-10:]]
        return '--- %s stdout (last lines) ---\n%s\n--- %s stderr (last %d lines) ---\n%s' % (
            self.name, '\n'.join(out), self.name, n, '\n'.join(data[-n:]))

    def alive(self):
        return self.popen.poll() is None

    def wait(self, timeout):
        """Returns the exit code, or raises TimeoutError."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError('%s (pid %d) did not exit within %.1fs' % (self.name, self.pid, timeout))

    def signal(self, sig):
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill_tree(self):
        """SIGKILLs the process group and any descendants that left it."""
        pids = []
        if self.alive():
            pids = proc_descendants(self.pid)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def crash(self):
        """A node's crash as the mesh sees it: the whole tree is frozen (SIGSTOP) first, so that no
        daemon gets to leave cleanly when the launcher dies (the launcher's children get SIGTERM
        on its death, PR_SET_PDEATHSIG), then SIGKILLed."""
        pids = proc_descendants(self.pid) if self.alive() else []
        for p in [self.pid] + pids:
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        self.kill_tree()

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL of the whole tree. Returns the exit code (None if killed)."""
        rc = None
        if self.alive():
            kids = proc_descendants(self.pid)
            self.signal(signal.SIGTERM)
            try:
                rc = self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                rc = None
            # Collect leftovers of the tree too.
            for p in kids:
                if pid_alive(p):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.kill_tree()
        try:
            self.log.close()
        except OSError:
            pass
        return rc


@contextlib.contextmanager
def asan_quarantine_off():
    """Processes started inside this block run with AddressSanitizer's quarantine off, for a test
    that bounds their RSS: freed memory waits there (256 MB) to catch a use after free, so under
    the sanitizer stage RSS would measure the quarantine, not the process. No effect otherwise."""
    saved = os.environ.get('ASAN_OPTIONS')
    if saved is not None:
        os.environ['ASAN_OPTIONS'] = saved + ':quarantine_size_mb=0'
    try:
        yield
    finally:
        if saved is not None:
            os.environ['ASAN_OPTIONS'] = saved


def _keep_sanitizer_reports(procs):
    for p in procs:
        try:
            with open(p.log_path, 'rb') as f:
                data = f.read()
        except OSError:
            continue
        if SANITIZER_REPORT.search(data):
            dest = os.path.join(SANITIZER_LOG_DIR, '%s.%s.%d.stderr' % (
                os.path.basename(sys.argv[0]), p.name, p.pid))
            with open(dest, 'wb') as f:
                f.write(data)


def teardown_all():
    with _lock:
        procs = list(_procs)
        dirs = list(_tmpdirs)
        _procs.clear()
        _tmpdirs.clear()
    for p in reversed(procs):
        try:
            p.stop(timeout=3)
        except Exception:  # noqa: BLE001 teardown must go on
            pass
    if SANITIZER_LOG_DIR:
        _keep_sanitizer_reports(procs)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(teardown_all)


def _on_signal(signum, frame):
    # meson sends SIGTERM on timeout: leave through SystemExit so finally/atexit run.
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


def parse_size(s):
    """"1M" -> 1048576, as common/config.c's parse_size() reads it."""
    s = str(s).strip().upper().rstrip('B')
    mult = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}.get(s[-1:], 1)
    return int(s[:-1] if mult != 1 else s) * mult


def free_port():
    """A TCP port free on 127.0.0.1 right now (for programs that need a concrete number)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_until(pred, timeout, interval=0.1, what='condition'):
    """Polls pred() until it returns a true value; returns it, or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 keep polling, report the last error
            last_exc = e
        if time.monotonic() >= deadline:
            raise TimeoutError('%s not reached within %.1fs (last error: %r)' % (what, timeout, last_exc))
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# HTTP


def split_addr(addr):
    """(host, port) from "http://h:p", "h:p" or a tuple."""
    if isinstance(addr, tuple):
        return addr
    a = addr
    if '://' in a:
        a = a.split('://', 1)[1]
    a = a.split('/', 1)[0]
    host, port = a.rsplit(':', 1)
    return host.strip('[]'), int(port)


class HeaderLookup:
    """Case-insensitive lookup in self.headers, a list of (name, value) as received."""

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    @property
    def content_type(self):
        return self.header('Content-Type')


class Response(HeaderLookup):
    def __init__(self, status, reason, headers, body, elapsed):
        self.status = status
        self.reason = reason
        self.headers = headers   # list of (name, value)
        self.body = body
        self.elapsed = elapsed

    def json(self):
        return json.loads(self.body.decode('utf-8'))

    def ndjson(self):
        text = self.body.decode('utf-8')
        assert text.endswith('\n') or text == '', 'NDJSON body does not end with a newline: %r' % text[-80:]
        return [json.loads(l) for l in text.split('\n')[:-1]]

    def __repr__(self):
        return '<Response %d %s %r>' % (self.status, self.content_type, self.body[:200])


def _encode_body(body, headers):
    headers = dict(headers or {})
    if body is None:
        return None, headers
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers.setdefault('Content-Type', 'application/json')
    elif isinstance(body, str):
        body = body.encode()
    return body, headers


def http_request(addr, method, path, body=None, headers=None, timeout=15.0, conn=None):
    """One request; returns Response. With conn (an http.client.HTTPConnection) the connection is
    reused (keep-alive)."""
    data, hdrs = _encode_body(body, headers)
    own = conn is None
    if own:
        host, port = split_addr(addr)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        payload = r.read()
        return Response(r.status, r.reason, r.getheaders(), payload, time.monotonic() - t0)
    finally:
        if own:
            conn.close()


class ProtocolError(Exception):
    pass


class RawStream(HeaderLookup):
    """A hand-parsed HTTP/1.1 exchange over one socket, so tests see when each byte arrives,
    whether a chunked body ended cleanly, and can read slowly or hang up mid-stream."""

    def __init__(self, addr, method, path, body=None, headers=None, timeout=15.0, rcvbuf=None):
        host, port = split_addr(addr)
        data, hdrs = _encode_body(body, headers)
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        req = ['%s %s HTTP/1.1' % (method, path), 'Host: %s:%d' % (host, port)]
        if data is not None:
            hdrs.setdefault('Content-Length', str(len(data)))
        for k, v in hdrs.items():
            req.append('%s: %s' % (k, v))
        self.t_start = time.monotonic()
        self.sock.sendall(('\r\n'.join(req) + '\r\n\r\n').encode() + (data or b''))
        self.buf = b''
        self.clean_end = False
        self.eof = False
        self._read_head()

    def _fill(self):
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError('no data from server for %.1fs' % self.timeout)
        except ConnectionResetError:
            d = b''
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def _read_line(self):
        while b'\r\n' not in self.buf:
            if len(self.buf) > 1 << 20:
                raise ProtocolError('header line too long')
            if not self._fill():
                raise ProtocolError('connection closed in headers: %r' % self.buf[:200])
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line.decode('latin-1')

    def _read_head(self):
        while True:
            status_line = self._read_line()
            m = re.match(r'HTTP/1\.[01] (\d{3})(?: (.*))?$', status_line)
            if not m:
                raise ProtocolError('bad status line %r' % status_line)
            headers = []
            while True:
                line = self._read_line()
                if line == '':
                    break
                k, _, v = line.partition(':')
                headers.append((k.strip(), v.strip()))
            status = int(m.group(1))
            if status == 100:
                continue
            break
        self.t_head = time.monotonic()
        self.status = status
        self.reason = m.group(2) or ''
        self.headers = headers
        te = (self.header('Transfer-Encoding') or '').lower()
        self.chunked = 'chunked' in te
        cl = self.header('Content-Length')
        self.length = int(cl) if cl is not None and not self.chunked else None

    def chunks(self):
        """Yields (arrival_time, bytes) of body data as it arrives. Sets clean_end when the body
        ended as its framing says (last chunk, Content-Length reached)."""
        if self.length is not None:
            left = self.length
            if self.buf:
                d, self.buf = self.buf[:left], self.buf[left:]
                left -= len(d)
                yield time.monotonic(), d
            while left > 0:
                if not self._fill():
                    return
                d, self.buf = self.buf[:left], self.buf[left:]
                left -= len(d)
                yield time.monotonic(), d
            self.clean_end = True
            return
        if not self.chunked:
            # Body runs to EOF.
            if self.buf:
                d, self.buf = self.buf, b''
                yield time.monotonic(), d
            while self._fill():
                d, self.buf = self.buf, b''
                yield time.monotonic(), d
            self.clean_end = True
            return
        while True:
            try:
                size_line = self._read_line()
            except ProtocolError:
                return  # cut off between chunks
            try:
                size = int(size_line.split(';', 1)[0].strip(), 16)
            except ValueError:
                raise ProtocolError('bad chunk size line %r' % size_line)
            if size == 0:
                # Trailers, then the empty line.
                try:
                    while self._read_line() != '':
                        pass
                except ProtocolError:
                    return
                self.clean_end = True
                return
            left = size
            while left > 0:
                if not self.buf and not self._fill():
                    return
                d, self.buf = self.buf[:left], self.buf[left:]
                left -= len(d)
                yield time.monotonic(), d
            while len(self.buf) < 2:
                if not self._fill():
                    return
            if self.buf[:2] != b'\r\n':
                raise ProtocolError('chunk not followed by CRLF: %r' % self.buf[:20])
            self.buf = self.buf[2:]

    def lines(self):
        """Yields (arrival_time, text) per complete '\\n'-terminated line. A trailing fragment
        without newline is yielded as (t, text, ) with self.partial_tail set."""
        pending = b''
        self.partial_tail = None
        for t, d in self.chunks():
            pending += d
            while b'\n' in pending:
                line, pending = pending.split(b'\n', 1)
                yield t, line.decode('utf-8')
        if pending:
            self.partial_tail = pending.decode('utf-8', 'replace')

    def sse_frames(self):
        """Yields (arrival_time, data) per SSE event (the joined data: fields)."""
        pending = b''
        self.partial_tail = None
        for t, d in self.chunks():
            pending += d
            pending = pending.replace(b'\r\n', b'\n')
            while b'\n\n' in pending:
                frame, pending = pending.split(b'\n\n', 1)
                data = [l[5:].lstrip(b' ') if l.startswith(b'data:') else None
                        for l in frame.split(b'\n')]
                data = [x for x in data if x is not None]
                yield t, b'\n'.join(data).decode('utf-8')
        if pending.strip():
            self.partial_tail = pending.decode('utf-8', 'replace')

    def read_all(self):
        return b''.join(d for _, d in self.chunks())

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def send_request(addr, method, path, body=None, headers=None, timeout=15.0, rcvbuf=None):
    """Sends one request on a fresh socket and returns the socket without reading anything, for
    requests the server is expected to hold (queued, slow)."""
    host, port = split_addr(addr)
    data, hdrs = _encode_body(body, headers)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((host, port))
    req = ['%s %s HTTP/1.1' % (method, path), 'Host: %s:%d' % (host, port)]
    if data is not None:
        hdrs.setdefault('Content-Length', str(len(data)))
    req += ['%s: %s' % (k, v) for k, v in hdrs.items()]
    s.sendall(('\r\n'.join(req) + '\r\n\r\n').encode() + (data or b''))
    return s


def raw_exchange(addr, data, timeout=10.0, body=b'', stop_sending_on_reply=True):
    """Sends data (and then body) on a fresh socket, stops sending as soon as the server
    answers, and returns everything the server sent until it closed or went quiet for 1 s
    (bytes, closed_by_server)."""
    host, port = split_addr(addr)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    s.setblocking(False)
    out = data + body
    got = b''
    closed = False
    deadline = time.monotonic() + timeout
    quiet_since = None
    try:
        while time.monotonic() < deadline:
            want_w = [s] if out and not (stop_sending_on_reply and got) else []
            r, w, _ = select.select([s], want_w, [], 0.1)
            if r:
                try:
                    d = s.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    d = b''
                    closed = True
                if not d:
                    closed = True
                    break
                got += d
                quiet_since = None
            elif got:
                if quiet_since is None:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > 1.0:
                    break
            if w:
                try:
                    n = s.send(out[:65536])
                    out = out[n:]
                except (BrokenPipeError, ConnectionResetError):
                    out = b''
                except BlockingIOError:
                    pass
    finally:
        s.close()
    return got, closed


def parse_raw_response(raw):
    """(status, headers dict lowercased, body bytes) of the first non-1xx response in raw."""
    while True:
        head, sep, rest = raw.partition(b'\r\n\r\n')
        if not sep:
            raise ProtocolError('no complete response head in %r' % raw[:200])
        lines = head.decode('latin-1').split('\r\n')
        m = re.match(r'HTTP/1\.[01] (\d{3})', lines[0])
        if not m:
            raise ProtocolError('bad status line %r' % lines[0])
        status = int(m.group(1))
        headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(':')
            headers[k.strip().lower()] = v.strip()
        if 100 <= status < 200:
            raw = rest
            continue
        body = rest
        if 'chunked' in headers.get('transfer-encoding', '').lower():
            out, b = b'', rest
            while True:
                size_line, sep, b = b.partition(b'\r\n')
                if not sep:
                    break
                size = int(size_line.split(b';')[0], 16)
                if size == 0:
                    break
                out += b[:size]
                b = b[size + 2:]
            body = out
        elif 'content-length' in headers:
            body = rest[:int(headers['content-length'])]
        return status, headers, body


# --------------------------------------------------------------------------------------------
# JSON comparison

# Fields whose value legitimately differs between two identical requests: compare type only.
LOOSE_KEYS = frozenset([
    'created_at', 'modified_at', 'expires_at', 'created',
    'total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration',
    'id', 'system_fingerprint',
])


def _jtype(v):
    if isinstance(v, bool):
        return 'bool'
    if isinstance(v, (int, float)):
        return 'number'
    return type(v).__name__


def json_diff(a, b, path='$', loose=LOOSE_KEYS):
    """A list of differences between a (direct from the double) and b (through the node):
    same keys and types everywhere, same values except for loose keys."""
    diffs = []
    if _jtype(a) != _jtype(b):
        return ['%s: type %s vs %s (%r vs %r)' % (path, _jtype(a), _jtype(b), a, b)]
    if isinstance(a, dict):
        ka, kb = set(a), set(b)
        if ka != kb:
            diffs.append('%s: keys only direct %s, only via node %s' % (path, sorted(ka - kb), sorted(kb - ka)))
        for k in sorted(ka & kb):
            if k in loose:
                if _jtype(a[k]) != _jtype(b[k]):
                    diffs.append('%s.%s: type %s vs %s' % (path, k, _jtype(a[k]), _jtype(b[k])))
            else:
                diffs.extend(json_diff(a[k], b[k], '%s.%s' % (path, k), loose))
    elif isinstance(a, list):
        if len(a) != len(b):
            diffs.append('%s: length %d vs %d' % (path, len(a), len(b)))
        for i, (x, y) in enumerate(zip(a, b)):
            diffs.extend(json_diff(x, y, '%s[%d]' % (path, i), loose))
    elif a != b:
        diffs.append('%s: %r vs %r' % (path, a, b))
    return diffs


def sse_events(body):
    """The data of each SSE event in a complete text/event-stream body."""
    text = body.decode('utf-8').replace('\r\n', '\n')
    events = []
    for frame in text.split('\n\n'):
        if not frame.strip():
            continue
        data = [l[5:].lstrip(' ') for l in frame.split('\n') if l.startswith('data:')]
        events.append('\n'.join(data))
    return events, text.endswith('\n\n')


def body_diff(direct, via):
    """Differences between two Responses' bodies, interpreted by the direct one's Content-Type."""
    ct = (direct.content_type or '').split(';')[0].strip().lower()
    if direct.body == via.body:
        return []
    if ct == 'application/x-ndjson':
        try:
            a, b = direct.ndjson(), via.ndjson()
        except (ValueError, AssertionError) as e:
            return ['NDJSON does not parse: %s' % e]
        return json_diff(a, b, '$lines')
    if ct == 'application/json':
        try:
            a, b = direct.json(), via.json()
        except ValueError as e:
            return ['JSON does not parse: %s (%r)' % (e, via.body[:200])]
        return json_diff(a, b)
    if ct == 'text/event-stream':
        a, a_ok = sse_events(direct.body)
        b, b_ok = sse_events(via.body)
        diffs = [] if a_ok == b_ok else ['SSE body termination differs']
        if len(a) != len(b):
            diffs.append('SSE: %d events vs %d' % (len(a), len(b)))
        for i, (x, y) in enumerate(zip(a, b)):
            if x == y:
                continue
            try:
                diffs.extend(json_diff(json.loads(x), json.loads(y), '$event[%d]' % i))
            except ValueError:
                diffs.append('$event[%d]: %r vs %r' % (i, x, y))
        return diffs
    return ['body %r vs %r' % (direct.body[:300], via.body[:300])]


# --------------------------------------------------------------------------------------------
# D-Bus through busctl / dbus-send

class BusError(Exception):
    def __init__(self, msg, name=None):
        super().__init__(msg)
        self.name = name


def busctl(address, *args, timeout=10.0, json_out=True):
    argv = ['busctl', '--address=' + address]
    if json_out:
        argv.append('--json=short')
    argv += [str(a) for a in args]
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TimeoutError('busctl %s timed out' % ' '.join(argv[1:]))
    if p.returncode != 0:
        raise BusError('busctl %s failed (rc=%d): %s' % (' '.join(argv[2:]), p.returncode,
                                                         p.stderr.decode(errors='replace').strip()))
    out = p.stdout.decode()
    if json_out:
        return json.loads(out) if out.strip() else None
    return out


def bus_get_property(address, service, prop, path=None, iface=None):
    """Returns the 'data' of a property as busctl's JSON renders it."""
    path = path or '/' + service.replace('.', '/')
    iface = iface or service
    return busctl(address, 'get-property', service, path, iface, prop)['data']


def bus_call(address, service, method, signature='', *args, path=None, iface=None):
    path = path or '/' + service.replace('.', '/')
    iface = iface or service
    argv = ['call', service, path, iface, method]
    if signature:
        argv.append(signature)
        argv += list(args)
    r = busctl(address, *argv)
    return r['data'] if r else None


def dbus_send_error_name(address, service, method, *typed_args, path=None, iface=None, timeout=10.0):
    """Calls method with dbus-send, which (unlike busctl) prints the D-Bus error name. Returns
    (error_name or None, output)."""
    if not shutil.which('dbus-send'):
        raise unittest.SkipTest('dbus-send not installed')
    path = path or '/' + service.replace('.', '/')
    iface = iface or service
    # --bus= registers with the bus daemon; --address= is a peer-to-peer connection.
    argv = ['dbus-send', '--bus=' + address, '--print-reply', '--reply-timeout=5000',
            '--dest=' + service, path, '%s.%s' % (iface, method)] + list(typed_args)
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    out = (p.stdout + p.stderr).decode(errors='replace')
    m = re.search(r'Error ([A-Za-z0-9_.]+):', out)
    return (m.group(1) if m else None), out


def bus_pid_of(address, name):
    r = busctl(address, 'call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
               'org.freedesktop.DBus', 'GetConnectionUnixProcessID', 's', name)
    return int(r['data'][0])


def introspect_xml(address, service, path):
    return busctl(address, 'introspect', '--xml-interface', service, path, json_out=False)


# --------------------------------------------------------------------------------------------
# The Ollama test double

class Double:
    """tests/ollama-double on 127.0.0.1 (port 0 by default)."""

    def __init__(self, *args, port=0, logdir=None):
        self.args = [str(a) for a in args]
        self.logdir = logdir or make_tmpdir('mycelia-double-')
        self.port = port
        self.proc = None
        self.start(port)

    def start(self, port=None):
        if port is None:
            port = self.port
        exe = env_path('OLLAMA_DOUBLE')
        self.proc = Proc([exe, '--listen', '127.0.0.1:%d' % port] + self.args, name='ollama-double',
                         logdir=self.logdir)
        m = self.proc.wait_line(r'ollama-double: listening on http://([0-9.]+):(\d+)', timeout=10)
        self.host = m.group(1)
        self.port = int(m.group(2))
        self.url = 'http://%s:%d' % (self.host, self.port)
        self.addr = (self.host, self.port)
        return self

    def stop(self):
        if self.proc:
            self.proc.stop(timeout=3)

    def kill(self):
        if self.proc:
            self.proc.kill_tree()

    def request(self, method, path, body=None, headers=None, timeout=15.0):
        return http_request(self.addr, method, path, body, headers, timeout)

    def models(self):
        return [m['name'] for m in self.request('GET', '/api/tags', timeout=5).json()['models']]

    def chat_model(self):
        """A model that generates (not an embedding model)."""
        return next(n for n in self.models() if 'embed' not in n and 'minilm' not in n)

    def embed_model(self):
        names = self.models()
        return next((n for n in names if 'embed' in n or 'minilm' in n), names[0])

    def stats(self):
        r = self.request('GET', '/__double/stats', timeout=5)
        if r.status != 200:
            raise RuntimeError('double stats: %r' % r)
        return r.json()

    def faults(self, **kw):
        r = self.request('POST', '/__double/faults', kw, timeout=5)
        if r.status // 100 != 2:
            raise RuntimeError('double faults %r: %r' % (kw, r))
        return r


# --------------------------------------------------------------------------------------------
# A whole node through the launcher

NODE_ID = '0123456789abcdef0123456789abcdef'


# The daemons a launcher runs, in its start order, with the environment variable naming each
# binary. gossipd, discoveryd and shardd are optional for the launcher: without gossipd and
# discoveryd a node runs alone, without shardd it keeps no collections.
NODE_DAEMONS = (('MYCELIA_GOSSIPD', 'mycelia-gossipd'), ('MYCELIA_DISCOVERYD', 'mycelia-discoveryd'),
                ('MYCELIA_ROUTERD', 'mycelia-routerd'), ('MYCELIA_SHARDD', 'mycelia-shardd'),
                ('MYCELIA_SHIMD', 'mycelia-shimd'))

READY_RX = r'mycelia-node: ready api=(\S+) bus=(\S+)(.*)$'


def random_node_id():
    return os.urandom(16).hex()


def write_mesh_key(path):
    """A fresh mesh key file (base64 of 32 random bytes), as mesh_key_generate() writes it."""
    import base64
    with open(path, 'w') as f:
        f.write(base64.b64encode(os.urandom(32)).decode() + '\n')
    os.chmod(path, 0o640)
    return path


def tcp_connections_to(pid, port):
    """How many of pid's sockets are IPv4 TCP connections to a remote port (from /proc: its fds'
    socket inodes against /proc/PID/net/tcp's remote addresses)."""
    inodes = set()
    for fd in os.listdir('/proc/%d/fd' % pid):
        try:
            link = os.readlink('/proc/%d/fd/%s' % (pid, fd))
        except OSError:
            continue
        if link.startswith('socket:['):
            inodes.add(link[8:-1])
    n = 0
    with open('/proc/%d/net/tcp' % pid) as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[2].split(':')[1], 16) == port and fields[9] in inodes:
                n += 1
    return n


def mesh_tls_psk(key_file, purpose='api'):
    """(PSK hex, identity) of the TLS between nodes for purpose ('api': the shim's mesh listener,
    'shard': shardd's transfer listener), as docs/mesh-tls.md defines them: an independent
    implementation of mesh_tls_derive(), so the scheme is checked from outside too."""
    import base64
    import hashlib
    with open(key_file) as f:
        key = base64.b64decode(f.read().strip())
    label = ('mycelia-tls-%s-v1' % purpose).encode()
    psk = hashlib.blake2b(label, key=key, digest_size=32).hexdigest()
    key_id = hashlib.blake2b(b'mycelia-key-id-v1', key=key, digest_size=8).hexdigest()
    return psk, '%s %s' % (label.decode(), key_id)


def mesh_tls_exchange(addr, key_file, data, purpose='api', timeout=10.0):
    """Sends data (a whole HTTP/1.1 request; say Connection: close) to a node-to-node listener
    over TLS 1.3 with the mesh key's PSK, through `openssl s_client` (Python's ssl module has no
    external PSK before 3.13), and returns (the bytes the server sent back, s_client's stderr).
    b'' back: the handshake failed or the server closed without a word."""
    psk, identity = mesh_tls_psk(key_file, purpose)
    host, port = split_addr(addr)
    p = subprocess.run(['openssl', 's_client', '-quiet', '-tls1_3', '-ciphersuites', 'TLS_AES_128_GCM_SHA256',
                        '-psk', psk, '-psk_identity', identity,
                        '-connect', ('[%s]:%d' if ':' in host else '%s:%d') % (host, port)],
                       input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.stdout, p.stderr.decode(errors='replace')


def mesh_tls_request(addr, key_file, method, path, body=b'', headers=None, purpose='api', timeout=10.0):
    """One request over mesh_tls_exchange(); parse_raw_response()'s (status, headers, body), or
    None when nothing came back."""
    head = ['%s %s HTTP/1.1' % (method, path), 'Host: %s:%d' % split_addr(addr),
            'Connection: close', 'Content-Length: %d' % len(body)]
    head += ['%s: %s' % kv for kv in (headers or {}).items()]
    raw, _ = mesh_tls_exchange(addr, key_file, ('\r\n'.join(head) + '\r\n\r\n').encode() + body, purpose, timeout)
    return parse_raw_response(raw) if raw else None


class Member:
    """One entry of Gossip1.Members / LocalNode: (id, name, addresses, state, incarnation, meta)."""

    def __init__(self, t):
        self.id, self.name, self.addresses, self.state, self.incarnation, self.meta = t
        self.incarnation = int(self.incarnation)

    def __repr__(self):
        return '<Member %s %s %s inc=%d %s>' % (self.id[:8], self.name, self.state, self.incarnation,
                                                 ','.join(self.addresses))


def www_dir_args():
    """--www-dir of the source tree's topology page (MYCELIA_WWW_DIR, set by meson), so that a
    node of the build tree serves /mycelia/ as an installed one does."""
    d = os.environ.get('MYCELIA_WWW_DIR')
    return ['--www-dir', d] if d else []


class Node:
    """mycelia-node with its own state dir, on 127.0.0.1:0, pointed at upstream. The ready line's
    fields are in api_url, bus, gossip, mesh, shard and ready_node_id ('' when that part is off):
    the launcher picks a free port for each listener, so nodes share the host. Without
    node_id the launcher makes the node's id in its state dir, as a user's node does; node_id is
    then the id of the ready line."""

    def __init__(self, upstream, *extra, node_id=None, name='test', ready_timeout=20.0,
                 daemons=None):
        self.dir = make_tmpdir('mycelia-node-')
        self.state_dir = os.path.join(self.dir, 'state')
        os.mkdir(self.state_dir)
        # The launcher finds its daemons in one folder: give it the build tree's binaries there
        # (daemons: the environment variables to take, default all of NODE_DAEMONS).
        self.libexec = os.path.join(self.dir, 'libexec')
        os.mkdir(self.libexec)
        for var, exe in NODE_DAEMONS:
            if daemons is None or var in daemons:
                os.symlink(os.path.abspath(env_path(var)), os.path.join(self.libexec, exe))
        self.node_id = node_id
        self.name = name
        self.upstream = upstream
        self.argv = [env_path('MYCELIA_NODE'), '--api', '127.0.0.1:0', '--upstream', upstream,
                     '--state-dir', self.state_dir] + (['--node-id', node_id] if node_id else []) + [
                     '--name', name, '--libexec-dir', self.libexec] + www_dir_args() + [str(a) for a in extra]
        self.proc = Proc(self.argv, name='mycelia-node', logdir=self.dir)
        m = self.proc.wait_line(READY_RX, timeout=ready_timeout)
        self.api_url = m.group(1)
        self.bus = m.group(2)
        fields = dict(f.split('=', 1) for f in m.group(3).split() if '=' in f)
        self.gossip = fields.get('gossip', '')
        self.mesh = fields.get('mesh', '')
        self.shard = fields.get('shard', '')
        self.ready_node_id = fields.get('node', '')
        if not node_id:
            self.node_id = self.ready_node_id
        self.addr = split_addr(self.api_url)

    @property
    def pid(self):
        return self.proc.pid

    def request(self, method, path, body=None, headers=None, timeout=15.0, conn=None):
        return http_request(self.addr, method, path, body, headers, timeout, conn)

    def stream(self, method, path, body=None, headers=None, timeout=15.0, **kw):
        return RawStream(self.addr, method, path, body, headers, timeout, **kw)

    def prop(self, service, name):
        return bus_get_property(self.bus, service, name)

    def call(self, service, method, signature='', *args):
        return bus_call(self.bus, service, method, signature, *args)

    def daemon_pid(self, exe_name, service=None):
        """The pid of one of the launcher's daemons: from the bus when it owns its name, else
        from /proc under the launcher."""
        if service:
            try:
                return bus_pid_of(self.bus, service)
            except (BusError, TimeoutError, ValueError, KeyError):
                pass
        for p in proc_descendants(self.pid):
            if proc_exe_name(p) == exe_name and pid_alive(p):
                return p
        raise RuntimeError('no %s under launcher %d' % (exe_name, self.pid))

    def shimd_pid(self):
        return self.daemon_pid('mycelia-shimd', 'org.mycelia.Shim1')

    def routerd_pid(self):
        return self.daemon_pid('mycelia-routerd', 'org.mycelia.Router1')

    def gossipd_pid(self):
        return self.daemon_pid('mycelia-gossipd', 'org.mycelia.Gossip1')

    def shardd_pid(self):
        return self.daemon_pid('mycelia-shardd', 'org.mycelia.ShardStore1')

    def discoveryd_pid(self):
        return self.daemon_pid('mycelia-discoveryd', 'org.mycelia.Discovery1')

    def router_nodes(self):
        """Router1.Nodes as {id: (state, models)}; {} while it cannot be read."""
        try:
            data = self.prop('org.mycelia.Router1', 'Nodes')
        except (BusError, TimeoutError, KeyError, ValueError):
            return {}
        return {t[0]: (t[3], t[7]) for t in data}

    def members(self, timeout=5.0):
        """Gossip1.Members as {id: Member}."""
        data = busctl(self.bus, 'get-property', 'org.mycelia.Gossip1', '/org/mycelia/Gossip1',
                      'org.mycelia.Gossip1', 'Members', timeout=timeout)['data']
        return {t[0]: Member(t) for t in data}

    def gossip_counters(self):
        return self.prop('org.mycelia.Gossip1', 'Counters')

    def tail(self):
        return self.proc.tail(60)

    def stop(self, timeout=10.0):
        return self.proc.stop(timeout)


def start_mesh(names, models, double_args=(), node_args=(), timeout=20.0):
    """One Ollama double and one mycelia-node per name, joined into one mesh (one mesh key, every
    node seeded with the first one's gossip address); waits until the first node's routing table
    has every node up with its models. models: a comma-separated list for every double, or a dict
    name -> list. Returns (doubles, nodes), dicts by name; the caller stops them (or teardown)."""
    key = write_mesh_key(os.path.join(make_tmpdir('mycelia-mesh-'), 'mesh.key'))
    doubles, nodes = {}, {}
    for name in names:
        doubles[name] = Double('--models', models[name] if isinstance(models, dict) else models, *double_args)
        seeds = ['--seed', nodes[names[0]].gossip] if nodes else []
        nodes[name] = Node(doubles[name].url, '--mesh-key', key, *node_args, *seeds, name=name)
    first = nodes[names[0]]

    def all_up():
        t = first.router_nodes()
        return len(t) == len(names) and all(s == 'up' and m for s, m in t.values())
    wait_until(all_up, timeout, what="%s's routing table with all %d nodes up" % (names[0], len(names)))
    return doubles, nodes


def stop_mesh(doubles, nodes):
    for n in nodes.values():
        n.stop()
    for d in doubles.values():
        d.stop()


# --------------------------------------------------------------------------------------------
# A private bus for tests that run one daemon alone

class PrivateBus:
    def __init__(self):
        self.dir = make_tmpdir('mycelia-bus-')
        self.socket = os.path.join(self.dir, 'bus.sock')
        conf = os.path.join(self.dir, 'bus.conf')
        with open(conf, 'w') as f:
            f.write('''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
''' % self.socket)
        self.proc = Proc(['dbus-daemon', '--config-file=' + conf, '--nofork', '--nopidfile',
                          '--print-address=1'], name='dbus-daemon', logdir=self.dir)
        self.proc.wait_line(r'unix:', timeout=10)
        self.address = 'unix:path=' + self.socket

    def stop(self):
        self.proc.stop(timeout=3)
