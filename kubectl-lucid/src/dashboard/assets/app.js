// The live rollout graph. Everything arrives pushed over server-sent events (no polling):
// each snapshot carries the laid-out graph (SVG) and every service's and phase's state.
// A service's events and pods are fetched when it is selected, and again on each snapshot
// while it stays selected. Data is only ever written as text, never as markup.
'use strict';

const $ = (id) => document.getElementById(id);
let snapshot = null;
let drawnSvg = '';
let selected = null;

function connect() {
  const source = new EventSource('/events');
  source.addEventListener('snapshot', (e) => {
    document.body.dataset.link = 'up';
    draw(JSON.parse(e.data));
  });
  // EventSource reconnects by itself; meanwhile say that the page is not live.
  source.onerror = () => {
    document.body.dataset.link = 'down';
    showStatus('Lost the connection to kubectl lucid dashboard; reconnecting…');
  };
}

function showStatus(text) {
  const box = $('api-status');
  box.hidden = !text;
  box.textContent = text || '';
}

function draw(s) {
  snapshot = s;
  if (s.svg !== drawnSvg) {
    $('graph').innerHTML = s.svg;
    drawnSvg = s.svg;
    for (const node of document.querySelectorAll('#graph .node.phase, #graph .node.no-phase')) {
      node.addEventListener('click', () => select(node.dataset.service));
      node.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); select(node.dataset.service); }
      });
    }
  }
  for (const node of document.querySelectorAll('#graph .node[data-service]')) {
    const svc = s.services[node.dataset.service];
    if (!svc) { node.dataset.state = 'Missing'; continue; }
    node.dataset.state = svc.state;
    let detail = `${svc.readyReplicas}/${svc.desired} · ${svc.state}`;
    if (svc.state !== 'Ready' && svc.waitingOn) detail += ` · on ${svc.waitingOn}`;
    if (svc.degraded) detail = `${svc.readyReplicas}/${svc.desired} · ${svc.degraded.reason}`;
    node.querySelector('.node-detail').textContent = detail;
    node.querySelector('title')?.remove();
    const title = document.createElementNS('http://www.w3.org/2000/svg', 'title');
    title.textContent = `${node.dataset.service}: ${detail}`;
    node.prepend(title);
  }
  for (const band of document.querySelectorAll('#graph .band-group[data-band]')) {
    const phase = s.phases[band.dataset.band];
    const progress = band.querySelector('.band-progress');
    if (phase && progress) {
      progress.textContent = `${phase.readyServices}/${phase.services} Ready · ${phase.state}`;
      band.dataset.state = phase.state;
    }
  }
  $('summary').textContent = `namespace ${s.namespace}: ${s.ready}/${s.total} services Ready`;
  if (s.api.connected) {
    showStatus('');
  } else {
    showStatus(`API server unreachable since ${when(s.api.since)}: ${s.api.message}. Retrying; the graph shows the last state seen.`);
  }
  document.body.dataset.api = s.api.connected ? 'up' : 'down';
  if (selected) panel(selected, true);
}

function when(t) {
  if (!t) return '';
  const d = new Date(t);
  return isNaN(d) ? t : d.toLocaleTimeString();
}

function select(name) {
  selected = name;
  for (const n of document.querySelectorAll('#graph .node')) {
    n.classList.toggle('selected', n.dataset.service === name);
  }
  for (const e of document.querySelectorAll('#graph .edge')) {
    const mine = e.dataset.from === name || e.dataset.to === name;
    e.classList.toggle('lit', mine);
    e.classList.toggle('dim', !mine);
  }
  panel(name, false);
}

function close() {
  selected = null;
  $('panel').hidden = true;
  for (const e of document.querySelectorAll('#graph .edge')) e.classList.remove('lit', 'dim');
  for (const n of document.querySelectorAll('#graph .node')) n.classList.remove('selected');
}

function field(dl, name, value) {
  if (value === undefined || value === null || value === '') return;
  const dt = document.createElement('dt');
  dt.textContent = name;
  const dd = document.createElement('dd');
  dd.textContent = typeof value === 'object' ? JSON.stringify(value) : String(value);
  dl.append(dt, dd);
}

function panel(name, refresh) {
  const svc = snapshot && snapshot.services[name];
  if (!svc) { close(); return; }
  $('panel').hidden = false;
  $('panel-name').textContent = name;
  const dl = $('panel-fields');
  dl.replaceChildren();
  field(dl, 'state', svc.state);
  field(dl, 'pods ready', `${svc.readyReplicas}/${svc.desired}`);
  field(dl, 'phase', svc.phase);
  field(dl, 'depends on', svc.dependsOn.join(', ') || 'nothing');
  if (svc.state !== 'Ready') field(dl, 'waiting on', svc.waitingOn);
  field(dl, 'since', when(svc.since));
  field(dl, 'generation', `${svc.generation ?? '?'} (observed ${svc.observedGeneration ?? 'not yet'})`);
  field(dl, 'pods on nodes', svc.podNodes.join(', '));
  for (const [k, v] of Object.entries(svc.extra)) field(dl, k, v);
  const degraded = $('panel-degraded');
  degraded.hidden = !svc.degraded;
  degraded.textContent = svc.degraded ? `Degraded: ${svc.degraded.reason}: ${svc.degraded.message}` : '';
  fetch(`/api/services/${encodeURIComponent(name)}`)
    .then((r) => (r.ok ? r.json() : null))
    .then((d) => { if (d && selected === name) details(d); })
    .catch(() => {});
  if (!refresh) $('close').focus({ preventScroll: true });
}

function details(d) {
  const body = $('panel-pods').querySelector('tbody');
  body.replaceChildren();
  for (const p of d.pods) {
    const tr = document.createElement('tr');
    for (const v of [p.name, p.phase, p.ready ? 'yes' : 'no', p.restarts, p.node || '—']) {
      const td = document.createElement('td');
      td.textContent = v ?? '';
      tr.append(td);
    }
    body.append(tr);
  }
  if (!d.pods.length) {
    const tr = document.createElement('tr');
    const td = document.createElement('td');
    td.colSpan = 5;
    td.textContent = 'no pods';
    tr.append(td);
    body.append(tr);
  }
  const list = $('panel-events');
  list.replaceChildren();
  for (const e of d.events) {
    const li = document.createElement('li');
    li.className = e.type;
    li.textContent = `${when(e.time)} ${e.kind}/${e.name}: ${e.reason}: ${e.note}`;
    list.append(li);
  }
  if (!d.events.length) {
    const li = document.createElement('li');
    li.textContent = 'no events';
    list.append(li);
  }
}

$('close').addEventListener('click', close);
document.addEventListener('keydown', (e) => { if (e.key === 'Escape') close(); });
connect();
