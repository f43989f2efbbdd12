import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forwardWorkDoneToClient, renderStatus } from '../src/status';

describe('status bar rendering', () => {
  it('starting: spinner, not ready', () => {
    const v = renderStatus({ phase: 'starting' });
    assert.equal(v.text, '$(sync~spin) mlxd: starting');
    assert.equal(v.ready, false);
  });

  it('running with no status notification yet counts as ready', () => {
    const v = renderStatus({ phase: 'running' });
    assert.equal(v.text, '$(check) mlxd: ready');
    assert.equal(v.ready, true);
    assert.equal(v.severity, 'normal');
  });

  it('model loading shows the work-done percentage and is not ready', () => {
    const v = renderStatus({
      phase: 'running',
      daemon: { state: 'loading', backends: { local: 'ok' } },
      progress: { title: 'Loading tiny', message: 'weights', percentage: 42.4 },
    });
    assert.equal(v.text, '$(sync~spin) mlxd: loading 42%');
    assert.match(v.tooltip, /Loading tiny — weights/);
    assert.equal(v.ready, false);
  });

  it('loading without progress still says loading', () => {
    const v = renderStatus({ phase: 'running', daemon: { state: 'loading', backends: {} } });
    assert.equal(v.text, '$(sync~spin) mlxd: loading');
  });

  it('shows the backend that served the last answer', () => {
    const v = renderStatus({ phase: 'running', daemon: { state: 'ready', backends: { local: 'ok' } }, lastServed: { backend: 'local', attempts: [] } });
    assert.equal(v.text, '$(check) mlxd: local');
    assert.match(v.tooltip, /served by local/);
    assert.match(v.tooltip, /local: ok/);
  });

  it('flags a fallback with a warning and lists what failed', () => {
    const v = renderStatus({
      phase: 'running',
      daemon: { state: 'ready', backends: { openai: 'cooldown', local: 'ok' } },
      lastServed: { backend: 'local', attempts: [{ backend: 'openai', error: 'timeout before first token' }] },
    });
    assert.equal(v.text, '$(warning) mlxd: local (fallback)');
    assert.equal(v.severity, 'warning');
    assert.match(v.tooltip, /openai: timeout before first token/);
    assert.equal(v.ready, true);
  });

  it('degraded state is a warning but still ready', () => {
    const v = renderStatus({ phase: 'running', daemon: { state: 'degraded', message: 'openai down', backends: { openai: 'error' } } });
    assert.equal(v.text, '$(warning) mlxd: ready');
    assert.equal(v.severity, 'warning');
    assert.match(v.tooltip, /Degraded: openai down/);
  });

  it('daemon error state is an error and not ready', () => {
    const v = renderStatus({ phase: 'running', daemon: { state: 'error', message: 'model not found: /x', backends: {} } });
    assert.equal(v.text, '$(error) mlxd: error');
    assert.equal(v.severity, 'error');
    assert.match(v.tooltip, /model not found: \/x/);
    assert.equal(v.ready, false);
  });

  it('a failed client shows the reason', () => {
    const v = renderStatus({ phase: 'failed', error: 'spawn mlxd ENOENT' });
    assert.equal(v.text, '$(error) mlxd: failed');
    assert.match(v.tooltip, /ENOENT/);
    assert.equal(v.severity, 'error');
  });

  it('a cloud backend without a key says "no API key" and points to Set API Key, before any failure', () => {
    const v = renderStatus({ phase: 'running', daemon: { state: 'ready', backends: { local: 'ok', openai: 'no_key' } } });
    assert.match(v.tooltip, /openai: no API key/);
    assert.doesNotMatch(v.tooltip, /openai: ok|no_key/);
    assert.match(v.tooltip, /Set API key/);
    assert.equal(v.severity, 'warning');
    assert.equal(v.text, '$(warning) mlxd: ready');
    assert.equal(v.ready, true);
  });

  it('the load shows in our item alone: only its end reaches the language client (no second item)', () => {
    assert.deepEqual(
      (['begin', 'report', 'end'] as const).map(forwardWorkDoneToClient),
      [false, false, true],
    );
  });
});
