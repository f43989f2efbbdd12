"""shared: one shared daemon for every editor window (issue #19), against in-process serving.

- initialize latency: from spawning `mlxd serve` to its `initialize` answer, in-process vs
  through the forwarder with the shared daemon up (target <= 300 ms);
- first chat token: window 1 cold (the model loads), window 1 warm, then windows opened on the
  warm daemon: each one's first request against window 1's just before it (paired; target:
  median <= +50 ms: no second load);
- forwarding's cost: the same request alternately through window 1 and a session of the same
  daemon spoken to on its socket directly (bench/common.Direct): the paired difference of the
  first token's transport (the client's first token less the daemon's own firstTokenMs:
  target <= 2 ms) and the decode ratio (>= 0.97); against an in-process daemon (another
  process, with its own speed) the difference is shown with both sides' OpenBLAS threads;
- window 1's inline latency while window 2 streams a chat, against window 1 alone (target
  <= 1.2x);
- memory: summed PSS of every process of 1, 2 and 3 windows (in-process: one `mlxd serve` per
  window; shared: the forwarders plus the daemon). Target: 3 shared windows <= 1.2x one.

`--quick`: the inline-while-streaming measure only.

The shared daemon runs in a runtime directory of this benchmark's own and is stopped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from typing import Any

from tests.kit import private_runtime

from .common import (
    FORWARDING_PAIRS,
    Daemon,
    Direct,
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
    settle,
    shared_env,
    summary,
    verdict,
    write_result,
)
from .concurrency import LOAD_MAX_TOKENS, Inline

DEFAULT_RUNS = 5
TOKENS = 16
INLINE_TOKENS = 8
ROUND_TRIPS = 50
NEW_WINDOWS = 5  # windows opened on the warm daemon, one first request each
PROMPT = [{"role": "user", "content": "Write a Python function that reverses a string."}]


def pss(pid: int) -> int:
    """Proportional set size in bytes (shared pages split among their users)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


async def _init_latency(config: dict[str, Any], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    async with Daemon(config, env=env):
        return time.perf_counter() - t0


async def _windows(config: dict[str, Any], env: dict[str, str], n: int, shared: bool) -> int:
    """Summed PSS of n windows, each having served one chat."""
    async with contextlib.AsyncExitStack() as stack:
        windows = [await stack.enter_async_context(Daemon(config, env=env)) for _ in range(n)]
        for w in windows:
            await w.wait_ready()
            await w.chat(PROMPT, 4)
        pids = {w.pid for w in windows}
        if shared:
            pids.add((await windows[0].request("mlxd/stats", {}))["server"]["pid"])
        return sum(pss(p) for p in pids)


async def _warm_gen(window: Daemon, tokens: int) -> Any:
    await settle()
    return await window.chat(PROMPT, tokens)


async def _paired(a: Daemon, b: Daemon, runs: int, tokens: int) -> list[tuple[Any, Any]]:
    """The same request through `a` and `b`, `runs` times, which side goes first alternating:
    the second meets what the first left behind (its BLAS threads spinning, its log writes)."""
    pairs = []
    for i in range(runs):
        if i % 2 == 0:
            first_a = await _warm_gen(a, tokens)
            pairs.append((first_a, await _warm_gen(b, tokens)))
        else:
            first_b = await _warm_gen(b, tokens)
            pairs.append((await _warm_gen(a, tokens), first_b))
    return pairs


def _overhead(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """Paired runs (a, b) of the same request: the medians of b's first-token time less a's,
    of b's decode rate over a's, and of b's transport (the client's first token less the
    daemon's own firstTokenMs: framing, the hops, dispatch) less a's."""
    both = [(a, b) for a, b in pairs if a.first_token_ms is not None and b.first_token_ms]
    firsts = [b.first_token_ms - a.first_token_ms for a, b in both]
    transport = [_transport(b) - _transport(a) for a, b in both]
    rates = [ratio(b.decode_tps, a.decode_tps) for a, b in pairs]
    rates = [x for x in rates if x is not None]
    return {
        "first_token_ms": summary(firsts)["median"],
        "decode_ratio": summary(rates)["median"],
        "transport_ms": summary(transport)["median"],
        "first_token_diffs_ms": firsts,
        "decode_ratios": rates,
        "transport_diffs_ms": transport,
        "pairs": len(both),
    }


def _transport(g: Any) -> float:
    return g.first_token_ms - g.server["timings"]["firstTokenMs"]


async def _blas_threads(window: Daemon) -> Any:
    return (await window.request("mlxd/stats", {})).get("blasThreads")


async def run(opts: Options, info: dict[str, Any]) -> dict[str, Any]:
    runs = opts.n(DEFAULT_RUNS)
    tokens = opts.max_tokens or TOKENS
    # Inline: a few tokens, no work ahead, no time cap: an answer cut at inline.max_ms measures
    # the cap, idle or not (on 2 loaded cores the embedded model's 8 tokens take ~1.1 s).
    inline = {"max_tokens": INLINE_TOKENS, "background": False, "max_ms": 60_000}
    config = local_config(opts.model, shared={"idle_exit_s": 600}, inline=inline)
    with private_runtime("mlxd-bench-rt-") as rt:  # stops the daemon at the end
        if opts.quick:
            return await _quick(opts, info, runs, config, shared_env(rt), {})
        return await _measure(opts, info, runs, tokens, config, shared_env(rt), {})


async def _quick(opts, info, runs, config, shared_env, alone_env) -> dict[str, Any]:
    """`--quick`: window A's inline latency while window B streams a chat vs idle, only
    (two windows of one shared daemon, then two in-process windows)."""
    r: dict[str, Any] = {}
    for side, env in (("inline", shared_env), ("inline_alone", alone_env)):
        log(f"inline latency, idle and while another window streams ({side})")
        async with Daemon(config, env=env) as a, Daemon(config, env=env) as b:
            await a.wait_ready()
            await b.wait_ready()
            r[side] = await _inline_while_streaming(a, b, runs)
    rows = [
        [
            f"window 1 inline, idle / window 2 streaming (ms), {side}",
            f"{fmt(summary(r[side]['idle_ms'])['median'])} / "
            f"{fmt(summary(r[side]['while_streaming_ms'])['median'])}",
            f"{fmt(r[side]['ratio'], 'x', 2)}, "
            f"{r[side]['b_still_streaming']}/{runs} still streaming",
        ]
        for side in r
    ]
    print_table(
        f"shared daemon, quick — {model_label(opts.model)}", ["measure", "value", "ratio"], rows
    )
    data = {"machine": info, "model": opts.model, "quick": True, **r}
    data["targets_met"] = {
        "inline": r["inline"]["ratio"] is not None and r["inline"]["ratio"] <= 1.2
    }
    write_result("shared", data)
    return data


async def _measure(opts, info, runs, tokens, config, shared_env, alone_env) -> dict[str, Any]:
    pairs = opts.n(FORWARDING_PAIRS)  # forwarding's verdict: a median of enough pairs
    r = await _shared_windows(config, shared_env, alone_env, runs, tokens, pairs)
    log("inline latency, idle and while another window streams, in-process (two processes)")
    async with Daemon(config, env=alone_env) as a, Daemon(config, env=alone_env) as b:
        await a.wait_ready()
        await b.wait_ready()
        r["inline_alone"] = await _inline_while_streaming(a, b, runs)
    log("initialize latency (in-process)")
    r["init_alone"] = [await _init_latency(config, alone_env) * 1000 for _ in range(runs)]
    r["memory"] = {"in-process": [], "shared": []}
    for n in (1, 2, 3):
        log(f"memory, {n} window(s)")
        r["memory"]["in-process"].append(await _windows(config, alone_env, n, False))
        _stop_daemon(shared_env)  # a fresh daemon, as fresh as the in-process windows
        r["memory"]["shared"].append(await _windows(config, shared_env, n, True))
    data = {"machine": info, "model": opts.model, "tokens": tokens, **r}
    data["targets_met"] = _report(opts, tokens, r)
    write_result("shared", data)
    return data


async def _shared_windows(
    config: dict[str, Any],
    env: dict[str, str],
    alone_env: dict[str, str],
    runs: int,
    tokens: int,
    pairs: int,
) -> dict[str, Any]:
    """Window 1 starts the daemon and loads; window 2 arrives once it is warm. Then the same
    request alternately through window 1 and a direct session of the same daemon (paired:
    forwarding's cost), then window 1 and an in-process daemon."""
    async with Daemon(config, env=env) as w1:
        await w1.wait_ready()
        r: dict[str, Any] = {"cold": (await w1.chat(PROMPT, tokens)).first_token_ms}
        r["warm_window1"] = [(await _warm_gen(w1, tokens)).first_token_ms for _ in range(runs)]
        # A new window's first request against window 1's, just before it (paired: on a busy
        # machine the warm first token drifts by more than the 50 ms allowed between runs).
        r["new_windows"] = [await _new_window(config, env, w1, tokens) for _ in range(NEW_WINDOWS)]
        async with Daemon(config, env=env) as w2:
            later = [(await _warm_gen(w2, tokens)).first_token_ms for _ in range(runs)]
            r["window2_first"], r["window2_later"] = later[0], later[1:]
            r["model_loads"] = (await w2.request("mlxd/stats", {}))["modelLoads"]
        # Forwarding's cost: window 1 against a session of the same daemon without the
        # forwarder (same process, model, BLAS threads, KV cache: only the forwarder differs).
        async with Direct(config, env=env) as direct:
            await direct.chat(PROMPT, tokens)
            r["forwarding"] = _overhead(await _paired(direct, w1, pairs, tokens))
            r["round_trip"] = await _round_trips(direct, w1, ROUND_TRIPS)
        # Against another process (in-process serving, its own model copy): that process's
        # own speed is in the difference too (its OpenBLAS threads follow the load with
        # hysteresis, blas_threads.py), so it is shown, not judged.
        async with Daemon(config, env=alone_env) as solo:
            await solo.wait_ready()
            await solo.chat(PROMPT, tokens)
            r["overhead"] = _overhead(await _paired(solo, w1, runs, tokens))
            r["overhead"]["blas_threads"] = [await _blas_threads(solo), await _blas_threads(w1)]
        log("window 1's inline latency, idle and while window 2 streams a chat")
        async with Daemon(config, env=env) as w2:
            r["inline"] = await _inline_while_streaming(w1, w2, runs)
        log("initialize latency (daemon up)")
        r["init_forwarder"] = [await _init_latency(config, env) * 1000 for _ in range(runs)]
    return r


async def _new_window(
    config: dict[str, Any], env: dict[str, str], w1: Daemon, tokens: int
) -> dict[str, float | None]:
    """A window opened on the warm daemon: window 1's first token for the request, then the
    new window's first (ms)."""
    async with Daemon(config, env=env) as new:
        before = (await _warm_gen(w1, tokens)).first_token_ms
        return {"window1": before, "new_window": (await _warm_gen(new, tokens)).first_token_ms}


def _stop_daemon(env: dict[str, str]) -> None:
    """`mlxd stop` for the shared daemon of `env` (it waits until the daemon has exited)."""
    cmd = [sys.executable, "-m", "mlxd", "stop"]
    subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, timeout=60, check=False)


async def _round_trips(direct: Daemon, forwarded: Daemon, n: int) -> dict[str, Any]:
    """A trivial request's round trip (`mlxd/models`), alternately straight to the daemon's
    socket and through the forwarder: the forwarding hop's own cost, without the model's
    noise. Medians in ms."""
    times: dict[str, list[float]] = {"direct": [], "forwarded": []}
    for _ in range(n):
        for side, window in (("direct", direct), ("forwarded", forwarded)):
            t0 = time.perf_counter()
            await window.request("mlxd/models", {})
            times[side].append((time.perf_counter() - t0) * 1000)
    diffs = [b - a for a, b in zip(times["direct"], times["forwarded"], strict=True)]
    return {
        "direct_ms": summary(times["direct"])["median"],
        "forwarded_ms": summary(times["forwarded"])["median"],
        "diff_ms": summary(diffs)["median"],
        "samples": times,
    }


async def _inline_while_streaming(a: Daemon, b: Daemon, runs: int) -> dict[str, Any]:
    """Window A's inline latency (a fresh document each time) alone, then while window B
    streams a long chat, alternating; the ratio of the medians (target <= 1.2x)."""
    inline = Inline(a)
    await inline.latency_ms()  # warm-up: the inline prompt's first prefill
    idle: list[float] = []
    busy: list[float] = []
    streaming = 0
    for _ in range(runs):
        await settle()
        idle.append((await inline.latency_ms())[0])
        started = asyncio.Event()
        chat = asyncio.ensure_future(
            b.chat(decode_prompt(nonce()), LOAD_MAX_TOKENS, on_delta=_setter(started))
        )
        await asyncio.wait_for(started.wait(), 600)
        busy.append((await inline.latency_ms())[0])
        streaming += not chat.done()  # B was still streaming when A's answer came
        chat.cancel()  # the client sends $/cancelRequest
        await asyncio.gather(chat, return_exceptions=True)
    return {
        "idle_ms": idle,
        "while_streaming_ms": busy,
        "b_still_streaming": streaming,
        "ratio": ratio(summary(busy)["median"], summary(idle)["median"]),
    }


def _setter(event: asyncio.Event) -> Any:
    return lambda _token, _delta: event.set()


def _report(opts: Options, tokens: int, r: dict[str, Any]) -> dict[str, bool]:
    """Print the table; which targets were met."""
    warm, init, mem = summary(r["warm_window1"]), summary(r["init_forwarder"]), r["memory"]
    first_w2 = r["window2_first"]
    extra = summary(
        [p["new_window"] - p["window1"] for p in r["new_windows"] if None not in p.values()]
    )["median"]
    met = {"initialize": init["median"] <= 300, "second_window": extra is not None and extra <= 50}
    inl, solo, rt = r["inline"], r["inline_alone"], r["round_trip"]
    fwd, ovh = r["forwarding"], r["overhead"]
    # The forwarder adds its hops (the transport part); the rest of a first token's time is
    # the daemon's work, the same on both sides, whose noise is tens of ms on a busy machine.
    met["forwarding_first_token"] = fwd["transport_ms"] is not None and fwd["transport_ms"] <= 2
    met["forwarding_decode"] = fwd["decode_ratio"] is not None and fwd["decode_ratio"] >= 0.97
    met["inline"] = inl["ratio"] is not None and inl["ratio"] <= 1.2
    mem_ratio = ratio(mem["shared"][2], mem["shared"][0])
    met["memory"] = mem_ratio is not None and mem_ratio <= 1.2
    pss = [f"{mem['in-process'][i] / 1e6:.0f} / {mem['shared'][i] / 1e6:.0f}" for i in range(3)]
    rows = [
        ["initialize, in-process (ms)", fmt_stat(summary(r["init_alone"])), ""],
        ["initialize, via forwarder (ms)", fmt_stat(init), f"<= 300 {verdict(met['initialize'])}"],
        ["first token, window 1 cold (ms)", fmt(r["cold"]), ""],
        ["first token, window 1 warm (ms)", fmt_stat(warm), ""],
        ["first token, window 2 first (ms)", fmt(first_w2), ""],
        [
            f"first token, a new window's first - window 1's just before (ms, median of "
            f"{len(r['new_windows'])})",
            fmt(extra),
            f"<= 50 {verdict(met['second_window'])}",
        ],
        ["first token, window 2 later (ms)", fmt_stat(summary(r["window2_later"])), ""],
        ["model loads for 2 windows", r["model_loads"], "1"],
        [
            f"first token's transport, forwarded - direct to the daemon (ms, {fwd['pairs']} pairs)",
            fmt(fwd["transport_ms"], digits=2),
            f"<= 2 {verdict(met['forwarding_first_token'])}",
        ],
        [
            "first token, forwarded - direct (ms, paired; the daemon's noise too)",
            fmt(fwd["first_token_ms"]),
            "",
        ],
        [
            "decode, forwarded / direct",
            fmt(fwd["decode_ratio"], "x", 3),
            f">= 0.97 {verdict(met['forwarding_decode'])}",
        ],
        [
            f"round trip mlxd/models, direct / forwarded (ms, {ROUND_TRIPS} each)",
            f"{fmt(rt['direct_ms'], digits=2)} / {fmt(rt['forwarded_ms'], digits=2)}",
            f"+{fmt(rt['diff_ms'], digits=2)} paired",
        ],
        [
            "first token, shared - an in-process daemon (ms, paired; its own speed too)",
            fmt(ovh["first_token_ms"]),
            f"transport {fmt(ovh['transport_ms'], digits=2)}; BLAS threads "
            f"{ovh['blas_threads'][0]} / {ovh['blas_threads'][1]}",
        ],
        ["window 1 inline, idle (ms)", fmt_stat(summary(inl["idle_ms"])), ""],
        [
            "window 1 inline, window 2 streaming (ms)",
            fmt_stat(summary(inl["while_streaming_ms"])),
            f"{inl['b_still_streaming']}/{len(inl['idle_ms'])} still streaming",
        ],
        [
            "inline, streaming / idle",
            fmt(inl["ratio"], "x", 2),
            f"<= 1.2x {verdict(met['inline'])}",
        ],
        [
            "the same, in-process windows (ms idle / streaming)",
            f"{fmt(summary(solo['idle_ms'])['median'])} / "
            f"{fmt(summary(solo['while_streaming_ms'])['median'])}",
            fmt(solo["ratio"], "x", 2),
        ],
        *[[f"PSS {n} window(s), in-process / shared (MB)", pss[n - 1], ""] for n in (1, 2, 3)],
        ["PSS 3 shared windows / 1", fmt(mem_ratio, "x", 2), f"<= 1.2x {verdict(met['memory'])}"],
    ]
    print_table(
        f"shared daemon — {model_label(opts.model)}, {tokens} tokens",
        ["measure", "value", "target"],
        rows,
    )
    return met
