"""concurrency: 1, 2, 4, 8 chat streams at once through one `mlxd serve`.

For each level all streams are sent together (each its own fresh prompt); aggregate tokens/s
is every generated token over the wall time from the first send to the last result, and each
stream's first-token time is measured from its own send. Then an inline completion is sent
while 3 long chats are generating, against the same inline request on an idle daemon.
Targets (issue 3): 4 streams >= 2x the aggregate tokens/s of one; the inline answer under load
within 2x its idle latency.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .common import (
    Daemon,
    Gen,
    Options,
    decode_prompt,
    fmt,
    fmt_stat,
    local_config,
    log,
    model_label,
    nonce,
    print_table,
    ratio,
    summary,
    verdict,
    write_result,
)

LEVELS = (1, 2, 4, 8)
DEFAULT_RUNS = 2
DEFAULT_MAX_TOKENS = 32
TARGET_SCALING = 2.0  # 4 streams vs 1
TARGET_INLINE = 2.0  # inline latency under 3 chats vs idle
LOAD_CHATS = 3
LOAD_MAX_TOKENS = 256

# A single-line context (code after the cursor): the completion stops at the line's end.
INLINE_TEXT = "def add(a, b):\n    return a + b\n\n\nprint(add(1, ))\n"
INLINE_POS = (4, 13)  # after "print(add(1, "


async def _level(daemon: Daemon, n: int, max_tokens: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    gens: list[Gen] = await asyncio.gather(
        *(daemon.chat(decode_prompt(nonce()), max_tokens) for _ in range(n))
    )
    wall = time.perf_counter() - t0
    errors = [g.error for g in gens if g.error]
    if errors:
        raise RuntimeError(f"{len(errors)} of {n} streams failed: {errors[0]}")
    tokens = sum(g.completion_tokens for g in gens)
    return {
        "streams": n,
        "wall_s": wall,
        "tokens": tokens,
        "aggregate_tps": tokens / wall,
        "first_token_ms": [g.first_token_ms for g in gens],
        "total_ms": [g.total_s * 1000 for g in gens],
    }


class Inline:
    """textDocument/inlineCompletion on a fresh document each time (no cached suggestion)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.count = 0

    async def latency_ms(self) -> tuple[float, int]:
        self.count += 1
        uri = f"file:///bench/inline/d{self.count:04d}.py"
        client = self.daemon.client
        client.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": uri,
                    "languageId": "python",
                    "version": 1,
                    "text": INLINE_TEXT,
                }
            },
        )
        t0 = time.perf_counter()
        r = await client.request(
            "textDocument/inlineCompletion",
            {
                "textDocument": {"uri": uri},
                "position": {"line": INLINE_POS[0], "character": INLINE_POS[1]},
                "context": {"triggerKind": 2},
            },
        )
        ms = (time.perf_counter() - t0) * 1000
        client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        items = (r or {}).get("items", []) if isinstance(r, dict) else (r or [])
        return ms, len(items)


async def _inline_under_load(daemon: Daemon, inline: Inline) -> dict[str, Any]:
    """Start 3 long chats; once the model is generating for them, ask for an inline item."""
    started = asyncio.Event()
    tasks = [
        asyncio.ensure_future(
            daemon.chat(
                decode_prompt(nonce()),
                LOAD_MAX_TOKENS,
                on_delta=lambda _t, _d: started.set(),
            )
        )
        for _ in range(LOAD_CHATS)
    ]
    await asyncio.wait_for(started.wait(), 600)
    ms, items = await inline.latency_ms()
    busy = sum(not t.done() for t in tasks)
    for t in tasks:
        t.cancel()  # the client sends $/cancelRequest for each
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"latency_ms": ms, "items": items, "chats_still_running": busy}


async def run(opts: Options, info: dict[str, Any]) -> dict[str, Any]:
    runs = opts.n(DEFAULT_RUNS)
    max_tokens = opts.max_tokens or DEFAULT_MAX_TOKENS
    levels: dict[int, list[dict[str, Any]]] = {n: [] for n in LEVELS}
    inline_idle: list[float] = []
    inline_load: list[dict[str, Any]] = []
    async with Daemon(local_config(opts.model)) as daemon:
        await daemon.wait_ready()
        blas = daemon.blas()
        log(f"mlxd BLAS: {blas}")
        inline = Inline(daemon)
        for i in range(opts.warmup):
            await daemon.chat(decode_prompt(f"warm{i}"), max_tokens)
            await inline.latency_ms()
        for i in range(runs):
            order = LEVELS if i % 2 == 0 else tuple(reversed(LEVELS))
            for n in order:
                r = await _level(daemon, n, max_tokens)
                levels[n].append(r)
                if opts.verbose:
                    print(
                        f"  run {i + 1}, {n} streams: {r['aggregate_tps']:.1f} tok/s aggregate, "
                        f"first token {fmt(min(r['first_token_ms']))}-{fmt(max(r['first_token_ms']))} ms"
                    )
            idle_ms, _ = await inline.latency_ms()
            inline_idle.append(idle_ms)
            loaded = await _inline_under_load(daemon, inline)
            inline_load.append(loaded)
            if opts.verbose:
                print(
                    f"  run {i + 1}, inline: idle {idle_ms:.0f} ms, under 3 chats {loaded['latency_ms']:.0f} ms"
                )

    s: dict[int, dict[str, Any]] = {}
    for n, rs in levels.items():
        s[n] = {
            "aggregate_tps": summary([r["aggregate_tps"] for r in rs]),
            "first_token_ms": summary([x for r in rs for x in r["first_token_ms"]]),
            "wall_s": summary([r["wall_s"] for r in rs]),
        }
    one = s[1]["aggregate_tps"]["median"]
    scaling = {n: ratio(s[n]["aggregate_tps"]["median"], one) for n in LEVELS}
    idle = summary(inline_idle)
    load = summary([r["latency_ms"] for r in inline_load])
    inline_x = ratio(load["median"], idle["median"])
    ok_scaling = None if scaling[4] is None else scaling[4] >= TARGET_SCALING
    ok_inline = None if inline_x is None else inline_x <= TARGET_INLINE

    print_table(
        f"concurrency: {model_label(opts.model)}, greedy, max {max_tokens} tokens per stream, "
        f"{runs} runs; median (min-max)",
        [
            "streams",
            "aggregate tok/s",
            "vs 1 stream",
            "first token ms (all streams)",
            "p95 first token",
        ],
        [
            [
                n,
                fmt_stat(s[n]["aggregate_tps"]),
                fmt(scaling[n], "x", 2),
                fmt_stat(s[n]["first_token_ms"], digits=0),
                fmt(s[n]["first_token_ms"].get("p95"), digits=0),
            ]
            for n in LEVELS
        ],
    )
    print_table(
        "concurrency: targets",
        ["metric", "measured", "target", "verdict"],
        [
            [
                "aggregate tok/s, 4 streams / 1 stream",
                fmt(scaling[4], "x", 2),
                f">= {TARGET_SCALING:.0f}x",
                verdict(ok_scaling),
            ],
            [
                "inline latency, idle ms",
                fmt_stat(idle, digits=0),
                "",
                "",
            ],
            [
                f"inline latency during {LOAD_CHATS} chats, ms",
                fmt_stat(load, digits=0),
                "",
                "",
            ],
            [
                "inline under load / idle",
                fmt(inline_x, "x", 2),
                f"<= {TARGET_INLINE:.0f}x",
                verdict(ok_inline),
            ],
        ],
    )
    print("(inline latency is the whole inlineCompletion round trip: the ghost text appears then)")
    result = {
        "name": "concurrency",
        "machine": info,
        "params": {
            "model": opts.model,
            "runs": runs,
            "warmup": opts.warmup,
            "max_tokens": max_tokens,
            "levels": list(LEVELS),
            "load_chats": LOAD_CHATS,
        },
        "blas": {"mlxd": blas},
        "summary": {str(n): v for n, v in s.items()},
        "runs": {str(n): v for n, v in levels.items()},
        "inline": {"idle_ms": idle, "under_load_ms": load, "under_load_runs": inline_load},
        "ratios": {
            "aggregate_vs_one": {str(n): v for n, v in scaling.items()},
            "inline_load_over_idle": inline_x,
        },
        "targets": {
            "four_streams_min": TARGET_SCALING,
            "inline_load_max": TARGET_INLINE,
            "four_streams_ok": ok_scaling,
            "inline_ok": ok_inline,
        },
    }
    path = write_result("concurrency", result)
    print(f"results: {path}")
    if opts.plot:
        from . import plots

        plots.curves(
            "concurrency",
            f"concurrency ({model_label(opts.model)})",
            list(LEVELS),
            {
                "aggregate tokens/s": {"mlxd": [s[n]["aggregate_tps"]["median"] for n in LEVELS]},
                "first token ms (median, p95)": {
                    "median": [s[n]["first_token_ms"]["median"] for n in LEVELS],
                    "p95 / max": [
                        s[n]["first_token_ms"].get("p95", s[n]["first_token_ms"]["max"])
                        for n in LEVELS
                    ],
                },
            },
            "concurrent streams",
        )
        plots.distributions(
            "concurrency-first-token",
            "first token per stream (ms)",
            {
                "first token (ms)": {
                    f"{n} streams": s[n]["first_token_ms"]["values"] for n in LEVELS
                }
            },
        )
    return result
