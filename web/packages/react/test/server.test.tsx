// On a server (no DOM): the provider and the hooks render their initial
// state and open nothing.
import { renderToString } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import { HeraldProvider, useConnectionState, useNotifications, usePresence, useTopic } from '../src/index.js';
import { FakeHerald } from './fakes.js';

function Page() {
  const state = useConnectionState();
  const { unreadCount, loading } = useNotifications();
  const { users } = usePresence('rooms/lobby');
  useTopic('rooms/lobby', () => {});
  return <p>{`${state} ${unreadCount} ${loading} ${users.length}`}</p>;
}

describe('server rendering', () => {
  it('renders the initial state without connecting', async () => {
    const h = new FakeHerald();
    const html = renderToString(
      <HeraldProvider url="http://herald.test" user="alice" fetch={h.fetch} share={false}>
        <Page />
      </HeraldProvider>,
    );
    expect(html).toBe('<p>idle 0 true 0</p>');
    await new Promise((res) => setTimeout(res, 20));
    expect(h.streams).toHaveLength(0);
    expect(h.calls).toHaveLength(0);
  });
});
