// The mlxd wire contract (v1), as the extension uses it. Field names are camelCase on the wire;
// the config object (initializationOptions / didChangeConfiguration) keeps snake_case keys.
//
// Mirrors daemon/mlxd/protocol.py: one interface per msgspec Struct, with the same fields.
// tests/unit/test_protocol_drift.py reads this file and fails when the two disagree (method
// names, field names, optional `?` for fields with a default, `| null` for fields the daemon
// sends as null), so keep every interface flat: a nested object gets its own interface.

export type Role = 'system' | 'user' | 'assistant';
/** LSP progress token. */
export type ProgressToken = number | string;

export interface ChatMessage {
  role: Role;
  content: string;
}

export interface TextDocumentRef {
  uri: string;
}

/** An LSP position, in the negotiated encoding's units. */
export interface Position {
  line: number;
  character: number;
}

/** `mlxd/didMoveCursor` (notification): where the cursor rests; sent only when the daemon
 * lists the method in `capabilities.experimental.mlxd.methods`. */
export interface CursorParams {
  textDocument: TextDocumentRef;
  position: Position;
}

/** `mlxd/didCopy` (notification): text copied from a synced document; sent only when the
 * daemon lists the method. */
export interface CopyParams {
  textDocument: TextDocumentRef;
  text: string;
}

export interface ChatParams {
  messages: ChatMessage[];
  model?: string;
  backend?: string;
  maxTokens?: number;
  temperature?: number;
  stop?: string[];
  textDocument?: TextDocumentRef;
  partialResultToken?: ProgressToken;
  workDoneToken?: ProgressToken;
}

/** Raw code completion (fill-in-the-middle where the model supports it). */
export interface CompleteParams {
  prefix: string;
  suffix?: string;
  language?: string;
  model?: string;
  backend?: string;
  maxTokens?: number;
  temperature?: number;
  stop?: string[];
  textDocument?: TextDocumentRef;
  partialResultToken?: ProgressToken;
  workDoneToken?: ProgressToken;
}

export interface SetApiKeyParams {
  backend: string;
  apiKey: string;
  persist?: boolean;
}

export interface Attempt {
  backend: string;
  error: string;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export interface Timings {
  /** null when no token came (an empty answer). */
  firstTokenMs: number | null;
  totalMs: number;
}

/** The result of `mlxd/chat` and of `mlxd/complete`. */
export interface ChatResult {
  text: string;
  backend: string;
  model: string;
  finishReason: 'stop' | 'length';
  usage: Usage;
  attempts: Attempt[];
  timings: Timings;
  /** The model's reasoning, kept out of `text` ('' when there was none; always '' for complete). */
  reasoning: string;
}

/** The `value` of a `$/progress` notification for a chat's partialResultToken. */
export interface ChatDelta {
  delta: string;
  backend: string;
}

/** A chat's reasoning, streamed apart from its text on the same partialResultToken. */
export interface ChatReasoningDelta {
  reasoning: string;
  backend: string;
}

export interface ModelInfo {
  name: string;
  backend: string;
  loaded: boolean;
}

export interface ModelsResult {
  models: ModelInfo[];
  /** By request kind: chat, complete, inline. */
  defaults: Record<string, string>;
}

/** `mlxd/stats`: diagnostic counters (inline engine, local models, MLX memory); not a contract. */
export type StatsResult = Record<string, unknown>;

export type DaemonState = 'starting' | 'loading' | 'ready' | 'degraded' | 'error';
/** `no_key`: a cloud backend that needs an API key and has none (docs/protocol.md). */
export type BackendHealth = 'ok' | 'cooldown' | 'unconfigured' | 'error' | 'no_key';

export interface StatusParams {
  state: DaemonState;
  backends: Record<string, BackendHealth>;
  message?: string;
}

export const Methods = {
  chat: 'mlxd/chat',
  complete: 'mlxd/complete',
  models: 'mlxd/models',
  setApiKey: 'mlxd/setApiKey',
  stats: 'mlxd/stats',
  status: 'mlxd/status',
  didMoveCursor: 'mlxd/didMoveCursor',
  didCopy: 'mlxd/didCopy',
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
