// @vitest-environment jsdom
// The demo page over a scripted Herald, two users side by side: sign-in,
// who is online, a notification sent by one and received by the other as a
// toast and in the inbox, marking read, and a room.
import { act, cleanup, fireEvent, render, waitFor, within } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';
import { App } from '../src/App.js';
import { FakeHerald } from '../../../packages/react/test/fakes.js';

afterEach(cleanup);

function page(h: FakeHerald, user: string) {
  const r = render(<App initialUser={user} fetch={h.fetch} options={{ fetch: h.fetch, share: false, topicsDelay: 5 }} />);
  return within(r.container);
}

const fill = (el: HTMLElement, value: string) => fireEvent.change(el, { target: { value } });

describe('demo', () => {
  it('signs in from the form, refusing a bad name', async () => {
    const h = new FakeHerald('nobody', { presence: true });
    const p = page(h, '');
    fill(p.getByTestId('user-name'), 'Not Valid!');
    fireEvent.click(p.getByTestId('sign-in'));
    expect(p.getByRole('alert').textContent).toMatch(/1 to 32/);
    expect(h.calls).toHaveLength(0);
    fill(p.getByTestId('user-name'), 'Carol');
    fireEvent.click(p.getByTestId('sign-in'));
    await waitFor(() => expect(p.getByTestId('connection-state').textContent).toBe('open'));
    expect(h.calls[0]).toMatchObject({ method: 'POST', path: '/v1/demo/token', body: { user: 'carol' } });
    expect(location.search).toBe('?user=carol');
    expect(h.open[0]!.headers['Authorization']).toBe('Bearer user:carol');
    fireEvent.click(p.getByText('Sign out'));
    expect(p.getByTestId('user-name')).toBeTruthy();
    await waitFor(() => expect(h.open).toHaveLength(0));
    expect(location.search).toBe('');
  });

  it('says so when Herald hands out no demo tokens', async () => {
    const h = new FakeHerald();
    h.refuse.set('POST /v1/demo/token', { status: 404, code: 'not_found' });
    const p = page(h, 'alice');
    await waitFor(() => expect(p.getByRole('alert').textContent).toMatch(/herald serve -demo/));
    expect(p.getByTestId('sign-in')).toBeTruthy();
  });

  it('two users: presence, a notification as a toast and in the inbox, marks, a room', async () => {
    const h = new FakeHerald('alice', { presence: true });
    const a = page(h, 'alice');
    await waitFor(() => expect(a.getByTestId('connection-state').textContent).toBe('open'));
    const b = page(h, 'bob');
    await waitFor(() => expect(b.getByTestId('connection-state').textContent).toBe('open'));
    // One stream each, on the lobby, its presence and the user's topic.
    expect(h.open.map((s) => s.topics.join(' '))).toEqual(['presence/rooms/lobby rooms/lobby users/alice', 'presence/rooms/lobby rooms/lobby users/bob']);
    const online = (p: typeof a) => [...p.getByTestId('online-users').querySelectorAll('[data-user]')].map((e) => e.getAttribute('data-user'));
    await waitFor(() => expect(online(a)).toEqual(['alice', 'bob']));
    await waitFor(() => expect(online(b)).toEqual(['alice', 'bob']));
    expect(b.getByTestId('unread-count').textContent).toBe('0');

    // Alice writes to Bob.
    fill(a.getByTestId('send-to'), 'bob');
    fill(a.getByTestId('send-title'), 'Lunch?');
    fill(a.getByTestId('send-body'), 'At noon');
    fireEvent.click(a.getByTestId('send-button'));
    await waitFor(() => expect(b.getByTestId('toast').textContent).toContain('Lunch?'));
    expect(b.getByTestId('toast').textContent).toContain('from alice');
    expect(h.calls.find((c) => c.path === '/v1/notifications' && c.method === 'POST')).toMatchObject({
      headers: { Authorization: 'Bearer user:alice' },
      body: { to: ['bob'], type: 'demo.message', title: 'Lunch?', body: 'At noon', data: { from: 'alice' } },
    });
    await waitFor(() => expect(b.getByTestId('unread-count').textContent).toBe('1'));
    expect(a.queryByTestId('toast')).toBeNull();
    expect(a.getByText('Sent to bob.')).toBeTruthy();

    // Bob opens his inbox and marks it read.
    const toggle = b.getByTestId('inbox-toggle');
    expect(toggle.getAttribute('aria-expanded')).toBe('false');
    // The element the toggle controls is there, hidden while closed.
    const controlled = toggle.closest('.app')!.querySelector<HTMLElement>(`[id="${toggle.getAttribute('aria-controls')}"]`)!;
    expect(controlled).toBe(b.getByTestId('inbox'));
    expect(controlled.hidden).toBe(true);
    fireEvent.click(toggle);
    expect(controlled.hidden).toBe(false);
    expect(toggle.getAttribute('aria-expanded')).toBe('true');
    const inbox = within(b.getByTestId('inbox'));
    const item = inbox.getByTestId('notification');
    expect(item.getAttribute('data-read')).toBe('false');
    expect(item.getAttribute('data-id')).toMatch(/^\d+$/);
    fill(a.getByTestId('send-to'), 'bob');
    fill(a.getByTestId('send-title'), 'Second');
    fireEvent.click(a.getByTestId('send-button'));
    await waitFor(() => expect(b.getByTestId('unread-count').textContent).toBe('2'));
    expect(inbox.getAllByTestId('notification')).toHaveLength(2);
    const markRead = within(inbox.getAllByTestId('notification')[1]!).getByTestId('mark-read') as HTMLButtonElement;
    markRead.focus();
    fireEvent.click(markRead);
    expect(b.getByTestId('unread-count').textContent).toBe('1');
    // Read now: the button says so but stays focusable and focused, and a click does nothing.
    expect(markRead.getAttribute('aria-disabled')).toBe('true');
    expect(markRead.disabled).toBe(false);
    expect(document.activeElement).toBe(markRead);
    await waitFor(() => expect(h.inbox.get('bob')!.filter((n) => n.read_at)).toHaveLength(1));
    const all = inbox.getByTestId('mark-all-read') as HTMLButtonElement;
    all.focus();
    fireEvent.click(all);
    await waitFor(() => expect(inbox.getAllByTestId('notification').map((n) => n.getAttribute('data-read'))).toEqual(['true', 'true']));
    expect(b.getByTestId('unread-count').textContent).toBe('0');
    expect(all.getAttribute('aria-disabled')).toBe('true');
    expect(all.disabled).toBe(false);
    expect(document.activeElement).toBe(all);
    const marks = () => h.calls.filter((c) => c.path.endsWith('/read') || c.path.endsWith('/read-all')).length;
    const before = marks();
    fireEvent.click(all);
    fireEvent.click(markRead);
    await new Promise((res) => setTimeout(res, 20));
    expect(marks()).toBe(before);
    // Escape closes the inbox only when the focus is in it, and not when handled already.
    fireEvent.keyDown(b.getByTestId('room-message'), { key: 'Escape' });
    expect(controlled.hidden).toBe(false);
    const handled = new KeyboardEvent('keydown', { key: 'Escape', bubbles: true, cancelable: true });
    handled.preventDefault();
    all.dispatchEvent(handled);
    expect(controlled.hidden).toBe(false);
    fireEvent.keyDown(all, { key: 'Escape' });
    expect(controlled.hidden).toBe(true);
    expect(toggle.getAttribute('aria-expanded')).toBe('false');
    expect(document.activeElement).toBe(toggle);

    // The lobby: what one says, both see.
    fill(a.getByTestId('room-message'), 'hello lobby');
    fireEvent.click(a.getByTestId('room-send'));
    const entries = (p: typeof a) => p.queryAllByTestId('room-entry').map((e) => e.textContent);
    await waitFor(() => expect(entries(b)).toEqual(['alice hello lobby']));
    await waitFor(() => expect(entries(a)).toEqual(['alice hello lobby']));
    expect(a.getByTestId('room-message')).toHaveProperty('value', '');

    // Bob moves to rooms/kitchen: his stream adds it, Alice's lobby no longer reaches him.
    fill(b.getByTestId('room-name'), 'kitchen');
    await waitFor(() => expect(h.open.find((s) => s.topics.includes('users/bob'))!.topics).toContain('rooms/kitchen'), { timeout: 3000 });
    await waitFor(() => expect(b.getByText(/Here: bob/)).toBeTruthy());
    expect(entries(b)).toEqual([]);
    fill(a.getByTestId('room-message'), 'still lobby');
    fireEvent.click(a.getByTestId('room-send'));
    await waitFor(() => expect(entries(a)).toEqual(['alice hello lobby', 'alice still lobby']));
    fill(b.getByTestId('room-message'), 'in the kitchen');
    fireEvent.click(b.getByTestId('room-send'));
    await waitFor(() => expect(entries(b)).toEqual(['bob in the kitchen']));
    expect(entries(a)).toEqual(['alice hello lobby', 'alice still lobby']);
    // Bob is still online in the lobby.
    expect(online(a)).toEqual(['alice', 'bob']);

    // Alice switches room and sends at once: the message is published once
    // her stream carries the new room, so she sees it.
    fill(a.getByTestId('room-name'), 'garden');
    fill(a.getByTestId('room-message'), 'first in the garden');
    fireEvent.click(a.getByTestId('room-send'));
    await waitFor(() => expect(entries(a)).toEqual(['alice first in the garden']), { timeout: 3000 });
    expect(h.calls.filter((c) => c.path === '/v1/publish').at(-1)).toMatchObject({ body: { topic: 'rooms/garden' } });

    // Bob signs out: Alice sees him leave.
    fireEvent.click(b.getByText('Sign out'));
    await waitFor(() => expect(online(a)).toEqual(['alice']));
    await act(async () => {});
  });
});
