// Owns the language client: starts `mlxd serve`, forwards config changes, hands over API keys,
// and exposes the custom requests (chat with streaming, models) to the rest of the extension.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as readline from 'node:readline';
import type { Readable } from 'node:stream';
import * as vscode from 'vscode';
import {
  CloseAction,
  DidChangeConfigurationNotification,
  ErrorAction,
  type LanguageClientOptions,
  LanguageClient,
  ProgressType,
  type ServerOptions,
  State,
  Trace,
  type WorkDoneProgressBegin,
  type WorkDoneProgressEnd,
  type WorkDoneProgressReport,
  WorkDoneProgressCancelNotification,
} from 'vscode-languageclient/node';
import { copiedText, DID_COPY } from './copy';
import { advertises, CursorReporter, DID_MOVE_CURSOR } from './cursor';
import { DownloadNotifier } from './download';
import { describeItems, inlineWantedIn, makeInlineMiddleware } from './inline';
import type { KeyStore } from './keys';
import {
  type ChatParams,
  type ChatResult,
  isStatusParams,
  Methods,
  type ModelsResult,
  type SetApiKeyParams,
  type StatsResult,
} from './protocol';
import { type Inspected, readSettings, resolveServerPath, type Settings, serverArgv, toInitializationOptions } from './settings';
import { describeSpawnError, NOT_FOUND_ON_PATH, serverNotFound } from './serverPath';
import { backendsWithoutKey, forwardWorkDoneToClient } from './status';
import type { StatusBar } from './statusBar';
import { StderrRouter } from './stderr';
import { chatToken } from './stream';
import type { Tracer } from './trace';

/** The documents the client syncs to the daemon (and asks ghost text for). */
const DOCUMENT_SELECTOR = [{ scheme: 'file' }, { scheme: 'untitled' }];

export class Daemon implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private settings: Settings = readSettings(getter(), inspector());
  private readonly session = Math.random().toString(36).slice(2, 10);
  private requests = 0;
  private readonly disposables: vscode.Disposable[] = [];
  private crashes: number[] = [];
  private restartedByClient = false;
  private readonly keyOffered = new Set<string>();
  /** Model downloads as cancellable notifications (the client's own progress has no Cancel). */
  private readonly downloads = new DownloadNotifier((token) => {
    void this.client?.sendNotification(WorkDoneProgressCancelNotification.type, { token });
  }, vscode.window);

  /** Where the cursor rests goes to the daemon (`mlxd/didMoveCursor`), which warms the prompt
   * there: on every selection change, and when an editor becomes active (opening a file puts
   * the cursor somewhere). Only for synced documents with ghost text on, and only to a daemon
   * that lists the method (an older shared one does not). */
  private readonly cursor = new CursorReporter<vscode.TextDocument>({
    wanted: (doc) => {
      const client = this.client;
      return (
        client?.state === State.Running &&
        advertises(client.initializeResult?.capabilities, DID_MOVE_CURSOR) &&
        vscode.languages.match(DOCUMENT_SELECTOR, doc) > 0 &&
        inlineWantedIn(doc, this.settings)
      );
    },
    uri: (doc) => this.client?.code2ProtocolConverter.asUri(doc.uri) ?? doc.uri.toString(),
    send: (params) => {
      void this.client?.sendNotification(DID_MOVE_CURSOR, params).catch(() => undefined);
      this.tracer.write({ kind: 'cursor', uri: params.textDocument.uri, line: params.position.line, character: params.position.character });
    },
  });

  constructor(
    private readonly log: vscode.LogOutputChannel,
    private readonly status: StatusBar,
    private readonly keys: KeyStore,
    private readonly tracer: Tracer,
  ) {
    this.disposables.push(vscode.workspace.onDidChangeConfiguration((e) => this.onConfigChange(e)));
    this.disposables.push(...this.watchCursor());
  }

  private watchCursor(): vscode.Disposable[] {
    return [
      vscode.window.onDidChangeTextEditorSelection((e) => this.cursor.moved(e.textEditor.document, e.textEditor.selection.active)),
      vscode.window.onDidChangeActiveTextEditor((editor) => this.cursorOf(editor)),
      vscode.workspace.onDidCloseTextDocument((doc) => this.cursor.closed(doc)),
      { dispose: () => this.cursor.dispose() },
    ];
  }

  /** `editor`'s selections were just copied (`mlxd.copied`): their text goes to the daemon
   * (`mlxd/didCopy`), which keeps it as a neighbour snippet for inline prompts. As for the
   * cursor: synced documents with ghost text on, a daemon that lists the method. */
  async copied(editor: vscode.TextEditor | undefined): Promise<void> {
    const client = this.client;
    if (!editor || client?.state !== State.Running) return;
    const doc = editor.document;
    if (!advertises(client.initializeResult?.capabilities, DID_COPY)) return;
    if (vscode.languages.match(DOCUMENT_SELECTOR, doc) === 0 || !inlineWantedIn(doc, this.settings)) return;
    const selected = editor.selections.filter((s) => !s.isEmpty).map((s) => doc.getText(s));
    const text = copiedText(selected, await vscode.env.clipboard.readText());
    if (text === undefined) return;
    const uri = client.code2ProtocolConverter.asUri(doc.uri);
    void client.sendNotification(DID_COPY, { textDocument: { uri }, text }).catch(() => undefined);
    this.tracer.write({ kind: 'copy', uri, chars: text.length });
  }

  private cursorOf(editor: vscode.TextEditor | undefined): void {
    if (editor) this.cursor.moved(editor.document, editor.selection.active);
  }

  get running(): boolean {
    return this.client?.state === State.Running;
  }

  current(): Settings {
    return this.settings;
  }

  async start(): Promise<void> {
    this.settings = readSettings(getter(), inspector());
    const folders = (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
    const ctx = { workspaceFolders: folders, pathEnv: process.env.PATH ?? '', home: os.homedir(), isExecutable };
    const resolved = resolveServerPath(this.settings.serverPath, ctx, process.env);
    // Checked before spawning: the client's own toast would say "spawn … ENOENT".
    const notFound = serverNotFound(resolved, ctx);
    if (notFound || !resolved) {
      this.notFound(notFound ?? NOT_FOUND_ON_PATH);
      return;
    }
    const args = serverArgv(this.settings, ctx, process.env);
    this.log.info(`starting ${resolved.path} ${args.join(' ')} (found via ${resolved.source})`);

    const serverOptions: ServerOptions = {
      command: resolved.path,
      args,
      // No `transport`: TransportKind.stdio would append `--stdio`; stdio pipes are the default.
      options: { env: { ...process.env, ...this.settings.serverEnv }, cwd: folders[0] },
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: DOCUMENT_SELECTOR,
      outputChannel: this.log,
      stdioOptions: { stdout: forwardLines, stderr: routeStderr },
      // A function, so a restart picks up the current settings.
      initializationOptions: () => this.mappedConfig(),
      middleware: {
        provideInlineCompletionItems: makeInlineMiddleware({
          settings: () => this.settings,
          onResult: (doc, pos, items) =>
            this.tracer.write({ kind: 'inline', uri: doc.uri.toString(), line: pos.line, character: pos.character, items: describeItems(items) }),
        }),
        handleWorkDoneProgress: (token, params, next) => {
          this.onWorkDone(params);
          this.downloads.onProgress(token, params);
          if (forwardWorkDoneToClient(params.kind)) next(token, params); // one place shows the load
        },
      },
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue }),
        closed: () => {
          // Restart a crashed daemon, but not in a loop: at most 3 times in 3 minutes.
          const now = Date.now();
          this.crashes = this.crashes.filter((t) => now - t < 180_000);
          this.crashes.push(now);
          if (this.crashes.length <= 3) {
            this.log.warn('the daemon exited; restarting it');
            this.restartedByClient = true;
            this.downloads.reset();
            // What the old daemon said (its backends, the last fallback) is stale now.
            this.status.update({ phase: 'starting', daemon: undefined, progress: undefined, lastServed: undefined });
            return { action: CloseAction.Restart };
          }
          this.status.update({ phase: 'failed', error: 'The daemon exited 4 times in 3 minutes; see the mlxd output channel.' });
          return { action: CloseAction.DoNotRestart };
        },
      },
    };
    const client = new LanguageClient('mlxd', 'mlxd', serverOptions, clientOptions);
    this.client = client;
    client.onNotification(Methods.status, (params: unknown) => {
      if (isStatusParams(params)) {
        this.tracer.write({ kind: 'status', state: params.state, backends: params.backends });
        this.status.update({ daemon: params });
        // Not while starting: the stored keys are handed over first (onRunning).
        if (this.status.model.phase === 'running') this.offerKeys(backendsWithoutKey(params));
      }
    });
    client.onDidChangeState((e) => {
      if (e.newState === State.Running && this.client === client) {
        // A new session: it has been told no position yet; the active editor's is the first.
        this.cursor.reset();
        this.cursorOf(vscode.window.activeTextEditor);
      }
      if (e.newState === State.Running && this.restartedByClient && this.client === client) {
        this.restartedByClient = false;
        void this.onRunning();
      }
      if (e.newState === State.Stopped && this.client === client && this.status.model.phase !== 'starting') {
        this.status.update({ phase: this.status.model.phase === 'failed' ? 'failed' : 'stopped', progress: undefined });
      }
    });
    this.status.update({ phase: 'starting', daemon: undefined, progress: undefined, error: undefined, lastServed: undefined });
    try {
      await client.start();
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      const friendly = describeSpawnError(msg, resolved.path);
      if (friendly) {
        this.notFound(friendly);
        return;
      }
      this.log.error(`the daemon failed to start: ${msg}`);
      this.status.update({ phase: 'failed', error: msg });
      return;
    }
    await this.onRunning();
  }

  /** Says once per backend and session that it has no API key, with the command that sets one:
   * before a request to it fails, not after. */
  private offerKeys(names: string[]): void {
    const stored = new Set(this.keys.names()); // handed over already; a status may trail it
    for (const name of names.filter((n) => !this.keyOffered.has(n) && !stored.has(n))) {
      this.keyOffered.add(name);
      this.tracer.write({ kind: 'no-key', backend: name });
      void vscode.window.showWarningMessage(`mlxd: backend "${name}" has no API key.`, 'Set API Key').then((pick) => {
        if (pick) void vscode.commands.executeCommand('mlxd.setApiKey', name);
      });
    }
  }

  /** The executable is missing: said once, in the status bar and a toast that opens the setting. */
  private notFound(msg: string): void {
    this.log.error(msg);
    this.status.update({ phase: 'failed', error: msg, progress: undefined });
    void vscode.window.showErrorMessage(msg, 'Open Settings').then((pick) => {
      if (pick) void vscode.commands.executeCommand('workbench.action.openSettings', 'mlxd.serverPath');
    });
  }

  /** After every (re)start: hand over the keys, then say "ready" so the first request can use them. */
  private async onRunning(): Promise<void> {
    await this.sendStoredKeys();
    this.status.update({ phase: 'running' });
    this.offerKeys(backendsWithoutKey(this.status.model.daemon));
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) {
      try {
        await client.stop(3000);
      } catch (err) {
        this.log.warn(`stopping the daemon: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    this.downloads.reset();
    this.status.update({ phase: 'stopped', progress: undefined });
  }

  /** Stops the model download (or load) in flight: `window/workDoneProgress/cancel` for its
   * token; the daemon ends the progress and says why. False when none runs. */
  cancelLoad(): boolean {
    return this.downloads.cancelAll();
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  mappedConfig(): Record<string, unknown> {
    const { options, warnings } = toInitializationOptions(this.settings.config, this.settings.workspaceConfig);
    for (const w of warnings) this.log.warn(w);
    return options;
  }

  /** Sends `mlxd/chat`, streaming deltas to `onProgress`; rejects on error or cancellation. */
  async chat(params: Omit<ChatParams, 'partialResultToken'>, token: vscode.CancellationToken, onProgress: (value: unknown) => void): Promise<ChatResult> {
    const client = this.requireClient();
    this.requests += 1;
    const partialResultToken = chatToken(this.session, this.requests);
    const sub = client.onProgress(new ProgressType<unknown>(), partialResultToken, onProgress);
    try {
      const result = await client.sendRequest<ChatResult>(Methods.chat, { ...params, partialResultToken }, token);
      this.status.update({ lastServed: { backend: result.backend, attempts: result.attempts ?? [] } });
      return result;
    } finally {
      sub.dispose();
    }
  }

  /** `mlxd/stats`: the daemon's diagnostic counters for this session (not a contract). */
  async stats(): Promise<StatsResult> {
    return this.requireClient().sendRequest<StatsResult>(Methods.stats, {});
  }

  async models(): Promise<ModelsResult> {
    return this.requireClient().sendRequest<ModelsResult>(Methods.models, {});
  }

  /** Hands one key to the daemon. Protocol tracing is paused so the key never reaches a log. */
  async setApiKey(backend: string, apiKey: string): Promise<void> {
    const client = this.requireClient();
    const traced = vscode.workspace.getConfiguration('mlxd').get<string>('trace.server', 'off') !== 'off';
    if (traced) await client.setTrace(Trace.Off);
    try {
      const params: SetApiKeyParams = { backend, apiKey, persist: false };
      await client.sendRequest(Methods.setApiKey, params);
    } finally {
      if (traced) await client.setTrace(Trace.fromString(vscode.workspace.getConfiguration('mlxd').get<string>('trace.server', 'off')));
    }
  }

  private async sendStoredKeys(): Promise<void> {
    for (const { backend, apiKey } of await this.keys.all()) {
      try {
        await this.setApiKey(backend, apiKey);
        this.log.info(`API key for backend "${backend}" handed to the daemon`);
      } catch (err) {
        // The daemon's error names the backend; it never echoes the key.
        this.log.warn(`API key for backend "${backend}" was not accepted: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }

  private requireClient(): LanguageClient {
    if (!this.client || this.client.state !== State.Running) {
      throw new Error('the mlxd daemon is not running');
    }
    return this.client;
  }

  private onWorkDone(params: WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd): void {
    this.tracer.write({ kind: 'progress', progress: params.kind, percentage: 'percentage' in params ? params.percentage : undefined });
    const prev = this.status.model.progress;
    switch (params.kind) {
      case 'begin':
        this.status.update({ progress: { title: params.title, message: params.message, percentage: params.percentage } });
        break;
      case 'report':
        this.status.update({
          progress: { title: prev?.title ?? 'working', message: params.message ?? prev?.message, percentage: params.percentage ?? prev?.percentage },
        });
        break;
      case 'end':
        this.status.update({ progress: undefined });
        if (params.message) this.log.info(params.message);
        break;
    }
  }

  private onConfigChange(e: vscode.ConfigurationChangeEvent): void {
    if (!e.affectsConfiguration('mlxd')) return;
    const before = this.settings;
    this.settings = readSettings(getter(), inspector());
    const spawnChanged =
      e.affectsConfiguration('mlxd.serverPath') || e.affectsConfiguration('mlxd.serverArgs') || e.affectsConfiguration('mlxd.serverEnv');
    if (spawnChanged) {
      this.log.info('daemon command changed; restarting');
      void this.restart();
      return;
    }
    let sent = false;
    const layers = (x: typeof before) => JSON.stringify([x.config, x.workspaceConfig]);
    if ((e.affectsConfiguration('mlxd.config') || e.affectsConfiguration('mlxd.workspaceConfig')) && layers(before) !== layers(this.settings)) {
      const client = this.client;
      if (client?.state === State.Running) {
        void client.sendNotification(DidChangeConfigurationNotification.type, { settings: this.mappedConfig() });
        this.log.info('config sent to the daemon (workspace/didChangeConfiguration)');
        // The last answer's backend and fallback were under the old config.
        this.status.update({ lastServed: undefined });
        sent = true;
      }
    }
    this.tracer.write({ kind: 'settings', configSent: sent });
  }

  dispose(): void {
    this.downloads.dispose();
    for (const d of this.disposables) d.dispose();
    void this.stop();
  }
}

function getter(): <T>(key: string, fallback: T) => T {
  const cfg = vscode.workspace.getConfiguration('mlxd');
  return <T>(key: string, fallback: T): T => cfg.get<T>(key, fallback);
}

function inspector(): (key: string) => Inspected | undefined {
  const cfg = vscode.workspace.getConfiguration('mlxd');
  return (key: string) => cfg.inspect(key);
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function lines(input: Readable, onLine: (line: string) => void): void {
  readline.createInterface({ input, crlfDelay: Infinity, terminal: false, historySize: 0 }).on('line', onLine);
}

/** Non-protocol stdout (only seen with other transports): as the client would show it. */
function forwardLines(input: Readable, channel: vscode.LogOutputChannel): void {
  lines(input, (line) => channel.info(line));
}

/** stderr: each record at its own level (see stderr.ts). */
function routeStderr(input: Readable, channel: vscode.LogOutputChannel): void {
  const router = new StderrRouter();
  lines(input, (line) => {
    const routed = router.route(line);
    if (routed) channel[routed.level](routed.text);
  });
}
