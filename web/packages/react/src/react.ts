// HeraldProvider and the hooks.
import { createContext, createElement, useContext, useEffect, useLayoutEffect, useMemo, useRef, useState, useSyncExternalStore, type ReactNode } from 'react';
import type { ConnectionState, HeraldEvent } from '@herald/client';
import { Hub, type HubOptions } from './hub.js';
import type { InboxSnapshot } from './inbox.js';
import type { PresenceSnapshot } from './presence.js';

const HeraldContext = createContext<Hub | null>(null);

export interface HeraldProviderProps extends HubOptions {
  children?: ReactNode;
}

/**
 * HeraldProvider holds one Herald stream for the components under it. The
 * stream carries `topics`, `users/{user}` when `user` is given, and the
 * topics the hooks below register. It is made once: re-renders and route
 * changes do not reconnect it; a change of the topics reconnects it with its
 * cursor (so nothing is lost); a change of `url` or `user` makes a new one.
 * The other options are those of @herald/client's createClient, read when
 * the stream starts (getToken: the latest one given, at each call).
 */
export function HeraldProvider(props: HeraldProviderProps): ReactNode {
  const { children, ...opts } = props;
  const key = opts.url + '\n' + (opts.user ?? '');
  // A Hub has no side effect until connect(): making one in render is safe.
  const [held, setHeld] = useState(() => ({ key, hub: new Hub(opts) }));
  let hub = held.hub;
  if (held.key !== key) {
    hub = new Hub(opts);
    setHeld({ key, hub });
  }
  useEffect(() => {
    hub.setOptions(opts);
  });
  // The hooks of the children register their topics in their effects, which
  // run before this one: the stream starts with all of them.
  useEffect(() => {
    hub.connect();
    return () => hub.disconnect();
  }, [hub]);
  return createElement(HeraldContext.Provider, { value: hub }, children);
}

/**
 * useHerald returns the provider's Hub: `client` (the HeraldClient, once
 * started), `user`, `url`, `request(path, {method, body})` for Herald's
 * REST API with the provider's token, `ready(topic)`, and `on(topic, type,
 * handler)`. `client` is not reactive: it is set a microtask after the
 * provider mounts and replaced after a refusal, and no render follows; use
 * useTopic or `on` for events, useConnectionState for the state.
 */
export function useHerald(): Hub {
  const hub = useContext(HeraldContext);
  if (!hub) throw new Error('@herald/react: a Herald hook is used outside <HeraldProvider>');
  return hub;
}

// useLayoutEffect where there is a DOM (React 18 warns about it on a server).
const useIsomorphicLayoutEffect = typeof document !== 'undefined' ? useLayoutEffect : useEffect;

// useLatest keeps a ref to the latest value, so that effects need not depend on it.
function useLatest<T>(value: T) {
  const ref = useRef(value);
  useIsomorphicLayoutEffect(() => {
    ref.current = value;
  });
  return ref;
}

/**
 * useTopic adds topic to the stream and calls handler for each of its events
 * (of `type` only, when given). `topic` may be "*" for every topic of the
 * stream (nothing is added then). The handler may change on each render: the
 * latest one is called, with no re-subscription.
 */
export function useTopic<T = unknown>(topic: string, handler: (ev: HeraldEvent<T>) => void): void;
export function useTopic<T = unknown>(topic: string, type: string, handler: (ev: HeraldEvent<T>) => void): void;
export function useTopic<T = unknown>(topic: string, a: string | ((ev: HeraldEvent<T>) => void), b?: (ev: HeraldEvent<T>) => void): void {
  const hub = useHerald();
  const type = typeof a === 'string' ? a : '';
  const handler = useLatest((typeof a === 'string' ? b : a) as (ev: HeraldEvent<T>) => void);
  useEffect(() => {
    const release = topic === '*' ? () => {} : hub.register(topic);
    const off = hub.on(topic, type, (ev) => handler.current(ev as HeraldEvent<T>));
    return () => {
      off();
      release();
    };
  }, [hub, topic, type, handler]);
}

/** useTopics adds topics to the stream while the component is mounted (handlers, if any, with useTopic). */
export function useTopics(topics: readonly string[]): void {
  const hub = useHerald();
  const key = [...topics].sort().join('\n');
  useEffect(() => {
    const releases = key ? key.split('\n').map((t) => hub.register(t)) : [];
    return () => releases.forEach((r) => r());
  }, [hub, key]);
}

/** useConnectionState returns the stream's state: idle (not started yet), connecting, open, reconnecting, closed. */
export function useConnectionState(): ConnectionState {
  const hub = useHerald();
  return useSyncExternalStore(hub.subscribe, hub.getState, hub.getState);
}

/** useConnectionError returns the error of the last state change (a HeraldError when Herald refused), or undefined. */
export function useConnectionError(): Error | undefined {
  const hub = useHerald();
  return useSyncExternalStore(hub.subscribe, hub.getError, hub.getError);
}

export interface Notifications extends InboxSnapshot {
  /** Marks one read (at once here; Herald tells the other tabs). Never rejects: failures land in `error`. */
  markRead(id: string): Promise<void>;
  /** Marks all the user's notifications read. */
  markAllRead(): Promise<void>;
  /** Fetches the first page again. */
  refetch(): Promise<void>;
}

/**
 * useNotifications returns the inbox of the provider's user, live: the first
 * `limit` notifications (default 50), newest first, and the unread count.
 * Components using it share one copy.
 */
export function useNotifications(options: { limit?: number } = {}): Notifications {
  const hub = useHerald();
  const store = hub.inbox(options.limit ?? 50);
  useEffect(() => store.acquire(), [store]);
  const snap = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
  return useMemo(() => ({ ...snap, markRead: store.markRead, markAllRead: store.markAllRead, refetch: store.refetch }), [snap, store]);
}

export interface Presence extends PresenceSnapshot {
  refetch(): Promise<void>;
}

/**
 * usePresence returns who is on topic (the users with a stream on it), live
 * from presence/{topic}, which it adds to the stream. Herald must publish
 * presence events (-presence-events); the token must be allowed to
 * subscribe to topic.
 */
export function usePresence(topic: string): Presence {
  const hub = useHerald();
  const store = hub.presence(topic);
  useEffect(() => store.acquire(), [store]);
  const snap = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
  return useMemo(() => ({ ...snap, refetch: store.refetch }), [snap, store]);
}
