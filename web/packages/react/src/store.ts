// Store: a snapshot that React reads with useSyncExternalStore, shared by the
// components that use it, live while at least one of them is mounted, and
// fetched again from Herald's REST API when the stream cannot vouch for it.
import type { HeraldEvent } from '@herald/client';
import type { Hub } from './hub.js';

// How long a store waits for the stream to open before it fetches anyway, ms.
const FALLBACK_MS = 3000;

export abstract class Store<S extends { loading: boolean; error: Error | undefined }> {
  protected snapshot: S;
  private listeners = new Set<() => void>();
  private refs = 0;
  private offs: (() => void)[] = [];
  private fetching: Promise<void> | undefined;
  private queued: Promise<void> | undefined; // the run asked for while one was running
  private pending: HeraldEvent[] | undefined; // events that arrived during a fetch
  private fetchedAny = false;
  private fetchedOpen = false; // a fetch began while the stream was open on the topic
  private fallback: ReturnType<typeof setTimeout> | undefined;
  private wasOpen = false;
  /** Fetch again each time the stream opens again (for state the stream's history may not hold). */
  protected refetchOnReconnect = false;
  /** Called with true when the store starts and false when it stops (the hub keeps live stores only). */
  onLive: ((live: boolean) => void) | undefined;

  constructor(
    protected hub: Hub,
    /** The stream topic whose events keep the snapshot live. */
    protected topic: string,
    private initial: S,
  ) {
    this.snapshot = initial;
  }

  getSnapshot = (): S => this.snapshot;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  };

  protected set(next: Partial<S>, quiet = false): void {
    this.snapshot = { ...this.snapshot, ...next };
    if (!quiet) for (const l of [...this.listeners]) l();
  }

  /**
   * acquire keeps the store live until the returned function is called; the
   * last release stops it a microtask later, so StrictMode's unmount and
   * mount again neither stops nor refetches it.
   */
  acquire(): () => void {
    this.refs++;
    if (this.refs === 1 && this.offs.length === 0) this.start();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.refs--;
      queueMicrotask(() => {
        if (this.refs === 0) this.stop();
      });
    };
  }

  private start(): void {
    // A store started again shows no stale snapshot: it loads afresh (the
    // events of the time it was stopped are not known).
    if (this.snapshot !== this.initial) this.set(this.initial);
    this.onLive?.(true);
    this.fetchedAny = false;
    this.fetchedOpen = false;
    this.wasOpen = false;
    this.offs = [
      this.hub.register(this.topic),
      this.hub.on(this.topic, '', (ev) => this.event(ev)),
      this.hub.onGap((topics) => {
        // A gap on our topic: some of its events are lost, the snapshot may be stale.
        if (topics.includes(this.topic)) void this.refetch();
      }),
      this.hub.subscribe(() => this.check()),
    ];
    // A stream that does not open soon (Herald refuses a topic, the network
    // is down) should not keep the page empty: fetch without it.
    this.fallback = setTimeout(() => {
      this.fallback = undefined;
      if (!this.fetchedAny) void this.refetch();
    }, FALLBACK_MS);
    this.check();
  }

  private stop(): void {
    for (const off of this.offs) off();
    this.offs = [];
    if (this.fallback !== undefined) clearTimeout(this.fallback);
    this.fallback = undefined;
    this.onLive?.(false);
  }

  /**
   * check fetches once the stream is open on the topic: what the answer
   * misses then arrives as events. The stream resumes from its cursor after
   * a reconnect (and says herald.gap when it cannot), so a reconnect alone
   * calls for no refetch. A stream closed for good still gets a fetch, so
   * the page shows what it can.
   */
  private check(): void {
    const state = this.hub.getState();
    const reopened = state === 'open' && !this.wasOpen;
    this.wasOpen = state === 'open';
    if (state === 'open' && this.hub.carries(this.topic)) {
      if (!this.fetchedOpen || (reopened && this.refetchOnReconnect)) void this.refetch();
    } else if (state === 'closed' && !this.fetchedAny) {
      void this.refetch();
    }
  }

  private event(ev: HeraldEvent): void {
    if (this.pending) this.pending.push(ev);
    else this.apply(ev);
  }

  /**
   * refetch loads the snapshot again; events that arrive meanwhile are
   * applied to the answer. It resolves once a fetch that began after the
   * call has ended.
   */
  refetch = (): Promise<void> => {
    // A fetch asked for while one runs: one more runs after it (however
    // many ask), and the promise is that run's, whose answer is newer.
    if (this.fetching) {
      return (this.queued ??= this.fetching.then(() => {
        this.queued = undefined;
        return this.refetch();
      }));
    }
    this.fetchedAny = true;
    if (this.hub.getState() === 'open' && this.hub.carries(this.topic)) this.fetchedOpen = true;
    this.pending = [];
    if (!this.snapshot.loading) this.set({ loading: true } as Partial<S>);
    const run = async () => {
      let next: Partial<S> | undefined;
      let error: Error | undefined;
      try {
        next = await this.load();
      } catch (err) {
        error = err instanceof Error ? err : new Error(String(err));
      }
      const pending = this.pending ?? [];
      this.pending = undefined;
      this.snapshot = { ...this.snapshot, ...next, loading: false, error };
      // Applied in order to the answer: each is a no-op when the answer
      // already holds it.
      for (const ev of pending) this.apply(ev, true);
      this.set({});
    };
    const p = run().finally(() => {
      this.fetching = undefined;
    });
    this.fetching = p;
    return p;
  };

  /** load fetches the state from Herald. */
  protected abstract load(): Promise<Partial<S>>;

  /** apply changes the snapshot by an event of the topic (quiet: set(next, true), the caller notifies). */
  protected abstract apply(ev: HeraldEvent, quiet?: boolean): void;
}
