// The inline middleware against a thin fake of `vscode` (esbuild aliases it in tests).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as vscode from 'vscode';
import { cancellableSleep, describeItems, makeInlineMiddleware } from '../src/inline';

const doc = (languageId: string, uri = 'file:///a') => ({ languageId, uri: { toString: () => uri } }) as unknown as vscode.TextDocument;
const pos = { line: 1, character: 4 } as vscode.Position;
const ctx = (triggerKind: vscode.InlineCompletionTriggerKind) => ({ triggerKind, selectedCompletionInfo: undefined }) as vscode.InlineCompletionContext;
const item = (insertText: string) =>
  ({ insertText, range: { start: { line: 1, character: 4 }, end: { line: 1, character: 4 } } }) as unknown as vscode.InlineCompletionItem;

function settings(over: Partial<{ inlineEnable: boolean; inlineLanguages: Record<string, boolean>; inlineDebounceMs: number }> = {}) {
  return () => ({ inlineEnable: true, inlineLanguages: { '*': true, markdown: false }, inlineDebounceMs: 0, ...over });
}

describe('inline middleware', () => {
  it('asks the daemon for an enabled language and reports what came back', async () => {
    const seen: unknown[] = [];
    const mw = makeInlineMiddleware({ settings: settings(), onResult: (_d, _p, items) => seen.push(describeItems(items)) });
    const cts = new vscode.CancellationTokenSource();
    let calls = 0;
    const out = await mw(doc('python'), pos, ctx(vscode.InlineCompletionTriggerKind.Automatic), cts.token, () => {
      calls += 1;
      return [item('return a + b')];
    });
    assert.equal(calls, 1);
    assert.equal(Array.isArray(out) && out.length, 1);
    assert.deepEqual(seen, [[{ insertText: 'return a + b', range: [1, 4, 1, 4] }]]);
  });

  it('does not ask for a disabled language or when switched off', async () => {
    const cts = new vscode.CancellationTokenSource();
    let calls = 0;
    const next = () => {
      calls += 1;
      return [];
    };
    assert.equal(await makeInlineMiddleware({ settings: settings() })(doc('markdown'), pos, ctx(1), cts.token, next), null);
    assert.equal(await makeInlineMiddleware({ settings: settings({ inlineEnable: false }) })(doc('python'), pos, ctx(1), cts.token, next), null);
    assert.equal(calls, 0);
  });

  it("does not ask in the editor's own settings files unless their language is listed explicitly", async () => {
    const cts = new vscode.CancellationTokenSource();
    let calls = 0;
    const next = () => {
      calls += 1;
      return [];
    };
    const userSettings = doc('jsonc', 'file:///home/me/.local/share/code-server/User/settings.json');
    const folderTasks = doc('jsonc', 'file:///w/.vscode/tasks.json');
    const ws = doc('jsonc', 'file:///w/project.code-workspace');
    for (const d of [userSettings, folderTasks, ws, doc('jsonc', 'vscode-userdata:/User/keybindings.json')]) {
      assert.equal(await makeInlineMiddleware({ settings: settings() })(d, pos, ctx(0), cts.token, next), null);
    }
    assert.equal(calls, 0);
    // A project's own JSON is not an editor file; an explicit "jsonc": true opts back in.
    await makeInlineMiddleware({ settings: settings() })(doc('json', 'file:///w/package.json'), pos, ctx(0), cts.token, next);
    await makeInlineMiddleware({ settings: settings() })(doc('json', 'file:///w/config/settings.json'), pos, ctx(0), cts.token, next);
    assert.equal(calls, 2);
    const optIn = settings({ inlineLanguages: { '*': true, jsonc: true } });
    await makeInlineMiddleware({ settings: optIn })(userSettings, pos, ctx(0), cts.token, next);
    assert.equal(calls, 3);
  });

  it('passes every candidate through, in order, so VS Code shows the count and Alt+] / Alt+[ cycle', async () => {
    const cts = new vscode.CancellationTokenSource();
    const three = [item('return a + b'), item('return sum((a, b))'), item('return b + a')];
    const list = { items: three } as unknown as vscode.InlineCompletionList;
    const seen: unknown[] = [];
    const mw = makeInlineMiddleware({ settings: settings(), onResult: (_d, _p, items) => seen.push(describeItems(items).length) });
    assert.deepEqual(await mw(doc('python'), pos, ctx(0), cts.token, () => three), three);
    assert.equal(await mw(doc('python'), pos, ctx(0), cts.token, () => list), list);
    assert.deepEqual(seen, [3, 3]);
  });

  it('debounces automatic triggers and drops a request superseded during the wait', async () => {
    const waits: number[] = [];
    const cts = new vscode.CancellationTokenSource();
    const mw = makeInlineMiddleware({
      settings: settings({ inlineDebounceMs: 150 }),
      sleep: async (ms) => {
        waits.push(ms);
        cts.cancel(); // a newer keystroke arrived meanwhile
      },
    });
    let calls = 0;
    const out = await mw(doc('python'), pos, ctx(vscode.InlineCompletionTriggerKind.Automatic), cts.token, () => {
      calls += 1;
      return [];
    });
    assert.deepEqual(waits, [150]);
    assert.equal(out, null);
    assert.equal(calls, 0);
  });

  it('answers explicit invocations without the debounce', async () => {
    const waits: number[] = [];
    const mw = makeInlineMiddleware({ settings: settings({ inlineDebounceMs: 150 }), sleep: async (ms) => void waits.push(ms) });
    const cts = new vscode.CancellationTokenSource();
    await mw(doc('python'), pos, ctx(vscode.InlineCompletionTriggerKind.Invoke), cts.token, () => []);
    assert.deepEqual(waits, []);
  });

  it('cancellableSleep returns early on cancellation', async () => {
    const cts = new vscode.CancellationTokenSource();
    const t0 = Date.now();
    const p = cancellableSleep(5000, cts.token);
    setTimeout(() => cts.cancel(), 10);
    await p;
    assert.ok(Date.now() - t0 < 1000);
  });

  it('describeItems flattens lists and snippet strings', () => {
    assert.deepEqual(describeItems(null), []);
    assert.deepEqual(describeItems({ items: [{ insertText: { value: 'x' } }] } as unknown as vscode.InlineCompletionList), [{ insertText: 'x' }]);
  });
});
