// SPDX-License-Identifier: LGPL-2.1-or-later
// Real clients from npm (ollama-js, openai) against every node of a three-node mesh, each node in
// front of its own Ollama test double: every answer through a node must equal what the same
// client gets from a double directly, whichever node of the mesh served it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadClientLibraries, startMesh, withTimeout } from './harness.mjs';

/* Without node_modules this is the one test, and it fails saying what to do. */
const libs = await loadClientLibraries();
if (libs.missing)
        test('client libraries are installed', () => assert.fail(libs.missing));
const { Ollama, OpenAI } = libs;

const TEST_TIMEOUT_MS = 20000;
const CALL_TIMEOUT_MS = 10000;
const TOKEN_DELAY_MS = 5;       /* what the harness starts the double with */

/* Every case runs against each node of the mesh in turn. */
const NODES = 3;

let mesh;
let current;    /* the mesh node the running case talks to: { name, nodeUrl, doubleUrl } */
let node;       /* clients pointed at that mycelia-node */
let direct;     /* the same clients pointed straight at the double: the expected values */
let chatModel;
let embedModel;

function clients(url) {
        return {
                ollama: new Ollama({ host: url }),
                openai: new OpenAI({ baseURL: `${url}/v1`, apiKey: 'ollama', maxRetries: 0, timeout: CALL_TIMEOUT_MS }),
        };
}

const t = (what, promise) => withTimeout(promise, CALL_TIMEOUT_MS, what);

/* Runs fn(client) against the node and directly against the double; returns [node, direct]. */
async function both(what, fn) {
        const expected = await t(`${what} (double)`, fn(direct));
        const got = await t(`${what} (node)`, fn(node));
        return [got, expected];
}

/* A response without what depends on the clock: created_at and the *_duration fields. */
function timeless(o) {
        return Object.fromEntries(Object.entries(o).filter(([k]) => k !== 'created_at' && !k.endsWith('_duration')));
}

/* Drains an ollama-js stream, keeping every part and when it arrived. */
async function drain(iterator) {
        const parts = [];
        const times = [];
        for await (const part of iterator) {
                parts.push(part);
                times.push(performance.now());
        }
        return { parts, times };
}

async function ollamaStream(what, c, call) {
        return t(what, (async () => drain(await call(c.ollama)))());
}

/*
 * The stream checks shared by generate and chat: same text as directly, the last part is the only
 * one with done true and carries done_reason, and parts arrived spread over time (a proxy that
 * buffers the whole answer would pass the text check but not this one).
 */
function checkOllamaStream(got, expected, text) {
        assert.ok(expected.parts.length >= 2, 'the double streamed fewer than two parts; the test needs more tokens');
        assert.equal(got.parts.map(text).join(''), expected.parts.map(text).join(''), 'streamed text differs');
        const last = got.parts.at(-1);
        assert.equal(last.done, true, 'last part must have done:true');
        assert.equal(typeof last.done_reason, 'string', 'last part must carry done_reason');
        assert.equal(last.done_reason, expected.parts.at(-1).done_reason);
        assert.ok(got.parts.slice(0, -1).every((p) => p.done === false), 'only the last part may be done');
        /* Every part, not only the text: a proxy has no business merging, splitting or editing them. */
        assert.deepEqual(got.parts.map(timeless), expected.parts.map(timeless));
        if (expected.parts.length >= 6) {
                const spread = got.times.at(-1) - got.times[0];
                assert.ok(spread >= 3 * TOKEN_DELAY_MS,
                        `${got.parts.length} parts arrived within ${spread.toFixed(1)} ms: the node buffered the stream`);
        }
}

/*
 * Registers a case only when the libraries loaded. A failing case also prints the last lines the
 * double and mycelia-node wrote, which usually say why.
 */
function clientTest(name, fn) {
        if (libs.missing)
                return;
        for (let i = 0; i < NODES; i++)
                test(`${name} (node ${i + 1} of ${NODES})`, { timeout: TEST_TIMEOUT_MS }, async (ctx) => {
                        current = mesh.nodes[i];
                        node = clients(current.nodeUrl);
                        try {
                                await fn(ctx);
                        } catch (e) {
                                if (mesh)
                                        ctx.diagnostic(`last output of the programs:\n${mesh.logs()}`);
                                throw e;
                        }
                });
}

before(async () => {
        if (libs.missing)
                return;
        mesh = await startMesh({ nodes: NODES });
        direct = clients(mesh.doubleUrl);
        const { models } = await t('list (double)', direct.ollama.list());
        assert.ok(models.length > 0, 'the double serves no models');
        const names = models.map((m) => m.name);
        chatModel = names.find((n) => !/embed|minilm/.test(n)) ?? names[0];
        embedModel = names.find((n) => /embed|minilm/.test(n)) ?? names[0];
});

after(async () => {
        if (!mesh)
                return;
        const r = await mesh.stop();
        /* DESIGN: every daemon exits 0 on SIGTERM; the launcher too. */
        for (const n of r.nodes)
                assert.deepEqual({ code: n.code, signal: n.signal, killed: n.killed ?? false },
                        { code: 0, signal: null, killed: false }, 'mycelia-node did not exit 0 on SIGTERM');
});

clientTest('version', async () => {
        const [got, expected] = await both('version', (c) => c.ollama.version());
        assert.match(expected.version, /^\d+\.\d+\.\d+/);
        assert.equal(typeof got.version, 'string');
        assert.match(got.version, /^\d+\.\d+\.\d+/, 'version must look like x.y.z (the Go CLI compares it)');
});

clientTest('list: same model names', async () => {
        const [got, expected] = await both('list', (c) => c.ollama.list());
        const names = (r) => r.models.map((m) => m.name).sort();
        assert.deepEqual(names(got), names(expected));
});

clientTest('show', async () => {
        const [got, expected] = await both('show', (c) => c.ollama.show({ model: chatModel }));
        for (const k of Object.keys(expected).filter((k) => k !== 'modified_at'))
                assert.deepEqual(got[k], expected[k], `show.${k} differs`);
});

clientTest('ps', async () => {
        const [got, expected] = await both('ps', (c) => c.ollama.ps());
        assert.ok(Array.isArray(got.models), 'ps must return a models array');
        /* The mesh's ps is every node's: what one Ollama has loaded is among it. */
        const names = new Set(got.models.map((m) => m.name));
        for (const m of expected.models)
                assert.ok(names.has(m.name), `ps misses ${m.name}`);
});

clientTest('generate, not streamed', async () => {
        const req = { model: chatModel, prompt: 'Why is the sky blue?', stream: false };
        const [got, expected] = await both('generate', (c) => c.ollama.generate({ ...req }));
        assert.ok(expected.response.length > 0);
        assert.equal(got.response, expected.response);
        assert.equal(got.done, true);
        assert.equal(got.done_reason, expected.done_reason);
        assert.deepEqual(timeless(got), timeless(expected));
});

clientTest('generate, streamed', async () => {
        const call = (o) => o.generate({ model: chatModel, prompt: 'Tell me a story.', stream: true });
        const expected = await ollamaStream('generate stream (double)', direct, call);
        const got = await ollamaStream('generate stream (node)', node, call);
        checkOllamaStream(got, expected, (p) => p.response);
});

clientTest('chat, not streamed', async () => {
        const req = { model: chatModel, messages: [{ role: 'user', content: 'Hello there' }], stream: false };
        const [got, expected] = await both('chat', (c) => c.ollama.chat(structuredClone(req)));
        assert.ok(expected.message.content.length > 0);
        assert.deepEqual(got.message, expected.message);
        assert.equal(got.done, true);
        assert.equal(got.done_reason, expected.done_reason);
        assert.deepEqual(timeless(got), timeless(expected));
});

clientTest('chat, streamed', async () => {
        const call = (o) => o.chat({
                model: chatModel,
                messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Count to ten.' }],
                stream: true,
        });
        const expected = await ollamaStream('chat stream (double)', direct, call);
        const got = await ollamaStream('chat stream (node)', node, call);
        checkOllamaStream(got, expected, (p) => p.message.content);
        assert.equal(got.parts[0].message.role, 'assistant');
});

clientTest('embed: same vectors', async () => {
        const req = { model: embedModel, input: ['first document', 'second document'] };
        const [got, expected] = await both('embed', (c) => c.ollama.embed({ ...req }));
        assert.equal(expected.embeddings.length, 2);
        assert.deepEqual(got.embeddings, expected.embeddings);
        assert.equal(got.model, expected.model);
});

clientTest('embeddings (legacy): same vector', async () => {
        const req = { model: embedModel, prompt: 'a single prompt' };
        const [got, expected] = await both('embeddings', (c) => c.ollama.embeddings({ ...req }));
        assert.ok(expected.embedding.length > 0);
        assert.deepEqual(got.embedding, expected.embedding);
});

clientTest('missing model: 404 "not found", as directly', async () => {
        const call = (c) => c.ollama.generate({ model: 'no-such-model', prompt: 'hi', stream: false });
        const errors = {};
        for (const [where, c] of [['double', direct], ['node', node]]) {
                await assert.rejects(t(`generate no-such-model (${where})`, call(c)), (e) => {
                        assert.equal(e.name, 'ResponseError', `${where}: ${e.stack}`);
                        assert.equal(e.status_code, 404, `${where}: status_code`);
                        assert.match(e.message, /not found/, `${where}: message`);
                        errors[where] = e.message;
                        return true;
                });
        }
        assert.equal(errors.node, errors.double);
});

clientTest('missing model, streamed: 404 before the stream starts', async () => {
        const call = (c) => c.ollama.generate({ model: 'no-such-model', prompt: 'hi', stream: true });
        for (const [where, c] of [['double', direct], ['node', node]]) {
                await assert.rejects(t(`generate stream no-such-model (${where})`, call(c)), (e) => {
                        assert.equal(e.status_code, 404, `${where}: status_code (${e.message})`);
                        assert.match(e.message, /not found/, `${where}: message`);
                        return true;
                });
        }
});

/* Collects an OpenAI SDK stream: the content deltas, the finish_reason, and the chunk count. */
async function openaiStream(what, c, req) {
        return t(what, (async () => {
                const stream = await c.openai.chat.completions.create({ ...req, stream: true });
                let content = '';
                let finish = null;
                let chunks = 0;
                const times = [];
                for await (const chunk of stream) {
                        chunks++;
                        times.push(performance.now());
                        assert.equal(chunk.object, 'chat.completion.chunk');
                        const choice = chunk.choices[0];
                        if (!choice)
                                continue;
                        content += choice.delta?.content ?? '';
                        finish = choice.finish_reason ?? finish;
                }
                return { content, finish, chunks, spread: times.at(-1) - times[0] };
        })());
}

clientTest('openai: chat.completions stream', async () => {
        const req = { model: chatModel, messages: [{ role: 'user', content: 'Say something.' }] };
        const expected = await openaiStream('openai stream (double)', direct, req);
        /* The loop ending without a throw is the clean end: the SDK saw data: [DONE] or EOF. */
        const got = await openaiStream('openai stream (node)', node, req);
        assert.ok(expected.content.length > 0);
        assert.equal(got.content, expected.content);
        assert.equal(got.finish, expected.finish);
        assert.equal(got.finish, 'stop');
        assert.equal(got.chunks, expected.chunks);
        if (expected.chunks >= 6)
                assert.ok(got.spread >= 3 * TOKEN_DELAY_MS,
                        `${got.chunks} chunks arrived within ${got.spread.toFixed(1)} ms: the node buffered the stream`);

        /* The SDK ends quietly on EOF too; that the stream ended with [DONE] needs the raw bytes. */
        const tails = {};
        for (const [where, url] of [['double', mesh.doubleUrl], ['node', current.nodeUrl]]) {
                const r = await t(`raw SSE (${where})`, fetch(`${url}/v1/chat/completions`, {
                        method: 'POST',
                        headers: { 'content-type': 'application/json' },
                        body: JSON.stringify({ ...req, stream: true }),
                }).then(async (res) => ({ type: res.headers.get('content-type'), body: await res.text() })));
                assert.match(r.type, /^text\/event-stream/, `${where}: content-type`);
                tails[where] = r.body.slice(-16);
        }
        assert.equal(tails.node, tails.double);
        assert.ok(tails.node.endsWith('data: [DONE]\n\n'), JSON.stringify(tails.node));
});

clientTest('openai: chat.completions not streamed', async () => {
        const req = { model: chatModel, messages: [{ role: 'user', content: 'Say something else.' }] };
        const [got, expected] = await both('openai chat', (c) => c.openai.chat.completions.create({ ...req }));
        assert.equal(got.object, 'chat.completion');
        assert.equal(got.choices.length, expected.choices.length);
        assert.equal(got.choices[0].message.content, expected.choices[0].message.content);
        assert.equal(got.choices[0].message.role, 'assistant');
        assert.equal(got.choices[0].finish_reason, expected.choices[0].finish_reason);
        assert.equal(got.model, expected.model);
});

clientTest('openai: missing model is a 404 NotFoundError, as directly', async () => {
        const req = { model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] };
        for (const stream of [false, true]) {
                const errors = {};
                for (const [where, c] of [['double', direct], ['node', node]]) {
                        await assert.rejects(t(`openai no-such-model (${where})`, c.openai.chat.completions.create({ ...req, stream })), (e) => {
                                assert.ok(e instanceof OpenAI.NotFoundError, `${where}, stream ${stream}: ${e.stack}`);
                                assert.equal(e.status, 404);
                                errors[where] = e.message;
                                return true;
                        });
                }
                assert.equal(errors.node, errors.double, `stream ${stream}`);
        }
});

clientTest('openai: models.list', async () => {
        const ids = async (c) => {
                const out = [];
                for await (const m of c.openai.models.list())
                        out.push(m.id);
                return out.sort();
        };
        const [got, expected] = await both('models.list', ids);
        assert.ok(expected.length > 0);
        assert.deepEqual(got, expected);
});

clientTest('openai: embeddings.create', async () => {
        const req = { model: embedModel, input: ['alpha', 'beta'], encoding_format: 'float' };
        const [got, expected] = await both('openai embeddings', (c) => c.openai.embeddings.create({ ...req }));
        assert.equal(expected.data.length, 2);
        assert.deepEqual(got.data.map((d) => d.embedding), expected.data.map((d) => d.embedding));
        assert.deepEqual(got.data.map((d) => d.index), [0, 1]);

        /*
         * Without encoding_format the SDK asks for base64 and decodes packed float32, as Ollama's
         * OpenAI layer sends it: through the node it must be the same vector as the float form,
         * to float32 precision, and the same as talking to the double directly.
         */
        const dflt = { model: embedModel, input: 'gamma' };
        const [gotDefault, expectedDefault] = await both('openai embeddings, SDK default encoding',
                (c) => c.openai.embeddings.create({ ...dflt }));
        assert.deepEqual(gotDefault.data.map((d) => d.embedding), expectedDefault.data.map((d) => d.embedding));
        const [asFloat] = await both('openai embeddings, float form of the same input',
                (c) => c.openai.embeddings.create({ ...dflt, encoding_format: 'float' }));
        const decoded = gotDefault.data[0].embedding;
        assert.equal(decoded.length, asFloat.data[0].embedding.length);
        decoded.forEach((v, i) => assert.ok(Math.abs(v - asFloat.data[0].embedding[i]) < 1e-6,
                `component ${i}: base64 ${v} vs float ${asFloat.data[0].embedding[i]}`));
});

clientTest('abort mid-stream, then a new request works', async () => {
        const aborting = new Ollama({ host: current.nodeUrl });
        const stream = await t('generate stream to abort', aborting.generate({
                model: chatModel, prompt: 'A long answer, please.', stream: true,
        }));
        let seen = 0;
        await assert.rejects(t('aborted stream to end', (async () => {
                for await (const part of stream) {
                        assert.equal(part.done, false, 'stream ended before we could abort it; needs more tokens');
                        if (++seen === 2)
                                aborting.abort();
                }
        })()), (e) => {
                assert.equal(e.name, 'AbortError', `expected AbortError, got ${e.stack}`);
                return true;
        });
        assert.ok(seen >= 2);

        /* The same client, and so the same connection pool, must still be served. */
        const again = await t('generate after abort', aborting.generate({ model: chatModel, prompt: 'Again.', stream: false }));
        const expected = await t('generate (double)', direct.ollama.generate({ model: chatModel, prompt: 'Again.', stream: false }));
        assert.equal(again.response, expected.response);
        const streamed = await ollamaStream('stream after abort', { ollama: aborting },
                (o) => o.generate({ model: chatModel, prompt: 'Again.', stream: true }));
        assert.equal(streamed.parts.at(-1).done, true);
});

clientTest('abort mid-stream reaches upstream: the double sees the request cancelled', async () => {
        /* Whichever node serves it: the doubles' counts summed. */
        const stats = async () => {
                const all = await t('double stats', Promise.all(mesh.nodes.map((n) =>
                        fetch(`${n.doubleUrl}/__double/stats`).then((r) => r.json()))));
                return { cancelled: all.reduce((a, x) => a + x.cancelled, 0), active: all.reduce((a, x) => a + x.active, 0) };
        };
        const faults = (body) => t('double faults', Promise.all(mesh.nodes.map((n) => fetch(`${n.doubleUrl}/__double/faults`, {
                method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
        }))).then((rs) => ({ ok: rs.every((r) => r.ok) })));
        /* Slow tokens, so the upstream request is surely still running when we abort. */
        assert.ok((await faults({ token_delay_ms: 200 })).ok);
        try {
                const before = await stats();
                const aborting = new Ollama({ host: current.nodeUrl });
                const stream = await t('slow generate stream', aborting.generate({
                        model: chatModel, prompt: 'Slowly.', stream: true,
                }));
                await assert.rejects(t('aborted slow stream to end', (async () => {
                        for await (const part of stream) {
                                void part;
                                aborting.abort();
                        }
                })()), { name: 'AbortError' });

                /* Well before the remaining tokens could have been produced. */
                let now = await stats();
                const deadline = performance.now() + 2000;
                while (now.cancelled <= before.cancelled && performance.now() < deadline) {
                        await sleep(50);
                        now = await stats();
                }
                assert.ok(now.cancelled > before.cancelled,
                        `the double never saw the aborted request cancelled: ${JSON.stringify({ before, now })}`);
                assert.equal(now.active, 0, `requests still active upstream: ${JSON.stringify(now)}`);
        } finally {
                /* Absent fields reset to the command-line values. */
                await faults({});
        }
});

/*
 * A node whose API needs a bearer token (docs/api-auth.md): the openai client's apiKey is that
 * token, and ollama-js sends it with its headers option; without it both get the 401 their own
 * error types stand for. The tokens file is written here as myceliactl writes it: NAME and the
 * SHA-256 of the secret.
 */
if (!libs.missing)
        test('a bearer token as the openai apiKey and in ollama-js headers', { timeout: 2 * TEST_TIMEOUT_MS }, async (ctx) => {
                const secret = 'myc_' + randomBytes(32).toString('base64url');
                const dir = mkdtempSync(join(tmpdir(), 'mycelia-clients-tokens-'));
                const tokens = join(dir, 'tokens');
                writeFileSync(tokens, `clients ${createHash('sha256').update(secret).digest('hex')}\n`, { mode: 0o640 });
                const secured = await startMesh({ nodes: 1, nodeArgs: ['--api-auth', 'token', '--tokens', tokens] });
                try {
                        const baseURL = `${secured.nodeUrl}/v1`;
                        const openai = new OpenAI({ baseURL, apiKey: secret, maxRetries: 0, timeout: CALL_TIMEOUT_MS });
                        const list = await t('models.list with the token', openai.models.list());
                        assert.ok(list.data.some((m) => m.id === chatModel), `${chatModel} not listed`);
                        const chat = await t('chat with the token', openai.chat.completions.create({
                                model: chatModel, messages: [{ role: 'user', content: 'hi' }] }));
                        assert.ok(chat.choices[0].message.content.length > 0);
                        let parts = 0;
                        for await (const chunk of await t('streamed chat with the token', openai.chat.completions.create({
                                model: chatModel, messages: [{ role: 'user', content: 'hi' }], stream: true })))
                                parts += chunk.choices.length;
                        assert.ok(parts >= 2, 'the stream had fewer than two chunks');

                        const stranger = new OpenAI({ baseURL, apiKey: 'ollama', maxRetries: 0, timeout: CALL_TIMEOUT_MS });
                        await assert.rejects(t('models.list with a wrong key', stranger.models.list()), (e) => {
                                assert.ok(e instanceof OpenAI.AuthenticationError, `${e.constructor.name}: ${e.message}`);
                                assert.equal(e.status, 401);
                                assert.equal(e.error?.message, 'unauthorized');
                                return true;
                        });

                        const ollama = new Ollama({ host: secured.nodeUrl, headers: { Authorization: `Bearer ${secret}` } });
                        const { models } = await t('ollama-js list with the token', ollama.list());
                        assert.ok(models.some((m) => m.name === chatModel));
                        await assert.rejects(t('ollama-js list without it', new Ollama({ host: secured.nodeUrl }).list()), (e) => {
                                assert.equal(e.status_code, 401, `${e.constructor.name}: ${e.message}`);
                                assert.equal(e.error, 'unauthorized');
                                return true;
                        });
                } catch (e) {
                        ctx.diagnostic(`last output of the programs:\n${secured.logs()}`);
                        throw e;
                } finally {
                        const r = await secured.stop();
                        rmSync(dir, { recursive: true, force: true });
                        assert.deepEqual(r.nodes.map((n) => n.code), [0], 'mycelia-node did not exit 0 on SIGTERM');
                }
        });
