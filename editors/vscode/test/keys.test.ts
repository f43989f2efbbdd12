import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type * as vscode from 'vscode';
import { KeyStore } from '../src/keys';

/** In-memory stand-ins for SecretStorage and a Memento (globalState). */
function fakes() {
  const secrets = new Map<string, string>();
  const state = new Map<string, unknown>();
  const secretStorage = {
    get: async (k: string) => secrets.get(k),
    store: async (k: string, v: string) => void secrets.set(k, v),
    delete: async (k: string) => void secrets.delete(k),
  } as unknown as vscode.SecretStorage;
  const memento = {
    get: <T>(k: string, d: T) => (state.has(k) ? (state.get(k) as T) : d),
    update: async (k: string, v: unknown) => void state.set(k, v),
  } as unknown as vscode.Memento;
  return { secrets, state, store: new KeyStore(secretStorage, memento) };
}

describe('API key store', () => {
  it('keeps keys in SecretStorage and only backend names in globalState', async () => {
    const { secrets, state, store } = fakes();
    await store.set('openai', 'sk-secret-1');
    await store.set('anthropic', 'sk-secret-2');
    assert.deepEqual(store.names(), ['anthropic', 'openai']);
    assert.deepEqual(await store.all(), [
      { backend: 'anthropic', apiKey: 'sk-secret-2' },
      { backend: 'openai', apiKey: 'sk-secret-1' },
    ]);
    assert.equal(secrets.get('mlxd.apiKey.openai'), 'sk-secret-1');
    assert.ok(!JSON.stringify([...state.values()]).includes('sk-secret'));
  });

  it('replacing a key keeps one entry; clearing removes it everywhere', async () => {
    const { secrets, store } = fakes();
    await store.set('openai', 'old');
    await store.set('openai', 'new');
    assert.deepEqual(await store.all(), [{ backend: 'openai', apiKey: 'new' }]);
    await store.clear('openai');
    assert.deepEqual(store.names(), []);
    assert.equal(secrets.size, 0);
    assert.deepEqual(await store.all(), []);
  });

  it('skips names whose secret has gone (e.g. cleared from the OS keychain)', async () => {
    const { secrets, store } = fakes();
    await store.set('openai', 'k');
    secrets.clear();
    assert.deepEqual(await store.all(), []);
  });
});
