"""fastpath: the Linux CPU fast path — optimized BLAS and dequantization — on raw mlx-lm.

Three child processes load the same model and time prefill and decode with
`mlx_lm.stream_generate` (its own prompt_tps / generation_tps):

- float32 + OpenBLAS: what `mlxd serve` runs on Linux CPU (dequantize "auto", BLAS preloaded);
- float32 + reference BLAS: the same without the preload (the mlx[cpu] wheel's own BLAS);
- quantized + OpenBLAS: the model's quantized weights as shipped (no dequantization);
- float32 + OpenBLAS without the few-row kernel, on one thread, and with MLX's own `exp` in
  prefill chunks (mlxd.models.prefill_math off): each part of mlxd's path left out in turn.

Target (issue 3): prefill tokens/s with the fast path >= 5x without it. The quantized row shows
whether dequantizing pays off on this CPU (it is the reason for `local.dequantize = "auto"`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import deque
from typing import Any

from mlxd import gemv_forward
from mlxd.models import prefill_math

from .common import (
    REPO,
    Options,
    env_without_blas,
    fmt,
    fmt_stat,
    log,
    model_label,
    print_table,
    ratio,
    source_text,
    summary,
    verdict,
    write_result,
)

DEFAULT_RUNS = 2
PROMPT_TOKENS = 256
DECODE_TOKENS = 32
TARGET_PREFILL = 5.0


def _worker(
    spec: str, dequantize: str, runs: int, prompt_tokens: int, decode_tokens: int
) -> dict[str, Any]:
    """In the child: load, warm up, then time `runs` cold prefills + decodes."""
    import mlx.core as mx
    from mlx_lm import stream_generate
    from mlx_lm.models.cache import make_prompt_cache
    from mlx_lm.sample_utils import make_sampler

    from mlxd.models import load_model

    from .common import process_blas

    t0 = time.perf_counter()
    lm = load_model(spec, dequantize=dequantize, fast_prefill=True)  # type: ignore[arg-type]
    load_s = time.perf_counter() - t0
    ids = lm.tokenizer.encode(source_text() * 4)[:prompt_tokens]
    sampler = make_sampler(temp=0.0)

    def once(n_prompt: int, n_decode: int) -> tuple[float, float]:
        stream = stream_generate(
            lm.model,
            lm.tokenizer,
            mx.array(ids[:n_prompt]),
            max_tokens=n_decode,
            sampler=sampler,
            prompt_cache=make_prompt_cache(lm.model),
        )
        last = deque(stream, maxlen=1)[0]  # carries the run's prompt_tps / generation_tps
        return last.prompt_tps, last.generation_tps

    once(32, 4)  # warm-up
    prefill, decode = [], []
    for _ in range(runs):
        p, d = once(len(ids), decode_tokens)
        prefill.append(p)
        decode.append(d)
    return {
        "blas": process_blas(os.getpid()),
        "quantized": lm.quantized,
        "nbytes": lm.nbytes,
        "load_s": load_s,
        "prompt_tokens": len(ids),
        "prefill_tps": prefill,
        "decode_tps": decode,
    }


def _child(
    spec: str, dequantize: str, runs: int, fast_blas: bool, extra_env: dict[str, str]
) -> dict[str, Any]:
    env = dict(os.environ) if fast_blas else env_without_blas()
    env.update(extra_env)
    if gemv_forward.OFF_ENV in extra_env:  # the inherited preload holds the interposer: drop it
        kept = [p for p in env.get("LD_PRELOAD", "").split(":") if gemv_forward.NAME not in p]
        env["LD_PRELOAD"] = ":".join(kept)
    cmd = [
        sys.executable,
        "-m",
        "bench.fastpath",
        "--worker",
        spec,
        dequantize,
        str(runs),
        str(PROMPT_TOKENS),
        str(DECODE_TOKENS),
    ]
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"fastpath worker failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


async def run(opts: Options, info: dict[str, Any]) -> dict[str, Any]:
    runs = opts.n(DEFAULT_RUNS)
    configs: list[tuple[str, str, bool, dict[str, str]]] = [
        ("float32 + OpenBLAS (mlxd on Linux)", "always", True, {}),
        ("float32 + reference BLAS", "always", False, {}),
        ("quantized + OpenBLAS", "never", True, {}),
        # OpenBLAS threads spin while they wait: on busy cores one thread can be faster.
        ("float32 + OpenBLAS, 1 thread", "always", True, {"OPENBLAS_NUM_THREADS": "1"}),
        # mlxd's few-row product kernel (mlxd/gemv_forward.py) left out: OpenBLAS's sgemm only.
        (
            "float32 + OpenBLAS sgemm, no few-row kernel",
            "always",
            True,
            {gemv_forward.OFF_ENV: "1"},
        ),
        # Prefill chunks' softmax and SiLU on MLX's CPU exp (mlxd.models.prefill_math off).
        ("float32 + OpenBLAS, MLX's exp in prefill", "always", True, {prefill_math.OFF_ENV: "1"}),
    ]
    rows_data: dict[str, dict[str, Any]] = {}
    for label, deq, fast, extra in configs:
        log(f"{label}: {runs} runs of {PROMPT_TOKENS}-token prefill + {DECODE_TOKENS} tokens")
        r = _child(opts.model, deq, runs, fast, extra)
        r["env"] = extra
        r["prefill"] = summary(r["prefill_tps"])
        r["decode"] = summary(r["decode_tps"])
        rows_data[label] = r
        if opts.verbose:
            print(f"  {label}: prefill {r['prefill_tps']}, decode {r['decode_tps']}, {r['blas']}")

    fast, ref, quant, single, no_forward, mlx_exp = (rows_data[c[0]] for c in configs)
    exp_x = ratio(fast["prefill"]["median"], mlx_exp["prefill"]["median"])
    forward_x = ratio(fast["decode"]["median"], no_forward["decode"]["median"])
    prefill_x = ratio(fast["prefill"]["median"], ref["prefill"]["median"])
    decode_x = ratio(fast["decode"]["median"], ref["decode"]["median"])
    deq_prefill_x = ratio(fast["prefill"]["median"], quant["prefill"]["median"])
    deq_decode_x = ratio(fast["decode"]["median"], quant["decode"]["median"])
    ok = None if prefill_x is None else prefill_x >= TARGET_PREFILL
    print_table(
        f"fastpath: {model_label(opts.model)}, raw mlx-lm, {PROMPT_TOKENS}-token prefill, "
        f"{DECODE_TOKENS} decoded, {runs} runs; median (min-max)",
        ["configuration", "prefill tok/s", "decode tok/s", "weights MB", "quantized", "BLAS"],
        [
            [
                label,
                fmt_stat(r["prefill"]),
                fmt_stat(r["decode"]),
                fmt(r["nbytes"] / 1e6, digits=0),
                "yes" if r["quantized"] else "no",
                r["blas"],
            ]
            for label, r in rows_data.items()
        ],
    )
    print_table(
        "fastpath: ratios",
        ["metric", "measured", "target", "verdict"],
        [
            [
                "prefill, OpenBLAS / reference BLAS",
                fmt(prefill_x, "x"),
                f">= {TARGET_PREFILL:.0f}x",
                verdict(ok),
            ],
            ["decode, OpenBLAS / reference BLAS", fmt(decode_x, "x"), "", ""],
            ["prefill, float32 / quantized", fmt(deq_prefill_x, "x", 2), "> 1: dequantize", ""],
            ["decode, float32 / quantized", fmt(deq_decode_x, "x", 2), "> 1: dequantize", ""],
            ["decode, few-row kernel / OpenBLAS sgemm", fmt(forward_x, "x", 2), "> 1", ""],
            ["prefill, mlxd's exp / MLX's exp", fmt(exp_x, "x", 2), "> 1", ""],
            [
                "decode, OpenBLAS all threads / 1 thread",
                fmt(ratio(fast["decode"]["median"], single["decode"]["median"]), "x", 2),
                "",
                "",
            ],
        ],
    )
    result = {
        "name": "fastpath",
        "machine": info,
        "params": {
            "model": opts.model,
            "runs": runs,
            "prompt_tokens": PROMPT_TOKENS,
            "decode_tokens": DECODE_TOKENS,
        },
        "summary": rows_data,
        "ratios": {
            "prefill_openblas_over_reference": prefill_x,
            "decode_openblas_over_reference": decode_x,
            "prefill_float_over_quantized": deq_prefill_x,
            "decode_float_over_quantized": deq_decode_x,
            "decode_gemv_forward_over_sgemm": forward_x,
            "prefill_mlxd_exp_over_mlx_exp": exp_x,
        },
        "targets": {"prefill_min": TARGET_PREFILL, "prefill_ok": ok},
    }
    path = write_result("fastpath", result)
    print(f"results: {path}")
    if opts.plot:
        from . import plots

        plots.distributions(
            "fastpath",
            f"Linux CPU fast path ({model_label(opts.model)})",
            {
                "prefill (tokens/s)": {k: v["prefill_tps"] for k, v in rows_data.items()},
                "decode (tokens/s)": {k: v["decode_tps"] for k, v in rows_data.items()},
            },
        )
    return result


if __name__ == "__main__":  # the child process
    p = argparse.ArgumentParser()
    p.add_argument("--worker", nargs=5, metavar=("SPEC", "DEQUANTIZE", "RUNS", "PROMPT", "DECODE"))
    a = p.parse_args()
    spec, deq, n, prompt, decode = a.worker
    print(json.dumps(_worker(spec, deq, int(n), int(prompt), int(decode))))
