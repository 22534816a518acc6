// The user's inbox: the first page of GET /v1/notifications, kept live by the
// events Herald pushes to users/{user}.
import type { HeraldEvent } from '@herald/client';
import type { Hub } from './hub.js';
import { Store } from './store.js';

/** A notification as the inbox lists it and as the `notification` event carries it. */
export interface Notification<D = unknown> {
  id: string;
  type: string;
  title: string;
  body: string;
  data?: D;
  /** RFC 3339. */
  created_at: string;
  /** RFC 3339, or null while unread. */
  read_at: string | null;
}

export interface InboxSnapshot {
  /** Newest first: the first page, plus what arrived since. */
  items: Notification[];
  /** All the user's unread notifications (not only those listed). */
  unreadCount: number;
  /** True until the first answer, and while a refetch runs. */
  loading: boolean;
  /** The last failure (of a fetch or a mark), cleared by the next fetch. */
  error: Error | undefined;
}

interface Page {
  notifications: Notification[];
  unread_count: number;
  next: string | null;
}

export class InboxStore extends Store<InboxSnapshot> {
  private complete = false; // the page holds every notification
  private refetchQueued = false;

  constructor(
    hub: Hub,
    readonly user: string,
    readonly limit: number,
  ) {
    super(hub, 'users/' + user, { items: [], unreadCount: 0, loading: true, error: undefined });
  }

  protected async load(): Promise<Partial<InboxSnapshot>> {
    const page = await this.hub.request<Page>(`/v1/notifications?limit=${this.limit}`);
    this.complete = page.next == null;
    return { items: page.notifications ?? [], unreadCount: page.unread_count ?? 0 };
  }

  // A change to a notification the page does not hold (an older one): the
  // unread count cannot be kept right locally, so ask Herald.
  private unknown(): void {
    if (this.complete || this.refetchQueued) return;
    this.refetchQueued = true;
    queueMicrotask(() => {
      this.refetchQueued = false;
      void this.refetch();
    });
  }

  protected apply(ev: HeraldEvent, quiet = false): void {
    const { items, unreadCount } = this.snapshot;
    switch (ev.type) {
      case 'notification': {
        const n = ev.data as Notification;
        if (!n || typeof n.id !== 'string' || items.some((i) => i.id === n.id)) return;
        this.set({ items: [n, ...items], unreadCount: unreadCount + (n.read_at ? 0 : 1) }, quiet);
        return;
      }
      case 'notification.read': {
        const d = (ev.data ?? {}) as { ids?: string[]; all?: boolean };
        const now = new Date().toISOString();
        if (d.all) {
          this.set({ items: items.map((i) => (i.read_at ? i : { ...i, read_at: now })), unreadCount: 0 }, quiet);
          return;
        }
        const ids = new Set(d.ids ?? []);
        let marked = 0;
        const next = items.map((i) => {
          if (!ids.has(i.id)) return i;
          ids.delete(i.id);
          if (i.read_at) return i;
          marked++;
          return { ...i, read_at: now };
        });
        if (marked) this.set({ items: next, unreadCount: Math.max(0, unreadCount - marked) }, quiet);
        if (ids.size) this.unknown();
        return;
      }
      case 'notification.deleted': {
        const id = (ev.data as { id?: string } | null)?.id;
        const gone = items.find((i) => i.id === id);
        if (!gone) {
          this.unknown();
          return;
        }
        this.set({ items: items.filter((i) => i !== gone), unreadCount: Math.max(0, unreadCount - (gone.read_at ? 0 : 1)) }, quiet);
        return;
      }
    }
  }

  /**
   * markRead marks one notification read: at once on the page, then on
   * Herald, which tells the user's other tabs and devices. A failure lands in
   * `error` and the inbox is fetched again; the promise does not reject.
   */
  markRead = async (id: string): Promise<void> => {
    const { items, unreadCount } = this.snapshot;
    const n = items.find((i) => i.id === id);
    if (n && !n.read_at) {
      const now = new Date().toISOString();
      this.set({ items: items.map((i) => (i === n ? { ...i, read_at: now } : i)), unreadCount: Math.max(0, unreadCount - 1) });
    }
    try {
      await this.hub.request(`/v1/notifications/${encodeURIComponent(id)}/read`, { method: 'POST' });
    } catch (err) {
      this.failed(err);
    }
  };

  /** markAllRead marks every notification of the user read (see markRead). */
  markAllRead = async (): Promise<void> => {
    const now = new Date().toISOString();
    this.set({ items: this.snapshot.items.map((i) => (i.read_at ? i : { ...i, read_at: now })), unreadCount: 0 });
    try {
      await this.hub.request('/v1/notifications/read-all', { method: 'POST' });
    } catch (err) {
      this.failed(err);
    }
  };

  private failed(err: unknown): void {
    void this.refetch().then(() => this.set({ error: err instanceof Error ? err : new Error(String(err)) }));
  }
}
