import { describe, expect, it } from 'vitest';
import {
  applyStats,
  createState,
  describeSeries,
  FORGET_AFTER_MS,
  forgetOld,
  formatCount,
  formatDuration,
  formatRate,
  isStale,
  nodes,
  parseStats,
  SERIES_LENGTH,
  sparkline,
  totals,
  type Stats,
} from '../src/stats.js';
import { refusalMessage } from '../src/messages.js';

// The event of the contract, as a node sends it.
const sample = {
  node: 'n1',
  at: '2026-11-28T17:00:00.000Z',
  interval_ms: 2000,
  uptime_s: 12,
  streams: 40,
  topics: 7,
  publishes_total: 100,
  events_total: 120,
  deliveries_total: 900,
  drops_total: 3,
  gaps_total: 1,
  rates: { publishes: 2.5, events: 3, deliveries: 50, drops: 0.5 },
  top_topics: [
    { topic: 'rooms/2', streams: 5 },
    { topic: 'rooms/7', streams: 12 },
  ],
};

const T0 = Date.parse('2026-11-28T17:00:00.000Z');

function stats(over: Partial<typeof sample> & { node?: string }, atMs: number): Stats {
  const s = parseStats({ ...sample, ...over, at: new Date(atMs).toISOString() });
  if (!s) throw new Error('sample did not parse');
  return s;
}

describe('parseStats', () => {
  it('reads every field of the contract', () => {
    expect(parseStats(sample)).toEqual({
      node: 'n1',
      at: T0,
      intervalMs: 2000,
      uptimeS: 12,
      streams: 40,
      topics: 7,
      publishesTotal: 100,
      eventsTotal: 120,
      deliveriesTotal: 900,
      dropsTotal: 3,
      gapsTotal: 1,
      rates: { publishes: 2.5, events: 3, deliveries: 50, drops: 0.5 },
      topTopics: [
        { topic: 'rooms/7', streams: 12 },
        { topic: 'rooms/2', streams: 5 },
      ],
    });
  });

  it('reads the JSON text too', () => {
    expect(parseStats(JSON.stringify(sample))?.streams).toBe(40);
  });

  it('refuses what is not a node stats object', () => {
    for (const bad of [null, 42, 'not json', '[]', [], {}, { node: '' }, { node: 7 }, { streams: 3 }, { node: 'x'.repeat(257) }]) {
      expect(parseStats(bad)).toBeNull();
    }
  });

  it('reads a missing or bad number as 0 and a missing interval as the default', () => {
    const s = parseStats({ node: 'n2', streams: -1, topics: 'many', rates: { publishes: Infinity }, interval_ms: 0 });
    expect(s).not.toBeNull();
    expect(s!.streams).toBe(0);
    expect(s!.topics).toBe(0);
    expect(s!.rates.publishes).toBe(0);
    expect(s!.intervalMs).toBe(2000);
    expect(Number.isNaN(s!.at)).toBe(true);
    expect(s!.topTopics).toEqual([]);
  });

  it('keeps at most ten well-formed top topics', () => {
    const top = [{ topic: '', streams: 1 }, { streams: 3 }, 'rooms/x', ...Array.from({ length: 15 }, (_, i) => ({ topic: `t/${i}`, streams: i }))];
    const s = parseStats({ node: 'n', top_topics: top });
    expect(s!.topTopics).toHaveLength(10);
    expect(s!.topTopics[0]).toEqual({ topic: 't/9', streams: 9 });
  });
});

describe('series and staleness', () => {
  it('appends each node its values, oldest first, keeping the last SERIES_LENGTH', () => {
    const st = createState();
    for (let i = 0; i < SERIES_LENGTH + 5; i++) {
      expect(applyStats(st, stats({ streams: i, rates: { ...sample.rates, publishes: i * 2, deliveries: i * 3 } }, T0 + i * 2000), 1000 + i * 2000)).toBe(true);
    }
    const n = st.get('n1')!;
    expect(n.streams).toHaveLength(SERIES_LENGTH);
    expect(n.streams[0]).toBe(5);
    expect(n.streams[SERIES_LENGTH - 1]).toBe(SERIES_LENGTH + 4);
    expect(n.publishRate[SERIES_LENGTH - 1]).toBe((SERIES_LENGTH + 4) * 2);
    expect(n.deliveryRate[0]).toBe(15);
    expect(n.last.streams).toBe(SERIES_LENGTH + 4);
  });

  it('ignores an event no newer than the last (a replay after a reconnect)', () => {
    const st = createState();
    applyStats(st, stats({ streams: 1 }, T0), 0);
    applyStats(st, stats({ streams: 2 }, T0 + 2000), 2000);
    expect(applyStats(st, stats({ streams: 9 }, T0 + 2000), 2100)).toBe(false);
    expect(applyStats(st, stats({ streams: 9 }, T0), 2100)).toBe(false);
    expect(st.get('n1')!.streams).toEqual([1, 2]);
    expect(st.get('n1')!.receivedAt).toBe(2000);
  });

  it('keeps nodes apart and lists them by id', () => {
    const st = createState();
    applyStats(st, stats({ node: 'n2', streams: 2 }, T0), 0);
    applyStats(st, stats({ node: 'n1', streams: 1 }, T0), 0);
    applyStats(st, stats({ node: 'n10', streams: 10 }, T0), 0);
    expect(nodes(st).map((n) => [n.node, n.streams])).toEqual([
      ['n1', [1]],
      ['n10', [10]],
      ['n2', [2]],
    ]);
  });

  it('calls a node stale after three of its intervals without news, by the page clock', () => {
    const st = createState();
    applyStats(st, stats({ interval_ms: 1000 }, T0 + 999_999), 50_000); // the node's clock is far off: no matter
    const n = st.get('n1')!;
    expect(isStale(n, 50_000)).toBe(false);
    expect(isStale(n, 53_000)).toBe(false);
    expect(isStale(n, 53_001)).toBe(true);
    applyStats(st, stats({ interval_ms: 1000 }, T0 + 1_000_999), 53_500);
    expect(isStale(st.get('n1')!, 53_600)).toBe(false);
  });

  it('forgets a node silent for long', () => {
    const st = createState();
    applyStats(st, stats({ node: 'old' }, T0), 0);
    applyStats(st, stats({ node: 'new' }, T0), FORGET_AFTER_MS);
    expect(forgetOld(st, FORGET_AFTER_MS)).toBe(false);
    expect(forgetOld(st, FORGET_AFTER_MS + 1)).toBe(true);
    expect([...st.keys()]).toEqual(['new']);
  });

  it('sums the live nodes and counts the stale ones', () => {
    const st = createState();
    applyStats(st, stats({ node: 'a', streams: 10, topics: 3, drops_total: 1, gaps_total: 2, rates: { publishes: 1, events: 1, deliveries: 10, drops: 0.5 } }, T0), 10_000);
    applyStats(st, stats({ node: 'b', streams: 5, topics: 2, drops_total: 4, gaps_total: 0, rates: { publishes: 2, events: 2, deliveries: 5, drops: 0 } }, T0), 10_000);
    applyStats(st, stats({ node: 'c', streams: 99 }, T0), 0); // silent since
    expect(totals(st, 10_000)).toEqual({
      live: 2,
      stale: 1,
      streams: 15,
      topics: 5,
      publishRate: 3,
      deliveryRate: 15,
      dropRate: 0.5,
      dropsTotal: 5,
      gapsTotal: 2,
    });
    expect(totals(createState(), 0).live).toBe(0);
  });
});

describe('formatting', () => {
  it('formats counts, rates and durations', () => {
    expect(formatCount(0)).toBe('0');
    expect(formatCount(1234567)).toBe('1,234,567');
    expect(formatRate(0)).toBe('0/s');
    expect(formatRate(2.54)).toBe('2.5/s');
    expect(formatRate(12)).toBe('12/s');
    expect(formatRate(1234.6)).toBe('1,235/s');
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(45.9)).toBe('45s');
    expect(formatDuration(725)).toBe('12m 05s');
    expect(formatDuration(3 * 3600 + 4 * 60 + 59)).toBe('3h 04m');
    expect(formatDuration(2 * 86400 + 3 * 3600)).toBe('2d 03h');
  });

  it('describes a chart in words', () => {
    expect(describeSeries('Streams', [], 2000, formatCount)).toBe('Streams: no data yet');
    expect(describeSeries('Streams', [4], 2000, formatCount)).toBe('Streams: now 4');
    expect(describeSeries('Streams', [3, 15, 12], 2000, formatCount)).toBe('Streams over the last 4s: now 12, low 3, high 15');
    expect(describeSeries('Publishes per second', Array(60).fill(1.5), 2000, formatRate)).toBe(
      'Publishes per second over the last 1m 58s: now 1.5/s, low 1.5/s, high 1.5/s',
    );
  });
});

describe('sparkline', () => {
  it('draws nothing without values', () => {
    expect(sparkline([], 100, 20)).toEqual({ points: '', area: '', min: 0, max: 0 });
  });

  it('puts the newest value at the right edge and scales from 0 to the max', () => {
    const g = sparkline([0, 5, 10], 118, 20, 0);
    // step 118 / 59 = 2
    expect(g.points).toBe('114,20 116,10 118,0');
    expect(g.area).toBe('M114,20L114,20L116,10L118,0L118,20Z');
    expect(g.min).toBe(0);
    expect(g.max).toBe(10);
  });

  it('draws all zeros as a flat line at the bottom, and one value as a short segment', () => {
    expect(sparkline([0, 0], 118, 20, 1).points).toBe('116,19 118,19');
    expect(sparkline([7], 118, 20, 1).points).toBe('116,1 118,1');
  });

  it('spans the whole width with SERIES_LENGTH values and keeps only the last of more', () => {
    const vs = Array.from({ length: SERIES_LENGTH + 10 }, (_, i) => i);
    const pts = sparkline(vs, 120, 30).points.split(' ');
    expect(pts).toHaveLength(SERIES_LENGTH);
    expect(pts[0]!.startsWith('0,')).toBe(true);
    expect(pts[SERIES_LENGTH - 1]).toBe('120,1');
  });
});

describe('refusalMessage', () => {
  it('explains 401, 403 and the rest', () => {
    expect(refusalMessage({ status: 401, code: 'invalid_credentials', message: 'unknown key' })).toBe(
      'Herald did not accept this credential (401 invalid_credentials: unknown key). Enter the publish key, or a token that is valid now.',
    );
    expect(refusalMessage({ status: 403, code: 'forbidden_topic', message: '' })).toMatch(/^This credential does not grant herald\/stats \(403 forbidden_topic\)\. .*herald\/\*\.$/);
    expect(refusalMessage({ status: 404, code: '', message: 'not found' })).toBe('Herald refused the stream (404: not found).');
  });
});
