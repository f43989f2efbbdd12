"""Prompt lookup replayed offline on greedy texts: what drafting gains, free of the machine's load.

`python -m bench.speculation_replay [--model SPEC] [--max-tokens N]`

Greedy speculation is lossless, so which drafts are accepted depends on the greedy text alone.
This generates each prompt's greedy continuation once (mlx-lm's generate_step, the model as
mlxd loads it), measures the model's forward pass of 1..ROWS tokens at the prompts' depth
(median of COST_REPS, relative to one token), then replays mlxd's PromptLookup and
DraftPolicy (as the engine builds it) over each text, token by token, as LookupDecoder would
decode it. Reported per set: draft tokens accepted, tokens a pass, and the speed-up over plain
decoding the measured pass costs give (geometric mean over prompts); beside it, the same
replay with a policy that prices passes by the measured table instead of its constants — if
that one is clearly ahead, the constants (models/speculative.py) no longer fit this machine.

Sets: `bench speculation`'s holes (the issue's code-continuation prompts: the quality bench's
multi-line holes, INLINE_TOKENS of each answer), code and prose prompts, and HELD_OUT: code
prompts cut the same way as its code from other packages of the venv.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from mlxd.models.speculative import DraftPolicy, greedy_tokens

from .common import EMBEDDED, RESULTS, print_table, reexec_with_blas, write_result
from .speculation import HOLES, INLINE_TOKENS, SOURCES, code_prompts, hole_requests, prose_prompts

HELD_OUT = [
    ("jinja2", "compiler.py"),
    ("pygls", "protocol/json_rpc.py"),
    ("click", "core.py"),
    ("httpx2", "_client.py"),
    ("cattrs", "converters.py"),
    ("markdown_it", "renderer.py"),
    ("pydantic", "main.py"),
    ("huggingface_hub", "file_download.py"),
    ("matplotlib", "axis.py"),
    ("numpy", "lib/_function_base_impl.py"),
]
ROWS = 12  # longest pass measured (a longer one is priced by the last step's slope)
COST_REPS = 15


def price(cost: dict[int, float], rows: int) -> float:
    """A pass of `rows` tokens by the measured table (ROWS and more: its last step's slope)."""
    return cost.get(rows) or cost[ROWS] + (cost[ROWS] - cost[ROWS - 1]) * (rows - ROWS)


def replay(
    prompt: list[int], text: list[int], policy: Any, cost: dict[int, float]
) -> tuple[float, int, int, int]:
    """(tokens a unit of cost over plain decoding's, drafted, accepted, passes) for greedy
    `text` after `prompt`, drafted as LookupDecoder drafts (the first token alone)."""
    from mlxd.models.speculative import PromptLookup

    lookup = PromptLookup([*prompt, *text[:1]])
    done, spent, drafted, accepted, passes = 1, 0.0, 0, 0, 0
    while done < len(text):
        n, draft = lookup.draft(min(policy.max_draft, len(text) - done - 1))
        draft = draft[: policy.length(n)] if draft else []
        kept = 0
        while kept < len(draft) and draft[kept] == text[done + kept]:
            kept += 1
        if draft:
            policy.update(n, len(draft), kept)
        new = text[done : done + kept + 1]
        lookup.extend(new)
        done += len(new)
        spent += price(cost, 1 + len(draft))
        drafted, accepted, passes = drafted + len(draft), accepted + kept, passes + 1
    return (len(text) - 1) / spent if spent else 1.0, drafted, accepted, passes


@dataclass
class PricedPolicy(DraftPolicy):
    """A DraftPolicy that prices a pass by the measured table instead of its constants."""

    table: dict[int, float] = field(default_factory=dict)

    def pass_cost(self, d: int) -> float:
        return price(self.table, d + 1)


def priced(base: DraftPolicy, cost: dict[int, float]) -> PricedPolicy:
    return PricedPolicy(base.max_draft, base.fixed_cost, base.token_cost, table=cost)


def _inline(lm: Any, req: Any) -> list[int]:
    """An inline request's prompt tokens as the local backend renders them (no time fit)."""
    from mlxd.backends.local_prompt import fit_window_for, render
    from mlxd.config import InlineConfig

    budget = InlineConfig().context_tokens
    return render(lm, req, fit_window_for(lm, req, budget, req.max_tokens), req.max_tokens)[0]


def _greedy(lm: Any, prompts: list[tuple[str, str, list[int]]], max_tokens: int) -> list[Any]:
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    from mlxd.backends.local_prompt import end_tokens

    out = []
    for kind, label, prompt in prompts:
        # A completion also ends on the FIM end tokens, as the engine ends it (job_for).
        eos = set(lm.tokenizer.eos_token_ids) | (
            end_tokens(lm.tokenizer) if kind != "prose" else set()
        )
        text: list[int] = []
        limit = min(max_tokens, INLINE_TOKENS) if kind == "holes" else max_tokens  # inline's cap
        for token, _ in generate_step(mx.array(prompt), lm.model, max_tokens=limit):
            text.append(int(token))
            if token in eos:
                break
        out.append((kind, label, prompt, text))
    return out


def _costs(lm: Any, prompt: list[int]) -> dict[int, float]:
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

    cache = make_prompt_cache(lm.model)
    for i in range(0, len(prompt), 64):
        lm.model(mx.array(prompt[i : i + 64])[None], cache=cache)
        mx.eval([c.state for c in cache])
    took: dict[int, list[float]] = {}
    for _ in range(COST_REPS):
        for rows in range(1, ROWS + 1):
            t0 = time.perf_counter()
            logits = lm.model(mx.array(prompt[:rows])[None], cache=cache)[0]
            greedy_tokens(logits)  # as LookupDecoder's pass picks
            took.setdefault(rows, []).append(time.perf_counter() - t0)
            trim_prompt_cache(cache, rows)
    one = statistics.median(took[1])
    return {rows: statistics.median(t) / one for rows, t in took.items()}


async def run(model: str, max_tokens: int) -> dict[str, Any]:
    from mlxd.backends.local import LocalBackend
    from mlxd.models.pool import ModelPool

    pool = ModelPool(speculative="off")
    try:
        backend = LocalBackend("local", model, pool, dequantize="auto")
        await backend.ensure_loaded()
        engine = pool.entries[model].engine
        lm, tok = engine.lm, engine.lm.tokenizer
        held_out = code_prompts(len(HELD_OUT), HELD_OUT)
        prompts = [("code", label, tok.encode(t)) for label, t in code_prompts(len(SOURCES))]
        prompts += [("held-out code", label, tok.encode(t)) for label, t in held_out]
        prompts += [("holes", label, _inline(lm, req)) for label, req in hole_requests(HOLES)]
        prompts += [
            (
                "prose",
                label,
                tok.apply_chat_template(
                    [{"role": "user", "content": q}], add_generation_prompt=True
                ),
            )
            for label, q in prose_prompts(len(SOURCES))
        ]
        loop = asyncio.get_running_loop()
        texts = await loop.run_in_executor(pool.executor, _greedy, lm, prompts, max_tokens)
        cost = await loop.run_in_executor(pool.executor, _costs, lm, prompts[0][2])

        def policy() -> Any:
            return DraftPolicy.here(engine.draft_tokens, shadowed=lm.shadows is not None)
    finally:
        pool.close()
    sets: dict[str, Any] = {}
    for name, make in (("policy", policy), ("priced", lambda: priced(policy(), cost))):
        pol = make()  # one per run, as one per engine: what it learns carries over
        for kind, label, prompt, text in texts:
            speed, drafted, accepted, passes = replay(prompt, text, pol, cost)
            counts = {"drafted": drafted, "accepted": accepted, "passes": passes}
            row = {"prompt": label, "speedup": speed, **counts, "tokens": len(text) - 1}
            sets.setdefault(kind, {}).setdefault(name, []).append(row)
    return {"name": "speculation_replay", "cost": cost, "sets": sets, "max_tokens": max_tokens}


def _summary(rows: list[dict[str, Any]]) -> tuple[float, float, float]:
    drafted = sum(r["drafted"] for r in rows)
    return (
        statistics.geometric_mean([r["speedup"] for r in rows]),
        sum(r["accepted"] for r in rows) / drafted if drafted else 0.0,
        sum(r["tokens"] for r in rows) / max(1, sum(r["passes"] for r in rows)),
    )


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    reexec_with_blas(args_list, "bench.speculation_replay")
    p = argparse.ArgumentParser(prog="python -m bench.speculation_replay")
    p.add_argument("--model", default=EMBEDDED)
    p.add_argument("--max-tokens", type=int, default=96)
    args = p.parse_args(args_list)
    from .common import resolve_model

    result = asyncio.run(run(resolve_model(args.model), args.max_tokens))
    costs = ", ".join(f"{rows} {x:.2f}x" for rows, x in result["cost"].items())
    print(f"pass cost over one token, by tokens in the pass: {costs}")
    rows = []
    for kind, by in result["sets"].items():
        (a, acc_a, tp_a), (b, _, tp_b) = _summary(by["policy"]), _summary(by["priced"])
        rows.append([kind, len(by["policy"]), f"{acc_a:.0%}", f"{tp_a:.2f}", f"{a:.2f}x",
                     f"{tp_b:.2f}", f"{b:.2f}x"])  # fmt: skip
    print_table(
        f"prompt lookup replayed on greedy texts ({args.max_tokens} tokens); speed-up by the "
        "measured pass costs, geometric mean over prompts",
        ["set", "prompts", "accepted", "tok/pass", "speed-up", "tok/pass priced", "priced"],
        rows,
    )
    print(f"results: {write_result('speculation_replay', result)} (under {RESULTS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
