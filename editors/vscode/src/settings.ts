// Pure mapping from the extension's settings to what the daemon gets: the command line, the
// environment, and the config object (initializationOptions / didChangeConfiguration).
// No `vscode` import here, so the unit tests run in plain Node.

import * as path from 'node:path';

export interface Settings {
  serverPath: string;
  serverArgs: string[];
  serverEnv: Record<string, string>;
  /** The user's own `mlxd.config` (trusted). */
  config: Record<string, unknown>;
  /** What the workspace carries, sent apart as the daemon's tighten-only `workspace` layer. */
  workspaceConfig: Record<string, unknown>;
  inlineEnable: boolean;
  inlineLanguages: Record<string, boolean>;
  inlineDebounceMs: number;
  chatMaxTokens: number | null;
  chatTemperature: number | null;
  maxContextChars: number;
}

export const DEFAULT_LANGUAGES: Record<string, boolean> = {
  '*': true,
  plaintext: false,
  markdown: false,
  scminput: false,
};

/** One setting's value at each level (VS Code's `WorkspaceConfiguration.inspect`). */
export interface Inspected {
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
}

// Settings that name an executable, a URL, a header, an env var or a key, or can widen
// privacy: read from the user's level only, whatever the workspace says (issue #15 case 1).
const MACHINE_ONLY = ['serverPath', 'serverArgs', 'serverEnv', 'config'];
// Ghost text on/off: a workspace may turn it off, never on where the user (or the default) has
// it off (a repository turned it on in the user's own settings.json, or after the user turned
// it off); the daemon takes `inline.enabled` from a workspace as `false` only too.
const OFF_ONLY = ['inline.enable', 'inline.languages'];

/** `key`'s value with the workspace levels applied as off-switches only. */
function offOnly(i: Inspected | undefined, fallback: unknown): unknown {
  const user = i?.globalValue;
  const levels = [i?.workspaceValue, i?.workspaceFolderValue];
  if (typeof fallback === 'boolean') {
    return user !== false && (user !== undefined || fallback) && levels.every((v) => v !== false);
  }
  const out: Record<string, unknown> = { ...(fallback as object), ...(isPlainObject(user) ? user : {}) };
  for (const level of levels) {
    if (!isPlainObject(level)) continue;
    for (const [k, v] of Object.entries(level)) if (v === false) out[k] = false;
  }
  return out;
}

/**
 * Reads settings through a `get(key, default)` function (VS Code's WorkspaceConfiguration).
 * With `inspect`, the machine-only settings come from the user level alone, and the
 * workspace layer gathers `workspaceConfig` (every level) plus any workspace-level value of
 * `config` (VS Code already ignores those for an application-scoped setting; belt and braces).
 */
export function readSettings(get: <T>(key: string, fallback: T) => T, inspect?: (key: string) => Inspected | undefined): Settings {
  if (inspect) {
    const plain = get;
    get = <T>(key: string, fallback: T): T => {
      if (OFF_ONLY.includes(key)) return offOnly(inspect(key), fallback) as T;
      if (!MACHINE_ONLY.includes(key)) return plain(key, fallback);
      const v = inspect(key)?.globalValue;
      return v === undefined ? fallback : (v as T);
    };
  }
  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const strings = (v: unknown): string[] =>
    Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  const stringMap = (v: unknown): Record<string, string> => {
    const out: Record<string, string> = {};
    if (isPlainObject(v)) {
      for (const [k, x] of Object.entries(v)) {
        if (typeof x === 'string') out[k] = x;
      }
    }
    return out;
  };
  const boolMap = (v: unknown): Record<string, boolean> => {
    const out: Record<string, boolean> = {};
    if (isPlainObject(v)) {
      for (const [k, x] of Object.entries(v)) {
        if (typeof x === 'boolean') out[k] = x;
      }
    }
    return out;
  };
  const config = get<unknown>('config', {});
  const ws = inspect?.('workspaceConfig');
  const wsLayers = inspect
    ? [ws?.globalValue, ws?.workspaceValue, ws?.workspaceFolderValue, inspect('config')?.workspaceValue, inspect('config')?.workspaceFolderValue]
    : [get<unknown>('workspaceConfig', {})];
  return {
    serverPath: String(get<unknown>('serverPath', '') ?? ''),
    serverArgs: strings(get<unknown>('serverArgs', [])),
    serverEnv: stringMap(get<unknown>('serverEnv', {})),
    config: isPlainObject(config) ? config : {},
    workspaceConfig: wsLayers.reduce<Record<string, unknown>>((acc, v) => (isPlainObject(v) ? deepMerge(acc, v) : acc), {}),
    inlineEnable: get<unknown>('inline.enable', true) !== false,
    inlineLanguages: boolMap(get<unknown>('inline.languages', DEFAULT_LANGUAGES)),
    inlineDebounceMs: Math.max(0, num(get<unknown>('inline.debounceMs', 150)) ?? 150),
    chatMaxTokens: num(get<unknown>('chat.maxTokens', null)),
    chatTemperature: num(get<unknown>('chat.temperature', null)),
    maxContextChars: Math.max(1000, num(get<unknown>('chat.maxContextChars', 24000)) ?? 24000),
  };
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlainObject(v) && isPlainObject(b) ? deepMerge(b, v) : v;
  }
  return out;
}

export interface MappedConfig {
  /** The config object as the daemon's schema expects it (snake_case keys). */
  options: Record<string, unknown>;
  /** Problems found while mapping, to show the user (the daemon validates the rest). */
  warnings: string[];
}

/**
 * Turns the `mlxd.config` setting into initializationOptions: a deep JSON copy with nulls
 * dropped (VS Code uses null for "unset"). Literal API keys are removed: keys belong in
 * SecretStorage, never in settings.json, and are never forwarded from there. A non-empty
 * `workspace` layer goes under the key `workspace`, which the daemon only lets tighten.
 */
export function toInitializationOptions(config: unknown, workspace: unknown = {}): MappedConfig {
  const warnings: string[] = [];
  const options = isPlainObject(config) ? (prune(config) as Record<string, unknown>) : {};
  delete options.workspace; // only the workspace layer below may fill it
  if (isPlainObject(workspace) && Object.keys(workspace).length > 0) {
    options.workspace = prune(workspace);
  }
  const backends = options.backends;
  if (isPlainObject(backends)) {
    for (const [name, b] of Object.entries(backends)) {
      if (isPlainObject(b) && 'api_key' in b) {
        delete b.api_key;
        warnings.push(
          `mlxd.config.backends.${name}.api_key is ignored: API keys do not belong in settings; ` +
            'use "mlxd: Set API Key" (stored in the OS secret store).',
        );
      }
    }
  }
  return { options, warnings };
}

function prune(v: unknown): unknown {
  if (Array.isArray(v)) {
    return v.filter((x) => x !== null && x !== undefined).map(prune);
  }
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (x !== null && x !== undefined) out[k] = prune(x);
    }
    return out;
  }
  return v;
}

/** Is inline completion wanted for this language? Per-language entry, else `*`, else true. */
export function inlineEnabledFor(languageId: string, s: Pick<Settings, 'inlineEnable' | 'inlineLanguages'>): boolean {
  if (!s.inlineEnable) {
    return false;
  }
  const own = s.inlineLanguages[languageId];
  if (typeof own === 'boolean') {
    return own;
  }
  const star = s.inlineLanguages['*'];
  return typeof star === 'boolean' ? star : true;
}

export interface PathContext {
  workspaceFolders: string[];
  pathEnv: string;
  home: string;
  isExecutable: (file: string) => boolean;
}

export interface ResolvedServer {
  path: string;
  source: 'setting' | 'PATH' | 'venv';
}

/** Expands `${workspaceFolder}`, `${userHome}`, `${env:NAME}` and a leading `~`. */
export function expandVars(value: string, ctx: Pick<PathContext, 'workspaceFolders' | 'home'>, env: Record<string, string | undefined> = {}): string {
  let out = value.replace(/\$\{(workspaceFolder|userHome|env:([A-Za-z_][A-Za-z0-9_]*))\}/g, (m, name: string, envName?: string) => {
    if (name === 'workspaceFolder') return ctx.workspaceFolders[0] ?? m;
    if (name === 'userHome') return ctx.home;
    return env[envName ?? ''] ?? '';
  });
  if (out === '~' || out.startsWith('~/')) {
    out = ctx.home + out.slice(1);
  }
  return out;
}

/**
 * Finds the daemon: the setting if given; else `mlxd` on PATH; else the project venv
 * (`<folder>/.venv/bin/mlxd`) of each workspace folder in order.
 */
export function resolveServerPath(setting: string, ctx: PathContext, env: Record<string, string | undefined> = {}): ResolvedServer | undefined {
  const given = setting.trim();
  if (given !== '') {
    let file = expandVars(given, ctx, env);
    // A bare name is left to PATH lookup; a relative path is relative to the first folder.
    const folder = ctx.workspaceFolders[0];
    if (!path.isAbsolute(file) && file.includes('/') && folder !== undefined) {
      file = path.join(folder, file);
    }
    return { path: file, source: 'setting' };
  }
  for (const dir of ctx.pathEnv.split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, 'mlxd');
    if (ctx.isExecutable(candidate)) return { path: candidate, source: 'PATH' };
  }
  for (const folder of ctx.workspaceFolders) {
    const candidate = path.join(folder, '.venv', 'bin', 'mlxd');
    if (ctx.isExecutable(candidate)) return { path: candidate, source: 'venv' };
  }
  return undefined;
}

/** The daemon's argv after the executable. */
export function serverArgv(s: Pick<Settings, 'serverArgs'>, ctx: Pick<PathContext, 'workspaceFolders' | 'home'>, env: Record<string, string | undefined> = {}): string[] {
  return ['serve', ...s.serverArgs.map((a) => expandVars(a, ctx, env))];
}

/** Optional chat request fields from settings (omitted when unset, so the daemon decides). */
export function chatOptions(s: Pick<Settings, 'chatMaxTokens' | 'chatTemperature'>): { maxTokens?: number; temperature?: number } {
  const out: { maxTokens?: number; temperature?: number } = {};
  if (s.chatMaxTokens !== null && s.chatMaxTokens > 0) out.maxTokens = Math.floor(s.chatMaxTokens);
  if (s.chatTemperature !== null && s.chatTemperature >= 0) out.temperature = s.chatTemperature;
  return out;
}
