// One stream to Herald with its reconnect loop: fetch streaming (so that the
// token travels in Authorization and the cursor in Last-Event-ID), or native
// EventSource where a fetch body cannot be read as a stream (the token then in
// ?access_token=, the cursor in ?lastEventID=).
import { SSEParser, type SSEMessage } from './parser.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';
import { transition, type ConnectionState } from './state.js';

export type TokenReason = 'connect' | 'expired';

/** The error JSON Herald answers with, plus the HTTP status. */
export class HeraldError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HeraldError';
  }

  /** The error a refused request answered: Herald's JSON error, or the status alone (a proxy's page). */
  static async fromResponse(resp: Response): Promise<HeraldError> {
    let code = 'http_' + resp.status;
    let message = resp.statusText || code;
    try {
      const body = (await resp.json()) as { error?: { code?: string; message?: string } };
      if (body?.error?.code) code = body.error.code;
      if (body?.error?.message) message = body.error.message;
    } catch {
      // not Herald's JSON: keep the status
    }
    return new HeraldError(resp.status, code, message);
  }
}

export interface ConnectionOptions {
  url: string;
  topics: string[];
  getToken?: (reason: TokenReason) => string | null | undefined | Promise<string | null | undefined>;
  transport?: 'auto' | 'fetch' | 'eventsource';
  withCredentials?: boolean;
  backoff?: BackoffOptions;
  /** The starting cursor. */
  lastEventId?: string;
  fetch?: typeof fetch;
  EventSource?: typeof EventSource;
  random?: () => number;
  /** Reconnect when a fetch stream sends nothing (not even Herald's heartbeat comment) this long, ms; 0: never. */
  idleTimeout?: number;
  /** Types EventSource must listen for (it has no catch-all). */
  eventTypes?: () => Iterable<string>;
}

export interface ConnectionEvents {
  /** Every event, Herald's own (herald.connected, herald.gap) included. */
  message(msg: SSEMessage): void;
  state(state: ConnectionState, error?: HeraldError | Error): void;
}

const CONNECTED = 'herald.connected';
const GAP = 'herald.gap';

/** fetchStreams tells whether this runtime can read a fetch body as a stream. */
export function fetchStreams(): boolean {
  return typeof fetch === 'function' && typeof ReadableStream === 'function' && typeof TextDecoder === 'function' && typeof Response === 'function' && 'body' in Response.prototype;
}

type Outcome =
  | { kind: 'dropped'; error?: Error; floor?: number } // retry with backoff
  | { kind: 'expired' } // 401 token_expired: fetch a fresh token, retry at once
  | { kind: 'unauthorized'; error: HeraldError }
  | { kind: 'fatal'; error: HeraldError }
  | { kind: 'unsupported' }; // the body is not a stream: fall back to EventSource

function retryAfter(resp: Response): number | undefined {
  const v = resp.headers.get('retry-after');
  if (v && /^[0-9]+$/.test(v)) return parseInt(v, 10) * 1000;
  return undefined;
}

/**
 * Connection keeps one logical stream open until stop(): it connects,
 * reconnects after drops with backoff, and carries the cursor across.
 */
export class Connection {
  state: ConnectionState = 'idle';
  /** The cursor: the last event id the stream gave. */
  lastEventId: string;
  /** The server's retry: in ms (the backoff floor). */
  retry = 0;
  private abort = new AbortController();
  private attempt = 0;
  private unauthorized = 0; // 401s in a row
  private sources: EventSource[] = [];
  private useEventSource: boolean;

  constructor(
    private opts: ConnectionOptions,
    private on: ConnectionEvents,
  ) {
    this.lastEventId = opts.lastEventId ?? '';
    if (this.lastEventId.startsWith('{')) {
      // EventSource mode's cursors, one per topic (Herald's are base64url).
      try {
        this.esCursors = JSON.parse(this.lastEventId) as Record<string, string>;
      } catch {
        this.esCursors = {};
      }
    }
    const t = opts.transport ?? 'auto';
    this.useEventSource = t === 'eventsource' || (t === 'auto' && !opts.fetch && !fetchStreams());
  }

  /** The transport in use. */
  get transport(): 'fetch' | 'eventsource' {
    return this.useEventSource ? 'eventsource' : 'fetch';
  }

  start(): void {
    if (this.state !== 'idle') return;
    this.set('start');
    void this.loop();
  }

  stop(): void {
    this.abort.abort();
    this.closeSources();
    this.set('close');
  }

  /** wake cuts the backoff wait short (the browser came back online). */
  wake(): void {
    this.waking?.();
  }

  private waking: (() => void) | undefined;

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = () => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        this.waking = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.waking = done;
      signal.addEventListener('abort', done);
    });
  }

  /** listenFor adds an event type to live EventSources (fetch needs nothing). */
  listenFor(type: string): void {
    for (const es of this.sources) es.addEventListener(type, this.esListener(es));
  }

  private set(input: Parameters<typeof transition>[1], error?: Error): void {
    const next = transition(this.state, input);
    if (next !== this.state) {
      this.state = next;
      this.on.state(next, error);
    }
  }

  private async loop(): Promise<void> {
    const signal = this.abort.signal;
    let reason: TokenReason = 'connect';
    while (!signal.aborted) {
      let token: string | null | undefined;
      try {
        token = this.opts.getToken ? await this.opts.getToken(reason) : undefined;
      } catch (err) {
        token = undefined;
        this.set('dropped', err as Error);
        await this.sleep(backoffDelay(this.attempt++, this.retry, this.opts.backoff, this.opts.random), signal);
        continue;
      }
      reason = 'connect';
      if (signal.aborted) return;
      const outcome = this.useEventSource ? await this.viaEventSource(token, signal) : await this.viaFetch(token, signal);
      if (signal.aborted) return;
      switch (outcome.kind) {
        case 'unsupported':
          this.useEventSource = true;
          continue;
        case 'expired':
          // The token ran out (a stream opened with it ends then too): ask for
          // a fresh one and reconnect at once, but not in a tight loop.
          this.unauthorized++;
          if (this.unauthorized > 2) {
            this.set('fatal', new HeraldError(401, 'token_expired', 'getToken keeps returning an expired token'));
            return;
          }
          reason = 'expired';
          this.set('dropped');
          continue;
        case 'unauthorized':
          this.unauthorized++;
          if (!this.opts.getToken || this.unauthorized > 1) {
            this.set('fatal', outcome.error);
            return;
          }
          reason = 'expired';
          this.set('dropped', outcome.error);
          await this.sleep(backoffDelay(this.attempt++, this.retry, this.opts.backoff, this.opts.random), signal);
          continue;
        case 'fatal':
          this.set('fatal', outcome.error);
          return;
        case 'dropped':
          this.set('dropped', outcome.error);
          await this.sleep(backoffDelay(this.attempt++, Math.max(this.retry, outcome.floor ?? 0), this.opts.backoff, this.opts.random), signal);
      }
    }
  }

  private streamURL(extra: Record<string, string>, topics = this.opts.topics): string {
    const u = new URL(this.opts.url.replace(/\/+$/, '') + '/v1/events', typeof location !== 'undefined' ? location.href : undefined);
    for (const t of topics) u.searchParams.append('topic', t);
    for (const [k, v] of Object.entries(extra)) if (v) u.searchParams.set(k, v);
    return u.toString();
  }

  private opened(): void {
    this.attempt = 0;
    this.unauthorized = 0;
    this.set('opened');
  }

  private async viaFetch(token: string | null | undefined, signal: AbortSignal): Promise<Outcome> {
    const f = this.opts.fetch ?? fetch;
    const headers: Record<string, string> = { Accept: 'text/event-stream' };
    if (token) headers['Authorization'] = 'Bearer ' + token;
    if (this.lastEventId && !this.lastEventId.startsWith('{')) headers['Last-Event-ID'] = this.lastEventId;
    // This attempt's own abort: close(), or the idle watchdog. A connection
    // that died without a FIN (a laptop's network switched) never ends a
    // read; Herald's heartbeat comments prove a live one.
    const attempt = new AbortController();
    const onAbort = () => attempt.abort();
    signal.addEventListener('abort', onAbort);
    const idleMs = this.opts.idleTimeout ?? 45000;
    let idle: ReturnType<typeof setTimeout> | undefined;
    let stalled = false;
    const arm = () => {
      if (idle !== undefined) clearTimeout(idle);
      if (idleMs > 0)
        idle = setTimeout(() => {
          stalled = true;
          attempt.abort();
        }, idleMs);
    };
    const stalledError = () => new Error(`no data from the stream for ${idleMs} ms`);
    try {
      arm();
      return await this.fetchStream(f, headers, attempt.signal, arm, () => (stalled ? stalledError() : undefined));
    } finally {
      if (idle !== undefined) clearTimeout(idle);
      signal.removeEventListener('abort', onAbort);
    }
  }

  private async fetchStream(
    f: typeof fetch,
    headers: Record<string, string>,
    signal: AbortSignal,
    arm: () => void,
    stalled: () => Error | undefined,
  ): Promise<Outcome> {
    let resp: Response;
    try {
      resp = await f(this.streamURL({}), {
        headers,
        signal,
        cache: 'no-store',
        credentials: this.opts.withCredentials ? 'include' : 'same-origin',
      });
    } catch (err) {
      return { kind: 'dropped', error: stalled() ?? (err as Error) };
    }
    arm();
    if (resp.status !== 200) {
      const error = await HeraldError.fromResponse(resp);
      if (resp.status === 401) return error.code === 'token_expired' ? { kind: 'expired' } : { kind: 'unauthorized', error };
      if (resp.status === 400 || resp.status === 403 || resp.status === 404) return { kind: 'fatal', error };
      return { kind: 'dropped', error, floor: retryAfter(resp) };
    }
    if (!(resp.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
      return { kind: 'fatal', error: new HeraldError(resp.status, 'not_event_stream', 'the answer is not text/event-stream') };
    }
    if (!resp.body) return { kind: 'unsupported' };
    this.opened();
    const parser = new SSEParser(
      {
        onMessage: (msg) => {
          this.lastEventId = msg.lastEventId;
          this.on.message(msg);
        },
        onRetry: (ms) => {
          this.retry = ms;
        },
      },
      this.lastEventId,
    );
    const reader = resp.body.getReader();
    const decoder = new TextDecoder('utf-8', { ignoreBOM: true }); // the parser drops the one BOM
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        arm();
        parser.push(decoder.decode(value, { stream: true }));
        // An id-only block moves the cursor without an event.
        this.lastEventId = parser.lastEventId;
      }
      return { kind: 'dropped' };
    } catch (err) {
      return { kind: 'dropped', error: stalled() ?? (err as Error) };
    } finally {
      parser.end();
      reader.cancel().catch(() => {});
    }
  }

  // With EventSource the topic: field is lost, so each topic gets a stream of
  // its own and events are tagged with it; the cursor is kept per topic.
  private esCursors: Record<string, string> = {};

  private esListener(es: EventSource): (ev: Event) => void {
    const cached = (es as unknown as { __herald?: (ev: Event) => void }).__herald;
    if (cached) return cached;
    const topic = (es as unknown as { __topic: string }).__topic;
    const fn = (ev: Event) => {
      const m = ev as MessageEvent<string>;
      this.esCursors[topic] = m.lastEventId;
      this.lastEventId = this.opts.topics.length === 1 ? m.lastEventId : JSON.stringify(this.esCursors);
      this.on.message({ type: m.type, data: m.data, lastEventId: m.lastEventId, topic });
    };
    (es as unknown as { __herald: (ev: Event) => void }).__herald = fn;
    return fn;
  }

  private closeSources(): void {
    for (const es of this.sources) es.close();
    this.sources = [];
  }

  private viaEventSource(token: string | null | undefined, signal: AbortSignal): Promise<Outcome> {
    const ES = this.opts.EventSource ?? EventSource;
    if (this.opts.topics.length === 1 && this.lastEventId) this.esCursors[this.opts.topics[0]!] = this.lastEventId;
    return new Promise<Outcome>((resolve) => {
      let opened = 0;
      let finished = false;
      const finish = (o: Outcome) => {
        if (finished) return;
        finished = true;
        this.closeSources();
        signal.removeEventListener('abort', onAbort);
        resolve(o);
      };
      const onAbort = () => finish({ kind: 'dropped' });
      signal.addEventListener('abort', onAbort);
      const types = new Set(['message', CONNECTED, GAP, ...(this.opts.eventTypes?.() ?? [])]);
      for (const topic of this.opts.topics) {
        const url = this.streamURL({ lastEventID: this.esCursors[topic] ?? '', access_token: token ?? '' }, [topic]);
        const es = new ES(url, { withCredentials: !!this.opts.withCredentials });
        (es as unknown as { __topic: string }).__topic = topic;
        this.sources.push(es);
        const listener = this.esListener(es);
        for (const t of types) es.addEventListener(t, listener);
        es.onopen = () => {
          if (++opened === this.opts.topics.length) this.opened();
        };
        // EventSource hides the status: an error before open may be a refusal;
        // we retry with backoff and a fresh token either way.
        es.onerror = () => finish({ kind: 'dropped', error: new Error('EventSource error') });
      }
    });
  }
}
