"""`bench open-files`: inline latency with six 1.6 MB files of the same language open vs none
(issue #17 item 4, goal <= 1.1x), through `mlxd serve` over stdio, in one daemon and one run.

Each request types a new line at the end of a small Python file (a new prompt: no inline-cache
hit) and asks for ghost text there (automatic trigger). Phases, in this order:
  none      no other file open
  six       six 1.6 MB Python files open (neighbour snippets on: indexed, looked up per request)
  six-off   the same, `inline.neighbor_snippets = false` (no snippet text in the prompt: what
            is left is the per-request cost of open documents themselves)
  none-2    the six closed again (drift over the run)
Answers are at most ANSWER_TOKENS tokens. On a slow machine use `--model tiny`: the embedded
model's answers there take the whole inline.max_ms (1.5 s) whatever is open, which hides the
cost of open files; the tiny model's answer is quick, so what open files add shows. Work ahead is off, so that no background warm-up of a big file competes with a request. The
ratio is six / mean(none, none-2); six-off tells a longer prompt (the snippets themselves) apart
from the cost of having the files open.
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
DEFAULT_REQUESTS = 8
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


async def _phase(daemon: Daemon, small: Small, name: str, n: int, verbose: bool) -> dict[str, Any]:
    """The phase's latency summary, and the prompt tokens a request took from the KV cache
    (mlxd/stats: a prompt whose opening changed takes none and is prefilled whole)."""
    times = []
    del small.answer_chars[:]
    before = await daemon.stats()
    for _ in range(n):
        times.append(await small.ask())
        if verbose:
            log(f"{name}: {times[-1]:.0f} ms")
    counters = stats_delta(before, await daemon.stats())
    cached = counters.get("local.cachedPromptTokens")
    prompt = counters.get("local.promptTokens")  # None: a daemon without the counter
    new = prompt - cached if prompt is not None and cached is not None else None
    chars = sum(small.answer_chars) / n
    return {
        **summary(times),
        "cached_tokens": cached and cached / n,
        "prefilled_tokens": new and new / n,  # what a request cost the model: load-independent
        "answer_chars": chars,
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
    inline = {"background": False, "max_tokens": ANSWER_TOKENS}
    cfg = local_config(opts.model, inline=inline)
    phases: dict[str, dict[str, Any]] = {}
    async with Daemon(cfg) as daemon:
        await daemon.wait_ready()
        small = Small(daemon)
        for _ in range(opts.warmup):
            await small.ask()
        phases["none"] = await _phase(daemon, small, "none", n, opts.verbose)
        _open(daemon, files)
        await daemon.stats()  # the opens are handled
        await small.ask()  # unmeasured: the first prompt with snippets is a new prompt
        phases["six"] = await _phase(daemon, small, "six", n, opts.verbose)
        await daemon.reconfigure({**cfg, "inline": {**cfg["inline"], "neighbor_snippets": False}})
        await small.ask()
        phases["six-off"] = await _phase(daemon, small, "six-off", n, opts.verbose)
        await daemon.reconfigure(cfg)
        _close(daemon, files)
        await small.ask()
        phases["none-2"] = await _phase(daemon, small, "none-2", n, opts.verbose)
    base = [phases["none"]["median"], phases["none-2"]["median"]]
    none_ms = sum(base) / 2 if None not in base else None
    six_ratio = ratio(phases["six"]["median"], none_ms)
    off_ratio = ratio(phases["six-off"]["median"], none_ms)
    base_new = [phases["none"]["prefilled_tokens"], phases["none-2"]["prefilled_tokens"]]
    none_new = sum(base_new) / 2 if None not in base_new else None
    six_new = ratio(phases["six"]["prefilled_tokens"], none_new)
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
        "open-files: ratios (median / mean of the two 'none' medians)",
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
        "params": {"model": opts.model, "files": FILES, "file_chars": FILE_CHARS, "requests": n},
        "phases": phases,
        "six_over_none": six_ratio,
        "six_snippets_off_over_none": off_ratio,
        "six_over_none_prefilled_tokens": six_new,
    }
    write_result("open-files", result)
    return result
