// Optional trace file: when the environment variable MLXD_VSCODE_TRACE names a file, every
// inline item and chat result the daemon returned is appended to it as one JSON line. It lets
// an end-to-end test compare what the editor shows with what the daemon sent; off by default.

import * as fs from 'node:fs';

export interface Tracer {
  write(record: Record<string, unknown>): void;
}

export function makeTracer(file: string | undefined): Tracer {
  if (!file) {
    return { write: () => undefined };
  }
  return {
    write: (record) => {
      try {
        fs.appendFileSync(file, `${JSON.stringify({ time: Date.now(), ...record })}\n`);
      } catch {
        // Tracing is a debugging aid; it never breaks the editor.
      }
    },
  };
}
