// Every client library resumes: a client that connects, receives nothing and
// loses its connection must, on reconnecting by itself, get every event
// published meanwhile, once and in order. That works only if the library stored
// the cursor from Herald's opening block, and only if that block did not break
// an ordinary onmessage handler (JSON.parse of the data).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventSource } from 'eventsource';
import { startHerald, startProxy, startStatic, launchBrowser, waitFor } from './harness.js';

const N = 5; // events published while the client is disconnected
const TEST_TIMEOUT = 60000;

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

// A browser client runs on a page of its own; its log is window.herald.
function browserClient(kind) {
  return async (t, url) => {
    const page = await browser.context.newPage();
    const pageErrors = [];
    page.on('pageerror', (err) => pageErrors.push(String(err)));
    t.after(() => page.close());
    await page.goto(statics.origin + '/');
    await page.waitForFunction(() => window.ready === true, null, { timeout: 10000 });
    await page.evaluate(([k, u]) => window.startClient(k, u), [kind, url]);
    return {
      log: () => page.evaluate(() => window.herald),
      pageErrors,
    };
  };
}

// The Node library, with the handler its README shows.
async function nodeClient(t, url) {
  const log = { opens: 0, received: [], errors: [] };
  const es = new EventSource(url);
  t.after(() => es.close());
  es.onopen = () => { log.opens++; };
  es.onmessage = (ev) => {
    try {
      log.received.push({ event: ev.type, data: JSON.parse(ev.data) });
    } catch (err) {
      log.errors.push(String(err));
    }
  };
  return { log: () => structuredClone(log), pageErrors: [] };
}

const libraries = [
  ['EventSource', 'native EventSource (Chromium)', browserClient('EventSource')],
  ['event-source-polyfill', 'event-source-polyfill (Chromium)', browserClient('event-source-polyfill')],
  ['fetch-event-source', '@microsoft/fetch-event-source (Chromium)', browserClient('fetch-event-source')],
  ['eventsource', 'eventsource (Node)', nodeClient],
];

for (const [id, name, open] of libraries) {
  // Each test: a drop before the first event, then resume.
  test(name, { timeout: TEST_TIMEOUT }, async (t) => {
    const herald = await startHerald({ corsOrigin: statics.origin });
    t.after(() => herald.stop());
    const proxy = await startProxy(herald);
    t.after(() => proxy.close());
    const topic = `clients/${id}`;
    const client = await open(t, `${proxy.url}/v1/events?topic=${encodeURIComponent(topic)}`);

    // published: the events the handler saw, other than Herald's opening one
    // (which only fetch-event-source hands to onmessage; its {} must parse).
    const published = (log) => log.received.filter((m) => m.event !== 'herald.connected');
    const describe = async () => {
      const log = await client.log();
      return `received ${JSON.stringify(log.received)}, handler errors ${JSON.stringify(log.errors)}, ` +
        `page errors ${JSON.stringify(client.pageErrors)}, cursor sent on each stream request ${JSON.stringify(proxy.streams)}`;
    };

    // Connected, with nothing to receive but the opening block.
    await waitFor('connected', 15000, async () => (await client.log()).opens >= 1 && proxy.streams.length >= 1);
    await sleep(300); // the opening block follows the headers
    let log = await client.log();
    assert.deepEqual(published(log), [], 'nothing was published yet');

    // The network goes down; events are published; it comes back.
    proxy.drop();
    await herald.publish(topic, Array.from({ length: N }, (_, n) => ({ n })));
    await sleep(100);
    proxy.up();

    try {
      await waitFor(`${N} events after reconnecting`, 20000, async () => published(await client.log()).length >= N);
    } catch (err) {
      assert.fail(`${err.message}: ${await describe()}`);
    }
    await sleep(500); // a duplicate would arrive now
    log = await client.log();
    assert.deepEqual(published(log).map((m) => m.data), Array.from({ length: N }, (_, n) => ({ n })),
      `every event once, in order: ${await describe()}`);
    assert.deepEqual(log.errors, [], `no handler error: ${await describe()}`);
    assert.ok(proxy.streams.length >= 2, `the library reconnected by itself: ${await describe()}`);
    const resumed = proxy.streams[proxy.streams.length - 1];
    assert.notEqual(resumed, '', 'the reconnection carried a cursor');
    t.diagnostic(`${name}: ${proxy.streams.length} stream requests; resumed with cursor ${resumed}`);
  });
}
