"""Fill-in-the-middle prompt templates, detected from a tokenizer's special tokens.

Formats as the model families were trained on them (checked against the model cards and the
templates llama.cpp, Continue and Tabby use):

- StarCoder / StarCoder2:  <fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>
- Qwen2.5-Coder:           <|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>
- CodeGemma:               same tokens as Qwen, ends with <|file_separator|>
- DeepSeek-Coder:          <｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>
  (U+FF5C FULLWIDTH VERTICAL LINE and U+2581 LOWER ONE EIGHTH BLOCK, not ASCII)
- CodeLlama:               <PRE> {prefix} <SUF>{suffix} <MID>
  The vocabulary holds "▁<PRE>", "▁<SUF>", "▁<MID>"; the spaces in the string are what the
  SentencePiece normalizer turns into those "▁" so the text tokenizes onto the special ids,
  and the space after <PRE> is the dummy prefix Meta's reference encoder puts on the prefix.
- Codestral:               [SUFFIX]{suffix}[PREFIX]{prefix}   (suffix first, no middle token)

BOS is not written here: the tokenizer adds it when it encodes the prompt.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

from .context import CursorContext
from .snippets import Snippet
from .trimming import TokenCounter, approx_tokens, trim


@dataclass(frozen=True, slots=True)
class FimTemplate:
    name: str
    prefix_tok: str
    suffix_tok: str
    middle_tok: str  # "" when the format has none (Codestral)
    # Tokens that end the middle; the backend stops on them (as token names or stop strings).
    eot_tokens: list[str] = field(default_factory=list)
    suffix_first: bool = False
    # Literal text the format wants around the pieces (CodeLlama's spaces).
    after_prefix_tok: str = ""
    before_suffix_tok: str = ""
    before_middle_tok: str = ""
    # Vocabulary entries that identify the family, when they differ from the text above.
    markers: tuple[str, ...] = ()

    def format(self, prefix: str, suffix: str) -> str:
        """The prompt for a (prefix, suffix) pair; generation continues with the middle."""
        p = f"{self.prefix_tok}{self.after_prefix_tok}{prefix}"
        s = f"{self.before_suffix_tok}{self.suffix_tok}{suffix}"
        m = f"{self.before_middle_tok}{self.middle_tok}"
        return f"{s}{p}" if self.suffix_first else f"{p}{s}{m}"


STARCODER = FimTemplate(
    name="starcoder",
    prefix_tok="<fim_prefix>",
    suffix_tok="<fim_suffix>",
    middle_tok="<fim_middle>",
    eot_tokens=["<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"],
)
QWEN_CODER = FimTemplate(
    name="qwen2.5-coder",
    prefix_tok="<|fim_prefix|>",
    suffix_tok="<|fim_suffix|>",
    middle_tok="<|fim_middle|>",
    eot_tokens=[
        "<|endoftext|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|file_sep|>",
        "<|im_end|>",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
    ],
)
CODEGEMMA = FimTemplate(
    name="codegemma",
    prefix_tok="<|fim_prefix|>",
    suffix_tok="<|fim_suffix|>",
    middle_tok="<|fim_middle|>",
    eot_tokens=["<|file_separator|>", "<eos>", "<end_of_turn>", "<|fim_prefix|>"],
)
DEEPSEEK_CODER = FimTemplate(
    name="deepseek-coder",
    prefix_tok="<\uff5cfim\u2581begin\uff5c>",
    suffix_tok="<\uff5cfim\u2581hole\uff5c>",
    middle_tok="<\uff5cfim\u2581end\uff5c>",
    eot_tokens=["<\uff5cend\u2581of\u2581sentence\uff5c>", "<|EOT|>"],
)
CODELLAMA = FimTemplate(
    name="codellama",
    prefix_tok="<PRE>",
    suffix_tok="<SUF>",
    middle_tok="<MID>",
    eot_tokens=["<EOT>", "\u2581<EOT>", "</s>"],
    after_prefix_tok=" ",
    before_suffix_tok=" ",
    before_middle_tok=" ",
    markers=("\u2581<PRE>", "\u2581<SUF>", "\u2581<MID>"),
)
CODESTRAL = FimTemplate(
    name="codestral",
    prefix_tok="[PREFIX]",
    suffix_tok="[SUFFIX]",
    middle_tok="",
    eot_tokens=["</s>", "[PREFIX]", "[SUFFIX]", "[MIDDLE]"],
    suffix_first=True,
)

TEMPLATES: dict[str, FimTemplate] = {
    t.name: t for t in (STARCODER, QWEN_CODER, CODEGEMMA, DEEPSEEK_CODER, CODELLAMA, CODESTRAL)
}


def by_name(name: str) -> FimTemplate | None:
    """A template by family name (a config override when detection guesses wrong)."""
    return TEMPLATES.get(name.lower())


def _has_all(tokens: set[str], *names: str) -> bool:
    return all(n in tokens for n in names)


def detect(vocab_or_special_tokens: Iterable[str]) -> FimTemplate | None:
    """The FIM template a tokenizer was trained with, from its (special) token strings.

    Accepts the whole vocabulary (e.g. `tokenizer.get_vocab()`) or just the added/special
    tokens. Build it once per loaded model: a 150k vocabulary takes milliseconds to scan.
    Only tokens are seen: a general model that shares a coder's tokenizer (e.g. Qwen2.5
    base) is detected as FIM-capable; `by_name` overrides.
    """
    tokens = set(vocab_or_special_tokens)
    if _has_all(tokens, "[PREFIX]", "[SUFFIX]"):
        return CODESTRAL
    if _has_all(tokens, DEEPSEEK_CODER.prefix_tok, DEEPSEEK_CODER.suffix_tok):
        return DEEPSEEK_CODER
    if _has_all(tokens, QWEN_CODER.prefix_tok, QWEN_CODER.suffix_tok, QWEN_CODER.middle_tok):
        return CODEGEMMA if "<|file_separator|>" in tokens else QWEN_CODER
    if _has_all(tokens, STARCODER.prefix_tok, STARCODER.suffix_tok, STARCODER.middle_tok):
        return STARCODER
    if _has_all(tokens, *CODELLAMA.markers) or _has_all(tokens, "<PRE>", "<SUF>", "<MID>"):
        return CODELLAMA
    return None


# --- header: file name and neighbour snippets as comments ---------------------------------
_HASH = ("#", "")
_SLASH = ("//", "")
_DASH = ("--", "")
_COMMENTS: dict[str, tuple[str, str]] = {
    **dict.fromkeys(
        "python ruby shellscript perl r yaml toml dockerfile makefile powershell elixir julia "
        "nim coffeescript cmake graphql properties ini terraform".split(),
        _HASH,
    ),
    **dict.fromkeys(
        "c cpp csharp java javascript javascriptreact typescript typescriptreact go rust swift "
        "kotlin scala dart php objective-c objective-cpp zig jsonc groovy proto fsharp "
        "cuda-cpp glsl hlsl solidity".split(),
        _SLASH,
    ),
    **dict.fromkeys("lua sql haskell elm ada".split(), _DASH),
    **dict.fromkeys("clojure lisp scheme racket".split(), (";", "")),
    **dict.fromkeys("erlang latex tex matlab".split(), ("%", "")),
    "vim": ('"', ""),
    "bat": ("REM", ""),
    "ocaml": ("(*", " *)"),
    **dict.fromkeys("css scss less".split(), ("/*", " */")),
    **dict.fromkeys("html xml markdown vue svelte".split(), ("<!--", " -->")),
}


def comment_line(text: str, language: str) -> str | None:
    """`text` as one line comment in `language`, or None when its syntax is unknown."""
    syntax = _COMMENTS.get(language)
    if syntax is None:
        return None
    start, end = syntax
    return f"{start} {text}{end}".rstrip() + "\n"


def display_path(uri: str, root: str | None = None) -> str:
    """A short path for the header: relative to `root` when inside it, else the last two parts."""
    parsed = urlparse(uri)
    path = PurePosixPath(unquote(parsed.path) if parsed.scheme else uri)
    if root:
        root_path = PurePosixPath(unquote(urlparse(root).path) if "://" in root else root)
        if path.is_relative_to(root_path) and path != root_path:
            return str(path.relative_to(root_path))
    return "/".join(path.parts[-2:]).lstrip("/")


def file_header(uri: str, language: str, root: str | None = None) -> str:
    """`# path: src/app.py` in the language's comment syntax ("" when unknown).

    Code models were trained on files that often start like this; the path tells the model
    the language and the project's naming.
    """
    if not uri:
        return ""
    return comment_line(f"path: {display_path(uri, root)}", language) or ""


def format_snippets(snippets: Iterable[Snippet], language: str, root: str | None = None) -> str:
    """Neighbour snippets as comment blocks ("Compare this snippet from ..."), "" if unknown."""
    out: list[str] = []
    for snippet in snippets:
        head = comment_line(
            f"Compare this snippet from {display_path(snippet.uri, root)}:", language
        )
        if head is None:
            return ""
        out.append(head)
        for line in snippet.text.splitlines():
            out.append(comment_line(line, language) or "")
    return "".join(out)


# --- prompts ------------------------------------------------------------------------------
def build_prompt(template: FimTemplate | None, prefix: str, suffix: str, header: str = "") -> str:
    """The prompt string: FIM when the model has a template, else a plain continuation.

    Without FIM (e.g. the embedded SmolLM2) the suffix cannot be shown to the model; the
    post-processor still uses it to cut the output.
    """
    if template is None:
        return header + prefix
    return template.format(header + prefix, suffix)


def _clip_header(header: str, budget: int, count: TokenCounter) -> str:
    """Drop the header's first lines until it fits; the path line comes last and stays longest."""
    lines = header.splitlines(keepends=True)
    if not lines or count(header) <= budget:
        return header
    # Each line measured once (measuring the rest after each drop was quadratic: minutes for a
    # large header under a workspace's big budget); the sum of the lines' counts stands for the
    # count of their text, checked once at the end (a merge across a line end is rare).
    start, used = len(lines), 0
    while start > 0 and used + (cost := count(lines[start - 1])) <= budget:
        start, used = start - 1, used + cost
    while start < len(lines) and count("".join(lines[start:])) > budget:
        start += 1
    return "".join(lines[start:])


def prompt_for_local(
    tokenizer_special_tokens: Iterable[str] | FimTemplate | None,
    count_tokens: TokenCounter | None,
    ctx: CursorContext,
    budget_tokens: int,
    header: str | None = None,
) -> str:
    """The prompt a local model gets for an inline request, measured with its own tokenizer.

    `tokenizer_special_tokens` may be the tokens (detected here) or an already detected
    template (or None: no FIM). `header` defaults to `ctx.header`; it may take at most a
    quarter of the budget, the rest goes to prefix and suffix (see context.trim).
    """
    if isinstance(tokenizer_special_tokens, FimTemplate) or tokenizer_special_tokens is None:
        template = tokenizer_special_tokens
    else:
        template = detect(tokenizer_special_tokens)
    head = ctx.header if header is None else header
    return trimmed_prompt(template, count_tokens, ctx.prefix, ctx.suffix, head, budget_tokens)


def trimmed_prompt(
    template: FimTemplate | None,
    count_tokens: TokenCounter | None,
    prefix: str,
    suffix: str,
    header: str,
    budget_tokens: int,
) -> str:
    """The prompt for text around the cursor, trimmed to `budget_tokens` as counted by
    `count_tokens` (see `fit_window`). No cursor context is built: the pieces are used as given."""
    window = fit_window(count_tokens, prefix, suffix, header, budget_tokens, template is not None)
    return window.render(template)


@dataclass(slots=True)
class Window:
    """The text around the cursor cut to a token budget: what a backend's prompt holds.

    `count` remembers each text it measured, so `narrowed` cuts a smaller window out of this
    one without tokenizing its lines again (a local model's time cap may allow less)."""

    header: str
    prefix: str
    suffix: str
    count: TokenCounter

    def render(self, template: FimTemplate | None) -> str:
        """The prompt string in `template`'s format (None: a plain continuation)."""
        return build_prompt(template, self.prefix, self.suffix, self.header)

    def narrowed(self, budget_tokens: int) -> Window:
        """The window for a smaller budget, cut from this one (not counted as a trim). Its
        header is this one's, whole: cut part-way, the prompt would open with text the KV cache
        does not hold, and with part of a snippet (`without_snippets` drops them all). The code
        gets the rest of the budget (none when the header alone fills it)."""
        rest = budget_tokens - (self.count(self.header) if self.header else 0)
        prefix, suffix = trim(self.prefix, self.suffix, rest, self.count, narrowing=True)
        return Window(self.header, prefix, suffix, self.count)

    def without_snippets(self) -> Window:
        """This window with its header's last line only (the file path, `file_header`): the
        neighbour snippets (`format_snippets`) before it dropped."""
        lines = self.header.splitlines(keepends=True)
        return Window("".join(lines[-1:]), self.prefix, self.suffix, self.count)


def fit_window(
    count_tokens: TokenCounter | None,
    prefix: str,
    suffix: str,
    header: str,
    budget_tokens: int,
    fim: bool = True,
) -> Window:
    """The one trim of a request's text: the header takes at most a quarter of `budget_tokens`
    (its first lines go first), prefix and suffix the rest (trimming.trim; no suffix without
    `fim`). Counted as `inline.trims`. `count_tokens` (default approx_tokens): a local model's
    tokenizer, or `loose_tokens` for a provider."""
    count = functools.lru_cache(maxsize=4096)(count_tokens or approx_tokens)
    return _cut(count, prefix, suffix if fim else "", header, budget_tokens, False)


def _cut(
    count: TokenCounter, prefix: str, suffix: str, header: str, budget: int, narrowing: bool
) -> Window:
    head = _clip_header(header, budget // 4, count)
    rest = budget - (count(head) if head else 0)
    prefix, suffix = trim(prefix, suffix, rest, count, narrowing=narrowing)
    return Window(head, prefix, suffix, count)
