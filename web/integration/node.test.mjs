// @herald/client in Node (its fetch transport) against a real herald.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from '../packages/client/dist/index.js';
import { startHerald, startProxy, token, waitFor } from './harness.mjs';

const TIMEOUT = 60000;

function track(client) {
  const log = { received: [], states: [], errors: [] };
  client.onState((s, err) => {
    log.states.push(s);
    if (err) log.errors.push(err);
  });
  client.on('*', (ev) => log.received.push(ev.data));
  return log;
}

test('receives, and resumes after a drop with every event published meanwhile', { timeout: TIMEOUT }, async (t) => {
  const herald = await startHerald();
  t.after(() => herald.stop());
  const proxy = await startProxy(herald);
  t.after(() => proxy.close());
  const tok = token('alice');
  const client = createClient({ url: proxy.url, topics: ['users/alice'], getToken: () => tok, share: false });
  t.after(() => client.close());
  const log = track(client);
  await waitFor('open', 10000, () => client.state === 'open');
  await herald.publish('users/alice', [1, 2, 3]);
  await waitFor('first three', 10000, () => log.received.length === 3);
  proxy.drop();
  await waitFor('reconnecting', 10000, () => client.state === 'reconnecting');
  await herald.publish('users/alice', [4, 5, 6]);
  await sleep(300);
  proxy.up();
  await waitFor('all six', 15000, () => log.received.length >= 6);
  await sleep(200);
  assert.deepEqual(log.received, [1, 2, 3, 4, 5, 6]);
  assert.ok(proxy.streams.length >= 2, 'reconnected');
  assert.equal(proxy.streams[0], '', 'the first stream starts without a cursor');
  assert.notEqual(proxy.streams.at(-1), '', 'the reconnect carries the cursor in Last-Event-ID');
  // createClient started it: 'connecting' came before the listener.
  assert.deepEqual(log.states.slice(0, 2), ['open', 'reconnecting']);
  assert.equal(log.states.at(-1), 'open');
});

test('an expired token is refreshed through getToken and the stream resumes', { timeout: TIMEOUT }, async (t) => {
  const herald = await startHerald();
  t.after(() => herald.stop());
  const stale = token('bob', { ttl: '1s' });
  await sleep(1500); // expired now (the server allows no leeway)
  const reasons = [];
  const client = createClient({
    url: herald.url,
    topics: ['users/bob'],
    share: false,
    getToken: (reason) => {
      reasons.push(reason);
      return reasons.length === 1 ? stale : token('bob');
    },
  });
  t.after(() => client.close());
  const log = track(client);
  await waitFor('open', 10000, () => client.state === 'open');
  assert.deepEqual(reasons, ['connect', 'expired']);
  await herald.publish('users/bob', ['hello']);
  await waitFor('event', 10000, () => log.received.length === 1);
  assert.deepEqual(log.received, ['hello']);
});

test('a stream that outlives its token reconnects with a fresh one and loses nothing', { timeout: TIMEOUT }, async (t) => {
  const herald = await startHerald();
  t.after(() => herald.stop());
  let n = 0;
  const client = createClient({
    url: herald.url,
    topics: ['users/carol'],
    share: false,
    getToken: () => token('carol', { ttl: ++n === 1 ? '2s' : '1h' }),
  });
  t.after(() => client.close());
  const log = track(client);
  await waitFor('open', 10000, () => client.state === 'open');
  const want = [];
  for (let i = 1; i <= 12; i++) {
    await herald.publish('users/carol', [i]);
    want.push(i);
    await sleep(250); // across the token's end, 2 s in
  }
  await waitFor('all events', 15000, () => log.received.length >= want.length);
  assert.deepEqual(log.received, want);
  assert.ok(n >= 2, `getToken was called ${n} times`);
  assert.ok(log.states.includes('reconnecting'), 'the stream ended with the token');
});

test('a topic the token does not grant closes the client with the error', { timeout: TIMEOUT }, async (t) => {
  const herald = await startHerald();
  t.after(() => herald.stop());
  const client = createClient({ url: herald.url, topics: ['users/dave'], getToken: () => token('erin'), share: false });
  t.after(() => client.close());
  const log = track(client);
  await waitFor('closed', 10000, () => client.state === 'closed');
  assert.equal(log.errors[0]?.status, 403);
  assert.equal(log.errors[0]?.code, 'forbidden_topic');
});
