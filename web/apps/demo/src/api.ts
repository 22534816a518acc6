// The demo's sign-in: demo tokens from POST /v1/demo/token (served only by
// `herald serve -demo`), kept until shortly before they expire.
import type { TokenReason } from '@herald/react';

/** A demo user name: what Herald accepts for a demo token. */
export const USER_PATTERN = /^[a-z0-9_-]{1,32}$/;

export interface DemoToken {
  token: string;
  user: string;
  expires_at: string;
}

/** demoToken asks Herald for a token of user; errors carry Herald's message. */
export async function demoToken(user: string, f: typeof fetch = fetch): Promise<DemoToken> {
  let resp: Response;
  try {
    resp = await f('/v1/demo/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ user }),
      cache: 'no-store',
    });
  } catch {
    throw new Error('Herald does not answer. Is it running?');
  }
  const body = (await resp.json().catch(() => ({}))) as Partial<DemoToken> & { error?: { code?: string; message?: string } };
  if (resp.ok && body.token) return body as DemoToken;
  if (resp.status === 404) throw new Error('This Herald does not hand out demo tokens: start it with `herald serve -demo`.');
  throw new Error(body.error?.message ?? `Herald answered ${resp.status}.`);
}

/**
 * tokenSource returns a getToken for HeraldProvider: the token it was given
 * until a minute before it expires (or Herald says it expired), then a fresh
 * one, fetched once however many ask at the same time.
 */
export function tokenSource(first: DemoToken, f: typeof fetch = fetch): (reason: TokenReason) => Promise<string> {
  let current = first;
  let renewing: Promise<DemoToken> | undefined;
  return async (reason) => {
    const stale = reason === 'expired' || Date.parse(current.expires_at) - Date.now() < 60_000;
    if (stale) {
      renewing ??= demoToken(current.user, f).finally(() => (renewing = undefined));
      current = await renewing;
    }
    return current.token;
  };
}
