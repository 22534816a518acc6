// HeraldClient: handlers per topic and type, connection state, gaps, and one
// stream shared by every tab of the origin.
import { Connection, HeraldError, type ConnectionOptions, type TokenReason } from './connection.js';
import type { SSEMessage } from './parser.js';
import type { ConnectionState } from './state.js';
import type { BackoffOptions } from './backoff.js';
import { Election, type ChannelLike, type LocksLike } from './tabs.js';

/** An event as handlers receive it. */
export interface HeraldEvent<T = unknown> {
  topic: string;
  /** The event type ("message" when the publisher gave none). */
  type: string;
  /** The payload, parsed by `parse` (JSON when it parses, else the text). */
  data: T;
  /** The payload as sent on the stream. */
  raw: string;
  /** The cursor after this event. */
  id: string;
}

/** Maps event types to their payloads, for typed handlers. */
export type EventMap = Record<string, unknown>;

export interface HeraldClientOptions {
  /** Herald's base URL, e.g. "https://herald.example.com" (or "" for the page's origin). */
  url: string;
  /** The topics of the stream. */
  topics: string[];
  /** Returns the token; awaited before each (re)connect, with reason "expired" after a 401 token_expired. */
  getToken?: (reason: TokenReason) => string | null | undefined | Promise<string | null | undefined>;
  /** "auto" (default): fetch streaming, EventSource where it is missing. */
  transport?: 'auto' | 'fetch' | 'eventsource';
  /** Send cookies (Herald's herald_token cookie) cross-origin. */
  withCredentials?: boolean;
  backoff?: BackoffOptions;
  /** The cursor to start from (e.g. one kept in storage). */
  lastEventId?: string;
  /**
   * Share one stream among the origin's tabs (default true where
   * BroadcastChannel exists). Tabs with the same topics and the same `key`
   * (default: the url) share.
   */
  share?: boolean | { key?: string };
  /** Turns the data text into the handler's payload. */
  parse?: (raw: string, type: string) => unknown;
  /** Injected for tests; default the globals. */
  fetch?: typeof fetch;
  EventSource?: typeof EventSource;
  BroadcastChannel?: new (name: string) => ChannelLike;
  locks?: LocksLike | null;
  /**
   * Reconnect when the stream sends nothing this long (default 45000 ms, three
   * of Herald's 15 s heartbeats; fetch transport; 0: never).
   */
  idleTimeout?: number;
  /** Heartbeat election timing (used without navigator.locks). */
  election?: { heartbeatMs?: number; timeoutMs?: number; claimMs?: number };
}

type Handler = (ev: HeraldEvent<any>) => void; // eslint-disable-line @typescript-eslint/no-explicit-any
type StateListener = (state: ConnectionState, error?: Error) => void;

// What the leader tab relays.
type Relay =
  | { t: 'ev'; msg: SSEMessage; cursor: string } // the stream's cursor after msg (with EventSource, every topic's)
  | { t: 'state'; state: ConnectionState; cursor: string; error?: { status: number; code: string; message: string } }
  | { t: 'hello' };

function defaultParse(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

const CONNECTED = 'herald.connected';
const GAP = 'herald.gap';

export class HeraldClient<M extends EventMap = EventMap> {
  private handlers = new Map<string, Set<Handler>>(); // "topic\ntype", type '' for all
  private stateListeners = new Set<StateListener>();
  private gapListeners = new Set<(topics: string[]) => void>();
  private conn: Connection | undefined;
  private election: Election | undefined;
  private cursor: string;
  private current: ConnectionState = 'idle';
  private started = false;
  private seen = new Set<string>(); // cursors of the events relayed lately

  constructor(private opts: HeraldClientOptions) {
    this.cursor = opts.lastEventId ?? '';
  }

  /** The connection state (a follower tab reports its leader's). */
  get state(): ConnectionState {
    return this.current;
  }

  /** The cursor of the last event received (or relayed). */
  get lastEventId(): string {
    return this.conn?.lastEventId ?? this.cursor;
  }

  /** Whether this tab holds the stream. */
  get isLeader(): boolean {
    return !!this.conn;
  }

  /** start connects, or joins the tabs' shared stream. */
  start(): this {
    if (this.started) return this;
    this.started = true;
    if (this.current === 'idle') this.setState('connecting');
    // Back online: reconnect now rather than at the end of the backoff.
    if (typeof addEventListener === 'function') {
      addEventListener('online', this.onOnline);
      addEventListener('pagehide', this.onPageHide);
    }
    const BC = this.opts.BroadcastChannel ?? (typeof BroadcastChannel === 'function' ? BroadcastChannel : undefined);
    if (this.opts.share === false || !BC) {
      this.lead();
      return this;
    }
    // Only tabs streaming the same topics can share: a user's key narrows the group, never widens it.
    const key = ((typeof this.opts.share === 'object' && this.opts.share.key) || this.opts.url) + '|' + [...this.opts.topics].sort().join(',');
    const name = 'herald:' + key;
    const nav = typeof navigator !== 'undefined' ? (navigator as Navigator & { locks?: LocksLike }) : undefined;
    const locks = this.opts.locks !== undefined ? this.opts.locks : (nav?.locks ?? null);
    this.election = new Election({
      channel: new BC(name),
      name,
      locks,
      ...this.opts.election,
      onLeader: () => this.lead(),
      onFollower: () => this.follow(),
      onMessage: (m) => this.relayed(m as Relay),
    });
    this.election.start();
    return this;
  }

  private onOnline = () => this.conn?.wake();

  /** close ends the stream (handing it to another tab) and stops every handler. */
  close(): void {
    this.teardown();
    this.setState('closed');
  }

  /**
   * setTopics changes the stream's topics: the client reconnects with its
   * cursor, so the topics it had resume where they were and a new one starts
   * at its newest event. Sharing tabs group by topics, so the tab may join
   * another group.
   */
  setTopics(topics: string[]): void {
    const key = (t: string[]) => [...t].sort().join(',');
    const same = key(topics) === key(this.opts.topics);
    this.opts = { ...this.opts, topics: [...topics] };
    if (same || !this.started || this.current === 'closed') return;
    this.suspend();
    this.start();
  }

  // suspend ends the stream and leaves the group, keeping the cursor and the
  // handlers: start() resumes from the cursor.
  private suspend(): void {
    const cursor = this.lastEventId;
    this.teardown();
    this.cursor = cursor;
    this.started = false;
    this.setState('reconnecting');
  }

  // teardown ends the stream (telling the other tabs, which take it over) and
  // leaves the group.
  private teardown(): void {
    if (typeof removeEventListener === 'function') {
      removeEventListener('pagehide', this.onPageHide);
      removeEventListener('pageshow', this.onPageShow);
      removeEventListener('online', this.onOnline);
    }
    if (this.conn) {
      this.cursor = this.conn.lastEventId;
      this.election?.post(this.stateRelay('closed'));
      const c = this.conn;
      this.conn = undefined;
      c.stop();
    }
    this.election?.close();
    this.election = undefined;
  }

  // A tab going away hands the stream over at once (with heartbeats its bye
  // spares the others the timeout). A page put in the back/forward cache
  // (persisted) is suspended, 'reconnecting', and resumes from its cursor when
  // it is shown again; a page unloaded closes.
  private onPageHide = (e: Event) => {
    if (!(e as PageTransitionEvent).persisted) return this.close();
    this.suspend();
    addEventListener('pageshow', this.onPageShow);
  };

  private onPageShow = () => {
    removeEventListener('pageshow', this.onPageShow);
    this.start();
  };

  /**
   * on calls handler for each event of topic ("*" for every topic), of the
   * given type or of every type; it returns a function that removes it.
   */
  on<K extends keyof M & string>(topic: string, type: K, handler: (ev: HeraldEvent<M[K]>) => void): () => void;
  on(topic: string, handler: (ev: HeraldEvent<M[keyof M]>) => void): () => void;
  on(topic: string, a: string | Handler, b?: Handler): () => void {
    const type = typeof a === 'string' ? a : '';
    const handler = (typeof a === 'string' ? b : a) as Handler;
    const k = topic + '\n' + type;
    let set = this.handlers.get(k);
    if (!set) this.handlers.set(k, (set = new Set()));
    set.add(handler);
    if (type) this.conn?.listenFor(type);
    return () => {
      set!.delete(handler);
    };
  }

  /** onState calls listener on each state change: connecting, open, reconnecting, closed. */
  onState(listener: StateListener): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  /** onGap calls listener with the topics whose events Herald could not replay (herald.gap): refetch their state. */
  onGap(listener: (topics: string[]) => void): () => void {
    this.gapListeners.add(listener);
    return () => this.gapListeners.delete(listener);
  }

  private setState(state: ConnectionState, error?: Error): void {
    if (state === this.current) return;
    this.current = state;
    for (const l of [...this.stateListeners]) l(state, error);
  }

  private lead(): void {
    if (this.conn || this.current === 'closed') return;
    const o = this.opts;
    const copts: ConnectionOptions = {
      url: o.url,
      topics: o.topics,
      getToken: o.getToken,
      transport: o.transport,
      withCredentials: o.withCredentials,
      backoff: o.backoff,
      idleTimeout: o.idleTimeout,
      lastEventId: this.cursor,
      fetch: o.fetch,
      EventSource: o.EventSource,
      eventTypes: () => [...this.handlers.keys()].map((k) => k.slice(k.indexOf('\n') + 1)).filter(Boolean),
    };
    // A connection this tab let go of (close, setTopics, another leader) is
    // no longer heard.
    const conn = new Connection(copts, {
      message: (msg) => {
        if (this.conn !== conn) return;
        this.cursor = conn.lastEventId;
        this.election?.post({ t: 'ev', msg, cursor: conn.lastEventId } satisfies Relay);
        this.dispatch(msg);
      },
      state: (state, error) => {
        if (this.conn !== conn) return;
        // A tab taking the stream over from another reconnects.
        const shown = state === 'connecting' && this.current !== 'connecting' ? 'reconnecting' : state;
        this.election?.post(this.stateRelay(shown, error));
        this.setState(shown, error);
      },
    });
    this.conn = conn;
    conn.start();
  }

  private follow(): void {
    if (!this.conn) return;
    this.cursor = this.conn.lastEventId;
    const c = this.conn;
    this.conn = undefined;
    c.stop();
  }

  private stateRelay(state: ConnectionState, error?: Error): Relay {
    const r: Relay = { t: 'state', state, cursor: this.conn?.lastEventId ?? this.cursor };
    if (error) r.error = { status: error instanceof HeraldError ? error.status : 0, code: error instanceof HeraldError ? error.code : 'network', message: error.message };
    return r;
  }

  private relayed(m: Relay): void {
    if (!m || this.conn) {
      if (m?.t === 'hello' && this.conn) this.election?.post(this.stateRelay(this.current));
      return;
    }
    switch (m.t) {
      case 'ev':
        // Two tabs may lead for a moment (heartbeat mode): an event relayed
        // by both is run once.
        if (m.msg.type !== CONNECTED && m.msg.lastEventId) {
          const k = (m.msg.topic ?? '') + '\n' + m.msg.lastEventId;
          if (this.seen.has(k)) return;
          this.seen.add(k);
          if (this.seen.size > 512) this.seen.delete(this.seen.values().next().value as string);
        }
        this.cursor = m.cursor;
        this.dispatch(m.msg);
        return;
      case 'state':
        if (m.cursor) this.cursor = m.cursor;
        // The leader's close() is a hand-over, not this tab's end.
        if (m.state !== 'closed' || m.error) this.setState(m.state, m.error ? new HeraldError(m.error.status, m.error.code, m.error.message) : undefined);
        else this.setState('reconnecting');
        return;
    }
  }

  private dispatch(msg: SSEMessage): void {
    if (msg.type === CONNECTED) return;
    if (msg.type === GAP) {
      let topics: string[] = [];
      try {
        topics = (JSON.parse(msg.data) as { topics?: string[] }).topics ?? [];
      } catch {
        // a gap with unreadable data: every topic is suspect
        topics = [...this.opts.topics];
      }
      for (const l of [...this.gapListeners]) l(topics);
      return;
    }
    const topic = msg.topic ?? (this.opts.topics.length === 1 ? this.opts.topics[0]! : '');
    let parsed = false;
    let data: unknown;
    const ev = (): HeraldEvent => {
      if (!parsed) {
        data = (this.opts.parse ?? defaultParse)(msg.data, msg.type);
        parsed = true;
      }
      return { topic, type: msg.type, data, raw: msg.data, id: msg.lastEventId };
    };
    for (const k of [topic + '\n' + msg.type, topic + '\n', '*\n' + msg.type, '*\n']) {
      const set = this.handlers.get(k);
      if (!set) continue;
      for (const h of [...set]) {
        try {
          h(ev());
        } catch (err) {
          // A throwing handler must not break the stream or the other handlers.
          setTimeout(() => {
            throw err;
          });
        }
      }
    }
  }
}

/** createClient makes a client and starts it. */
export function createClient<M extends EventMap = EventMap>(opts: HeraldClientOptions): HeraldClient<M> {
  return new HeraldClient<M>(opts).start();
}
