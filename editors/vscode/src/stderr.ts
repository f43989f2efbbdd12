// The daemon's stderr in the output channel. mlxd sends each log record one way: as
// window/logMessage while a client is connected (the client shows those at their level), to
// stderr otherwise ("2026-11-26 04:49:44,305 INFO mlxd.app: text": before the connection,
// after it, or a library's output). Each stderr record shows at its own level, its timestamp
// dropped (the channel adds one); without this, every stderr line was tagged [error].
// No `vscode` import here, so the unit tests run in plain Node.

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export interface Routed {
  level: Level;
  text: string;
}

const RECORD = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): (.*)$/;
const LEVELS: Record<string, Level> = { DEBUG: 'debug', INFO: 'info', WARNING: 'warn', ERROR: 'error', CRITICAL: 'error' };

/** Routes stderr lines: a record's own level, its timestamp dropped. */
export class StderrRouter {
  // A line that is not a record continues the last one (a traceback, a multi-line message).
  private last: Level = 'error';

  /** Where a line goes; undefined for a blank line. */
  route(line: string): Routed | undefined {
    const m = RECORD.exec(line);
    if (!m) {
      return line.trim() === '' ? undefined : { level: this.last, text: line };
    }
    const [, levelName, logger, text] = m as unknown as [string, string, string, string];
    const level = LEVELS[levelName] ?? 'error';
    this.last = level;
    return { level, text: `${logger}: ${text}` };
  }
}
