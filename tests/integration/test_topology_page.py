#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The topology page (docs/topology-page.md) in a real browser: Debian's chromium, headless, driven
# through Debian's chromedriver (webdriver.py), against a 3-node mesh on loopback. The page shows
# the three nodes with their models; a streaming request from node a served by node b makes its
# flow appear while it runs; clicking a node shows its details; the page fits a phone's width;
# a node killed with SIGKILL turns dead on the page within gossip's detection time. Screenshots
# are taken on the way (MYCELIA_SCREENSHOT_DIR: where to keep them; docs/topology*.png come from
# here). Also over plain HTTP: GET /api/mycelia/status's shape, the page's files, headers and
# errors, and a node that asks for a token (the page's token form, in the browser too).
import json
import os
import shutil
import threading
import time
import unittest

import harness  # noqa: F401 (puts tests/ on sys.path, for testenv)
import testenv
from harness import Double, Node, make_tmpdir, start_mesh, stop_mesh, wait_until
from test_api_tokens import add_token, bearer

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'MYCELIA_SHARDD', 'OLLAMA_DOUBLE', 'MYCELIACTL')
WWW_DIR = testenv.env_value('MYCELIA_WWW_DIR')

import webdriver  # noqa: E402

if not webdriver.CHROMIUM or not webdriver.CHROMEDRIVER:
    testenv.skip_all('chromium and chromedriver are not installed (Debian: chromium chromium-driver; tools/deps)')

MODELS = {'a': 'alpha:latest,shared:latest', 'b': 'bravo:latest,shared:latest', 'c': 'charlie:latest'}
# Gossip's failure detection on loopback with the default timers is about 1 s (bench/RESULTS.md);
# the page polls once a second. The bound leaves room for a loaded CI machine.
DEAD_WITHIN = 20.0

NODES_JS = """
return Array.from(document.querySelectorAll('#nodes .node')).map(function (g) {
  return { id: g.dataset.nodeId, name: g.dataset.name, health: g.dataset.health,
           models: g.querySelector('.models title').textContent.split('\\n').filter(Boolean) };
});
"""
# Shown: laid out with a size (not display: none, itself or above).
VISIBLE_JS = "var e = document.getElementById(arguments[0]); return !!e && e.getClientRects().length > 0;"


def keep_screenshot(path, name):
    d = os.environ.get('MYCELIA_SCREENSHOT_DIR')
    if d:
        shutil.copyfile(path, os.path.join(d, name))


class StatusOverHttp(unittest.TestCase):
    """The JSON and the files, without a browser, on a node that asks for a token."""

    @classmethod
    def setUpClass(cls):
        cls.dir = make_tmpdir('mycelia-page-')
        cls.tokens = os.path.join(cls.dir, 'tokens')
        cls.secret = add_token(cls.tokens, 'viewer', models='nothing-at-all')
        cls.double = Double('--models', 'alpha:latest')
        cls.node = Node(cls.double.url, '--api-auth', 'token', '--tokens', cls.tokens, name='lone')

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.double.stop()

    def test_files_are_served_without_a_token(self):
        r = self.node.request('GET', '/mycelia/')
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header('Content-Type'), 'text/html; charset=utf-8')
        with open(os.path.join(WWW_DIR, 'index.html'), 'rb') as f:
            self.assertEqual(r.body, f.read())
        csp = r.header('Content-Security-Policy')
        self.assertIn("default-src 'none'", csp)
        self.assertIn("script-src 'self'", csp)
        self.assertEqual(r.header('X-Content-Type-Options'), 'nosniff')
        for name, ctype in (('mycelia.js', 'text/javascript; charset=utf-8'),
                            ('mycelia.css', 'text/css; charset=utf-8'), ('favicon.svg', 'image/svg+xml')):
            r = self.node.request('GET', '/mycelia/' + name + '?v=1')
            self.assertEqual((r.status, r.header('Content-Type')), (200, ctype), name)
        r = self.node.request('HEAD', '/mycelia/mycelia.js')
        self.assertEqual(r.status, 200)
        self.assertEqual(int(r.header('Content-Length')), os.path.getsize(os.path.join(WWW_DIR, 'mycelia.js')))
        self.assertEqual(r.body, b'')

    def test_other_paths_and_methods(self):
        r = self.node.request('GET', '/mycelia')
        self.assertEqual((r.status, r.header('Location')), (301, '/mycelia/'))
        for path in ('/mycelia/nope.js', '/mycelia/../etc/passwd', '/mycelia/%2e%2e/mycelia.js', '/mycelia/index.html/'):
            r = self.node.request('GET', path)
            self.assertEqual(r.status, 404, path)
            self.assertIn('error', r.json())
        # Only reading is open: anything else asks for a token first (a managing one here).
        r = self.node.request('POST', '/mycelia/', {'x': 1})
        self.assertEqual(r.status, 401)
        r = self.node.request('DELETE', '/api/mycelia/status', headers=bearer(self.secret))
        self.assertEqual((r.status, r.header('Allow')), (405, 'GET, HEAD'))

    def test_status_needs_a_token(self):
        r = self.node.request('GET', '/api/mycelia/status')
        self.assertEqual(r.status, 401, r)
        # Any valid token reads it, one limited to other models too (it lists, like /api/tags).
        r = self.node.request('GET', '/api/mycelia/status', headers=bearer(self.secret))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header('Cache-Control'), 'no-store')
        s = r.json()
        self.assertEqual(s['node'], {'id': self.node.node_id, 'name': 'lone'})
        self.assertEqual([n['name'] for n in s['nodes']], ['lone'])
        n = s['nodes'][0]
        self.assertEqual((n['health'], n['gossip_state'], n['route_state'], n['local']), ('up', 'alive', 'up', True))
        self.assertEqual(n['models'], ['alpha:latest'])
        self.assertEqual(s['daemons'], {'shimd': True, 'routerd': True, 'gossipd': True, 'shardd': True})
        self.assertEqual(s['flows'], [])
        r = self.node.request('HEAD', '/api/mycelia/status', headers=bearer(self.secret))
        self.assertEqual(r.status, 200)
        self.assertGreater(int(r.header('Content-Length')), 100)

    def test_token_form_in_the_browser(self):
        b = webdriver.Browser()
        try:
            b.get(self.node.api_url + '/mycelia/')
            b.wait(VISIBLE_JS, 10, 'the token form', 'token-form')
            self.assertEqual(b.execute("return document.querySelectorAll('#nodes .node').length"), 0)
            b.type('#token', self.secret)
            b.click('#token-form button')
            nodes = b.wait(NODES_JS, 10, 'the node after the token')
            self.assertEqual([(n['name'], n['health']) for n in nodes], [('lone', 'up')])
            self.assertFalse(b.execute(VISIBLE_JS, 'token-form'))
        finally:
            b.quit()


class PageInTheBrowser(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doubles, cls.nodes = start_mesh(['a', 'b', 'c'], MODELS)
        cls.ids = {name: n.node_id for name, n in cls.nodes.items()}
        cls.browser = webdriver.Browser(1280, 860)
        cls.shots = make_tmpdir('mycelia-shots-')

    @classmethod
    def tearDownClass(cls):
        cls.browser.quit()
        stop_mesh(cls.doubles, cls.nodes)

    def test_methods_on_an_open_node(self):
        r = self.nodes['a'].request('POST', '/mycelia/', {'x': 1})
        self.assertEqual((r.status, r.header('Allow')), (405, 'GET, HEAD'))
        self.assertIn('error', r.json())

    def nodes_on_page(self):
        return {n['name']: n for n in self.browser.execute(NODES_JS)}

    def test_the_mesh_a_request_and_a_death(self):
        b, a = self.browser, self.nodes['a']
        b.get(a.api_url + '/mycelia/')

        # Three nodes, up, each with its models, as node a's routing table has them.
        def three_up():
            on_page = self.nodes_on_page()
            return len(on_page) == 3 and all(n['health'] == 'up' for n in on_page.values()) and on_page
        on_page = wait_until(three_up, 15, what='three nodes up on the page')
        for name, models in MODELS.items():
            self.assertEqual(on_page[name]['id'], self.ids[name])
            self.assertEqual(sorted(on_page[name]['models']), sorted(models.split(',')), name)
        self.assertIn('policy gravity', b.execute("return document.getElementById('summary').textContent"))
        # This mesh asks for no token: no form, no banner.
        self.assertFalse(b.execute(VISIBLE_JS, 'token-form'))
        self.assertFalse(b.execute(VISIBLE_JS, 'banner'))

        # A streaming request to a for bravo, which only b serves: its flow a -> b shows while it runs.
        self.doubles['b'].faults(token_delay_ms=250)
        done = {}

        def stream():
            with a.stream('POST', '/api/generate', {'model': 'bravo', 'prompt': 'flow'}, timeout=30) as s:
                done['lines'] = [json.loads(text) for _, text in s.lines()]
        t = threading.Thread(target=stream)
        t.start()
        try:
            flows = b.wait("""
                var f = document.querySelector('#flows .flow.active[data-to="' + arguments[0] + '"]');
                return f && { from: f.dataset.from, active: Number(f.dataset.active) };""",
                5, 'the flow a -> b on the page', self.ids['b'])
            self.assertEqual(flows, {'from': self.ids['a'], 'active': 1})
            b.click('#nodes .node[data-name="b"]')
            details = b.wait("return document.querySelector('#details h2').textContent === 'b' && "
                             "document.getElementById('details').textContent", 5, "b's details")
            for text in (self.ids['b'], 'bravo:latest', 'shared:latest', 'alive'):
                self.assertIn(text, details)
            row = b.wait("var r = document.querySelector('#flows-table tbody tr'); return r && r.textContent",
                         5, 'the request in the table')
            self.assertIn('bravo', row)
            self.assertIn('in flight', row)
            keep_screenshot(b.screenshot(os.path.join(self.shots, 'desktop.png')), 'topology.png')
        finally:
            t.join(30)
            self.doubles['b'].faults(token_delay_ms=0)
        self.assertTrue(done.get('lines') and done['lines'][-1]['done'], done)
        # Ended: still drawn for a few seconds, no longer active, then gone.
        b.wait("""var f = document.querySelector('#flows .flow[data-to="' + arguments[0] + '"]');
                  return f && !f.classList.contains('active');""", 5, 'the flow ended', self.ids['b'])

        # A phone: one column, nothing wider than the screen.
        b.resize(390, 844)
        try:
            widths = b.wait("""var d = document.documentElement;
                return d.clientWidth <= 420 && [d.scrollWidth, d.clientWidth];""", 5, 'the phone width')
            self.assertLessEqual(widths[0], widths[1], 'the page scrolls sideways on a phone')
            keep_screenshot(b.screenshot(os.path.join(self.shots, 'phone.png')), 'topology-phone.png')
        finally:
            b.resize(1280, 860)

        # c dies (the whole node, SIGKILL, no goodbye): it turns dead on the page.
        t0 = time.monotonic()
        self.nodes['c'].proc.crash()
        b.wait("""var g = document.querySelector('#nodes .node[data-name="c"]');
                  return g && g.dataset.health === 'dead';""", DEAD_WITHIN, 'c dead on the page')
        print('c shown dead %.1f s after SIGKILL' % (time.monotonic() - t0), flush=True)
        on_page = self.nodes_on_page()
        self.assertEqual((on_page['a']['health'], on_page['b']['health']), ('up', 'up'))
        self.assertEqual(b.console_errors(), [])


if __name__ == '__main__':
    testenv.main()
