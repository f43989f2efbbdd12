// Whether the daemon executable that will be spawned exists, checked before spawning: a wrong
// `mlxd.serverPath` used to surface as the language client's raw "spawn … ENOENT" toast. Both
// the PATH case and the setting case get the same friendly text, which names the fix.
// No `vscode` import here, so the unit tests run in plain Node.

import * as path from 'node:path';
import type { PathContext, ResolvedServer } from './settings';

/** The not-found text when nothing was found on PATH or in the workspace's .venv. */
export const NOT_FOUND_ON_PATH =
  'mlxd executable not found (not on PATH, no .venv/bin/mlxd in the workspace). Install mlxd or set "mlxd.serverPath".';

/** Why the executable `resolved` names cannot be started, or undefined when it can. */
export function serverNotFound(resolved: ResolvedServer | undefined, ctx: Pick<PathContext, 'pathEnv' | 'isExecutable'>): string | undefined {
  if (!resolved) return NOT_FOUND_ON_PATH;
  if (resolved.source !== 'setting') return undefined; // found by checking it is executable
  const file = resolved.path;
  const found = file.includes('/')
    ? ctx.isExecutable(file)
    : ctx.pathEnv.split(path.delimiter).some((dir) => dir !== '' && ctx.isExecutable(path.join(dir, file)));
  if (found) return undefined;
  const where = file.includes('/') ? `"${file}" does not exist or is not executable` : `"${file}" is not on PATH`;
  return `mlxd executable not found: "mlxd.serverPath" is set, and ${where}. Fix "mlxd.serverPath", or clear it to use mlxd on PATH or .venv/bin/mlxd in the workspace.`;
}

/** A spawn error (the file went away between the check and the spawn) in the same words. */
export function describeSpawnError(message: string, file: string): string | undefined {
  if (!/\b(ENOENT|EACCES)\b/.test(message)) return undefined;
  return `mlxd executable not found: "${file}" cannot be started (${/EACCES/.test(message) ? 'not executable' : 'no such file'}). Fix "mlxd.serverPath", or clear it to use mlxd on PATH or .venv/bin/mlxd in the workspace.`;
}
