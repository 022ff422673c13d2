#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The audit trail outside systemd (docs/audit.md): the daemons write to stderr there, and an audit
# entry's fields follow its message as KEY=value. Two nodes: a request with a token enters on
# node a (--api-auth token, --audit-content yes) and is served by node b (defaults), which alone
# has the model. Each writes one entry with the trail's MESSAGE_ID: the token's name (forwarded
# to b, never the secret), client, endpoint, model, entry node, serving node, status, Ollama's
# token counts and duration; only a's keeps the prompt. The journal side is in
# tests/systemd/test_supervision.py (test_7_audit_trail).
import json
import os
import shlex
import subprocess
import unittest

import harness  # puts tests/ on sys.path, for testenv
import testenv
from harness import Double, Node, wait_until, write_mesh_key

testenv.require_env('MYCELIA_NODE', 'MYCELIA_SHIMD', 'MYCELIA_ROUTERD', 'MYCELIA_GOSSIPD',
                    'MYCELIA_DISCOVERYD', 'MYCELIA_SHARDD', 'OLLAMA_DOUBLE', 'MYCELIACTL')

# The daemons would write to the journal instead of stderr if these said they run under systemd.
for var in ('JOURNAL_STREAM', 'INVOCATION_ID'):
    os.environ.pop(var, None)

MESSAGE_ID = 'efa495bb8cd04be794418a911dd693bf'
MARKER = 'violet-harbour-7731'


def entries(node):
    """The audit entries in node's stderr log, as dicts (plus 'MESSAGE')."""
    node.proc.log.flush()
    with open(node.proc.log_path, 'rb') as f:
        text = f.read().decode('utf-8', 'replace')
    out = []
    for line in text.splitlines():
        i = line.find(' [MESSAGE_ID=')
        if i < 0 or not line.startswith('mycelia-shimd'):
            continue
        fields = dict(kv.split('=', 1) for kv in shlex.split(line[i + 2:-1]))
        fields['MESSAGE'] = line[:i].split(': ', 2)[2]
        out.append(fields)
    return out


def log_text(node):
    with open(node.proc.log_path, 'rb') as f:
        return f.read().decode('utf-8', 'replace')


class AuditTrail(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = harness.make_tmpdir('mycelia-audit-')
        key = write_mesh_key(os.path.join(cls.dir, 'mesh.key'))
        tokens = os.path.join(cls.dir, 'tokens')
        p = subprocess.run([testenv.env_path('MYCELIACTL'), '--json', '--tokens', tokens, 'token', 'add', 'alice'],
                           capture_output=True, text=True, timeout=10, check=True)
        cls.secret = json.loads(p.stdout)['secret']
        cls.da = Double('--token-delay-ms', '0', '--models', 'alpha:latest')
        cls.db = Double('--token-delay-ms', '0', '--models', 'beta:latest')
        cls.a = Node(cls.da.url, '--mesh-key', key, '--api-auth', 'token', '--tokens', tokens,
                     '--audit-content', 'yes', name='audit-a')
        cls.b = Node(cls.db.url, '--mesh-key', key, '--seed', cls.a.gossip, name='audit-b')
        wait_until(lambda: len([1 for s, m in cls.a.router_nodes().values() if s == 'up' and m]) == 2, 15,
                   what="both nodes up in a's routing table")

    @classmethod
    def tearDownClass(cls):
        for x in (cls.b, cls.a, cls.db, cls.da):
            x.stop()

    def wait_entries(self, node, pred, what):
        found = []

        def check():
            found[:] = [e for e in entries(node) if pred(e)]
            return found
        wait_until(check, 5, what=what)
        return found

    def test_forwarded_chat_on_both_nodes(self):
        body = {'model': 'beta', 'messages': [{'role': 'user', 'content': 'tell me about ' + MARKER}],
                'stream': False}
        r = self.a.request('POST', '/api/chat', body, headers={'Authorization': 'Bearer ' + self.secret})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header('X-Mycelia-Served-By'), 'audit-b')
        answer = r.json()

        on_a = self.wait_entries(self.a, lambda e: e['MYCELIA_AUDIT_ENDPOINT'] == 'POST /api/chat',
                                 'the entry node\'s audit entry')
        self.assertEqual(len(on_a), 1, on_a)
        e = on_a[0]
        self.assertEqual(e['MESSAGE_ID'], MESSAGE_ID)
        self.assertEqual(e['MYCELIA_AUDIT_TOKEN'], 'alice')
        self.assertRegex(e['MYCELIA_AUDIT_CLIENT'], r'^127\.0\.0\.1:\d+$')
        self.assertEqual(e['MYCELIA_AUDIT_MODEL'], 'beta')
        self.assertEqual(e['MYCELIA_AUDIT_ENTRY_NODE'], 'audit-a')
        self.assertEqual(e['MYCELIA_AUDIT_SERVED_BY'], 'audit-b')
        self.assertEqual(e['MYCELIA_AUDIT_STATUS'], '200')
        self.assertEqual(int(e['MYCELIA_AUDIT_PROMPT_TOKENS']), answer['prompt_eval_count'])
        self.assertEqual(int(e['MYCELIA_AUDIT_COMPLETION_TOKENS']), answer['eval_count'])
        self.assertGreaterEqual(int(e['MYCELIA_AUDIT_DURATION_MS']), 0)
        self.assertEqual(e['MESSAGE'], 'POST /api/chat beta 200 via audit-b, %d+%d tokens, %s ms (token alice)' % (
            answer['prompt_eval_count'], answer['eval_count'], e['MYCELIA_AUDIT_DURATION_MS']))
        # [audit] content=yes on a: the body, as sent.
        self.assertIn(MARKER, e['MYCELIA_AUDIT_PROMPT'])
        self.assertEqual(json.loads(e['MYCELIA_AUDIT_PROMPT']), body)
        self.assertEqual(int(e['MYCELIA_AUDIT_PROMPT_BYTES']), len(json.dumps(body)))
        self.assertNotIn(self.secret, log_text(self.a))

        on_b = self.wait_entries(self.b, lambda e: e['MYCELIA_AUDIT_ENDPOINT'] == 'POST /api/chat',
                                 'the serving node\'s audit entry')
        self.assertEqual(len(on_b), 1, on_b)
        e = on_b[0]
        self.assertEqual(e['MYCELIA_AUDIT_TOKEN'], 'alice')
        self.assertEqual(e['MYCELIA_AUDIT_ENTRY_NODE'], 'audit-a')
        self.assertEqual(e['MYCELIA_AUDIT_SERVED_BY'], 'audit-b')
        self.assertEqual(e['MYCELIA_AUDIT_STATUS'], '200')
        self.assertEqual(int(e['MYCELIA_AUDIT_COMPLETION_TOKENS']), answer['eval_count'])
        self.assertIn('via audit-b for audit-a', e['MESSAGE'])
        # Not kept by default: no field, and the text is nowhere in b's log.
        self.assertNotIn('MYCELIA_AUDIT_PROMPT', e)
        self.assertNotIn(MARKER, log_text(self.b))
        self.assertNotIn(self.secret, log_text(self.b))

    def test_refused_and_local_requests(self):
        r = self.a.request('GET', '/api/version?probe=1')
        self.assertEqual(r.status, 401)
        refused = self.wait_entries(self.a, lambda e: e['MYCELIA_AUDIT_ENDPOINT'] == 'GET /api/version' and
                                    e['MYCELIA_AUDIT_STATUS'] == '401', 'the 401\'s entry')
        self.assertEqual(refused[0]['MYCELIA_AUDIT_TOKEN'], '-')
        self.assertEqual(refused[0]['MYCELIA_AUDIT_SERVED_BY'], 'audit-a')
        # A streamed generate served by a's own Ollama: counts from the final NDJSON line.
        r = self.a.request('POST', '/api/generate', {'model': 'alpha', 'prompt': 'x'},
                           headers={'Authorization': 'Bearer ' + self.secret})
        self.assertEqual(r.status, 200)
        last = r.ndjson()[-1]
        e = self.wait_entries(self.a, lambda e: e['MYCELIA_AUDIT_ENDPOINT'] == 'POST /api/generate',
                              'the generate\'s entry')[0]
        self.assertEqual(e['MYCELIA_AUDIT_SERVED_BY'], 'audit-a')
        self.assertEqual(int(e['MYCELIA_AUDIT_PROMPT_TOKENS']), last['prompt_eval_count'])
        self.assertEqual(int(e['MYCELIA_AUDIT_COMPLETION_TOKENS']), last['eval_count'])
        # OpenAI's usage on b, asked directly (no token needed there: b is on loopback, auto).
        r = self.b.request('POST', '/v1/chat/completions',
                           {'model': 'beta', 'messages': [{'role': 'user', 'content': 'hi'}]})
        self.assertEqual(r.status, 200)
        usage = r.json()['usage']
        e = self.wait_entries(self.b, lambda e: e['MYCELIA_AUDIT_ENDPOINT'] == 'POST /v1/chat/completions',
                              'the completion\'s entry')[0]
        self.assertEqual(e['MYCELIA_AUDIT_TOKEN'], '-')
        self.assertEqual(e['MYCELIA_AUDIT_ENTRY_NODE'], 'audit-b')
        self.assertEqual(int(e['MYCELIA_AUDIT_PROMPT_TOKENS']), usage['prompt_tokens'])
        self.assertEqual(int(e['MYCELIA_AUDIT_COMPLETION_TOKENS']), usage['completion_tokens'])

    def test_off(self):
        node = Node(self.db.url, '--audit', 'no', name='audit-off')
        try:
            self.assertEqual(node.request('GET', '/api/tags').status, 200)
            self.assertEqual(node.request('POST', '/api/generate', {'model': 'beta', 'prompt': 'x'}).status, 200)
            wait_until(lambda: 'No audit trail' in log_text(node), 5, what='the notice that the trail is off')
            self.assertEqual(entries(node), [])
        finally:
            node.stop()


if __name__ == '__main__':
    testenv.main()
