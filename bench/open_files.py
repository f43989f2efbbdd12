"""`bench open-files`: inline latency with six 1.6 MB files of the same language open vs none
(issue #17 item 4, goal <= 1.1x), through `mlxd serve` over stdio, in one daemon and one run.

Each request types a new line at the end of a small Python file (a new prompt: no inline-cache
hit) and asks for ghost text there (automatic trigger). ROUNDS rounds of three phases, so that
the document's growth and the machine's drift over the run fall on every phase alike:
  none      no other file open
  six       six 1.6 MB Python files open (neighbour snippets on: indexed, looked up per request)
  six-off   the same, `inline.neighbor_snippets = false` (no snippet text in the prompt: what
            is left is the per-request cost of open documents themselves)
and the six closed again. The user finishes each line before the next request (a file of
unfinished `result = ` lines taught the model that nothing follows them: every answer empty).
Answers are at most ANSWER_TOKENS tokens, shown as they arrived (`inline.whole_lines` off).
On a slow machine use `--model tiny`: the embedded model's answers there take the whole
inline.max_ms (1.5 s) whatever is open, which hides the cost of open files; the tiny model's
answer is quick, so what open files add shows. Work ahead is off, so that no background warm-up
of a big file competes with a request. The ratio is six / none (medians over the rounds);
six-off tells a longer prompt (the snippets themselves) apart from the cost of having the files
open.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .common import (
    Daemon,
    Options,
    fmt,
    local_config,
    log,
    model_label,
    print_table,
    ratio,
    stats_delta,
    summary,
    write_result,
)

FILES = 6
FILE_CHARS = 1_600_000
ROUNDS = 3
DEFAULT_REQUESTS = 4  # a phase's measured requests in each round
PHASES = ("none", "six", "six-off")
ANSWER_TOKENS = 8
SMALL = "file:///bench/open/app.py"
REPO = Path(__file__).resolve().parent.parent


def _sources() -> str:
    paths = sorted((REPO / "daemon" / "mlxd").rglob("*.py"))
    return "".join(p.read_text(encoding="utf-8") for p in paths)


def big_files(count: int = FILES, size: int = FILE_CHARS) -> list[tuple[str, str]]:
    """(uri, text): the daemon's own sources repeated to `size` characters, each file starting
    elsewhere in them (real code, not one file six times)."""
    src = _sources()
    out = []
    for i in range(count):
        start = src.find("\n", len(src) * i // count) + 1
        text = src[start:] + src[:start]
        text = (text * (size // len(text) + 1))[:size]
        out.append((f"file:///bench/open/big{i}.py", text[: text.rfind("\n") + 1]))
    return out


class Small:
    """The file being typed in: a new line at its end before each request."""

    def __init__(self, daemon: Daemon) -> None:
        self.client = daemon.client
        self.text = (REPO / "daemon/mlxd/router/core.py").read_text(encoding="utf-8")[:3000]
        self.text = self.text[: self.text.rfind("\n") + 1]
        self.version = 1
        self.n = 0
        self.answer_chars: list[int] = []  # of each answer's first item (0: none)
        self.client.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": SMALL,
                    "languageId": "python",
                    "version": 1,
                    "text": self.text,
                }
            },
        )

    async def ask(self) -> float:
        """ms from sending the request to its answer, at a new line's end."""
        if self.n:  # the line the last request was at, finished as a user would
            self.text += f"value_{self.n} * {self.n}\n    return result\n"
        self.n += 1
        self.text += f"\ndef handler_{self.n}(request, value_{self.n}):\n    result = "
        self.version += 1
        self.client.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": SMALL, "version": self.version},
                "contentChanges": [{"text": self.text}],
            },
        )
        lines = self.text.split("\n")
        params = {
            "textDocument": {"uri": SMALL},
            "position": {"line": len(lines) - 1, "character": len(lines[-1])},
            "context": {"triggerKind": 2},
        }
        t0 = time.perf_counter()
        result = await self.client.request("textDocument/inlineCompletion", params)
        items = result.get("items", []) if isinstance(result, dict) else (result or [])
        self.answer_chars.append(len(items[0]["insertText"]) if items else 0)
        return (time.perf_counter() - t0) * 1000


async def _phase(daemon: Daemon, small: Small, name: str, n: int, verbose: bool, acc: Any) -> None:
    """n requests of one phase, into its accumulator: latencies, answer lengths, and the prompt
    tokens they took from the KV cache (mlxd/stats: a prompt whose opening changed takes none
    and is prefilled whole)."""
    del small.answer_chars[:]
    before = await daemon.stats()
    for _ in range(n):
        acc["times"].append(await small.ask())
        if verbose:
            log(f"{name}: {acc['times'][-1]:.0f} ms")
    counters = stats_delta(before, await daemon.stats())
    acc["chars"] += small.answer_chars
    for key in ("cachedPromptTokens", "promptTokens"):  # absent: a daemon without the counter
        value = counters.get(f"local.{key}")
        acc[key] = None if value is None or acc.get(key, 0) is None else acc.get(key, 0) + value


def _summary(acc: Any) -> dict[str, Any]:
    n = len(acc["times"])
    cached, prompt = acc.get("cachedPromptTokens"), acc.get("promptTokens")
    return {
        **summary(acc["times"]),
        "cached_tokens": cached and cached / n,
        # what a request cost the model: load-independent
        "prefilled_tokens": None if cached is None or prompt is None else (prompt - cached) / n,
        "answer_chars": sum(acc["chars"]) / n,
    }


def _open(daemon: Daemon, files: list[tuple[str, str]]) -> None:
    for uri, text in files:
        doc = {"uri": uri, "languageId": "python", "version": 1, "text": text}
        daemon.client.notify("textDocument/didOpen", {"textDocument": doc})


def _close(daemon: Daemon, files: list[tuple[str, str]]) -> None:
    for uri, _ in files:
        daemon.client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})


async def run(opts: Options, info: dict[str, Any]) -> dict[str, Any]:
    n = opts.n(DEFAULT_REQUESTS)
    files = big_files()
    # A short answer: with the embedded model on 2 busy cores every answer takes inline.max_ms
    # whatever is open; `--model tiny` measures what open files add (the index, the listing).
    # whole_lines off: 8 tokens rarely end a line, and a cut line would be dropped (every
    # answer empty): what arrived is shown, so "answer chars" says the model answered.
    inline = {"background": False, "max_tokens": ANSWER_TOKENS, "whole_lines": False}
    cfg = local_config(opts.model, inline=inline)
    accs: dict[str, Any] = {name: {"times": [], "chars": []} for name in PHASES}
    async with Daemon(cfg) as daemon:
        await daemon.wait_ready()
        small = Small(daemon)
        for _ in range(opts.warmup):
            await small.ask()
        # Rounds of the three phases, so that the document's growth and the machine's drift
        # over the run fall on every phase alike.
        for _ in range(ROUNDS):
            await _phase(daemon, small, "none", n, opts.verbose, accs["none"])
            _open(daemon, files)
            await daemon.stats()  # the opens are handled
            await small.ask()  # unmeasured: the first prompt with snippets is a new prompt
            await _phase(daemon, small, "six", n, opts.verbose, accs["six"])
            off = {**cfg["inline"], "neighbor_snippets": False}
            await daemon.reconfigure({**cfg, "inline": off})
            await small.ask()
            await _phase(daemon, small, "six-off", n, opts.verbose, accs["six-off"])
            await daemon.reconfigure(cfg)
            _close(daemon, files)
            await small.ask()
    phases = {name: _summary(acc) for name, acc in accs.items()}
    none_ms = phases["none"]["median"]
    six_ratio = ratio(phases["six"]["median"], none_ms)
    off_ratio = ratio(phases["six-off"]["median"], none_ms)
    six_new = ratio(phases["six"]["prefilled_tokens"], phases["none"]["prefilled_tokens"])
    rows = [
        [
            name,
            st["n"],
            fmt(st["median"], digits=0),
            fmt(st.get("p95"), digits=0),
            fmt(st["cached_tokens"], digits=0),
            fmt(st["prefilled_tokens"], digits=0),
            fmt(st["answer_chars"], digits=0),
        ]
        for name, st in phases.items()
    ]
    print_table(
        f"open-files: {model_label(opts.model)}, inline latency (request -> answer) with "
        f"{FILES} Python files of {FILE_CHARS / 1e6:.1f} MB open vs none",
        [
            "phase",
            "requests",
            "median ms",
            "p95 ms",
            "KV-cached prompt tokens / request",
            "prefilled tokens / request",
            "answer chars",
        ],
        rows,
    )
    print_table(
        "open-files: ratios (medians over the rounds)",
        ["metric", "measured", "goal"],
        [
            ["six open / none", fmt(six_ratio, "x", 2), "<= 1.1x"],
            ["six open, snippets off / none", fmt(off_ratio, "x", 2), "(reported)"],
            ["six open / none, prefilled tokens", fmt(six_new, "x", 2), "(reported: load-free)"],
        ],
    )
    result = {
        "name": "open-files",
        "machine": info,
        "params": {
            "model": opts.model,
            "files": FILES,
            "file_chars": FILE_CHARS,
            "rounds": ROUNDS,
            "requests_per_round": n,
        },
        "phases": phases,
        "six_over_none": six_ratio,
        "six_snippets_off_over_none": off_ratio,
        "six_over_none_prefilled_tokens": six_new,
    }
    write_result("open-files", result)
    return result
