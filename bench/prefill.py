"""prefill: mlxd's own model kernels against MLX's, in one process: prompt prefill with mlxd's
exp (mlxd.models.prefill_math), decode steps on quantized shadows (mlxd.gemv_forward.shadow).

One process, the model loaded once as the daemon loads it (`fast_prefill=True`); the three
variants alternate run by run (the module's functions are swapped back and forth, the
shadows taken out and put back), so a busy moment on a shared machine hits all alike. Each run
prefills the same 1,024 tokens of CPython's asyncio/locks.py in the daemon's 64-token chunks
(models/batching.py PREFILL_STEP), then takes 8 decode steps there.

- "mlxd": both, as the daemon runs;
- "MLX's exp in prefill": prefill math off (decode as mlxd's: a control);
- "float decode weights": the decode products read the float32 matrices (prefill as mlxd's:
  a control; prefill chunks have more rows than the shadows serve).

Reported per variant: 1,024-token prefill tokens/s, the first chunk's and the last chunk's ms
(the last one attends over 960 earlier tokens), and a decode step's ms; median and best over
runs; and whether the decode steps' logits are bit-identical with and without the shadows.
Targets: prefill with mlxd's exp > 1x MLX's; decode on shadows > 1x the float weights, with
identical logits; the controls unchanged (0.97-1.03x).
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

    shadows = lm.shadows
    if shadows is None:
        raise RuntimeError("no quantized shadows here (not a quantized model, or switched off)")

    def use(fast: bool, shadowed: bool = True) -> None:
        for module, name, wrapper in swapped:
            setattr(module, name, wrapper if fast else wrapper.original)
        (shadows.restore if shadowed else shadows.remove)()

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
            logits = model(token, cache=cache)
            mx.eval(logits)
            steps.append(time.perf_counter() - t)
        last.append(logits)
        return {
            "prefill_tps": TOKENS / total,
            "first_chunk_ms": chunks[0] * 1000,
            "last_chunk_ms": chunks[-1] * 1000,
            "decode_ms": statistics.median(steps) * 1000,
        }

    last: list[Any] = []  # each run's last decode logits
    variants = {
        "mlxd": (True, True),
        "MLX's exp in prefill": (False, True),
        "float decode weights": (True, False),
    }
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for how in variants.values():  # warm-up: compiled kernels, allocator
        use(*how)
        once()
    log(f"{runs} alternating runs of {TOKENS}-token prefill ({CHUNK}-token chunks) + decode")
    identical = True
    for _ in range(runs):
        last.clear()
        for label, how in variants.items():
            use(*how)
            samples[label].append(once())
        # mlxd's and the float weights' runs: the same prefill math, the same tokens.
        identical = identical and bool(mx.array_equal(last[0], last[2]).item())
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
    mlxd, mlx_exp, floats = (table[v] for v in variants)
    print_table(
        f"prefill: {model_label(opts.model)}, {runs} alternating runs; median (best)",
        ["variant", "prefill tok/s", "first chunk ms", "last chunk ms", "decode step ms"],
        [
            [label] + [f"{fmt(t[k]['median'])} ({fmt(t[k]['best'])})" for k in keys]
            for label, t in table.items()
        ],
    )

    def faster(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
        """How many times faster `a` is than `b` by `key` (medians)."""
        if key == "prefill_tps":
            return ratio(a[key]["median"], b[key]["median"])
        return ratio(b[key]["median"], a[key]["median"])

    ratios = {
        "prefill_tps": faster(mlxd, mlx_exp, "prefill_tps"),
        "last_chunk_time": faster(mlxd, mlx_exp, "last_chunk_ms"),
        "decode_time_control": faster(mlxd, mlx_exp, "decode_ms"),
        "decode_time": faster(mlxd, floats, "decode_ms"),
        "prefill_tps_control": faster(mlxd, floats, "prefill_tps"),
    }
    print_table(
        "prefill: ratios (mlxd over the variant without that kernel; > 1 is faster)",
        ["metric", "measured", "target"],
        [
            ["prefill tok/s, mlxd's exp", fmt(ratios["prefill_tps"], "x", 2), "> 1"],
            ["last chunk (depth 960), mlxd's exp", fmt(ratios["last_chunk_time"], "x", 2), "> 1"],
            ["decode step, mlxd's exp (control)", fmt(ratios["decode_time_control"], "x", 2),
             "0.97-1.03"],
            ["decode step, quantized shadows", fmt(ratios["decode_time"], "x", 2), "> 1"],
            ["decode logits identical, shadows or not", "yes" if identical else "NO", "yes"],
            ["prefill tok/s, shadows (control)", fmt(ratios["prefill_tps_control"], "x", 2),
             "0.97-1.03"],
        ],
    )  # fmt: skip
    result = {
        "name": "prefill",
        "machine": info,
        "params": {"model": opts.model, "runs": runs, "tokens": TOKENS, "chunk": CHUNK},
        "summary": table,
        "ratios": ratios,
        "identical_decode_logits": identical,
    }
    write_result("prefill", result)
    return result
