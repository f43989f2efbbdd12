import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ChatResult } from '../src/protocol';
import { chatToken, StreamAssembler } from '../src/stream';

function result(text: string, backend = 'local'): ChatResult {
  return {
    text,
    backend,
    model: 'tiny',
    finishReason: 'stop',
    usage: { promptTokens: 3, completionTokens: 2 },
    attempts: [],
    timings: { firstTokenMs: 1, totalMs: 2 },
    reasoning: '',
  };
}

describe('stream assembly', () => {
  it('concatenates deltas in order and tracks the backend', () => {
    const s = new StreamAssembler();
    assert.equal(s.push({ delta: 'Hel', backend: 'local' }), 'Hel');
    assert.equal(s.push({ delta: 'lo', backend: 'local' }), 'lo');
    assert.equal(s.text, 'Hello');
    assert.equal(s.backend, 'local');
    assert.equal(s.chunks, 2);
    const done = s.finish(result('Hello'));
    assert.deepEqual([done.text, done.mismatch], ['Hello', false]);
  });

  it('ignores malformed values and empty deltas', () => {
    const s = new StreamAssembler();
    assert.equal(s.push(null), undefined);
    assert.equal(s.push({ kind: 'report', percentage: 5 }), undefined);
    assert.equal(s.push({ delta: 3 }), undefined);
    assert.equal(s.push({ delta: '', backend: 'openai' }), undefined);
    assert.equal(s.backend, 'openai');
    assert.equal(s.chunks, 0);
    assert.equal(s.text, '');
  });

  it('the final result wins when deltas were lost, and says so', () => {
    const s = new StreamAssembler();
    s.push({ delta: 'Hel', backend: 'local' });
    const done = s.finish(result('Hello there', 'openai'));
    assert.equal(done.text, 'Hello there');
    assert.equal(done.mismatch, true);
    assert.equal(s.backend, 'openai');
  });

  it('ignores deltas that arrive after the result or after abort', () => {
    const s = new StreamAssembler();
    s.push({ delta: 'a', backend: 'local' });
    s.finish(result('a'));
    assert.equal(s.push({ delta: 'b', backend: 'local' }), undefined);
    const t = new StreamAssembler();
    t.push({ delta: 'x', backend: 'local' });
    assert.equal(t.abort(), 'x');
    assert.equal(t.push({ delta: 'y', backend: 'local' }), undefined);
    assert.equal(t.text, 'x');
  });

  it('tokens are unique per request and session', () => {
    assert.notEqual(chatToken('s1', 1), chatToken('s1', 2));
    assert.notEqual(chatToken('s1', 1), chatToken('s2', 1));
  });
});
