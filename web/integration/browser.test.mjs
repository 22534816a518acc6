// @herald/client in Chromium: ten tabs of one user hold exactly one stream
// (Herald's /metrics says so), every tab receives every event, and closing
// the leader tab hands the stream to another with nothing lost, in order; the
// EventSource fallback resumes across stream ends; tabs get everything across
// a SIGKILL and restart of herald.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startHerald, startProxy, startStatic, launchBrowser, token, waitFor, screenshot } from './harness.mjs';

const TABS = 10;
const EVENTS = 60; // published one by one while the leader closes
const CLOSE_AT = 20;

let statics;
let browser;

before(async () => {
  statics = await startStatic();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await statics?.close();
});

async function openTabs(t, herald, user, locks, n = TABS) {
  const tok = token(user);
  const pages = [];
  for (let i = 0; i < n; i++) {
    const page = await browser.context.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(String(err)));
    page.__errors = errors;
    await page.goto(statics.origin + '/');
    await page.waitForFunction(() => window.ready === true, null, { timeout: 10000 });
    await page.evaluate((o) => window.start(o), { url: herald.url, token: tok, topics: [`users/${user}`], locks });
    pages.push(page);
  }
  t.after(async () => {
    for (const p of pages) if (!p.isClosed()) await p.close();
  });
  return pages;
}

const status = (pages) => Promise.all(pages.filter((p) => !p.isClosed()).map((p) => p.evaluate(() => window.heraldStatus())));

for (const [name, locks] of [['navigator.locks', true], ['heartbeats', false]]) {
  test(`ten tabs share one stream and the leader's close loses nothing (${name})`, { timeout: 120000 }, async (t) => {
    const herald = await startHerald({ corsOrigin: statics.origin });
    t.after(() => herald.stop());
    const user = locks ? 'tabs-locks' : 'tabs-hb';
    const pages = await openTabs(t, herald, user, locks);

    await waitFor('every tab open', 20000, async () => (await status(pages)).every((s) => s.state === 'open'));
    await waitFor('one leader tab', 10000, async () => (await status(pages)).filter((s) => s.leader).length === 1);
    await waitFor('one stream on the server', 10000, async () => (await herald.metric('herald_connections')) === 1);
    await sleep(500);
    assert.equal(await herald.metric('herald_connections'), 1, 'ten tabs, one stream');

    const st = await status(pages);
    const leader = pages[st.findIndex((s) => s.leader)];
    assert.ok(leader, 'a leader tab');
    const rest = pages.filter((p) => p !== leader);
    for (let i = 1; i <= EVENTS; i++) {
      await herald.publish(`users/${user}`, [i]);
      if (i === CLOSE_AT) await leader.close();
      await sleep(25);
    }
    await waitFor('every tab has every event', 30000, async () => (await status(rest)).every((s) => s.n >= EVENTS));
    await sleep(300); // duplicates, if any, would arrive now
    const want = Array.from({ length: EVENTS }, (_, i) => i + 1);
    for (const [i, p] of rest.entries()) {
      const log = await p.evaluate(() => window.log);
      assert.deepEqual(log.received.map((e) => e.data), want, `tab ${i}: every event, once, in order`);
      assert.deepEqual(log.gaps, [], `tab ${i}: no gap`);
      assert.deepEqual(p.__errors, [], `tab ${i}: no page errors`);
    }
    await waitFor('one new leader', 10000, async () => (await status(rest)).filter((s) => s.leader).length === 1);
    await waitFor('one stream again', 10000, async () => (await herald.metric('herald_connections')) === 1);
    t.diagnostic(`states of a follower: ${(await rest[0].evaluate(() => window.log.states)).join(' ')}`);
    const newLeader = rest[(await status(rest)).findIndex((s) => s.leader)];
    t.diagnostic(`screenshot ${await screenshot(newLeader, `ten-tabs-${locks ? 'locks' : 'heartbeats'}-new-leader`)}`);
  });
}

test('the EventSource fallback receives every topic and resumes across stream ends', { timeout: 60000 }, async (t) => {
  // -max-lifetime ends each stream after a second: the client reconnects
  // with ?lastEventID= and ?access_token= (EventSource cannot send headers).
  const herald = await startHerald({ corsOrigin: statics.origin, extra: ['-max-lifetime', '1s'] });
  t.after(() => herald.stop());
  const user = 'es-user';
  const tok = token(user, { subscribe: ['rooms/*'] });
  const page = await browser.context.newPage();
  t.after(() => page.close());
  const errors = [];
  page.on('pageerror', (err) => errors.push(String(err)));
  await page.goto(statics.origin + '/');
  await page.waitForFunction(() => window.ready === true, null, { timeout: 10000 });
  const topics = [`users/${user}`, 'rooms/es'];
  await page.evaluate((o) => window.start(o), { url: herald.url, token: tok, topics, transport: 'eventsource', share: false });
  await page.waitForFunction(() => window.client.state === 'open', null, { timeout: 10000 });
  const N = 12;
  for (let i = 1; i <= N; i++) {
    await herald.publish(topics[i % 2], [i]);
    await sleep(250); // across several stream ends
  }
  await waitFor('every event', 20000, async () => (await page.evaluate(() => window.log.received.length)) >= N);
  await sleep(300);
  const log = await page.evaluate(() => window.log);
  for (const [k, topic] of topics.entries()) {
    const want = Array.from({ length: N }, (_, i) => i + 1).filter((i) => i % 2 === k);
    assert.deepEqual(log.received.filter((e) => e.topic === topic).map((e) => e.data), want, topic);
  }
  assert.equal(log.received.length, N, 'no duplicates');
  assert.ok(log.states.filter((s) => s.startsWith('reconnecting')).length >= 2, `streams ended and resumed: ${log.states.join(' ')}`);
  assert.deepEqual(errors, []);
});

test('tabs sharing a stream get everything across a crash and restart of herald', { timeout: 90000 }, async (t) => {
  const herald = await startHerald({ corsOrigin: statics.origin });
  t.after(() => herald.stop());
  // The tabs connect through a proxy, which keeps them off the restarted
  // herald until the events of the outage are published.
  const proxy = await startProxy(herald);
  t.after(() => proxy.close());
  const user = 'restart-user';
  const topic = `users/${user}`;
  const pages = await openTabs(t, { url: proxy.url }, user, true, 3);
  await waitFor('every tab open', 20000, async () => (await status(pages)).every((s) => s.state === 'open'));
  await herald.publish(topic, [1, 2, 3]);
  await waitFor('first events', 10000, async () => (await status(pages)).every((s) => s.n === 3));
  await herald.publish(topic, [4, 5]); // stored; maybe not yet delivered when the kill comes
  await herald.kill(); // SIGKILL
  proxy.drop();
  await waitFor('every tab reconnecting', 10000, async () => (await status(pages)).every((s) => s.state === 'reconnecting'));
  await sleep(1000); // a few failed attempts: the backoff grows
  await herald.restart(); // same port, same data dir
  await herald.publish(topic, [6, 7, 8]); // while the tabs are still away
  assert.ok((await status(pages)).every((s) => s.state === 'reconnecting'), 'published before the tabs are back');
  proxy.up();
  await waitFor('every event in every tab', 40000, async () => (await status(pages)).every((s) => s.n >= 8));
  await sleep(500); // duplicates, if any, would arrive now
  for (const [i, p] of pages.entries()) {
    const log = await p.evaluate(() => window.log);
    assert.deepEqual(log.received.map((e) => e.data), [1, 2, 3, 4, 5, 6, 7, 8], `tab ${i}: every event, once, in order`);
    assert.deepEqual(log.gaps, [], `tab ${i}: no gap`);
    assert.equal((await p.evaluate(() => window.heraldStatus())).state, 'open');
    assert.deepEqual(p.__errors, [], `tab ${i}: no page errors`);
  }
  await waitFor('one stream again', 10000, async () => (await herald.metric('herald_connections')) === 1);
  assert.notEqual(proxy.streams.at(-1), '', 'the stream after the restart resumes from a cursor');
  t.diagnostic(`screenshot ${await screenshot(pages[0], 'client-after-restart')}`);
});
