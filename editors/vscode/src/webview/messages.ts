// Messages between the extension and the chat webview (postMessage), both directions.

import type { Attempt } from '../protocol';

export type ToWebview =
  // `qid`: the webview's number for a question typed into the panel (absent for commands).
  | { type: 'user'; id: number; content: string; label?: string; qid?: number }
  | { type: 'received'; qid: number }
  | { type: 'start'; id: number }
  | { type: 'delta'; id: number; delta: string; backend: string }
  | {
      type: 'done';
      id: number;
      text: string;
      backend: string;
      model: string;
      finishReason: string;
      attempts: Attempt[];
      completionTokens: number;
      firstTokenMs: number;
      totalMs: number;
      reasoning?: string;
    }
  | { type: 'error'; id: number; message: string }
  | { type: 'cancelled'; id: number }
  | { type: 'clear' }
  | { type: 'copied' };

export type FromWebview =
  | { type: 'ready' }
  | { type: 'ask'; prompt: string; qid: number }
  | { type: 'stop' }
  | { type: 'copy'; code: string }
  | { type: 'insert'; code: string }
  | { type: 'new' };

export function isFromWebview(m: unknown): m is FromWebview {
  if (typeof m !== 'object' || m === null) return false;
  const v = m as Record<string, unknown>;
  switch (v.type) {
    case 'ready':
    case 'stop':
    case 'new':
      return true;
    case 'ask':
      return typeof v.prompt === 'string' && typeof v.qid === 'number';
    case 'copy':
    case 'insert':
      return typeof v.code === 'string';
    default:
      return false;
  }
}
