// BEFORE: notifications from the Spring service's own SSE endpoint (one
// SseEmitter per tab, routed to the right server through Kafka), the list
// from the service's table, and the room's state polled every 500 ms.
import { useEffect, useState } from 'react';
import { config, Screen, type Notification, type RoomState } from '../screen';
import { SSEProvider, useSSE } from './SSEProvider';

export function App() {
  const c = config();
  return (
    <SSEProvider url={`${c.api}/api/sse/subscribe`} token={c.token}>
      <Notifications />
    </SSEProvider>
  );
}

function Notifications() {
  const c = config();
  const auth = { Authorization: `Bearer ${c.token}` };
  const [items, setItems] = useState<Notification[]>([]);

  // The list is fetched once; a notification sent between this answer and
  // the stream's connection is in neither (and one sent during a reconnect
  // is lost for good: SseEmitter has no replay).
  useEffect(() => {
    fetch(`${c.api}/api/notifications`, { headers: auth })
      .then((r) => r.json() as Promise<Notification[]>)
      .then(setItems)
      .catch(() => {});
  }, []); // eslint-disable-line react-hooks/exhaustive-deps

  const connected = useSSE('notification', (data) => {
    const n = JSON.parse(data) as Notification;
    setItems((prev) => [n, ...prev.filter((p) => p.id !== n.id)]);
  });

  // Marked read here only: the user's other tabs and devices keep it unread.
  const markRead = (id: string) => {
    setItems((prev) => prev.map((n) => (n.id === id ? { ...n, read_at: new Date().toISOString() } : n)));
    void fetch(`${c.api}/api/notifications/${id}/read`, { method: 'POST', headers: auth });
  };

  const room = usePolling<RoomState>(`${c.api}/rooms/${encodeURIComponent(c.room)}/state`, 500);

  return (
    <Screen
      status={connected ? 'connected' : 'reconnecting'}
      notifications={items}
      unread={items.filter((n) => !n.read_at).length}
      onRead={markRead}
      room={room}
    />
  );
}

/** usePolling GETs url every interval ms: two requests a second per user, changed or not. */
function usePolling<T>(url: string, interval: number): T | null {
  const [value, setValue] = useState<T | null>(null);
  useEffect(() => {
    let stop = false;
    const poll = () =>
      fetch(url, { cache: 'no-store' })
        .then((r) => (r.ok ? (r.json() as Promise<T>) : null))
        .then((v) => !stop && v !== null && setValue(v))
        .catch(() => {});
    void poll();
    const t = setInterval(poll, interval);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, [url, interval]);
  return value;
}
