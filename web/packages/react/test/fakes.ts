// A scripted Herald behind fetch: event streams (GET /v1/events) that the
// test or the server's own handlers push events to, and the REST routes the
// hooks use (the inbox, presence, publish), kept in memory.
import type { Notification } from '../src/index.js';

export interface FakeStream {
  url: URL;
  topics: string[];
  headers: Record<string, string>;
  aborted: boolean;
  send(text: string): void;
  end(): void;
}

export interface FakeCall {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: unknown;
}

type Held = { match: string; release: Promise<void> };

export class FakeHerald {
  streams: FakeStream[] = [];
  calls: FakeCall[] = [];
  /** The inbox of every user, oldest first. */
  inbox = new Map<string, Notification[]>();
  /** Users online per topic. */
  online = new Map<string, string[]>();
  /** Answers for "METHOD /path" (pathname), instead of the routes. */
  refuse = new Map<string, { status: number; code: string; once?: boolean }>();
  private seq = 0;
  private held: Held[] = [];

  /**
   * user is whose inbox a request reads; a token "user:NAME" (as POST
   * /v1/demo/token hands out here) names another. With presence, a stream
   * on rooms/X makes its user join X until it ends.
   */
  constructor(
    private user = 'alice',
    private opts: { presence?: boolean } = {},
  ) {}

  private userOf(headers: Record<string, string>): string {
    const m = /^Bearer user:(.+)$/.exec(headers['Authorization'] ?? '');
    return m ? m[1]! : this.user;
  }

  /** The streams still open. */
  get open(): FakeStream[] {
    return this.streams.filter((s) => !s.aborted);
  }

  /** hold makes requests whose "METHOD /path" starts with match wait until the returned function is called. */
  hold(match: string): () => void {
    let release!: () => void;
    this.held.push({ match, release: new Promise<void>((r) => (release = r)) });
    return () => {
      this.held = this.held.filter((h) => h.match !== match);
      release();
    };
  }

  /** emit appends an event to topic: each open stream on it receives it. */
  emit(topic: string, type: string, data: unknown): string {
    const id = 'C' + ++this.seq;
    const text = `id: ${id}\nevent: ${type}\ntopic: ${topic}\ndata: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
    for (const s of this.open) if (s.topics.includes(topic)) s.send(text);
    return id;
  }

  /** gap sends herald.gap for topics to every open stream. */
  gap(topics: string[]): void {
    for (const s of this.open) s.send(`id: C${++this.seq}\nevent: herald.gap\ndata: ${JSON.stringify({ topics })}\n\n`);
  }

  notify(to: string, title: string, body = '', data?: unknown): Notification {
    const list = this.inbox.get(to) ?? [];
    const n: Notification = { id: String(100 + this.seq++), type: 'demo.message', title, body, created_at: new Date().toISOString(), read_at: null };
    if (data !== undefined) n.data = data;
    list.push(n);
    this.inbox.set(to, list);
    this.emit('users/' + to, 'notification', n);
    return n;
  }

  fetch = (async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input), 'http://herald.test');
    const method = init?.method ?? 'GET';
    const headers = { ...(init?.headers as Record<string, string>) };
    const body = typeof init?.body === 'string' ? JSON.parse(init.body) : undefined;
    const key = `${method} ${url.pathname}`;
    if (url.pathname !== '/v1/events') this.calls.push({ method, path: url.pathname + url.search, headers, body });
    for (const h of this.held) if (key.startsWith(h.match)) await h.release;
    const refused = this.refuse.get(key);
    if (refused?.once) this.refuse.delete(key);
    if (refused) return json(refused.status, { error: { code: refused.code, message: refused.code } });
    if (url.pathname === '/v1/events') return this.stream(url, headers, init?.signal ?? undefined);
    return this.route(method, url, body, this.userOf(headers));
  }) as typeof fetch;

  private stream(url: URL, headers: Record<string, string>, signal: AbortSignal | undefined): Response {
    let ctl!: ReadableStreamDefaultController<Uint8Array>;
    const enc = new TextEncoder();
    let open = true;
    const s: FakeStream = {
      url,
      topics: url.searchParams.getAll('topic'),
      headers,
      aborted: false,
      send: (t) => open && ctl.enqueue(enc.encode(t)),
      end: () => {
        if (open) ctl.close();
        open = false;
        s.aborted = true;
      },
    };
    const body = new ReadableStream<Uint8Array>({ start: (c) => void (ctl = c) });
    const user = this.userOf(headers);
    const rooms = this.opts.presence ? s.topics.filter((t) => t.startsWith('rooms/')) : [];
    const gone = () => {
      for (const r of rooms) if (!this.open.some((o) => o !== s && this.userOf(o.headers) === user && o.topics.includes(r))) this.leave(r, user);
    };
    signal?.addEventListener('abort', () => {
      const was = !s.aborted;
      s.aborted = true;
      if (open) ctl.error(new DOMException('aborted', 'AbortError'));
      open = false;
      if (was) gone();
    });
    for (const r of rooms) if (!(this.online.get(r) ?? []).includes(user)) this.join(r, user);
    this.streams.push(s);
    s.send(`retry: 10\nid: C${this.seq}\nevent: herald.connected\ndata: {}\n\n`);
    return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
  }

  private route(method: string, url: URL, body: unknown, user: string): Response {
    const p = url.pathname;
    if (method === 'POST' && p === '/v1/demo/token') {
      const name = (body as { user?: string }).user ?? '';
      if (!/^[a-z0-9_-]{1,32}$/.test(name)) return json(400, { error: { code: 'invalid_user', message: 'invalid user' } });
      return json(200, { token: 'user:' + name, user: name, expires_at: new Date(Date.now() + 3600_000).toISOString() });
    }
    const mine = this.inbox.get(user) ?? [];
    const unread = () => mine.filter((n) => !n.read_at).length;
    if (method === 'GET' && p === '/v1/notifications') {
      const limit = Number(url.searchParams.get('limit') ?? 50);
      const newest = [...mine].reverse();
      return json(200, { notifications: newest.slice(0, limit), unread_count: unread(), next: newest.length > limit ? newest[limit - 1]!.id : null });
    }
    let m = /^\/v1\/notifications\/([^/]+)\/read$/.exec(p);
    if (method === 'POST' && m) {
      const n = mine.find((i) => i.id === m![1]);
      if (!n) return json(404, { error: { code: 'notification_not_found', message: '' } });
      n.read_at ??= new Date().toISOString();
      this.emit('users/' + user, 'notification.read', { ids: [n.id] });
      return json(200, { id: n.id, read: true });
    }
    if (method === 'POST' && p === '/v1/notifications/read-all') {
      const marked = unread();
      for (const n of mine) n.read_at ??= new Date().toISOString();
      if (marked) this.emit('users/' + user, 'notification.read', { all: true });
      return json(200, { marked });
    }
    m = /^\/v1\/notifications\/([^/]+)$/.exec(p);
    if (method === 'DELETE' && m) {
      this.inbox.set(user, mine.filter((i) => i.id !== m![1]));
      this.emit('users/' + user, 'notification.deleted', { id: m[1] });
      return new Response(null, { status: 204 });
    }
    if (method === 'POST' && p === '/v1/notifications') {
      const b = body as { to: string[]; title?: string; body?: string; data?: unknown };
      const out = b.to.map((to) => ({ id: this.notify(to, b.title ?? '', b.body ?? '', b.data).id, to }));
      return json(201, { notifications: out, duplicate: false });
    }
    if (method === 'GET' && p === '/v1/presence') {
      const topic = url.searchParams.get('topic')!;
      const users = (this.online.get(topic) ?? []).map((user) => ({ user, streams: 1 }));
      return json(200, { topic, users, user_count: users.length, streams: users.length, truncated: false });
    }
    if (method === 'POST' && p === '/v1/publish') {
      const b = body as { topic: string; type?: string; data?: unknown };
      const id = this.emit(b.topic, b.type ?? 'message', b.data ?? '');
      return json(200, { id, topic: b.topic, offset: this.seq });
    }
    return json(404, { error: { code: 'not_found', message: p } });
  }

  /** join and leave change who is online on topic, with the presence event. */
  join(topic: string, user: string): void {
    const list = this.online.get(topic) ?? [];
    if (!list.includes(user)) this.online.set(topic, [...list, user]);
    this.emit('presence/' + topic, 'join', { user, topic });
  }

  leave(topic: string, user: string): void {
    this.online.set(topic, (this.online.get(topic) ?? []).filter((u) => u !== user));
    this.emit('presence/' + topic, 'leave', { user, topic });
  }
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}
