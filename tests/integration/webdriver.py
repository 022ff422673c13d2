# SPDX-License-Identifier: LGPL-2.1-or-later
"""A small W3C WebDriver client for Debian's chromedriver driving Debian's chromium headless:
enough for the topology page's test (open a URL, run a script, click, resize, screenshot). The
protocol is JSON over HTTP on loopback (https://www.w3.org/TR/webdriver2/), so no npm package
and no download is needed. Chromium is told to resolve no name but 127.0.0.1 and to fetch
nothing of its own (updates, safe browsing, sync): the test's pages are its only traffic."""
import base64
import http.client
import json
import os
import shutil
import time

from harness import Proc, free_port, make_tmpdir, wait_until

CHROMEDRIVER = shutil.which('chromedriver')
CHROMIUM = shutil.which('chromium')
ELEMENT_KEY = 'element-6066-11e4-a52e-4f735466cecf'

# Quiet, local-only chromium: no first-run UI, no background fetches, and a resolver that maps
# every name to NOTFOUND, so nothing outside loopback is ever asked.
CHROMIUM_ARGS = [
    '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
    '--no-default-browser-check', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--disable-default-apps', '--disable-extensions', '--metrics-recording-only',
    '--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1', '--hide-scrollbars', '--force-color-profile=srgb',
]


class WebDriverError(Exception):
    pass


class Browser:
    def __init__(self, width=1280, height=900):
        if not CHROMEDRIVER or not CHROMIUM:
            raise RuntimeError('chromium and chromedriver are needed (Debian: chromium chromium-driver)')
        self.dir = make_tmpdir('mycelia-browser-')
        self.port = free_port()
        self.driver = Proc([CHROMEDRIVER, '--port=%d' % self.port, '--allowed-ips=127.0.0.1'],
                           name='chromedriver', logdir=self.dir)
        wait_until(self._ready, 15, what='chromedriver to answer /status')
        caps = {'capabilities': {'alwaysMatch': {
            'browserName': 'chrome',
            'goog:loggingPrefs': {'browser': 'ALL'},
            'goog:chromeOptions': {
                'binary': CHROMIUM,
                'args': CHROMIUM_ARGS + ['--user-data-dir=' + os.path.join(self.dir, 'profile'),
                                         '--window-size=%d,%d' % (width, height)],
            },
        }}}
        self.session = self._call('POST', '/session', caps)['sessionId']

    def _ready(self):
        try:
            return self._call('GET', '/status', timeout=2).get('ready', False)
        except (OSError, WebDriverError):
            return False

    def _call(self, method, path, body=None, timeout=30):
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={'Content-Type': 'application/json'} if data else {})
            r = conn.getresponse()
            payload = json.loads(r.read() or b'{}')
        finally:
            conn.close()
        value = payload.get('value')
        if r.status != 200:
            raise WebDriverError('%s %s: %s' % (method, path, value))
        return value

    def _session(self, method, path, body=None):
        return self._call(method, '/session/%s%s' % (self.session, path), body)

    def get(self, url):
        self._session('POST', '/url', {'url': url})

    def execute(self, script, *args):
        """Runs script (a function body; arguments[i] are args) in the page; its return value."""
        return self._session('POST', '/execute/sync', {'script': script, 'args': list(args)})

    def find(self, css):
        return self._session('POST', '/element', {'using': 'css selector', 'value': css})[ELEMENT_KEY]

    def click(self, css):
        self._session('POST', '/element/%s/click' % self.find(css), {})

    def type(self, css, text):
        self._session('POST', '/element/%s/value' % self.find(css), {'text': text})

    def resize(self, width, height):
        self._session('POST', '/window/rect', {'width': width, 'height': height})

    def screenshot(self, path):
        png = base64.b64decode(self._session('GET', '/screenshot'))
        with open(path, 'wb') as f:
            f.write(png)
        return path

    def wait(self, script, timeout, what, *args, interval=0.1):
        """Polls script until it returns something true; returns that."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.execute(script, *args)
            if last:
                return last
            time.sleep(interval)
        raise AssertionError('timed out after %.0fs waiting for %s (last: %r)' % (timeout, what, last))

    def console_errors(self):
        """The page's console errors so far (chromedriver's browser log)."""
        try:
            entries = self._session('POST', '/se/log', {'type': 'browser'})
        except WebDriverError:
            return []
        return [e['message'] for e in entries if e.get('level') == 'SEVERE']

    def quit(self):
        try:
            self._call('DELETE', '/session/%s' % self.session, timeout=10)
        except (OSError, WebDriverError):
            pass
        self.driver.stop()
