// What of a copy goes to the daemon (`mlxd/didCopy`): the selections' text as the clipboard
// holds it, at most MAX_LINES lines and MAX_CHARS characters, nothing for a word or two.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { copiedText, DID_COPY, MAX_CHARS, MAX_LINES, MIN_CHARS } from '../src/copy';

const copied = (selections: string[]): string | undefined => copiedText(selections, selections.join('\n'));

describe('copiedText', () => {
  it('sends the selections joined by line breaks, as VS Code copies them', () => {
    const body = 'def parse(raw):\n    return raw.strip()';
    assert.equal(copied([body]), body);
    assert.equal(copied(['value = compute(1, 2)', 'other = compute(3, 4)']), 'value = compute(1, 2)\nother = compute(3, 4)');
    const crlf = 'a = 1\r\nb = compute_total(2, 3, 4)\r\n';
    assert.equal(copiedText([crlf], crlf), 'a = 1\nb = compute_total(2, 3, 4)\n');
    assert.equal(copiedText([crlf], 'a = 1\nb = compute_total(2, 3, 4)'), 'a = 1\nb = compute_total(2, 3, 4)\n');
  });

  it('sends nothing when the clipboard holds something else (another widget copied)', () => {
    assert.equal(copiedText(['value = compute_total(1, 2)'], 'fix: the commit message'), undefined);
  });

  it('sends nothing for a word or two', () => {
    assert.equal(copied(['parse_header']), undefined);
    assert.equal(copied(['x'.repeat(MIN_CHARS - 1), '   ']), undefined);
    assert.equal(copied(['x'.repeat(MIN_CHARS)]), 'x'.repeat(MIN_CHARS));
    assert.equal(copied([]), undefined);
  });

  it('sends at most MAX_LINES lines and MAX_CHARS characters, never half a character', () => {
    const lines = Array.from({ length: MAX_LINES + 50 }, (_, i) => `value_${i} = ${i}`);
    assert.deepEqual(copied([lines.join('\n')])?.split('\n'), lines.slice(0, MAX_LINES));
    const minified = 'x'.repeat(MAX_CHARS - 1) + '😀' + 'y'.repeat(100);
    assert.equal(copied([minified]), 'x'.repeat(MAX_CHARS - 1));
  });

  it('is the method the daemon lists', () => {
    assert.equal(DID_COPY, 'mlxd/didCopy');
  });
});
