// Where the cursor rests, told to the daemon (`mlxd/didMoveCursor`, docs/protocol.md) so it can
// prefill the prompt there before the user types: the first ghost text in the middle of a file
// is then not a cold prefill. Debounced (trailing): a burst of moves costs one notification, at
// the position where the cursor came to rest, and none when that is where the last one went.
// No `vscode` import here, so the unit tests run in plain Node.

import { type CursorParams, Methods, type Position } from './protocol';

export const DID_MOVE_CURSOR = Methods.didMoveCursor;
/** How long the cursor must stay put before its position is sent. */
export const CURSOR_REST_MS = 150;

export interface CursorDeps<D> {
  /** Send for `doc` at all (the daemon syncs it, advertised the method, ghost text is on)?
   * Asked when the cursor has come to rest, so a switch turned off meanwhile counts. */
  wanted: (doc: D) => boolean;
  /** The document's URI as the language client sends it in `didOpen`. */
  uri: (doc: D) => string;
  send: (params: CursorParams) => void;
  restMs?: number;
}

export class CursorReporter<D> {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private pending: { doc: D; position: Position } | undefined;
  /** Per URI, the position last sent: a rest at the same place is not sent again. */
  private readonly sent = new Map<string, string>();

  constructor(private readonly deps: CursorDeps<D>) {}

  /** The cursor of `doc` moved to `position` (a selection change, or an editor became active). */
  moved(doc: D, position: Position): void {
    this.pending = { doc, position: { line: position.line, character: position.character } };
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.rest(), this.deps.restMs ?? CURSOR_REST_MS);
  }

  /** `doc` was closed: reopened, it is a new document to the daemon. */
  closed(doc: D): void {
    this.sent.delete(this.deps.uri(doc));
  }

  /** A new daemon session (a restart) knows no position: forget what was sent. */
  reset(): void {
    this.sent.clear();
  }

  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }

  private rest(): void {
    this.timer = undefined;
    const p = this.pending;
    this.pending = undefined;
    if (!p || !this.deps.wanted(p.doc)) return;
    const uri = this.deps.uri(p.doc);
    const key = `${p.position.line}:${p.position.character}`;
    if (this.sent.get(uri) === key) return;
    this.sent.set(uri, key);
    this.deps.send({ textDocument: { uri }, position: p.position });
  }
}

/** Does an initialize result's `capabilities.experimental.mlxd.methods` list `method`? */
export function advertises(capabilities: unknown, method: string): boolean {
  const exp = (capabilities as { experimental?: { mlxd?: { methods?: unknown } } } | undefined)?.experimental;
  const methods = exp?.mlxd?.methods;
  return Array.isArray(methods) && methods.includes(method);
}
