import { describe, expect, it } from 'vitest';
import { transition, type ConnectionInput, type ConnectionState } from '../src/state.js';

describe('transition', () => {
  const run = (inputs: ConnectionInput[]) => {
    let s: ConnectionState = 'idle';
    const seen: ConnectionState[] = [];
    for (const i of inputs) {
      s = transition(s, i);
      seen.push(s);
    }
    return seen;
  };

  it('connects, drops, reconnects, closes', () => {
    expect(run(['start', 'opened', 'dropped', 'opened', 'close'])).toEqual(['connecting', 'open', 'reconnecting', 'open', 'closed']);
  });

  it('a failed first attempt is a reconnect', () => {
    expect(run(['start', 'dropped', 'dropped', 'opened'])).toEqual(['connecting', 'reconnecting', 'reconnecting', 'open']);
  });

  it('a fatal refusal closes for good', () => {
    expect(run(['start', 'fatal', 'start', 'opened', 'dropped'])).toEqual(['connecting', 'closed', 'closed', 'closed', 'closed']);
  });

  it('ignores inputs that make no sense', () => {
    expect(transition('idle', 'opened')).toBe('idle');
    expect(transition('idle', 'dropped')).toBe('idle');
    expect(transition('open', 'start')).toBe('open');
    expect(transition('open', 'opened')).toBe('open');
  });
});
