// Chat prompts and conversation history, as pure functions.

import type { ChatMessage } from './protocol';

export const SYSTEM_PROMPT =
  'You are a concise coding assistant inside the user\'s editor. Answer in Markdown; put code in fenced blocks with a language tag.';

/** Cuts `text` to at most `max` characters, saying so, so the model knows it saw a part. */
export function clip(text: string, max: number): { text: string; clipped: boolean } {
  if (text.length <= max) return { text, clipped: false };
  return { text: text.slice(0, max), clipped: true };
}

/** A fence longer than any backtick run inside `code`, so the block cannot be closed early. */
export function fenceFor(code: string): string {
  let longest = 0;
  for (const m of code.matchAll(/`+/g)) longest = Math.max(longest, m[0].length);
  return '`'.repeat(Math.max(3, longest + 1));
}

export interface CodeContext {
  code: string;
  languageId: string;
  fileName: string;
}

export function explainSelectionPrompt(ctx: CodeContext, maxChars: number): string {
  const { text, clipped } = clip(ctx.code, maxChars);
  const fence = fenceFor(text);
  return (
    `Explain this code from \`${ctx.fileName}\`${clipped ? ' (truncated)' : ''}:\n\n` +
    `${fence}${ctx.languageId}\n${text}\n${fence}`
  );
}

export function askAboutFilePrompt(question: string, ctx: CodeContext, maxChars: number): string {
  const { text, clipped } = clip(ctx.code, maxChars);
  const fence = fenceFor(text);
  return (
    `${question.trim()}\n\nThe file \`${ctx.fileName}\`${clipped ? ` (first ${maxChars} characters)` : ''}:\n\n` +
    `${fence}${ctx.languageId}\n${text}\n${fence}`
  );
}

/**
 * The messages for the next request: system prompt, then as many of the latest turns as fit in
 * `maxChars` (oldest dropped first, whole messages only), ending with the new user message.
 */
export function buildMessages(history: ChatMessage[], prompt: string, maxChars: number): ChatMessage[] {
  const user: ChatMessage = { role: 'user', content: prompt };
  let budget = maxChars - SYSTEM_PROMPT.length - prompt.length;
  const kept: ChatMessage[] = [];
  for (let i = history.length - 1; i >= 0; i--) {
    const m = history[i];
    if (m === undefined || m.content.length > budget) break;
    budget -= m.content.length;
    kept.unshift(m);
  }
  // Never start the kept history with an assistant turn.
  while (kept.length > 0 && kept[0]?.role !== 'user') kept.shift();
  return [{ role: 'system', content: SYSTEM_PROMPT }, ...kept, user];
}
