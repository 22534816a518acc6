export { HeraldClient, createClient, type HeraldClientOptions, type HeraldEvent, type EventMap } from './client.js';
export { HeraldError, type TokenReason } from './connection.js';
export type { ConnectionState } from './state.js';
export { SSEParser, type SSEMessage, type SSEParserHandlers } from './parser.js';
export { backoffDelay, type BackoffOptions } from './backoff.js';
