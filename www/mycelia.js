// SPDX-License-Identifier: LGPL-2.1-or-later
// The topology page: polls GET /api/mycelia/status once a second (never faster: the next poll is
// set when the last one ended) and draws the mesh as this node sees it. No framework, no build
// step; every string from the mesh goes into the page as text, never as markup (node names
// and models come from peers). docs/topology-page.md.
'use strict';

const POLL_MS = 1000;
const SVG_NS = 'http://www.w3.org/2000/svg';
const VIEW = 600;
const NODE_R = 46;

const state = {
  token: sessionStorage.getItem('mycelia-token') || '',
  selected: null,
  status: null,
};

function $(id) { return document.getElementById(id); }

function el(name, attrs, text) {
  const e = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function html(name, text, cls) {
  const e = document.createElement(name);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }

function shortModels(models) {
  if (!models || models.length === 0) return 'no models';
  const names = models.map((m) => m.replace(/:latest$/, ''));
  const shown = names.slice(0, 2).join(', ');
  return names.length > 2 ? `${shown} +${names.length - 2}` : shown;
}

function fmtMs(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}

// The local node on top, the others around the circle in name order, so that a node keeps its
// place from one poll to the next.
function layout(nodes) {
  const sorted = [...nodes].sort((a, b) => (b.local - a.local) || a.name.localeCompare(b.name) ||
                                            a.id.localeCompare(b.id));
  const pos = new Map();
  const c = VIEW / 2;
  // Neighbours on the circle stay a node's width apart; the view box is fitted around them.
  const n = sorted.length;
  const r = n <= 1 ? 0 : Math.max(130, (2 * NODE_R + 50) / (2 * Math.sin(Math.PI / n)));
  sorted.forEach((n, i) => {
    const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, sorted.length);
    pos.set(n.id, { x: c + r * Math.cos(a), y: c + r * Math.sin(a) });
  });
  return pos;
}

// The view box around the nodes, with room for their labels and for a flow looping above one.
function fitView(pos) {
  const xs = [...pos.values()].map((p) => p.x), ys = [...pos.values()].map((p) => p.y);
  if (xs.length === 0) return;
  const x0 = Math.min(...xs) - NODE_R - 60, x1 = Math.max(...xs) + NODE_R + 60;
  const y0 = Math.min(...ys) - NODE_R - 80, y1 = Math.max(...ys) + NODE_R + 30;
  $('graph').setAttribute('viewBox', `${x0.toFixed(0)} ${y0.toFixed(0)} ${(x1 - x0).toFixed(0)} ${(y1 - y0).toFixed(0)}`);
}

function drawEdges(nodes, pos) {
  const g = $('edges');
  clear(g);
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      const a = pos.get(nodes[i].id), b = pos.get(nodes[j].id);
      g.appendChild(el('line', { class: 'edge', x1: a.x, y1: a.y, x2: b.x, y2: b.y }));
    }
  }
}

function drawNodes(nodes, pos) {
  const g = $('nodes');
  clear(g);
  for (const n of nodes) {
    const p = pos.get(n.id);
    const node = el('g', {
      class: `node ${n.health}${state.selected === n.id ? ' selected' : ''}`,
      transform: `translate(${p.x.toFixed(1)} ${p.y.toFixed(1)})`,
      'data-node-id': n.id, 'data-name': n.name, 'data-health': n.health,
      tabindex: 0, role: 'button',
      'aria-label': `${n.name}: ${n.health}, ${n.models.length} models, ${n.in_flight} in flight`,
    });
    if (n.local) node.appendChild(el('circle', { class: 'local-mark', r: NODE_R + 8 }));
    node.appendChild(el('circle', { class: 'ring', r: NODE_R }));
    node.appendChild(el('rect', { class: 'core', x: -30, y: -NODE_R + 10, width: 60, height: 16, rx: 8 }));
    node.appendChild(el('text', { class: 'state', y: -NODE_R + 22 }, n.health));
    node.appendChild(el('text', { class: 'name', y: 4 }, n.name.length > 14 ? `${n.name.slice(0, 13)}…` : n.name));
    const models = el('text', { class: 'sub models', y: 20 }, shortModels(n.models));
    models.appendChild(el('title', {}, n.models.join('\n')));
    node.appendChild(models);
    // The load bar: requests in flight against the node's capacity (or 4 when unknown).
    const cap = n.capacity || 4;
    const frac = Math.min(1, n.in_flight / cap);
    node.appendChild(el('rect', { class: 'load-bg', x: -28, y: 27, width: 56, height: 6, rx: 3 }));
    node.appendChild(el('rect', { class: 'load', x: -28, y: 27, width: (56 * frac).toFixed(1), height: 6, rx: 3 }));
    node.appendChild(el('text', { class: 'sub load-text', y: NODE_R + 18 },
                        `${n.in_flight}/${n.capacity || '?'} in flight${n.local ? ' · this node' : ''}`));
    node.addEventListener('click', () => select(n.id));
    node.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); select(n.id); } });
    g.appendChild(node);
  }
}

// One arrow per (entry, serving node) with requests in flight or ended in the last seconds; a
// request served by the entry node itself loops above it.
function drawFlows(flows, pos) {
  const g = $('flows');
  clear(g);
  const groups = new Map();
  for (const f of flows) {
    const key = `${f.from}>${f.to}`;
    const e = groups.get(key) || { from: f.from, to: f.to, active: 0, ended: 0, failed: 0 };
    if (f.active) e.active++; else e.ended++;
    if (!f.active && f.status >= 400) e.failed++;
    groups.set(key, e);
  }
  for (const e of groups.values()) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    let d, lx, ly;
    if (e.from === e.to) {
      d = `M ${a.x - 20} ${a.y - NODE_R} C ${a.x - 60} ${a.y - NODE_R - 70}, ${a.x + 60} ${a.y - NODE_R - 70}, ${a.x + 20} ${a.y - NODE_R - 2}`;
      lx = a.x; ly = a.y - NODE_R - 58;
    } else {
      const dx = b.x - a.x, dy = b.y - a.y, len = Math.hypot(dx, dy) || 1;
      const ux = dx / len, uy = dy / len;
      const sx = a.x + ux * (NODE_R + 4), sy = a.y + uy * (NODE_R + 4);
      const tx = b.x - ux * (NODE_R + 6), ty = b.y - uy * (NODE_R + 6);
      // Bowed to one side, so that A→B and B→A do not overlap.
      const mx = (sx + tx) / 2 - uy * 40, my = (sy + ty) / 2 + ux * 40;
      d = `M ${sx.toFixed(1)} ${sy.toFixed(1)} Q ${mx.toFixed(1)} ${my.toFixed(1)} ${tx.toFixed(1)} ${ty.toFixed(1)}`;
      lx = (sx + 2 * mx + tx) / 4; ly = (sy + 2 * my + ty) / 4 - 6;
    }
    const cls = `flow ${e.active ? 'active' : 'ended'}${e.failed && !e.active ? ' failed' : ''}`;
    g.appendChild(el('path', { class: cls, d, 'data-from': e.from, 'data-to': e.to, 'data-active': e.active }));
    const label = e.active ? `${e.active} in flight` : `${e.ended} done`;
    g.appendChild(el('text', { class: 'flow-count', x: lx.toFixed(1), y: ly.toFixed(1) }, label));
  }
}

function detail(dl, term, value) {
  dl.appendChild(html('dt', term));
  dl.appendChild(html('dd', value === null || value === undefined || value === '' ? '—' : String(value)));
}

function drawDetails() {
  const box = $('details');
  clear(box);
  const s = state.status;
  const n = s && s.nodes.find((x) => x.id === state.selected);
  if (!n) {
    box.appendChild(html('h2', 'Node'));
    box.appendChild(html('p', 'Click a node to see its details.', 'hint'));
    return;
  }
  box.appendChild(html('h2', `${n.name}${n.local ? ' (this node)' : ''}`));
  const dl = html('dl');
  detail(dl, 'health', n.health);
  detail(dl, 'gossip', n.gossip_state);
  detail(dl, 'routing', n.route_state);
  detail(dl, 'id', n.id);
  detail(dl, 'API', n.api);
  detail(dl, 'mesh', n.mesh);
  detail(dl, 'in flight', `${n.in_flight} of ${n.capacity || 'unknown'}`);
  detail(dl, 'time to first token', n.ttft_ms ? fmtMs(n.ttft_ms) : null);
  detail(dl, 'cooling down', n.cooling_left_ms ? `${fmtMs(n.cooling_left_ms)} left` : 'no');
  detail(dl, 'shard store', n.shard ? 'yes' : 'no');
  box.appendChild(dl);
  box.appendChild(html('h2', `Models (${n.models.length})`));
  const ul = html('ul', undefined, 'models-list');
  for (const m of n.models) ul.appendChild(html('li', m));
  box.appendChild(ul);
}

function drawTables() {
  const s = state.status;
  const names = new Map(s.nodes.map((n) => [n.id, n.name]));
  const fb = $('flows-table').tBodies[0];
  clear(fb);
  for (const f of [...s.flows].reverse().slice(0, 20)) {
    const tr = html('tr');
    tr.appendChild(html('td', f.id));
    tr.appendChild(html('td', f.model || '—'));
    tr.appendChild(html('td', f.endpoint));
    tr.appendChild(html('td', names.get(f.to) || f.to_name || f.to));
    tr.appendChild(html('td', f.active ? 'in flight' : `${f.status}${f.attempts > 1 ? ` after ${f.attempts} nodes` : ''}`));
    tr.appendChild(html('td', f.tokens));
    tr.appendChild(html('td', fmtMs(f.duration_ms)));
    fb.appendChild(tr);
  }
  const cb = $('collections-table').tBodies[0];
  clear(cb);
  for (const c of s.collections) {
    const tr = html('tr');
    for (const v of [c.name, c.model, c.dimension, c.shards, c.replicas, c.documents]) tr.appendChild(html('td', v));
    cb.appendChild(tr);
  }
}

function draw() {
  const s = state.status;
  const pos = layout(s.nodes);
  const count = (h) => s.nodes.filter((n) => n.health === h).length;
  const parts = [`${s.node.name}`, `policy ${s.policy}`, `${s.nodes.length} nodes: ${count('up')} up`];
  for (const h of ['cooling', 'suspect', 'down', 'dead', 'left', 'joining']) if (count(h)) parts.push(`${count(h)} ${h}`);
  parts.push(`${s.requests.active} in flight`, `${s.requests.total} requests`);
  if (s.requests.resumed > 0) parts.push(`${s.requests.resumed} resumed`);
  $('summary').textContent = parts.join(' · ');
  $('version').textContent = `Mycelia Mesh ${s.version}`;
  document.title = `Mycelia Mesh · ${s.node.name}`;
  fitView(pos);
  drawEdges(s.nodes, pos);
  drawNodes(s.nodes, pos);
  drawFlows(s.flows, pos);
  drawDetails();
  drawTables();
  document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
}

function select(id) {
  state.selected = state.selected === id ? null : id;
  if (state.status) draw();
}

function banner(text) {
  const b = $('banner');
  b.hidden = !text;
  b.textContent = text || '';
}

async function poll() {
  const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
  try {
    const r = await fetch('/api/mycelia/status', { headers, cache: 'no-store' });
    if (r.status === 401 || r.status === 403) {
      $('token-form').hidden = false;
      banner(r.status === 401 ? 'This node needs an API token to show the mesh.' : 'This token may not read the status.');
    } else if (!r.ok) {
      banner(`The node answered ${r.status}; trying again.`);
    } else {
      state.status = await r.json();
      $('token-form').hidden = true;
      banner('');
      draw();
    }
  } catch (e) {
    banner(`Cannot reach this node (${e.message}); trying again every second.`);
  }
  setTimeout(poll, POLL_MS);
}

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  state.token = $('token').value.trim();
  sessionStorage.setItem('mycelia-token', state.token);
});

poll();
