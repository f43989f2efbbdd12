"""fallback: first-token time when the preferred cloud backend fails, against local only.

mlxd is configured with routing.cloud = true and chat = ["<cloud>", "local"]; the cloud backend
is a real aiohttp server on 127.0.0.1 speaking OpenAI's streaming format and error bodies
(tests/fakes/providers.py), scripted per case:

- refuses: nothing listens on its port (connection refused at once);
- hangs: accepts the request and never answers (timeouts.first_token_s = 1.0 ends it);
- errors: answers 500 with OpenAI's error body;
- (reference) answers: the cloud streams its reply, no fallback.

Each case gets its own backend name (fresh circuit breaker) and breaker_failures high enough
that every request pays the fallback; a last case keeps the default breaker to show the cost
once it opens. The prompt is the same every time (mlxd's KV cache holds it), so the local
first token is one decode step and the difference is the fallback's own cost.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tests.kit import free_port

from .common import (
    REPO,
    Daemon,
    Options,
    fmt,
    fmt_stat,
    local_config,
    log,
    model_label,
    print_table,
    summary,
    write_result,
)

DEFAULT_RUNS = 5
MAX_TOKENS = 8
FIRST_TOKEN_S = 1.0
BREAKER_FAILURES = 3  # the default, for the last case
PROMPT = [{"role": "user", "content": "Name three prime numbers."}]


def _providers() -> Any:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.fakes import providers

    return providers


def _settings(
    model: str, name: str, base_url: str, *, breaker: int, chain: list[str]
) -> dict[str, Any]:
    return {
        "local": {"model": model, "preload": True},
        "backends": {name: {"protocol": "openai", "base_url": base_url, "model": "gpt-4o-mini"}},
        "routing": {"cloud": True, "chat": chain, "breaker_failures": breaker},
        "timeouts": {"first_token_s": FIRST_TOKEN_S, "connect_s": 1.0},
    }


async def run(opts: Options, info: dict[str, Any]) -> dict[str, Any]:
    runs = opts.n(DEFAULT_RUNS)
    providers = _providers()
    Reply = providers.Reply
    closed = f"http://127.0.0.1:{free_port()}/v1"  # bound then released: nothing listens
    results: dict[str, dict[str, Any]] = {}
    async with providers.FakeProvider() as fake, Daemon(local_config(opts.model)) as daemon:
        await daemon.wait_ready()
        blas = daemon.blas()
        log(f"mlxd BLAS: {blas}; fake provider at {fake.openai_url}")
        cases: list[tuple[str, str, Any, list[str], int, int]] = [
            # (case, base_url, fake reply, chain, breaker_failures, requests)
            ("local only", fake.openai_url, Reply.text(), ["local"], 1000, runs),
            (
                "cloud answers (no fallback)",
                fake.openai_url,
                Reply.text(),
                ["cloud", "local"],
                1000,
                runs,
            ),
            ("cloud refuses (closed port)", closed, None, ["cloud", "local"], 1000, runs),
            (
                "cloud hangs",
                fake.openai_url,
                Reply.hang_before_headers(),
                ["cloud", "local"],
                1000,
                runs,
            ),
            (
                "cloud errors (HTTP 500)",
                fake.openai_url,
                Reply.status(500),
                ["cloud", "local"],
                1000,
                runs,
            ),
            (
                f"cloud hangs, breaker ({BREAKER_FAILURES}) open",
                fake.openai_url,
                Reply.hang_before_headers(),
                ["cloud", "local"],
                BREAKER_FAILURES,
                BREAKER_FAILURES + runs,
            ),
        ]
        await daemon.chat(PROMPT, MAX_TOKENS)  # warm: the local KV cache now holds the prompt
        for i, (case, url, reply, chain, breaker, n) in enumerate(cases):
            name = f"cloud{i}"
            fake.reset()
            if reply is not None:
                fake.default = reply
            chain = [name if c == "cloud" else c for c in chain]
            await daemon.reconfigure(_settings(opts.model, name, url, breaker=breaker, chain=chain))
            gens = []
            t_case = time.perf_counter()
            for _ in range(n):
                g = await daemon.chat(PROMPT, MAX_TOKENS)
                if g.error:
                    raise RuntimeError(f"{case}: {g.error}")
                gens.append(g)
            measured = gens[-runs:]  # the breaker case: only requests after it opened
            results[case] = {
                "first_token_ms": summary([g.first_token_ms for g in measured]),
                "server_first_token_ms": summary(
                    [g.server["timings"]["firstTokenMs"] for g in measured]
                ),
                "backends": sorted({g.backend or "-" for g in measured}),
                "attempts": [g.server["attempts"] for g in measured][:1],
                "all_first_token_ms": [g.first_token_ms for g in gens],
                "cloud_requests_seen": fake.request_count if url != closed else 0,
                "case_s": time.perf_counter() - t_case,
            }
            if opts.verbose:
                print(
                    f"  {case}: {[round(g.first_token_ms or -1) for g in gens]} ms via {results[case]['backends']}"
                )

    local = results["local only"]["first_token_ms"]["median"]
    rows = []
    for case, r in results.items():
        extra = (
            None
            if local is None or r["first_token_ms"]["median"] is None
            else r["first_token_ms"]["median"] - local
        )
        attempt = r["attempts"][0][0]["error"] if r["attempts"] and r["attempts"][0] else ""
        rows.append(
            [
                case,
                fmt_stat(r["first_token_ms"], digits=0),
                "-" if case == "local only" else fmt(extra, " ms", 0),
                ",".join(r["backends"]),
                attempt[:60],
            ]
        )
    print_table(
        f"fallback: {model_label(opts.model)}, chat = [cloud, local], first_token_s = "
        f"{FIRST_TOKEN_S}, {runs} runs; first token ms, median (min-max)",
        ["case", "first token ms", "vs local only", "served by", "skipped cloud because"],
        rows,
    )
    result = {
        "name": "fallback",
        "machine": info,
        "params": {
            "model": opts.model,
            "runs": runs,
            "max_tokens": MAX_TOKENS,
            "first_token_s": FIRST_TOKEN_S,
            "breaker_failures_last_case": BREAKER_FAILURES,
        },
        "blas": {"mlxd": blas},
        "summary": results,
        "ratios": {
            case: {
                "extra_ms_vs_local": None
                if local is None or r["first_token_ms"]["median"] is None
                else r["first_token_ms"]["median"] - local
            }
            for case, r in results.items()
        },
    }
    path = write_result("fallback", result)
    print(f"results: {path}")
    if opts.plot:
        from . import plots

        plots.distributions(
            "fallback",
            "first token when the cloud fails (ms)",
            {"first token (ms)": {c: r["first_token_ms"]["values"] for c, r in results.items()}},
        )
    return result
