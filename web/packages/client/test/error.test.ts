import { describe, expect, it } from 'vitest';
import { HeraldError } from '../src/index.js';

describe('HeraldError.fromResponse', () => {
  it("reads Herald's error JSON", async () => {
    const resp = new Response(JSON.stringify({ error: { code: 'forbidden_topic', message: 'not yours' } }), {
      status: 403,
      headers: { 'Content-Type': 'application/json' },
    });
    const err = await HeraldError.fromResponse(resp);
    expect(err).toBeInstanceOf(HeraldError);
    expect([err.status, err.code, err.message]).toEqual([403, 'forbidden_topic', 'not yours']);
  });

  it("keeps the status of a body that is not Herald's JSON", async () => {
    const err = await HeraldError.fromResponse(new Response('<html>Bad Gateway</html>', { status: 502, statusText: 'Bad Gateway' }));
    expect([err.status, err.code, err.message]).toEqual([502, 'http_502', 'Bad Gateway']);
  });
});
