// The mlxd wire contract (v1), as the extension uses it. Field names are camelCase on the wire;
// the config object (initializationOptions / didChangeConfiguration) keeps snake_case keys.

export type Role = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: Role;
  content: string;
}

export interface ChatParams {
  messages: ChatMessage[];
  maxTokens?: number;
  temperature?: number;
  stop?: string[];
  model?: string;
  backend?: string;
  textDocument?: { uri: string };
  partialResultToken?: string;
}

export interface Attempt {
  backend: string;
  error: string;
}

export interface ChatResult {
  text: string;
  backend: string;
  model: string;
  finishReason: 'stop' | 'length' | string;
  usage: { promptTokens: number; completionTokens: number };
  attempts: Attempt[];
  timings: { firstTokenMs: number; totalMs: number };
}

/** The `value` of a `$/progress` notification for a chat's partialResultToken. */
export interface ChatDelta {
  delta: string;
  backend: string;
}

export interface ModelsResult {
  models: { name: string; backend: string; loaded: boolean }[];
  defaults: { chat: string; complete: string; inline: string };
}

export interface SetApiKeyParams {
  backend: string;
  apiKey: string;
  persist?: boolean;
}

export type DaemonState = 'starting' | 'loading' | 'ready' | 'degraded' | 'error';
/** `no_key`: a cloud backend that needs an API key and has none (docs/protocol.md). */
export type BackendHealth = 'ok' | 'cooldown' | 'unconfigured' | 'error' | 'no_key';

export interface StatusParams {
  state: DaemonState;
  message?: string;
  backends: Record<string, BackendHealth>;
}

export const Methods = {
  chat: 'mlxd/chat',
  models: 'mlxd/models',
  setApiKey: 'mlxd/setApiKey',
  status: 'mlxd/status',
} as const;

/** JSON-RPC error code the daemon answers a cancelled request with. */
export const RequestCancelled = -32800;

export function isChatDelta(value: unknown): value is ChatDelta {
  if (typeof value !== 'object' || value === null) {
    return false;
  }
  const v = value as Record<string, unknown>;
  return typeof v.delta === 'string' && (v.backend === undefined || typeof v.backend === 'string');
}

export function isStatusParams(value: unknown): value is StatusParams {
  if (typeof value !== 'object' || value === null) {
    return false;
  }
  const v = value as Record<string, unknown>;
  return typeof v.state === 'string';
}
