// API keys live in VS Code's SecretStorage (the OS keychain), never in settings.json or logs.
// SecretStorage cannot list its keys, so the backend names that have one are kept in
// globalState (names only).

import type * as vscode from 'vscode';

const NAMES = 'mlxd.apiKeyBackends';
const secretId = (backend: string): string => `mlxd.apiKey.${backend}`;

export class KeyStore {
  constructor(
    private readonly secrets: vscode.SecretStorage,
    private readonly state: vscode.Memento,
  ) {}

  names(): string[] {
    return this.state.get<string[]>(NAMES, []);
  }

  async set(backend: string, apiKey: string): Promise<void> {
    await this.secrets.store(secretId(backend), apiKey);
    const names = new Set(this.names());
    names.add(backend);
    await this.state.update(NAMES, [...names].sort());
  }

  async clear(backend: string): Promise<void> {
    await this.secrets.delete(secretId(backend));
    await this.state.update(
      NAMES,
      this.names().filter((n) => n !== backend),
    );
  }

  /** Every stored key, for handing to a (re)started daemon. */
  async all(): Promise<{ backend: string; apiKey: string }[]> {
    const out: { backend: string; apiKey: string }[] = [];
    for (const backend of this.names()) {
      const apiKey = await this.secrets.get(secretId(backend));
      if (apiKey) out.push({ backend, apiKey });
    }
    return out;
  }
}
