// Leader election among the tabs of an origin. One tab, the leader, holds the
// stream and relays what it receives over a BroadcastChannel; the others
// follow. With the Web Locks API the leader is whoever holds an exclusive
// lock: the browser releases it when that tab closes or crashes and hands it
// to the next tab waiting. Without it, the leader sends heartbeats and a
// follower that misses them for `timeoutMs` claims the role; among
// simultaneous claimants the smallest id wins.

export interface ChannelLike {
  postMessage(msg: unknown): void;
  onmessage: ((ev: MessageEvent) => void) | null;
  close(): void;
}

export interface LocksLike {
  request(name: string, options: { signal?: AbortSignal }, callback: (lock: unknown) => Promise<unknown>): Promise<unknown>;
}

export interface ElectionOptions {
  channel: ChannelLike;
  /** The lock's name (the channel's, for one stream). */
  name: string;
  /** navigator.locks, or null to use heartbeats. */
  locks?: LocksLike | null;
  /** How often the leader says it is alive (heartbeat mode), ms. */
  heartbeatMs?: number;
  /** How long without a heartbeat before followers claim, ms. */
  timeoutMs?: number;
  /** How long a new tab listens for a leader before claiming, and how long a claim waits for rivals, ms. */
  claimMs?: number;
  id?: string;
  onLeader(): void;
  /** The tab lost the role to another (heartbeat mode only, after a split). */
  onFollower?(): void;
  /** A message of the application's, from another tab. */
  onMessage(msg: unknown): void;
}

type Wire = { h: 'hb' | 'hello' | 'claim' | 'bye'; from: string } | { h: 'app'; from: string; msg: unknown };

export function randomId(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}

export class Election {
  readonly id: string;
  leader = false;
  private closed = false;
  private lastHeartbeat = 0;
  private claiming: Set<string> | null = null;
  private timers: ReturnType<typeof setTimeout>[] = [];
  private interval: ReturnType<typeof setInterval> | undefined;
  private release: (() => void) | undefined;
  private lockAbort: AbortController | undefined;

  constructor(private o: ElectionOptions) {
    this.id = o.id ?? randomId();
  }

  start(): void {
    this.o.channel.onmessage = (ev) => this.receive(ev.data as Wire);
    this.send({ h: 'hello', from: this.id });
    if (this.o.locks) {
      this.lockAbort = typeof AbortController === 'function' ? new AbortController() : undefined;
      this.o.locks
        .request(this.o.name, { signal: this.lockAbort?.signal }, () => {
          if (this.closed) return Promise.resolve();
          return new Promise<void>((resolve) => {
            this.release = resolve;
            this.become();
          });
        })
        .catch(() => {}); // aborted by close()
      return;
    }
    const hb = this.o.heartbeatMs ?? 1000;
    const timeout = this.o.timeoutMs ?? 3 * hb;
    this.lastHeartbeat = Date.now() - timeout + (this.o.claimMs ?? 250);
    this.interval = setInterval(() => this.tick(timeout), Math.min(hb, this.o.claimMs ?? 250));
  }

  /** post sends an application message to the other tabs. */
  post(msg: unknown): void {
    this.send({ h: 'app', from: this.id, msg });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.leader) this.send({ h: 'bye', from: this.id });
    this.leader = false;
    this.release?.();
    this.lockAbort?.abort();
    if (this.interval !== undefined) clearInterval(this.interval);
    for (const t of this.timers) clearTimeout(t);
    this.o.channel.onmessage = null;
    this.o.channel.close();
  }

  private send(w: Wire): void {
    if (!this.closed || w.h === 'bye') this.o.channel.postMessage(w);
  }

  private become(): void {
    if (this.closed || this.leader) return;
    this.leader = true;
    this.claiming = null;
    if (!this.o.locks) this.send({ h: 'hb', from: this.id });
    this.o.onLeader();
  }

  private tick(timeout: number): void {
    if (this.closed) return;
    if (this.leader) {
      this.send({ h: 'hb', from: this.id });
      return;
    }
    if (!this.claiming && Date.now() - this.lastHeartbeat >= timeout) this.claim();
  }

  private claim(): void {
    if (this.o.locks || this.leader || this.claiming || this.closed) return;
    this.claiming = new Set([this.id]);
    this.send({ h: 'claim', from: this.id });
    this.timers.push(
      setTimeout(() => {
        const rivals = this.claiming;
        this.claiming = null;
        if (!rivals || this.closed) return;
        const smallest = [...rivals].sort()[0];
        if (smallest === this.id) this.become();
        else this.lastHeartbeat = Date.now(); // let the winner speak
      }, this.o.claimMs ?? 250),
    );
  }

  private receive(w: Wire): void {
    if (this.closed || !w || w.from === this.id) return;
    switch (w.h) {
      case 'app':
        this.o.onMessage(w.msg);
        return;
      case 'hb':
        this.lastHeartbeat = Date.now();
        this.claiming = null;
        if (this.leader && !this.o.locks && w.from < this.id) {
          // Two leaders (a partition of timers): the larger id steps down.
          this.leader = false;
          this.o.onFollower?.();
        }
        return;
      case 'hello':
        // A new tab: the application answers it with its state (via onMessage
        // of its own 'hello'), the election with a heartbeat.
        if (this.leader && !this.o.locks) this.send({ h: 'hb', from: this.id });
        this.o.onMessage({ t: 'hello' });
        return;
      case 'claim':
        if (this.leader) {
          if (!this.o.locks) this.send({ h: 'hb', from: this.id });
        } else if (this.claiming) {
          this.claiming.add(w.from);
        } else if (!this.o.locks && Date.now() - this.lastHeartbeat >= (this.o.timeoutMs ?? 3 * (this.o.heartbeatMs ?? 1000))) {
          this.claim();
          (this.claiming as Set<string> | null)?.add(w.from);
        }
        return;
      case 'bye':
        if (!this.o.locks) {
          this.lastHeartbeat = 0;
          this.claim();
        }
        return;
    }
  }
}
