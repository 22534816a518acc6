// Pages that use Herald without @herald/client, the way apps do today: one
// with the browser's own EventSource (token in ?access_token=), one with the
// event-source-polyfill package (token in an Authorization header). Both
// receive, and both resume from their last event id with nothing lost and
// nothing twice, first after every connection is cut (events published
// meanwhile) and then after herald is killed and restarted on the same port
// and data dir (events published right after the restart).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startHerald, startProxy, startStatic, launchBrowser, token, waitFor, screenshot } from './harness.mjs';

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

const pages = [
  {
    name: "the browser's EventSource",
    path: '/eventsource.html',
    shot: 'eventsource',
    // The browser sends the id back in the Last-Event-ID header.
    cursor: (r) => r.lastEventID,
    auth: (r, tok) => r.query.get('access_token') === tok && r.authorization === '',
  },
  {
    name: 'event-source-polyfill',
    path: '/polyfill.html',
    shot: 'event-source-polyfill',
    // The polyfill sends it as ?lastEventId= (a header would need a preflight
    // on every reconnect in old browsers).
    cursor: (r) => r.lastEventID || r.query.get('lastEventId') || '',
    auth: (r, tok) => r.authorization === `Bearer ${tok}` && !r.query.has('access_token'),
  },
];

for (const p of pages) {
  test(`a page using ${p.name} receives, and resumes by its last event id after a cut and after a restart of herald`, { timeout: 90000 }, async (t) => {
    const herald = await startHerald({ corsOrigin: statics.origin });
    t.after(() => herald.stop());
    const proxy = await startProxy(herald);
    t.after(() => proxy.close());
    const user = `es-${p.shot}`;
    const topic = `users/${user}`;
    const tok = token(user);

    const page = await browser.context.newPage();
    t.after(() => page.close());
    const errors = [];
    page.on('pageerror', (err) => errors.push(String(err)));
    await page.goto(statics.origin + p.path);
    await page.waitForFunction(() => window.ready === true, null, { timeout: 10000 });
    await page.evaluate((o) => window.start(o), { url: proxy.url, topics: [topic], token: tok });
    const log = () => page.evaluate(() => window.log);
    const received = async () => (await log()).received.length;

    await waitFor('open', 10000, async () => (await log()).opens === 1);
    await herald.publish(topic, [1, 2, 3]);
    await waitFor('the first three', 10000, async () => (await received()) === 3);

    // Every connection cut, and refused for a while: 4 to 6 are published
    // while the page has no stream.
    proxy.drop();
    await waitFor('the page sees the cut', 10000, async () => (await log()).errors >= 1);
    await herald.publish(topic, [4, 5, 6]);
    await sleep(600); // a few refused reconnects
    proxy.up();
    await waitFor('4 to 6 after the cut', 15000, async () => (await received()) >= 6);

    // herald killed and restarted on the same port and data dir; 7 to 9 are
    // published at once, before the page is back.
    await herald.restart();
    await herald.publish(topic, [7, 8, 9]);
    await waitFor('7 to 9 after the restart', 20000, async () => (await received()) >= 9);
    await sleep(500); // duplicates, if any, would arrive now

    const l = await log();
    assert.deepEqual(l.received.map((e) => e.data), [1, 2, 3, 4, 5, 6, 7, 8, 9], 'every event, once, in order');
    assert.equal(new Set(l.received.map((e) => e.id)).size, 9, 'nine distinct event ids');
    assert.ok(l.opens >= 3, `reconnected after the cut and after the restart (opened ${l.opens} times)`);
    const reqs = proxy.requests;
    assert.ok(reqs.length >= 3, `streams asked for: ${reqs.length}`);
    assert.equal(p.cursor(reqs[0]), '', 'the first stream starts without a cursor');
    for (const [i, r] of reqs.entries()) {
      assert.ok(p.auth(r, tok), `stream ${i}: the token where the page puts it`);
      if (i > 0) assert.notEqual(p.cursor(r), '', `stream ${i}: a reconnect carries the last event id`);
    }
    assert.deepEqual(errors, [], 'no page errors');
    t.diagnostic(`${p.name}: ${reqs.length} stream requests, screenshot ${await screenshot(page, p.shot)}`);
  });
}
