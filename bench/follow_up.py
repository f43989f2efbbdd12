"""follow-up: KV-cache reuse on a follow-up chat turn, mlxd vs mlx_lm.server.

Each run sends a cold ~1500-token prompt (a real source file from this repo, with a fresh tag
at its very start so no cache holds it), then the follow-up turn: the same conversation plus
the assistant's answer and a ~20-token question. The follow-up's first token should come much
sooner, because only the new tokens need prefilling. The same pair goes to mlx_lm.server (its
own prompt cache) on the same weights. Targets (issue 3): follow-up >= 5x faster than cold,
and mlxd's follow-up not slower than mlx_lm.server's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import (
    Daemon,
    Gen,
    MlxLmServer,
    Options,
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
    source_text,
    stats_delta,
    summary,
    verdict,
    write_result,
)

DEFAULT_RUNS = 3
DEFAULT_MAX_TOKENS = 8
PROMPT_TOKENS = 1500
SOURCE = "daemon/mlxd/router/core.py"
QUESTION = "Which method decides when to fall back to the next backend? Answer in one sentence."
TARGET_SPEEDUP = 5.0


def _document(tokenizer: Any, target: int) -> str:
    """Lines of a real source file (repeated if short) until the cold prompt is ~`target`
    tokens with its chat template."""
    lines = source_text(SOURCE).splitlines()
    chosen: list[str] = []
    i = 0
    while True:
        candidate = chosen + [lines[i % len(lines)]]
        n = len(tokenizer.encode(_render(tokenizer, _cold("00000000", "\n".join(candidate)))))
        if n > target:
            break
        chosen = candidate
        i += 1
    return "\n".join(chosen)


def _render(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _cold(tag: str, doc: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": f"[{tag}] You review Python code."},
        {"role": "user", "content": f"Here is {SOURCE}:\n```python\n{doc}\n```\nWhat does it do?"},
    ]


def _follow(cold: list[dict[str, str]], answer: str) -> list[dict[str, str]]:
    return [*cold, {"role": "assistant", "content": answer}, {"role": "user", "content": QUESTION}]


async def _timed(side: Any, messages: list[dict[str, str]], max_tokens: int) -> Gen:
    """One request; for mlxd also the prompt tokens it took from its KV cache (mlxd/stats,
    read outside the timed window)."""
    before = await side.stats() if isinstance(side, Daemon) else None
    await settle()
    g = await side.chat(messages, max_tokens)
    if g.error:
        raise RuntimeError(f"request failed: {g.error}")
    if before is not None:
        delta = stats_delta(before, await side.stats())
        g.server["reused_prompt_tokens"] = delta.get("local.cachedPromptTokens")
    return g


async def _pair(side: Any, doc: str, max_tokens: int) -> tuple[Gen, Gen]:
    cold = _cold(nonce(), doc)
    first = await _timed(side, cold, max_tokens)
    second = await _timed(side, _follow(cold, first.text), max_tokens)
    return first, second


def _stats(pairs: list[tuple[Gen, Gen]]) -> dict[str, Any]:
    return {
        "cold_first_token_ms": summary([c.first_token_ms for c, _ in pairs]),
        "follow_first_token_ms": summary([f.first_token_ms for _, f in pairs]),
        "speedup": summary(
            [
                c.first_token_ms / f.first_token_ms
                for c, f in pairs
                if c.first_token_ms and f.first_token_ms
            ]
        ),
        "cold_prompt_tokens": summary([c.prompt_tokens for c, _ in pairs]),
        "follow_prompt_tokens": summary([f.prompt_tokens for _, f in pairs]),
        "cold_reused_tokens": summary([c.server.get("reused_prompt_tokens") for c, _ in pairs]),
        "follow_reused_tokens": summary([f.server.get("reused_prompt_tokens") for _, f in pairs]),
    }


async def run(opts: Options, info: dict[str, Any]) -> dict[str, Any]:
    runs = opts.n(DEFAULT_RUNS)
    max_tokens = opts.max_tokens or DEFAULT_MAX_TOKENS
    model_dir = export_mlx_dir(opts.model)
    from mlx_lm.utils import load_tokenizer

    doc = _document(load_tokenizer(Path(model_dir)), PROMPT_TOKENS)
    pairs: dict[str, list[tuple[Gen, Gen]]] = {"mlxd": [], "mlx_lm.server": []}
    log(f"starting mlxd serve and mlx_lm.server ({model_dir})")
    async with Daemon(local_config(opts.model)) as daemon, MlxLmServer(model_dir) as server:
        await daemon.wait_ready()
        blas = {"mlxd": daemon.blas(), "mlx_lm.server": server.blas()}
        log(f"BLAS: mlxd {blas['mlxd']}; mlx_lm.server {blas['mlx_lm.server']}")
        sides = {"mlxd": daemon, "mlx_lm.server": server}
        short = [{"role": "user", "content": "Say hello."}]
        for _ in range(opts.warmup):
            for side in sides.values():
                await side.chat(short, max_tokens)
        for i in range(runs):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for name in order:
                cold, follow = await _pair(sides[name], doc, max_tokens)
                pairs[name].append((cold, follow))
                if opts.verbose:
                    print(
                        f"  run {i + 1} {name}: cold {fmt(cold.first_token_ms)} ms "
                        f"({cold.prompt_tokens} tok), follow-up {fmt(follow.first_token_ms)} ms "
                        f"({follow.prompt_tokens} tok)"
                    )

    s = {name: _stats(p) for name, p in pairs.items()}
    m, p = s["mlxd"], s["mlx_lm.server"]
    speedup = ratio(m["cold_first_token_ms"]["median"], m["follow_first_token_ms"]["median"])
    peer_speedup = ratio(p["cold_first_token_ms"]["median"], p["follow_first_token_ms"]["median"])
    vs_peer = ratio(m["follow_first_token_ms"]["median"], p["follow_first_token_ms"]["median"])
    ok_speedup = None if speedup is None else speedup >= TARGET_SPEEDUP
    ok_peer = None if vs_peer is None else vs_peer <= 1.0

    rows = []
    for name in pairs:
        st = s[name]
        rows.append(
            [
                name,
                fmt_stat(st["cold_first_token_ms"], digits=0),
                fmt_stat(st["follow_first_token_ms"], digits=0),
                fmt(
                    ratio(
                        st["cold_first_token_ms"]["median"], st["follow_first_token_ms"]["median"]
                    ),
                    "x",
                ),
                f"{fmt(st['cold_prompt_tokens']['median'], digits=0)} -> "
                f"{fmt(st['follow_prompt_tokens']['median'], digits=0)}",
                f"{fmt(st['cold_reused_tokens']['median'], digits=0)} / "
                f"{fmt(st['follow_reused_tokens']['median'], digits=0)}",
                blas[name],
            ]
        )
    print_table(
        f"follow-up: {model_label(opts.model)}, ~{PROMPT_TOKENS}-token prompt then a follow-up "
        f"turn, max {max_tokens} tokens, {runs} runs; first token ms, median (min-max)",
        ["server", "cold", "follow-up", "speed-up", "prompt tokens", "from KV cache", "BLAS"],
        rows,
    )
    print_table(
        "follow-up: targets",
        ["metric", "measured", "target", "verdict"],
        [
            [
                "mlxd follow-up speed-up (cold / follow-up)",
                fmt(speedup, "x"),
                f">= {TARGET_SPEEDUP:.0f}x",
                verdict(ok_speedup),
            ],
            [
                "mlxd / mlx_lm.server follow-up first token",
                fmt(vs_peer, "x", 2),
                "<= 1.00x",
                verdict(ok_peer),
            ],
            [
                "mlxd / mlx_lm.server cold first token",
                fmt(
                    ratio(m["cold_first_token_ms"]["median"], p["cold_first_token_ms"]["median"]),
                    "x",
                    2,
                ),
                "",
                "",
            ],
        ],
    )
    result = {
        "name": "follow-up",
        "machine": info,
        "params": {
            "model": opts.model,
            "mlx_lm_server_model_dir": str(model_dir),
            "runs": runs,
            "warmup": opts.warmup,
            "max_tokens": max_tokens,
            "prompt_tokens_target": PROMPT_TOKENS,
            "source": SOURCE,
        },
        "blas": blas,
        "summary": s,
        "runs": {
            name: [
                {
                    "cold_first_token_ms": c.first_token_ms,
                    "follow_first_token_ms": f.first_token_ms,
                    "cold_prompt_tokens": c.prompt_tokens,
                    "follow_prompt_tokens": f.prompt_tokens,
                    "server": {"cold": c.server, "follow": f.server},
                }
                for c, f in p_
            ]
            for name, p_ in pairs.items()
        },
        "ratios": {
            "mlxd_speedup": speedup,
            "mlx_lm_server_speedup": peer_speedup,
            "mlxd_over_mlx_lm_server_follow_first_token": vs_peer,
        },
        "targets": {
            "speedup_min": TARGET_SPEEDUP,
            "vs_mlx_lm_server_max": 1.0,
            "speedup_ok": ok_speedup,
            "vs_mlx_lm_server_ok": ok_peer,
        },
    }
    path = write_result("follow-up", result)
    print(f"results: {path}")
    if opts.plot:
        from . import plots

        plots.distributions(
            "follow-up",
            f"follow-up: KV reuse ({model_label(opts.model)})",
            {
                "cold first token (ms)": {n: s[n]["cold_first_token_ms"]["values"] for n in s},
                "follow-up first token (ms)": {
                    n: s[n]["follow_first_token_ms"]["values"] for n in s
                },
            },
        )
    return result
