// Who is online, the send form, and a room.
import { useEffect, useId, useRef, useState, type FormEvent } from 'react';
import { useHerald, usePresence, useTopic, type HeraldEvent } from '@herald/react';
import { USER_PATTERN } from './api.js';

export function Online({ me, onPick }: { me: string; onPick: (user: string) => void }) {
  const { users, loading, error } = usePresence('rooms/lobby');
  return (
    <section className="card" aria-labelledby="online-h">
      <h2 id="online-h">
        Online <span className="count">{loading ? '' : `(${users.length})`}</span>
      </h2>
      {error && <p className="error">{error.message}</p>}
      <ul className="people" data-testid="online-users" aria-busy={loading}>
        {users.map((u) => (
          <li key={u} data-user={u}>
            <span className="avatar" aria-hidden="true">
              {u.slice(0, 1).toUpperCase()}
            </span>
            <span className="name">
              {u}
              {u === me && <span className="you"> (you)</span>}
            </span>
            {u !== me && (
              <button type="button" className="quiet" onClick={() => onPick(u)} aria-label={`Write to ${u}`}>
                Write
              </button>
            )}
          </li>
        ))}
      </ul>
      {!loading && users.length <= 1 && <p className="hint">Open this page in another window as someone else: they show up here.</p>}
    </section>
  );
}

export function SendForm({ me, to, setTo }: { me: string; to: string; setTo: (to: string) => void }) {
  const herald = useHerald();
  const { users } = usePresence('rooms/lobby');
  const [title, setTitle] = useState('');
  const [body, setBody] = useState('');
  const [status, setStatus] = useState<{ ok: boolean; text: string } | null>(null);
  const [sending, setSending] = useState(false);
  const id = useId();
  const toInput = useRef<HTMLInputElement>(null);
  useEffect(() => {
    if (to) toInput.current?.focus();
  }, [to]);

  const send = async (e: FormEvent) => {
    e.preventDefault();
    if (sending) return;
    const name = to.trim().toLowerCase();
    if (!USER_PATTERN.test(name)) return setStatus({ ok: false, text: 'Whom to? Give a user name (a-z, 0-9, _ and -).' });
    if (!title.trim()) return setStatus({ ok: false, text: 'Give it a title.' });
    setSending(true);
    setStatus(null);
    try {
      await herald.request('/v1/notifications', { body: { to: [name], type: 'demo.message', title: title.trim(), body: body.trim(), data: { from: me } } });
      setStatus({ ok: true, text: `Sent to ${name}.` });
      setTitle('');
      setBody('');
    } catch (err) {
      setStatus({ ok: false, text: `Not sent: ${(err as Error).message}` });
    } finally {
      setSending(false);
    }
  };
  return (
    <section className="card" aria-labelledby="send-h">
      <h2 id="send-h">Send a notification</h2>
      <form onSubmit={send} className="stack" noValidate>
        <label htmlFor={id + 'to'}>To</label>
        <input
          ref={toInput}
          id={id + 'to'}
          data-testid="send-to"
          value={to}
          onChange={(e) => setTo(e.target.value)}
          list={id + 'people'}
          autoCapitalize="none"
          spellCheck={false}
          maxLength={32}
          placeholder="bob"
        />
        <datalist id={id + 'people'}>
          {users
            .filter((u) => u !== me)
            .map((u) => (
              <option key={u} value={u} />
            ))}
        </datalist>
        <label htmlFor={id + 'title'}>Title</label>
        <input id={id + 'title'} data-testid="send-title" value={title} onChange={(e) => setTitle(e.target.value)} maxLength={200} />
        <label htmlFor={id + 'body'}>Message</label>
        <textarea id={id + 'body'} data-testid="send-body" value={body} onChange={(e) => setBody(e.target.value)} rows={3} maxLength={2000} />
        <button type="submit" data-testid="send-button" aria-disabled={sending}>
          {sending ? 'Sending…' : 'Send'}
        </button>
        <p className={status?.ok === false ? 'error' : 'hint'} role="status">
          {status?.text ?? ''}
        </p>
      </form>
    </section>
  );
}

const ROOM_PATTERN = /^[a-z0-9_-]{1,32}$/;

interface Entry {
  key: string;
  from: string;
  text: string;
}

interface Chat {
  from?: string;
  text?: string;
}

export function Room({ me }: { me: string }) {
  const herald = useHerald();
  const [input, setInput] = useState('lobby');
  const [room, setRoom] = useState('lobby');
  const [message, setMessage] = useState('');
  const [error, setError] = useState('');
  const id = useId();
  const name = input.trim().toLowerCase();
  const valid = ROOM_PATTERN.test(name);
  // The room follows the input once typing pauses (or at once on Enter).
  useEffect(() => {
    if (!valid || name === room) return;
    const t = setTimeout(() => setRoom(name), 400);
    return () => clearTimeout(t);
  }, [name, valid, room]);

  const send = async (e: FormEvent) => {
    e.preventDefault();
    const target = valid ? name : room;
    if (target !== room) setRoom(target);
    const text = message.trim();
    if (!text) return;
    setError('');
    try {
      // A room just switched to may not be on the stream yet, and a topic
      // new to the stream starts at its newest event: publish once the
      // stream carries it, or the sender would never see the message.
      await herald.ready(`rooms/${target}`);
      await herald.request('/v1/publish', { body: { topic: `rooms/${target}`, type: 'chat', data: { from: me, text } } });
      setMessage('');
    } catch (err) {
      setError(`Not sent: ${(err as Error).message}`);
    }
  };
  return (
    <section className="card room" aria-labelledby="room-h">
      <h2 id="room-h">
        Room <span className="count">rooms/{room}</span>
      </h2>
      <form
        className="row"
        onSubmit={(e) => {
          e.preventDefault();
          if (valid) setRoom(name);
        }}
      >
        <label htmlFor={id + 'room'}>Room</label>
        <input
          id={id + 'room'}
          data-testid="room-name"
          value={input}
          onChange={(e) => setInput(e.target.value)}
          autoCapitalize="none"
          spellCheck={false}
          maxLength={32}
          aria-invalid={!valid}
          aria-describedby={id + 'roomhint'}
        />
      </form>
      <p id={id + 'roomhint'} className={valid ? 'hint' : 'error'}>
        {valid ? 'Everyone in the same room sees its messages.' : 'A room name is 1 to 32 of a-z, 0-9, _ and -.'}
      </p>
      <Members room={room} />
      <RoomLog key={room} room={room} me={me} />
      <form onSubmit={send} className="row">
        <label htmlFor={id + 'msg'} className="sr-only">
          Message to rooms/{valid ? name : room}
        </label>
        <input id={id + 'msg'} data-testid="room-message" value={message} onChange={(e) => setMessage(e.target.value)} maxLength={500} placeholder="Say something" />
        <button type="submit" data-testid="room-send">
          Send
        </button>
      </form>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

function Members({ room }: { room: string }) {
  const { users, loading } = usePresence(`rooms/${room}`);
  return <p className="hint">{loading ? 'Who is here…' : users.length ? `Here: ${users.join(', ')}` : 'Nobody here yet.'}</p>;
}

function RoomLog({ room, me }: { room: string; me: string }) {
  const [entries, setEntries] = useState<Entry[]>([]);
  const list = useRef<HTMLOListElement>(null);
  useTopic(`rooms/${room}`, 'chat', (ev: HeraldEvent<Chat>) => {
    const d = ev.data ?? {};
    setEntries((e) => [...e.slice(-99), { key: ev.id, from: String(d.from ?? '?'), text: String(d.text ?? '') }]);
  });
  useEffect(() => {
    const el = list.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [entries]);
  return (
    <ol ref={list} className="log" data-testid="room-log" aria-label={`Messages in rooms/${room}`} aria-live="polite" tabIndex={0}>
      {entries.length === 0 && <li className="hint empty">No messages yet.</li>}
      {entries.map((e) => (
        <li key={e.key} data-testid="room-entry" className={e.from === me ? 'mine' : undefined}>
          <strong>{e.from}</strong> {e.text}
        </li>
      ))}
    </ol>
  );
}
