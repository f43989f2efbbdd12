// End-to-end test in a real VS Code: code-server on loopback with a private config and user
// settings, the packaged .vsix installed offline, Debian's chromium driven by playwright-core.
// It types in a Python file until the daemon's ghost text shows, accepts it with Tab, saves and
// reads the file, then asks the chat panel and watches the answer stream in.
//
// The daemon's model is random (a tiny test model), so the checks are about structure and about
// equality with what the daemon returned (recorded by the extension's MLXD_VSCODE_TRACE file).
//
// Inputs (environment): MLXD_E2E_SERVER (mlxd executable), MLXD_E2E_CONFIG (mlxd TOML),
// MLXD_E2E_VSIX, MLXD_E2E_NODE (Node 24), MLXD_E2E_CODE_SERVER (code-server's entry script),
// MLXD_E2E_CHROMIUM (default /usr/bin/chromium), MLXD_E2E_WORKDIR (scratch), and optional
// MLXD_E2E_ARTIFACTS (screenshots and logs are copied there).
// Output: progress lines, then one line `E2E_RESULT <json>`; exit code 0 only if all passed.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { type Browser, chromium, type Frame, type Page } from 'playwright-core';
import { renderMarkdown } from '../../src/markdown';

const env = (name: string, fallback?: string): string => {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === '') throw new Error(`${name} is not set`);
  return v;
};

const SERVER = env('MLXD_E2E_SERVER');
const CONFIG = env('MLXD_E2E_CONFIG');
const VSIX = env('MLXD_E2E_VSIX');
const NODE = env('MLXD_E2E_NODE');
const CODE_SERVER = env('MLXD_E2E_CODE_SERVER');
const CHROMIUM = env('MLXD_E2E_CHROMIUM', '/usr/bin/chromium');
const WORK = env('MLXD_E2E_WORKDIR');
// A loopback fake OpenAI provider that accepts only this key (the Python test runs it).
const OPENAI_URL = env('MLXD_E2E_OPENAI_URL');
const API_KEY = env('MLXD_E2E_API_KEY');
const ARTIFACTS = process.env.MLXD_E2E_ARTIFACTS ?? path.join(WORK, 'artifacts');
// A loopback fake Hugging Face Hub serving HF_REPO slowly (the Python test runs it).
const HF_URL = env('MLXD_E2E_HF_URL');
const HF_REPO = env('MLXD_E2E_HF_REPO');
// Development only: run just these sections (comma-separated names of main()'s steps).
const ONLY = process.env.MLXD_E2E_ONLY?.split(',');

const dirs = {
  ws: path.join(WORK, 'ws'),
  user: path.join(WORK, 'user-data'),
  ext: path.join(WORK, 'extensions'),
  home: path.join(WORK, 'home'),
};
const trace = path.join(WORK, 'trace.jsonl');
const csLog = path.join(WORK, 'code-server.log');
const file = path.join(dirs.ws, 'main.py');
const INITIAL = 'import math\n\n\n';
// cursor.py, for the cursor reports (cursorTest).
const CURSOR_LINES = Array.from({ length: 12 }, (_, i) => `value_${i} = ${i} * 2  # line ${i}`);

const t0 = Date.now();
function log(msg: string): void {
  console.log(`[e2e +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
}

const result: Record<string, unknown> = {};
let failure: string | undefined;

interface TraceRecord {
  kind: string;
  uri?: string;
  stats?: { inline?: { cursorMoves?: number; copies?: number } };
  chars?: number;
  line?: number;
  character?: number;
  items?: { insertText: string; range?: [number, number, number, number] }[];
  text?: string;
  streamed?: number;
  backend?: string;
}

function readTrace(): TraceRecord[] {
  if (!fs.existsSync(trace)) return [];
  return fs
    .readFileSync(trace, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as TraceRecord);
}

function check(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`check failed: ${what}`);
  log(`ok: ${what}`);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs: number, everyMs = 250): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== null && (v as unknown) !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const settings: Record<string, unknown> = {};

/** Writes the user settings.json (VS Code watches it and applies changes live). */
function writeSettings(patch: Record<string, unknown>): void {
  Object.assign(settings, patch);
  const userDir = path.join(dirs.user, 'User');
  fs.mkdirSync(userDir, { recursive: true });
  fs.writeFileSync(path.join(userDir, 'settings.json'), JSON.stringify(settings, null, 2));
}

/**
 * Changes user settings the way a user does: the settings.json editor, saved. (code-server does
 * not notice an outside write to that file.) The written file is read back and compared.
 */
async function editSettings(page: Page, patch: Record<string, unknown>): Promise<void> {
  Object.assign(settings, patch);
  // Keys typed while the chat webview has focus stay in its iframe: focus the editor first.
  await page.locator('.part.editor').first().click();
  await runCommand(page, 'Preferences: Open User Settings (JSON)');
  const lines = page.locator('.monaco-editor .view-lines', { hasText: 'editor.quickSuggestions' }).first();
  await lines.waitFor({ timeout: 15_000 });
  await lines.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(JSON.stringify(settings));
  await page.keyboard.press('Control+S');
  const file = path.join(dirs.user, 'User', 'settings.json');
  await waitFor('settings.json to be saved', () => {
    try {
      return JSON.stringify(JSON.parse(fs.readFileSync(file, 'utf8'))) === JSON.stringify(settings) ? true : undefined;
    } catch {
      return undefined;
    }
  }, 10_000);
  // The file on disk is right, but the editor can still be marked dirty for a moment after the
  // save (CI saw "Do you want to save the changes you made to settings.json?" block every later
  // click): wait for the tab to be clean before closing it.
  await waitFor('the settings.json tab to be clean', async () => {
    if ((await page.locator('.tab.active.dirty').count()) === 0) return true;
    await page.keyboard.press('Control+S');
    return undefined;
  }, 10_000, 500);
  await runCommand(page, 'View: Close Editor');
  // Should a save prompt still come up, the disk copy was already checked equal: keep it.
  const keep = page.locator('.monaco-dialog-box .monaco-button', { hasText: "Don't Save" });
  if (await keep.waitFor({ timeout: 1_500 }).then(() => true, () => false)) {
    log('settings.json asked to be saved after it was saved; kept the checked copy on disk');
    await keep.click();
  }
}

function writeSetup(port: number): string {
  for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  fs.writeFileSync(file, INITIAL);
  fs.writeFileSync(path.join(dirs.ws, 'cursor.py'), CURSOR_LINES.join('\n') + '\n');
  fs.writeFileSync(path.join(dirs.ws, 'notes.md'), '# Notes\n\none\ntwo\nthree\n');
  // A hostile repository's own settings (issue #15 case 1). They must not reach the daemon:
  // honoured, serverPath would keep the daemon from starting, and the config would send the
  // chats to a dead backend reading GITHUB_TOKEN (every later check would fail).
  fs.mkdirSync(path.join(dirs.ws, '.vscode'), { recursive: true });
  const evil = { protocol: 'openai', base_url: 'http://127.0.0.1:9/v1', model: 'x', api_key_env: 'GITHUB_TOKEN' };
  fs.writeFileSync(
    path.join(dirs.ws, '.vscode', 'settings.json'),
    JSON.stringify({
      'mlxd.serverPath': '/bin/false',
      'mlxd.serverArgs': ['--config', '/nonexistent.toml'],
      'mlxd.serverEnv': { MLXD_CONFIG: '/nonexistent.toml' },
      'mlxd.config': { backends: { evil }, routing: { cloud: true, chat: ['evil', 'local'] }, local: { max_tokens: 3 } },
    }),
  );
  Object.assign(settings, {
    // Keep VS Code's own suggestions out of the way so Tab goes to the inline suggestion.
    'editor.quickSuggestions': { other: 'off', comments: 'off', strings: 'off' },
    'editor.suggestOnTriggerCharacters': false,
    'editor.wordBasedSuggestions': 'off',
    'editor.acceptSuggestionOnEnter': 'off',
    'editor.autoClosingBrackets': 'never',
    'editor.autoClosingQuotes': 'never',
    'editor.inlineSuggest.enabled': true,
    'security.workspace.trust.enabled': false,
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'workbench.editor.useModal': 'off', // settings.json in a tab, closable like any editor
    'chat.disableAIFeatures': true,
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'files.autoSave': 'off',
    'mlxd.serverPath': SERVER,
    'mlxd.serverArgs': ['--config', CONFIG],
    // Exercises the initializationOptions path (snake_case keys of the daemon's schema).
    'mlxd.config': { inline: { max_tokens: 24 }, routing: { cloud: false } },
    'mlxd.inline.debounceMs': 100,
    'mlxd.chat.maxTokens': 48,
    'mlxd.chat.temperature': 0,
  });
  writeSettings({});
  const cfg = path.join(WORK, 'code-server.yaml');
  fs.writeFileSync(cfg, `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
  return cfg;
}

function childEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HOME: dirs.home,
    XDG_CONFIG_HOME: path.join(dirs.home, '.config'),
    XDG_DATA_HOME: path.join(dirs.home, '.local', 'share'),
    XDG_CACHE_HOME: path.join(dirs.home, '.cache'),
    MLXD_VSCODE_TRACE: trace,
    PATH: `${path.dirname(NODE)}:${process.env.PATH ?? ''}`,
  };
}

function installVsix(cfg: string): void {
  log(`installing ${path.basename(VSIX)} offline`);
  const r = spawnSync(NODE, [CODE_SERVER, '--config', cfg, '--user-data-dir', dirs.user, '--extensions-dir', dirs.ext, '--install-extension', VSIX], {
    env: childEnv(),
    encoding: 'utf8',
    timeout: 120_000,
  });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  check(r.status === 0 && /successfully installed/i.test(out), `code-server installs the .vsix (exit ${r.status}): ${out.trim().split('\n').slice(-2).join(' | ')}`);
}

function startCodeServer(cfg: string, port: number): ChildProcess {
  const logFd = fs.openSync(csLog, 'w');
  // detached: a new process group (setsid), so that stopping it stops the file watchers, the
  // extension host and the daemon too.
  const child = spawn(
    NODE,
    [
      CODE_SERVER,
      '--config', cfg,
      '--bind-addr', `127.0.0.1:${port}`,
      '--auth', 'none',
      '--user-data-dir', dirs.user,
      '--extensions-dir', dirs.ext,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--disable-getting-started-override',
      '--ignore-last-opened',
      dirs.ws,
    ],
    { env: childEnv(), detached: true, stdio: ['ignore', logFd, logFd] },
  );
  fs.closeSync(logFd);
  return child;
}

async function stopGroup(child: ChildProcess | undefined): Promise<void> {
  if (!child?.pid) return;
  const pgid = child.pid;
  const alive = (): boolean => {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  };
  try {
    process.kill(-pgid, 'SIGTERM');
  } catch {
    return;
  }
  const end = Date.now() + 5000;
  while (alive() && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  if (alive()) {
    log('process group still alive after SIGTERM; sending SIGKILL');
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  result.processGroupStopped = !alive();
}

async function runCommand(page: Page, title: string): Promise<void> {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout: 10_000 });
  await input.fill(`>${title}`);
  const row = page.locator('.quick-input-widget .monaco-list-row', { hasText: title }).first();
  await row.waitFor({ state: 'visible', timeout: 10_000 });
  await page.keyboard.press('Enter');
}

/** 'mlxd: Open Chat' from the palette; resolves once VS Code has moved the focus into the panel
 * (the extension's 'chat-opened' record). Keys typed before that can land anywhere: a busy
 * extension host (just after a daemon restart) runs the command late, and its focus move took
 * a question typed meanwhile (issue #18 item 11). */
async function openChat(page: Page): Promise<Frame> {
  const opened = (): number => readTrace().filter((r) => r.kind === 'chat-opened').length;
  const before = opened();
  await runCommand(page, 'mlxd: Open Chat');
  await waitFor('Open Chat to move the focus into the panel', () => (opened() > before ? true : undefined), 30_000, 100);
  return chatFrame(page);
}

/** Open Chat puts the caret in the prompt box: keys typed right away, with no click, land
 * there (VS Code focuses the panel's document, not the box; keys then went nowhere).
 * "Right away" is once the webview's document has the focus: VS Code's focus command resolves
 * before its renderer hands the focus into the webview's frame, and keys typed in that gap go to
 * the workbench, not to any extension (CI lost the first 4 of 13 keys so, once, on a loaded run). */
async function checkTypingAfterOpenChat(page: Page, when: string): Promise<void> {
  const frame = await openChat(page);
  const box = frame.locator('#prompt');
  await waitFor('VS Code to hand the focus into the chat webview', () => frame.evaluate(() => document.hasFocus()), 10_000, 20);
  await page.keyboard.type('typed at once');
  const got = await box.inputValue();
  (result.typedAfterOpenChat ??= {} as Record<string, string>);
  (result.typedAfterOpenChat as Record<string, string>)[when] = got;
  check(got === 'typed at once', `${when}: keys typed right after Open Chat reach the prompt box (it holds ${JSON.stringify(got)})`);
  await box.fill('');
}

async function statusText(page: Page): Promise<string | undefined> {
  const item = page.locator('.statusbar-item', { hasText: /mlxd/ }).first();
  if ((await item.count()) === 0) return undefined;
  return (await item.textContent())?.trim();
}

async function openFile(page: Page, name: string): Promise<void> {
  await page.keyboard.press('Control+P');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout: 10_000 });
  await input.fill(name);
  // Click the row: Enter right after typing can pick a recently opened file still listed first.
  const row = page.locator('.quick-input-widget .monaco-list-row', { hasText: name }).first();
  await row.waitFor({ timeout: 10_000 });
  await row.click();
  await page.locator('.tab.active', { hasText: name }).waitFor({ timeout: 15_000 });
  await page.locator('.editor-instance .monaco-editor .view-lines').first().waitFor({ timeout: 15_000 });
}

async function ghostText(page: Page): Promise<string | undefined> {
  const parts = await page.locator('.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text').allTextContents();
  const text = parts.join('');
  return text.length > 0 ? text : undefined;
}

async function inlineTest(page: Page): Promise<void> {
  await openFile(page, 'main.py');
  const lines = page.locator('.editor-instance .monaco-editor .view-lines').first();
  await lines.click();
  await page.keyboard.press('Control+End');
  await page.keyboard.type('def add(a, b):', { delay: 40 });
  await page.keyboard.press('Enter'); // VS Code indents the body itself
  await page.keyboard.type('return a', { delay: 60 });
  // The cursor, 0-based: INITIAL ends with a newline, so `def` went on line 3 and the body on 4.
  const cursor = { line: INITIAL.split('\n').length, character: '    return a'.length };

  let ghost: string | undefined;
  let how = 'typing';
  try {
    ghost = await waitFor('ghost text after typing', () => ghostText(page), 20_000);
  } catch {
    // FIELD-NOTES: Alt+\ does nothing from playwright; the palette command does.
    how = 'Trigger Inline Suggestion';
    log('no ghost text from typing; invoking "Trigger Inline Suggestion"');
    await runCommand(page, 'Trigger Inline Suggestion');
    await page.locator('.editor-instance .monaco-editor .view-lines').first().waitFor();
    ghost = await waitFor('ghost text after explicit trigger', () => ghostText(page), 20_000);
  }
  result.ghostText = ghost;
  result.ghostTrigger = how;
  log(`ghost text (${how}): ${JSON.stringify(ghost)}`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'ghost-text.png') });

  // What the daemon returned at the cursor (recorded by the extension).
  const records = readTrace().filter((r) => r.kind === 'inline' && r.line === cursor.line && r.character === cursor.character && (r.items?.length ?? 0) > 0);
  check(records.length > 0, 'the daemon returned an inline item at the cursor');
  const item = records[records.length - 1]?.items?.[0];
  check(item !== undefined && item.insertText.length > 0, 'the inline item has text');
  result.insertText = item.insertText;
  check(
    item.range !== undefined && item.range[0] === cursor.line && item.range[1] === cursor.character,
    `the item carries an explicit range starting at the cursor (${JSON.stringify(item.range)})`,
  );
  // The ghost text shows the item's text (the first line inline, further lines below it;
  // the editor renders spaces as non-breaking ones and control characters as their U+24xx
  // pictures).
  const norm = (s: string): string =>
    s
      .replace(/[\u0000-\u0008\u000b-\u001f]/g, (c) => String.fromCharCode(0x2400 + c.charCodeAt(0)))
      .replace(/\u007f/g, '\u2421')
      .replace(/\u00a0/g, ' ')
      .replace(/\s+/g, ' ')
      .trim();
  check(norm(item.insertText).startsWith(norm(ghost).slice(0, 20)) || norm(ghost).startsWith(norm(item.insertText).slice(0, 20)), 'the ghost text is the daemon\'s item');

  await page.keyboard.press('Tab');
  await waitFor('the ghost text to be accepted', async () => ((await ghostText(page)) === undefined ? true : undefined), 5000).catch(() => undefined);
  // `.view-lines` includes ghost text; the saved file is the truth.
  await page.keyboard.press('Control+S');
  const expected = `${INITIAL}def add(a, b):\n    return a`;
  const saved = await waitFor('main.py saved with the accepted text', () => {
    const s = fs.readFileSync(file, 'utf8');
    return s.length > expected.length ? s : undefined;
  }, 10_000);
  result.savedFile = saved;
  const [sl, sc, el, ec] = item.range as [number, number, number, number];
  // Apply the item's edit to what was typed, exactly as VS Code should have.
  const offset = (text: string, line: number, ch: number): number => {
    const ls = text.split('\n');
    return ls.slice(0, line).reduce((n, l) => n + l.length + 1, 0) + ch;
  };
  const want = expected.slice(0, offset(expected, sl, sc)) + item.insertText + expected.slice(offset(expected, el, ec));
  check(saved === want, `Tab accepted the daemon's item into the file (saved ${JSON.stringify(saved.slice(INITIAL.length))})`);
}

/** Types `def <name>(a, b):` + `return a` on new lines at the end of main.py and saves; the
 * saved text and the cursor (0-based, at the end). */
async function typeFunction(page: Page, name: string): Promise<{ typed: string; cursor: { line: number; character: number } }> {
  await openFile(page, 'main.py');
  await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
  await page.keyboard.press('Control+End');
  await page.keyboard.press('Control+S');
  const before = fs.readFileSync(file, 'utf8');
  await page.keyboard.press('Enter');
  await page.keyboard.press('Enter');
  await page.keyboard.press('Shift+Tab'); // out of a body an earlier step may have left indented
  await page.keyboard.insertText(`def ${name}(a, b):`);
  await page.keyboard.press('Enter');
  await page.keyboard.insertText('return a');
  await page.keyboard.press('Control+S');
  const typed = await waitFor('main.py saved with the typed lines', () => {
    const s = fs.readFileSync(file, 'utf8');
    return s.length > before.length && s.endsWith('return a') ? s : undefined;
  }, 10_000);
  const lines = typed.split('\n');
  return { typed, cursor: { line: lines.length - 1, character: (lines.at(-1) ?? '').length } };
}

/** `mlxd: Show Daemon Stats`: the daemon's counters for the extension's session, as traced. */
async function daemonStats(page: Page): Promise<NonNullable<TraceRecord['stats']>> {
  const records = (): TraceRecord[] => readTrace().filter((r) => r.kind === 'stats');
  const before = records().length;
  await runCommand(page, 'mlxd: Show Daemon Stats');
  await waitFor('the daemon stats', () => (records().length > before ? true : undefined), 15_000, 100);
  return records().at(-1)?.stats ?? {};
}

/** Where the cursor rests goes to the daemon (`mlxd/didMoveCursor`, issue #16 item 4): once per
 * rest, where it rested; nothing in a language without ghost text (markdown) or with ghost
 * text switched off. The extension's 'cursor' records are what it sent, the daemon's
 * `inline.cursorMoves` what it counted. "Nothing sent" is checked against a later move that is
 * sent: the moves that must not send get a few rest times (150 ms each) first. */
async function cursorTest(page: Page): Promise<void> {
  const sends = (): TraceRecord[] => readTrace().filter((r) => r.kind === 'cursor');
  const moves = async (): Promise<number> => {
    const n = (await daemonStats(page)).inline?.cursorMoves;
    check(typeof n === 'number', `mlxd/stats has inline.cursorMoves (${n})`);
    return n;
  };
  const quiet = (): Promise<void> => new Promise((r) => setTimeout(r, 600));
  const press = async (...keys: string[]): Promise<void> => {
    for (const k of keys) await page.keyboard.press(k);
  };
  /** Runs `act`, waits for a send at `at` in cursor.py; what the phase sent and the daemon counted.
   * `moves`: how many moves `act` makes; more than one is a burst, which the debounce
   * (CURSOR_REST_MS, 150 ms) reports fewer times than it moves: once when the key presses come
   * within 150 ms of each other, which a loaded machine does not always give (the fresh clone's
   * run saw one gap: 2 reports of 8 moves). The unit tests check the debounce exactly. */
  const phase = async (name: string, at: [number, number], act: () => Promise<void>, moves_ = 1): Promise<void> => {
    const base = await moves();
    const first = sends().length;
    await act();
    await waitFor(`${name}: a cursor report at ${at.join(':')}`, () => {
      const last = sends().at(-1);
      return sends().length > first && last?.line === at[0] && last.character === at[1] && /\/cursor\.py$/.test(last.uri ?? '') ? true : undefined;
    }, 10_000, 50);
    const sent = sends().slice(first).map((r) => `${(r.uri ?? '').split('/').at(-1)}:${r.line}:${r.character}`);
    const counted = (await moves()) - base;
    (result.cursor ??= {} as Record<string, unknown>);
    (result.cursor as Record<string, unknown>)[name] = { sent, counted };
    const reports = moves_ > 1 ? sent.length >= 1 && sent.length < moves_ : sent.length === 1;
    check(reports && counted === sent.length, `${name}: ${moves_ > 1 ? 'fewer reports than moves' : 'one report'}, each counted once by the daemon (sent ${JSON.stringify(sent)}, counted ${counted})`);
  };
  const toggleInline = async (): Promise<void> => {
    const seen = readTrace().filter((r) => r.kind === 'settings').length;
    await runCommand(page, 'mlxd: Toggle Inline Completions');
    await waitFor('the extension to see the toggle', () => (readTrace().filter((r) => r.kind === 'settings').length > seen ? true : undefined), 10_000);
  };

  // Opening the file: where its cursor is. Then a burst of moves: one report, where it rested.
  await phase('opened', [0, 0], () => openFile(page, 'cursor.py'));
  await phase('burst', [5, 3], () => press('ArrowDown', 'ArrowDown', 'ArrowDown', 'ArrowDown', 'ArrowDown', 'ArrowRight', 'ArrowRight', 'ArrowRight'), 8);
  // Markdown (no ghost text by default), and back at the position last sent: nothing; then a move.
  await phase('markdown', [6, 3], async () => {
    await openFile(page, 'notes.md');
    await press('ArrowDown', 'ArrowDown');
    await quiet();
    await openFile(page, 'cursor.py');
    await quiet();
    await press('ArrowDown');
  });
  // Ghost text switched off: nothing; switched on again, a move is reported.
  await phase('toggled', [6, 5], async () => {
    await toggleInline();
    await press('ArrowDown', 'ArrowRight');
    await quiet();
    await toggleInline();
    await press('ArrowUp', 'ArrowRight');
  });
  await runCommand(page, 'View: Hide Panel'); // Show Daemon Stats opened the output channel
}

/** Ctrl+C with a selection (issue #16 item 5): VS Code's own copy still fills the clipboard,
 * and the copied text goes to the daemon (`mlxd/didCopy`), which counts what it keeps
 * (`inline.copies`). Without a selection Ctrl+C is VS Code's alone: it copies the line, and
 * nothing is sent. */
async function copyTest(page: Page): Promise<void> {
  const sends = (): TraceRecord[] => readTrace().filter((r) => r.kind === 'copy');
  const copies = async (): Promise<number> => {
    const n = (await daemonStats(page)).inline?.copies;
    check(typeof n === 'number', `mlxd/stats has inline.copies (${n})`);
    return n;
  };
  const clipboard = (): Promise<string> => page.evaluate(() => navigator.clipboard.readText());
  const base = await copies();
  await openFile(page, 'cursor.py');
  const first = sends().length;
  for (const k of ['Control+Home', 'Shift+ArrowDown', 'Shift+ArrowDown', 'Control+C']) await page.keyboard.press(k);
  await waitFor('a copy report for cursor.py', () => (sends().length > first ? true : undefined), 10_000, 50);
  const copied = await clipboard();
  const sent = sends().slice(first).map((r) => `${String(r.uri ?? '').split('/').at(-1)}:${r.chars ?? 0}`);
  const counted = (await copies()) - base;
  await openFile(page, 'cursor.py'); // Show Daemon Stats moved the focus to its output
  const after = sends().length;
  for (const k of ['Control+Home', 'ArrowDown', 'ArrowDown', 'Control+C']) await page.keyboard.press(k);
  const line = await waitFor('Ctrl+C without a selection to copy the line', async () => {
    const t = await clipboard();
    return t !== copied ? t : undefined;
  }, 10_000, 100);
  await new Promise((r) => setTimeout(r, 500));
  result.copy = { sent, counted, copied, line, sentWithoutSelection: sends().length - after };
  const two = CURSOR_LINES.slice(0, 2).join('\n') + '\n';
  check(copied === two && sent.length === 1 && counted === 1, `Ctrl+C copied the selection and reported it once (${JSON.stringify(result.copy)})`);
  check(line === `${CURSOR_LINES[2]}\n` && sends().length === after, `Ctrl+C without a selection copied the line, unreported (${JSON.stringify(result.copy)})`);
  await runCommand(page, 'View: Hide Panel');
}

/** Cycling (issue #18 item 19): asked explicitly ("Trigger Inline Suggestion", triggerKind
 * Invoked) after a locally served answer, the daemon returns more than one distinct item;
 * Alt+] (showNext) shows the second one, and Tab accepts the one shown. */
async function cycleTest(page: Page): Promise<void> {
  const inlineAt = (c: { line: number; character: number }): TraceRecord[] =>
    readTrace().filter((r) => r.kind === 'inline' && r.line === c.line && r.character === c.character);
  // The usual flow, where an automatic answer is shown first and the user then asks for more:
  // the explicit request's first item comes from the daemon's cache, and it still samples
  // alternatives when the document's inline chain starts with a local model (pytest checks).
  {
    const { cursor } = await typeFunction(page, 'sub');
    await waitFor('ghost text after typing', () => ghostText(page), 20_000).catch(() => undefined);
    const seen = inlineAt(cursor).length;
    await runCommand(page, 'Trigger Inline Suggestion');
    await waitFor('an answer to the explicit trigger', () => (inlineAt(cursor).length > seen ? true : undefined), 30_000).catch(() => undefined);
    result.cycleAfterAutomatic = inlineAt(cursor).map((r) => r.items?.length ?? 0);
    log(`explicit trigger after an automatic answer: item counts ${JSON.stringify(result.cycleAfterAutomatic)}`);
    await page.keyboard.press('Escape');
  }
  // The checked flow: automatic requests wait out a long debounce, so the explicit one is the
  // first to reach the daemon at its cursor (VS Code cancels the waiting automatic one).
  await editSettings(page, { 'mlxd.inline.debounceMs': 60_000 });
  const { typed, cursor } = await typeFunction(page, 'mul');
  const seen = inlineAt(cursor).length;
  await runCommand(page, 'Trigger Inline Suggestion');
  await page.locator('.editor-instance .monaco-editor .view-lines').first().waitFor();
  const rec = await waitFor('an answer to the explicit trigger', () => inlineAt(cursor).slice(seen).find((r) => (r.items?.length ?? 0) > 0), 30_000);
  const items = rec.items ?? [];
  result.cycleItemCounts = inlineAt(cursor).map((r) => r.items?.length ?? 0);
  result.cycleItems = items.map((i) => i.insertText);
  check(items.length > 1, `asked explicitly, the daemon returned more than one item (${items.length}: ${JSON.stringify(result.cycleItems)})`);
  // Which item the ghost text shows, rendered as in inlineTest (control pictures, nbsp; each
  // further line its own element, so the parts join without their line breaks).
  const render = (s: string): string =>
    s
      .replace(/[\u0000-\u0008\u000b-\u001f]/g, (c) => String.fromCharCode(0x2400 + c.charCodeAt(0)))
      .replace(/\u007f/g, '\u2421')
      .replace(/\u00a0/g, ' ');
  const strict = (s: string): string => render(s).replace(/\n/g, '');
  const norm = (s: string): string => render(s).replace(/\s+/g, ' ').trim();
  let shown: string | undefined;
  // The item the ghost text equals (whitespace kept, then squeezed: items can differ in it
  // alone), else the one sharing the longest prefix with it (samples can share a start, and
  // one can be a prefix of another: the shorter then ties on prefix). `before`: what showed
  // before Alt+], which must change first.
  const shows = (i: number, before?: string) => async (): Promise<true | undefined> => {
    shown = await ghostText(page);
    if (shown === undefined || shown === before) return undefined;
    for (const key of [strict, norm]) {
      const g = key(shown);
      const exact = items.map((it) => key(it.insertText) === g);
      const equal = exact.filter(Boolean).length;
      if (equal === 1) return exact[i] ? true : undefined;
      if (equal > 1) return undefined; // not yet told apart
    }
    const g = norm(shown);
    const common = items.map((it) => {
      const t = norm(it.insertText);
      let n = 0;
      while (n < t.length && n < g.length && t[n] === g[n]) n++;
      return n;
    });
    const best = Math.max(...common);
    return best > 0 && common[i] === best && common.filter((n) => n === best).length === 1 ? true : undefined;
  };
  await waitFor('the first item as ghost text', shows(0), 15_000).catch((e: Error) => {
    throw new Error(`${e.message} (shown: ${JSON.stringify(shown)})`);
  });
  const first = shown;
  await page.keyboard.press('Alt+BracketRight');
  await waitFor('Alt+] to show the second item', shows(1, first), 10_000).catch((e: Error) => {
    throw new Error(`${e.message} (shown: ${JSON.stringify(shown)})`);
  });
  log('Alt+] cycled to the second item');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Control+S');
  const saved = await waitFor('main.py saved with the accepted item', () => {
    const s = fs.readFileSync(file, 'utf8');
    return s.length > typed.length ? s : undefined;
  }, 10_000);
  result.cycleAccepted = saved.slice(typed.length);
  check(saved === typed + (items[1]?.insertText ?? ''), `Tab accepted the second item, the one shown (${JSON.stringify(result.cycleAccepted)})`);
  await editSettings(page, { 'mlxd.inline.debounceMs': 100 });
  await openFile(page, 'main.py'); // the next steps work in it (closing settings.json can close it)
}

async function chatFrame(page: Page): Promise<Frame> {
  return waitFor(
    'the chat webview',
    async () => {
      // The one the user sees: a hidden webview (retained context) keeps its frame.
      for (const f of page.frames()) {
        try {
          if ((await f.locator('#mlxd-chat').count()) > 0 && (await f.locator('#prompt').isVisible())) return f;
        } catch {
          // frame detached while looking
        }
      }
      return undefined;
    },
    30_000,
    500,
  );
}

interface ChatRecord extends TraceRecord {
  finishReason?: string;
  usage?: { promptTokens: number; completionTokens: number };
  timings?: { firstTokenMs: number; totalMs: number };
}

/** Sends a prompt from the panel's box; resolves when the answer element leaves "streaming". */
async function ask(frame: Frame, prompt: string): Promise<void> {
  const n = await frame.locator('.msg.assistant').count();
  await typeQuestion(frame, prompt);
  await frame.locator('.msg.assistant').nth(n).waitFor({ timeout: 30_000 });
}

/** Types `prompt` into the panel as a user does (click, type, Enter) and fails unless the
 * extension acknowledged it: the webview shows a question at once as "sending" and the extension
 * answers 'received', so a question that is lost on the way fails the run (never retyped). */
async function typeQuestion(frame: Frame, prompt: string): Promise<void> {
  const asks = readTrace().filter((r) => r.kind === 'ask').length;
  const box = frame.locator('#prompt');
  // A real click: it gives the webview's frame focus even while the workbench moves focus
  // (a programmatic focus() in the frame may not), so the keys below reach the box.
  const loadedAt = await frame.evaluate(() => performance.timeOrigin);
  await box.click();
  await box.fill(prompt);
  const typed = await box.inputValue();
  if (typed !== prompt) {
    // Which of: the frame went away, its document was loaded again (a new, empty box), or the
    // box was emptied in place.
    const detached = frame.isDetached();
    const reloaded = detached ? undefined : (await frame.evaluate(() => performance.timeOrigin)) !== loadedAt;
    const info = (await chatFrameInfo(frame.page())).join(' | ');
    throw new Error(`typing did not reach the prompt box (it holds ${JSON.stringify(typed)}; frame detached: ${detached}, document reloaded: ${reloaded}; chat frames: ${info})`);
  }
  await box.press('Enter');
  const bubble = frame.locator('.msg.user', { hasText: prompt }).last();
  await waitFor(`"${prompt}" on screen after Enter`, async () => ((await bubble.count()) > 0 ? true : undefined), 10_000);
  const state = await waitFor(`the extension to acknowledge "${prompt}"`, async () => {
    const s = await bubble.getAttribute('data-state');
    return s === 'queued' || s === 'sent' ? s : undefined;
  }, 15_000).catch(async () => {
    const got = readTrace().filter((r) => r.kind === 'ask').slice(asks);
    throw new Error(`LOST QUESTION: "${prompt}" was typed but the extension never took it (state ${await bubble.getAttribute('data-state')}; asks received since: ${JSON.stringify(got)}; chat frames: ${(await chatFrameInfo(frame.page())).join(' | ')})`);
  });
  check(readTrace().filter((r) => r.kind === 'ask').length === asks + 1, `the extension got "${prompt}" exactly once (${state})`);
}

function chatRecords(): ChatRecord[] {
  return readTrace().filter((r) => r.kind === 'chat' || r.kind === 'chat-cancelled') as ChatRecord[];
}

async function chatTest(page: Page): Promise<void> {
  await checkTypingAfterOpenChat(page, 'first open');
  const frame = await openChat(page);
  log('chat webview found');
  // Record every distinct rendering of the streaming answer, as the user would see it.
  await frame.evaluate(() => {
    const w = window as unknown as { __snapshots: string[] };
    w.__snapshots = [];
    const messages = document.getElementById('messages');
    if (!messages) throw new Error('no #messages');
    new MutationObserver(() => {
      const body = messages.querySelector('.msg.assistant:last-child .body');
      const text = body?.textContent ?? '';
      const last = w.__snapshots[w.__snapshots.length - 1];
      if (text !== '' && text !== last) w.__snapshots.push(text);
    }).observe(messages, { childList: true, subtree: true, characterData: true });
  });
  const snapshots = async (): Promise<string[]> => frame.evaluate(() => (window as unknown as { __snapshots: string[] }).__snapshots);
  const csp = await frame.evaluate(() => document.querySelector('meta[http-equiv="Content-Security-Policy"]')?.getAttribute('content') ?? '');
  check(/default-src 'none'/.test(csp) && /script-src 'nonce-/.test(csp), `the webview has a strict CSP (${csp})`);

  // 1. A streamed answer.
  const before = chatRecords().length;
  await ask(frame, 'Write a Python function that adds two numbers.');
  const done = frame.locator('.msg.assistant[data-state="done"]').last();
  await done.waitFor({ timeout: 120_000 });
  await page.screenshot({ path: path.join(ARTIFACTS, 'chat.png') });
  const records = chatRecords();
  check(records.length === before + 1 && records.at(-1)?.kind === 'chat', 'the daemon answered one chat request');
  const rec = records.at(-1) as ChatRecord;
  const text = rec.text ?? '';
  result.chatText = text;
  result.chatStreamedChunks = rec.streamed;
  result.chatTimings = rec.timings;
  check(text.length > 0, 'the daemon\'s answer is not empty');
  const snaps = await snapshots();
  result.chatSnapshots = snaps.length;
  check((rec.streamed ?? 0) >= 3, `the answer arrived as several $/progress deltas (${rec.streamed})`);
  check(snaps.length >= 3, `the panel re-rendered the answer as it streamed (${snaps.length} distinct renderings)`);
  // The final rendering is exactly the daemon's text through the (unit-tested) renderer,
  // normalised by the same browser.
  const same = await frame.evaluate((html) => {
    const bodies = document.querySelectorAll('.msg.assistant[data-state="done"] .body');
    const body = bodies[bodies.length - 1];
    const ref = document.createElement('div');
    ref.innerHTML = html;
    return body !== undefined && body.innerHTML === ref.innerHTML;
  }, renderMarkdown(text));
  check(same, 'the final answer in the panel equals the daemon\'s text');
  const meta = (await done.locator('.meta').textContent()) ?? '';
  result.chatMeta = meta;
  check(meta.startsWith(`${rec.backend ?? 'local'} ·`), `the answer names the backend that served it (${meta})`);
  const status = await statusText(page);
  result.statusAfterChat = status;
  check(status !== undefined && status.includes(`mlxd: ${rec.backend ?? 'local'}`), `the status bar names the serving backend (${status})`);

  // 2. The editor commands send the selection / the file as context, with its URI.
  const fileUri = `file://${file}`;
  for (const [cmd, label] of [
    ['mlxd: Explain Selection', 'Explain main.py:1-5'],
    ['mlxd: Ask About This File', 'What does this file do? (main.py)'],
  ] as const) {
    const n = chatRecords().length;
    const answers = await frame.locator('.msg.assistant[data-state="done"]').count();
    await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
    await page.keyboard.press('Control+A');
    await runCommand(page, cmd);
    if (cmd.endsWith('File')) {
      // The question box offers a default question; Enter accepts it.
      // (Wait for the box itself: an Enter that lands in the editor replaces the selection.)
      await page.locator('.quick-input-widget', { hasText: 'Ask about main.py' }).waitFor({ state: 'visible' });
      await page.keyboard.press('Enter');
    }
    await frame.locator('.msg.assistant[data-state="done"]').nth(answers).waitFor({ timeout: 60_000 });
    const users = await frame.locator('.msg.user').allTextContents();
    const rec = chatRecords().at(-1) as ChatRecord & { textDocument?: string };
    check(users.at(-1) === label && chatRecords().length === n + 1 && rec.textDocument === fileUri, `"${cmd}" asked about ${rec.textDocument} (shown as "${users.at(-1)}")`);
  }

  // 3. Stop: a long answer, stopped after it has started streaming.
  await editSettings(page, { 'mlxd.chat.maxTokens': 4000 });
  await waitFor('the settings change to reach the extension', () => (readTrace().some((r) => r.kind === 'settings') ? true : undefined), 15_000);
  await frame.locator('#new').click();
  await waitFor('the panel to clear', async () => ((await frame.locator('.msg').count()) === 0 ? true : undefined), 5_000);
  // The tiny model writes ~1000 tokens/s, faster than a round trip from here: Stop is clicked
  // inside the webview as soon as the first delta is on screen. (This prompt runs past 3000
  // tokens without an end-of-sequence from the tiny model.)
  await frame.evaluate(() => {
    const w = window as unknown as { __stopClicked?: { enabled: boolean; text: number } };
    const messages = document.getElementById('messages') as HTMLElement;
    const stop = document.getElementById('stop') as HTMLButtonElement;
    const obs = new MutationObserver(() => {
      const body = messages.querySelector('.msg.assistant[data-state="streaming"] .body');
      if (body && (body.textContent ?? '') !== '' && !w.__stopClicked) {
        w.__stopClicked = { enabled: !stop.disabled, text: (body.textContent ?? '').length };
        stop.click();
        obs.disconnect();
      }
    });
    obs.observe(messages, { childList: true, subtree: true, characterData: true });
  });
  await ask(frame, 'Write a long essay.');
  await frame.locator('.msg.assistant[data-state="cancelled"]').waitFor({ timeout: 15_000 });
  const clicked = await frame.evaluate(() => (window as unknown as { __stopClicked?: { enabled: boolean; text: number } }).__stopClicked);
  check(clicked?.enabled === true, 'Stop was enabled while the answer streamed');
  const cancelled = chatRecords().at(-1);
  result.stoppedAfterChunks = cancelled?.streamed;
  const why = (cancelled as { error?: string } | undefined)?.error ?? '';
  result.stopError = why;
  check(cancelled?.kind === 'chat-cancelled' && / -32800:/.test(why), `Stop sent $/cancelRequest and the daemon answered -32800 (${why})`);
  check((cancelled?.streamed ?? 4000) < 4000, `the answer stopped early (${cancelled?.streamed} deltas of up to 4000)`);
  check(await frame.locator('#send').isEnabled(), 'the prompt box is usable again after Stop');

  // 4. A config change reaches the daemon (workspace/didChangeConfiguration), and the daemon
  // still serves after the cancellation: with no maxTokens in the request, the config's
  // local.max_tokens caps the answer.
  const settingsEvents = readTrace().filter((r) => r.kind === 'settings').length;
  await editSettings(page, { 'mlxd.chat.maxTokens': null, 'mlxd.config': { inline: { max_tokens: 24 }, routing: { cloud: false }, local: { max_tokens: 7 } } });
  await waitFor('the config to be sent to the daemon', () => {
    const ev = readTrace().filter((r) => r.kind === 'settings');
    return ev.length > settingsEvents && (ev.at(-1) as { configSent?: boolean }).configSent ? true : undefined;
  }, 15_000);
  await ask(frame, 'Say something short.');
  await frame.locator('.msg.assistant[data-state="done"]').last().waitFor({ timeout: 60_000 });
  const capped = chatRecords().at(-1);
  result.cappedUsage = capped?.usage;
  check(capped?.kind === 'chat' && capped.usage?.completionTokens === 7 && capped.finishReason === 'length', `the new config capped the answer at local.max_tokens = 7 (${JSON.stringify(capped?.usage)}, ${capped?.finishReason})`);
}

/** The status bar item's menu: switch the routing preset, which rewrites mlxd.config. */
async function menuTest(page: Page): Promise<void> {
  const events = readTrace().filter((r) => r.kind === 'settings').length;
  await page.locator('.statusbar-item', { hasText: /mlxd/ }).first().click();
  const row = (label: string) => page.locator('.quick-input-widget .monaco-list-row', { hasText: label }).first();
  for (const label of ['Open chat', 'Allow cloud backends', 'Open logs', 'Restart daemon']) {
    await row(label).waitFor({ timeout: 10_000 });
  }
  log('status bar menu lists chat, cloud, logs, restart');
  await row('Switch routing preset').click();
  await row('Local only').waitFor({ timeout: 10_000 });
  await row('Local only').click();
  await waitFor('the preset to reach the daemon', () => {
    const ev = readTrace().filter((r) => r.kind === 'settings');
    return ev.length > events && (ev.at(-1) as { configSent?: boolean }).configSent ? true : undefined;
  }, 15_000);
  const saved = JSON.parse(fs.readFileSync(path.join(dirs.user, 'User', 'settings.json'), 'utf8')) as Record<string, { routing?: unknown }>;
  result.presetRouting = saved['mlxd.config']?.routing;
  check(
    JSON.stringify(saved['mlxd.config']?.routing) === JSON.stringify({ cloud: false, chat: ['local'], complete: ['local'], inline: ['local'] }),
    `"Local only" wrote the routing into mlxd.config and it was sent to the daemon (${JSON.stringify(result.presetRouting)})`,
  );
}

/** The daemon's log in the output channel: each record once, at its own level. mlxd sends a
 * record one way (window/logMessage while the extension is connected, stderr otherwise); it used
 * to send both, and every record showed twice. */
async function logTest(): Promise<void> {
  const read = (): string[] => extensionLogs().flatMap((f) => fs.readFileSync(f, 'utf8').split('\n'));
  await waitFor(
    'the model-load record in the output channel',
    () => (read().some((l) => /\[info\] loaded \S+ in [\d.]+s/.test(l)) ? true : undefined),
    15_000,
    500,
  );
  // One daemon has started so far: its model-load record must show exactly once, in any form.
  const loaded = read().filter((l) => /loaded \S+ in [\d.]+s/.test(l));
  const copies = read().filter((l) => / (INFO|WARNING|ERROR) mlxd[.:]|\] mlxd\.[\w.]+: /.test(l));
  result.logLoadedRecords = loaded.length;
  result.logStderrCopies = copies.length;
  check(loaded.length === 1, `the model-load record showed once (${loaded.join(' | ')})`);
  check(copies.length === 0, `no mlxd record reached the output channel from stderr (${copies.slice(0, 2).join(' | ')})`);
}

/** The default keybindings: none of mlxd's keys is bound by VS Code itself (searched in
 * "Open Default Keyboard Shortcuts (JSON)", a positive control first), and each one works. */
async function keybindingsTest(page: Page): Promise<void> {
  await runCommand(page, 'Preferences: Open Default Keyboard Shortcuts (JSON)');
  await page.locator('.tab.active', { hasText: /keybindings/i }).waitFor({ timeout: 15_000 });
  await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
  // Entries read `{ "key": "...",   "command": "..." }` (padded, maybe wrapped): a regex finds
  // a key bound to any command but mlxd's.
  const count = async (regex: string): Promise<string> => {
    await page.keyboard.press('Control+F');
    const input = page.locator('.find-widget textarea, .find-widget input').first();
    await input.waitFor({ timeout: 5_000 });
    const toggle = page.locator('.find-widget [aria-label^="Use Regular Expression"]').first();
    if ((await toggle.getAttribute('aria-checked')) !== 'true') await toggle.click();
    await input.fill(regex);
    await page.waitForTimeout(500);
    return ((await page.locator('.find-widget .matchesCount').textContent()) ?? '').trim();
  };
  // The positive control also waits for the (large) default keymap to be loaded and searched:
  // under load one read after 500 ms can come before it.
  let control = '';
  for (let i = 0; i < 30 && !/\d+ of \d+/.test(control); i++) {
    control = await count('"key": "alt\\+\\]",\\s*"command": "editor\\.action\\.inlineSuggest\\.showNext"');
  }
  check(/\d+ of \d+/.test(control), `the search finds VS Code's own Alt+] (${control})`);
  // The keys the manifest contributes (run from editors/vscode); macOS keys cannot be checked
  // here: this is VS Code's Linux keymap.
  // Ctrl+C is taken on purpose: VS Code's own copy, then mlxd.copied (copyTest checks both).
  const manifest = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { contributes: { keybindings: { key: string; command: string }[] } };
  const clashes: Record<string, string> = {};
  for (const { key } of manifest.contributes.keybindings.filter((k) => k.command !== 'runCommands')) {
    // As the JSON text spells it (a backslash key has two backslashes), escaped for the regex.
    const escaped = JSON.stringify(key).slice(1, -1).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    clashes[key] = await count(`"key": "${escaped}",\\s*"command": "(?!mlxd\\.)`);
  }
  result.keyClashes = clashes;
  check(Object.values(clashes).every((c) => !/\d+ of \d+/.test(c)), `no VS Code default uses mlxd's keys (${JSON.stringify(clashes)})`);
  await page.keyboard.press('Escape');
  await runCommand(page, 'View: Close Editor');

  // Explain Selection: the selection's question shows in the chat and is answered.
  await openFile(page, 'main.py');
  await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
  await page.keyboard.press('Control+Home');
  await page.keyboard.press('Shift+ArrowDown');
  const before = chatRecords().length;
  await page.keyboard.press('Control+Alt+E');
  const frame = await chatFrame(page);
  await frame.locator('.msg.user', { hasText: 'Explain main.py:1' }).last().waitFor({ timeout: 15_000 });
  await waitFor('an answer to Explain Selection', () => (chatRecords().length > before ? true : undefined), 60_000);
  log('Ctrl+Alt+E explained the selection');

  // Toggle inline: the user setting flips, and flips back.
  const userSettings = path.join(dirs.user, 'User', 'settings.json');
  const inlineSetting = (): unknown => (JSON.parse(fs.readFileSync(userSettings, 'utf8')) as Record<string, unknown>)['mlxd.inline.enable'];
  await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
  const seen = readTrace().filter((r) => r.kind === 'settings').length;
  await page.keyboard.press('Control+Alt+Backslash');
  await waitFor('Ctrl+Alt+\\ to turn inline completions off', () => (inlineSetting() === false ? true : undefined), 10_000);
  // The file is written before the extension host sees the change: a second press before that
  // reads the old value and turns them off again (seen under load).
  await waitFor('the extension to see the change', () => (readTrace().filter((r) => r.kind === 'settings').length > seen ? true : undefined), 10_000);
  await page.keyboard.press('Control+Alt+Backslash');
  await waitFor('Ctrl+Alt+\\ to turn them on again', () => (inlineSetting() === true ? true : undefined), 10_000);
  log('Ctrl+Alt+\\ toggled inline completions');

  // Open Chat from the editor, with the side bar closed.
  await page.keyboard.press('Control+B');
  await page.locator('.part.sidebar').waitFor({ state: 'hidden', timeout: 5_000 }).catch(() => undefined);
  await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
  await page.keyboard.press('Control+Alt+M');
  await chatFrame(page);
  result.keybindingsWork = true;
  log('Ctrl+Alt+M opened the chat');
}

// The daemon behind a shell that records how it ended (`<pid> <status> <epoch s>`): the daemon's
// parent is the extension host, so its exit status is otherwise out of reach. (fd 3: sh gives
// a background job /dev/null as stdin.)
const exitWrapper = path.join(WORK, 'mlxd-exit-wrapper.sh');
const exitLog = path.join(WORK, 'mlxd-exits.txt');

/** Shutdown (issue #18 item 16): with a chat streaming, "Developer: Reload Window" (code-server
 * has no "Restart Extension Host")
 * stops the extension; the daemon exits by itself (no signal: languageclient SIGKILLs it only
 * 2 s after its stop) and within those 2 s. */
async function shutdownTest(page: Page): Promise<void> {
  fs.writeFileSync(exitWrapper, `#!/bin/sh\nexec 3<&0\n"${SERVER}" "$@" <&3 3<&- &\nchild=$!\nwait $child\necho "$child $? $(date +%s.%N)" >> '${exitLog}'\n`, { mode: 0o755 });
  const [old] = daemonPids();
  const readyBefore = readyCount();
  // The local model from CONFIG for chat (earlier steps route chat to the fake cloud, which
  // answers at once), and a long answer.
  await editSettings(page, {
    'mlxd.serverPath': exitWrapper,
    'mlxd.serverEnv': {},
    'mlxd.config': { inline: { max_tokens: 24 }, routing: { cloud: false } },
    'mlxd.chat.maxTokens': 100_000,
  });
  const pid = await waitFor('the daemon started through the wrapper', () => daemonPids().find((p) => p !== old), 30_000, 200);
  await waitFor('it to report ready', () => (readyCount() > readyBefore ? true : undefined), 60_000, 250);
  const frame = await openChat(page);
  await frame.locator('#new').click();
  await typeQuestion(frame, 'Write a long essay.');
  // Streaming: the answer has text on screen and is not finished.
  await frame.locator('.msg.assistant[data-state="streaming"] .body:not(:empty)').first().waitFor({ timeout: 60_000 });
  check(fs.existsSync(`/proc/${pid}`), `the daemon ${pid} runs while the chat streams`);
  await page.locator('.part.editor').first().click(); // F1 in the webview stays there
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout: 10_000 });
  await input.fill('>Developer: Reload Window');
  await page.locator('.quick-input-widget .monaco-list-row', { hasText: 'Developer: Reload Window' }).first().waitFor({ state: 'visible', timeout: 10_000 });
  const streaming = await frame.locator('.msg.assistant[data-state="streaming"]').count();
  const asked = Date.now();
  await page.keyboard.press('Enter');
  const gone = await waitFor(`daemon ${pid} to exit`, () => (fs.existsSync(`/proc/${pid}`) ? undefined : Date.now()), 30_000, 20);
  const exit = await waitFor('the wrapper to record the exit', () =>
    fs.existsSync(exitLog) ? fs.readFileSync(exitLog, 'utf8').split('\n').map((l) => l.split(' ')).find((f) => Number(f[0]) === pid) : undefined, 10_000, 50);
  const ms = gone - asked;
  result.shutdownMs = ms;
  result.shutdownStatus = Number(exit[1]);
  check(streaming > 0, 'the chat was still streaming when the extension host was restarted');
  check(Number(exit[1]) < 128, `the daemon exited by itself, not by a signal (status ${exit[1]})`);
  check(ms < 2000, `the daemon was gone ${ms} ms after the restart was asked for (< 2000)`);
  // The restarted extension host starts a daemon again.
  await waitFor('a new daemon after the restart', () => daemonPids().find((p) => p !== pid), 60_000, 250);
}

/** Pids of the daemon this extension started (`<mlxd> serve --config <CONFIG>`). */
/** code-server's extension host processes (development: the loss hunt pauses them). */
function extensionHostPids(): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // This run's: its environment names this run's trace file.
      const argv = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8');
      const environ = fs.readFileSync(`/proc/${name}/environ`, 'utf8').split('\0');
      if (argv.includes('extensionHost') && environ.includes(`MLXD_VSCODE_TRACE=${trace}`)) pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

function daemonPids(): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (argv.includes('serve') && argv.includes(CONFIG) && !argv.includes(exitWrapper)) pids.push(Number(name));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/** A daemon that dies (SIGKILL: no goodbye) is restarted by the extension, which then serves
 * chat again without the user doing anything. */
async function crashTest(page: Page): Promise<void> {
  const [pid, ...more] = daemonPids();
  check(pid !== undefined && more.length === 0, `one daemon process runs (${[pid, ...more].join(', ')})`);
  const readyBefore = readyCount();
  process.kill(pid, 'SIGKILL');
  const next = await waitFor('a new daemon process', () => daemonPids().find((p) => p !== pid), 30_000, 200);
  await waitFor('the restarted daemon to report ready', () => (readyCount() > readyBefore ? true : undefined), 60_000, 250);
  const status = await waitFor('the status bar to say ready again', async () => {
    const t = await statusText(page);
    return t && /mlxd: (ready|local)/.test(t) ? t : undefined;
  }, 30_000, 250);
  result.restartedPid = next !== pid;
  log(`daemon ${pid} killed; ${next} started by the extension (${status})`);
  // The old daemon's last answer ("mlxd: local") is not the new one's state.
  result.statusAfterRestart = status;
  check(/mlxd: ready$/.test(status), `after the restart the status bar says ready, not the old daemon's last answer (${status})`);
  // The reported case of item 11: the extension host is busy with the restart.
  await checkTypingAfterOpenChat(page, 'after a daemon restart');
  const rec = await chatOnce(page, 'Are you back?');
  result.chatAfterRestart = rec.text ?? '';
  check(rec.kind === 'chat' && (rec.text ?? '').length > 0, 'the restarted daemon answered a chat');
}

const readyCount = (): number =>
  readTrace().filter((r) => r.kind === 'status' && (r as { state?: string }).state === 'ready').length;

/** One chat from the panel; the trace record of its answer. */
async function chatOnce(page: Page, prompt: string): Promise<ChatRecord> {
  const frame = await openChat(page);
  const before = chatRecords().length;
  await typeQuestion(frame, prompt);
  await waitFor(`an answer to "${prompt}"`, () => (chatRecords().length > before ? true : undefined), 60_000);
  return chatRecords().at(-1) as ChatRecord;
}

/** Each chat webview frame: its message count, whether its prompt box is visible and usable. */
async function chatFrameInfo(page: Page): Promise<string[]> {
  const info: string[] = [];
  for (const f of page.frames()) {
    try {
      if ((await f.locator('#mlxd-chat').count()) === 0) continue;
      info.push(`msgs=${await f.locator('.msg').count()} visible=${await f.locator('#prompt').isVisible()} send=${await f.locator('#send').isEnabled()}`);
    } catch {
      info.push('detached');
    }
  }
  return info;
}

/** The code block of the last answer (the fake provider's answer has one): Insert puts its code
 * at the editor's cursor; Copy puts it on the clipboard, and Ctrl+V pastes it. */
async function codeBlockTest(page: Page): Promise<void> {
  const frame = await chatFrame(page);
  const block = frame.locator('.msg.assistant').last().locator('.code-block').first();
  const code = ((await block.locator('pre code').textContent()) ?? '').trim();
  result.codeBlock = code;
  check(code.length > 0, `the answer shows a code block (${JSON.stringify(code)})`);
  const occurrences = (): number => fs.readFileSync(file, 'utf8').split(code).length - 1;
  const save = async (): Promise<void> => {
    await page.locator('.tab.active', { hasText: 'main.py' }).click();
    await page.keyboard.press('Control+S');
  };
  const before = occurrences();

  await block.locator('button[data-action="insert"]').click();
  await save();
  await waitFor('Insert to put the code into main.py', () => (occurrences() === before + 1 ? true : undefined), 10_000);
  log('Insert put the code block at the cursor');

  await block.locator('button[data-action="copy"]').click();
  await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
  await page.keyboard.press('Control+End');
  await page.keyboard.press('Enter');
  await page.keyboard.press('Control+V');
  await save();
  await waitFor('Ctrl+V to paste the copied code into main.py', () => (occurrences() === before + 2 ? true : undefined), 10_000);
  result.codeBlockInsertedAndPasted = true;
  log('Copy put the code block on the clipboard; Ctrl+V pasted it');
}

/** "Set API Key": typed into a password box, kept in SecretStorage, handed to the daemon, which
 * then streams from a cloud backend that accepts only that key; a restarted daemon gets it again
 * from SecretStorage. The key shows in no log. */
async function keyTest(page: Page): Promise<void> {
  const settingsFile = path.join(dirs.user, 'User', 'settings.json');
  Object.assign(settings, JSON.parse(fs.readFileSync(settingsFile, 'utf8'))); // what the preset wrote
  const config = settings['mlxd.config'] as Record<string, unknown>;
  const events = readTrace().filter((r) => r.kind === 'settings').length;
  await editSettings(page, {
    'mlxd.config': {
      ...config,
      // api_key_env names a variable that is not set: the daemon knows the key is missing.
      backends: { cloud: { protocol: 'openai', base_url: OPENAI_URL, model: 'gpt-fake', api_key_env: 'MLXD_E2E_UNSET_KEY' } },
      routing: { cloud: true, chat: ['cloud'], complete: ['local'], inline: ['local'] },
    },
  });
  await waitFor('the cloud backend config to reach the daemon', () => {
    const ev = readTrace().filter((r) => r.kind === 'settings');
    return ev.length > events && (ev.at(-1) as { configSent?: boolean }).configSent ? true : undefined;
  }, 15_000);

  // Before any request fails: the daemon reports `no_key`, and the extension offers the key.
  await waitFor('a status saying the cloud backend has no key', () =>
    readTrace().some((r) => r.kind === 'status' && (r as { backends?: Record<string, string> }).backends?.cloud === 'no_key') ? true : undefined, 20_000);
  const offer = page.locator('.notifications-toasts .notification-toast', { hasText: 'backend "cloud" has no API key' }).first();
  await offer.waitFor({ timeout: 15_000 });
  result.noKeyOffered = true;
  await offer.locator('a.monaco-button, .monaco-button', { hasText: 'Set API Key' }).first().click();
  await page.locator('.quick-input-widget', { hasText: 'API key for cloud' }).waitFor({ timeout: 10_000 });
  const input = page.locator('.quick-input-widget input').first();
  result.keyInputType = await input.getAttribute('type');
  check(result.keyInputType === 'password', `the key is typed into a password box (${result.keyInputType})`);
  await input.fill(API_KEY);
  await input.press('Enter');

  await openFile(page, 'main.py'); // the editor that Insert and paste act on
  await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
  await page.keyboard.press('Control+End');
  await page.keyboard.press('Enter');
  const first = await chatOnce(page, 'Hello from the cloud?');
  result.cloudChat = { backend: first.backend, text: first.text };
  check(first.kind === 'chat' && first.backend === 'cloud', `the cloud backend answered with the key (${JSON.stringify(result.cloudChat)})`);
  await codeBlockTest(page);

  const readies = readyCount();
  await runCommand(page, 'mlxd: Restart Daemon');
  await waitFor('the restarted daemon to report ready', () => (readyCount() > readies ? true : undefined), 60_000, 250);
  const again = await chatOnce(page, 'Still there, cloud?');
  result.cloudChatAfterRestart = { backend: again.backend, text: again.text };
  check(again.kind === 'chat' && again.backend === 'cloud', `after a restart the key came from SecretStorage (${JSON.stringify(result.cloudChatAfterRestart)})`);

  const leaks = [csLog, trace, ...extensionLogs()].filter((f) => fs.existsSync(f) && fs.readFileSync(f, 'utf8').includes(API_KEY));
  result.keyLeaks = leaks.map((f) => path.basename(f));
  check(leaks.length === 0, `the key is in no log (${leaks.join(', ')})`);
}

/** A wrong `mlxd.serverPath`: the friendly not-found text (never the client's raw "spawn …
 * ENOENT") in a toast and the status bar; fixing the setting starts the daemon again. */
async function serverPathTest(page: Page): Promise<void> {
  const readies = readyCount();
  await editSettings(page, { 'mlxd.serverPath': '/nonexistent/bin/mlxd' });
  const toasts = page.locator('.notifications-toasts');
  await toasts.locator('.notification-toast', { hasText: 'mlxd executable not found' }).first().waitFor({ timeout: 30_000 });
  const shown = (await toasts.textContent()) ?? '';
  result.notFoundToast = shown;
  check(/\/nonexistent\/bin\/mlxd/.test(shown) && /mlxd\.serverPath/.test(shown), `the toast names the path and the setting (${shown})`);
  check(!/ENOENT|spawn /.test(shown), `no raw spawn error in any toast (${shown})`);
  const failed = await waitFor('the status bar to say failed', async () => {
    const t = await statusText(page);
    return t && /failed/.test(t) ? t : undefined;
  }, 10_000);
  log(`wrong serverPath: ${failed}`);
  await editSettings(page, { 'mlxd.serverPath': SERVER });
  await waitFor('the daemon to start again once the setting is fixed', () => (readyCount() > readies ? true : undefined), 60_000, 250);
  const after = (await toasts.textContent()) ?? '';
  check(!/ENOENT|spawn /.test(after), `still no raw spawn error after the fix (${after})`);
}

/** A typo in the editor's settings is reported in VS Code's words (issue #18 item 18): the
 * daemon learns the editor from initialize's clientInfo and names the setting the user edited,
 * not "initializationOptions". The setting is put back afterwards. */
async function wordingTest(page: Page): Promise<void> {
  const config = (settings['mlxd.config'] ?? {}) as Record<string, unknown>;
  const inline = (config.inline ?? {}) as Record<string, unknown>;
  await editSettings(page, { 'mlxd.config': { ...config, inline: { ...inline, multi_line: 'sometimes' } } });
  const toast = page.locator('.notifications-toasts .notification-toast', { hasText: 'multi_line' }).first();
  await toast.waitFor({ timeout: 30_000 });
  const text = ((await toast.locator('.notification-list-item-message').textContent()) ?? '').trim();
  result.typoToast = text;
  check(text.includes('invalid setting "mlxd.config"') && !text.includes('initializationOptions'), `the typo names the setting "mlxd.config" (${text})`);
  await editSettings(page, { 'mlxd.config': config });
}

/** A Hugging Face model download (issue #18 item 20): a notification shows the bytes with a
 * Cancel button, and Cancel stops the download (window/workDoneProgress/cancel): the daemon
 * ends the load as cancelled. The client library's own progress is in the status bar only,
 * where VS Code offers no cancel. Runs last: it leaves the daemon without a model. */
async function downloadTest(page: Page): Promise<void> {
  const hf = path.join(WORK, 'hf');
  const config = (settings['mlxd.config'] ?? {}) as Record<string, unknown>;
  const local = (config.local ?? {}) as Record<string, unknown>;
  const localErrors = (): number =>
    readTrace().filter((r) => r.kind === 'status' && (r as { backends?: Record<string, string> }).backends?.local === 'error').length;
  const errorsBefore = localErrors();
  await editSettings(page, {
    'mlxd.serverEnv': { HF_ENDPOINT: HF_URL, HF_HOME: hf, HF_HUB_CACHE: path.join(hf, 'hub'), HF_HUB_OFFLINE: '0', HF_HUB_DISABLE_TELEMETRY: '1' },
    'mlxd.config': { ...config, local: { ...local, model: HF_REPO, preload: true } },
  });
  const toast = page.locator('.notifications-toasts .notification-toast', { hasText: `downloading ${HF_REPO}` }).first();
  await toast.waitFor({ timeout: 60_000 });
  result.downloadToast = ((await toast.locator('.notification-list-item-message').textContent()) ?? '').trim();
  log(`download notification: ${result.downloadToast}`);
  check(/downloading \S+: \d+ \/ 1 MB \(\d+%\)/.test(String(result.downloadToast)), `the notification shows the bytes (${result.downloadToast})`);
  await toast.locator('.monaco-button', { hasText: 'Cancel' }).click();
  // The daemon ends the load: the local backend is in error (the whole state too, unless a
  // cloud backend is configured: then it is degraded).
  await waitFor('the daemon to end the load as cancelled', () => (localErrors() > errorsBefore ? true : undefined), 15_000, 200);
  await toast.waitFor({ state: 'detached', timeout: 10_000 });
  const status = await statusText(page);
  result.statusAfterDownloadCancel = status;
  result.downloadCancelled = true;
  log(`download cancelled: ${status}`);
}

/** Development only (MLXD_E2E_ONLY=losshunt): tries to lose a question typed into the chat
 * (issue #18 item 11) with real keystrokes, not fill(): right after a SIGKILL of the daemon,
 * Enter while an answer streams, two questions typed back to back, and the panel hidden and
 * shown. Records every question whose bubble never showed or was never acknowledged. */
async function lossHunt(page: Page): Promise<void> {
  const lost: string[] = [];
  let tries = 0;
  const typeFast = async (frame: Frame, q: string, settle = true): Promise<void> => {
    tries += 1;
    const box = frame.locator('#prompt');
    await box.click();
    await page.keyboard.type(q);
    const inBox = await box.inputValue();
    await page.keyboard.press('Enter');
    if (!settle) return;
    await settleQuestion(frame, q, inBox);
  };
  const settleQuestion = async (frame: Frame, q: string, inBox?: string): Promise<void> => {
    const bubble = frame.locator('.msg.user', { hasText: q }).last();
    const state = await waitFor(`"${q}" acknowledged`, async () => {
      const st = (await bubble.count()) > 0 ? await bubble.getAttribute('data-state') : undefined;
      return st === 'queued' || st === 'sent' ? st : undefined;
    }, 15_000).catch(async () => `never (${(await bubble.count()) > 0 ? await bubble.getAttribute('data-state') : 'no bubble'})`);
    if (state.startsWith('never')) lost.push(`${q}: ${state}; box held ${JSON.stringify(inBox)}`);
    log(`loss hunt: "${q}" ${state}${inBox !== undefined && inBox !== q ? ` (box held ${JSON.stringify(inBox)})` : ''}`);
  };
  const stopAll = async (frame: Frame): Promise<void> => {
    // The answer may end on its own meanwhile: then there is nothing to stop.
    await frame.locator('#stop').click({ timeout: 1000 }).catch(() => undefined);
  };
  await openChat(page);
  // 1. Right after the daemon is killed: type before it is back (the reported case); 3 times,
  // the extension's restart limit in 3 minutes.
  for (let i = 0; i < 3; i++) {
    const [pid] = daemonPids();
    if (pid !== undefined) process.kill(pid, 'SIGKILL');
    await typeFast(await chatFrame(page), `after kill ${i} q${Date.now() % 100000}`);
    await waitFor('the daemon back', () => (daemonPids().length === 1 ? true : undefined), 30_000, 100);
    await waitFor('ready again', async () => ((await statusText(page))?.match(/mlxd: (ready|local)/) ? true : undefined), 60_000, 250);
    await stopAll(await chatFrame(page));
  }
  // 1c. The cause of item 11: a busy extension host (paused here) runs 'mlxd: Open Chat' late,
  // while the question is typed. VS Code focuses the view's pane, then the webview's document
  // (not the box): before the fix, the keys from then on and the Enter went nowhere. Now the
  // focus comes back to the box; the keys typed in VS Code's own hand-over (ms) are still lost,
  // which is why the e2e's openChat waits for the command to finish before typing.
  const hosts = extensionHostPids();
  log(`loss hunt: extension hosts ${hosts.join(', ')}`);
  check(hosts.length > 0, 'found the extension host');
  for (let i = 0; i < 4; i++) {
    for (const h of hosts) process.kill(h, 'SIGSTOP');
    await runCommand(page, 'mlxd: Open Chat');
    const frame = await chatFrame(page);
    await frame.locator('#prompt').click();
    setTimeout(() => { for (const h of hosts) process.kill(h, 'SIGCONT'); }, 200 + 150 * i);
    const q = `slow host ${i} q${Date.now() % 100000}`;
    tries += 1;
    await page.keyboard.type(q, { delay: 40 });
    const inBox = await frame.locator('#prompt').inputValue();
    await page.keyboard.press('Enter');
    await settleQuestion(frame, q, inBox);
    await stopAll(frame);
  }
  // 2. Enter while an answer streams, and two questions back to back.
  for (let i = 0; i < 4; i++) {
    const frame = await chatFrame(page);
    await typeFast(frame, `Write a very long story about a lighthouse ${i}.`);
    await typeFast(frame, `during stream ${i}a`, false);
    await typeFast(frame, `during stream ${i}b`, false);
    await settleQuestion(frame, `during stream ${i}a`);
    await settleQuestion(frame, `during stream ${i}b`);
    await stopAll(frame);
  }
  // 3. The panel hidden and shown, typing once it is open.
  for (let i = 0; i < 4; i++) {
    await runCommand(page, 'View: Toggle Primary Side Bar Visibility');
    await typeFast(await openChat(page), `after show ${i}`);
    await stopAll(await chatFrame(page));
  }
  result.lossHunt = { tries, lost };
  log(`loss hunt: ${tries} questions, ${lost.length} lost${lost.length ? `: ${lost.join(' | ')}` : ''}`);
}

/** The extension's output channel as VS Code writes it to disk (the daemon's log included). */
function extensionLogs(): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const e of fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }) : []) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === 'mlxd.log') found.push(p);
    }
  };
  walk(path.join(dirs.user, 'logs'));
  return found;
}

async function main(): Promise<void> {
  fs.mkdirSync(WORK, { recursive: true });
  fs.rmSync(trace, { force: true });
  const port = await freePort();
  const cfg = writeSetup(port);
  installVsix(cfg);
  let cs: ChildProcess | undefined;
  let browser: Browser | undefined;
  try {
    cs = startCodeServer(cfg, port);
    log(`code-server pid ${cs.pid} on 127.0.0.1:${port}`);
    await waitFor('code-server to listen', async () => {
      try {
        const r = await fetch(`http://127.0.0.1:${port}/healthz`);
        return r.ok ? true : undefined;
      } catch {
        return undefined;
      }
    }, 60_000, 300);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write']); // Copy, Ctrl+V
    page.setDefaultTimeout(30_000);
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(dirs.ws)}`);
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    log('workbench loaded');

    // Typing before the provider is registered gives no ghost text and nothing retries: wait for
    // the extension's ready marker (its status bar item) first.
    const ready = await waitFor('the mlxd status bar item to say ready', async () => {
      const t = await statusText(page);
      if (t && /failed|error/.test(t)) throw new Error(`the extension reports: ${t}`);
      return t && /mlxd: (ready|local)/.test(t) ? t : undefined;
    }, 180_000, 500);
    result.readyStatus = ready;
    log(`ready: ${ready}`);
    // Progress notifications wait for the client's ack of window/workDoneProgress/create, so
    // they may trail the "ready" status by a moment.
    const progressOf = (): (string | undefined)[] =>
      readTrace().filter((r) => r.kind === 'progress').map((r) => (r as { progress?: string }).progress);
    await waitFor('the model-load progress to end', () => (progressOf().includes('end') ? true : undefined), 10_000).catch(() => undefined);
    const states = readTrace().filter((r) => r.kind === 'status').map((r) => (r as { state?: string }).state);
    const progress = progressOf();
    result.statusStates = states;
    result.loadProgress = progress;
    check(states.includes('ready'), `the daemon's mlxd/status notifications reached the extension (${states.join(', ')})`);
    check(progress[0] === 'begin' && progress.at(-1) === 'end', `model loading showed as work-done progress (${progress.join(', ')})`);

    const steps: [string, () => Promise<void>][] = [
      ['inline', () => inlineTest(page)],
      ['chat', () => chatTest(page)],
      ['menu', () => menuTest(page)],
      ['cycle', () => cycleTest(page)], // after menu: it adds lines to main.py
      ['cursor', () => cursorTest(page)],
      ['copy', () => copyTest(page)],
      ['log', () => logTest()],
      ['crash', () => crashTest(page)],
      ['keybindings', () => keybindingsTest(page)],
      ['key', () => keyTest(page)],
      ['serverPath', () => serverPathTest(page)],
      ['wording', () => wordingTest(page)],
      ['download', () => downloadTest(page)],
      ['shutdown', () => shutdownTest(page)],
    ];
    for (const [name, step] of steps) if (!ONLY || ONLY.includes(name)) await step();
    if (ONLY?.includes('losshunt')) await lossHunt(page);
    // The editSettings above typed into the user's settings.json: no inline request for it.
    const inSettings = readTrace().filter((r) => r.kind === 'inline' && /\/User\/settings\.json$/.test(String((r as { uri?: string }).uri)));
    result.inlineInSettingsJson = inSettings.length;
    check(inSettings.length === 0, `no ghost text was asked for in settings.json (${inSettings.length})`);
  } catch (err) {
    failure = err instanceof Error ? err.message : String(err);
    log(`FAILED: ${failure}`);
    if (browser) {
      for (const p of browser.contexts().flatMap((c) => c.pages())) {
        // A modal dialog blocks every click: say what it asked.
        const dialog = await p.locator('.monaco-dialog-box').allTextContents().catch(() => []);
        if (dialog.length > 0) log(`open dialog: ${dialog.join(' | ')}`);
        await p.screenshot({ path: path.join(ARTIFACTS, 'failure.png') }).catch(() => undefined);
      }
    }
  } finally {
    await browser?.close().catch(() => undefined);
    await stopGroup(cs);
    for (const f of [csLog, trace, ...extensionLogs()]) {
      if (fs.existsSync(f)) fs.copyFileSync(f, path.join(ARTIFACTS, path.basename(f)));
    }
  }
  result.ok = failure === undefined;
  if (failure) result.error = failure;
  result.seconds = (Date.now() - t0) / 1000;
  console.log(`E2E_RESULT ${JSON.stringify(result)}`);
  process.exitCode = failure === undefined ? 0 : 1;
}

void main();
