// Code the user copies, told to the daemon (`mlxd/didCopy`, docs/protocol.md) so that inline
// prompts can show it to the model as a neighbour snippet: a function copied to write its
// sibling, far above the cursor or in a file since closed (llama.vim's ring). VS Code has no
// copy event: Ctrl+C / Cmd+C in a text editor with a selection runs VS Code's own copy, then
// the extension's `mlxd.copied`, which reports the copied text (package.json, `runCommands`).
// No `vscode` import here, so the unit tests run in plain Node.

import { Methods } from './protocol';

export const DID_COPY = Methods.didCopy;
/** Lines of a copy sent at most (the daemon keeps its first 64). */
export const MAX_LINES = 200;
/** Non-blank characters a copy needs to be sent (the daemon's inline/ring.py MIN_CHARS). */
export const MIN_CHARS = 24;

/** What of the selections' texts is sent (joined by line breaks as VS Code copies several
 * selections), or undefined when it is a word or two. */
export function copiedText(selections: string[]): string | undefined {
  const text = selections.join('\n').split(/\r?\n/).slice(0, MAX_LINES).join('\n');
  return text.replace(/\s/g, '').length < MIN_CHARS ? undefined : text;
}
