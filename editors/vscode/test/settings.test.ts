import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  chatOptions,
  DEFAULT_LANGUAGES,
  expandVars,
  inlineEnabledFor,
  type Inspected,
  readSettings,
  resolveServerPath,
  serverArgv,
  toInitializationOptions,
} from '../src/settings';

function getterFrom(values: Record<string, unknown>) {
  return <T>(key: string, fallback: T): T => (key in values ? (values[key] as T) : fallback);
}

describe('settings: reading', () => {
  it('applies defaults for an empty configuration', () => {
    const s = readSettings(getterFrom({}));
    assert.equal(s.serverPath, '');
    assert.deepEqual(s.serverArgs, []);
    assert.deepEqual(s.config, {});
    assert.equal(s.inlineEnable, true);
    assert.deepEqual(s.inlineLanguages, DEFAULT_LANGUAGES);
    assert.equal(s.inlineDebounceMs, 150);
    assert.equal(s.chatMaxTokens, null);
    assert.equal(s.chatTemperature, null);
  });

  it('drops values of the wrong type instead of passing them on', () => {
    const s = readSettings(
      getterFrom({ serverArgs: ['--config', 3, 'x'], serverEnv: { A: 'b', N: 1 }, config: [1, 2], 'inline.languages': { python: true, go: 'no' }, 'chat.maxTokens': 'many' }),
    );
    assert.deepEqual(s.serverArgs, ['--config', 'x']);
    assert.deepEqual(s.serverEnv, { A: 'b' });
    assert.deepEqual(s.config, {});
    assert.deepEqual(s.inlineLanguages, { python: true });
    assert.equal(s.chatMaxTokens, null);
  });
});

describe('settings: initializationOptions mapping', () => {
  it('passes the config schema through with snake_case keys, dropping nulls', () => {
    const cfg = {
      local: { model: '/m', preload: true, max_tokens: null },
      routing: { cloud: false, chat: ['local', null] },
      inline: { languages: { python: { enabled: true, single_line: false } } },
    };
    const { options, warnings } = toInitializationOptions(cfg);
    assert.deepEqual(options, {
      local: { model: '/m', preload: true },
      routing: { cloud: false, chat: ['local'] },
      inline: { languages: { python: { enabled: true, single_line: false } } },
    });
    assert.deepEqual(warnings, []);
  });

  it('returns a copy: editing it does not touch the settings object', () => {
    const cfg = { routing: { chat: ['local'] } };
    const { options } = toInitializationOptions(cfg);
    (options.routing as { chat: string[] }).chat.push('x');
    assert.deepEqual(cfg.routing.chat, ['local']);
  });

  it('strips literal API keys and warns without echoing the key', () => {
    const secret = 'sk-test-DO-NOT-LEAK-123';
    const { options, warnings } = toInitializationOptions({
      backends: { openai: { base_url: 'https://api.example/v1', api_key: secret, api_key_env: 'OPENAI_API_KEY' } },
    });
    assert.deepEqual(options, { backends: { openai: { base_url: 'https://api.example/v1', api_key_env: 'OPENAI_API_KEY' } } });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /backends\.openai\.api_key/);
    assert.ok(!JSON.stringify({ options, warnings }).includes(secret));
  });

  it('treats a non-object config as empty', () => {
    assert.deepEqual(toInitializationOptions('nope').options, {});
    assert.deepEqual(toInitializationOptions(null).options, {});
  });
});

describe('settings: inline enablement', () => {
  const base = { inlineEnable: true, inlineLanguages: DEFAULT_LANGUAGES };
  it('uses the language entry, else *, else on', () => {
    assert.equal(inlineEnabledFor('python', base), true);
    assert.equal(inlineEnabledFor('markdown', base), false);
    assert.equal(inlineEnabledFor('go', { inlineEnable: true, inlineLanguages: { '*': false, python: true } }), false);
    assert.equal(inlineEnabledFor('python', { inlineEnable: true, inlineLanguages: { '*': false, python: true } }), true);
    assert.equal(inlineEnabledFor('go', { inlineEnable: true, inlineLanguages: {} }), true);
  });
  it('the master toggle wins over every language', () => {
    assert.equal(inlineEnabledFor('python', { inlineEnable: false, inlineLanguages: { python: true } }), false);
  });
});

describe('settings: finding the daemon', () => {
  const ctx = (exec: string[], folders = ['/ws/proj']) => ({
    workspaceFolders: folders,
    pathEnv: '/usr/local/bin:/usr/bin',
    home: '/home/u',
    isExecutable: (f: string) => exec.includes(f),
  });

  it('prefers mlxd on PATH, then the workspace venv', () => {
    assert.deepEqual(resolveServerPath('', ctx(['/usr/bin/mlxd', '/ws/proj/.venv/bin/mlxd'])), { path: '/usr/bin/mlxd', source: 'PATH' });
    assert.deepEqual(resolveServerPath('', ctx(['/ws/proj/.venv/bin/mlxd'])), { path: '/ws/proj/.venv/bin/mlxd', source: 'venv' });
    assert.deepEqual(resolveServerPath('', ctx(['/ws/b/.venv/bin/mlxd'], ['/ws/a', '/ws/b'])), { path: '/ws/b/.venv/bin/mlxd', source: 'venv' });
    assert.equal(resolveServerPath('', ctx([])), undefined);
  });

  it('uses the setting as given, expanding variables and relative paths', () => {
    assert.deepEqual(resolveServerPath('${workspaceFolder}/.venv/bin/mlxd', ctx([])), { path: '/ws/proj/.venv/bin/mlxd', source: 'setting' });
    assert.deepEqual(resolveServerPath('~/bin/mlxd', ctx([])), { path: '/home/u/bin/mlxd', source: 'setting' });
    assert.deepEqual(resolveServerPath('tools/mlxd', ctx([])), { path: '/ws/proj/tools/mlxd', source: 'setting' });
    assert.deepEqual(resolveServerPath('mlxd', ctx([])), { path: 'mlxd', source: 'setting' });
  });

  it('expands ${env:NAME} and ${userHome}', () => {
    assert.equal(expandVars('${env:CFG}/x-${userHome}', { workspaceFolders: [], home: '/h' }, { CFG: '/etc' }), '/etc/x-/h');
    assert.equal(expandVars('${env:MISSING}', { workspaceFolders: [], home: '/h' }, {}), '');
  });

  it('always runs `serve`, followed by the extra arguments', () => {
    assert.deepEqual(serverArgv({ serverArgs: ['--config', '${workspaceFolder}/mlxd.toml'] }, { workspaceFolders: ['/w'], home: '/h' }), [
      'serve',
      '--config',
      '/w/mlxd.toml',
    ]);
  });
});

describe('settings: chat request options', () => {
  it('omits unset values so the daemon decides, keeps temperature 0', () => {
    assert.deepEqual(chatOptions({ chatMaxTokens: null, chatTemperature: null }), {});
    assert.deepEqual(chatOptions({ chatMaxTokens: 64.7, chatTemperature: 0 }), { maxTokens: 64, temperature: 0 });
    assert.deepEqual(chatOptions({ chatMaxTokens: 0, chatTemperature: -1 }), {});
  });
});

describe('settings: a workspace only tightens (issue #15 case 1)', () => {
  // What VS Code's inspect() returns when a repository's .vscode/settings.json tries it on.
  const levels: Record<string, { globalValue?: unknown; workspaceValue?: unknown; workspaceFolderValue?: unknown }> = {
    serverPath: { globalValue: '/usr/local/bin/mlxd', workspaceValue: './evil.sh' },
    serverArgs: { workspaceValue: ['--config', './evil.toml'] },
    serverEnv: { globalValue: { A: 'b' }, workspaceFolderValue: { OPENAI_BASE_URL: 'http://evil' } },
    config: {
      globalValue: { routing: { cloud: false } },
      workspaceValue: { routing: { cloud: true }, backends: { openai: { base_url: 'http://evil' } } },
    },
    workspaceConfig: { workspaceValue: { routing: { exclude: ['**/private/**'] } }, workspaceFolderValue: { inline: { enabled: false } } },
  };
  const inspect = (key: string) => levels[key];
  // get() as VS Code would merge it if the scope were ignored: the workspace wins.
  const merged = (key: string, fallback: unknown) => {
    const l = levels[key];
    return l ? (l.workspaceFolderValue ?? l.workspaceValue ?? l.globalValue ?? fallback) : fallback;
  };

  it('reads the executable, its arguments, environment and config from the user level only', () => {
    const s = readSettings(merged as <T>(k: string, f: T) => T, inspect);
    assert.equal(s.serverPath, '/usr/local/bin/mlxd');
    assert.deepEqual(s.serverArgs, []);
    assert.deepEqual(s.serverEnv, { A: 'b' });
    assert.deepEqual(s.config, { routing: { cloud: false } });
  });

  it('sends what the workspace carries apart, under `workspace`, for the daemon to filter', () => {
    const s = readSettings(merged as <T>(k: string, f: T) => T, inspect);
    const { options } = toInitializationOptions(s.config, s.workspaceConfig);
    assert.deepEqual(options, {
      routing: { cloud: false },
      workspace: {
        routing: { exclude: ['**/private/**'], cloud: true },
        inline: { enabled: false },
        backends: { openai: { base_url: 'http://evil' } },
      },
    });
  });

  it('a `workspace` key inside the user config cannot stand in for the layer', () => {
    const { options } = toInitializationOptions({ workspace: { routing: { cloud: false } } });
    assert.deepEqual(options, {});
  });
});

describe('settings: a workspace may turn ghost text off, never on (issue #15 case 1)', () => {
  const read = (levels: Record<string, Inspected>) => {
    const merged = (key: string, fallback: unknown) => {
      const l = levels[key];
      return l ? (l.workspaceFolderValue ?? l.workspaceValue ?? l.globalValue ?? fallback) : fallback;
    };
    return readSettings(merged as <T>(k: string, f: T) => T, (key) => levels[key]);
  };

  it('the user turned inline off: a repository cannot turn it on', () => {
    const s = read({ 'inline.enable': { globalValue: false, workspaceValue: true, workspaceFolderValue: true } });
    assert.equal(s.inlineEnable, false);
  });

  it('a language off for the user or by default stays off, the editor config files included', () => {
    const s = read({
      'inline.languages': { globalValue: { python: false }, workspaceValue: { python: true, markdown: true, jsonc: true, '*': true } },
    });
    assert.equal(inlineEnabledFor('python', s), false);
    assert.equal(inlineEnabledFor('markdown', s), false); // off by default
    assert.notEqual(s.inlineLanguages.jsonc, true); // settings.json ghost text needs the user's own `true`
    assert.equal(inlineEnabledFor('rust', s), true);
  });

  it('a repository may turn it off, for all or for a language', () => {
    assert.equal(read({ 'inline.enable': { workspaceFolderValue: false } }).inlineEnable, false);
    const s = read({ 'inline.languages': { globalValue: { go: true }, workspaceValue: { rust: false, go: false } } });
    assert.equal(inlineEnabledFor('rust', s), false);
    assert.equal(inlineEnabledFor('go', s), false);
    assert.equal(inlineEnabledFor('python', s), true);
  });

  it("the user's own choices hold as before", () => {
    const s = read({ 'inline.enable': { globalValue: true }, 'inline.languages': { globalValue: { markdown: true, jsonc: true } } });
    assert.equal(s.inlineEnable, true);
    assert.equal(inlineEnabledFor('markdown', s), true);
    assert.equal(s.inlineLanguages.jsonc, true);
    assert.equal(read({}).inlineEnable, true);
  });
});
