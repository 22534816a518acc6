// Reconnection delays: exponential backoff with full jitter, never below the
// server's `retry:` (or a Retry-After), never above a cap (unless the floor is
// higher: the server's word wins).

export interface BackoffOptions {
  /** The smallest delay to grow from, in ms (default 500). */
  initialDelay?: number;
  /** The largest delay, in ms (default 30000). */
  maxDelay?: number;
}

/**
 * backoffDelay returns the wait before reconnection attempt `attempt` (0 for
 * the first after a drop): a uniform draw in [floor, cap], where cap doubles
 * with each attempt from max(floor, initialDelay) up to maxDelay.
 */
export function backoffDelay(attempt: number, floor: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = opts.initialDelay ?? 500;
  const max = opts.maxDelay ?? 30000;
  floor = Math.max(0, floor);
  const base = Math.max(floor, initial);
  const cap = Math.max(floor, Math.min(max, base * 2 ** Math.min(attempt + 1, 30)));
  return Math.round(floor + random() * (cap - floor));
}
