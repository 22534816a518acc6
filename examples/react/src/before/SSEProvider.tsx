// BEFORE: the SSEProvider most teams on Spring SseEmitter write. One
// EventSourcePolyfill per tab (the browser's EventSource cannot send an
// Authorization header), listeners registered per event name, and a reconnect
// that the polyfill does with the token of the first render.
import { EventSourcePolyfill } from 'event-source-polyfill';
import { createContext, useContext, useEffect, useRef, useState, type ReactNode } from 'react';

type Handler = (data: string) => void;

interface SSEContextValue {
  connected: boolean;
  subscribe(event: string, handler: Handler): () => void;
}

const SSEContext = createContext<SSEContextValue | null>(null);

export function SSEProvider({ url, token, children }: { url: string; token: string; children: ReactNode }) {
  const source = useRef<EventSourcePolyfill | null>(null);
  const handlers = useRef(new Map<string, Set<Handler>>());
  const [connected, setConnected] = useState(false);

  useEffect(() => {
    const es = new EventSourcePolyfill(url, {
      headers: { Authorization: `Bearer ${token}` },
      heartbeatTimeout: 60_000, // longer than the server's dummy-event interval
    });
    source.current = es;
    es.onopen = () => setConnected(true);
    es.onerror = () => setConnected(false); // the polyfill retries; events sent meanwhile are lost
    // The server sends a dummy "connect" event on subscribe so that the
    // response is flushed (SseEmitter); nothing listens to it.
    for (const event of handlers.current.keys()) listen(es, event);
    return () => {
      es.close();
      source.current = null;
    };
  }, [url, token]);

  function listen(es: EventSourcePolyfill, event: string) {
    es.addEventListener(event, (e) => {
      const data = (e as MessageEvent<string>).data;
      handlers.current.get(event)?.forEach((h) => h(data));
    });
  }

  const value: SSEContextValue = {
    connected,
    subscribe(event, handler) {
      let set = handlers.current.get(event);
      if (!set) {
        set = new Set();
        handlers.current.set(event, set);
        if (source.current) listen(source.current, event);
      }
      set.add(handler);
      return () => set.delete(handler);
    },
  };
  return <SSEContext.Provider value={value}>{children}</SSEContext.Provider>;
}

/** useSSE calls handler with the data of each event named event. */
export function useSSE(event: string, handler: Handler): boolean {
  const ctx = useContext(SSEContext);
  if (!ctx) throw new Error('useSSE outside <SSEProvider>');
  const latest = useRef(handler);
  latest.current = handler;
  const { subscribe } = ctx;
  useEffect(() => subscribe(event, (d) => latest.current(d)), [event]); // eslint-disable-line react-hooks/exhaustive-deps
  return ctx.connected;
}
