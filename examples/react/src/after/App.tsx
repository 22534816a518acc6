// AFTER: the same screen on Herald. One stream per browser (shared by its
// tabs) carrying users/{user} and rooms/{id}; it resumes from its cursor
// after a reconnect, so nothing sent meanwhile is lost. The inbox and its
// unread count come from Herald, marking read reaches every tab and device,
// and the room's state is pushed on each change instead of polled.
import { HeraldProvider, useConnectionState, useNotifications, useTopic } from '@herald/react';
import { useEffect, useState } from 'react';
import { config, newer, Screen, type RoomState } from '../screen';

export function App() {
  const c = config();
  return (
    // getToken is called before every (re)connect: an expired token is
    // replaced, not reused as the polyfill's header was.
    <HeraldProvider url={c.herald} user={c.user} getToken={() => c.token}>
      <Notifications />
    </HeraldProvider>
  );
}

function Notifications() {
  const c = config();
  const state = useConnectionState();
  const { items, unreadCount, markRead } = useNotifications();
  const room = useRoomState(c.api, c.room);
  return <Screen status={state} notifications={items} unread={unreadCount} onRead={(id) => void markRead(id)} room={room} />;
}

/**
 * useRoomState follows rooms/{id}: every new state arrives on the stream. A
 * late joiner fetches the current state once the stream is open (so no change
 * falls between the two) and keeps the newer of what it has.
 */
function useRoomState(api: string, id: string): RoomState | null {
  const [room, setRoom] = useState<RoomState | null>(null);
  useTopic<RoomState>(`rooms/${id}`, 'state', (ev) => setRoom((prev) => newer(prev, ev.data)));
  const open = useConnectionState() === 'open';
  useEffect(() => {
    if (!open) return;
    fetch(`${api}/rooms/${encodeURIComponent(id)}/state`, { cache: 'no-store' })
      .then((r) => (r.ok ? (r.json() as Promise<RoomState>) : null))
      .then((s) => s && setRoom((prev) => newer(prev, s)))
      .catch(() => {});
  }, [api, id, open]);
  return room;
}
