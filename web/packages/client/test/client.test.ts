// HeraldClient over a scripted fetch: handlers, states, cursor, backoff floor,
// tokens, refusals, gaps.
import { describe, expect, it, vi } from 'vitest';
import { HeraldClient, HeraldError, type ConnectionState } from '../src/index.js';
import { FakeHerald } from './fakes.js';

const open = (id: string) => `retry: 20\n: herald\nid: ${id}\nevent: herald.connected\ndata: {}\n\n`;
const event = (id: string, topic: string, type: string, data: string) =>
  `id: ${id}\n${type ? `event: ${type}\n` : ''}topic: ${topic}\ndata: ${data}\n\n`;

type Events = { note: { text: string }; message: string };

function client(h: FakeHerald, extra: Partial<ConstructorParameters<typeof HeraldClient>[0]> = {}) {
  const states: ConnectionState[] = [];
  const c = new HeraldClient<Events>({
    url: 'http://herald.test',
    topics: ['users/42', 'rooms/7'],
    fetch: h.fetch,
    share: false,
    backoff: { initialDelay: 1, maxDelay: 5 },
    ...extra,
  });
  c.onState((s) => states.push(s));
  return { c, states };
}

describe('HeraldClient', () => {
  it('streams with the token and topics, and dispatches by topic and type', async () => {
    const h = new FakeHerald();
    const { c, states } = client(h, { getToken: () => 'tok' });
    const notes: unknown[] = [];
    const all: string[] = [];
    const any: string[] = [];
    c.on('users/42', 'note', (ev) => notes.push(ev.data.text));
    c.on('rooms/7', (ev) => all.push(`${ev.type}:${ev.raw}`));
    c.on('*', (ev) => any.push(ev.topic));
    c.start();
    await vi.waitFor(() => expect(h.requests).toHaveLength(1));
    expect(h.last.headers['Authorization']).toBe('Bearer tok');
    expect(h.last.headers['Last-Event-ID']).toBeUndefined();
    expect(h.last.url.pathname).toBe('/v1/events');
    expect(h.last.url.searchParams.getAll('topic')).toEqual(['users/42', 'rooms/7']);
    h.last.send(open('C0'));
    h.last.send(event('C1', 'users/42', 'note', '{"text":"hi"}'));
    h.last.send(event('C2', 'rooms/7', '', 'plain text'));
    h.last.send(event('C3', 'rooms/7', 'note', '{"text":"room"}'));
    await vi.waitFor(() => expect(c.lastEventId).toBe('C3'));
    expect(notes).toEqual(['hi']);
    expect(all).toEqual(['message:plain text', 'note:{"text":"room"}']);
    expect(any).toEqual(['users/42', 'rooms/7', 'rooms/7']);
    expect(states).toEqual(['connecting', 'open']);
    c.close();
    expect(states).toEqual(['connecting', 'open', 'closed']);
    expect(h.last.aborted).toBe(true);
  });

  it('reconnects after a drop with the cursor, a fresh token and no sooner than retry:', async () => {
    const h = new FakeHerald();
    let n = 0;
    const reasons: string[] = [];
    const { c, states } = client(h, {
      getToken: async (reason) => {
        reasons.push(reason);
        return 'tok' + ++n;
      },
    });
    const got: string[] = [];
    c.on('users/42', (ev) => got.push(ev.id));
    c.start();
    await vi.waitFor(() => expect(h.requests).toHaveLength(1));
    h.last.send(open('C0'));
    h.last.send(event('C1', 'users/42', 'note', '{}'));
    await vi.waitFor(() => expect(got).toEqual(['C1']));
    const dropped = Date.now();
    h.last.end();
    await vi.waitFor(() => expect(h.requests).toHaveLength(2));
    expect(Date.now() - dropped).toBeGreaterThanOrEqual(15); // retry: 20, give or take a timer's slack
    expect(h.last.headers['Last-Event-ID']).toBe('C1');
    expect(h.last.headers['Authorization']).toBe('Bearer tok2');
    expect(reasons).toEqual(['connect', 'connect']);
    h.last.send(open('C1'));
    await vi.waitFor(() => expect(states).toEqual(['connecting', 'open', 'reconnecting', 'open']));
    c.close();
  });

  it('moves the cursor on an id-only block and on the opening event', async () => {
    const h = new FakeHerald();
    const { c } = client(h);
    c.start();
    await vi.waitFor(() => expect(h.requests).toHaveLength(1));
    h.last.send(open('C0'));
    await vi.waitFor(() => expect(c.lastEventId).toBe('C0'));
    h.last.send('id: C9\n\n');
    await vi.waitFor(() => expect(c.lastEventId).toBe('C9'));
    h.last.end();
    await vi.waitFor(() => expect(h.requests).toHaveLength(2));
    expect(h.last.headers['Last-Event-ID']).toBe('C9');
    c.close();
  });

  it('asks for a fresh token after 401 token_expired and reconnects', async () => {
    const h = new FakeHerald();
    h.plan.push({ status: 401, body: { error: { code: 'token_expired', message: 'token expired' } } });
    const reasons: string[] = [];
    const { c, states } = client(h, {
      getToken: (reason) => {
        reasons.push(reason);
        return reason === 'expired' ? 'fresh' : 'stale';
      },
    });
    c.start();
    await vi.waitFor(() => expect(h.requests).toHaveLength(2));
    expect(reasons).toEqual(['connect', 'expired']);
    expect(h.requests[0]!.headers['Authorization']).toBe('Bearer stale');
    expect(h.last.headers['Authorization']).toBe('Bearer fresh');
    h.last.send(open('C0'));
    await vi.waitFor(() => expect(states.at(-1)).toBe('open'));
    c.close();
  });

  it('closes on a refusal a retry cannot fix (403), with the error', async () => {
    const h = new FakeHerald();
    h.plan.push({ status: 403, body: { error: { code: 'forbidden_topic', message: 'not granted: rooms/7' } } });
    const { c, states } = client(h);
    let err: Error | undefined;
    c.onState((s, e) => s === 'closed' && (err = e));
    c.start();
    await vi.waitFor(() => expect(states).toEqual(['connecting', 'closed']));
    expect(err).toBeInstanceOf(HeraldError);
    expect((err as HeraldError).code).toBe('forbidden_topic');
    expect((err as HeraldError).status).toBe(403);
    await new Promise((r) => setTimeout(r, 30));
    expect(h.requests).toHaveLength(1);
  });

  it('retries 503 and 429 with backoff, honouring Retry-After', async () => {
    const h = new FakeHerald();
    h.plan.push({ status: 503, body: { error: { code: 'shutting_down', message: 'x' } } });
    const { c, states } = client(h);
    c.start();
    await vi.waitFor(() => expect(h.requests).toHaveLength(2));
    h.last.send(open('C0'));
    await vi.waitFor(() => expect(states).toEqual(['connecting', 'reconnecting', 'open']));
    c.close();
  });

  it('calls onGap with the topics of herald.gap, not the handlers', async () => {
    const h = new FakeHerald();
    const { c } = client(h);
    const gaps: string[][] = [];
    const seen: string[] = [];
    c.onGap((t) => gaps.push(t));
    c.on('*', (ev) => seen.push(ev.type));
    c.start();
    await vi.waitFor(() => expect(h.requests).toHaveLength(1));
    h.last.send(open('C0') + 'id: C1\nevent: herald.gap\ndata: {"topics":["rooms/7"]}\n\n' + event('C2', 'rooms/7', 'note', '{}'));
    await vi.waitFor(() => expect(seen).toEqual(['note']));
    expect(gaps).toEqual([['rooms/7']]);
    c.close();
  });

  it('keeps dispatching when a handler throws', async () => {
    const h = new FakeHerald();
    const { c } = client(h);
    const seen: string[] = [];
    const thrown: unknown[] = [];
    const orig = globalThis.setTimeout;
    // the client rethrows handler errors asynchronously: catch them here
    const spy = vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: () => void, ms?: number) =>
      orig(() => {
        try {
          fn();
        } catch (e) {
          thrown.push(e);
        }
      }, ms)) as typeof setTimeout);
    c.on('rooms/7', () => {
      throw new Error('boom');
    });
    c.on('rooms/7', (ev) => seen.push(ev.id));
    c.start();
    await vi.waitFor(() => expect(h.requests).toHaveLength(1));
    h.last.send(open('C0') + event('C1', 'rooms/7', '', '1') + event('C2', 'rooms/7', '', '2'));
    await vi.waitFor(() => expect(seen).toEqual(['C1', 'C2']));
    await vi.waitFor(() => expect(thrown).toHaveLength(2));
    spy.mockRestore();
    c.close();
  });

  it('types handlers by event type (checked by npm run typecheck)', () => {
    const h = new FakeHerald();
    const { c } = client(h);
    c.on('users/42', 'note', (ev) => {
      const text: string = ev.data.text;
      void text;
    });
    // @ts-expect-error: 'nope' is not an event type of Events
    c.on('users/42', 'nope', () => {});
    // @ts-expect-error: a note's payload has no 'title'
    c.on('users/42', 'note', (ev) => ev.data.title);
  });

  it('reconnects a stream that goes silent (idle watchdog); heartbeats keep it', async () => {
    const h = new FakeHerald();
    const { c, states } = client(h, { idleTimeout: 80 });
    let err: Error | undefined;
    c.onState((s, e) => s === 'reconnecting' && (err = e));
    c.start();
    await vi.waitFor(() => expect(h.requests).toHaveLength(1));
    h.last.send(open('C0'));
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 40));
      h.last.send(': heartbeat\n');
    }
    expect(h.requests).toHaveLength(1); // 200 ms, kept alive
    await vi.waitFor(() => expect(h.requests).toHaveLength(2), { timeout: 2000 });
    expect(h.requests[0]!.aborted).toBe(true);
    expect(h.last.headers['Last-Event-ID']).toBe('C0');
    expect(err?.message).toMatch(/no data from the stream for 80 ms/);
    expect(states.slice(0, 3)).toEqual(['connecting', 'open', 'reconnecting']);
    c.close();
  });

  it("reconnects at once when the browser comes back online, not at the backoff's end", async () => {
    const h = new FakeHerald();
    h.plan.push({ status: 503, body: { error: { code: 'engine_unavailable', message: 'x' } }, headers: { 'Retry-After': '60' } });
    // A browser's window is an EventTarget; Node's globalThis is not.
    const target = new EventTarget();
    const g = globalThis as unknown as Record<string, unknown>;
    g.addEventListener = target.addEventListener.bind(target);
    g.removeEventListener = target.removeEventListener.bind(target);
    try {
      const { c } = client(h, { backoff: { initialDelay: 60000, maxDelay: 60000 } });
      c.start();
      await vi.waitFor(() => expect(c.state).toBe('reconnecting'));
      await new Promise((r) => setTimeout(r, 50));
      expect(h.requests).toHaveLength(1); // Retry-After: at least a minute
      target.dispatchEvent(new Event('online'));
      await vi.waitFor(() => expect(h.requests).toHaveLength(2));
      c.close();
    } finally {
      delete g.addEventListener;
      delete g.removeEventListener;
    }
  });

  it('suspends on pagehide into the back/forward cache and resumes from the cursor on pageshow', async () => {
    const h = new FakeHerald();
    const target = new EventTarget();
    const g = globalThis as unknown as Record<string, unknown>;
    g.addEventListener = target.addEventListener.bind(target);
    g.removeEventListener = target.removeEventListener.bind(target);
    const page = (type: string, persisted: boolean) => target.dispatchEvent(Object.assign(new Event(type), { persisted }));
    try {
      const { c, states } = client(h);
      const got: string[] = [];
      c.on('rooms/7', (ev) => got.push(ev.raw));
      c.start();
      await vi.waitFor(() => expect(h.requests).toHaveLength(1));
      h.last.send(open('C0') + event('C1', 'rooms/7', '', 'a'));
      await vi.waitFor(() => expect(got).toEqual(['a']));
      page('pagehide', true);
      expect(h.requests[0]!.aborted).toBe(true);
      expect(c.state).toBe('reconnecting');
      await new Promise((r) => setTimeout(r, 20));
      expect(h.requests).toHaveLength(1); // no stream while in the cache
      page('pageshow', true);
      await vi.waitFor(() => expect(h.requests).toHaveLength(2));
      expect(h.last.headers['Last-Event-ID']).toBe('C1');
      h.last.send(open('C1') + event('C2', 'rooms/7', '', 'b'));
      await vi.waitFor(() => expect(got).toEqual(['a', 'b']));
      expect(states).toEqual(['connecting', 'open', 'reconnecting', 'open']);
      page('pagehide', false); // unloaded: closed for good
      expect(c.state).toBe('closed');
      page('pageshow', true);
      await new Promise((r) => setTimeout(r, 20));
      expect(h.requests).toHaveLength(2);
    } finally {
      delete g.addEventListener;
      delete g.removeEventListener;
    }
  });

  it('setTopics reconnects with the new topics and the cursor', async () => {
    const h = new FakeHerald();
    const { c, states } = client(h);
    const got: string[] = [];
    c.on('*', (ev) => got.push(`${ev.topic}:${ev.raw}`));
    c.start();
    await vi.waitFor(() => expect(h.requests).toHaveLength(1));
    h.last.send(open('C0') + event('C1', 'rooms/7', '', 'x'));
    await vi.waitFor(() => expect(got).toEqual(['rooms/7:x']));
    c.setTopics(['rooms/7', 'users/42']); // the same set: nothing to do
    await new Promise((r) => setTimeout(r, 20));
    expect(h.requests).toHaveLength(1);
    c.setTopics(['rooms/7', 'rooms/8']);
    await vi.waitFor(() => expect(h.requests).toHaveLength(2));
    expect(h.requests[0]!.aborted).toBe(true);
    expect(h.last.url.searchParams.getAll('topic')).toEqual(['rooms/7', 'rooms/8']);
    expect(h.last.headers['Last-Event-ID']).toBe('C1');
    h.last.send(open('C1') + event('C2', 'rooms/8', '', 'y'));
    h.requests[0]!.send(event('C9', 'rooms/7', '', 'stale')); // the old stream is not heard
    await vi.waitFor(() => expect(got).toEqual(['rooms/7:x', 'rooms/8:y']));
    expect(states).toEqual(['connecting', 'open', 'reconnecting', 'open']);
    c.close();
  });
});
