// The daemon's stderr in the output channel, once. mlxd writes each log record to stderr
// ("2026-11-26 04:49:44,305 INFO mlxd.app: text") and sends its own records at INFO and above
// as window/logMessage too, which the client already shows at the right level. Without this,
// every such record appeared twice, the stderr copy tagged [error] whatever its level.
// No `vscode` import here, so the unit tests run in plain Node.

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export interface Routed {
  level: Level;
  text: string;
}

const RECORD = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): (.*)$/;
const LEVELS: Record<string, Level> = { DEBUG: 'debug', INFO: 'info', WARNING: 'warn', ERROR: 'error', CRITICAL: 'error' };

/** Routes stderr lines: a record's own level, its timestamp dropped (the channel adds one). */
export class StderrRouter {
  // A line that is not a record continues the last one (a traceback, a multi-line message).
  private last: Level = 'error';

  /** Where a line goes, or undefined when window/logMessage already carried it. */
  route(line: string): Routed | undefined {
    const m = RECORD.exec(line);
    if (!m) {
      return line.trim() === '' ? undefined : { level: this.last, text: line };
    }
    const [, levelName, logger, text] = m as unknown as [string, string, string, string];
    const level = LEVELS[levelName] ?? 'error';
    this.last = level;
    const mirrored = (logger === 'mlxd' || logger.startsWith('mlxd.')) && level !== 'debug';
    return mirrored ? undefined : { level, text: `${logger}: ${text}` };
  }
}
