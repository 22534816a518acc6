// The connection state machine, kept pure so that it can be tested alone.

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** What happens to a connection. */
export type ConnectionInput =
  | 'start' // the client starts (or a tab becomes the leader)
  | 'opened' // the server answered 200 with an event stream
  | 'dropped' // the stream ended or failed, a retry follows
  | 'fatal' // a refusal that a retry cannot fix (400, 403, a second 401)
  | 'close'; // close() was called

/** transition returns the state after input; an input that makes no sense in a state leaves it as it is. */
export function transition(state: ConnectionState, input: ConnectionInput): ConnectionState {
  if (state === 'closed') return 'closed';
  switch (input) {
    case 'start':
      return state === 'idle' ? 'connecting' : state;
    case 'opened':
      return state === 'connecting' || state === 'reconnecting' ? 'open' : state;
    case 'dropped':
      return state === 'idle' ? state : 'reconnecting';
    case 'fatal':
    case 'close':
      return 'closed';
  }
}
