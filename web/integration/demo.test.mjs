// The demo and admin pages that `herald serve -demo` serves, in Chromium.
// Two browser contexts are two users: each sees the other online, alice
// sends bob a notification through the send form, bob sees its toast and an
// unread count of 1, in his second tab too, and marking it read in one tab
// brings the other's count to 0. The admin page, given the publish key, shows
// this node's live stats. What alice says in the lobby room shows in bob's
// room log. Screenshots of both pages are saved.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startHerald, launchChromium, publishKey, waitFor, screenshot } from './harness.mjs';

const WAIT = 15000; // the bound of every wait on a page

let chromium;

before(async () => {
  chromium = await launchChromium();
});

after(async () => {
  await chromium?.close();
});

// newUser opens a browser context of its own (its own storage: one user).
async function newContext(t) {
  const context = await chromium.newContext({ viewport: { width: 1100, height: 800 } });
  context.setDefaultTimeout(WAIT);
  t.after(() => context.close());
  return context;
}

// open loads url in a new tab of context, noting the page's errors and the
// Content-Security-Policy violations it reports.
async function open(context, url) {
  const page = await context.newPage();
  page.__errors = [];
  page.on('pageerror', (err) => page.__errors.push(String(err)));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy|Refused to/i.test(msg.text())) page.__errors.push(msg.text());
  });
  await page.goto(url, { timeout: WAIT });
  return page;
}

const byTestId = (id) => `[data-testid="${id}"]`;

// text waits until the element's trimmed text is want, and returns it.
async function text(page, id, want, what) {
  const got = () => page.locator(byTestId(id)).first().textContent({ timeout: WAIT }).then((s) => (s ?? '').trim());
  try {
    await waitFor(what, WAIT, async () => (await got()) === want);
  } catch (err) {
    throw new Error(`${err.message} (the ${id} shows ${JSON.stringify(await got().catch(() => null))}, want ${JSON.stringify(want)})`);
  }
  return want;
}

test('two users: presence, a notification to the other, its toast and unread count, read in one tab updates the other, a room message', { timeout: 120000 }, async (t) => {
  const herald = await startHerald({ jwt: false, extra: ['-demo'] });
  t.after(() => herald.stop());

  const alice = await open(await newContext(t), `${herald.url}/?user=alice`);
  const bobContext = await newContext(t);
  const bob = await open(bobContext, `${herald.url}/?user=bob`);
  await text(alice, 'connection-state', 'open', "alice's page open");
  await text(bob, 'connection-state', 'open', "bob's page open");
  await text(bob, 'unread-count', '0', "bob's unread count before");

  // Each sees the other online.
  const online = (page, user) => page.locator(`${byTestId('online-users')} [data-user="${user}"]`);
  await online(alice, 'bob').waitFor({ state: 'attached', timeout: WAIT });
  await online(bob, 'alice').waitFor({ state: 'attached', timeout: WAIT });

  // alice sends bob a notification with the form.
  const title = `Hello bob ${Date.now()}`;
  await alice.locator(byTestId('send-to')).fill('bob');
  await alice.locator(byTestId('send-title')).fill(title);
  await alice.locator(byTestId('send-body')).fill('Sent from the browser test.');
  await alice.locator(byTestId('send-button')).click();

  // bob sees the toast and an unread count of 1.
  await bob.locator(byTestId('toast'), { hasText: title }).first().waitFor({ state: 'attached', timeout: WAIT });
  await text(bob, 'unread-count', '1', "bob's unread count after the notification");
  t.diagnostic(`screenshot ${await screenshot(bob, 'demo-bob-toast')}`);

  // bob's second tab, same context: the same count.
  const bob2 = await open(bobContext, `${herald.url}/?user=bob`);
  await text(bob2, 'connection-state', 'open', "bob's second tab open");
  await text(bob2, 'unread-count', '1', "bob's second tab's unread count");

  // bob marks it read in the first tab; the second tab's count goes to 0.
  await bob.locator(byTestId('inbox-toggle')).click();
  await bob.locator(byTestId('inbox')).waitFor({ state: 'visible', timeout: WAIT });
  const note = bob.locator(`${byTestId('notification')}[data-read="false"]`, { hasText: title });
  await note.waitFor({ state: 'visible', timeout: WAIT });
  const id = await note.getAttribute('data-id');
  assert.ok(id, 'the notification has a data-id');
  await note.locator(byTestId('mark-read')).click();
  await bob.locator(`${byTestId('notification')}[data-id="${id}"][data-read="true"]`).waitFor({ state: 'attached', timeout: WAIT });
  await text(bob, 'unread-count', '0', "bob's first tab's unread count after marking read");
  await text(bob2, 'unread-count', '0', "bob's second tab's unread count after marking read in the first");

  // The room view: what alice says in the lobby shows in bob's log.
  const said = `hi all ${Date.now()}`;
  assert.equal(await alice.locator(byTestId('room-name')).inputValue(), 'lobby', 'the room is the lobby by default');
  await alice.locator(byTestId('room-message')).fill(said);
  await alice.locator(byTestId('room-send')).click();
  await bob.locator(`${byTestId('room-log')} ${byTestId('room-entry')}`, { hasText: said }).waitFor({ state: 'attached', timeout: WAIT });

  // Nothing else went to bob, and alice's own count is untouched.
  await text(alice, 'unread-count', '0', "alice's unread count");
  await sleep(300);
  for (const [name, page] of [['alice', alice], ['bob', bob], ['bob2', bob2]]) {
    assert.deepEqual(page.__errors, [], `${name}: no page errors or CSP violations`);
  }
  t.diagnostic(`screenshot ${await screenshot(alice, 'demo-alice')}`);
  t.diagnostic(`screenshot ${await screenshot(bob, 'demo-bob-inbox')}`);
  await bob2.setViewportSize({ width: 390, height: 844 });
  t.diagnostic(`screenshot ${await screenshot(bob2, 'demo-bob-phone')}`);
});

test('the admin page, given the publish key, shows this node live', { timeout: 90000 }, async (t) => {
  const herald = await startHerald({ jwt: false, extra: ['-demo'] });
  t.after(() => herald.stop());
  const context = await newContext(t);

  // Some traffic for the stats: a demo user's page and a few publishes.
  const demo = await open(context, `${herald.url}/?user=carol`);
  await text(demo, 'connection-state', 'open', 'the demo page open');
  const admin = await open(context, `${herald.url}/admin`);
  await admin.locator(byTestId('admin-credential')).fill(publishKey);
  await admin.locator(byTestId('admin-connect')).click();
  await text(admin, 'connection-state', 'open', 'the admin page open');
  for (let i = 0; i < 5; i++) {
    await herald.publish('rooms/admin-test', [{ i }]);
    await sleep(200);
  }
  const node = admin.locator(byTestId('node')).first();
  await node.waitFor({ state: 'visible', timeout: WAIT });
  assert.ok(await node.getAttribute('data-node'), 'a node element names its node');
  await admin.locator(byTestId('totals')).waitFor({ state: 'visible', timeout: WAIT });
  await sleep(2500); // one more stats event: the charts have two points
  assert.deepEqual(admin.__errors, [], 'no page errors or CSP violations');
  t.diagnostic(`screenshot ${await screenshot(admin, 'admin')}`);
});
