import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeSpawnError, NOT_FOUND_ON_PATH, serverNotFound } from '../src/serverPath';

const ctx = (executables: string[]) => ({ pathEnv: '/usr/bin:/opt/bin', isExecutable: (f: string) => executables.includes(f) });

describe('server path: not found before spawning', () => {
  it('nothing on PATH or in .venv: the PATH text, naming the setting', () => {
    assert.equal(serverNotFound(undefined, ctx([])), NOT_FOUND_ON_PATH);
    assert.match(NOT_FOUND_ON_PATH, /mlxd\.serverPath/);
  });

  it('found on PATH or in .venv (already checked): nothing to say', () => {
    assert.equal(serverNotFound({ path: '/usr/bin/mlxd', source: 'PATH' }, ctx([])), undefined);
    assert.equal(serverNotFound({ path: '/w/.venv/bin/mlxd', source: 'venv' }, ctx([])), undefined);
  });

  it('a setting naming a missing or non-executable file: friendly, no ENOENT', () => {
    const msg = serverNotFound({ path: '/nope/bin/mlxd', source: 'setting' }, ctx([]));
    assert.ok(msg);
    assert.match(msg, /mlxd executable not found/);
    assert.match(msg, /"\/nope\/bin\/mlxd" does not exist or is not executable/);
    assert.match(msg, /Fix "mlxd\.serverPath"/);
    assert.doesNotMatch(msg, /ENOENT|spawn/);
    assert.equal(serverNotFound({ path: '/opt/bin/mlxd', source: 'setting' }, ctx(['/opt/bin/mlxd'])), undefined);
  });

  it('a bare name in the setting is looked up on PATH', () => {
    assert.equal(serverNotFound({ path: 'mlxd-dev', source: 'setting' }, ctx(['/opt/bin/mlxd-dev'])), undefined);
    assert.match(serverNotFound({ path: 'mlxd-dev', source: 'setting' }, ctx([])) ?? '', /"mlxd-dev" is not on PATH/);
  });

  it('spawn errors in the same words; other start failures are left as they are', () => {
    assert.match(describeSpawnError('spawn /x/mlxd ENOENT', '/x/mlxd') ?? '', /"\/x\/mlxd" cannot be started \(no such file\)/);
    assert.match(describeSpawnError('spawn /x/mlxd EACCES', '/x/mlxd') ?? '', /not executable/);
    assert.equal(describeSpawnError('initialize failed', '/x/mlxd'), undefined);
  });
});
