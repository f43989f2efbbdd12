// The chat webview's script (bundled for the browser). It only renders: the extension owns the
// conversation and the daemon connection. Every answer is re-rendered from its full text on each
// delta, through the escaping Markdown renderer, so partial Markdown never leaks raw HTML.

import { renderMarkdown } from '../markdown';
import type { FromWebview, ToWebview } from './messages';

declare function acquireVsCodeApi(): { postMessage(m: FromWebview): void };

const vscode = acquireVsCodeApi();
const messages = document.getElementById('messages') as HTMLDivElement;
const form = document.getElementById('ask') as HTMLFormElement;
const prompt = document.getElementById('prompt') as HTMLTextAreaElement;
const send = document.getElementById('send') as HTMLButtonElement;
const stop = document.getElementById('stop') as HTMLButtonElement;
const newChat = document.getElementById('new') as HTMLButtonElement;

interface Answer {
  el: HTMLDivElement;
  body: HTMLDivElement;
  meta: HTMLDivElement;
  text: string;
}

const answers = new Map<number, Answer>();
/** Questions typed here, by qid, until the extension has taken them ('received', then 'user'). */
const typed = new Map<number, HTMLDivElement>();
let nextQid = 1;

function setBusy(b: boolean): void {
  // Send stays enabled: a question typed while an answer streams is queued by the extension.
  stop.disabled = !b;
}

function scrollToEnd(): void {
  messages.scrollTop = messages.scrollHeight;
}

function addUser(content: string, label?: string, state = 'sent'): HTMLDivElement {
  const el = document.createElement('div');
  el.className = 'msg user';
  el.dataset.state = state;
  const body = document.createElement('div');
  body.className = 'body';
  // Long context prompts (a whole file) show as their label; the text is still the request.
  body.textContent = label ?? content;
  el.appendChild(body);
  messages.appendChild(el);
  scrollToEnd();
  return el;
}

function startAnswer(id: number): void {
  const el = document.createElement('div');
  el.className = 'msg assistant';
  el.dataset.id = String(id);
  el.dataset.state = 'streaming';
  const body = document.createElement('div');
  body.className = 'body markdown';
  const meta = document.createElement('div');
  meta.className = 'meta';
  meta.textContent = '…';
  el.append(body, meta);
  messages.appendChild(el);
  answers.set(id, { el, body, meta, text: '' });
  setBusy(true);
  scrollToEnd();
}

function render(a: Answer): void {
  a.body.innerHTML = renderMarkdown(a.text);
}

function onMessage(m: ToWebview): void {
  switch (m.type) {
    case 'user': {
      const el = m.qid === undefined ? undefined : typed.get(m.qid);
      if (el) {
        // Shown since it was typed; it moves below the answers that were queued before it.
        el.dataset.state = 'sent';
        typed.delete(m.qid as number);
        messages.appendChild(el);
      } else {
        addUser(m.content, m.label);
      }
      break;
    }
    case 'received': {
      const el = typed.get(m.qid);
      if (el) el.dataset.state = 'queued';
      break;
    }
    case 'start':
      startAnswer(m.id);
      break;
    case 'delta': {
      const a = answers.get(m.id);
      if (!a) return;
      a.text += m.delta;
      a.meta.textContent = m.backend ? `${m.backend} …` : '…';
      render(a);
      scrollToEnd();
      break;
    }
    case 'done': {
      const a = answers.get(m.id);
      if (!a) return;
      a.text = m.text;
      render(a);
      a.el.dataset.state = 'done';
      a.el.dataset.backend = m.backend;
      const parts = [`${m.backend} · ${m.model}`, `${m.completionTokens} tokens`, `first token ${Math.round(m.firstTokenMs)} ms`];
      if (m.finishReason === 'length') parts.push('cut at max tokens');
      a.meta.textContent = parts.join(' · ');
      if (m.reasoning) {
        // Reasoning is shown folded, apart from the answer.
        const details = document.createElement('details');
        details.className = 'reasoning';
        const summary = document.createElement('summary');
        summary.textContent = 'reasoning';
        const body = document.createElement('pre');
        body.textContent = m.reasoning;
        details.append(summary, body);
        a.meta.appendChild(details);
      }
      if (m.attempts.length > 0) {
        const fb = document.createElement('div');
        fb.className = 'fallback';
        fb.textContent = `fallback: ${m.attempts.map((x) => `${x.backend} (${x.error})`).join(', ')}`;
        a.meta.appendChild(fb);
      }
      setBusy(false);
      scrollToEnd();
      break;
    }
    case 'error': {
      const a = answers.get(m.id);
      if (a) {
        a.el.dataset.state = 'error';
        a.meta.textContent = `error: ${m.message}`;
      }
      setBusy(false);
      break;
    }
    case 'cancelled': {
      const a = answers.get(m.id);
      if (a) {
        a.el.dataset.state = 'cancelled';
        a.meta.textContent = 'stopped';
      }
      setBusy(false);
      break;
    }
    case 'clear':
      messages.replaceChildren();
      answers.clear();
      typed.clear();
      setBusy(false);
      break;
    case 'copied':
      break;
  }
}

window.addEventListener('message', (e: MessageEvent) => onMessage(e.data as ToWebview));

form.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = prompt.value;
  if (text.trim() === '') return;
  prompt.value = '';
  // On screen at once, marked "sending" until the extension acknowledges it: a question is never
  // silently dropped (it used to be when typed while an answer was streaming).
  const qid = nextQid++;
  typed.set(qid, addUser(text, undefined, 'sending'));
  vscode.postMessage({ type: 'ask', prompt: text, qid });
});

prompt.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    form.requestSubmit();
  }
});

stop.addEventListener('click', () => vscode.postMessage({ type: 'stop' }));
newChat.addEventListener('click', () => vscode.postMessage({ type: 'new' }));

// Code block buttons (rendered by markdown.ts) act on their block's text.
messages.addEventListener('click', (e) => {
  const button = (e.target as HTMLElement).closest('button[data-action]');
  if (!(button instanceof HTMLButtonElement)) return;
  const code = button.closest('.code-block')?.querySelector('pre code')?.textContent ?? '';
  const action = button.dataset.action;
  if (action === 'copy') {
    vscode.postMessage({ type: 'copy', code });
    button.textContent = 'Copied';
    setTimeout(() => {
      button.textContent = 'Copy';
    }, 1200);
  } else if (action === 'insert') {
    vscode.postMessage({ type: 'insert', code });
  }
});

// When VS Code gives the panel focus (Open Chat, its key, the view's title) the caret goes into
// the prompt box, unless something in the panel has it already: VS Code focuses the webview's
// document, not an element in it, and keys typed then went nowhere. A focus that lands late
// (a busy extension host runs Open Chat after the user clicked into the box and began typing)
// took the rest of the question and its Enter with it.
// Not for a click or a text selection in the panel: the pointer decides where focus goes.
let pointerDown = false;
function focusPrompt(): void {
  const active = document.activeElement;
  if (pointerDown) return;
  if (active === null || active === document.body || active === document.documentElement) prompt.focus();
}
window.addEventListener('pointerdown', () => { pointerDown = true; }, true);
window.addEventListener('pointerup', () => { pointerDown = false; }, true);
window.addEventListener('blur', () => { pointerDown = false; });
window.addEventListener('focus', focusPrompt);
if (document.hasFocus()) focusPrompt();
// A key that reaches the panel before the focus event (a busy extension host) goes to the
// document: a character typed then belongs in the prompt box, not nowhere.
document.addEventListener('keydown', (e) => {
  const active = document.activeElement;
  if (active !== null && active !== document.body && active !== document.documentElement) return;
  if (e.key.length !== 1 || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
  e.preventDefault();
  prompt.focus();
  prompt.setRangeText(e.key, prompt.selectionStart, prompt.selectionEnd, 'end');
  prompt.dispatchEvent(new Event('input', { bubbles: true }));
});

vscode.postMessage({ type: 'ready' });
