// Herald's admin page: asks for the publish key or a token, subscribes to
// herald/stats over Herald itself and shows each node's figures with small
// charts. Plain DOM, no framework; the data logic is in stats.ts.
import { HeraldClient, HeraldError, type ConnectionState, type HeraldEvent } from '@herald/client';
import {
  applyStats,
  createState,
  describeSeries,
  forgetOld,
  formatCount,
  formatDuration,
  formatRate,
  isStale,
  nodes,
  parseStats,
  sparkline,
  totals,
  type NodeState,
} from './stats.js';
import { refusalMessage } from './messages.js';

const TOPIC = 'herald/stats';
const STORAGE_KEY = 'herald.admin.credential';
const SVG = 'http://www.w3.org/2000/svg';
const CHART_W = 120;
const CHART_H = 28;
/** After this long open without a stats event, say that stats may be off. */
const QUIET_HINT_MS = 10_000;

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function setText(e: Element, text: string): void {
  if (e.textContent !== text) e.textContent = text;
}

// Storage may be unavailable (disabled, or a sandboxed frame): the credential then lives in memory only.
const store = {
  get(): string {
    try {
      return sessionStorage.getItem(STORAGE_KEY) ?? '';
    } catch {
      return '';
    }
  },
  set(v: string): void {
    try {
      sessionStorage.setItem(STORAGE_KEY, v);
    } catch {
      /* memory only */
    }
  },
  clear(): void {
    try {
      sessionStorage.removeItem(STORAGE_KEY);
    } catch {
      /* nothing kept */
    }
  },
};

const form = $('connect') as HTMLFormElement;
const input = $('credential') as HTMLInputElement;
const forgetBtn = $('forget') as HTMLButtonElement;
const stateEl = $('state');
const errorEl = $('error');
const noticeEl = $('notice');
const totalsEl = $('totals');
const nodesEl = $('nodes');
const emptyEl = $('empty');

let credential = '';
let client: HeraldClient | undefined;
let data = createState();
let openedAt = 0;

function showState(state: ConnectionState | 'idle'): void {
  setText(stateEl, state === 'idle' ? 'not connected' : state);
  stateEl.dataset['state'] = state;
}

function showError(message: string): void {
  setText(errorEl, message);
  errorEl.hidden = message === '';
}

function connect(cred: string): void {
  client?.close();
  credential = cred;
  store.set(cred);
  showError('');
  forgetBtn.hidden = false;
  openedAt = 0;
  // share: false: the credential belongs to this tab (sessionStorage), and a
  // tab must see its own credential accepted or refused, never ride on a
  // stream another tab opened with another key. An admin page is seldom open
  // in many tabs, so the shared stream would save little.
  const c = new HeraldClient({ url: '', topics: [TOPIC], getToken: () => credential, share: false });
  client = c;
  let accepted = false;
  c.onState((state, err) => {
    if (c !== client) return;
    showState(state);
    if (state === 'open' && !accepted) {
      // The first open: the credential works. Clear the field (not on later
      // reconnects, which must not wipe what the user may be typing).
      accepted = true;
      openedAt = Date.now();
      input.value = '';
      input.placeholder = 'Connected: enter another to switch';
    }
    if (state === 'closed') {
      client = undefined;
      if (err) refused(err);
    }
    render();
  });
  c.on(TOPIC, 'stats', (ev: HeraldEvent) => {
    const s = parseStats(ev.data);
    if (s && applyStats(data, s, Date.now())) render();
  });
  showState(c.state);
  c.start();
  showState(c.state);
}

function refused(err: Error): void {
  credential = '';
  store.clear();
  forgetBtn.hidden = true;
  showError(err instanceof HeraldError ? refusalMessage(err) : `The stream stopped: ${err.message}`);
  input.placeholder = '';
  input.focus();
  input.select();
}

function forget(): void {
  const c = client;
  client = undefined;
  c?.close();
  credential = '';
  store.clear();
  data = createState();
  forgetBtn.hidden = true;
  input.value = '';
  input.placeholder = '';
  showError('');
  showState('idle');
  render();
  input.focus();
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  const v = input.value.trim();
  if (v === '') {
    showError('Enter the publish key or a token.');
    input.focus();
    return;
  }
  connect(v);
});
forgetBtn.addEventListener('click', forget);
// Leaving the page closes the stream (the client does it on pagehide); a page
// restored from the back/forward cache connects again.
addEventListener('pageshow', (e) => {
  if (e.persisted && credential && !client) connect(credential);
});

// Rendering. Each node gets its card once; later renders only change text and
// attributes, so that focus, selection and screen readers are not disturbed.

interface Chart {
  svg: SVGSVGElement;
  title: SVGTitleElement;
  line: SVGPolylineElement;
  area: SVGPathElement;
}

interface Card {
  root: HTMLElement;
  badge: HTMLElement;
  meta: HTMLElement;
  values: Record<string, HTMLElement>;
  charts: Record<string, Chart>;
  topBody: HTMLTableSectionElement;
  topTable: HTMLTableElement;
  topNone: HTMLElement;
}

const cards = new Map<string, Card>();
let cardSeq = 0;

function chart(kind: string): Chart {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'chart chart-' + kind);
  svg.setAttribute('viewBox', `0 0 ${CHART_W} ${CHART_H}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  svg.setAttribute('focusable', 'false');
  const title = document.createElementNS(SVG, 'title');
  const area = document.createElementNS(SVG, 'path');
  area.setAttribute('class', 'area');
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('class', 'line');
  line.setAttribute('vector-effect', 'non-scaling-stroke');
  svg.append(title, area, line);
  return { svg, title, line, area };
}

function drawChart(c: Chart, label: string, values: number[], intervalMs: number, fmt: (n: number) => string): void {
  const g = sparkline(values, CHART_W, CHART_H, 2);
  c.line.setAttribute('points', g.points);
  c.area.setAttribute('d', g.area || 'M0,0');
  const text = describeSeries(label, values, intervalMs, fmt);
  c.svg.setAttribute('aria-label', text);
  setText(c.title, text);
}

const METRICS: { key: string; label: string; chart?: boolean }[] = [
  { key: 'streams', label: 'Streams', chart: true },
  { key: 'publishes', label: 'Publishes', chart: true },
  { key: 'deliveries', label: 'Deliveries', chart: true },
  { key: 'topics', label: 'Topics' },
  { key: 'drops', label: 'Slow-client drops' },
  { key: 'gaps', label: 'Gaps' },
];

function makeCard(node: string): Card {
  const n = ++cardSeq;
  const root = el('article', { class: 'node', 'data-testid': 'node', 'data-node': node, 'aria-labelledby': `node-${n}` });
  const head = el('header', { class: 'node-head' });
  const h = el('h3', { id: `node-${n}` }, node);
  const badge = el('span', { class: 'badge' });
  const meta = el('p', { class: 'meta' });
  head.append(h, badge, meta);
  const dl = el('dl', { class: 'metrics' });
  const values: Record<string, HTMLElement> = {};
  const charts: Record<string, Chart> = {};
  for (const m of METRICS) {
    const row = el('div', { class: 'metric', 'data-metric': m.key });
    const dd = el('dd');
    const v = el('span', { class: 'value' });
    dd.append(v);
    if (m.chart) {
      charts[m.key] = chart(m.key);
      dd.append(charts[m.key]!.svg);
    }
    values[m.key] = v;
    row.append(el('dt', {}, m.label), dd);
    dl.append(row);
  }
  const topTable = el('table', { class: 'top' });
  const cap = el('caption', {}, `Top topics on ${node}`);
  const thead = el('thead');
  const tr = el('tr');
  tr.append(el('th', { scope: 'col' }, 'Topic'), el('th', { scope: 'col', class: 'num' }, 'Streams'));
  thead.append(tr);
  const topBody = el('tbody');
  topTable.append(cap, thead, topBody);
  const topNone = el('p', { class: 'none' }, 'No topic has a stream on this node.');
  root.append(head, dl, topTable, topNone);
  return { root, badge, meta, values, charts, topBody, topTable, topNone };
}

function renderTop(card: Card, n: NodeState): void {
  const top = n.last.topTopics;
  card.topTable.hidden = top.length === 0;
  card.topNone.hidden = top.length !== 0;
  const rows = card.topBody.rows;
  while (rows.length > top.length) card.topBody.deleteRow(-1);
  top.forEach((t, i) => {
    let row = rows[i];
    if (!row) {
      row = card.topBody.insertRow();
      row.append(el('th', { scope: 'row' }), el('td', { class: 'num' }));
    }
    setText(row.cells[0]!, t.topic);
    setText(row.cells[1]!, formatCount(t.streams));
  });
}

function renderCard(card: Card, n: NodeState, now: number): void {
  const s = n.last;
  const stale = isStale(n, now);
  card.root.dataset['stale'] = String(stale);
  const ago = Math.max(0, Math.round((now - n.receivedAt) / 1000));
  setText(card.badge, stale ? 'stale' : 'live');
  setText(card.meta, stale ? `No stats for ${formatDuration(ago)}; last uptime ${formatDuration(s.uptimeS)}` : `Up ${formatDuration(s.uptimeS)} · updated ${ago}s ago`);
  const v = card.values;
  setText(v['streams']!, formatCount(s.streams));
  setText(v['topics']!, formatCount(s.topics));
  setText(v['publishes']!, formatRate(s.rates.publishes));
  setText(v['deliveries']!, formatRate(s.rates.deliveries));
  setText(v['drops']!, `${formatCount(s.dropsTotal)}${s.rates.drops > 0 ? ` (${formatRate(s.rates.drops)})` : ''}`);
  setText(v['gaps']!, formatCount(s.gapsTotal));
  const c = card.charts;
  drawChart(c['streams']!, 'Streams', n.streams, s.intervalMs, formatCount);
  drawChart(c['publishes']!, 'Publishes per second', n.publishRate, s.intervalMs, formatRate);
  drawChart(c['deliveries']!, 'Deliveries per second', n.deliveryRate, s.intervalMs, formatRate);
  renderTop(card, n);
}

function renderTotals(now: number): void {
  const t = totals(data, now);
  const set = (k: string, text: string) => setText(totalsEl.querySelector(`[data-total=${k}]`)!, text);
  set('nodes', String(t.live));
  set('stale', t.stale ? `+${t.stale} stale` : '');
  set('streams', formatCount(t.streams));
  set('topics', formatCount(t.topics));
  set('publishes', formatRate(t.publishRate));
  set('deliveries', formatRate(t.deliveryRate));
  set('drops', `${formatCount(t.dropsTotal)}${t.dropRate > 0 ? ` (${formatRate(t.dropRate)})` : ''}`);
  set('gaps', formatCount(t.gapsTotal));
}

function render(): void {
  const now = Date.now();
  forgetOld(data, now);
  const list = nodes(data);
  for (const [id, card] of cards) {
    if (!data.has(id)) {
      card.root.remove();
      cards.delete(id);
    }
  }
  list.forEach((n, i) => {
    let card = cards.get(n.node);
    if (!card) {
      card = makeCard(n.node);
      cards.set(n.node, card);
    }
    if (nodesEl.children[i] !== card.root) nodesEl.insertBefore(card.root, nodesEl.children[i] ?? null);
    renderCard(card, n, now);
  });
  totalsEl.hidden = list.length === 0;
  emptyEl.hidden = list.length !== 0;
  if (list.length) renderTotals(now);
  let notice = '';
  if (!list.length) {
    if (client?.state === 'open') {
      notice =
        openedAt && now - openedAt > QUIET_HINT_MS
          ? 'Connected, but no node has sent stats yet: the nodes may run with -admin-stats-interval 0 (stats off).'
          : 'Connected. Waiting for the first stats (each node sends them every 2 s by default).';
    } else if (!client && !credential && errorEl.hidden) {
      notice = 'Enter the publish key or a token to see the nodes.';
    }
  }
  setText(noticeEl, notice);
}

setInterval(render, 1000);

const saved = store.get();
showState('idle');
if (saved) connect(saved);
render();
