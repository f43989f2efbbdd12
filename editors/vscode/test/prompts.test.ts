import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { codeBlocks } from '../src/markdown';
import { askAboutFilePrompt, buildMessages, explainSelectionPrompt, fenceFor, SYSTEM_PROMPT } from '../src/prompts';

describe('chat prompts', () => {
  it('wraps the selection in a fence that its own backticks cannot close', () => {
    const code = 'x = """\n```\n"""';
    assert.equal(fenceFor(code), '````');
    const p = explainSelectionPrompt({ code, languageId: 'python', fileName: 'a.py' }, 1000);
    assert.deepEqual(codeBlocks(p), [code]);
    assert.match(p, /^Explain this code from `a\.py`:/);
  });

  it('clips a large file and says so', () => {
    const p = askAboutFilePrompt('  What?  ', { code: 'a'.repeat(50), languageId: 'go', fileName: 'm.go' }, 10);
    assert.match(p, /^What\?\n\nThe file `m\.go` \(first 10 characters\):/);
    assert.deepEqual(codeBlocks(p), ['a'.repeat(10)]);
  });

  it('builds system + history + prompt, dropping the oldest turns past the budget', () => {
    const history = [
      { role: 'user' as const, content: 'u1'.repeat(50) },
      { role: 'assistant' as const, content: 'a1'.repeat(50) },
      { role: 'user' as const, content: 'u2' },
      { role: 'assistant' as const, content: 'a2' },
    ];
    const all = buildMessages(history, 'q', 10_000);
    assert.deepEqual(all.map((m) => m.role), ['system', 'user', 'assistant', 'user', 'assistant', 'user']);
    assert.equal(all[0]?.content, SYSTEM_PROMPT);
    assert.equal(all.at(-1)?.content, 'q');
    const tight = buildMessages(history, 'q', SYSTEM_PROMPT.length + 1 + 150);
    assert.deepEqual(tight.map((m) => m.content), [SYSTEM_PROMPT, 'u2', 'a2', 'q']);
  });

  it('never starts the kept history with an assistant turn', () => {
    const history = [
      { role: 'user' as const, content: 'x'.repeat(100) },
      { role: 'assistant' as const, content: 'a' },
    ];
    const msgs = buildMessages(history, 'q', SYSTEM_PROMPT.length + 10);
    assert.deepEqual(msgs.map((m) => m.role), ['system', 'user']);
  });
});
