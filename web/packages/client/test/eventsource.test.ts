// The EventSource fallback: one EventSource per topic (it drops Herald's
// topic: field), the token in access_token, the cursor in lastEventID, the
// client's own reconnect loop.
import { describe, expect, it, vi } from 'vitest';
import { HeraldClient } from '../src/index.js';
import { FakeBus, FakeLocks } from './fakes.js';

class FakeES {
  static all: FakeES[] = [];
  url: URL;
  closed = false;
  onopen: (() => void) | null = null;
  onerror: (() => void) | null = null;
  private listeners = new Map<string, Set<(ev: unknown) => void>>();
  constructor(
    url: string,
    readonly init?: { withCredentials?: boolean },
  ) {
    this.url = new URL(url);
    FakeES.all.push(this);
  }
  addEventListener(type: string, fn: (ev: unknown) => void) {
    let s = this.listeners.get(type);
    if (!s) this.listeners.set(type, (s = new Set()));
    s.add(fn);
  }
  emit(type: string, data: string, lastEventId: string) {
    for (const fn of this.listeners.get(type) ?? []) fn({ type, data, lastEventId });
  }
  close() {
    this.closed = true;
  }
}

describe('EventSource transport', () => {
  it('opens one EventSource per topic, tags events with it and resumes each', async () => {
    FakeES.all = [];
    let n = 0;
    const c = new HeraldClient({
      url: 'http://herald.test',
      topics: ['users/42', 'rooms/7'],
      transport: 'eventsource',
      EventSource: FakeES as unknown as typeof EventSource,
      getToken: () => 'tok' + ++n,
      share: false,
      backoff: { initialDelay: 1, maxDelay: 5 },
    });
    const got: string[] = [];
    const gaps: string[][] = [];
    c.on('users/42', 'note', (ev) => got.push(`${ev.topic}:${ev.type}:${ev.data}`));
    c.on('rooms/7', (ev) => got.push(`${ev.topic}:${ev.type}:${ev.data}`));
    c.onGap((t) => gaps.push(t));
    c.start();
    await vi.waitFor(() => expect(FakeES.all).toHaveLength(2));
    const [a, b] = FakeES.all as [FakeES, FakeES];
    expect(a.url.searchParams.getAll('topic')).toEqual(['users/42']);
    expect(b.url.searchParams.getAll('topic')).toEqual(['rooms/7']);
    expect(a.url.searchParams.get('access_token')).toBe('tok1');
    expect(a.url.searchParams.has('lastEventID')).toBe(false);
    a.onopen!();
    expect(c.state).toBe('connecting');
    b.onopen!();
    expect(c.state).toBe('open');
    a.emit('herald.connected', '{}', 'A0');
    b.emit('herald.connected', '{}', 'B0');
    a.emit('note', '1', 'A1');
    b.emit('message', '2', 'B1');
    b.emit('herald.gap', '{"topics":["rooms/7"]}', 'B2');
    expect(got).toEqual(['users/42:note:1', 'rooms/7:message:2']);
    expect(gaps).toEqual([['rooms/7']]);

    a.onerror!();
    expect(a.closed && b.closed).toBe(true);
    await vi.waitFor(() => expect(c.state).toBe('reconnecting'));
    await vi.waitFor(() => expect(FakeES.all).toHaveLength(4));
    const [a2, b2] = FakeES.all.slice(2) as [FakeES, FakeES];
    expect(a2.url.searchParams.get('lastEventID')).toBe('A1');
    expect(b2.url.searchParams.get('lastEventID')).toBe('B2');
    expect(a2.url.searchParams.get('access_token')).toBe('tok2');
    // the cursor a new leader tab would resume from covers both topics
    expect(JSON.parse(c.lastEventId)).toEqual({ 'users/42': 'A1', 'rooms/7': 'B2' });
    c.close();
    expect(a2.closed && b2.closed).toBe(true);
  });

  it('a single topic keeps a plain cursor', async () => {
    FakeES.all = [];
    const c = new HeraldClient({
      url: 'http://herald.test',
      topics: ['rooms/7'],
      transport: 'eventsource',
      EventSource: FakeES as unknown as typeof EventSource,
      share: false,
      lastEventId: 'C5',
    });
    c.start();
    await vi.waitFor(() => expect(FakeES.all).toHaveLength(1));
    expect(FakeES.all[0]!.url.searchParams.get('lastEventID')).toBe('C5');
    FakeES.all[0]!.emit('message', 'x', 'C6');
    expect(c.lastEventId).toBe('C6');
    c.close();
  });

  it('a tab taking over a shared EventSource stream resumes every topic from its own cursor', async () => {
    FakeES.all = [];
    const bus = new FakeBus();
    const locks = new FakeLocks();
    const got: string[][] = [[], []];
    const clients = [0, 1].map((i) => {
      const c = new HeraldClient({
        url: 'http://herald.test',
        topics: ['a', 'b'],
        transport: 'eventsource',
        EventSource: FakeES as unknown as typeof EventSource,
        BroadcastChannel: bus.Channel,
        locks,
        backoff: { initialDelay: 1, maxDelay: 5 },
      });
      c.on('*', (ev) => got[i]!.push(`${ev.topic}:${ev.data}`));
      return c.start();
    });
    await vi.waitFor(() => expect(FakeES.all).toHaveLength(2));
    const [a, b] = FakeES.all as [FakeES, FakeES];
    a.onopen!();
    b.onopen!();
    a.emit('message', '1', 'A1');
    b.emit('message', '2', 'B1');
    a.emit('message', '3', 'A2');
    await vi.waitFor(() => expect(got[1]).toEqual(['a:1', 'b:2', 'a:3']));
    expect(clients[0]!.isLeader).toBe(true);
    clients[0]!.close();
    await vi.waitFor(() => expect(FakeES.all).toHaveLength(4));
    const [a2, b2] = FakeES.all.slice(2) as [FakeES, FakeES];
    expect(a2.url.searchParams.get('lastEventID')).toBe('A2');
    expect(b2.url.searchParams.get('lastEventID')).toBe('B1');
    clients[1]!.close();
  });
});
