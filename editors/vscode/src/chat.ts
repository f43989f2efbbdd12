// The chat panel: a sidebar webview view. The extension side keeps the conversation, sends
// `mlxd/chat` with a partialResultToken, and forwards each `$/progress` delta to the webview,
// which renders the growing answer as Markdown. Stop cancels the request ($/cancelRequest).

import * as vscode from 'vscode';
import type { Daemon } from './daemon';
import { buildMessages } from './prompts';
import type { ChatMessage } from './protocol';
import { chatOptions } from './settings';
import { StreamAssembler } from './stream';
import type { Tracer } from './trace';
import { type FromWebview, isFromWebview, type ToWebview } from './webview/messages';

export const CHAT_VIEW_ID = 'mlxd.chat';

/** Characters of conversation (system + history + prompt) sent with each request. */
const HISTORY_CHARS = 48_000;

interface Pending {
  prompt: string;
  /** The webview's number for a question typed into the panel. */
  qid?: number;
  label?: string;
  textDocument?: { uri: string };
}

export class ChatViewProvider implements vscode.WebviewViewProvider, vscode.Disposable {
  private view: vscode.WebviewView | undefined;
  private ready = false;
  private queue: Pending[] = [];
  private history: ChatMessage[] = [];
  private nextId = 1;
  private inFlight: vscode.CancellationTokenSource | undefined;
  private lastEditor: vscode.TextEditor | undefined = vscode.window.activeTextEditor;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly daemon: Daemon,
    private readonly log: vscode.LogOutputChannel,
    private readonly tracer: Tracer,
  ) {
    this.disposables.push(
      vscode.window.onDidChangeActiveTextEditor((e) => {
        if (e) this.lastEditor = e;
      }),
    );
  }

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    this.ready = false;
    const media = vscode.Uri.joinPath(this.extensionUri, 'media');
    const dist = vscode.Uri.joinPath(this.extensionUri, 'dist');
    view.webview.options = { enableScripts: true, localResourceRoots: [media, dist] };
    view.webview.html = chatHtml(view.webview, this.extensionUri);
    const sub = view.webview.onDidReceiveMessage((m: unknown) => this.onMessage(m, view));
    view.onDidDispose(() => {
      sub.dispose();
      // Only the current view: an old one disposed after a new one was resolved must not
      // mark the new one gone (its questions would then wait for a 'ready' that came already).
      if (this.view === view) {
        this.view = undefined;
        this.ready = false;
      }
    });
  }

  /** Opens the panel and asks `prompt` (queued until the webview is ready). */
  async ask(prompt: string, label?: string, textDocument?: { uri: string }): Promise<void> {
    this.queue.push({ prompt, label, textDocument });
    if (!this.view) {
      await vscode.commands.executeCommand(`${CHAT_VIEW_ID}.focus`);
    } else {
      this.view.show(true);
    }
    this.drain();
  }

  newChat(): void {
    this.stop();
    this.history = [];
    this.post({ type: 'clear' });
  }

  stop(): void {
    this.inFlight?.cancel();
  }

  private post(m: ToWebview): void {
    void this.view?.webview.postMessage(m);
  }

  private onMessage(raw: unknown, from: vscode.WebviewView): void {
    if (!isFromWebview(raw)) return;
    const m: FromWebview = raw;
    switch (m.type) {
      case 'ready':
        if (from !== this.view) return; // an old view's script: the current one says its own
        this.ready = true;
        this.drain();
        break;
      case 'ask':
        this.tracer.write({ kind: 'ask', qid: m.qid, ready: this.ready, inFlight: this.inFlight !== undefined, view: this.view !== undefined });
        // The webview shows the question as "sending" until this acknowledgement: one that never
        // arrives stays visible as unsent instead of vanishing.
        this.post({ type: 'received', qid: m.qid });
        if (m.prompt.trim() !== '') {
          this.queue.push({ prompt: m.prompt, qid: m.qid });
          this.drain();
        }
        break;
      case 'stop':
        this.stop();
        break;
      case 'new':
        this.newChat();
        break;
      case 'copy':
        void vscode.env.clipboard.writeText(m.code).then(() => this.post({ type: 'copied' }));
        break;
      case 'insert':
        void this.insert(m.code);
        break;
    }
  }

  private drain(): void {
    if (!this.ready || this.inFlight) return;
    const next = this.queue.shift();
    if (next) void this.run(next);
  }

  private async run(p: Pending): Promise<void> {
    const id = this.nextId++;
    const cts = new vscode.CancellationTokenSource();
    this.inFlight = cts;
    this.post({ type: 'user', id, content: p.prompt, label: p.label, qid: p.qid });
    this.post({ type: 'start', id });
    const stream = new StreamAssembler();
    const messages = buildMessages(this.history, p.prompt, HISTORY_CHARS);
    try {
      const result = await this.daemon.chat(
        { messages, ...chatOptions(this.daemon.current()), ...(p.textDocument ? { textDocument: p.textDocument } : {}) },
        cts.token,
        (value) => {
          const delta = stream.push(value);
          if (delta !== undefined) this.post({ type: 'delta', id, delta, backend: stream.backend });
        },
      );
      const done = stream.finish(result);
      if (done.mismatch) {
        this.log.warn(`chat ${id}: streamed text differs from the final result; showing the final result`);
      }
      this.history.push({ role: 'user', content: p.prompt }, { role: 'assistant', content: done.text });
      this.tracer.write({
        kind: 'chat',
        id,
        text: done.text,
        streamed: stream.chunks,
        backend: result.backend,
        model: result.model,
        attempts: result.attempts,
        finishReason: result.finishReason,
        usage: result.usage,
        timings: result.timings,
        textDocument: p.textDocument?.uri,
      });
      this.post({
        type: 'done',
        id,
        text: done.text,
        backend: result.backend,
        model: result.model,
        finishReason: result.finishReason,
        attempts: result.attempts ?? [],
        completionTokens: result.usage?.completionTokens ?? 0,
        firstTokenMs: result.timings?.firstTokenMs ?? 0,
        totalMs: result.timings?.totalMs ?? 0,
        reasoning: result.reasoning ?? '',
      });
    } catch (err) {
      stream.abort();
      if (cts.token.isCancellationRequested || err instanceof vscode.CancellationError) {
        this.tracer.write({ kind: 'chat-cancelled', id, streamed: stream.chunks, error: describeError(err) });
        this.post({ type: 'cancelled', id });
      } else {
        const message = err instanceof Error ? err.message : String(err);
        this.log.error(`chat ${id} failed: ${message}`);
        this.post({ type: 'error', id, message });
      }
    } finally {
      cts.dispose();
      this.inFlight = undefined;
      this.drain();
    }
  }

  private async insert(code: string): Promise<void> {
    const editor = this.lastEditor;
    if (!editor || editor.document.isClosed) {
      void vscode.window.showWarningMessage('mlxd: no editor to insert into; click into a file first.');
      return;
    }
    await vscode.window.showTextDocument(editor.document, editor.viewColumn);
    await editor.edit((b) => {
      for (const sel of editor.selections) b.replace(sel, code);
    });
  }

  dispose(): void {
    this.stop();
    for (const d of this.disposables) d.dispose();
  }
}

/** name, JSON-RPC code and message of a rejected request (for logs and the trace). */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return `${err.name}${typeof code === 'number' ? ` ${code}` : ''}: ${err.message}`;
}

function nonce(): string {
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let out = '';
  for (let i = 0; i < 32; i++) out += chars.charAt(Math.floor(Math.random() * chars.length));
  return out;
}

/** The webview's HTML: strict CSP (no remote content, only our nonce'd script and stylesheet). */
export function chatHtml(webview: vscode.Webview, extensionUri: vscode.Uri): string {
  const n = nonce();
  const script = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview.js'));
  const style = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'media', 'chat.css'));
  const csp = [
    "default-src 'none'",
    `style-src ${webview.cspSource}`,
    `script-src 'nonce-${n}'`,
    `img-src ${webview.cspSource} data:`,
    `font-src ${webview.cspSource}`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${style.toString()}">
<title>mlxd chat</title>
</head>
<body>
<div id="mlxd-chat">
  <div id="messages" role="log" aria-live="polite"></div>
  <form id="ask">
    <textarea id="prompt" rows="3" placeholder="Ask mlxd… (Enter sends, Shift+Enter is a new line)" aria-label="Prompt"></textarea>
    <div class="buttons">
      <button id="send" type="submit">Send</button>
      <button id="stop" type="button" disabled>Stop</button>
      <button id="new" type="button" title="Start a new conversation">New</button>
    </div>
  </form>
</div>
<script nonce="${n}" src="${script.toString()}"></script>
</body>
</html>`;
}
