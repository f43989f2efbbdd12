// A thin fake of the `vscode` module: just the values the pure-logic modules under test touch.
// Anything else is deliberately missing, so a test that reaches further fails loudly.

export enum InlineCompletionTriggerKind {
  Invoke = 0,
  Automatic = 1,
}

type Listener = () => void;

export class CancellationTokenSource {
  private listeners: Listener[] = [];
  private cancelled = false;
  readonly token = {
    isCancellationRequested: false,
    onCancellationRequested: (fn: Listener) => {
      this.listeners.push(fn);
      return { dispose: () => (this.listeners = this.listeners.filter((l) => l !== fn)) };
    },
  };

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.token.isCancellationRequested = true;
    for (const l of [...this.listeners]) l();
  }

  dispose(): void {
    this.listeners = [];
  }
}

export enum ProgressLocation {
  SourceControl = 1,
  Window = 10,
  Notification = 15,
}
