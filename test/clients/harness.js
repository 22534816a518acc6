// What the client tests run against: a real herald process, a TCP proxy in
// front of it that can cut every connection, a static server for the browser
// page, and Chromium driven by playwright-core.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..', '..');

export const publishKey = 'client-tests-publish-key-0123456789';

let builtBinary;

// heraldBinary returns $HERALD_BIN, or builds cmd/herald once.
export function heraldBinary() {
  if (process.env.HERALD_BIN) {
    return process.env.HERALD_BIN;
  }
  if (!builtBinary) {
    const dir = mkdtempSync(join(tmpdir(), 'herald-bin-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    builtBinary = join(dir, 'herald');
    execFileSync('go', ['build', '-o', builtBinary, './cmd/herald'], { cwd: repoRoot, stdio: 'inherit' });
  }
  return builtBinary;
}

// startHerald runs `herald serve` on a free loopback port with a fresh data dir.
export async function startHerald({ corsOrigin } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'herald-data-'));
  const args = ['serve', '-addr', '127.0.0.1:0', '-data-dir', dataDir, '-publish-key', publishKey,
    // A short reconnection delay keeps the tests quick; the libraries read it
    // from the stream's retry: field.
    '-retry', '250ms'];
  if (corsOrigin) {
    args.push('-cors-origins', corsOrigin);
  }
  const proc = spawn(heraldBinary(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let logs = '';
  const exited = new Promise((resolve) => proc.on('exit', resolve));
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('herald did not listen within 20s\n' + logs)), 20000);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      logs += chunk;
      const m = /msg=listening addr=(\S+)/.exec(logs);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`herald exited (${code}) before listening\n${logs}`));
    });
  });
  const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
  return {
    host,
    port,
    url: `http://${addr}`,
    logs: () => logs,
    // publish sends the events as one batch and resolves once they are stored.
    async publish(topic, datas) {
      const body = JSON.stringify(datas.map((data) => ({ topic, data })));
      const resp = await fetch(`http://${addr}/v1/publish`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${publishKey}`, 'Content-Type': 'application/json' },
        body,
      });
      if (resp.status !== 200) {
        throw new Error(`publish: ${resp.status} ${await resp.text()}`);
      }
      return resp.json();
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// startProxy forwards loopback TCP connections to target. drop() closes every
// connection and refuses new ones until up(), as a network outage would: the
// client library notices on its own and keeps retrying. It notes, for each
// stream request, the cursor the client sent.
export async function startProxy(target) {
  const conns = new Set();
  const streams = []; // one entry per GET /v1/events: the cursor sent, or ''
  let down = false;
  const server = net.createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    const pair = { client, upstream };
    conns.add(pair);
    const close = () => {
      client.destroy();
      upstream.destroy();
      conns.delete(pair);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    client.on('data', (chunk) => {
      // A keep-alive connection may carry several requests; each starts a chunk.
      const head = chunk.toString('latin1');
      const m = /^GET (\/v1\/events\S*) HTTP/.exec(head);
      if (m) {
        const header = /\r\nlast-event-id: *([^\r]*)\r\n/i.exec(head);
        const query = new URL(m[1], 'http://x').searchParams;
        streams.push((header && header[1]) || query.get('lastEventId') || query.get('lastEventID') || '');
      }
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    streams,
    drop() {
      down = true;
      for (const { client, upstream } of conns) {
        client.destroy();
        upstream.destroy();
      }
      conns.clear();
    },
    up() {
      down = false;
    },
    async close() {
      this.drop();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

// startStatic serves the test page and the libraries' browser builds.
export async function startStatic() {
  const modules = join(here, 'node_modules');
  const files = {
    '/': ['page.html', join(here, 'page.html')],
    '/event-source-polyfill.js': ['js', join(modules, 'event-source-polyfill', 'src', 'eventsource.js')],
  };
  const server = http.createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    let file = files[path]?.[1];
    const m = /^\/fetch-event-source\/(\w+)(\.js)?$/.exec(path);
    if (m) {
      // The ESM build imports './parse' without an extension.
      file = join(modules, '@microsoft', 'fetch-event-source', 'lib', 'esm', m[1] + '.js');
    }
    let body;
    try {
      body = file && readFileSync(file);
    } catch {
      body = undefined;
    }
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': file.endsWith('.html') ? 'text/html; charset=utf-8' : 'text/javascript; charset=utf-8' });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

// launchBrowser starts Debian's Chromium: playwright-core cannot download one.
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  const userDataDir = mkdtempSync(join(tmpdir(), 'herald-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    timeout: 30000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

// waitFor polls cond until it returns true, or throws after ms.
export async function waitFor(what, ms, cond) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not within ${ms}ms`);
    }
    await sleep(50);
  }
}
