#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# A client of the node's api that test_supervision.py runs inside the container (systemd-run) and
# test_package.py runs from the host in the container's network namespace: one request after
# another, each on a new connection, every outcome logged with its times.
"""client_loop.py URL MODEL OUT STOPFILE: alternates GET /api/tags and POST /api/generate (MODEL,
stream off) against URL until STOPFILE exists (or 180 s, or MAX_REQUESTS), at most one request
every MIN_INTERVAL seconds (each takes a new local port), appending one JSON
line per request to OUT: {"start", "end" (CLOCK_MONOTONIC, shared with the host: no time
namespace), "path", "ok", "status", "error"}."""

import http.client
import json
import os
import sys
import time
import urllib.parse

MAX_REQUESTS = 20000
MIN_INTERVAL = 0.002


def request(host, port, method, path, body=None):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        headers = {'Content-Type': 'application/json'} if body is not None else {}
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            return False, r.status, data[:200].decode(errors='replace')
        doc = json.loads(data)
        if 'error' in doc:
            return False, r.status, str(doc['error'])[:200]
        return True, r.status, ''
    finally:
        conn.close()


def main():
    url, model, out_path, stop_file = sys.argv[1:5]
    u = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + 180
    with open(out_path, 'a', buffering=1) as out:
        i = 0
        while not os.path.exists(stop_file) and time.monotonic() < deadline and i < MAX_REQUESTS:
            if i % 2 == 0:
                method, path, body = 'GET', '/api/tags', None
            else:
                method, path, body = 'POST', '/api/generate', {'model': model, 'prompt': 'hello', 'stream': False}
            start = time.monotonic()
            try:
                ok, status, error = request(u.hostname, u.port, method, path, body)
            except Exception as e:  # noqa: BLE001 every failure is a result
                ok, status, error = False, 0, '%s: %s' % (type(e).__name__, e)
            out.write(json.dumps({'start': start, 'end': time.monotonic(), 'path': path, 'ok': ok,
                                  'status': status, 'error': error}) + '\n')
            i += 1
            pause = start + MIN_INTERVAL - time.monotonic()
            if pause > 0:
                time.sleep(pause)


if __name__ == '__main__':
    main()
