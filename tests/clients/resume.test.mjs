// SPDX-License-Identifier: LGPL-2.1-or-later
// A stream survives the death of the node serving it (docs/stream-resume.md), as the real clients
// see it: ollama-js and the openai SDK stream a chat entering at node a and served by node b; b's
// whole node (or only its Ollama) is SIGKILLed after 6 parts, and the client's one stream carries
// on from node c: no exception, the same text as uninterrupted, one final object whose counts
// cover both parts. The raw-HTTP version is tests/integration/test_resume.py.
//
// Finding a stream served by b: the clients get a fetch of ours (both take a `fetch` option),
// which adds `X-Mycelia-Policy: round-robin`, reads `X-Mycelia-Served-By`, and when another node
// serves the request cancels that response and sends the request again; round-robin moves every
// request to the next node, so b's turn comes within three tries. The client sees only b's
// response, as it would with its own fetch.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { killTree, loadClientLibraries, startMesh, withTimeout } from './harness.mjs';

const libs = await loadClientLibraries();
if (libs.missing)
        test('client libraries are installed', () => assert.fail(libs.missing));
const { Ollama, OpenAI } = libs;

const TOKENS = 40;
const CUT_AFTER = 6;
const TOKEN_DELAY_MS = 60;      /* 40 tokens take 2.4 s: the stream is surely running at the kill */
const TEST_TIMEOUT_MS = 60000;
const CALL_TIMEOUT_MS = 30000;
const MESSAGES = [{ role: 'user', content: 'Tell me a long story about the mesh.' }];

const t = (what, promise) => withTimeout(promise, CALL_TIMEOUT_MS, what);

/* A fetch that gets the request served by the node named `target` (see the top of the file); the
 * X-Mycelia-Served-By of every try goes into `tries`. */
function fetchServedBy(target, tries) {
        return async (url, init = {}) => {
                for (let i = 0; i < 6; i++) {
                        const headers = new Headers(init.headers);
                        headers.set('X-Mycelia-Policy', 'round-robin');
                        const res = await fetch(url, { ...init, headers });
                        const by = res.headers.get('X-Mycelia-Served-By');
                        tries.push(by);
                        if (res.status === 200 && by === target)
                                return res;
                        await res.body?.cancel();
                }
                throw new Error(`no request was served by ${target}: ${JSON.stringify(tries)}`);
        };
}

async function resumesTotal(nodeUrl) {
        const text = await t('metrics', fetch(`${nodeUrl}/metrics`).then((r) => r.text()));
        const m = /^mycelia_shim_resumes_total (\d+)$/m.exec(text);
        assert.ok(m, 'no mycelia_shim_resumes_total in /metrics');
        return Number(m[1]);
}

/*
 * Runs fn({ a, b, c, model, killNode, killDouble }) on a fresh three-node mesh, then stops it;
 * killNode(node) SIGKILLs a node's launcher and every process under it, killDouble(node) only its
 * Ollama double. When fn passed, every launcher not killed must exit 0 on SIGTERM.
 */
function resumeTest(name, fn) {
        if (libs.missing)
                return;
        test(name, { timeout: TEST_TIMEOUT_MS }, async (ctx) => {
                const mesh = await startMesh({
                        nodes: 3,
                        doubleArgs: ['--tokens', String(TOKENS), '--num-parallel', '4', '--token-delay-ms', String(TOKEN_DELAY_MS)],
                });
                const killed = new Set();
                const killNode = (n) => {
                        killed.add(n);
                        return killTree(n.launcherPid);
                };
                const killDouble = (n) => process.kill(n.doublePid, 'SIGKILL');
                let passed = false;
                try {
                        const [a, b, c] = mesh.nodes;
                        const { models } = await t('list (double)', new Ollama({ host: c.doubleUrl }).list());
                        const model = models.map((m) => m.name).find((n) => !/embed|minilm/.test(n));
                        assert.ok(model, 'the double serves no chat model');
                        await fn({ a, b, c, model, killNode, killDouble });
                        passed = true;
                } catch (e) {
                        ctx.diagnostic(`last output of the programs:\n${mesh.logs()}`);
                        throw e;
                } finally {
                        const r = await mesh.stop();
                        if (passed)
                                r.nodes.forEach((n, i) => {
                                        if (!killed.has(mesh.nodes[i]))
                                                assert.deepEqual({ code: n.code, signal: n.signal }, { code: 0, signal: null },
                                                        `${mesh.nodes[i].name}: mycelia-node did not exit 0 on SIGTERM`);
                                });
                }
        });
}

resumeTest('ollama-js chat stream, serving node killed mid-answer: one answer, resumed', async ({ a, b, c, model, killNode }) => {
        /* The uninterrupted answer from a double directly, whole and streamed (every double gives the same). */
        const direct = new Ollama({ host: c.doubleUrl });
        const [want, wantStream] = await t('chat (double)', Promise.all([
                direct.chat({ model, messages: structuredClone(MESSAGES), stream: false }),
                direct.chat({ model, messages: structuredClone(MESSAGES), stream: true }).then(async (it) => {
                        const parts = [];
                        for await (const p of it)
                                parts.push(p);
                        return parts;
                }),
        ]));
        assert.equal(want.eval_count, TOKENS);
        const before = await resumesTotal(a.nodeUrl);

        const tries = [];
        const client = new Ollama({ host: a.nodeUrl, fetch: fetchServedBy(b.name, tries) });
        const parts = [];
        let killed = null;
        await t('resumed chat stream', (async () => {
                for await (const part of await client.chat({ model, messages: structuredClone(MESSAGES), stream: true })) {
                        parts.push(part);
                        if (parts.length === CUT_AFTER) {
                                assert.equal(part.done, false, 'the stream ended before the kill; needs more tokens');
                                killed = killNode(b);
                        }
                }
        })());
        assert.equal(tries.at(-1), b.name, `served by ${tries.at(-1)}`);
        assert.ok(killed && killed.length > 1, `killed ${JSON.stringify(killed)}: the launcher had no daemons`);

        assert.equal(parts.map((p) => p.message.content).join(''), want.message.content, 'joined text differs');
        /* One part per token, then the final one: nothing repeated, nothing lost. */
        assert.equal(parts.length, wantStream.length, 'not as many parts as uninterrupted');
        assert.deepEqual(parts.map((p, i) => (p.done ? i : -1)).filter((i) => i >= 0), [parts.length - 1],
                'exactly one part, the last, must have done:true');
        const last = parts.at(-1);
        assert.equal(last.done_reason, 'stop');
        assert.equal(last.eval_count, TOKENS);
        assert.equal(last.mycelia_resumed, 1);
        assert.equal(await resumesTotal(a.nodeUrl), before + 1);
});

/* Drains an openai stream, killing with kill() after CUT_AFTER chunks. */
async function openaiResumed({ a, b, c, model }, kill) {
        const direct = new OpenAI({ baseURL: `${c.doubleUrl}/v1`, apiKey: 'ollama', maxRetries: 0, timeout: CALL_TIMEOUT_MS });
        const [want, wantChunks] = await t('chat.completions (double)', Promise.all([
                direct.chat.completions.create({ model, messages: structuredClone(MESSAGES) }),
                direct.chat.completions.create({
                        model, messages: structuredClone(MESSAGES), stream: true, stream_options: { include_usage: true },
                }).then(async (stream) => {
                        let n = 0;
                        for await (const chunk of stream)
                                n += chunk ? 1 : 0;
                        return n;
                }),
        ]));
        assert.equal(want.usage.completion_tokens, TOKENS);
        const before = await resumesTotal(a.nodeUrl);

        const tries = [];
        const client = new OpenAI({
                baseURL: `${a.nodeUrl}/v1`, apiKey: 'ollama', maxRetries: 0, timeout: CALL_TIMEOUT_MS,
                fetch: fetchServedBy(b.name, tries),
        });
        const chunks = [];
        await t('resumed chat.completions stream', (async () => {
                const stream = await client.chat.completions.create({
                        model, messages: structuredClone(MESSAGES), stream: true, stream_options: { include_usage: true },
                });
                for await (const chunk of stream) {
                        chunks.push(chunk);
                        if (chunks.length === CUT_AFTER) {
                                assert.equal(chunk.choices[0]?.finish_reason ?? null, null, 'the stream ended before the kill');
                                kill();
                        }
                }
        })());
        assert.equal(tries.at(-1), b.name, `served by ${tries.at(-1)}`);

        const text = chunks.map((ch) => ch.choices[0]?.delta?.content ?? '').join('');
        assert.equal(text, want.choices[0].message.content, 'joined text differs');
        assert.equal(chunks.length, wantChunks, 'not as many chunks as uninterrupted');
        assert.deepEqual([...new Set(chunks.map((ch) => ch.id))], [chunks[0].id], 'the continuation has another id');
        const finishing = chunks.filter((ch) => ch.choices[0]?.finish_reason);
        assert.equal(finishing.length, 1, 'exactly one chunk must have a finish_reason');
        assert.equal(chunks.filter((ch) => ch.choices.length > 0).at(-1).choices[0].finish_reason, 'stop');
        const usage = chunks.filter((ch) => ch.usage).map((ch) => ch.usage);
        assert.ok(usage.length > 0, 'no usage chunk');
        assert.equal(usage.at(-1).completion_tokens, TOKENS);
        assert.equal(chunks.at(-1).mycelia_resumed, 1);
        assert.equal(await resumesTotal(a.nodeUrl), before + 1);
}

resumeTest('openai chat.completions stream, serving Ollama killed mid-answer: one answer, resumed',
        (m) => openaiResumed(m, () => m.killDouble(m.b)));

resumeTest('openai chat.completions stream, serving node killed mid-answer: one answer, resumed',
        (m) => openaiResumed(m, () => m.killNode(m.b)));
