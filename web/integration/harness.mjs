// What the integration tests run against: a real herald process (with a JWT
// secret, so that streams belong to users), a TCP proxy that can cut every
// connection, a static server for the browser pages, the built client and
// event-source-polyfill, and Debian's Chromium driven by playwright-core.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..', '..');

export const publishKey = 'web-tests-publish-key-0123456789abcdef';
const jwtSecret = 'web-tests-jwt-secret-0123456789abcdef-0123456789';

let builtBinary;

// heraldBinary returns $HERALD_BIN, or builds cmd/herald once.
export function heraldBinary() {
  if (process.env.HERALD_BIN) return process.env.HERALD_BIN;
  if (!builtBinary) {
    const dir = mkdtempSync(join(tmpdir(), 'herald-bin-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    builtBinary = join(dir, 'herald');
    execFileSync('go', ['build', '-o', builtBinary, './cmd/herald'], { cwd: repoRoot, stdio: 'inherit' });
  }
  return builtBinary;
}

// token mints a token for sub with `herald token` and the server's secret.
export function token(sub, { ttl = '1h', subscribe = [] } = {}) {
  const args = ['token', '-sub', sub, '-ttl', ttl];
  for (const s of subscribe) args.push('-subscribe', s);
  return execFileSync(heraldBinary(), args, { env: { ...process.env, HERALD_JWT_SECRET: jwtSecret } }).toString().trim();
}

// startHerald runs `herald serve` on a free loopback port with a fresh data dir.
// restart() kills it (SIGKILL) and starts it again on the same address and
// data dir, as a crash and a supervisor's restart would. jwt: false leaves
// out the JWT secret (-demo refuses to start with one).
export async function startHerald({ corsOrigin, extra = [], jwt = true } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'herald-data-'));
  const h = await runHerald(dataDir, '127.0.0.1:0', { corsOrigin, extra, jwt });
  return h;
}

async function runHerald(dataDir, listen, { corsOrigin, extra, jwt }) {
  const args = ['serve', '-addr', listen, '-data-dir', dataDir, '-publish-key', publishKey,
    ...(jwt ? ['-jwt-secret', jwtSecret, '-jwt-leeway', '0s'] : []), '-retry', '250ms', ...extra];
  if (corsOrigin) args.push('-cors-origins', corsOrigin);
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
  const i = addr.lastIndexOf(':');
  return {
    host: addr.slice(0, i),
    port: Number(addr.slice(i + 1)),
    url: `http://${addr}`,
    logs: () => logs,
    // publish sends the events as one batch and resolves once they are stored.
    async publish(topic, datas, type) {
      const body = JSON.stringify(datas.map((data) => (type ? { topic, type, data } : { topic, data })));
      const resp = await fetch(`http://${addr}/v1/publish`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${publishKey}`, 'Content-Type': 'application/json' },
        body,
      });
      if (resp.status !== 200) throw new Error(`publish: ${resp.status} ${await resp.text()}`);
      return resp.json();
    },
    // metric reads one unlabelled series of /metrics.
    async metric(name) {
      const text = await (await fetch(`http://${addr}/metrics`)).text();
      const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
      if (!m) throw new Error(`no ${name} in /metrics`);
      return Number(m[1]);
    },
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await exited;
      }
    },
    async restart() {
      await this.kill();
      const next = await runHerald(dataDir, addr, { corsOrigin, extra, jwt });
      Object.assign(this, next);
    },
    async stop() {
      await this.kill();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// startProxy forwards loopback TCP connections to target; drop() cuts every
// connection (and refuses new ones until up()). streams notes, for each
// GET /v1/events, the cursor the client sent in Last-Event-ID; requests notes
// more of each: { lastEventID (the header), query (URLSearchParams),
// authorization (the header) }.
export async function startProxy(target) {
  const conns = new Set();
  const streams = [];
  const requests = [];
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
      const head = chunk.toString('latin1');
      const get = /^GET (\/v1\/events\S*) HTTP/.exec(head);
      if (get) {
        const header = (name) => {
          const h = new RegExp(`\\r\\n${name}: *([^\\r]*)\\r\\n`, 'i').exec(head);
          return (h && h[1]) || '';
        };
        streams.push(header('last-event-id'));
        requests.push({
          lastEventID: header('last-event-id'),
          query: new URL(get[1], 'http://x').searchParams,
          authorization: header('authorization'),
        });
      }
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    streams,
    requests,
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

// startStatic serves the test pages, the built client (npm run build) and
// event-source-polyfill from node_modules, as an app would bundle it.
export async function startStatic() {
  const files = {
    '/': join(here, 'page.html'),
    '/herald-client.js': join(here, '..', 'packages', 'client', 'dist', 'index.js'),
    '/eventsource.html': join(here, 'eventsource.html'),
    '/polyfill.html': join(here, 'polyfill.html'),
    '/event-source-polyfill.js': createRequire(import.meta.url).resolve('event-source-polyfill'),
  };
  const server = http.createServer((req, res) => {
    const file = files[new URL(req.url, 'http://x').pathname];
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
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

const chromiumOptions = () => ({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  timeout: 30000,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // Tabs in the background must keep their timers and network running.
    '--disable-background-timer-throttling', '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows'],
});

// launchBrowser starts Debian's Chromium: playwright-core cannot download one.
// Its pages share one context (one profile): they are tabs of one user.
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  const userDataDir = mkdtempSync(join(tmpdir(), 'herald-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, chromiumOptions());
  return {
    context,
    async close() {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

// launchChromium starts Debian's Chromium for separate contexts
// (browser.newContext()): each is a user of its own, with its own storage.
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return chromium.launch(chromiumOptions());
}

// screenshotDir is $HERALD_SCREENSHOT_DIR, else web/integration/screenshots
// (git-ignored).
export const screenshotDir = resolve(process.env.HERALD_SCREENSHOT_DIR || join(here, 'screenshots'));

// screenshot saves a PNG of page's whole document as <name>.png in
// screenshotDir and returns its path.
export async function screenshot(page, name) {
  mkdirSync(screenshotDir, { recursive: true });
  const path = join(screenshotDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true, timeout: 15000 });
  return path;
}

// waitFor polls cond until it returns true, or throws after ms.
export async function waitFor(what, ms, cond) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms}ms`);
    await sleep(50);
  }
}
