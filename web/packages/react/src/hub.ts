// Hub: the one HeraldClient of a HeraldProvider, the set of topics its
// stream carries (the provider's plus those the hooks register), the
// handlers the hooks add, and requests to Herald's REST API with the same
// token.
import { HeraldClient, HeraldError, type ConnectionState, type HeraldClientOptions, type HeraldEvent } from '@herald/client';
import { InboxStore } from './inbox.js';
import { PresenceStore } from './presence.js';

/** What HeraldProvider passes on to the client, plus its own options. */
export interface HubOptions extends Omit<HeraldClientOptions, 'topics'> {
  /** Topics the stream always carries. */
  topics?: string[];
  /** The signed-in user (the token's subject): the stream carries users/{user}, the inbox is theirs. */
  user?: string;
  /** How long topic changes from hooks are gathered before the stream is reconnected with them, ms (default 50). */
  topicsDelay?: number;
}

type Sub = { topic: string; type: string; handler: (ev: HeraldEvent) => void; off?: () => void };

/** The options of a REST request made with the provider's token. */
export interface RequestOptions {
  method?: string;
  /** Sent as JSON. */
  body?: unknown;
  signal?: AbortSignal;
}

const sameTopics = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((t, i) => t === b[i]);

export class Hub {
  /** The running client, once connected (a new one after the user or URL changes). */
  client: HeraldClient | undefined;
  private opts: HubOptions;
  private counts = new Map<string, number>(); // topics registered by hooks
  private subs = new Set<Sub>();
  private gapListeners = new Set<(topics: string[]) => void>();
  private listeners = new Set<() => void>();
  private state: ConnectionState = 'idle';
  private error: Error | undefined;
  private applied: string[] = []; // the running client's topics
  private gen = 0; // bumped by connect and disconnect: a deferred start checks it
  private connected = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private inboxes = new Map<number, InboxStore>();
  private presences = new Map<string, PresenceStore>();

  constructor(opts: HubOptions) {
    this.opts = opts;
  }

  /** setOptions takes the provider's latest props (getToken and the rest are read when used). */
  setOptions(opts: HubOptions): void {
    const before = this.opts.topics ?? [];
    this.opts = opts;
    if (!sameTopics([...before].sort(), [...(opts.topics ?? [])].sort())) this.schedule();
  }

  get url(): string {
    return this.opts.url;
  }

  get user(): string | undefined {
    return this.opts.user;
  }

  /** The topics the stream should carry, sorted. */
  topics(): string[] {
    const set = new Set(this.opts.topics ?? []);
    if (this.opts.user) set.add('users/' + this.opts.user);
    for (const t of this.counts.keys()) set.add(t);
    return [...set].sort();
  }

  /** Whether the running stream carries topic (it may still be connecting). */
  carries(topic: string): boolean {
    return this.applied.includes(topic);
  }

  /**
   * ready resolves once the stream carries topic and is open, or is closed
   * (nothing more to wait for). A topic new to the stream starts at its
   * newest event: an event published on it before then never reaches this
   * stream, so publish after `await ready(topic)` to see your own event. The
   * topic must be registered (useTopic, useTopics, the provider's topics).
   */
  ready(topic: string): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if ((this.state === 'open' && this.carries(topic)) || this.state === 'closed') {
          off();
          resolve();
        }
      };
      const off = this.subscribe(check);
      check();
    });
  }

  /** register adds topic to the stream until the returned function is called (counted: two registrations, two releases). */
  register(topic: string): () => void {
    this.counts.set(topic, (this.counts.get(topic) ?? 0) + 1);
    this.schedule();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.counts.get(topic) ?? 1) - 1;
      if (n > 0) this.counts.set(topic, n);
      else this.counts.delete(topic);
      this.schedule();
    };
  }

  /** on adds a handler for topic's events of type ('' for every type), on this client and the ones after it. */
  on(topic: string, type: string, handler: (ev: HeraldEvent) => void): () => void {
    const sub: Sub = { topic, type, handler };
    this.subs.add(sub);
    if (this.client) this.attach(this.client, sub);
    return () => {
      sub.off?.();
      this.subs.delete(sub);
    };
  }

  /** onGap adds a listener for herald.gap (the topics whose history was lost). */
  onGap(listener: (topics: string[]) => void): () => void {
    this.gapListeners.add(listener);
    return () => void this.gapListeners.delete(listener);
  }

  /** subscribe calls listener when the state, its error or the stream's topics change. */
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  };

  getState = (): ConnectionState => this.state;

  getError = (): Error | undefined => this.error;

  private emit(): void {
    for (const l of [...this.listeners]) l();
  }

  private attach(c: HeraldClient, sub: Sub): void {
    sub.off = sub.type ? c.on(sub.topic, sub.type, sub.handler) : c.on(sub.topic, sub.handler);
  }

  /**
   * connect starts the stream a microtask later, so that the mount, unmount
   * and mount again of React's StrictMode opens one stream, not two.
   */
  connect(): void {
    const g = ++this.gen;
    this.connected = true;
    queueMicrotask(() => {
      if (g === this.gen && !this.client) this.startClient();
    });
  }

  /** disconnect closes the stream (or cancels one about to start). */
  disconnect(): void {
    ++this.gen;
    this.connected = false;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const c = this.client;
    this.client = undefined;
    this.applied = [];
    c?.close();
  }

  private startClient(cursor?: string): void {
    const topics = this.topics();
    if (topics.length === 0) return; // a stream needs a topic: wait for one
    const { topics: _t, user: _u, topicsDelay: _d, getToken, ...rest } = this.opts;
    const c = new HeraldClient({
      ...rest,
      ...(cursor ? { lastEventId: cursor } : {}),
      topics,
      // The latest getToken the provider was given.
      getToken: getToken ? (reason) => this.opts.getToken!(reason) : undefined,
    });
    this.client = c;
    this.applied = topics;
    for (const sub of this.subs) this.attach(c, sub);
    c.onState((state, error) => {
      if (this.client !== c) return;
      this.state = state;
      this.error = error;
      this.emit();
    });
    c.onGap((t) => {
      if (this.client !== c) return;
      for (const l of [...this.gapListeners]) l(t);
    });
    c.start();
  }

  // schedule applies topic changes after topicsDelay, gathering those of
  // one render (a route change unregisters and registers at once).
  private schedule(): void {
    if (!this.connected || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.apply();
    }, this.opts.topicsDelay ?? 50);
  }

  private apply(): void {
    if (!this.connected) return;
    const topics = this.topics();
    const c = this.client;
    if (!c || c.state === 'closed') {
      // Not started yet (it had no topic), or refused for good (a topic it
      // may not read, say): a new topic set gets a new client.
      if (c && sameTopics(topics, this.applied)) return;
      this.client = undefined;
      this.applied = [];
      for (const sub of this.subs) sub.off?.();
      // The new stream resumes where the refused one was.
      if (topics.length > 0) this.startClient(c?.lastEventId);
      return;
    }
    if (sameTopics(topics, this.applied)) return;
    if (topics.length === 0) return; // keep the stream rather than make one Herald refuses
    this.applied = topics;
    c.setTopics(topics);
    this.emit();
  }

  /**
   * request calls Herald's REST API (path from the base URL, e.g.
   * "/v1/notifications") with the provider's token and returns the parsed
   * JSON answer (undefined for 204). A 401 asks getToken for a fresh token
   * ("expired") and retries once. Errors are HeraldErrors.
   */
  async request<T = unknown>(path: string, options: RequestOptions = {}): Promise<T> {
    const f = this.opts.fetch ?? fetch;
    const url = this.opts.url.replace(/\/+$/, '') + path;
    for (let attempt = 0; ; attempt++) {
      const token = this.opts.getToken ? await this.opts.getToken(attempt ? 'expired' : 'connect') : undefined;
      const headers: Record<string, string> = { Accept: 'application/json' };
      if (token) headers['Authorization'] = 'Bearer ' + token;
      const init: RequestInit = {
        method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
        headers,
        cache: 'no-store',
        credentials: this.opts.withCredentials ? 'include' : 'same-origin',
      };
      if (options.signal) init.signal = options.signal;
      if (options.body !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(options.body);
      }
      const resp = await f(url, init);
      if (resp.ok) {
        if (resp.status === 204) return undefined as T;
        const text = await resp.text();
        return (text ? JSON.parse(text) : undefined) as T;
      }
      const err = await HeraldError.fromResponse(resp);
      // As the stream does: a 401 gets one retry with a fresh token.
      if (err.status === 401 && attempt === 0 && this.opts.getToken) continue;
      throw err;
    }
  }

  /** inbox returns the user's inbox store (one per page size). */
  inbox(limit: number): InboxStore {
    const user = this.opts.user;
    if (!user) throw new Error('@herald/react: useNotifications needs the user prop of HeraldProvider');
    return keep(this.inboxes, limit, () => new InboxStore(this, user, limit));
  }

  /** presence returns the presence store of topic. */
  presence(topic: string): PresenceStore {
    return keep(this.presences, topic, () => new PresenceStore(this, topic));
  }
}

// keep returns map's store for key, making one if need be; a store leaves the
// map when it stops (the next use makes a new one) and is put back if it
// starts again meanwhile.
function keep<K, S extends { onLive: ((live: boolean) => void) | undefined }>(map: Map<K, S>, key: K, make: () => S): S {
  let s = map.get(key);
  if (!s) {
    const made = (s = make());
    map.set(key, made);
    made.onLive = (live) => {
      if (live) {
        if (!map.has(key)) map.set(key, made);
      } else if (map.get(key) === made) map.delete(key);
    };
  }
  return s;
}
