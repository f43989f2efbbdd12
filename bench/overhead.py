"""overhead: what going through `mlxd serve` (LSP over stdio, router, generation thread) costs
against calling `mlx_lm.stream_generate` in-process on the same model, prompt and settings.

Runs alternate between the two sides, each run with a fresh prompt (a tag at its start), so
both prefill the same tokens; the raw side reuses its KV cache the way mlxd does (only the few
chat-template tokens before the tag are shared between runs). Targets (issue 2): decode
tokens/s >= 0.97x raw, first-token overhead <= 20 ms. Then the in-process daemon alternates the
same way with `mlxd serve` forwarding to the shared daemon (issue #19; a runtime directory of the
benchmark's own, stopped at the end) and with a session of that same daemon spoken to on its
socket directly (common.Direct): forwarding's cost is forwarded against direct, paired in one
run (same process, model and OpenBLAS threads): the first token's transport <= +2 ms, decode
>= 0.97x. Forwarded against in-process is shown too: that compares two processes, whose own
speeds differ by tens of ms from run to run.
"""

from __future__ import annotations

from typing import Any

from tests.kit import private_runtime

from .common import (
    FORWARDING_PAIRS,
    Daemon,
    Direct,
    Gen,
    Options,
    RawModel,
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

DEFAULT_RUNS = 5
DEFAULT_MAX_TOKENS = 64
TARGET_DECODE = 0.97
TARGET_FIRST_MS = 20.0
# Issue #19: `mlxd serve` forwarding to the shared daemon, against serving in-process.
TARGET_FORWARD_DECODE = 0.97
TARGET_FORWARD_FIRST_MS = 2.0


async def _alternate(
    sides: dict[str, Any], opts: Options, runs: int, max_tokens: int, own: bool = False
) -> dict[str, list[Gen]]:
    """Each run's fresh prompt through every side, the order rotating from run to run (drift
    in machine load hits every side alike); warm-up runs first. Raw mlx-lm's chat is a plain
    call, the daemons' are coroutines. `own`: each side its own prompt of the run (the tag's
    last character differs), for sides that share a KV cache (two sessions of one daemon):
    the one to come second would otherwise find the prompt cached."""

    async def one(side: str, msgs: Any) -> Gen:
        await settle()
        out = sides[side](msgs, max_tokens)
        return await out if hasattr(out, "__await__") else out

    for i in range(opts.warmup):
        for side in sides:
            await one(side, decode_prompt(f"warm{i}"))
    gens: dict[str, list[Gen]] = {side: [] for side in sides}
    names = list(sides)
    for i in range(runs):
        tag = nonce()
        for side in names[i % len(names) :] + names[: i % len(names)]:
            g = await one(side, decode_prompt(f"{tag}{names.index(side)}" if own else tag))
            if g.error:
                raise RuntimeError(f"{side} chat failed: {g.error}")
            gens[side].append(g)
        if opts.verbose:
            print(
                f"  run {i + 1}: "
                + " | ".join(
                    f"{side} {fmt(gens[side][-1].first_token_ms)} ms "
                    f"{fmt(gens[side][-1].decode_tps)} tok/s"
                    for side in names
                )
            )
    return gens


def _forwarding(alone: list[Gen], shared: list[Gen]) -> dict[str, Any]:
    """Paired (same prompt, same run) first-token differences, differences of the first
    token's transport (the client's first token less the daemon's own firstTokenMs: what a
    forwarder's hops add; the rest is the daemon's work) and decode ratios, shared against
    `alone`; medians, and the verdicts against the targets (first token: on the transport,
    since the daemon's own time varies by tens of ms between runs on a busy machine)."""
    both = [
        (a, b)
        for a, b in zip(alone, shared, strict=True)
        if a.first_token_ms is not None and b.first_token_ms is not None
    ]
    firsts = [b.first_token_ms - a.first_token_ms for a, b in both]
    transport = [_transport(b) - _transport(a) for a, b in both]
    rates = [
        r for a, b in zip(alone, shared, strict=True) if (r := ratio(b.decode_tps, a.decode_tps))
    ]
    first, decode = summary(firsts)["median"], summary(rates)["median"]
    hops = summary(transport)["median"]
    return {
        "first_token_ms": first,
        "transport_ms": hops,
        "decode_ratio": decode,
        "first_token_diffs_ms": firsts,
        "transport_diffs_ms": transport,
        "decode_ratios": rates,
        "first_token_ok": None if hops is None else hops <= TARGET_FORWARD_FIRST_MS,
        "decode_ok": None if decode is None else decode >= TARGET_FORWARD_DECODE,
    }


def _transport(g: Gen) -> float:
    return g.first_token_ms - g.server["timings"]["firstTokenMs"]


def _row(g: Gen) -> dict[str, Any]:
    return {
        "first_token_ms": g.first_token_ms,
        "decode_tps": g.decode_tps,
        "total_s": g.total_s,
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.completion_tokens,
        "server": g.server,
    }


async def run(opts: Options, info: dict[str, Any]) -> dict[str, Any]:
    runs = opts.n(DEFAULT_RUNS)
    max_tokens = opts.max_tokens or DEFAULT_MAX_TOKENS
    log(f"loading {model_label(opts.model)} in-process (raw mlx-lm baseline)")
    raw = RawModel(opts.model)
    form = "quantized" if raw.lm.quantized else "float"
    log(f"weights: {form}, {raw.lm.nbytes / 1e6:.0f} MB (dequantize = auto, as mlxd decides it)")
    log("starting mlxd serve (loads the same model)")
    async with Daemon(local_config(opts.model)) as daemon:
        await daemon.wait_ready()
        blas = {"raw": info["blas"], "mlxd": daemon.blas()}
        log(f"BLAS: raw mlx-lm {blas['raw']}; mlxd {blas['mlxd']}")
        gens = await _alternate({"raw": raw.chat, "mlxd": daemon.chat}, opts, runs, max_tokens)
        # Then forwarding's cost: the same in-process daemon against `mlxd serve` forwarding to
        # a shared daemon, in runs of their own (the raw side's conditions stay as they were).
        log("starting mlxd serve forwarding to a shared daemon (loads the model)")
        with private_runtime("mlxd-bench-rt-") as rt:
            async with Daemon(local_config(opts.model), env=shared_env(rt)) as forwarded:
                await forwarded.wait_ready()
                # "direct": a session of the same shared daemon without the forwarder (same
                # process, OpenBLAS threads, KV cache): only the forwarder differs from it.
                async with Direct(local_config(opts.model), env=shared_env(rt)) as direct:
                    sides = {"mlxd": daemon.chat, "shared": forwarded.chat, "direct": direct.chat}
                    n_pairs = opts.n(FORWARDING_PAIRS)  # the verdict's median: enough pairs
                    pairs = await _alternate(sides, opts, n_pairs, max_tokens, own=True)
    raws, mlxds, shareds = gens["raw"], gens["mlxd"], pairs["shared"]
    forwarding = _forwarding(pairs["direct"], shareds)
    against_in_process = _forwarding(pairs["mlxd"], shareds)
    same = sum(r.text == m.text for r, m in zip(raws, mlxds, strict=True))
    s = {
        side: {
            "first_token_ms": summary([g.first_token_ms for g in gens]),
            "decode_tps": summary([g.decode_tps for g in gens]),
            "prompt_tokens": summary([g.prompt_tokens for g in gens]),
            "completion_tokens": summary([g.completion_tokens for g in gens]),
        }
        for side, gens in (("raw", raws), ("mlxd", mlxds), ("shared", shareds))
    }
    s["mlxd"]["server_first_token_ms"] = summary(
        [g.server["timings"]["firstTokenMs"] for g in mlxds]
    )
    paired = summary(
        [
            m.first_token_ms - r.first_token_ms
            for m, r in zip(mlxds, raws, strict=True)
            if m.first_token_ms is not None and r.first_token_ms is not None
        ]
    )
    decode_ratio = ratio(s["mlxd"]["decode_tps"]["median"], s["raw"]["decode_tps"]["median"])
    first_diff = None
    if s["mlxd"]["first_token_ms"]["median"] is not None:
        first_diff = s["mlxd"]["first_token_ms"]["median"] - s["raw"]["first_token_ms"]["median"]
    ok_decode = None if decode_ratio is None else decode_ratio >= TARGET_DECODE
    ok_first = None if paired["median"] is None else paired["median"] <= TARGET_FIRST_MS

    print_table(
        f"overhead: {model_label(opts.model)}, greedy, max {max_tokens} tokens, "
        f"{runs} runs ({n_pairs} for the shared daemon) after {opts.warmup} warm-up; "
        "median (min-max)",
        ["side", "first token ms", "decode tok/s", "prompt tok", "gen tok", "BLAS"],
        [
            [
                "raw mlx-lm (in-process)",
                fmt_stat(s["raw"]["first_token_ms"]),
                fmt_stat(s["raw"]["decode_tps"]),
                fmt(s["raw"]["prompt_tokens"]["median"], digits=0),
                fmt(s["raw"]["completion_tokens"]["median"], digits=0),
                blas["raw"],
            ],
            [
                "mlxd serve (LSP stdio)",
                fmt_stat(s["mlxd"]["first_token_ms"]),
                fmt_stat(s["mlxd"]["decode_tps"]),
                fmt(s["mlxd"]["prompt_tokens"]["median"], digits=0),
                fmt(s["mlxd"]["completion_tokens"]["median"], digits=0),
                blas["mlxd"],
            ],
            [
                "mlxd serve -> shared daemon",
                fmt_stat(s["shared"]["first_token_ms"]),
                fmt_stat(s["shared"]["decode_tps"]),
                fmt(s["shared"]["prompt_tokens"]["median"], digits=0),
                fmt(s["shared"]["completion_tokens"]["median"], digits=0),
                blas["mlxd"],
            ],
        ],
    )
    print_table(
        "overhead: mlxd vs raw",
        ["metric", "measured", "target", "verdict"],
        [
            [
                "decode tok/s, mlxd / raw (medians)",
                fmt(decode_ratio, "x", 3),
                f">= {TARGET_DECODE}x",
                verdict(ok_decode),
            ],
            [
                "first token, mlxd - raw (median of paired runs)",
                fmt(paired["median"], " ms") + f" [{fmt(paired['min'])}..{fmt(paired['max'])}]",
                f"<= {TARGET_FIRST_MS:.0f} ms",
                verdict(ok_first),
            ],
            ["first token, difference of medians", fmt(first_diff, " ms"), "", ""],
            [
                "mlxd's own firstTokenMs (server side)",
                fmt_stat(s["mlxd"]["server_first_token_ms"]),
                "",
                "",
            ],
            ["identical greedy text", f"{same}/{runs} runs", "", ""],
            [
                "decode tok/s, forwarded / direct to the daemon (median of paired ratios)",
                fmt(forwarding["decode_ratio"], "x", 3),
                f">= {TARGET_FORWARD_DECODE}x",
                verdict(forwarding["decode_ok"]),
            ],
            [
                f"first token's transport, forwarded - direct (median of {n_pairs} pairs)",
                fmt(forwarding["transport_ms"], " ms", 2),
                f"<= {TARGET_FORWARD_FIRST_MS:.0f} ms",
                verdict(forwarding["first_token_ok"]),
            ],
            [
                "first token, forwarded - direct (paired; the daemon's own noise too)",
                fmt(forwarding["first_token_ms"], " ms"),
                "",
                "",
            ],
            [
                "first token, shared - in-process (paired; another process: its speed too)",
                fmt(against_in_process["first_token_ms"], " ms"),
                f"transport {fmt(against_in_process['transport_ms'], ' ms', 2)}",
                "",
            ],
            [
                "decode tok/s, shared / in-process (median of paired ratios)",
                fmt(against_in_process["decode_ratio"], "x", 3),
                "",
                "",
            ],
        ],
    )
    result = {
        "name": "overhead",
        "machine": info,
        "params": {
            "model": opts.model,
            "weights": form,
            "runs": runs,
            "forwarding_pairs": n_pairs,
            "warmup": opts.warmup,
            "max_tokens": max_tokens,
        },
        "blas": blas,
        "summary": s,
        "runs": {
            "raw": [_row(g) for g in raws],
            "mlxd": [_row(g) for g in mlxds],
            "shared": [_row(g) for g in shareds],
            "mlxd_paired_with_shared": [_row(g) for g in pairs["mlxd"]],
            "direct_paired_with_shared": [_row(g) for g in pairs["direct"]],
        },
        "forwarding": forwarding,
        "shared_vs_in_process": against_in_process,
        "ratios": {
            "decode_mlxd_over_raw": decode_ratio,
            "first_token_overhead_ms_paired_median": paired["median"],
            "first_token_overhead_ms_paired": paired,
            "first_token_overhead_ms_of_medians": first_diff,
            "identical_text_runs": same,
        },
        "targets": {
            "decode_ratio_min": TARGET_DECODE,
            "first_token_overhead_ms_max": TARGET_FIRST_MS,
            "decode_ok": ok_decode,
            "first_token_ok": ok_first,
        },
    }
    path = write_result("overhead", result)
    print(f"results: {path}")
    if opts.plot:
        from . import plots

        plots.distributions(
            "overhead",
            f"overhead: mlxd vs raw mlx-lm ({model_label(opts.model)})",
            {
                "first token (ms)": {
                    "raw": s["raw"]["first_token_ms"]["values"],
                    "mlxd": s["mlxd"]["first_token_ms"]["values"],
                },
                "decode (tokens/s)": {
                    "raw": s["raw"]["decode_tps"]["values"],
                    "mlxd": s["mlxd"]["decode_tps"]["values"],
                },
            },
        )
    return result
