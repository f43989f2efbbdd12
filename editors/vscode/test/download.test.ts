import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type * as vscode from 'vscode';
import { DownloadNotifier, isDownloading, isResolving } from '../src/download';
import { CancellationTokenSource, ProgressLocation } from './fake-vscode';

/** A notification as the fake UI shows it: its options, what it reported, whether it is open. */
interface Note {
  options: vscode.ProgressOptions;
  reports: { message?: string; increment?: number }[];
  open: boolean;
  cancel: CancellationTokenSource;
}

function setup() {
  const notes: Note[] = [];
  const cancels: (string | number)[] = [];
  const timers: { fn: () => void; ms: number; disposed: boolean }[] = [];
  const ui = {
    withProgress: (options: vscode.ProgressOptions, task: (p: unknown, t: unknown) => Promise<void>) => {
      const note: Note = { options, reports: [], open: true, cancel: new CancellationTokenSource() };
      notes.push(note);
      const progress = { report: (v: { message?: string; increment?: number }) => note.reports.push(v) };
      return task(progress, note.cancel.token).then(() => {
        note.open = false;
      });
    },
  } as unknown as Pick<typeof vscode.window, 'withProgress'>;
  const later = (fn: () => void, ms: number) => {
    const t = { fn, ms, disposed: false };
    timers.push(t);
    return { dispose: () => (t.disposed = true) };
  };
  const n = new DownloadNotifier((t) => cancels.push(t), ui, later);
  return { n, notes, cancels, timers };
}

const tick = () => new Promise((r) => setImmediate(r));
const TOKEN = 'mlxd/load/2';
const REPO = 'mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit';

describe('download notification', () => {
  it('recognises the daemon messages', () => {
    assert.ok(isDownloading(`downloading ${REPO}: 312 / 869 MB (35%)`));
    assert.ok(isResolving(`resolving ${REPO} on Hugging Face`));
    assert.ok(!isDownloading('loading weights') && !isResolving('resolving smollm2-135m'));
  });

  it('a load from disk shows no notification', async () => {
    const { n, notes, timers } = setup();
    n.onProgress('mlxd/load/1', { kind: 'begin', cancellable: true, message: 'resolving smollm2-135m', percentage: 0 });
    n.onProgress('mlxd/load/1', { kind: 'report', message: 'building the model', percentage: 50 });
    n.onProgress('mlxd/load/1', { kind: 'end', message: 'smollm2-135m ready (538 MB)' });
    await tick();
    assert.equal(notes.length, 0);
    assert.equal(timers.length, 0);
  });

  it('bytes on their way open a cancellable notification; Cancel sends the token', async () => {
    const { n, notes, cancels } = setup();
    n.onProgress(TOKEN, { kind: 'begin', cancellable: true, message: `resolving ${REPO} on Hugging Face`, percentage: 0 });
    n.onProgress(TOKEN, { kind: 'report', message: `downloading ${REPO}: 312 / 869 MB (35%)`, percentage: 32 });
    n.onProgress(TOKEN, { kind: 'report', message: `downloading ${REPO}: 400 / 869 MB (46%)`, percentage: 41 });
    await tick();
    assert.equal(notes.length, 1);
    const note = notes[0] as Note;
    assert.equal(note.options.location, ProgressLocation.Notification);
    assert.equal(note.options.cancellable, true);
    assert.deepEqual(note.reports, [
      { message: `downloading ${REPO}: 312 / 869 MB (35%)`, increment: 32 },
      { message: `downloading ${REPO}: 400 / 869 MB (46%)`, increment: 9 },
    ]);
    assert.ok(n.downloading);
    note.cancel.cancel();
    assert.deepEqual(cancels, [TOKEN]);
    // The daemon ends the token with the reason: the notification closes.
    n.onProgress(TOKEN, { kind: 'end', message: `loading ${REPO} was cancelled; the next request that needs it starts it again` });
    await tick();
    assert.equal(note.open, false);
    assert.ok(!n.downloading);
  });

  it('a slow resolving step is shown after a while; a cached repo never is', async () => {
    const { n, notes, timers } = setup();
    n.onProgress('mlxd/load/1', { kind: 'begin', cancellable: true, message: `resolving ${REPO} on Hugging Face`, percentage: 0 });
    n.onProgress('mlxd/load/1', { kind: 'report', message: 'loading weights', percentage: 92 });
    n.onProgress('mlxd/load/1', { kind: 'end', message: `${REPO} ready (869 MB)` });
    assert.equal(timers.length, 1);
    assert.ok((timers[0] as (typeof timers)[number]).disposed);
    n.onProgress(TOKEN, { kind: 'begin', cancellable: true, message: `resolving ${REPO} on Hugging Face`, percentage: 0 });
    (timers[1] as (typeof timers)[number]).fn();
    await tick();
    assert.equal(notes.length, 1);
    assert.deepEqual((notes[0] as Note).reports, [{ message: `resolving ${REPO} on Hugging Face`, increment: 0 }]);
  });

  it('the command cancels what runs; a restart closes what was shown', async () => {
    const { n, notes, cancels } = setup();
    assert.equal(n.cancelAll(), false);
    n.onProgress(TOKEN, { kind: 'begin', cancellable: true, message: `downloading ${REPO}: 1 / 869 MB (0%)`, percentage: 0 });
    await tick();
    assert.equal(n.cancelAll(), true);
    assert.deepEqual(cancels, [TOKEN]);
    n.reset();
    await tick();
    assert.equal((notes[0] as Note).open, false);
    assert.equal(n.cancelAll(), false);
  });

  it('a load that cannot be cancelled gets no Cancel button and no cancel', async () => {
    const { n, notes, cancels } = setup();
    n.onProgress(TOKEN, { kind: 'begin', message: `downloading ${REPO}: 1 / 869 MB (0%)`, percentage: 0 });
    await tick();
    assert.equal((notes[0] as Note).options.cancellable, false);
    assert.equal(n.cancelAll(), false);
    assert.deepEqual(cancels, []);
  });
});
