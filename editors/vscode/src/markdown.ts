// A small, safe Markdown renderer for chat answers (runs in the webview and in unit tests).
// Safety by construction: every piece of source text is HTML-escaped, raw HTML is never passed
// through, and the only tags and attributes in the output are the ones written below. Links
// become <a> only for http(s) URLs. An unterminated code fence (an answer still streaming) is
// rendered as an open code block, so the text does not jump when the fence closes.

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

const FENCE = /^ {0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$/;
const HR = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const LIST_ITEM = /^( *)([-*+]|\d{1,9}[.)])[ \t]+(.*)$/;

/** Renders Markdown source to an HTML string that is safe to assign to innerHTML. */
export function renderMarkdown(src: string): string {
  // NUL is the inline placeholder marker below; it has no business in chat text.
  const lines = src.replace(/\r\n?/g, '\n').replace(/\u0000/g, '\uFFFD').split('\n');
  const state = { codeIndex: 0 };
  return renderBlocks(lines, state);
}

interface RenderState {
  codeIndex: number;
}

function renderBlocks(lines: string[], st: RenderState): string {
  const out: string[] = [];
  let para: string[] = [];
  const flush = (): void => {
    if (para.length > 0) {
      out.push(`<p>${renderInline(para.join('\n'))}</p>`);
      para = [];
    }
  };
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] ?? '';
    const fence = FENCE.exec(line);
    if (fence) {
      flush();
      const marker = fence[1] ?? '```';
      const lang = (fence[2] ?? '').replace(/[^\w+#.-]/g, '');
      const body: string[] = [];
      let closed = false;
      i += 1;
      while (i < lines.length) {
        const l = lines[i] ?? '';
        const t = l.trim();
        if (t.length >= marker.length && t[0] === marker[0] && /^(`+|~+)$/.test(t)) {
          closed = true;
          i += 1;
          break;
        }
        body.push(l);
        i += 1;
      }
      out.push(codeBlock(body.join('\n'), lang, closed, st));
      continue;
    }
    if (line.trim() === '') {
      flush();
      i += 1;
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      flush();
      const level = (heading[1] ?? '#').length;
      out.push(`<h${level}>${renderInline(heading[2] ?? '')}</h${level}>`);
      i += 1;
      continue;
    }
    if (HR.test(line)) {
      flush();
      out.push('<hr>');
      i += 1;
      continue;
    }
    if (QUOTE.test(line)) {
      flush();
      const inner: string[] = [];
      while (i < lines.length) {
        const q = QUOTE.exec(lines[i] ?? '');
        if (!q) break;
        inner.push(q[1] ?? '');
        i += 1;
      }
      out.push(`<blockquote>${renderBlocks(inner, st)}</blockquote>`);
      continue;
    }
    if (LIST_ITEM.test(line)) {
      flush();
      i = renderList(lines, i, out, st);
      continue;
    }
    para.push(line);
    i += 1;
  }
  flush();
  return out.join('');
}

/** Renders the list starting at `start`; returns the index after it. */
function renderList(lines: string[], start: number, out: string[], st: RenderState): number {
  const first = LIST_ITEM.exec(lines[start] ?? '');
  if (!first) return start + 1;
  const indent = (first[1] ?? '').length;
  const ordered = /\d/.test(first[2] ?? '');
  const items: string[][] = [];
  let i = start;
  while (i < lines.length) {
    const line = lines[i] ?? '';
    const m = LIST_ITEM.exec(line);
    if (m && (m[1] ?? '').length === indent && /\d/.test(m[2] ?? '') === ordered) {
      items.push([m[3] ?? '']);
      i += 1;
      continue;
    }
    const current = items[items.length - 1];
    if (current === undefined) break;
    if (line.trim() === '') {
      // A blank line ends the list unless the next line continues it (indented or an item).
      const next = lines[i + 1] ?? '';
      const nm = LIST_ITEM.exec(next);
      const continues = (nm && (nm[1] ?? '').length >= indent) || /^\s{2,}\S/.test(next);
      if (!continues) break;
      current.push('');
      i += 1;
      continue;
    }
    const lead = line.length - line.trimStart().length;
    if (lead > indent) {
      // Continuation or nested block: strip the item's content indent.
      current.push(line.slice(Math.min(lead, indent + 2)));
      i += 1;
      continue;
    }
    if (m && (m[1] ?? '').length < indent) break;
    if (m || FENCE.test(line) || HEADING.test(line) || QUOTE.test(line) || HR.test(line)) break;
    current.push(line); // lazy continuation of the item's paragraph
    i += 1;
  }
  const tag = ordered ? 'ol' : 'ul';
  const startAttr = ordered ? orderedStart(first[2] ?? '1') : '';
  const body = items
    .map((item) => {
      const html = renderBlocks(item, st);
      // Tight items: unwrap a single paragraph.
      const tight = /^<p>([\s\S]*)<\/p>$/.exec(html);
      return `<li>${tight && !tight[1]?.includes('<p>') ? tight[1] : html}</li>`;
    })
    .join('');
  out.push(`<${tag}${startAttr}>${body}</${tag}>`);
  return i;
}

function orderedStart(marker: string): string {
  const n = Number.parseInt(marker, 10);
  return Number.isFinite(n) && n !== 1 ? ` start="${n}"` : '';
}

function codeBlock(code: string, lang: string, closed: boolean, st: RenderState): string {
  const index = st.codeIndex;
  st.codeIndex += 1;
  const langAttr = lang ? ` class="language-${escapeHtml(lang)}"` : '';
  const label = lang ? `<span class="code-lang">${escapeHtml(lang)}</span>` : '<span class="code-lang"></span>';
  // Nothing to copy or insert in a block with no code yet (an answer stopped right after its
  // fence opened): no buttons. The index still counts it, to match codeBlocks().
  const empty = code.trim() === '';
  const actions = empty
    ? ''
    : '<button type="button" class="code-copy" data-action="copy" title="Copy">Copy</button>' +
      '<button type="button" class="code-insert" data-action="insert" title="Insert at cursor">Insert</button>';
  return (
    `<div class="code-block${closed ? '' : ' streaming'}${empty ? ' empty' : ''}" data-index="${index}">` +
    `<div class="code-actions">${label}${actions}</div>` +
    `<pre><code${langAttr}>${escapeHtml(code)}</code></pre></div>`
  );
}

/** Extracts the code of every fenced block, in order (what Copy / Insert act on). */
export function codeBlocks(src: string): string[] {
  const lines = src.replace(/\r\n?/g, '\n').split('\n');
  const blocks: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const fence = FENCE.exec(lines[i] ?? '');
    if (!fence) {
      i += 1;
      continue;
    }
    const marker = fence[1] ?? '```';
    const body: string[] = [];
    i += 1;
    while (i < lines.length) {
      const t = (lines[i] ?? '').trim();
      if (t.length >= marker.length && t[0] === marker[0] && /^(`+|~+)$/.test(t)) {
        i += 1;
        break;
      }
      body.push(lines[i] ?? '');
      i += 1;
    }
    blocks.push(body.join('\n'));
  }
  return blocks;
}

/** Renders inline Markdown (code spans, links, emphasis) over escaped text. */
export function renderInline(text: string): string {
  const spans: string[] = [];
  const hold = (html: string): string => {
    spans.push(html);
    return `\u0000${spans.length - 1}\u0000`;
  };
  // Code spans first: their content is literal.
  let s = text.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (_m, _ticks: string, code: string) => {
    const trimmed = /^ .* $/.test(code) ? code.slice(1, -1) : code;
    return hold(`<code>${escapeHtml(trimmed)}</code>`);
  });
  s = escapeHtml(s);
  // Links: [text](url). Only http(s) targets become anchors; the URL is already escaped.
  s = s.replace(/\[([^\]\n]+)\]\(([^)\s]+)\)/g, (_m, label: string, url: string) => {
    if (/^https?:\/\//i.test(url)) {
      return hold(`<a href="${url}" title="${url}">${emphasis(label)}</a>`);
    }
    return label;
  });
  s = emphasis(s);
  s = s.replace(/ {2,}\n/g, '<br>');
  return s.replace(/\u0000(\d+)\u0000/g, (_m, n: string) => spans[Number(n)] ?? '');
}

function emphasis(s: string): string {
  return s
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, '<strong>$1</strong>')
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, '$1<strong>$2</strong>')
    .replace(/~~(?=\S)([\s\S]*?\S)~~/g, '<del>$1</del>')
    .replace(/(^|[^*\w])\*([^\s*](?:[^*\n]*?[^\s*])?)\*(?![*\w])/g, '$1<em>$2</em>')
    .replace(/(^|[^\w])_([^\s_](?:[^_\n]*?[^\s_])?)_(?!\w)/g, '$1<em>$2</em>');
}
