"""Per-hole trace of the inline path, in-process and without a time cap: why mlxd loses a hole.

`python -m bench.quality_trace [--languages python,javascript,lua] [--runs N] [--seed S]`
writes bench/results/quality-holes.jsonl, one record per hole of the quality benchmark's
corpus (same seeded holes): the prompt mlxd's local backend would send (the engine's request,
rendered by the backend's `fit_prompt` with the model's tokenizer and the full
`inline.context_tokens`), the model's raw greedy text under the same stop rules (a newline
when single-line, `max_lines`, at most `inline.max_tokens`), the post-processed item
(`inline.postprocess.clean`), the naive text, the expected answer, and scores. It measures the
prompt and the post-processing only: the time cap is not applied (compare with a daemon run of
`bench quality` to see what the cap costs).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import RESULTS, reexec_with_blas
from .quality import SEED, SOURCES, Hole, Naive, make_holes, score


def trace_hole(naive: Naive, hole: Hole, cfg: Any) -> dict[str, Any]:
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.sample_utils import make_sampler

    from mlxd.backends.local import fit_prompt
    from mlxd.inline.cuts import complete_lines
    from mlxd.inline.engine import InlineEngine
    from mlxd.inline.postprocess import clean
    from mlxd.models.healing import healed_prompt
    from mlxd.models.stops import finished_lines
    from mlxd.prompts import context_at, starts_block

    engine = InlineEngine(cfg, generate=None)  # type: ignore[arg-type]
    uri = f"file:///src/{hole.path}"
    ctx = context_at(hole.text, hole.offset, uri=uri, language=hole.language_id)
    if cfg.multi_line == "never" or (cfg.multi_line == "auto" and not starts_block(ctx)):
        ctx.max_lines = 1
    ctx.header = engine._header(ctx, ())
    req = engine._request(ctx)
    lm = naive.lm
    tokens, max_tokens = fit_prompt(lm, req, cfg.context_tokens, req.max_tokens)
    tokens, healer = healed_prompt(lm.tokenizer, tokens)  # as the local backend does
    parts: list[str] = []
    finish = "length"
    for resp in stream_generate(
        lm.model,
        lm.tokenizer,
        mx.array(tokens),
        max_tokens=max_tokens,
        sampler=make_sampler(temp=0.0),
        prompt_cache=make_prompt_cache(lm.model),
        logits_processors=[healer] if healer else None,
    ):
        parts.append(healer.unheal(resp.text) if healer else resp.text)
        text = "".join(parts)
        if resp.finish_reason == "stop":
            finish = "stop"
        if any(s in text for s in req.stop):
            finish = "stop"
            break
        if req.max_lines and finished_lines(text) >= req.max_lines:
            finish = "stop"
            break
    raw = "".join(parts)
    for s in req.stop:
        raw = raw.split(s, 1)[0]
    cut = finish == "length" and cfg.whole_lines
    item = clean(complete_lines(raw) if cut else raw, ctx)
    nv = naive.complete(hole)
    return {
        "id": hole.id,
        "language": hole.language,
        "kind": hole.kind,
        "prompt_tail": lm.tokenizer.decode(tokens)[-600:],
        "prompt_tokens": len(tokens),
        "single_line": ctx.single_line,
        "max_lines": ctx.max_lines,
        "raw": raw,
        "finish": finish,
        "item": item,
        "naive": nv["text"],
        "expected": hole.answer,
        "mlxd": score(hole, item),
        "naive_score": score(hole, nv["text"]),
    }


def classify(result: dict[str, Any], cap_ms: float) -> list[dict[str, Any]]:
    """Each hole of a `bench quality` result where mlxd scored below naive, with a cause:
    "time cap" (empty, and the answer took about the cap or longer), "empty" (empty sooner:
    post-processing dropped it or the model ended at once; the trace tells which), or
    "worse text" (an item, less similar than naive's)."""
    out = []
    for hole in result["holes"]:
        for key, row in hole.items():
            if not key.startswith("mlxd@") or row["sim"] >= hole["naive"]["sim"]:
                continue
            if row["empty"]:
                cause = "time cap" if row["latency_ms"] >= 0.9 * cap_ms else "empty"
            else:
                cause = "worse text"
            out.append(
                {
                    "id": hole["id"],
                    "pass": key,
                    "cause": cause,
                    "mlxd": row["text"],
                    "naive": hole["naive"]["text"],
                    "expected": hole["answer"],
                    "latency_ms": round(row["latency_ms"]),
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality_trace")
    p.add_argument("--languages", default="python")
    p.add_argument("--runs", type=int, default=8, help="holes per kind per language")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--inline", default="{}", help="[inline] settings as JSON")
    p.add_argument("--out", default=str(RESULTS / "quality-holes.jsonl"))
    p.add_argument(
        "--classify",
        metavar="RESULT_JSON",
        help="no model: classify mlxd's losses in a `bench quality` result file and exit",
    )
    args = p.parse_args(argv)
    if args.classify:
        cfg_ms = json.loads(args.inline).get("max_ms", 1500)
        result = json.loads(open(args.classify).read())
        losses = classify(result, cfg_ms)
        for loss in losses:
            print(json.dumps(loss))
        counts: dict[str, int] = {}
        for loss in losses:
            counts[loss["cause"]] = counts.get(loss["cause"], 0) + 1
        print(f"{len(losses)} losses of {len(result['holes'])} holes: {counts}")
        return 0
    reexec_with_blas(sys.argv[1:] if argv is None else argv, "bench.quality_trace")
    from mlxd.config import decode

    cfg = decode({"inline": json.loads(args.inline)}).inline
    naive = Naive(args.model)
    langs = [x for x in args.languages.split(",") if x in SOURCES]
    holes = [h for lang in langs for h in make_holes(lang, args.runs, args.seed)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    sums: dict[str, list[float]] = {}
    with open(args.out, "w") as out:
        for hole in holes:
            rec = trace_hole(naive, hole, cfg)
            out.write(json.dumps(rec) + "\n")
            out.flush()
            key = f"{hole.language}/{hole.kind}"
            s = sums.setdefault(key, [0, 0.0, 0.0, 0, 0])
            s[0] += 1
            s[1] += rec["mlxd"]["sim"]
            s[2] += rec["naive_score"]["sim"]
            s[3] += rec["mlxd"]["empty"]
            s[4] += rec["naive_score"]["empty"]
            print(
                f"{rec['mlxd']['sim']:.2f} {rec['naive_score']['sim']:.2f} {hole.id}"
                f" item={rec['item'][:50]!r} naive={rec['naive'][:50]!r}",
                flush=True,
            )
    for key, (n, m, b, me, be) in sums.items():
        print(f"{key}: n={n} mlxd sim {m / n:.3f} (empty {me}) naive {b / n:.3f} (empty {be})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
