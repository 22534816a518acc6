// An incremental parser for the text/event-stream format, as the WHATWG HTML
// standard specifies it (§9.2.6): a leading BOM is dropped, lines end in CRLF,
// LF or CR (a CRLF split across two chunks is one line end), `data` lines join
// with LF, comments are skipped, an `id` holding NUL is ignored, `retry` counts
// only when it is all ASCII digits. Herald's `topic:` extension field, which
// EventSource ignores, is kept on the event.

/** One dispatched event, as EventSource would fire it. */
export interface SSEMessage {
  /** The event type: the `event:` field, or "message". */
  type: string;
  /** The data lines joined with "\n". */
  data: string;
  /** The last event id after this event (the stream's cursor). */
  lastEventId: string;
  /** Herald's `topic:` field, when the block had one. */
  topic?: string;
}

export interface SSEParserHandlers {
  onMessage(msg: SSEMessage): void;
  /** A valid `retry:` field, in milliseconds. */
  onRetry?(ms: number): void;
  /** A comment line (without its leading colon), e.g. " heartbeat". */
  onComment?(text: string): void;
}

export class SSEParser {
  /** The last event id string: set on each dispatch, as EventSource does. */
  lastEventId: string;
  private buf = '';
  private started = false;
  private skipLF = false; // the previous chunk ended in CR
  private data: string[] = [];
  private type = '';
  private topic: string | undefined;
  private idBuffer: string;

  constructor(private handlers: SSEParserHandlers, lastEventId = '') {
    this.lastEventId = lastEventId;
    this.idBuffer = lastEventId;
  }

  /** push feeds decoded text; complete lines are processed at once. */
  push(chunk: string): void {
    if (!this.started && chunk.length > 0) {
      this.started = true;
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
    }
    if (this.skipLF && chunk.length > 0) {
      this.skipLF = false;
      if (chunk.charCodeAt(0) === 10) chunk = chunk.slice(1);
    }
    let text = this.buf + chunk;
    let start = 0;
    for (;;) {
      let i = start;
      const n = text.length;
      while (i < n) {
        const c = text.charCodeAt(i);
        if (c === 10 || c === 13) break;
        i++;
      }
      if (i >= n) break;
      const line = text.slice(start, i);
      if (text.charCodeAt(i) === 13) {
        if (i + 1 < n) {
          start = text.charCodeAt(i + 1) === 10 ? i + 2 : i + 1;
        } else {
          start = i + 1;
          this.skipLF = true; // a LF opening the next chunk belongs to this CR
        }
      } else {
        start = i + 1;
      }
      this.line(line);
    }
    this.buf = text.slice(start);
    text = '';
  }

  /** end is called when the stream ends: an unterminated block is dropped, as the standard says. */
  end(): void {
    this.buf = '';
    this.data = [];
    this.type = '';
    this.topic = undefined;
    this.skipLF = false;
  }

  private line(line: string): void {
    if (line === '') {
      this.dispatch();
      return;
    }
    const colon = line.indexOf(':');
    if (colon === 0) {
      this.handlers.onComment?.(line.slice(1));
      return;
    }
    let field = line;
    let value = '';
    if (colon > 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + (line.charCodeAt(colon + 1) === 32 ? 2 : 1));
    }
    switch (field) {
      case 'data':
        this.data.push(value);
        break;
      case 'event':
        this.type = value;
        break;
      case 'id':
        if (value.indexOf('\0') === -1) this.idBuffer = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value) && value.length < 16) this.handlers.onRetry?.(parseInt(value, 10));
        break;
      case 'topic':
        this.topic = value;
        break;
      default:
      // ignored, as the standard says
    }
  }

  private dispatch(): void {
    this.lastEventId = this.idBuffer;
    const data = this.data;
    const type = this.type;
    const topic = this.topic;
    this.data = [];
    this.type = '';
    this.topic = undefined;
    if (data.length === 0) return;
    const msg: SSEMessage = { type: type || 'message', data: data.join('\n'), lastEventId: this.lastEventId };
    if (topic !== undefined) msg.topic = topic;
    this.handlers.onMessage(msg);
  }
}
