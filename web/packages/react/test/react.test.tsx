// @vitest-environment jsdom
// HeraldProvider and the hooks over a scripted Herald: one stream across
// re-renders, StrictMode and route changes, topics registered by hooks,
// handlers, the connection state, the live inbox and presence.
import { StrictMode, useState, type ReactNode } from 'react';
import { act, cleanup, render, screen, waitFor } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { HeraldProvider, useConnectionState, useHerald, useNotifications, usePresence, useTopic, type HeraldEvent, type HeraldProviderProps } from '../src/index.js';
import { FakeHerald } from './fakes.js';

afterEach(cleanup);

function Provider({ h, children, ...rest }: { h: FakeHerald; children?: ReactNode } & Partial<HeraldProviderProps>) {
  return (
    <HeraldProvider url="http://herald.test" user="alice" getToken={() => 'tok'} fetch={h.fetch} share={false} topicsDelay={5} backoff={{ initialDelay: 1, maxDelay: 5 }} {...rest}>
      {children}
    </HeraldProvider>
  );
}

function State() {
  return <p data-testid="state">{useConnectionState()}</p>;
}

const text = (id: string) => screen.getByTestId(id).textContent;

describe('HeraldProvider', () => {
  it('opens one stream across StrictMode, re-renders and route changes', async () => {
    const h = new FakeHerald();
    function RouteA() {
      useTopic('rooms/7', () => {});
      return <p>a</p>;
    }
    function RouteB() {
      useTopic('rooms/7', () => {});
      return <p>b</p>;
    }
    const app = (route: string, n: number) => (
      <StrictMode>
        <Provider h={h} topics={['rooms/lobby']}>
          <State />
          <p>{n}</p>
          {route === 'a' ? <RouteA /> : <RouteB />}
        </Provider>
      </StrictMode>
    );
    const r = render(app('a', 0));
    await waitFor(() => expect(text('state')).toBe('open'));
    expect(h.streams).toHaveLength(1);
    expect(h.streams[0]!.topics).toEqual(['rooms/7', 'rooms/lobby', 'users/alice']);
    expect(h.streams[0]!.headers['Authorization']).toBe('Bearer tok');
    for (let i = 1; i < 5; i++) r.rerender(app(i % 2 ? 'b' : 'a', i));
    await new Promise((res) => setTimeout(res, 30)); // past topicsDelay
    expect(h.streams).toHaveLength(1);
    expect(h.open).toHaveLength(1);
    expect(text('state')).toBe('open');
    r.unmount();
    await waitFor(() => expect(h.open).toHaveLength(0));
  });

  it('reconnects with the cursor when the topics change, and makes a new stream for another user', async () => {
    const h = new FakeHerald();
    const seen: string[] = [];
    function Log() {
      useTopic('*', (ev) => seen.push(`${ev.topic}:${ev.type}`));
      return null;
    }
    const app = (topics: string[], user = 'alice') => (
      <Provider h={h} topics={topics} user={user}>
        <State />
        <Log />
      </Provider>
    );
    const r = render(app(['rooms/1']));
    await waitFor(() => expect(text('state')).toBe('open'));
    const cursor = h.emit('rooms/1', 'chat', { text: 'one' });
    await waitFor(() => expect(seen).toEqual(['rooms/1:chat']));
    r.rerender(app(['rooms/1', 'rooms/2']));
    await waitFor(() => expect(h.streams).toHaveLength(2));
    expect(h.streams[0]!.aborted).toBe(true);
    expect(h.streams[1]!.topics).toEqual(['rooms/1', 'rooms/2', 'users/alice']);
    expect(h.streams[1]!.headers['Last-Event-ID']).toBe(cursor);
    await waitFor(() => expect(text('state')).toBe('open'));
    h.emit('rooms/2', 'chat', 'two');
    await waitFor(() => expect(seen).toEqual(['rooms/1:chat', 'rooms/2:chat']));
    r.rerender(app(['rooms/1', 'rooms/2'], 'bob'));
    await waitFor(() => expect(h.streams).toHaveLength(3));
    expect(h.streams[1]!.aborted).toBe(true);
    expect(h.streams[2]!.topics).toEqual(['rooms/1', 'rooms/2', 'users/bob']);
    expect(h.streams[2]!.headers['Last-Event-ID']).toBeUndefined();
  });

  it('adds and removes the topics of the hooks, in one reconnect per change', async () => {
    const h = new FakeHerald();
    const got: string[] = [];
    function Room({ id }: { id: string }) {
      useTopic(`rooms/${id}`, 'chat', (ev: HeraldEvent<{ text: string }>) => got.push(`${id}:${ev.data.text}`));
      return null;
    }
    function App({ rooms }: { rooms: string[] }) {
      return (
        <Provider h={h}>
          <State />
          {rooms.map((id) => (
            <Room key={id} id={id} />
          ))}
        </Provider>
      );
    }
    const r = render(<App rooms={[]} />);
    await waitFor(() => expect(text('state')).toBe('open'));
    expect(h.streams[0]!.topics).toEqual(['users/alice']);
    r.rerender(<App rooms={['1', '2']} />);
    await waitFor(() => expect(h.streams).toHaveLength(2));
    expect(h.streams[1]!.topics).toEqual(['rooms/1', 'rooms/2', 'users/alice']);
    await waitFor(() => expect(text('state')).toBe('open'));
    h.emit('rooms/1', 'chat', { text: 'a' });
    h.emit('rooms/2', 'other', { text: 'not chat' });
    h.emit('rooms/2', 'chat', { text: 'b' });
    await waitFor(() => expect(got).toEqual(['1:a', '2:b']));
    r.rerender(<App rooms={['2']} />);
    await waitFor(() => expect(h.streams).toHaveLength(3));
    expect(h.streams[2]!.topics).toEqual(['rooms/2', 'users/alice']);
    await new Promise((res) => setTimeout(res, 30));
    expect(h.streams).toHaveLength(3);
  });

  it('calls the latest handler without subscribing again', async () => {
    const h = new FakeHerald();
    const got: string[] = [];
    function Counter() {
      const [n, setN] = useState(0);
      useTopic('rooms/7', (ev) => {
        got.push(`${n}:${ev.raw}`);
        setN(n + 1);
      });
      return <p data-testid="n">{n}</p>;
    }
    render(
      <Provider h={h}>
        <State />
        <Counter />
      </Provider>,
    );
    await waitFor(() => expect(text('state')).toBe('open'));
    for (const x of ['a', 'b', 'c']) {
      h.emit('rooms/7', 'message', x);
      await waitFor(() => expect(got).toHaveLength(['a', 'b', 'c'].indexOf(x) + 1));
    }
    expect(got).toEqual(['0:a', '1:b', '2:c']);
    expect(text('n')).toBe('3');
    expect(h.streams).toHaveLength(1);
  });

  it('reports the connection state through a drop', async () => {
    const h = new FakeHerald();
    const states: string[] = [];
    function Track() {
      const s = useConnectionState();
      if (states[states.length - 1] !== s) states.push(s);
      return null;
    }
    render(
      <Provider h={h}>
        <Track />
        <State />
      </Provider>,
    );
    await waitFor(() => expect(text('state')).toBe('open'));
    h.streams[0]!.end();
    await waitFor(() => expect(h.streams).toHaveLength(2));
    await waitFor(() => expect(text('state')).toBe('open'));
    expect(states.filter((s) => s !== 'idle')).toEqual(['connecting', 'open', 'reconnecting', 'open']);
  });

  it('closes with the error when Herald refuses the stream', async () => {
    const h = new FakeHerald();
    h.refuse.set('GET /v1/events', { status: 403, code: 'forbidden' });
    render(
      <Provider h={h}>
        <State />
      </Provider>,
    );
    await waitFor(() => expect(text('state')).toBe('closed'));
  });

  it('request sends the token and retries once with a fresh one after token_expired', async () => {
    const h = new FakeHerald();
    let n = 0;
    const reasons: string[] = [];
    let hub!: ReturnType<typeof useHerald>;
    function Grab() {
      hub = useHerald();
      return null;
    }
    render(
      <Provider
        h={h}
        getToken={(reason) => {
          reasons.push(reason);
          return 'tok' + ++n;
        }}
      >
        <Grab />
      </Provider>,
    );
    await waitFor(() => expect(h.streams).toHaveLength(1));
    h.refuse.set('POST /v1/publish', { status: 401, code: 'token_expired', once: true });
    await expect(hub.request('/v1/publish', { body: { topic: 'rooms/7', data: 'x' } })).resolves.toMatchObject({ topic: 'rooms/7' });
    expect(h.calls.map((c) => c.headers['Authorization'])).toEqual(['Bearer tok2', 'Bearer tok3']);
    expect(reasons).toEqual(['connect', 'connect', 'expired']);
    h.refuse.set('POST /v1/publish', { status: 403, code: 'forbidden' });
    await expect(hub.request('/v1/publish', { body: { topic: 'x' } })).rejects.toMatchObject({ status: 403, code: 'forbidden' });
  });
  it('ready(topic) resolves once the open stream carries the topic', async () => {
    const h = new FakeHerald();
    let hub!: ReturnType<typeof useHerald>;
    function Grab() {
      hub = useHerald();
      return null;
    }
    function Room() {
      useTopic('rooms/new', () => {});
      return null;
    }
    const app = (room: boolean) => (
      <Provider h={h}>
        <State />
        <Grab />
        {room && <Room />}
      </Provider>
    );
    const r = render(app(false));
    await waitFor(() => expect(text('state')).toBe('open'));
    await hub.ready('users/alice'); // carried and open: at once
    let ready = false;
    const p = hub.ready('rooms/new').then(() => (ready = true));
    await new Promise((res) => setTimeout(res, 20));
    expect(ready).toBe(false);
    r.rerender(app(true));
    await act(() => p);
    expect(h.open).toHaveLength(1);
    expect(h.open[0]!.topics).toContain('rooms/new');
    expect(text('state')).toBe('open');
  });
});

function Inbox() {
  const { items, unreadCount, loading, error, markRead, markAllRead } = useNotifications();
  return (
    <div>
      <p data-testid="unread">{unreadCount}</p>
      <p data-testid="loading">{String(loading)}</p>
      <p data-testid="error">{error?.message ?? ''}</p>
      <ul data-testid="items">
        {items.map((n) => (
          <li key={n.id} data-read={String(!!n.read_at)}>
            {n.title}
            <button onClick={() => void markRead(n.id)}>read {n.title}</button>
          </li>
        ))}
      </ul>
      <button onClick={() => void markAllRead()}>all</button>
    </div>
  );
}

const titles = () => [...screen.getAllByTestId('items')[0]!.querySelectorAll('li')].map((li) => `${li.firstChild!.textContent}${li.dataset.read === 'true' ? '✓' : ''}`);

describe('useNotifications', () => {
  it('lists the inbox and keeps it and the unread count live', async () => {
    const h = new FakeHerald();
    h.notify('alice', 'one');
    h.notify('alice', 'two');
    h.inbox.get('alice')![0]!.read_at = new Date().toISOString();
    render(
      <StrictMode>
        <Provider h={h}>
          <Inbox />
          <Inbox />
        </Provider>
      </StrictMode>,
    );
    await waitFor(() => expect(screen.getAllByTestId('loading')[0]!.textContent).toBe('false'));
    // One fetch, after the stream opened, for both components.
    expect(h.calls.filter((c) => c.path.startsWith('/v1/notifications'))).toHaveLength(1);
    expect(h.calls[0]!.headers['Authorization']).toBe('Bearer tok');
    const unread = () => screen.getAllByTestId('unread').map((e) => e.textContent);
    expect(unread()).toEqual(['1', '1']);
    expect(titles().slice(0, 2)).toEqual(['two', 'one✓']);

    h.notify('alice', 'three'); // pushed as a notification event
    await waitFor(() => expect(unread()).toEqual(['2', '2']));
    expect(titles().slice(0, 3)).toEqual(['three', 'two', 'one✓']);

    // Another tab marks "two" read: only the event arrives here.
    const two = h.inbox.get('alice')![1]!;
    two.read_at = new Date().toISOString();
    h.emit('users/alice', 'notification.read', { ids: [two.id] });
    await waitFor(() => expect(unread()).toEqual(['1', '1']));
    expect(titles().slice(0, 3)).toEqual(['three', 'two✓', 'one✓']);

    // This tab marks "three" read: at once, then the echo changes nothing.
    act(() => screen.getAllByText('read three')[0]!.click());
    expect(unread()).toEqual(['0', '0']);
    await waitFor(() => expect(h.calls.some((c) => c.method === 'POST' && c.path.endsWith('/read'))).toBe(true));
    await new Promise((res) => setTimeout(res, 20));
    expect(unread()).toEqual(['0', '0']);

    h.notify('alice', 'four');
    h.notify('alice', 'five');
    await waitFor(() => expect(unread()).toEqual(['2', '2']));
    act(() => screen.getAllByText('all')[0]!.click());
    expect(unread()).toEqual(['0', '0']);
    await waitFor(() => expect(h.calls.some((c) => c.path === '/v1/notifications/read-all')).toBe(true));
    expect(titles().slice(0, 5)).toEqual(['five✓', 'four✓', 'three✓', 'two✓', 'one✓']);

    // A delete from elsewhere.
    await act(() => h.fetch('http://herald.test/v1/notifications/' + two.id, { method: 'DELETE' }));
    await waitFor(() => expect(titles().slice(0, 5)).toEqual(['five✓', 'four✓', 'three✓', 'one✓']));
    expect(h.calls.filter((c) => c.method === 'GET')).toHaveLength(1); // all kept live without a refetch
  });

  it('fetches again on a gap of the user topic, applying the events that arrive meanwhile', async () => {
    const h = new FakeHerald();
    h.notify('alice', 'one');
    render(
      <Provider h={h}>
        <Inbox />
      </Provider>,
    );
    await waitFor(() => expect(text('loading')).toBe('false'));
    expect(titles()).toEqual(['one']);
    // Herald lost history: notifications were stored that the stream never carried.
    const list = h.inbox.get('alice')!;
    list.push({ id: '900', type: 't', title: 'missed', body: '', created_at: '', read_at: null });
    const release = h.hold('GET /v1/notifications');
    h.gap(['rooms/other']);
    await new Promise((res) => setTimeout(res, 20));
    expect(h.calls.filter((c) => c.method === 'GET')).toHaveLength(1); // not our topic
    h.gap(['users/alice']);
    await waitFor(() => expect(h.calls.filter((c) => c.method === 'GET')).toHaveLength(2));
    expect(text('loading')).toBe('true');
    // While the fetch waits: a new one arrives (which the answer will hold too), one is read.
    h.notify('alice', 'late');
    list[0]!.read_at = new Date().toISOString();
    h.emit('users/alice', 'notification.read', { ids: [list[0]!.id] });
    await new Promise((res) => setTimeout(res, 20));
    release();
    await waitFor(() => expect(text('loading')).toBe('false'));
    expect(titles()).toEqual(['late', 'missed', 'one✓']);
    expect(text('unread')).toBe('2');
  });

  it('refetches when a change names a notification beyond the page', async () => {
    const h = new FakeHerald();
    for (const t of ['a', 'b', 'c']) h.notify('alice', t);
    function Small() {
      const { items, unreadCount } = useNotifications({ limit: 2 });
      return (
        <p data-testid="small">
          {items.map((i) => i.title).join(',')}/{unreadCount}
        </p>
      );
    }
    render(
      <Provider h={h}>
        <Small />
      </Provider>,
    );
    await waitFor(() => expect(text('small')).toBe('c,b/3'));
    const a = h.inbox.get('alice')![0]!;
    a.read_at = new Date().toISOString();
    h.emit('users/alice', 'notification.read', { ids: [a.id] });
    await waitFor(() => expect(text('small')).toBe('c,b/2'));
    expect(h.calls.filter((c) => c.method === 'GET')).toHaveLength(2);
  });

  it('shows the error of a failed mark and fetches the truth again', async () => {
    const h = new FakeHerald();
    h.notify('alice', 'one');
    render(
      <Provider h={h}>
        <Inbox />
      </Provider>,
    );
    await waitFor(() => expect(text('loading')).toBe('false'));
    h.refuse.set('POST /v1/notifications/read-all', { status: 503, code: 'inbox_unavailable' });
    act(() => screen.getByText('all').click());
    expect(text('unread')).toBe('0');
    await waitFor(() => expect(text('error')).toBe('inbox_unavailable'));
    expect(text('unread')).toBe('1');
  });
  it('shows the error of a mark that fails while a fetch runs, and refetch resolves after the fetch it asked for', async () => {
    const h = new FakeHerald();
    h.notify('alice', 'one');
    let api!: ReturnType<typeof useNotifications>;
    function Grab() {
      api = useNotifications();
      return null;
    }
    render(
      <Provider h={h}>
        <Inbox />
        <Grab />
      </Provider>,
    );
    await waitFor(() => expect(text('loading')).toBe('false'));
    const release = h.hold('GET /v1/notifications');
    let first = false;
    void act(() => api.refetch()).then(() => (first = true));
    await waitFor(() => expect(h.calls.filter((c) => c.method === 'GET')).toHaveLength(2));
    h.notify('alice', 'two'); // stored now: only a fetch that begins later lists it with the first page
    h.refuse.set('POST /v1/notifications/read-all', { status: 503, code: 'inbox_unavailable' });
    act(() => screen.getByText('all').click());
    await waitFor(() => expect(h.calls.some((c) => c.path === '/v1/notifications/read-all')).toBe(true));
    const gets = () => h.calls.filter((c) => c.method === 'GET').length;
    let atResolve = 0;
    const asked = api.refetch().then(() => (atResolve = gets()));
    release();
    await waitFor(() => expect(first).toBe(true));
    await act(() => asked);
    expect(atResolve).toBe(3); // resolved after the run it asked for, not the one running then
    await new Promise((res) => setTimeout(res, 30));
    expect(gets()).toBe(3); // one queued run for the mark's and the caller's asks
    await waitFor(() => expect(text('error')).toBe('inbox_unavailable'));
    await new Promise((res) => setTimeout(res, 30));
    expect(text('error')).toBe('inbox_unavailable');
    expect(text('loading')).toBe('false');
  });
});

function Online({ topic }: { topic: string }) {
  const { users, loading } = usePresence(topic);
  return <p data-testid={'online-' + topic}>{loading ? '…' : users.join(',')}</p>;
}

describe('usePresence', () => {
  it('lists who is on a topic after the stream carries its presence events, and follows join and leave', async () => {
    const h = new FakeHerald();
    h.online.set('rooms/lobby', ['bob', 'alice']);
    const release = h.hold('GET /v1/presence');
    render(
      <StrictMode>
        <Provider h={h} topics={['rooms/lobby']}>
          <State />
          <Online topic="rooms/lobby" />
        </Provider>
      </StrictMode>,
    );
    await waitFor(() => expect(text('state')).toBe('open'));
    expect(h.streams).toHaveLength(1);
    expect(h.streams[0]!.topics).toEqual(['presence/rooms/lobby', 'rooms/lobby', 'users/alice']);
    await waitFor(() => expect(h.calls.map((c) => c.path)).toEqual(['/v1/presence?topic=rooms%2Flobby']));
    h.join('rooms/lobby', 'carol'); // during the fetch, which will hold her too
    await new Promise((res) => setTimeout(res, 10));
    release();
    await waitFor(() => expect(text('online-rooms/lobby')).toBe('alice,bob,carol'));
    h.leave('rooms/lobby', 'bob');
    await waitFor(() => expect(text('online-rooms/lobby')).toBe('alice,carol'));
    h.join('rooms/lobby', 'dave');
    h.join('rooms/lobby', 'dave');
    await waitFor(() => expect(text('online-rooms/lobby')).toBe('alice,carol,dave'));
    expect(h.calls).toHaveLength(1);
  });

  it('adds presence/{topic} to the stream when a component asks, and fetches after the stream carries it', async () => {
    const h = new FakeHerald();
    h.online.set('rooms/9', ['zed']);
    function App({ room }: { room?: string }) {
      return (
        <Provider h={h}>
          <State />
          {room && <Online topic={room} />}
        </Provider>
      );
    }
    const r = render(<App />);
    await waitFor(() => expect(text('state')).toBe('open'));
    r.rerender(<App room="rooms/9" />);
    await waitFor(() => expect(text('online-rooms/9')).toBe('zed'));
    expect(h.streams).toHaveLength(2);
    expect(h.streams[1]!.topics).toEqual(['presence/rooms/9', 'users/alice']);
    // The fetch came after the stream with the topic was opened.
    expect(h.calls).toHaveLength(1);
    h.join('rooms/9', 'amy');
    await waitFor(() => expect(text('online-rooms/9')).toBe('amy,zed'));
    h.gap(['presence/rooms/9']);
    await waitFor(() => expect(h.calls).toHaveLength(2));
    r.rerender(<App />);
    await waitFor(() => expect(h.streams).toHaveLength(3));
    expect(h.streams[2]!.topics).toEqual(['users/alice']);
  });
  it('a presence store started again loads afresh, and stores that stopped are dropped', async () => {
    const h = new FakeHerald();
    h.online.set('rooms/a', ['amy']);
    h.online.set('rooms/b', ['bob']);
    let hub!: ReturnType<typeof useHerald>;
    function App({ room }: { room: string }) {
      return (
        <Provider h={h}>
          <Grab />
          <Online topic={room} />
        </Provider>
      );
    }
    function Grab() {
      hub = useHerald();
      return null;
    }
    const kept = () => (hub as unknown as { presences: Map<string, unknown> }).presences;
    const r = render(<App room="rooms/a" />);
    await waitFor(() => expect(text('online-rooms/a')).toBe('amy'));
    r.rerender(<App room="rooms/b" />);
    await waitFor(() => expect(text('online-rooms/b')).toBe('bob'));
    expect([...kept().keys()]).toEqual(['rooms/b']);
    h.online.set('rooms/a', ['amy', 'ann']);
    const release = h.hold('GET /v1/presence');
    r.rerender(<App room="rooms/a" />);
    expect(text('online-rooms/a')).toBe('…'); // not the old snapshot
    await new Promise((res) => setTimeout(res, 30));
    expect(text('online-rooms/a')).toBe('…');
    release();
    await waitFor(() => expect(text('online-rooms/a')).toBe('amy,ann'));
    expect([...kept().keys()]).toEqual(['rooms/a']);
  });
});

describe('HeraldProvider after a refusal', () => {
  it('starts a new stream, from the cursor, when the topics change', async () => {
    const h = new FakeHerald();
    const app = (topics: string[]) => (
      <Provider h={h} topics={topics}>
        <State />
      </Provider>
    );
    const r = render(app(['rooms/1']));
    await waitFor(() => expect(text('state')).toBe('open'));
    const cursor = h.emit('rooms/1', 'chat', 'x');
    await new Promise((res) => setTimeout(res, 10));
    h.refuse.set('GET /v1/events', { status: 403, code: 'forbidden', once: true });
    r.rerender(app(['rooms/1', 'secret']));
    await waitFor(() => expect(text('state')).toBe('closed'));
    r.rerender(app(['rooms/1', 'rooms/2']));
    await waitFor(() => expect(text('state')).toBe('open'));
    expect(h.streams.at(-1)!.topics).toEqual(['rooms/1', 'rooms/2', 'users/alice']);
    expect(h.streams.at(-1)!.headers['Last-Event-ID']).toBe(cursor);
  });
});

describe('after a reconnect', () => {
  it('presence is fetched again (its events are best effort), the inbox is not (the stream resumed)', async () => {
    const h = new FakeHerald();
    h.online.set('rooms/lobby', ['alice', 'ghost']);
    render(
      <Provider h={h}>
        <State />
        <Online topic="rooms/lobby" />
        <Inbox />
      </Provider>,
    );
    await waitFor(() => expect(text('online-rooms/lobby')).toBe('alice,ghost'));
    await waitFor(() => expect(text('loading')).toBe('false'));
    const gets = () => h.calls.filter((c) => c.method === 'GET').map((c) => c.path.split('?')[0]);
    expect(gets().sort()).toEqual(['/v1/notifications', '/v1/presence']);
    // The node holding ghost's stream died: no leave was ever published.
    h.online.set('rooms/lobby', ['alice']);
    h.streams[0]!.end();
    await waitFor(() => expect(text('online-rooms/lobby')).toBe('alice'));
    expect(h.streams[1]!.headers['Last-Event-ID']).toBeTruthy();
    expect(gets().sort()).toEqual(['/v1/notifications', '/v1/presence', '/v1/presence']);
  });

  it('a REST call refused with 401 is retried once with a fresh token', async () => {
    const h = new FakeHerald();
    const reasons: string[] = [];
    let hub!: ReturnType<typeof useHerald>;
    function Grab() {
      hub = useHerald();
      return null;
    }
    render(
      <Provider h={h} getToken={(r) => (reasons.push(r), 'tok')}>
        <Grab />
      </Provider>,
    );
    await waitFor(() => expect(h.streams).toHaveLength(1));
    h.refuse.set('POST /v1/publish', { status: 401, code: 'invalid_token', once: true });
    await expect(hub.request('/v1/publish', { body: { topic: 'rooms/7' } })).resolves.toMatchObject({ topic: 'rooms/7' });
    expect(reasons.slice(1)).toEqual(['connect', 'expired']);
  });
});
