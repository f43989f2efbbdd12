// The cursor reports (`mlxd/didMoveCursor`): debounce, dedupe, the switches; timers are node's
// mock timers, so the order of events is exact and nothing waits on a clock.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { advertises, CURSOR_REST_MS, CursorReporter, DID_MOVE_CURSOR } from '../src/cursor';
import { inlineWantedIn } from '../src/inline';
import type { CursorParams } from '../src/protocol';

interface Doc {
  uri: string;
  on: boolean;
}

function reporter() {
  const sent: CursorParams[] = [];
  const r = new CursorReporter<Doc>({ wanted: (d) => d.on, uri: (d) => d.uri, send: (p) => sent.push(p) });
  return { r, sent };
}

const at = (line: number, character: number) => ({ line, character });
const sentAt = (sent: CursorParams[]) => sent.map((p) => [p.textDocument.uri, p.position.line, p.position.character]);

describe('cursor reports', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  it('sends one notification for a burst of moves, where the cursor came to rest', () => {
    const { r, sent } = reporter();
    const a = { uri: 'file:///a.py', on: true };
    for (let i = 0; i < 5; i++) {
      r.moved(a, at(i, 2 * i));
      mock.timers.tick(CURSOR_REST_MS - 1); // each move within the rest time of the last
    }
    assert.deepEqual(sent, []);
    mock.timers.tick(1);
    assert.deepEqual(sentAt(sent), [['file:///a.py', 4, 8]]);
    mock.timers.tick(10 * CURSOR_REST_MS);
    assert.equal(sent.length, 1);
  });

  it('does not send a rest at the position last sent for that document', () => {
    const { r, sent } = reporter();
    const a = { uri: 'file:///a.py', on: true };
    const b = { uri: 'file:///b.py', on: true };
    r.moved(a, at(3, 1));
    mock.timers.tick(CURSOR_REST_MS);
    r.moved(a, at(4, 1)); // away and back within the rest time
    r.moved(a, at(3, 1));
    mock.timers.tick(CURSOR_REST_MS);
    r.moved(b, at(3, 1)); // the same position in another document is news
    mock.timers.tick(CURSOR_REST_MS);
    r.moved(a, at(3, 2));
    mock.timers.tick(CURSOR_REST_MS);
    assert.deepEqual(sentAt(sent), [
      ['file:///a.py', 3, 1],
      ['file:///b.py', 3, 1],
      ['file:///a.py', 3, 2],
    ]);
  });

  it('sends nothing while ghost text is off for the document, asked when the cursor rests', () => {
    const { r, sent } = reporter();
    const a = { uri: 'file:///a.py', on: false };
    r.moved(a, at(1, 1));
    mock.timers.tick(CURSOR_REST_MS);
    assert.deepEqual(sent, []);
    r.moved(a, at(2, 2));
    a.on = true; // turned on before the rest: the rest is sent
    mock.timers.tick(CURSOR_REST_MS);
    r.moved(a, at(1, 1));
    a.on = false; // turned off before the rest: nothing
    mock.timers.tick(CURSOR_REST_MS);
    a.on = true;
    r.moved(a, at(1, 1)); // not sent before, so sent now
    mock.timers.tick(CURSOR_REST_MS);
    assert.deepEqual(sentAt(sent), [
      ['file:///a.py', 2, 2],
      ['file:///a.py', 1, 1],
    ]);
  });

  it('sends the same position again to a new session and for a reopened document', () => {
    const { r, sent } = reporter();
    const a = { uri: 'file:///a.py', on: true };
    r.moved(a, at(1, 1));
    mock.timers.tick(CURSOR_REST_MS);
    r.reset();
    r.moved(a, at(1, 1));
    mock.timers.tick(CURSOR_REST_MS);
    r.closed(a);
    r.moved(a, at(1, 1));
    mock.timers.tick(CURSOR_REST_MS);
    assert.equal(sent.length, 3);
  });

  it('sends nothing pending after dispose', () => {
    const { r, sent } = reporter();
    r.moved({ uri: 'file:///a.py', on: true }, at(1, 1));
    r.dispose();
    mock.timers.tick(10 * CURSOR_REST_MS);
    assert.deepEqual(sent, []);
  });
});

describe('advertises', () => {
  it('reads capabilities.experimental.mlxd.methods', () => {
    const caps = (methods: unknown) => ({ experimental: { mlxd: { version: '1', methods } } });
    assert.equal(advertises(caps(['mlxd/chat', DID_MOVE_CURSOR]), DID_MOVE_CURSOR), true);
    assert.equal(advertises(caps(['mlxd/chat', 'mlxd/stats']), DID_MOVE_CURSOR), false); // an older daemon
    assert.equal(advertises(caps('mlxd/didMoveCursor'), DID_MOVE_CURSOR), false);
    assert.equal(advertises({ experimental: {} }, DID_MOVE_CURSOR), false);
    assert.equal(advertises({}, DID_MOVE_CURSOR), false);
    assert.equal(advertises(undefined, DID_MOVE_CURSOR), false);
  });
});

describe('inlineWantedIn', () => {
  const doc = (languageId: string, uri = 'file:///w/a.py') => ({ languageId, uri: { toString: () => uri } });
  const on = { inlineEnable: true, inlineLanguages: { '*': true, markdown: false } };
  it('follows the switch, the languages and the settings-file rule', () => {
    assert.equal(inlineWantedIn(doc('python'), on), true);
    assert.equal(inlineWantedIn(doc('python'), { ...on, inlineEnable: false }), false);
    assert.equal(inlineWantedIn(doc('markdown', 'file:///w/a.md'), on), false);
    assert.equal(inlineWantedIn(doc('jsonc', 'file:///w/.vscode/settings.json'), on), false);
    assert.equal(inlineWantedIn(doc('jsonc', 'file:///w/.vscode/settings.json'), { ...on, inlineLanguages: { jsonc: true } }), true);
  });
});
