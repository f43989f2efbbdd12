// Inline-completion middleware: the language client sends `textDocument/inlineCompletion`
// itself (vscode-languageclient >= 10); this decides whether to ask at all (the enable toggle
// and per-language enablement, none in the editor's own settings files) and debounces automatic triggers so that a burst of keystrokes
// costs one request. VS Code cancels the token of a superseded request; we bail out then.

import * as vscode from 'vscode';
import { isEditorConfigFile } from './editorFiles';
import { inlineEnabledFor, type Settings } from './settings';

type Next = (
  document: vscode.TextDocument,
  position: vscode.Position,
  context: vscode.InlineCompletionContext,
  token: vscode.CancellationToken,
) => vscode.ProviderResult<vscode.InlineCompletionItem[] | vscode.InlineCompletionList>;

export type InlineItems = vscode.InlineCompletionItem[] | vscode.InlineCompletionList | null | undefined;

export interface InlineDeps {
  settings: () => Pick<Settings, 'inlineEnable' | 'inlineLanguages' | 'inlineDebounceMs'>;
  /** Called with what the daemon returned (for the trace file). */
  onResult?: (document: vscode.TextDocument, position: vscode.Position, items: InlineItems) => void;
  sleep?: (ms: number, token: vscode.CancellationToken) => Promise<void>;
}

/** Resolves after `ms`, or early when the token is cancelled. */
export function cancellableSleep(ms: number, token: vscode.CancellationToken): Promise<void> {
  return new Promise((resolve) => {
    if (token.isCancellationRequested) {
      resolve();
      return;
    }
    const sub = token.onCancellationRequested(() => {
      clearTimeout(timer);
      sub.dispose();
      resolve();
    });
    const timer = setTimeout(() => {
      sub.dispose();
      resolve();
    }, ms);
  });
}

/** Ghost text in `document` at all: its language is enabled (and the switch on), and it is
 * none of the editor's own settings files unless the user listed their language explicitly.
 * The inline requests and the cursor reports (cursor.ts) both go by it. */
export function inlineWantedIn(
  document: { languageId: string; uri: { toString(): string } },
  s: Pick<Settings, 'inlineEnable' | 'inlineLanguages'>,
): boolean {
  if (!inlineEnabledFor(document.languageId, s)) return false;
  return !isEditorConfigFile(document.uri.toString()) || s.inlineLanguages[document.languageId] === true;
}

export function makeInlineMiddleware(deps: InlineDeps) {
  const sleep = deps.sleep ?? cancellableSleep;
  return async (
    document: vscode.TextDocument,
    position: vscode.Position,
    context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
    next: Next,
  ): Promise<InlineItems> => {
    const s = deps.settings();
    if (!inlineWantedIn(document, s)) {
      return null;
    }
    // Explicit invocations (the "Trigger Inline Suggestion" command) are answered at once.
    if (context.triggerKind === vscode.InlineCompletionTriggerKind.Automatic && s.inlineDebounceMs > 0) {
      await sleep(s.inlineDebounceMs, token);
    }
    if (token.isCancellationRequested) {
      return null;
    }
    const items = await next(document, position, context, token);
    deps.onResult?.(document, position, items);
    return items;
  };
}

/** Flattens a provider result to plain `{insertText, range}` records (for logs and traces). */
export function describeItems(items: InlineItems): { insertText: string; range?: [number, number, number, number] }[] {
  const list = items === null || items === undefined ? [] : Array.isArray(items) ? items : items.items;
  return list.map((item) => {
    const text = typeof item.insertText === 'string' ? item.insertText : item.insertText.value;
    const r = item.range;
    return r
      ? { insertText: text, range: [r.start.line, r.start.character, r.end.line, r.end.character] }
      : { insertText: text };
  });
}
