// Model downloads (a Hugging Face repo id, 1-4 GB: minutes) get a notification with a Cancel
// button. vscode-languageclient shows server-initiated work-done progress in the status bar
// only (ProgressLocation.Window), where VS Code offers no cancel; so the daemon's `cancellable`
// load progress is shown here too, and Cancel sends `window/workDoneProgress/cancel` for its
// token. A load from disk (seconds) and a cached repo (its "resolving" step ends at once) stay in
// the status bar.

import * as vscode from 'vscode';

/** One `$/progress` value of the daemon's load token (`mlxd/load/N`). */
export interface LoadValue {
  kind: 'begin' | 'report' | 'end';
  message?: string;
  percentage?: number;
  cancellable?: boolean;
}

type Token = string | number;
type Ui = Pick<typeof vscode.window, 'withProgress'>;
type Later = (fn: () => void, ms: number) => { dispose(): void };

/** Resolving a repo on the Hub may take a while offline or on a slow link: after this long it
 * is shown too (a cached repo is done by then). */
export const RESOLVING_SHOWN_AFTER_MS = 1500;

/** "downloading <repo>: 312 / 869 MB (35%)": bytes are on their way. */
export const isDownloading = (message?: string): boolean => /^downloading \S/.test(message ?? '');
/** "resolving <repo> on Hugging Face": the download's first step. */
export const isResolving = (message?: string): boolean => /^resolving \S+ on Hugging Face$/.test(message ?? '');

interface Load {
  cancellable: boolean;
  message?: string;
  percentage: number;
  timer?: { dispose(): void };
  asked?: boolean; // withProgress was called
  shown?: { progress: vscode.Progress<{ message?: string; increment?: number }>; reported: number; close: () => void };
}

export class DownloadNotifier implements vscode.Disposable {
  private readonly loads = new Map<Token, Load>();

  constructor(
    private readonly sendCancel: (token: Token) => void,
    private readonly ui: Ui,
    private readonly later: Later = (fn, ms) => {
      const t = setTimeout(fn, ms);
      return { dispose: () => clearTimeout(t) };
    },
  ) {}

  /** Feed every work-done value of the daemon (the load tokens'). */
  onProgress(token: Token, value: LoadValue): void {
    if (value.kind === 'begin') {
      this.end(token); // a token is never reused; be safe anyway
      const load: Load = { cancellable: value.cancellable === true, message: value.message, percentage: value.percentage ?? 0 };
      this.loads.set(token, load);
      if (isDownloading(value.message)) this.show(token);
      else if (isResolving(value.message)) load.timer = this.later(() => this.show(token), RESOLVING_SHOWN_AFTER_MS);
      return;
    }
    const load = this.loads.get(token);
    if (!load) return;
    if (value.kind === 'end') {
      this.end(token);
      return;
    }
    load.message = value.message ?? load.message;
    load.percentage = value.percentage ?? load.percentage;
    if (load.shown) this.report(load);
    else if (isDownloading(value.message)) this.show(token);
  }

  /** Whether a download is shown (for tests and the status menu). */
  get downloading(): boolean {
    return [...this.loads.values()].some((l) => l.shown !== undefined);
  }

  /** Cancels every cancellable load in flight (the command); false when there was none. */
  cancelAll(): boolean {
    const tokens = [...this.loads].filter(([, l]) => l.cancellable).map(([t]) => t);
    for (const t of tokens) this.sendCancel(t);
    return tokens.length > 0;
  }

  /** The daemon stopped: its loads end without an `end`. */
  reset(): void {
    for (const token of [...this.loads.keys()]) this.end(token);
  }

  dispose(): void {
    this.reset();
  }

  private show(token: Token): void {
    const load = this.loads.get(token);
    if (!load || load.asked) return;
    load.asked = true;
    load.timer?.dispose();
    load.timer = undefined;
    const options = { location: vscode.ProgressLocation.Notification, title: 'mlxd', cancellable: load.cancellable };
    void this.ui.withProgress(options, (progress, cancel) => {
      return new Promise<void>((resolve) => {
        if (this.loads.get(token) !== load) return resolve();
        const sub = cancel.onCancellationRequested(() => this.sendCancel(token));
        load.shown = {
          progress,
          reported: 0,
          close: () => {
            sub.dispose();
            resolve();
          },
        };
        this.report(load);
      });
    });
  }

  private report(load: Load): void {
    const shown = load.shown;
    if (!shown) return;
    const pct = Math.max(shown.reported, Math.min(100, load.percentage));
    shown.progress.report({ message: load.message, increment: pct - shown.reported });
    shown.reported = pct;
  }

  private end(token: Token): void {
    const load = this.loads.get(token);
    if (!load) return;
    this.loads.delete(token);
    load.timer?.dispose();
    load.shown?.close();
  }
}
