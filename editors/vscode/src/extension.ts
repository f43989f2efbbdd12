// Entry point: wires the daemon client, status bar, chat panel and commands together.

import * as path from 'node:path';
import * as vscode from 'vscode';
import { CHAT_VIEW_ID, ChatViewProvider } from './chat';
import { Daemon } from './daemon';
import { KeyStore } from './keys';
import { applyPreset, cloudBackends, cloudEnabled, currentPreset, routingItems, toggleCloud } from './presets';
import { askAboutFilePrompt, explainSelectionPrompt } from './prompts';
import { backendsWithoutKey } from './status';
import { StatusBar } from './statusBar';
import { makeTracer } from './trace';

let daemon: Daemon | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const log = vscode.window.createOutputChannel('mlxd', { log: true });
  const status = new StatusBar();
  const keys = new KeyStore(context.secrets, context.globalState);
  const tracer = makeTracer(process.env.MLXD_VSCODE_TRACE);
  daemon = new Daemon(log, status, keys, tracer);
  const chat = new ChatViewProvider(context.extensionUri, daemon, log, tracer);
  const d = daemon;
  context.subscriptions.push(log, status, d, chat);
  context.subscriptions.push(
    vscode.window.registerWebviewViewProvider(CHAT_VIEW_ID, chat, { webviewOptions: { retainContextWhenHidden: true } }),
  );

  const command = (id: string, fn: (...args: unknown[]) => unknown): void => {
    context.subscriptions.push(vscode.commands.registerCommand(id, fn));
  };

  command('mlxd.showLogs', () => log.show(true));
  command('mlxd.restart', () => d.restart());
  command('mlxd.showStats', async () => {
    try {
      const stats = await d.stats();
      log.info(`mlxd/stats: ${JSON.stringify(stats, null, 2)}`);
      tracer.write({ kind: 'stats', stats });
      log.show(true);
    } catch (err) {
      void vscode.window.showErrorMessage(`mlxd: no stats: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
  command('mlxd.openChat', async () => {
    await vscode.commands.executeCommand(`${CHAT_VIEW_ID}.focus`);
    tracer.write({ kind: 'chat-opened' }); // the e2e types once VS Code has moved the focus
  });
  command('mlxd.newChat', () => chat.newChat());
  // Ctrl+C / Cmd+C with a selection runs VS Code's own copy, then this (package.json's
  // runCommands: the copy is VS Code's, whatever becomes of the extension); the copied text
  // goes to the daemon (copy.ts).
  command('mlxd.copied', () => d.copied(vscode.window.activeTextEditor));
  void vscode.commands.executeCommand('setContext', 'mlxd.reportsCopies', true);
  command('mlxd.cancelDownload', () => {
    if (!d.cancelLoad()) void vscode.window.showInformationMessage('mlxd: no model download or load is running.');
  });

  command('mlxd.explainSelection', async () => {
    const editor = vscode.window.activeTextEditor;
    if (!editor || editor.selection.isEmpty) {
      void vscode.window.showInformationMessage('mlxd: select some code first.');
      return;
    }
    const doc = editor.document;
    const code = doc.getText(editor.selection);
    const name = vscode.workspace.asRelativePath(doc.uri);
    const prompt = explainSelectionPrompt({ code, languageId: doc.languageId, fileName: name }, d.current().maxContextChars);
    const lines = `${editor.selection.start.line + 1}-${editor.selection.end.line + 1}`;
    await chat.ask(prompt, `Explain ${name}:${lines}`, { uri: doc.uri.toString() });
  });

  command('mlxd.askAboutFile', async () => {
    const editor = vscode.window.activeTextEditor;
    if (!editor) {
      void vscode.window.showInformationMessage('mlxd: open a file first.');
      return;
    }
    const doc = editor.document;
    const name = vscode.workspace.asRelativePath(doc.uri);
    const question = await vscode.window.showInputBox({
      title: `Ask about ${path.basename(doc.fileName)}`,
      prompt: 'Your question (the file is sent as context)',
      value: 'What does this file do?',
    });
    if (question === undefined || question.trim() === '') return;
    const prompt = askAboutFilePrompt(question, { code: doc.getText(), languageId: doc.languageId, fileName: name }, d.current().maxContextChars);
    await chat.ask(prompt, `${question.trim()} (${name})`, { uri: doc.uri.toString() });
  });

  command('mlxd.toggleInline', async () => {
    const cfg = vscode.workspace.getConfiguration('mlxd');
    const now = d.current().inlineEnable; // in force: a workspace's `true` does not count
    await cfg.update('inline.enable', !now, vscode.ConfigurationTarget.Global);
    void vscode.window.setStatusBarMessage(`mlxd: inline completions ${now ? 'off' : 'on'}`, 3000);
  });

  command('mlxd.toggleCloud', async () => {
    const next = toggleCloud(d.current().config);
    await writeConfig(next);
    void vscode.window.setStatusBarMessage(`mlxd: cloud backends ${cloudEnabled(next) ? 'allowed' : 'off'}`, 3000);
  });

  command('mlxd.selectRouting', async () => {
    const config = d.current().config;
    const hasCloud = cloudBackends(config).length > 0;
    const pick = await vscode.window.showQuickPick(routingItems(config), {
      title: 'mlxd routing',
      placeHolder: hasCloud ? 'Choose where requests go' : 'No cloud backends configured (mlxd.config.backends)',
    });
    if (pick?.id === 'settings') {
      await vscode.commands.executeCommand('workbench.action.openSettings', 'mlxd.config');
    } else if (pick) {
      await writeConfig(applyPreset(config, pick.id));
    }
  });

  command('mlxd.setApiKey', async (given?: unknown) => {
    const names = cloudBackends(d.current().config);
    let backend: string | undefined;
    if (typeof given === 'string' && given !== '') {
      backend = given; // from the "no API key" notification
    } else if (names.length > 0) {
      backend = (await vscode.window.showQuickPick(names, { title: 'mlxd: API key for which backend?' })) ?? undefined;
    } else {
      backend = await vscode.window.showInputBox({ title: 'mlxd: backend name', prompt: 'The backend name from the mlxd config' });
    }
    if (!backend) return;
    const apiKey = await vscode.window.showInputBox({ title: `mlxd: API key for ${backend}`, password: true, ignoreFocusOut: true });
    if (!apiKey) return;
    await keys.set(backend, apiKey);
    if (d.running) {
      try {
        await d.setApiKey(backend, apiKey);
      } catch (err) {
        void vscode.window.showErrorMessage(`mlxd: the daemon did not accept the key for ${backend}: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
    }
    void vscode.window.showInformationMessage(`mlxd: API key for ${backend} stored in the OS secret store.`);
  });

  command('mlxd.clearApiKey', async () => {
    const backend = await vscode.window.showQuickPick(keys.names(), { title: 'mlxd: clear the API key of' });
    if (!backend) return;
    await keys.clear(backend);
    void vscode.window.showInformationMessage(`mlxd: API key for ${backend} removed (restart the daemon to drop it there too).`);
  });

  command('mlxd.showMenu', async () => {
    const s = d.current();
    const cloud = cloudEnabled(s.config);
    const keyless = backendsWithoutKey(status.model.daemon);
    const items: (vscode.QuickPickItem & { run: string })[] = [
      { label: '$(comment-discussion) Open chat', run: 'mlxd.openChat' },
      { label: '$(settings) Switch routing preset…', description: currentPreset(s.config) ?? 'custom', run: 'mlxd.selectRouting' },
      { label: `$(cloud) ${cloud ? 'Turn cloud off' : 'Allow cloud backends'}`, description: `cloud is ${cloud ? 'on' : 'off'}`, run: 'mlxd.toggleCloud' },
      { label: `$(lightbulb) ${s.inlineEnable ? 'Disable' : 'Enable'} inline completions`, run: 'mlxd.toggleInline' },
      { label: '$(key) Set API key…', description: keyless.length > 0 ? `no key: ${keyless.join(', ')}` : undefined, run: 'mlxd.setApiKey' },
      ...(status.model.progress ? [{ label: '$(close) Cancel model download', description: status.model.progress.message, run: 'mlxd.cancelDownload' }] : []),
      { label: '$(output) Open logs', run: 'mlxd.showLogs' },
      { label: '$(debug-restart) Restart daemon', run: 'mlxd.restart' },
    ];
    const pick = await vscode.window.showQuickPick(items, { title: 'mlxd', placeHolder: status.view.tooltip.split('\n')[0] });
    if (pick) await vscode.commands.executeCommand(pick.run);
  });

  void d.start();
}

/** Writes `mlxd.config` back where it is set (workspace if it has a value there, else user). */
async function writeConfig(next: Record<string, unknown>): Promise<void> {
  const cfg = vscode.workspace.getConfiguration('mlxd');
  const inspect = cfg.inspect('config');
  const target = inspect?.workspaceValue !== undefined ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
  await cfg.update('config', next, target);
}

export async function deactivate(): Promise<void> {
  void vscode.commands.executeCommand('setContext', 'mlxd.reportsCopies', false); // Ctrl+C is VS Code's again
  await daemon?.stop();
  daemon = undefined;
}
