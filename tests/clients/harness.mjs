// SPDX-License-Identifier: LGPL-2.1-or-later
// Starts mycelia-node launchers, each in front of an Ollama test double, joined into one mesh for
// the real-client tests, and tears them down (plus the state directories) on every way out.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const START_TIMEOUT_MS = 20000;
const STOP_TIMEOUT_MS = 5000;
const TAIL_LINES = 40;

/* Every child and temporary directory we made, so that an exit of any kind can clean up. */
const children = new Set();
const tmpdirs = new Set();

function cleanupNow() {
        for (const c of children)
                if (c.exitCode === null && c.signalCode === null)
                        try { c.kill('SIGKILL'); } catch { /* already gone */ }
        children.clear();
        for (const d of tmpdirs)
                try { rmSync(d, { recursive: true, force: true }); } catch { /* best effort */ }
        tmpdirs.clear();
}

/* 'exit' handlers must be synchronous: SIGKILL and rmSync are. */
process.on('exit', cleanupNow);
/* On a signal (meson's timeout, ^C) give the launcher a moment to stop its daemons first. */
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'])
        process.once(sig, async () => {
                const live = [...children];
                for (const c of live)
                        try { c.kill('SIGTERM'); } catch { /* gone */ }
                await Promise.race([Promise.all(live.map((c) => c.exited)), sleep(2000, null, { ref: false })]);
                cleanupNow();
                process.kill(process.pid, sig);
        });

function requireEnv(name) {
        const v = process.env[name];
        if (!v)
                throw new Error(`${name} is not set: run this test through meson (meson test --suite clients)`);
        return v;
}

/* Rejects after ms with a message naming what we were waiting for. */
export async function withTimeout(promise, ms, what) {
        let timer;
        const timeout = new Promise((_, reject) => {
                timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
        });
        try {
                return await Promise.race([promise, timeout]);
        } finally {
                clearTimeout(timer);
        }
}

/*
 * Spawns argv and returns { child, ready }: ready resolves with the first match of `ready` in its
 * stdout, and rejects if the program exits first or prints no such line within timeoutMs. Keeps the
 * last lines of both streams so a failure says what the program said. Stopping the child is the
 * caller's job (a launcher must get SIGTERM, so that it can take its daemons down with it).
 */
function startProcess(label, argv, ready, timeoutMs) {
        const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
        children.add(child);
        const tail = [];
        const remember = (stream, line) => {
                tail.push(`${label} ${stream}: ${line}`);
                if (tail.length > TAIL_LINES)
                        tail.shift();
        };
        child.tail = tail;
        /* 'exit', not 'close': daemons a launcher started may hold its stdout open after it is gone. */
        child.exited = new Promise((resolve) => {
                child.once('exit', (code, signal) => resolve({ code, signal }));
                /* ENOENT, EACCES: 'error' without 'exit'. */
                child.once('error', (e) => {
                        remember('spawn', e.message);
                        resolve({ code: null, signal: null, error: e.message });
                });
        }).finally(() => children.delete(child));

        const readyPromise = new Promise((resolve, reject) => {
                const buffered = { stdout: '', stderr: '' };
                let settled = false;
                const settle = (fn, v) => {
                        if (settled)
                                return;
                        settled = true;
                        clearTimeout(timer);
                        fn(v);
                };
                const fail = (why) => settle(reject,
                        new Error(`${label}: ${why}\n  ${argv.join(' ')}\n${tail.join('\n')}`));
                const timer = setTimeout(() => fail(`no ready line within ${timeoutMs} ms`), timeoutMs);
                const onData = (stream) => (data) => {
                        buffered[stream] += data.toString('utf8');
                        let nl;
                        while ((nl = buffered[stream].indexOf('\n')) >= 0) {
                                const line = buffered[stream].slice(0, nl);
                                buffered[stream] = buffered[stream].slice(nl + 1);
                                remember(stream, line);
                                if (stream === 'stdout') {
                                        const m = ready.exec(line);
                                        if (m)
                                                settle(resolve, m);
                                }
                        }
                };
                child.stdout.on('data', onData('stdout'));
                child.stderr.on('data', onData('stderr'));
                child.once('error', (e) => fail(`cannot start: ${e.message}`));
                child.once('exit', (code, signal) => fail(`exited before it was ready (code ${code}, signal ${signal})`));
        });
        return { child, ready: readyPromise };
}

/*
 * SIGTERM, then SIGKILL if it does not exit within STOP_TIMEOUT_MS. Returns how it ended. Drops our
 * ends of its pipes, which a leftover grandchild could otherwise keep this process alive with.
 */
async function stopProcess(child) {
        const release = (r) => {
                child.stdout?.destroy();
                child.stderr?.destroy();
                return r;
        };
        if (child.pid === undefined)
                return release({ code: null, signal: null, error: 'never started' });
        if (child.exitCode === null && child.signalCode === null)
                child.kill('SIGTERM');
        const r = await Promise.race([child.exited, sleep(STOP_TIMEOUT_MS, null, { ref: false }).then(() => null)]);
        if (r)
                return release(r);
        child.kill('SIGKILL');
        const k = await Promise.race([child.exited, sleep(STOP_TIMEOUT_MS, null, { ref: false }).then(() => ({ code: null, signal: null }))]);
        return release({ ...k, killed: true });
}

/*
 * Starts n mycelia-node launchers on loopback, each in front of its own Ollama double (the same
 * models: the double's answers depend only on model and input, so any node's answer is the
 * expected one), joined into one mesh by a shared mesh key and the first node's gossip address.
 * Waits until every node routes to every other. Returns { nodes: [{ name, nodeUrl, doubleUrl,
 * busAddress }], nodeUrl, doubleUrl (the first node's), stop(), logs() }. stop() is idempotent
 * and reports, per node, whether its launcher exited cleanly on SIGTERM.
 */
export async function startMesh({ nodes: count = 1, doubleArgs = [], nodeArgs = [] } = {}) {
        const nodeBin = requireEnv('MYCELIA_NODE');
        const doubleBin = requireEnv('OLLAMA_DOUBLE');
        const dir = mkdtempSync(join(tmpdir(), 'mycelia-clients-'));
        tmpdirs.add(dir);
        const keyFile = join(dir, 'mesh.key');
        writeFileSync(keyFile, randomBytes(32).toString('base64') + '\n', { mode: 0o640 });

        const procs = [];
        const started = [];
        let stopped = null;
        const stop = () => {
                stopped ??= (async () => {
                        const result = { nodes: [] };
                        for (const p of procs.filter((x) => x.kind === 'node'))
                                result.nodes.push(await stopProcess(p.child));
                        for (const p of procs.filter((x) => x.kind === 'double'))
                                await stopProcess(p.child);
                        rmSync(dir, { recursive: true, force: true });
                        tmpdirs.delete(dir);
                        return result;
                })();
                return stopped;
        };

        try {
                let seed = null;
                for (let i = 0; i < count; i++) {
                        const name = count === 1 ? 'clients' : `clients-${i + 1}`;
                        const d = startProcess('ollama-double',
                                [doubleBin, '--listen', '127.0.0.1:0', '--token-delay-ms', '5', ...doubleArgs],
                                /^ollama-double: listening on (http:\/\/127\.0\.0\.1:\d+)\s*$/, START_TIMEOUT_MS);
                        procs.push({ kind: 'double', child: d.child });
                        const doubleUrl = (await d.ready)[1];

                        const stateDir = join(dir, `node${i + 1}`);
                        const n = startProcess('mycelia-node',
                                [nodeBin, '--api', '127.0.0.1:0', '--upstream', doubleUrl, '--state-dir', stateDir,
                                 '--name', name, '--mesh-key', keyFile, ...(seed ? ['--seed', seed] : []), ...nodeArgs],
                                /^mycelia-node: ready api=(http:\/\/\S+:\d+) bus=(\S+)((?: \S+=\S*)*)\s*$/, START_TIMEOUT_MS);
                        procs.push({ kind: 'node', child: n.child });
                        const m = await n.ready;
                        seed ??= /gossip=(\S+)/.exec(m[3])?.[1] ?? null;
                        /* The pids are for tests that kill a node or its double (resume.test.mjs). */
                        started.push({ name, nodeUrl: m[1], doubleUrl, busAddress: m[2],
                                       launcherPid: n.child.pid, doublePid: d.child.pid });
                }
                /* Joined: every node answers for every other (X-Mycelia-Node is a 404 until the
                 * other is up in its routing table). */
                const deadline = performance.now() + START_TIMEOUT_MS;
                for (const a of started)
                        for (const b of started) {
                                if (a === b)
                                        continue;
                                for (;;) {
                                        const r = await fetch(`${a.nodeUrl}/api/version`, { headers: { 'X-Mycelia-Node': b.name } })
                                                .catch(() => null);
                                        if (r?.ok)
                                                break;
                                        if (performance.now() > deadline)
                                                throw new Error(`${a.name} never routed to ${b.name}`);
                                        await sleep(100);
                                }
                        }
                return {
                        nodes: started,
                        nodeUrl: started[0].nodeUrl,
                        doubleUrl: started[0].doubleUrl,
                        busAddress: started[0].busAddress,
                        stop,
                        /* The last lines the programs printed, for failure messages. */
                        logs: () => procs.flatMap((p) => p.child.tail).join('\n'),
                };
        } catch (e) {
                await stop();
                throw e;
        }
}

/*
 * Imports the clients from tests/clients/node_modules. Returns { Ollama, OpenAI }, or { missing }
 * with what to do when they are not installed (meson runs this test whether or not they are, so
 * that a forgotten `npm ci` is a failure, never a silent pass).
 */
export async function loadClientLibraries() {
        try {
                const { Ollama } = await import('ollama');
                const { default: OpenAI } = await import('openai');
                return { Ollama, OpenAI };
        } catch (e) {
                if (e.code !== 'ERR_MODULE_NOT_FOUND')
                        throw e;
                return {
                        missing: 'the npm clients are not installed: run `npm ci` in tests/clients ' +
                                '(tools/check does it; from the top of the tree: npm ci --prefix tests/clients)\n' +
                                `  (${e.message})`,
                };
        }
}

/* The pids of pid's children, from the ppid field of every /proc/N/stat (the comm before it may
 * contain spaces and parentheses: the fields start after the last ')'). */
function procChildren(pid) {
        const out = [];
        for (const e of readdirSync('/proc')) {
                if (!/^\d+$/.test(e))
                        continue;
                let stat;
                try {
                        stat = readFileSync(`/proc/${e}/stat`, 'utf8');
                } catch {
                        continue;       /* gone meanwhile */
                }
                const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
                if (Number(fields[1]) === pid)
                        out.push(Number(e));
        }
        return out;
}

/* Every descendant of pid (children, their children, ...), as tests/integration/harness.py's
 * proc_descendants. */
export function procDescendants(pid) {
        const out = [];
        const todo = [pid];
        while (todo.length) {
                for (const c of procChildren(todo.pop()))
                        if (!out.includes(c)) {
                                out.push(c);
                                todo.push(c);
                        }
        }
        return out;
}

/* SIGKILL of pid and every process under it, collected before the first kill: nothing leaves
 * gracefully (a launcher's daemons would otherwise get SIGTERM from PR_SET_PDEATHSIG). Returns
 * the pids signalled. */
export function killTree(pid) {
        const pids = [pid, ...procDescendants(pid)];
        for (const p of pids)
                try { process.kill(p, 'SIGKILL'); } catch { /* already gone */ }
        return pids;
}
