// Stand-ins for the browser APIs the client uses: fetch with a scripted
// Herald behind it, BroadcastChannel, navigator.locks.
import type { ChannelLike, LocksLike } from '../src/tabs.js';

export interface FakeRequest {
  url: URL;
  headers: Record<string, string>;
  /** Push stream text; end() / fail() end the response body. */
  send(text: string): void;
  end(): void;
  aborted: boolean;
}

type Planned = { status: number; body?: unknown; headers?: Record<string, string> };

/** FakeHerald answers fetch: planned refusals first, then event streams. */
export class FakeHerald {
  requests: FakeRequest[] = [];
  plan: Planned[] = [];

  fetch = (async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const headers = { ...(init?.headers as Record<string, string>) };
    const url = new URL(String(input));
    const planned = this.plan.shift();
    let ctl!: ReadableStreamDefaultController<Uint8Array>;
    const enc = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({ start: (c) => void (ctl = c) });
    let open = true;
    const req: FakeRequest = {
      url,
      headers,
      aborted: false,
      send: (t) => open && ctl.enqueue(enc.encode(t)),
      end: () => {
        if (open) ctl.close();
        open = false;
      },
    };
    init?.signal?.addEventListener('abort', () => {
      req.aborted = true;
      if (open) ctl.error(new DOMException('aborted', 'AbortError'));
      open = false;
    });
    this.requests.push(req);
    if (planned) {
      return new Response(JSON.stringify(planned.body ?? {}), { status: planned.status, headers: { 'Content-Type': 'application/json', ...planned.headers } });
    }
    return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream; charset=utf-8' } });
  }) as typeof fetch;

  get last(): FakeRequest {
    return this.requests[this.requests.length - 1]!;
  }
}

/** A BroadcastChannel bus: messages reach the other channels of the name, asynchronously and in order. */
export class FakeBus {
  private channels = new Map<string, Set<FakeChannel>>();
  Channel: new (name: string) => ChannelLike;

  constructor() {
    const bus = this;
    this.Channel = class extends FakeChannel {
      constructor(name: string) {
        super(name, bus);
      }
    };
  }

  join(c: FakeChannel) {
    let set = this.channels.get(c.name);
    if (!set) this.channels.set(c.name, (set = new Set()));
    set.add(c);
  }

  leave(c: FakeChannel) {
    this.channels.get(c.name)?.delete(c);
  }

  post(from: FakeChannel, msg: unknown) {
    const data = structuredClone(msg);
    for (const c of this.channels.get(from.name) ?? []) {
      if (c !== from) setTimeout(() => c.deliver(data), 0);
    }
  }
}

export class FakeChannel implements ChannelLike {
  onmessage: ((ev: MessageEvent) => void) | null = null;
  private closed = false;
  constructor(
    readonly name: string,
    private bus: FakeBus,
  ) {
    bus.join(this);
  }
  postMessage(msg: unknown) {
    if (this.closed) throw new Error('InvalidStateError: channel closed');
    this.bus.post(this, msg);
  }
  deliver(data: unknown) {
    if (!this.closed) this.onmessage?.({ data } as MessageEvent);
  }
  close() {
    this.closed = true;
    this.bus.leave(this);
  }
}

/** FakeLocks grants each name to one holder at a time, in request order, as navigator.locks does. */
export class FakeLocks implements LocksLike {
  private queues = new Map<string, { cb: (l: unknown) => Promise<unknown>; resolve: (v: unknown) => void; reject: (e: unknown) => void }[]>();
  private held = new Set<string>();

  request(name: string, options: { signal?: AbortSignal }, cb: (lock: unknown) => Promise<unknown>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const entry = { cb, resolve, reject };
      let q = this.queues.get(name);
      if (!q) this.queues.set(name, (q = []));
      q.push(entry);
      options.signal?.addEventListener('abort', () => {
        const i = q!.indexOf(entry);
        if (i >= 0) {
          q!.splice(i, 1);
          reject(new DOMException('aborted', 'AbortError'));
        }
      });
      this.grant(name);
    });
  }

  private grant(name: string) {
    if (this.held.has(name)) return;
    const next = this.queues.get(name)?.shift();
    if (!next) return;
    this.held.add(name);
    Promise.resolve(next.cb({ name }))
      .then(next.resolve, next.reject)
      .finally(() => {
        this.held.delete(name);
        this.grant(name);
      });
  }
}
