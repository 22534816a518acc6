// The signed-in page: the header (connection state, inbox button), the
// inbox, who is online, a send form, a room, and toasts.
import { useCallback, useEffect, useRef, useState, type KeyboardEvent, type Ref } from 'react';
import { useConnectionError, useConnectionState, useNotifications, useTopic, type HeraldEvent, type Notification } from '@herald/react';
import { Online, Room, SendForm } from './panels.js';

export interface DemoData {
  from?: string;
}

export function Demo({ me, onSignOut }: { me: string; onSignOut: () => void }) {
  const [inboxOpen, setInboxOpen] = useState(false);
  const [to, setTo] = useState('');
  const toggle = useRef<HTMLButtonElement>(null);
  const closeInbox = useCallback(() => {
    setInboxOpen(false);
    toggle.current?.focus();
  }, []);
  return (
    <div className="app">
      <header className="bar">
        <h1>Herald demo</h1>
        <p className="who">
          Signed in as <strong>{me}</strong>
        </p>
        <ConnectionBadge />
        <InboxButton ref={toggle} open={inboxOpen} onToggle={() => setInboxOpen((o) => !o)} />
        <button type="button" className="quiet" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <main className="main">
        {/* Kept mounted (hidden when closed): the toggle's aria-controls names it. */}
        <Inbox hidden={!inboxOpen} onClose={closeInbox} />
        <div className="grid">
          <Online me={me} onPick={setTo} />
          <SendForm me={me} to={to} setTo={setTo} />
          <Room me={me} />
        </div>
        <Toasts me={me} />
      </main>
    </div>
  );
}

function ConnectionBadge() {
  const state = useConnectionState();
  const error = useConnectionError();
  const shown = state === 'idle' ? 'connecting' : state;
  return (
    <p className={`conn conn-${shown}`} title={state === 'closed' && error ? error.message : undefined}>
      <span className="dot" aria-hidden="true" />
      <span className="sr-only">Connection: </span>
      <span data-testid="connection-state">{shown}</span>
      {state === 'closed' && error && <span className="sr-only"> ({error.message})</span>}
    </p>
  );
}

function InboxButton({ ref, open, onToggle }: { ref: Ref<HTMLButtonElement>; open: boolean; onToggle: () => void }) {
  const { unreadCount } = useNotifications();
  return (
    <button ref={ref} type="button" className="inbox-toggle" data-testid="inbox-toggle" aria-expanded={open} aria-controls="inbox" onClick={onToggle}>
      Inbox{' '}
      <span className={unreadCount ? 'badge' : 'badge badge-zero'} data-testid="unread-count">
        {unreadCount}
      </span>
      <span className="sr-only"> unread</span>
    </button>
  );
}

const time = (iso: string) => {
  const d = new Date(iso);
  return isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
};

function Inbox({ hidden, onClose }: { hidden: boolean; onClose: () => void }) {
  const { items, unreadCount, loading, error, markRead, markAllRead } = useNotifications();
  // Escape closes the inbox when the focus is in it, unless something inside
  // (a native control) has handled the key already.
  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key !== 'Escape' || e.defaultPrevented) return;
    e.preventDefault();
    onClose();
  };
  return (
    <section id="inbox" className="inbox card" data-testid="inbox" aria-labelledby="inbox-h" hidden={hidden} onKeyDown={onKeyDown}>
      <div className="inbox-head">
        <h2 id="inbox-h">Inbox</h2>
        {/* aria-disabled, not disabled: a button disabled while focused would drop the focus to the page. */}
        <button type="button" data-testid="mark-all-read" onClick={() => unreadCount > 0 && void markAllRead()} aria-disabled={unreadCount === 0}>
          Mark all read
        </button>
        <button type="button" className="quiet" onClick={onClose} aria-label="Close the inbox">
          Close
        </button>
      </div>
      {error && (
        <p className="error" role="alert">
          {error.message}
        </p>
      )}
      {loading && items.length === 0 && <p className="hint">Loading…</p>}
      {!loading && items.length === 0 && <p className="hint">Nothing yet. Notifications sent to you land here.</p>}
      <ul className="notes">
        {items.map((n) => (
          <NotificationItem key={n.id} n={n} onRead={() => void markRead(n.id)} />
        ))}
      </ul>
    </section>
  );
}

function NotificationItem({ n, onRead }: { n: Notification; onRead: () => void }) {
  const read = !!n.read_at;
  const from = (n.data as DemoData | undefined)?.from;
  return (
    <li className={read ? 'note' : 'note unread'} data-testid="notification" data-id={n.id} data-read={String(read)}>
      <div className="note-text">
        <p className="note-title">
          {!read && <span className="sr-only">Unread: </span>}
          {n.title || '(no title)'}
        </p>
        {n.body && <p className="note-body">{n.body}</p>}
        <p className="meta">
          {from ? `from ${from} · ` : ''}
          <time dateTime={n.created_at}>{time(n.created_at)}</time>
        </p>
      </div>
      <button type="button" data-testid="mark-read" onClick={() => !read && onRead()} aria-disabled={read} aria-label={read ? `"${n.title}" is read` : `Mark "${n.title}" read`}>
        {read ? 'Read' : 'Mark read'}
      </button>
    </li>
  );
}

interface Toast {
  key: string;
  title: string;
  body: string;
  from?: string;
}

const TOAST_MS = 8000;

function Toasts({ me }: { me: string }) {
  const [toasts, setToasts] = useState<Toast[]>([]);
  const timers = useRef(new Map<string, ReturnType<typeof setTimeout>>());
  const dismiss = useCallback((key: string) => {
    clearTimeout(timers.current.get(key));
    timers.current.delete(key);
    setToasts((t) => t.filter((x) => x.key !== key));
  }, []);
  useTopic(`users/${me}`, 'notification', (ev: HeraldEvent<Notification>) => {
    const n = ev.data;
    const key = `${n.id}-${ev.id}`;
    setToasts((t) => [...t.slice(-3), { key, title: n.title || '(no title)', body: n.body, from: (n.data as DemoData | undefined)?.from }]);
    timers.current.set(
      key,
      setTimeout(() => dismiss(key), TOAST_MS),
    );
  });
  useEffect(() => {
    const t = timers.current;
    return () => t.forEach((x) => clearTimeout(x));
  }, []);
  return (
    <div className="toasts" role="status" aria-live="polite">
      {toasts.map((t) => (
        <div key={t.key} className="toast" data-testid="toast">
          <div>
            <p className="toast-title">{t.title}</p>
            {t.body && <p className="toast-body">{t.body}</p>}
            {t.from && <p className="meta">from {t.from}</p>}
          </div>
          <button type="button" className="quiet" onClick={() => dismiss(t.key)} aria-label={`Dismiss "${t.title}"`}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
