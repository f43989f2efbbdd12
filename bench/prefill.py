"""prefill: prompt prefill with mlxd's exp (mlxd.models.prefill_math) against MLX's own ops.

One process, the model loaded once as the daemon loads it (`fast_prefill=True`); the two
variants alternate run by run (the module's functions are swapped back and forth), so a busy
moment on a shared machine hits both alike. Each run prefills the same 1,024 tokens of
CPython's asyncio/locks.py in the daemon's 64-token chunks (models/batching.py PREFILL_STEP),
then takes 8 decode steps there (decode keeps MLX's ops in both variants: a control).

Reported per variant: 1,024-token prefill tokens/s, the first chunk's and the last chunk's ms
(the last one attends over 960 earlier tokens), and a decode step's ms; median and best over
runs. Target: prefill with mlxd's exp > 1x MLX's, decode unchanged (0.97-1.03x).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from mlxd.models.batching import BatchEngine

from .common import Options, fmt, log, model_label, print_table, ratio, write_result
from .typing_replay import SOURCE

DEFAULT_RUNS = 5
TOKENS = 1024
CHUNK = BatchEngine.PREFILL_STEP
DECODE_STEPS = 8


async def run(opts: Options, info: dict[str, Any]) -> dict[str, Any]:
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    from mlxd.models import load_model, prefill_math

    runs = opts.n(DEFAULT_RUNS)
    lm = load_model(opts.model, fast_prefill=True)
    if not lm.prefill_math:
        raise RuntimeError("prefill_math is not in use here (MLX on a GPU, or switched off)")
    model = lm.model
    # (module, name, wrapper) for each function install swapped in: put back, or the original
    # each wrapper calls.
    swapped = [
        (module, name, getattr(module, name))
        for module in prefill_math.modules_of(model)
        for name in lm.prefill_math
        if hasattr(getattr(module, name, None), "original")
    ]

    def use(fast: bool) -> None:
        for module, name, wrapper in swapped:
            setattr(module, name, wrapper if fast else wrapper.original)

    ids = (lm.tokenizer.encode(Path(SOURCE).read_text()) * 2)[: TOKENS + 1]

    def once() -> dict[str, float]:
        cache = make_prompt_cache(model)
        chunks = []
        t0 = time.perf_counter()
        for i in range(0, TOKENS, CHUNK):
            t = time.perf_counter()
            model(mx.array(ids[i : i + CHUNK])[None], cache=cache)
            mx.eval([c.state for c in cache])
            chunks.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
        steps = []
        token = mx.array([[ids[TOKENS]]])
        for _ in range(DECODE_STEPS):
            t = time.perf_counter()
            mx.eval(model(token, cache=cache))
            steps.append(time.perf_counter() - t)
        return {
            "prefill_tps": TOKENS / total,
            "first_chunk_ms": chunks[0] * 1000,
            "last_chunk_ms": chunks[-1] * 1000,
            "decode_ms": statistics.median(steps) * 1000,
        }

    variants = {"mlxd's exp": True, "MLX's ops": False}
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for fast in variants.values():  # warm-up: compiled kernels, allocator
        use(fast)
        once()
    log(f"{runs} alternating runs of {TOKENS}-token prefill ({CHUNK}-token chunks) + decode")
    for _ in range(runs):
        for label, fast in variants.items():
            use(fast)
            samples[label].append(once())
    use(True)

    def stat(label: str, key: str, how: Any) -> float:
        return how(s[key] for s in samples[label])

    keys = ("prefill_tps", "first_chunk_ms", "last_chunk_ms", "decode_ms")
    best = {"prefill_tps": max}  # the others are times: the least is the best
    table = {
        label: {
            k: {
                "best": stat(label, k, best.get(k, min)),
                "median": stat(label, k, statistics.median),
            }
            for k in keys
        }
        for label in variants
    }
    fast, slow = table["mlxd's exp"], table["MLX's ops"]
    print_table(
        f"prefill: {model_label(opts.model)}, {runs} alternating runs; median (best)",
        ["variant", "prefill tok/s", "first chunk ms", "last chunk ms", "decode step ms"],
        [
            [label] + [f"{fmt(t[k]['median'])} ({fmt(t[k]['best'])})" for k in keys]
            for label, t in table.items()
        ],
    )
    ratios = {
        "prefill_tps": ratio(fast["prefill_tps"]["median"], slow["prefill_tps"]["median"]),
        "last_chunk_time": ratio(slow["last_chunk_ms"]["median"], fast["last_chunk_ms"]["median"]),
        "decode_time": ratio(slow["decode_ms"]["median"], fast["decode_ms"]["median"]),
    }
    print_table(
        "prefill: ratios (mlxd's exp over MLX's ops; > 1 is faster)",
        ["metric", "measured", "target"],
        [
            ["prefill tok/s", fmt(ratios["prefill_tps"], "x", 2), "> 1"],
            ["last chunk (depth 960) speed", fmt(ratios["last_chunk_time"], "x", 2), "> 1"],
            ["decode step speed (control)", fmt(ratios["decode_time"], "x", 2), "0.97-1.03"],
        ],
    )
    result = {
        "name": "prefill",
        "machine": info,
        "params": {"model": opts.model, "runs": runs, "tokens": TOKENS, "chunk": CHUNK},
        "summary": table,
        "ratios": ratios,
    }
    write_result("prefill", result)
    return result
