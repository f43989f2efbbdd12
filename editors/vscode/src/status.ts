// What the status bar item shows, computed from what the extension knows about the daemon.
// Pure: the extension copies the returned fields onto a StatusBarItem.

import type { Attempt, StatusParams } from './protocol';

export type ClientPhase = 'starting' | 'running' | 'stopped' | 'failed';

export interface StatusModel {
  phase: ClientPhase;
  /** The latest `mlxd/status` notification, if any arrived. */
  daemon?: StatusParams;
  /** Work-done progress of a long task (model loading), while it runs. */
  progress?: { title: string; message?: string; percentage?: number };
  /** The backend that served the latest chat, and what was tried before it. */
  lastServed?: { backend: string; attempts: Attempt[] };
  /** Why the client failed or stopped (spawn error, crash). */
  error?: string;
}

export type Severity = 'normal' | 'warning' | 'error';

export interface StatusView {
  text: string;
  tooltip: string;
  severity: Severity;
  /** True once requests can be served; end-to-end tests wait for it before typing. */
  ready: boolean;
}

/** Renders the status bar item. Text uses VS Code's $(icon) syntax. */
export function renderStatus(m: StatusModel): StatusView {
  const lines: string[] = [];
  if (m.phase === 'failed' || m.phase === 'stopped') {
    const text = m.phase === 'failed' ? '$(error) mlxd: failed' : '$(circle-slash) mlxd: stopped';
    lines.push(m.phase === 'failed' ? 'The mlxd daemon could not start or crashed.' : 'The mlxd daemon is not running.');
    if (m.error) lines.push(m.error);
    lines.push('Click for options (restart, logs).');
    return { text, tooltip: lines.join('\n'), severity: m.phase === 'failed' ? 'error' : 'warning', ready: false };
  }
  if (m.phase === 'starting') {
    return { text: '$(sync~spin) mlxd: starting', tooltip: 'Starting the mlxd daemon…', severity: 'normal', ready: false };
  }

  const state = m.daemon?.state ?? 'ready';
  const backends = m.daemon?.backends ?? {};
  const backendLines = Object.entries(backends).map(([name, health]) => `${name}: ${describeHealth(health)}`);
  const unhealthy = Object.entries(backends).filter(([, h]) => h === 'cooldown' || h === 'error');
  const keyless = backendsWithoutKey(m.daemon);

  if (m.progress || state === 'loading' || state === 'starting') {
    const pct = m.progress?.percentage;
    const what = m.progress?.title ?? (state === 'loading' ? 'loading model' : 'starting');
    const text = `$(sync~spin) mlxd: ${state === 'starting' && !m.progress ? 'starting' : 'loading'}${pct !== undefined ? ` ${Math.round(pct)}%` : ''}`;
    lines.push(what + (m.progress?.message ? ` — ${m.progress.message}` : ''));
    if (m.daemon?.message && m.daemon.message !== m.progress?.message) lines.push(m.daemon.message);
    return { text, tooltip: lines.join('\n'), severity: 'normal', ready: false };
  }

  if (state === 'error') {
    lines.push(`Error: ${m.daemon?.message ?? 'the daemon reported an error'}`);
    lines.push(...backendLines);
    return { text: '$(error) mlxd: error', tooltip: lines.join('\n'), severity: 'error', ready: false };
  }

  let text: string;
  let severity: Severity = 'normal';
  const served = m.lastServed;
  if (served) {
    text = `$(check) mlxd: ${served.backend}`;
    lines.push(`Last answer served by ${served.backend}.`);
    if (served.attempts.length > 0) {
      text = `$(warning) mlxd: ${served.backend} (fallback)`;
      severity = 'warning';
      lines.push('Fallback happened; tried before:');
      for (const a of served.attempts) lines.push(`  ${a.backend}: ${a.error}`);
    }
  } else {
    text = '$(check) mlxd: ready';
    lines.push('Ready.');
  }
  if (state === 'degraded' || unhealthy.length > 0) {
    severity = 'warning';
    if (!text.startsWith('$(warning)')) text = text.replace('$(check)', '$(warning)');
    lines.push(`Degraded${m.daemon?.message ? `: ${m.daemon.message}` : ''}`);
  } else if (m.daemon?.message) {
    lines.push(m.daemon.message);
  }
  if (backendLines.length > 0) {
    lines.push('Backends:', ...backendLines.map((l) => `  ${l}`));
  }
  if (keyless.length > 0) {
    severity = severity === 'normal' ? 'warning' : severity;
    if (!text.startsWith('$(warning)')) text = text.replace('$(check)', '$(warning)');
    lines.push(`No API key for ${keyless.join(', ')}: click, then "Set API key…".`);
  }
  lines.push('Click for options.');
  return { text, tooltip: lines.join('\n'), severity, ready: true };
}

/** A backend state in words (`no_key` is "no API key"). */
export function describeHealth(health: string): string {
  return health === 'no_key' ? 'no API key' : health;
}

/** The backends the daemon reports as needing an API key they do not have. */
export function backendsWithoutKey(daemon: StatusParams | undefined): string[] {
  return Object.entries(daemon?.backends ?? {})
    .filter(([, h]) => h === 'no_key')
    .map(([name]) => name);
}

/** Whether a work-done progress value also goes on to languageclient's own UI. Only `end` (so
 * the client drops the token): its `begin` would open a second status-bar item ("mlxd: building
 * the tokenizer") beside ours, which already shows the same load ("mlxd: loading 90%"). */
export function forwardWorkDoneToClient(kind: 'begin' | 'report' | 'end'): boolean {
  return kind === 'end';
}
