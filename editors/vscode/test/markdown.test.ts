import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { codeBlocks, escapeHtml, renderInline, renderMarkdown } from '../src/markdown';

/** Every tag name in the output; the renderer may only produce these. */
const ALLOWED = new Set(['p', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'blockquote', 'ul', 'ol', 'li', 'div', 'span', 'button', 'pre', 'code', 'strong', 'em', 'del', 'a', 'br']);
function tags(html: string): string[] {
  return [...html.matchAll(/<\/?([a-zA-Z0-9]+)/g)].map((m) => (m[1] ?? '').toLowerCase());
}

describe('markdown: escaping', () => {
  it('escapes the five HTML metacharacters', () => {
    assert.equal(escapeHtml(`<a href="x" title='y'>&</a>`), '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
  });

  it('never passes raw HTML through, in text, headings, lists, quotes or code', () => {
    const evil = [
      '<script>alert(1)</script>',
      '# <img src=x onerror=alert(1)>',
      '- <iframe src="https://evil.example"></iframe>',
      '> <style>body{}</style>',
      '```html\n<script>x()</script>\n```',
      '`<b>code</b>`',
      '**<svg onload=alert(1)>**',
    ].join('\n\n');
    const html = renderMarkdown(evil);
    for (const t of tags(html)) assert.ok(ALLOWED.has(t), `unexpected tag <${t}> in ${html}`);
    assert.ok(!/<(script|img|iframe|style|svg)/i.test(html));
    assert.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  });

  it('makes anchors only for http(s) links, with the URL escaped', () => {
    const html = renderInline('[ok](https://example.com/?a=1&b="2") [bad](javascript:alert(1)) [data](data:text/html,x)');
    assert.match(html, /<a href="https:\/\/example\.com\/\?a=1&amp;b=&quot;2&quot;"/);
    assert.ok(!html.includes('javascript:alert(1)"'));
    assert.ok(!/href="(javascript|data):/.test(html));
    assert.ok(html.includes('bad') && html.includes('data'));
  });

  it('attributes cannot be broken out of via the code fence language', () => {
    const html = renderMarkdown('```py"onmouseover="x\nprint(1)\n```');
    assert.ok(!html.includes('onmouseover="x'), html);
  });

  it('placeholder markers in the input do not leak other spans', () => {
    const html = renderInline('a \u00000\u0000 `x`');
    assert.ok(!html.includes('\u0000'));
  });
});

describe('markdown: structure', () => {
  it('renders paragraphs, headings, emphasis, inline code and rules', () => {
    const html = renderMarkdown('# Title\n\nSome **bold**, *it*, _it2_, ~~old~~ and `a < b`.\n\n---\n\nEnd');
    assert.equal(
      html,
      '<h1>Title</h1><p>Some <strong>bold</strong>, <em>it</em>, <em>it2</em>, <del>old</del> and <code>a &lt; b</code>.</p><hr><p>End</p>',
    );
  });

  it('leaves snake_case and arithmetic alone', () => {
    assert.equal(renderInline('use snake_case_name and 2*3*4'), 'use snake_case_name and 2*3*4');
  });

  it('renders fenced code blocks with copy and insert buttons, code escaped verbatim', () => {
    const html = renderMarkdown('Try:\n\n```python\nif a < b:\n    print("**x**")\n```\nafter');
    assert.match(html, /<div class="code-block" data-index="0">/);
    assert.match(html, /<span class="code-lang">python<\/span>/);
    assert.match(html, /data-action="copy"/);
    assert.match(html, /data-action="insert"/);
    assert.match(html, /<pre><code class="language-python">if a &lt; b:\n    print\(&quot;\*\*x\*\*&quot;\)<\/code><\/pre>/);
    assert.match(html, /<p>after<\/p>$/);
  });

  it('renders an unterminated fence (still streaming) as an open code block', () => {
    const html = renderMarkdown('```js\nconst x = 1;');
    assert.match(html, /class="code-block streaming"/);
    assert.match(html, /const x = 1;<\/code><\/pre>/);
  });

  it('an empty code block (an answer stopped right after its fence) has no Copy / Insert', () => {
    for (const src of ['Here:\n```python', 'Here:\n```python\n', 'Here:\n```\n  \n```\nthen']) {
      const html = renderMarkdown(src);
      assert.match(html, /class="code-block[^"]* empty" data-index="0"/, src);
      assert.doesNotMatch(html, /data-action=/, src);
    }
    // It still counts, so the blocks after it keep the index codeBlocks() gives them.
    const src = '```\n```\nthen\n```\nx = 1\n```';
    assert.match(renderMarkdown(src), /data-index="1"><div class="code-actions"><span class="code-lang"><\/span><button/);
    assert.deepEqual(codeBlocks(src), ['', 'x = 1']);
  });

  it('numbers code blocks in order and extracts their text', () => {
    const src = 'a\n```\none\n```\nb\n~~~sh\ntwo\n  three\n~~~\n';
    const html = renderMarkdown(src);
    assert.match(html, /data-index="0"[\s\S]*data-index="1"/);
    assert.deepEqual(codeBlocks(src), ['one', 'two\n  three']);
  });

  it('a longer fence is not closed by a shorter one', () => {
    assert.deepEqual(codeBlocks('````md\n```\ninner\n```\n````'), ['```\ninner\n```']);
  });

  it('renders bullet and ordered lists, tight items unwrapped, with nesting', () => {
    assert.equal(renderMarkdown('- one\n- two'), '<ul><li>one</li><li>two</li></ul>');
    assert.equal(renderMarkdown('3. c\n4. d'), '<ol start="3"><li>c</li><li>d</li></ol>');
    const nested = renderMarkdown('- a\n  - b\n  - c\n- d');
    assert.equal(nested, '<ul><li><p>a</p><ul><li>b</li><li>c</li></ul></li><li>d</li></ul>');
  });

  it('renders blockquotes recursively', () => {
    assert.equal(renderMarkdown('> quoted *x*\n> more'), '<blockquote><p>quoted <em>x</em>\nmore</p></blockquote>');
  });

  it('is total: any input renders without throwing and only allowed tags appear', () => {
    const alphabet = ['<', '>', '&', '"', "'", '`', '*', '_', '#', '-', '[', ']', '(', ')', '\n', ' ', 'a', '1', '.', '~', '>', 'http://x'];
    let seed = 42;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (let i = 0; i < 500; i++) {
      let s = '';
      const len = rand(60);
      for (let j = 0; j < len; j++) s += alphabet[rand(alphabet.length)];
      const html = renderMarkdown(s);
      for (const t of tags(html)) assert.ok(ALLOWED.has(t), `unexpected <${t}> from ${JSON.stringify(s)}`);
      // No raw '<' survives except as the start of a tag we wrote.
      assert.ok(!/<(?![a-z/])/i.test(html), `raw < in ${html} from ${JSON.stringify(s)}`);
    }
  });
});
