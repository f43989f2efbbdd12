// Assembles one chat answer from `$/progress` deltas and the final result.
// The contract says the deltas concatenate to the final `text`; the final result wins if they
// do not (a lost or late notification), and the mismatch is reported so it can be logged.

import { type ChatResult, isChatDelta } from './protocol';

export interface Finished {
  text: string;
  /** True when the streamed deltas did not add up to the final text. */
  mismatch: boolean;
  result: ChatResult;
}

export class StreamAssembler {
  private parts: string[] = [];
  private closed = false;
  /** The backend named by the latest delta ('' before the first one). */
  backend = '';
  /** Number of non-empty deltas received. */
  chunks = 0;

  /** Adds one progress value; returns the delta text, or undefined if it was ignored. */
  push(value: unknown): string | undefined {
    if (this.closed || !isChatDelta(value)) {
      return undefined;
    }
    if (value.backend) {
      this.backend = value.backend;
    }
    if (value.delta === '') {
      return undefined;
    }
    this.parts.push(value.delta);
    this.chunks += 1;
    return value.delta;
  }

  get text(): string {
    return this.parts.join('');
  }

  /** Closes the stream with the daemon's final result; later deltas are ignored. */
  finish(result: ChatResult): Finished {
    this.closed = true;
    const streamed = this.text;
    if (result.backend) {
      this.backend = result.backend;
    }
    return { text: result.text, mismatch: streamed !== result.text, result };
  }

  /** Closes the stream without a result (cancelled or failed); keeps what was streamed. */
  abort(): string {
    this.closed = true;
    return this.text;
  }
}

/** Builds the `partialResultToken` for the n-th chat request of this window. */
export function chatToken(sessionId: string, n: number): string {
  return `mlxd-chat-${sessionId}-${n}`;
}
