import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StderrRouter } from '../src/stderr';

const at = '2026-11-26 04:49:44,305';

describe('stderr routing', () => {
  it('drops mlxd records at INFO and above: window/logMessage already carried them', () => {
    const r = new StderrRouter();
    for (const level of ['INFO', 'WARNING', 'ERROR', 'CRITICAL']) {
      assert.equal(r.route(`${at} ${level} mlxd.router: backend cloud failed`), undefined);
    }
    assert.equal(r.route(`${at} INFO mlxd: ready`), undefined);
  });

  it('keeps what logMessage does not carry, at its own level, without the timestamp', () => {
    const r = new StderrRouter();
    assert.deepEqual(r.route(`${at} DEBUG mlxd.backends.openai: POST /v1/chat/completions`), {
      level: 'debug',
      text: 'mlxd.backends.openai: POST /v1/chat/completions',
    });
    assert.deepEqual(r.route(`${at} WARNING pygls.protocol.json_rpc: Cancel notification for unknown message id "7"`), {
      level: 'warn',
      text: 'pygls.protocol.json_rpc: Cancel notification for unknown message id "7"',
    });
    assert.deepEqual(r.route(`${at} INFO mlxdx.other: a look-alike logger`), { level: 'info', text: 'mlxdx.other: a look-alike logger' });
  });

  it('a line that is not a record continues the last one (a traceback) and is kept', () => {
    const r = new StderrRouter();
    assert.deepEqual(r.route('Fatal Python error: Aborted'), { level: 'error', text: 'Fatal Python error: Aborted' });
    assert.equal(r.route(`${at} ERROR mlxd.server: handler failed`), undefined);
    assert.deepEqual(r.route('Traceback (most recent call last):'), { level: 'error', text: 'Traceback (most recent call last):' });
    r.route(`${at} DEBUG asyncio: slow callback`);
    assert.deepEqual(r.route('  more detail'), { level: 'debug', text: '  more detail' });
    assert.equal(r.route('   '), undefined);
  });
});
