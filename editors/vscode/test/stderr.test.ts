import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StderrRouter } from '../src/stderr';

const at = '2026-11-26 04:49:44,305';

describe('stderr routing', () => {
  it('shows every record (mlxd sends each record one way, so none is a copy)', () => {
    const r = new StderrRouter();
    assert.deepEqual(r.route(`${at} INFO mlxd: ready`), { level: 'info', text: 'mlxd: ready' });
    assert.deepEqual(r.route(`${at} ERROR mlxd.router: backend cloud failed`), { level: 'error', text: 'mlxd.router: backend cloud failed' });
  });

  it('each record at its own level, without the timestamp', () => {
    const r = new StderrRouter();
    assert.deepEqual(r.route(`${at} DEBUG mlxd.backends.openai: POST /v1/chat/completions`), {
      level: 'debug',
      text: 'mlxd.backends.openai: POST /v1/chat/completions',
    });
    assert.deepEqual(r.route(`${at} WARNING pygls.protocol.json_rpc: Cancel notification for unknown message id "7"`), {
      level: 'warn',
      text: 'pygls.protocol.json_rpc: Cancel notification for unknown message id "7"',
    });
    assert.deepEqual(r.route(`${at} CRITICAL mlxd: down`), { level: 'error', text: 'mlxd: down' });
  });

  it('a line that is not a record continues the last one (a traceback) and is kept', () => {
    const r = new StderrRouter();
    assert.deepEqual(r.route('Fatal Python error: Aborted'), { level: 'error', text: 'Fatal Python error: Aborted' });
    r.route(`${at} WARNING mlxd.server: handler failed`);
    assert.deepEqual(r.route('Traceback (most recent call last):'), { level: 'warn', text: 'Traceback (most recent call last):' });
    r.route(`${at} DEBUG asyncio: slow callback`);
    assert.deepEqual(r.route('  more detail'), { level: 'debug', text: '  more detail' });
    assert.equal(r.route('   '), undefined);
  });
});
