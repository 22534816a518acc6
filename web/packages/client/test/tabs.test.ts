// Leader election among tabs, with a fake BroadcastChannel, in both modes
// (navigator.locks, heartbeats), and the client's sharing on top of it.
import { describe, expect, it, vi } from 'vitest';
import { Election } from '../src/tabs.js';
import { HeraldClient } from '../src/index.js';
import { FakeBus, FakeHerald, FakeLocks } from './fakes.js';

function tabs(n: number, bus: FakeBus, locks: FakeLocks | null, opts = {}) {
  const leaders: string[] = [];
  const made = Array.from({ length: n }, (_, i) => {
    const e: Election = new Election({
      channel: new bus.Channel('herald:x'),
      name: 'herald:x',
      locks,
      id: 'tab' + i,
      heartbeatMs: 20,
      timeoutMs: 60,
      claimMs: 15,
      ...opts,
      onLeader: () => leaders.push(e.id),
      onFollower: () => leaders.push('-' + e.id),
      onMessage: () => {},
    });
    return e;
  });
  return { made, leaders, current: () => made.filter((e) => e.leader).map((e) => e.id) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Election with heartbeats', () => {
  it('elects exactly one leader among tabs that start together', async () => {
    const bus = new FakeBus();
    const t = tabs(5, bus, null);
    for (const e of t.made) e.start();
    await vi.waitFor(() => expect(t.current()).toHaveLength(1));
    await sleep(150); // and it stays one
    expect(t.current()).toEqual(['tab0']);
    expect(t.leaders).toEqual(['tab0']);
    for (const e of t.made) e.close();
  });

  it('a tab that joins follows the leader', async () => {
    const bus = new FakeBus();
    const t = tabs(3, bus, null);
    t.made[2]!.start();
    await vi.waitFor(() => expect(t.current()).toEqual(['tab2']));
    t.made[0]!.start();
    t.made[1]!.start();
    await sleep(150);
    expect(t.current()).toEqual(['tab2']); // a smaller id does not take over a live leader
    for (const e of t.made) e.close();
  });

  it('hands over when the leader closes (bye)', async () => {
    const bus = new FakeBus();
    const t = tabs(3, bus, null);
    for (const e of t.made) e.start();
    await vi.waitFor(() => expect(t.current()).toEqual(['tab0']));
    t.made[0]!.close();
    await vi.waitFor(() => expect(t.current()).toEqual(['tab1']));
    await sleep(100);
    expect(t.current()).toEqual(['tab1']);
    for (const e of t.made) e.close();
  });

  it('hands over when the leader vanishes without a word (crash)', async () => {
    const bus = new FakeBus();
    const t = tabs(3, bus, null);
    for (const e of t.made) e.start();
    await vi.waitFor(() => expect(t.current()).toEqual(['tab0']));
    // a crash: no bye, no more heartbeats
    const dead = t.made[0]!;
    (dead as unknown as { send: () => void }).send = () => {};
    (dead as unknown as { closed: boolean }).closed = true;
    dead.leader = false;
    await vi.waitFor(() => expect(t.current()).toEqual(['tab1']), { timeout: 1000 });
    for (const e of t.made) e.close();
  });

  it('resolves two leaders: the larger id steps down', async () => {
    const bus = new FakeBus();
    const t = tabs(2, bus, null);
    // both believe they lead (their timers ran apart)
    for (const e of t.made) {
      e.start();
      (e as unknown as { become: () => void }).become();
    }
    await vi.waitFor(() => expect(t.current()).toEqual(['tab0']));
    expect(t.leaders).toContain('-tab1');
    for (const e of t.made) e.close();
  });
});

describe('Election with navigator.locks', () => {
  it('the lock holder leads; the next waiter takes over when it closes', async () => {
    const bus = new FakeBus();
    const locks = new FakeLocks();
    const t = tabs(3, bus, locks);
    for (const e of t.made) e.start();
    await vi.waitFor(() => expect(t.current()).toEqual(['tab0']));
    await sleep(50);
    expect(t.leaders).toEqual(['tab0']);
    t.made[0]!.close();
    await vi.waitFor(() => expect(t.current()).toEqual(['tab1']));
    t.made[2]!.close(); // a follower leaving changes nothing
    t.made[1]!.close();
    await sleep(20);
    expect(t.leaders).toEqual(['tab0', 'tab1']);
  });
});

const open = (id: string) => `retry: 20\n: herald\nid: ${id}\nevent: herald.connected\ndata: {}\n\n`;
const ev = (n: number) => `id: C${n}\ntopic: rooms/7\ndata: ${n}\n\n`;

for (const mode of ['locks', 'heartbeats'] as const) {
  describe(`shared stream (${mode})`, () => {
    it('tabs hold one stream, all receive, and a hand-over loses nothing', async () => {
      const h = new FakeHerald();
      const bus = new FakeBus();
      const locks = mode === 'locks' ? new FakeLocks() : null;
      const got: number[][] = [];
      const clients = Array.from({ length: 4 }, (_, i) => {
        got.push([]);
        const c = new HeraldClient({
          url: 'http://herald.test',
          topics: ['rooms/7'],
          fetch: h.fetch,
          BroadcastChannel: bus.Channel,
          locks,
          backoff: { initialDelay: 1, maxDelay: 5 },
          election: { heartbeatMs: 20, timeoutMs: 60, claimMs: 15 },
        });
        c.on('rooms/7', (e) => got[i]!.push(e.data as number));
        return c;
      });
      for (const c of clients) c.start();
      await vi.waitFor(() => expect(h.requests).toHaveLength(1));
      await sleep(100);
      expect(h.requests).toHaveLength(1);
      const leader = clients.findIndex((c) => c.isLeader);
      expect(leader).toBeGreaterThanOrEqual(0);
      h.last.send(open('C0'));
      await vi.waitFor(() => expect(clients.map((c) => c.state)).toEqual(['open', 'open', 'open', 'open']));
      h.last.send(ev(1) + ev(2) + ev(3));
      await vi.waitFor(() => expect(got.every((g) => g.length === 3)).toBe(true));

      // The leader receives 4 and 5 from the network and closes before
      // relaying 5; the server replays from the cursor the followers hold.
      const first = h.last;
      clients[leader]!.close();
      first.send(ev(4)); // arrives after close: never relayed
      await vi.waitFor(() => expect(h.requests).toHaveLength(2), { timeout: 2000 });
      expect(h.last.headers['Last-Event-ID']).toBe('C3');
      h.last.send(open('C3') + ev(4) + ev(5));
      const rest = got.filter((_, i) => i !== leader);
      await vi.waitFor(() => expect(rest.every((g) => g.length === 5)).toBe(true));
      for (const g of rest) expect(g).toEqual([1, 2, 3, 4, 5]);
      expect(clients.filter((c) => c.isLeader)).toHaveLength(1);
      for (const c of clients) c.close();
    });
  });
}

describe('setTopics in a shared group', () => {
  it('the tab leaves its group (another takes the stream over) and joins the new one', async () => {
    const h = new FakeHerald();
    const bus = new FakeBus();
    const locks = new FakeLocks();
    const clients = [0, 1, 2].map(() =>
      new HeraldClient({
        url: 'http://herald.test',
        topics: ['rooms/7'],
        fetch: h.fetch,
        BroadcastChannel: bus.Channel,
        locks,
        backoff: { initialDelay: 1, maxDelay: 5 },
      }).start(),
    );
    await vi.waitFor(() => expect(h.requests).toHaveLength(1));
    h.last.send(open('C0') + ev(1));
    await vi.waitFor(() => expect(clients.every((c) => c.lastEventId === 'C1')).toBe(true));
    const leader = clients.find((c) => c.isLeader)!;
    leader.setTopics(['rooms/8']);
    await vi.waitFor(() => expect(h.requests).toHaveLength(3));
    const byTopic = Object.fromEntries(h.requests.slice(1).map((r) => [r.url.searchParams.get('topic'), r]));
    expect(byTopic['rooms/8']!.headers['Last-Event-ID']).toBe('C1');
    expect(byTopic['rooms/7']!.headers['Last-Event-ID']).toBe('C1');
    expect(clients.filter((c) => c.isLeader)).toHaveLength(2);
    for (const c of clients) c.close();
  });
});

describe('share.key', () => {
  it('groups tabs by the key and their topics: tabs with other topics keep their own stream', async () => {
    const h = new FakeHerald();
    const bus = new FakeBus();
    const locks = new FakeLocks();
    const make = (topics: string[]) =>
      new HeraldClient({ url: 'http://herald.test', topics, fetch: h.fetch, BroadcastChannel: bus.Channel, locks, share: { key: 'alice' }, backoff: { initialDelay: 1, maxDelay: 5 } }).start();
    const clients = [make(['rooms/7', 'users/alice']), make(['users/alice', 'rooms/7']), make(['rooms/8', 'users/alice'])];
    const got: string[][] = clients.map(() => []);
    clients.forEach((c, i) => c.on('*', (e) => got[i]!.push(e.topic)));
    await vi.waitFor(() => expect(h.requests).toHaveLength(2));
    await sleep(50);
    expect(h.requests).toHaveLength(2); // the first two share one stream
    expect(h.requests.map((r) => r.url.searchParams.getAll('topic').sort().join(',')).sort()).toEqual(['rooms/7,users/alice', 'rooms/8,users/alice']);
    const on8 = h.requests.find((r) => r.url.searchParams.getAll('topic').includes('rooms/8'))!;
    on8.send(open('C0') + `id: C1\ntopic: rooms/8\ndata: x\n\n`);
    await vi.waitFor(() => expect(got[2]).toEqual(['rooms/8']));
    expect(got[0]).toEqual([]);
    for (const c of clients) c.close();
  });
});
