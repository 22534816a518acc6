// The admin page's data: parsing the `stats` events that each Herald node
// appends to herald/stats, keeping a short series per node for the charts,
// telling live nodes from stale ones, and the totals across nodes. Pure (no
// DOM, no clock: callers pass `now`), so that it is tested alone.

/** The number of points each chart keeps. */
export const SERIES_LENGTH = 60;
/** A node that sent nothing for this many of its intervals is stale. */
export const STALE_INTERVALS = 3;
/** A stale node is forgotten after this long without news (ms). */
export const FORGET_AFTER_MS = 10 * 60 * 1000;
/** The interval assumed when an event does not give one (ms). */
export const DEFAULT_INTERVAL_MS = 2000;

export interface TopTopic {
  topic: string;
  streams: number;
}

export interface Rates {
  publishes: number;
  events: number;
  deliveries: number;
  drops: number;
}

/** One node's `stats` event, parsed. */
export interface Stats {
  node: string;
  /** The node's clock when it took the figures (ms since the epoch; NaN when it gave none). */
  at: number;
  intervalMs: number;
  uptimeS: number;
  streams: number;
  topics: number;
  publishesTotal: number;
  eventsTotal: number;
  deliveriesTotal: number;
  dropsTotal: number;
  gapsTotal: number;
  /** Per second, over the node's last interval. */
  rates: Rates;
  topTopics: TopTopic[];
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// count reads a non-negative finite number (0 when it is missing or not one).
function count(o: Obj, k: string): number {
  const v = o[k];
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0;
}

/**
 * parseStats reads a `stats` event's data (the parsed JSON, or its text). It
 * returns null when the data is not a stats object with a node id; a field
 * missing or not a non-negative number reads as 0, so that a node of another
 * version still shows what it sends.
 */
export function parseStats(data: unknown): Stats | null {
  if (typeof data === 'string') {
    try {
      data = JSON.parse(data);
    } catch {
      return null;
    }
  }
  if (!isObj(data)) return null;
  const node = data['node'];
  if (typeof node !== 'string' || node === '' || node.length > 256) return null;
  const rates = isObj(data['rates']) ? data['rates'] : {};
  const top: TopTopic[] = [];
  const rawTop = data['top_topics'];
  if (Array.isArray(rawTop)) {
    for (const t of rawTop) {
      if (isObj(t) && typeof t['topic'] === 'string' && t['topic'] !== '') {
        top.push({ topic: t['topic'], streams: count(t, 'streams') });
      }
      if (top.length === 10) break;
    }
  }
  top.sort((a, b) => b.streams - a.streams || (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
  const interval = count(data, 'interval_ms');
  return {
    node,
    at: typeof data['at'] === 'string' ? Date.parse(data['at']) : NaN,
    intervalMs: interval > 0 ? interval : DEFAULT_INTERVAL_MS,
    uptimeS: count(data, 'uptime_s'),
    streams: count(data, 'streams'),
    topics: count(data, 'topics'),
    publishesTotal: count(data, 'publishes_total'),
    eventsTotal: count(data, 'events_total'),
    deliveriesTotal: count(data, 'deliveries_total'),
    dropsTotal: count(data, 'drops_total'),
    gapsTotal: count(data, 'gaps_total'),
    rates: {
      publishes: count(rates, 'publishes'),
      events: count(rates, 'events'),
      deliveries: count(rates, 'deliveries'),
      drops: count(rates, 'drops'),
    },
    topTopics: top,
  };
}

/** What the page keeps of one node. */
export interface NodeState {
  node: string;
  last: Stats;
  /** The page's clock when the last event arrived (ms). */
  receivedAt: number;
  /** The last SERIES_LENGTH values, oldest first. */
  streams: number[];
  publishRate: number[];
  deliveryRate: number[];
}

/** Every node heard from, by id. */
export type StatsState = Map<string, NodeState>;

export function createState(): StatsState {
  return new Map();
}

function push(series: number[], v: number): number[] {
  const next = series.length >= SERIES_LENGTH ? series.slice(series.length - SERIES_LENGTH + 1) : series.slice();
  next.push(v);
  return next;
}

/**
 * applyStats records one event received at `now`. An event no newer than the
 * node's last (a replay after a reconnect) is ignored. A node restarted under
 * the same id goes on with its series. It returns whether the event counted.
 */
export function applyStats(state: StatsState, s: Stats, now: number): boolean {
  const prev = state.get(s.node);
  if (prev && !Number.isNaN(s.at) && !Number.isNaN(prev.last.at) && s.at <= prev.last.at) return false;
  state.set(s.node, {
    node: s.node,
    last: s,
    receivedAt: now,
    streams: push(prev?.streams ?? [], s.streams),
    publishRate: push(prev?.publishRate ?? [], s.rates.publishes),
    deliveryRate: push(prev?.deliveryRate ?? [], s.rates.deliveries),
  });
  return true;
}

/** isStale: the node sent nothing for STALE_INTERVALS of its intervals. */
export function isStale(n: NodeState, now: number): boolean {
  return now - n.receivedAt > STALE_INTERVALS * n.last.intervalMs;
}

/** forgetOld drops the nodes silent for FORGET_AFTER_MS; it returns whether any went. */
export function forgetOld(state: StatsState, now: number): boolean {
  let any = false;
  for (const [id, n] of state) {
    if (now - n.receivedAt > FORGET_AFTER_MS) {
      state.delete(id);
      any = true;
    }
  }
  return any;
}

/** The nodes, sorted by id. */
export function nodes(state: StatsState): NodeState[] {
  return [...state.values()].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
}

export interface Totals {
  /** Nodes heard from lately (not stale). */
  live: number;
  stale: number;
  streams: number;
  /** The sum of each node's topic count (a topic with streams on two nodes counts twice). */
  topics: number;
  publishRate: number;
  deliveryRate: number;
  dropRate: number;
  dropsTotal: number;
  gapsTotal: number;
}

/**
 * totals sums the live nodes' figures (a stale node's last figures are
 * stale too, so they are left out); stale counts the others.
 */
export function totals(state: StatsState, now: number): Totals {
  const t: Totals = { live: 0, stale: 0, streams: 0, topics: 0, publishRate: 0, deliveryRate: 0, dropRate: 0, dropsTotal: 0, gapsTotal: 0 };
  for (const n of state.values()) {
    if (isStale(n, now)) {
      t.stale++;
      continue;
    }
    const s = n.last;
    t.live++;
    t.streams += s.streams;
    t.topics += s.topics;
    t.publishRate += s.rates.publishes;
    t.deliveryRate += s.rates.deliveries;
    t.dropRate += s.rates.drops;
    t.dropsTotal += s.dropsTotal;
    t.gapsTotal += s.gapsTotal;
  }
  return t;
}

// Formatting, kept here to be tested with the rest.

const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const rateFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 0 });

/** formatCount: 12345 → "12,345". */
export function formatCount(n: number): string {
  return intFmt.format(n);
}

/** formatRate: a per-second rate, one decimal below 100 ("2.5/s", "1,234/s"). */
export function formatRate(n: number): string {
  return (n >= 100 ? intFmt.format(n) : rateFmt.format(n)) + '/s';
}

function pad(n: number): string {
  return n < 10 ? '0' + n : String(n);
}

/** formatDuration: seconds as "45s", "12m 05s", "3h 04m", "2d 03h". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${pad(s % 60)}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${pad(m % 60)}m`;
  return `${Math.floor(h / 24)}d ${pad(h % 24)}h`;
}

/** The geometry of a sparkline: an SVG polyline's points and a filled area's path. */
export interface Sparkline {
  /** The polyline's `points` ("" when there is nothing to draw). */
  points: string;
  /** A closed path under the line, for a light fill. */
  area: string;
  min: number;
  max: number;
}

function num(n: number): string {
  return String(Math.round(n * 10) / 10);
}

/**
 * sparkline lays out values (oldest first) in a width × height box, the
 * newest at the right edge and each point one step of width / (SERIES_LENGTH - 1)
 * apart, so that a chart fills from the right as points arrive. The scale
 * runs from 0 to the largest value (a flat line at the bottom when all are 0).
 */
export function sparkline(values: readonly number[], width: number, height: number, pad = 1): Sparkline {
  const vs = values.slice(-SERIES_LENGTH);
  if (vs.length === 0) return { points: '', area: '', min: 0, max: 0 };
  let min = Infinity;
  let max = -Infinity;
  for (const v of vs) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const step = width / (SERIES_LENGTH - 1);
  const top = pad;
  const bottom = height - pad;
  const y = (v: number) => (max > 0 ? bottom - (v / max) * (bottom - top) : bottom);
  const x0 = width - (vs.length - 1) * step;
  const pts = vs.map((v, i) => `${num(x0 + i * step)},${num(y(v))}`);
  if (vs.length === 1) pts.unshift(`${num(Math.max(0, x0 - step))},${num(y(vs[0]!))}`);
  const first = pts[0]!.split(',')[0];
  const area = `M${first},${num(bottom)}L${pts.join('L')}L${num(width)},${num(bottom)}Z`;
  return { points: pts.join(' '), area, min, max };
}

/** describeSeries: a chart's text alternative, e.g. "streams, last 2 minutes: now 12, low 3, high 15". */
export function describeSeries(label: string, values: readonly number[], intervalMs: number, fmt: (n: number) => string): string {
  if (values.length === 0) return `${label}: no data yet`;
  if (values.length === 1) return `${label}: now ${fmt(values[0]!)}`;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const span = formatDuration(((values.length - 1) * intervalMs) / 1000);
  return `${label} over the last ${span}: now ${fmt(values[values.length - 1]!)}, low ${fmt(lo)}, high ${fmt(hi)}`;
}
