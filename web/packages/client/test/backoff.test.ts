import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../src/backoff.js';

describe('backoffDelay', () => {
  const opts = { initialDelay: 500, maxDelay: 30000 };

  it('draws uniformly between the floor and a cap that doubles', () => {
    expect(backoffDelay(0, 0, opts, () => 0)).toBe(0);
    expect(backoffDelay(0, 0, opts, () => 1)).toBe(1000);
    expect(backoffDelay(1, 0, opts, () => 1)).toBe(2000);
    expect(backoffDelay(3, 0, opts, () => 1)).toBe(8000);
    expect(backoffDelay(3, 0, opts, () => 0.5)).toBe(4000);
  });

  it('never goes above the cap', () => {
    expect(backoffDelay(10, 0, opts, () => 1)).toBe(30000);
    expect(backoffDelay(1000, 0, opts, () => 1)).toBe(30000);
  });

  it("honours the server's retry: as the floor", () => {
    expect(backoffDelay(0, 2000, opts, () => 0)).toBe(2000);
    expect(backoffDelay(0, 2000, opts, () => 1)).toBe(4000); // grows from the floor
    expect(backoffDelay(5, 2000, opts, () => 0)).toBe(2000);
  });

  it('lets a floor above the cap win', () => {
    expect(backoffDelay(0, 60000, opts, () => 0.7)).toBe(60000);
  });

  it('jitters: many draws spread over the range', () => {
    const draws = new Set(Array.from({ length: 200 }, () => backoffDelay(4, 250, opts)));
    expect(draws.size).toBeGreaterThan(100);
    for (const d of draws) {
      expect(d).toBeGreaterThanOrEqual(250);
      expect(d).toBeLessThanOrEqual(16000);
    }
  });
});
