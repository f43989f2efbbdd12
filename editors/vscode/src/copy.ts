// Code the user copies, told to the daemon (`mlxd/didCopy`, docs/protocol.md) so that inline
// prompts can show it to the model as a neighbour snippet: a function copied to write its
// sibling, far above the cursor or in a file since closed (llama.vim's ring). VS Code has no
// copy event: Ctrl+C / Cmd+C in a text editor with a selection runs VS Code's own copy, then
// the extension's `mlxd.copied`, which reports the copied text (package.json, `runCommands`).
// No `vscode` import here, so the unit tests run in plain Node.

import { Methods } from './protocol';

export const DID_COPY = Methods.didCopy;
/** Lines and characters of a copy sent at most (the daemon keeps its first 64 lines, 4,000
 * characters): a minified file is one long line. */
export const MAX_LINES = 200;
export const MAX_CHARS = 16_000;
/** Non-blank characters a copy needs to be sent (the daemon's inline/ring.py MIN_CHARS). */
export const MIN_CHARS = 24;

/** What of the selections' texts is sent (joined by line breaks as VS Code copies several
 * selections), or undefined when it is a word or two, or not what the clipboard holds: Ctrl+C
 * in another editor widget (a peek view, an input box) copied its own selection, not the
 * active editor's. */
export function copiedText(selections: string[], clipboard: string): string | undefined {
  const lines = (t: string): string[] => t.split(/\r\n|\r|\n/);
  const all = lines(selections.join('\n'));
  if (all.join('\n').replace(/\n+$/, '') !== lines(clipboard).join('\n').replace(/\n+$/, '')) return undefined;
  let text = all.slice(0, MAX_LINES).join('\n').slice(0, MAX_CHARS);
  if (/[\uD800-\uDBFF]$/.test(text)) text = text.slice(0, -1); // half a character
  return text.replace(/\s/g, '').length < MIN_CHARS ? undefined : text;
}
