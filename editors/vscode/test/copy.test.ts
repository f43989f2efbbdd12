// What of a copy goes to the daemon (`mlxd/didCopy`): the selections' text, at most MAX_LINES
// lines, nothing for a word or two.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { copiedText, DID_COPY, MAX_LINES, MIN_CHARS } from '../src/copy';

describe('copiedText', () => {
  it('sends the selections joined by line breaks, as VS Code copies them', () => {
    const body = 'def parse(raw):\n    return raw.strip()';
    assert.equal(copiedText([body]), body);
    assert.equal(copiedText(['value = compute(1, 2)', 'other = compute(3, 4)']), 'value = compute(1, 2)\nother = compute(3, 4)');
    assert.equal(copiedText(['a = 1\r\nb = compute_total(2, 3, 4)\r\n']), 'a = 1\nb = compute_total(2, 3, 4)\n');
  });

  it('sends nothing for a word or two', () => {
    assert.equal(copiedText(['parse_header']), undefined);
    assert.equal(copiedText(['x'.repeat(MIN_CHARS - 1), '   ']), undefined);
    assert.equal(copiedText(['x'.repeat(MIN_CHARS)]), 'x'.repeat(MIN_CHARS));
    assert.equal(copiedText([]), undefined);
  });

  it('sends at most MAX_LINES lines', () => {
    const lines = Array.from({ length: MAX_LINES + 50 }, (_, i) => `value_${i} = ${i}`);
    assert.deepEqual(copiedText([lines.join('\n')])?.split('\n'), lines.slice(0, MAX_LINES));
  });

  it('is the method the daemon lists', () => {
    assert.equal(DID_COPY, 'mlxd/didCopy');
  });
});
