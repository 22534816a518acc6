// What both versions of the screen show: the user's notifications and a
// room's live state (the examples/rooms service). Only how the data arrives
// differs between src/before and src/after.

/** Where the app's back end and Herald are; set on the page (index.html). */
export interface Config {
  /** The application's API (the Spring service before; examples/rooms here). */
  api: string;
  /** Herald's base URL. */
  herald: string;
  /** The signed-in user and a token for them. */
  user: string;
  token: string;
  room: string;
}

declare global {
  interface Window {
    APP_CONFIG?: Partial<Config>;
  }
}

export function config(): Config {
  const c = window.APP_CONFIG ?? {};
  return {
    api: c.api ?? '',
    herald: c.herald ?? 'http://127.0.0.1:8080',
    user: c.user ?? '42',
    token: c.token ?? '',
    room: c.room ?? '1',
  };
}

export interface Notification {
  id: string;
  title: string;
  body: string;
  created_at: string;
  read_at: string | null;
}

/** examples/rooms' state: GET /rooms/{id}/state, and each event on rooms/{id}. */
export interface RoomState {
  room: string;
  version: number;
  board: string[];
  moves: number;
}

/** The newer of two states: a stream and a fetch may answer in either order. */
export function newer(a: RoomState | null, b: RoomState): RoomState {
  return a && a.version >= b.version ? a : b;
}

export function Screen(props: {
  status: string;
  notifications: Notification[];
  unread: number;
  onRead: (id: string) => void;
  room: RoomState | null;
}) {
  return (
    <main>
      <p className="status">{props.status}</p>
      <h2>Notifications ({props.unread} unread)</h2>
      <ul>
        {props.notifications.map((n) => (
          <li key={n.id} className={n.read_at ? 'read' : 'unread'}>
            <b>{n.title}</b> {n.body}{' '}
            {!n.read_at && <button onClick={() => props.onRead(n.id)}>Mark read</button>}
          </li>
        ))}
      </ul>
      <h2>Room {props.room?.room ?? '…'}</h2>
      {props.room ? (
        <>
          <div className="board">
            {props.room.board.map((mark, i) => (
              <span key={i}>{mark}</span>
            ))}
          </div>
          <p>version {props.room.version}</p>
        </>
      ) : (
        <p>no state yet</p>
      )}
    </main>
  );
}
