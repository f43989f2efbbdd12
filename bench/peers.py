"""peers: one chat request through mlxd, mlx_lm.server and llama.cpp, on the same model.

- mlxd: `mlxd serve` over stdio (LSP), as an editor talks to it.
- mlx_lm.server: HTTP SSE on loopback (/v1/chat/completions, stream) on the weights mlxd runs
  (the embedded GGUF as mlxd loads it, written out as an mlx-lm directory once).
- llama.cpp: llama-cpp-python's bindings, in this process (no IPC, which favours it slightly),
  on the embedded GGUF file itself (Q4_1, llama.cpp's native quantized kernels), all cores.
  Optional: `make bench-peers` installs it; without it that row says "skipped".

Every run uses a fresh prompt (tag at its start) on every side; runs rotate the order.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .common import (
    EMBEDDED,
    Daemon,
    Gen,
    MlxLmServer,
    Options,
    decode_prompt,
    export_mlx_dir,
    fmt,
    fmt_stat,
    local_config,
    log,
    model_label,
    nonce,
    print_table,
    ratio,
    settle,
    summary,
    write_result,
)

DEFAULT_RUNS = 3
DEFAULT_MAX_TOKENS = 64


class LlamaCpp:
    """llama.cpp through llama-cpp-python's high-level API, greedy, streamed."""

    def __init__(self, gguf: Path) -> None:
        from llama_cpp import Llama

        t0 = time.perf_counter()
        self.llm = Llama(
            model_path=str(gguf),
            n_ctx=4096,
            n_threads=os.cpu_count() or 1,
            n_threads_batch=os.cpu_count() or 1,
            verbose=False,
        )
        self.load_s = time.perf_counter() - t0

    async def chat(self, messages: list[dict[str, str]], max_tokens: int) -> Gen:
        t0 = time.perf_counter()
        first = None
        n = 0
        parts: list[str] = []
        for chunk in self.llm.create_chat_completion(
            messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True
        ):
            text = chunk["choices"][0]["delta"].get("content")
            if text:
                if first is None:
                    first = time.perf_counter() - t0
                n += 1  # llama-cpp-python streams one chunk per token
                parts.append(text)
        return Gen(first, time.perf_counter() - t0, n, text="".join(parts), backend="llama.cpp")


def llama_cpp_status() -> str | None:
    """None when importable, else why not."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return "llama-cpp-python is not installed (run `make bench-peers`)"
    except Exception as exc:  # a broken native build
        return f"llama-cpp-python does not load: {type(exc).__name__}: {exc}"
    return None


def _gguf_for(spec: str) -> Path | None:
    if spec == EMBEDDED:
        from mlxd.models import embedded_model_path

        return embedded_model_path()
    path = Path(spec)
    return path if path.suffix == ".gguf" and path.is_file() else None


async def run(opts: Options, info: dict[str, Any]) -> dict[str, Any]:
    runs = opts.n(DEFAULT_RUNS)
    max_tokens = opts.max_tokens or DEFAULT_MAX_TOKENS
    model_dir = export_mlx_dir(opts.model)
    gguf = _gguf_for(opts.model)
    skipped: dict[str, str] = {}
    llama: LlamaCpp | None = None
    if gguf is None:
        skipped["llama.cpp"] = f"no GGUF file for {opts.model} (llama.cpp needs one)"
    elif (why := llama_cpp_status()) is not None:
        skipped["llama.cpp"] = why
    else:
        log(f"loading {gguf.name} into llama.cpp")
        llama = LlamaCpp(gguf)
    if "llama.cpp" in skipped:
        print(f"llama.cpp: skipped: {skipped['llama.cpp']}")

    gens: dict[str, list[Gen]] = {"mlxd": [], "mlx_lm.server": []}
    if llama is not None:
        gens["llama.cpp"] = []
    log("starting mlxd serve and mlx_lm.server")
    async with Daemon(local_config(opts.model)) as daemon, MlxLmServer(model_dir) as server:
        await daemon.wait_ready()
        sides: dict[str, Any] = {"mlxd": daemon, "mlx_lm.server": server}
        if llama is not None:
            sides["llama.cpp"] = llama
        blas = {"mlxd": daemon.blas(), "mlx_lm.server": server.blas()}
        if llama is not None:
            blas["llama.cpp"] = "ggml CPU kernels (Q4_1)"
        for i in range(opts.warmup):
            for side in sides.values():
                await side.chat(decode_prompt(f"warm{i}"), max_tokens)
        names = list(sides)
        for i in range(runs):
            msgs = decode_prompt(nonce())
            for name in names[i % len(names) :] + names[: i % len(names)]:
                await settle()
                g = await sides[name].chat(msgs, max_tokens)
                if g.error:
                    raise RuntimeError(f"{name}: {g.error}")
                gens[name].append(g)
                if opts.verbose:
                    print(
                        f"  run {i + 1} {name}: first {fmt(g.first_token_ms)} ms, "
                        f"{fmt(g.decode_tps)} tok/s, {g.completion_tokens} tokens"
                    )

    s = {
        name: {
            "first_token_ms": summary([g.first_token_ms for g in gs]),
            "decode_tps": summary([g.decode_tps for g in gs]),
            "completion_tokens": summary([g.completion_tokens for g in gs]),
        }
        for name, gs in gens.items()
    }
    base = s["mlxd"]
    rows = []
    ratios: dict[str, Any] = {}
    for name, st in s.items():
        first_x = ratio(st["first_token_ms"]["median"], base["first_token_ms"]["median"])
        decode_x = ratio(base["decode_tps"]["median"], st["decode_tps"]["median"])
        if name != "mlxd":
            ratios[name] = {
                "peer_first_token_over_mlxd": first_x,
                "mlxd_decode_over_peer": decode_x,
            }
        rows.append(
            [
                name,
                fmt_stat(st["first_token_ms"], digits=0),
                fmt_stat(st["decode_tps"]),
                fmt(st["completion_tokens"]["median"], digits=0),
                "1.00x" if name == "mlxd" else fmt(first_x, "x", 2),
                "1.00x" if name == "mlxd" else fmt(decode_x, "x", 2),
                blas[name],
            ]
        )
    for name, why in skipped.items():
        rows.append([name, "skipped", "", "", "", "", why])
    print_table(
        f"peers: {model_label(opts.model)}, greedy, max {max_tokens} tokens, {runs} runs; "
        "median (min-max)",
        [
            "server",
            "first token ms",
            "decode tok/s",
            "gen tok",
            "peer/mlxd first",
            "mlxd/peer decode",
            "BLAS / kernels",
        ],
        rows,
    )
    print("(peer/mlxd first > 1: mlxd answers sooner; mlxd/peer decode > 1: mlxd decodes faster)")
    result = {
        "name": "peers",
        "machine": info,
        "params": {
            "model": opts.model,
            "mlx_lm_server_model_dir": str(model_dir),
            "gguf": str(gguf) if gguf else None,
            "runs": runs,
            "warmup": opts.warmup,
            "max_tokens": max_tokens,
        },
        "blas": blas,
        "skipped": skipped,
        "summary": s,
        "ratios": ratios,
    }
    path = write_result("peers", result)
    print(f"results: {path}")
    if opts.plot:
        from . import plots

        plots.distributions(
            "peers",
            f"peers ({model_label(opts.model)})",
            {
                "first token (ms)": {n: s[n]["first_token_ms"]["values"] for n in s},
                "decode (tokens/s)": {n: s[n]["decode_tps"]["values"] for n in s},
            },
        )
    return result
