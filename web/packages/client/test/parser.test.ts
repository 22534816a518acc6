// The SSE parser against the cases of Herald's Go decoder (sse/decode_test.go),
// which mirror the WHATWG spec's examples and web-platform-tests'
// eventsource/format-*.any.js. Input goes in as bytes through a streaming
// TextDecoder, as the fetch transport feeds it, whole and in pieces.
import { describe, expect, it } from 'vitest';
import { SSEParser, type SSEMessage } from '../src/parser.js';

type Ev = { id?: string; type?: string; data: string; topic?: string };
const msg = (data: string): Ev => ({ data });

// u: text, encoded as UTF-8. b: raw bytes, written as latin1 escapes.
const u = (s: string) => new TextEncoder().encode(s);
const b = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

const cases: [string, Uint8Array, Ev[], string, number?][] = [
  ['spec stock', u('data: YHOO\ndata: +2\ndata: 10\n\n'), [msg('YHOO\n+2\n10')], ''],
  ['spec four blocks', u(': test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n'),
    [{ id: '1', data: 'first event' }, msg('second event'), msg(' third event')], ''],
  ['spec empty data and unterminated', u('data\n\ndata\ndata\n\ndata:'), [msg(''), msg('\n')], ''],
  ['spec space optional', u('data:test\n\ndata: test\n\n'), [msg('test'), msg('test')], ''],
  ['bom', u('\uFEFFdata:1\n\n\uFEFFdata:2\n\ndata:3\n\n'), [msg('1'), msg('3')], ''],
  ['bom-2 second not stripped', u('\uFEFF\uFEFFdata:1\n\ndata:2\n\ndata:3\n\n'), [msg('2'), msg('3')], ''],
  ['partial bom', b('\xEF\xBBdata:1\n\ndata:2\n\n'), [msg('2')], ''],
  ['comments', u('data:1\r:\x00\n:\r\ndata:2\n:' + 'x'.repeat(2048) + '\rdata:3\n:data:fail\r:' + 'x'.repeat(2048) + '\ndata:4\n\n'),
    [msg('1\n2\n3\n4')], ''],
  ['field parsing', u('data:\x00\ndata:  2\rData:1\ndata\x00:2\ndata:1\r\x00data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n data:32\ndata:4\n\n'),
    [msg('\x00\n 2\n1\n3\n\n4')], ''],
  ['field name case sensitive', u('Data: x\nDATA: y\nEVENT: t\nId: 3\ndata: z\n\n'), [msg('z')], ''],
  ['leading space', u('data:\ttest\rdata: \ndata:test\n\n'), [msg('\ttest\n\ntest')], ''],
  ['one space stripped', u('data:  two\n\n'), [msg(' two')], ''],
  ['newlines', u('data:test\r\ndata\ndata:test\r\n\r\n'), [msg('test\n\ntest')], ''],
  ['cr only', u('data:a\rdata:b\r\rdata:c\r\r'), [msg('a\nb'), msg('c')], ''],
  ['lf cr mix', u('data:a\n\rdata:b\r\n\n'), [msg('a'), msg('b')], ''],
  ['null character', u('data:\x00\n\n'), [msg('\x00')], ''],
  ['event type', u('event:test\ndata:x\n\ndata:y\n\n'), [{ type: 'test', data: 'x' }, msg('y')], ''],
  ['event empty', u('event: \ndata:data\n\n'), [msg('data')], ''],
  ['type reset by block without data', u('event: t\n\ndata: x\n\n'), [msg('x')], ''],
  ['id persists', u('id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\n'), [{ id: '1', data: 'a' }, { id: '1', data: 'b' }, msg('c')], ''],
  ['id with NUL ignored', u('id: x\x00\ndata: hello\n\n'), [msg('hello')], ''],
  ['id with NUL keeps previous', u('id: 1\n\nid: \x00\ndata: hello\n\n'), [{ id: '1', data: 'hello' }], '1'],
  ['id only block', u('id: 7\n\n'), [], '7'],
  ['id only block then event', u('id: 7\n\n: heartbeat\n\nevent: e\ndata: x\n\n'), [{ id: '7', type: 'e', data: 'x' }], '7'],
  ['id without blank line not taken', u('id: 7\n\nid: 8\ndata: lost'), [], '7'],
  ['id unicode', u('id: \u2026\ndata: hello\n\n'), [{ id: '\u2026', data: 'hello' }], '\u2026'],
  ['retry', u('retry: 1000\ndata:x\n\n'), [msg('x')], '', 1000],
  ['retry bogus', u('retry:3000\nretry:1000x\ndata:x\n\n'), [msg('x')], '', 3000],
  ['retry empty', u('retry\ndata:test\n\n'), [msg('test')], ''],
  ['retry two spaces', u('retry:  10\n\n'), [], ''],
  ['retry negative', u('retry: -1\n\n'), [], ''],
  ['retry overflow', u('retry: 99999999999999999999\n\n'), [], ''],
  ['retry without blank line', u('retry: 5'), [], ''],
  ['retry line taken at once', u('retry: 5\n'), [], '', 5],
  ['unknown fields', u('data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test\n\n'), [msg('test\n\ntest')], ''],
  ['trailing event not dispatched', u('data: a\n\ndata: b\n'), [msg('a')], ''],
  ['trailing line not processed', u('data: a\n\ndata: b'), [msg('a')], ''],
  ['topic', u('id: c1\nevent: note\ntopic: users/42\ndata: {}\n\ndata: x\n\n'),
    [{ id: 'c1', type: 'note', topic: 'users/42', data: '{}' }, { id: 'c1', data: 'x' }], 'c1'],
  ['utf-8', b('data:ok\xE2\x80\xA6\n\n'), [msg('ok\u2026')], ''],
  ['invalid utf-8 maximal subparts', b('data: \xE2\x82\xFF!\xF0\x80\xED\xA0\x80\xC0\n\n'),
    [msg('\uFFFD\uFFFD!\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD')], ''],
  ['truncated sequence before line end', b('event: \xE2\x82\rdata: \xF0\x9F\x98\n\n'), [{ type: '\uFFFD', data: '\uFFFD' }], ''],
];

function run(chunks: Uint8Array[]) {
  const events: Ev[] = [];
  let retry: number | undefined;
  const p = new SSEParser({
    onMessage(m: SSEMessage) {
      const e: Ev = { data: m.data };
      if (m.lastEventId) e.id = m.lastEventId;
      if (m.type !== 'message') e.type = m.type;
      if (m.topic !== undefined) e.topic = m.topic;
      events.push(e);
    },
    onRetry(ms) {
      retry = ms;
    },
  });
  const d = new TextDecoder('utf-8', { ignoreBOM: true });
  for (const c of chunks) p.push(d.decode(c, { stream: true }));
  p.push(d.decode());
  p.end();
  return { events, lastId: p.lastEventId, retry };
}

const splits: Record<string, (a: Uint8Array) => Uint8Array[]> = {
  whole: (a) => [a],
  'one byte': (a) => Array.from(a, (x) => Uint8Array.of(x)),
  half: (a) => [a.slice(0, a.length >> 1), a.slice(a.length >> 1)],
  thirds: (a) => [a.slice(0, a.length / 3), a.slice(a.length / 3, (2 * a.length) / 3), a.slice((2 * a.length) / 3)],
};

describe('SSEParser', () => {
  for (const [name, input, want, lastId, retry] of cases) {
    for (const [sname, split] of Object.entries(splits)) {
      it(`${name} (${sname})`, () => {
        const got = run(split(input));
        expect(got.events).toEqual(want);
        expect(got.lastId).toBe(lastId);
        expect(got.retry).toBe(retry);
      });
    }
  }

  it('dispatches a block ended by CR CR at once, without waiting for the next chunk', () => {
    const got: string[] = [];
    const p = new SSEParser({ onMessage: (m) => got.push(m.data) });
    p.push('data: a\r\r');
    expect(got).toEqual(['a']);
    p.push('\ndata: b\n\n'); // the LF after the CR belongs to it: not a blank line
    expect(got).toEqual(['a', 'b']);
  });

  it('reports comments (heartbeats)', () => {
    const comments: string[] = [];
    const p = new SSEParser({ onMessage: () => {}, onComment: (c) => comments.push(c) });
    p.push(': herald\n\n: heartbeat\n');
    expect(comments).toEqual([' herald', ' heartbeat']);
  });

  it("parses Herald's opening block and a gap", () => {
    const got: SSEMessage[] = [];
    let retry = 0;
    const p = new SSEParser({ onMessage: (m) => got.push(m), onRetry: (r) => (retry = r) });
    p.push('retry: 2000\n: herald\nid: AAA\nevent: herald.connected\ndata: {}\n\nid: BBB\nevent: herald.gap\ndata: {"topics":["rooms/7"]}\n\n');
    expect(retry).toBe(2000);
    expect(got).toEqual([
      { type: 'herald.connected', data: '{}', lastEventId: 'AAA' },
      { type: 'herald.gap', data: '{"topics":["rooms/7"]}', lastEventId: 'BBB' },
    ]);
  });

  it('starts from a given cursor', () => {
    const p = new SSEParser({ onMessage: () => {} }, 'C0');
    p.push('data: x\n\n');
    expect(p.lastEventId).toBe('C0');
  });
});
