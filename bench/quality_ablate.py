"""Ablations of the inline path against naive, on text alone (no time cap): where mlxd loses.

`python -m bench.quality_ablate [--languages python] [--runs N] [--variants a,b,...]`

Each hole of the quality benchmark's corpus (same seeded holes) is answered in-process by
mlxd's own inline code (engine context + header, the local backend's `fit_prompt`, the stop
policy, `cuts.cleaned`) and by the naive baseline, with the same model, greedy. A model's raw
continuation is generated once per distinct prompt (NAIVE_MAX_TOKENS tokens or to its end) and
cached in bench/results/ablate-gen.jsonl; every stop rule is applied afterwards to the
streamed pieces, exactly as the router would have stopped the stream (greedy: a stopped
stream is a prefix of the longer one). So variants that only change stop rules or
post-processing cost nothing, and reruns cost only new prompts.

Variants (one change each against `mlxd`; `a+b` combines them):
- mlxd: the inline path as configured (default settings, no time cap), without token healing.
- heal: with token healing (models/healing.py), as the local backend answers.
- no_header: without the `# path:` header.
- budget512 / budget256 / budget128: inline.context_tokens 512 / 256 / 128 (naive sees about
  2000 characters; 128 is the cursor warm-up's window on a slow machine, models.warm_rung).
- keep_space: the prompt keeps the whitespace before the cursor (no trailing_space strip).
- lines_opener: several lines only after a line that opens a block, not on a header being typed.
- raw_post: no post-processing but the stop policy.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

from .common import RESULTS, reexec_with_blas
from .quality import (
    NAIVE_CHARS,
    NAIVE_MAX_TOKENS,
    SEED,
    SOURCES,
    Hole,
    _dedent_at,
    bootstrap_ci,
    make_holes,
    score,
)

GEN_CACHE = RESULTS / "ablate-gen.jsonl"


class Model:
    """The model, and a cache of greedy continuations keyed by prompt tokens."""

    def __init__(self, spec: str) -> None:
        from mlxd.models import load_model

        self.spec = spec
        self.lm = load_model(spec)
        self.cache: dict[str, dict[str, Any]] = {}
        if GEN_CACHE.exists():
            for line in GEN_CACHE.read_text().splitlines():
                rec = json.loads(line)
                self.cache[rec["key"]] = rec

    def generate(
        self, tokens: list[int], max_tokens: int, line: bool = False, heal: str = ""
    ) -> dict[str, Any]:
        """{"pieces": [text per token], "eos": bool}: greedy, from a fresh KV cache. `line`:
        only until a line with text is finished (all a one-line answer can use)."""
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.models.cache import make_prompt_cache
        from mlx_lm.sample_utils import make_sampler

        from mlxd.models.healing import Healer, vocabulary
        from mlxd.models.stops import finished_lines

        parts = [self.spec, tokens, max_tokens] + ([heal] if heal else [])
        full = hashlib.sha1(json.dumps(parts).encode()).hexdigest()
        key = full + ":line" if line else full
        for k in (full, key):
            if k in self.cache:
                return self.cache[k]
        from mlxd.models.detokenize import TextStream

        pieces: list[str] = []
        eos = False
        stream = TextStream(self.lm.tokenizer, tokens)  # mlx-lm's drops a first leading space
        for resp in stream_generate(
            self.lm.model,
            self.lm.tokenizer,
            mx.array(tokens),
            max_tokens=max_tokens,
            sampler=make_sampler(temp=0.0),
            prompt_cache=make_prompt_cache(self.lm.model),
            logits_processors=[Healer(heal, vocabulary(self.lm.tokenizer))] if heal else None,
        ):
            eos = resp.finish_reason == "stop"
            pieces.append("" if eos else stream.add(resp.token))
            if line and "\n" in resp.text and finished_lines("".join(pieces)) >= 1:
                break
        rec = {"key": key, "pieces": pieces, "eos": eos}
        self.cache[key] = rec
        RESULTS.mkdir(parents=True, exist_ok=True)
        with GEN_CACHE.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        return rec


def naive(model: Model, hole: Hole) -> str:
    tok = model.lm.tokenizer
    prompt = hole.text[: hole.offset][-NAIVE_CHARS:]
    tokens = tok.encode(prompt, add_special_tokens=False)
    gen = model.generate(tokens, NAIVE_MAX_TOKENS, line=hole.kind == "single")
    text = ""
    for piece in gen["pieces"]:
        text += piece
        if hole.kind == "single" and "\n" in text:
            break
        if hole.kind == "multi" and _dedent_at(text, hole.header_indent) is not None:
            break
    if hole.kind == "single":
        return text.split("\n", 1)[0].rstrip()
    end = _dedent_at(text, hole.header_indent)
    return (text if end is None else text[:end]).rstrip()


class Answer:
    def __init__(self, text: str, finish_reason: str) -> None:
        self.text, self.finish_reason = text, finish_reason


def streamed(gen: dict[str, Any], stop: list[str], max_lines: int | None) -> Answer:
    """What the router would have returned: the stream stopped at a stop string (cut there)
    or at `max_lines` finished lines, else at the model's end ("stop") or the token cap."""
    from mlxd.models.stops import finished_lines

    text = ""
    for piece in gen["pieces"]:
        text += piece
        hits = [i for s in stop if (i := text.find(s)) != -1]
        if hits:
            return Answer(text[: min(hits)], "stop")
        if max_lines and "\n" in piece and finished_lines(text) >= max_lines:
            return Answer(text, "stop")
    return Answer(text, "stop" if gen["eos"] else "length")


def mlxd(model: Model, hole: Hole, inline: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    from mlxd.backends.local import fit_prompt
    from mlxd.config import decode
    from mlxd.inline.cuts import cleaned
    from mlxd.inline.engine import InlineEngine

    cfg = decode({"inline": inline}).inline
    engine = InlineEngine(cfg, generate=None)  # type: ignore[arg-type]
    ctx = engine.context_for(hole.text, hole.offset, f"file:///src/{hole.path}", hole.language_id)
    ctx.header = engine._header(ctx, ())
    req = engine._request(ctx)
    tokens, max_tokens = fit_prompt(model.lm, req, cfg.context_tokens, req.max_tokens)
    heal = ""
    if HEAL:
        from mlxd.models.healing import heal_point

        tokens, heal = heal_point(model.lm.tokenizer, tokens)
    gen = model.generate(tokens, max_tokens, line=req.max_lines == 1 or "\n" in req.stop, heal=heal)
    if heal:
        gen = unhealed(gen, heal)
    answer = streamed(gen, req.stop, req.max_lines)
    done = cleaned(answer, ctx, cfg.whole_lines)
    text, finish = done.text, done.finish
    return text, {"raw": answer.text, "finish": finish, "prompt_tokens": len(tokens)}


HEAL = False


def unhealed(gen: dict[str, Any], heal: str) -> dict[str, Any]:
    """The pieces without the healed text they start with."""
    if not "".join(gen["pieces"]).startswith(heal):
        return gen  # the constraint failed: shown as is (and scored so)
    return _drop_head(gen, len(heal))


def _drop_head(gen: dict[str, Any], n: int) -> dict[str, Any]:
    out = []
    for piece in gen["pieces"]:
        cut = min(n, len(piece))
        out.append(piece[cut:])
        n -= cut
    return {**gen, "pieces": out}


@contextlib.contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _variants() -> dict[str, Callable[[], contextlib.AbstractContextManager[Any]]]:
    from mlxd.inline import engine as engine_mod
    from mlxd.inline import postprocess
    from mlxd.prompts.context import CursorContext

    def no_header() -> Any:
        return patched(engine_mod.InlineEngine, "_header", lambda self, ctx, nb: "")

    def keep_space() -> Any:
        return patched(CursorContext, "trailing_space", property(lambda self: ""))

    def lines_opener() -> Any:
        import re

        return patched(engine_mod, "starts_block", _opener_only(re))

    def raw_post() -> Any:
        steps = ("cut_at_suffix", "cut_at_dedent", "drop_repeated_lines", "drop_reclosed_brackets")
        stack = contextlib.ExitStack()
        for name in steps:
            stack.enter_context(patched(postprocess, name, lambda t, *a, **k: t))
        stack.enter_context(patched(postprocess, "drop_duplicate_of_next_line", lambda t, ctx: t))
        return stack

    def heal() -> Any:
        return patched(sys.modules[__name__], "HEAL", True)

    return {
        "heal": heal,
        "mlxd": contextlib.nullcontext,
        "no_header": no_header,
        "keep_space": keep_space,
        "lines_opener": lines_opener,
        "raw_post": raw_post,
    }


def _opener_only(re: Any) -> Callable[[Any], bool]:
    from mlxd.prompts.context import _EOL, opens_block

    def starts(ctx: Any) -> bool:
        if ctx.line_suffix.strip():
            return False
        line = ctx.line_prefix
        if not line.strip():
            start = len(ctx.prefix) - len(ctx.line_prefix)
            above = ctx.prefix[max(0, start - 4096) : start]
            line = next((x for x in reversed(_EOL.split(above)) if x.strip()), "")
        return opens_block(line)

    return starts


INLINE_VARIANTS = {
    "budget512": {"context_tokens": 512},
    "budget256": {"context_tokens": 256},
    "budget128": {"context_tokens": 128},
}


def summarize(name: str, kind: str, rows: list[dict[str, Any]], base: list[dict[str, Any]]) -> str:
    n = len(rows)
    sims = [r["sim"] for r in rows]
    ci = bootstrap_ci(sims)
    diff = [r["sim"] - b["sim"] for r, b in zip(rows, base, strict=True)]
    dci = bootstrap_ci(diff)
    exact = sum(r["exact"] for r in rows) / n
    empty = sum(r["empty"] for r in rows) / n
    return (
        f"| {kind} | {name} | {n} | {sum(sims) / n:.3f} [{ci[0]:.2f}, {ci[1]:.2f}] | "
        f"{sum(diff) / n:+.3f} [{dci[0]:+.2f}, {dci[1]:+.2f}] | {exact:.0%} | {empty:.0%} |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality_ablate")
    p.add_argument("--languages", default="python")
    p.add_argument("--runs", type=int, default=16, help="holes per kind per language")
    p.add_argument("--variants", default="mlxd")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--inline", default="{}", help="[inline] settings as JSON, for every variant")
    p.add_argument("--dump", default=str(RESULTS / "ablate.jsonl"))
    args = p.parse_args(argv)
    reexec_with_blas(sys.argv[1:] if argv is None else argv, "bench.quality_ablate")
    model = Model(args.model)
    langs = [x for x in args.languages.split(",") if x in SOURCES]
    holes = [h for lang in langs for h in make_holes(lang, args.runs, SEED)]
    variants = _variants()
    base_inline = json.loads(args.inline)
    names = [v for v in args.variants.split(",") if v]
    results: dict[str, list[dict[str, Any]]] = {"naive": []}
    dump = open(args.dump, "w")
    for hole in holes:
        nv = naive(model, hole)
        results["naive"].append(score(hole, nv))
        rec: dict[str, Any] = {"id": hole.id, "expected": hole.answer, "naive": nv}
        for name in names:
            parts = name.split("+")
            inline = {
                **base_inline,
                **{k: v for p in parts for k, v in INLINE_VARIANTS.get(p, {}).items()},
            }
            with contextlib.ExitStack() as stack:
                for part in parts:
                    stack.enter_context(variants.get(part, contextlib.nullcontext)())
                text, info = mlxd(model, hole, inline)
            results.setdefault(name, []).append(score(hole, text))
            rec[name] = {"text": text, **info}
        dump.write(json.dumps(rec) + "\n")
        dump.flush()
        print(
            f"{hole.id}: " + " ".join(f"{k}={v[-1]['sim']:.2f}" for k, v in results.items()),
            flush=True,
        )
    print("| holes | system | n | edit sim [95% CI] | Δ vs naive [95% CI] | exact | empty |")
    print("|---|---|---|---|---|---|---|")
    for lang in langs:
        for kind in ("single", "multi"):
            idx = [i for i, h in enumerate(holes) if h.language == lang and h.kind == kind]
            if not idx:
                continue
            base = [results["naive"][i] for i in idx]
            for name, rows in results.items():
                print(summarize(name, f"{lang} {kind}", [rows[i] for i in idx], base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
