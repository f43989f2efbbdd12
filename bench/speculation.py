"""speculation: decode speed with and without prompt-lookup speculation, in the same run.

The real engine (ModelPool + LocalBackend, in-process: the LSP layer adds nothing to decode)
decodes each prompt greedily in PAIRS pairs of runs on one loaded model, one with
`local.speculative = "off"` and one with "auto", alternating which goes first. Three sets:
`holes`, the issue's code-continuation prompts: multi-line holes drawn as the quality bench
draws them (a block header in third-party Python, JavaScript and Lua; the document around it
sent as an inline request, INLINE_TOKENS tokens greedy, no time cap); `code`, long
continuations of real source files of the venv (aiohttp, mlx_lm) from the middle of a
function; `prose`, chat questions whose answers are free text. Reported: decode tok/s of each side, the geometric mean over
prompts of each prompt's median paired ratio (judged), the share of draft tokens accepted, and
whether the greedy texts are identical. Targets (issue 17): code prompts (holes and code)
>= 1.5x, prose >= 0.97x, identical text.
"""

from __future__ import annotations

import ast
import statistics
import time
from pathlib import Path
from typing import Any

from mlxd.config import InlineConfig

from .common import (
    Gen,
    Options,
    fmt,
    fmt_stat,
    log,
    model_label,
    print_table,
    ratio,
    settle,
    summary,
    verdict,
    write_result,
)

DEFAULT_RUNS = 6  # prompts of each kind
PAIRS = 3  # runs of each prompt with speculation off and on
DEFAULT_MAX_TOKENS = 96
CONTEXT_CHARS = 1800  # source text before the cut (about 500 tokens)
TARGET_CODE = 1.5
TARGET_PROSE = 0.97
HOLE_LANGUAGES = ("python", "javascript", "lua")
HOLES = 4  # multi-line holes per language, drawn as the quality bench draws them
INLINE_TOKENS = InlineConfig().max_tokens  # a hole's answer: an inline one
SOURCES = [
    ("aiohttp", "client.py"),
    ("mlx_lm", "generate.py"),
    ("aiohttp", "connector.py"),
    ("mlx_lm", "utils.py"),
    ("aiohttp", "web_response.py"),
    ("mlx_lm", "models/cache.py"),
]
QUESTIONS = [
    "Write a detailed, step-by-step guide to baking bread at home, with at least ten steps.",
    "Tell a long story about a lighthouse keeper who finds a message in a bottle.",
    "Explain to a child why the sky is blue and why sunsets are red, in several paragraphs.",
    "Describe a walk through a busy market in a small town on a summer morning.",
    "Write a letter to a friend about your first week in a new city.",
    "Explain the history of the printing press and how it changed Europe.",
]


def code_prompts(n: int, sources: list[tuple[str, str]] = SOURCES) -> list[tuple[str, str]]:
    """(label, text): each of the first `n` (package, file) sources cut at a line in the
    middle of its longest function body."""
    import importlib.util

    out = []
    for pkg, rel in sources[:n]:
        spec = importlib.util.find_spec(pkg)
        assert spec is not None and spec.origin is not None, pkg
        path = Path(spec.origin).parent / rel
        src = path.read_text()
        funcs = [
            f
            for f in ast.walk(ast.parse(src))
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) and f.end_lineno
        ]
        f = max(funcs, key=lambda f: f.end_lineno - f.lineno)  # type: ignore[operator]
        lines = src.splitlines(keepends=True)
        cut = (f.lineno + f.end_lineno) // 2  # type: ignore[operator]
        text = "".join(lines[:cut])[-CONTEXT_CHARS:]
        text = text[text.index("\n") + 1 :]  # start on a whole line
        out.append((f"{pkg}/{rel}:{cut + 1}", text))
    return out


def hole_requests(per_language: int) -> list[tuple[str, Any]]:
    """(label, inline Request) for `per_language` multi-line holes of each language, drawn as
    the quality bench draws its holes (its corpus and seed), with the document around the
    cursor as an editor sends it."""
    from mlxd.types import Request

    from .quality import make_holes

    out = []
    for language in HOLE_LANGUAGES:
        for h in make_holes(language, per_language):
            if h.kind != "multi":
                continue
            prefix, suffix = h.text[: h.offset], h.text[h.offset :]
            req = Request(
                kind="inline", prefix=prefix, suffix=suffix, language=h.language_id,
                max_tokens=INLINE_TOKENS, temperature=0.0,
            )  # fmt: skip
            out.append((f"hole {h.id}", req))
    return out


def prose_prompts(n: int) -> list[tuple[str, str]]:
    return [(f"chat: {q[:32]}...", q) for q in QUESTIONS[:n]]


async def _one(backend: Any, engine: Any, req: Any) -> tuple[Gen, int, int, int]:
    from mlxd.types import Delta

    drafted, accepted, steps = engine.spec.drafted, engine.spec.accepted, engine.spec.steps
    t0 = time.perf_counter()
    first, text, done = None, "", None
    async for ev in backend.stream(req):
        if isinstance(ev, Delta):
            first = first if first is not None else time.perf_counter() - t0
            text += ev.text
        else:
            done = ev
    assert done is not None
    gen = Gen(first, time.perf_counter() - t0, done.completion_tokens, done.prompt_tokens, text)
    spec = engine.spec
    return gen, spec.drafted - drafted, spec.accepted - accepted, spec.steps - steps


async def _case(backend: Any, engine: Any, req: Any, i: int) -> dict[str, Any]:
    """PAIRS runs of the prompt with speculation off and on, alternating which goes first: a
    pair's two runs are seconds apart, so its ratio is steadier than either tok/s on a
    shared machine."""
    runs: dict[str, list[tuple[Gen, int, int, int]]] = {"off": [], "auto": []}
    for pair in range(PAIRS):
        for mode in ("off", "auto") if (i + pair) % 2 == 0 else ("auto", "off"):
            engine.speculative = mode
            await settle()
            runs[mode].append(await _one(backend, engine, req))
    engine.speculative = "auto"
    plain = [g for g, *_ in runs["off"]]
    spec = [g for g, *_ in runs["auto"]]
    pairs = [ratio(s.decode_tps, p.decode_tps) for p, s in zip(plain, spec, strict=True)]
    ratios = [r for r in pairs if r is not None]  # None: an answer of fewer than 2 tokens
    return {
        "plain_tps": summary([g.decode_tps for g in plain if g.decode_tps])["median"],
        "spec_tps": summary([g.decode_tps for g in spec if g.decode_tps])["median"],
        "ratio": statistics.median(ratios) if ratios else None,
        "drafted": sum(r[1] for r in runs["auto"]),
        "accepted": sum(r[2] for r in runs["auto"]),
        "tokens": sum(g.completion_tokens for g in spec),
        # forward passes while decoding with speculation (plain: one a token)
        "passes": sum(r[3] for r in runs["auto"]),
        "identical": all(g.text == plain[0].text for g in plain + spec),
        "text": spec[0].text,
        "plain_text": plain[0].text,
    }


def _kind_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    drafted = sum(r["drafted"] for r in rows)
    passes = sum(r["passes"] for r in rows)
    plain = summary([r["plain_tps"] for r in rows if r["plain_tps"]])
    spec = summary([r["spec_tps"] for r in rows if r["spec_tps"]])
    ratios = [r["ratio"] for r in rows if r["ratio"]]
    return {
        "plain_tps": plain,
        "spec_tps": spec,
        # judged: the geometric mean of the prompts' paired ratios
        "ratio": statistics.geometric_mean(ratios) if ratios else None,
        "ratio_of_medians": ratio(spec["median"], plain["median"]),
        "ratio_per_prompt": summary(ratios),
        "acceptance": sum(r["accepted"] for r in rows) / drafted if drafted else None,
        "drafted": drafted,
        "tokens_per_pass": sum(r["tokens"] for r in rows) / passes if passes else None,
        "identical": sum(r["identical"] for r in rows),
        "runs": len(rows),
    }


async def run(opts: Options, info: dict[str, Any]) -> dict[str, Any]:
    from mlxd.backends.local import LocalBackend
    from mlxd.models.pool import ModelPool
    from mlxd.types import Message, Request

    n = min(opts.n(DEFAULT_RUNS), len(SOURCES))
    max_tokens = opts.max_tokens or DEFAULT_MAX_TOKENS
    pool = ModelPool(speculative="auto")
    try:
        backend = LocalBackend("local", opts.model, pool, dequantize="auto")
        log(f"loading {model_label(opts.model)} in-process")
        await backend.ensure_loaded()
        engine = pool.entries[opts.model].engine
        reqs = {
            "holes": hole_requests(opts.n(HOLES)),
            "code": [
                (label, Request(kind="complete", prefix=text, max_tokens=max_tokens))
                for label, text in code_prompts(n)
            ],
            "prose": [
                (label, Request(kind="chat", messages=[Message("user", q)], max_tokens=max_tokens))
                for label, q in prose_prompts(n)
            ],
        }
        for i in range(opts.warmup):
            await _case(backend, engine, reqs["code"][0][1], i)
        rows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in reqs}
        for kind, cases in reqs.items():
            for i, (label, req) in enumerate(cases):
                row = await _case(backend, engine, req, i)
                row["prompt"] = label
                rows[kind].append(row)
                if opts.verbose:
                    print(
                        f"  {kind} {label}: plain {fmt(row['plain_tps'])} tok/s, speculative "
                        f"{fmt(row['spec_tps'])} tok/s ({fmt(row['ratio'], 'x', 2)}), accepted "
                        f"{row['accepted']}/{row['drafted']}, identical {row['identical']}"
                    )
        drafted = await _draft_model(opts, pool, reqs["code"], rows["code"])
    finally:
        pool.close()
    return _report(opts, info, max_tokens, rows, drafted)


async def _draft_model(
    opts: Options, pool: Any, cases: list[tuple[str, Any]], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """`local.draft_model`, held to correctness (issue 17: no speed goal on a CPU): the code
    prompts again with the model drafting for itself (the only model of its vocabulary here),
    against the plain greedy texts above. Reported, not judged on speed."""
    from mlxd.backends.local import LocalBackend

    backend = LocalBackend("drafted", opts.model, pool, dequantize="auto", draft=opts.model)
    engine = pool.entries[opts.model].engine
    engine.speculative = "auto"
    out = []
    for (_, req), row in zip(cases, rows, strict=True):
        await settle()
        gen, drafted, accepted, steps = await _one(backend, engine, req)
        out.append(
            {
                "tps": gen.decode_tps,
                "plain_tps": row["plain_tps"],
                "drafted": drafted,
                "accepted": accepted,
                "identical": gen.text == row["plain_text"],
            }
        )
    same = sum(r["identical"] for r in out)
    drafted_all = sum(r["drafted"] for r in out)
    share = sum(r["accepted"] for r in out) / drafted_all if drafted_all else None
    tps = summary([r["tps"] for r in out if r["tps"]])
    print(
        f"draft model ({model_label(opts.model)} drafting for itself, code prompts): identical "
        f"{same}/{len(out)}, accepted {fmt(None if share is None else 100 * share, '%', 0)} of "
        f"{drafted_all}, decode {fmt_stat(tps)} tok/s (reported: no speed goal on a CPU)"
    )
    return {"identical": same, "runs": len(out), "acceptance": share, "tps": tps, "rows": out}


def _report(
    opts: Options,
    info: dict[str, Any],
    max_tokens: int,
    rows: dict[str, list[Any]],
    drafted: dict[str, Any],
) -> dict[str, Any]:
    s = {kind: _kind_summary(r) for kind, r in rows.items()}
    targets = {"holes": TARGET_CODE, "code": TARGET_CODE, "prose": TARGET_PROSE}
    ok = {
        kind: None if s[kind]["ratio"] is None else s[kind]["ratio"] >= t
        for kind, t in targets.items()
    }
    identical_ok = all(x["identical"] == x["runs"] for x in s.values())
    print_table(
        f"speculation: {model_label(opts.model)}, greedy; holes {INLINE_TOKENS} tokens, code and "
        f"prose {max_tokens}; {PAIRS} pairs a prompt; decode tok/s median (min-max) of the "
        "prompts; ratio: geometric mean of the prompts' median paired ratios",
        [
            "prompts",
            "plain",
            "prompt lookup",
            "ratio",
            "target",
            "accepted",
            "tok/pass",
            "identical",
            "ok",
        ],
        [
            [
                kind,
                fmt_stat(x["plain_tps"]),
                fmt_stat(x["spec_tps"]),
                fmt(x["ratio"], "x", 2),
                f">= {targets[kind]}x",
                fmt(None if x["acceptance"] is None else 100 * x["acceptance"], "%", 0)
                + f" of {x['drafted']}",
                fmt(x["tokens_per_pass"], "", 2),
                f"{x['identical']}/{x['runs']}",
                verdict(ok[kind]),
            ]
            for kind, x in s.items()
        ],
    )
    result = {
        "name": "speculation",
        "machine": info,
        "params": {
            "model": opts.model,
            "prompts": {kind: len(r) for kind, r in rows.items()},
            "pairs": PAIRS,
            "max_tokens": {"holes": INLINE_TOKENS, "code": max_tokens, "prose": max_tokens},
        },
        "summary": s,
        "runs": rows,
        "targets": {
            "code_ratio_min": TARGET_CODE,
            "prose_ratio_min": TARGET_PROSE,
            "holes_ok": ok["holes"],
            "code_ok": ok["code"],
            "prose_ok": ok["prose"],
            "identical_ok": identical_ok,
            "draft_model_identical_ok": drafted["identical"] == drafted["runs"],
        },
        "draft_model": drafted,
    }
    path = write_result("speculation", result)
    print(f"results: {path}")
    return result
