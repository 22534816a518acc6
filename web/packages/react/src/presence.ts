// Who is on a topic: GET /v1/presence?topic=, kept live by the join and leave
// events of presence/{topic}.
import type { HeraldEvent } from '@herald/client';
import type { Hub } from './hub.js';
import { Store } from './store.js';

export interface PresenceSnapshot {
  /** The users with a stream on the topic, sorted. */
  users: string[];
  /** True until the first answer, and while a refetch runs. */
  loading: boolean;
  error: Error | undefined;
}

interface Answer {
  topic: string;
  users: { user: string; streams: number }[];
  user_count: number;
  streams: number;
  truncated: boolean;
}

const byId = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export class PresenceStore extends Store<PresenceSnapshot> {
  constructor(
    hub: Hub,
    readonly of: string,
  ) {
    super(hub, 'presence/' + of, { users: [], loading: true, error: undefined });
    // Presence events are best effort, and a node that dies publishes no
    // leave for its streams: after a reconnect, ask again.
    this.refetchOnReconnect = true;
  }

  protected async load(): Promise<Partial<PresenceSnapshot>> {
    const a = await this.hub.request<Answer>(`/v1/presence?topic=${encodeURIComponent(this.of)}`);
    return { users: (a.users ?? []).map((u) => u.user).sort(byId) };
  }

  protected apply(ev: HeraldEvent, quiet = false): void {
    const user = (ev.data as { user?: string } | null)?.user;
    if (typeof user !== 'string') return;
    const { users } = this.snapshot;
    const has = users.includes(user);
    if (ev.type === 'join' && !has) this.set({ users: [...users, user].sort(byId) }, quiet);
    else if (ev.type === 'leave' && has) this.set({ users: users.filter((u) => u !== user) }, quiet);
  }
}
