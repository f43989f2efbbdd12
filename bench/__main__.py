"""`python -m bench [NAME ...] [--runs N] [--model SPEC] [--plot]` (or `make bench NAME ...`).

Names: overhead, follow-up, peers, concurrency, typing, fallback, fastpath, prefill, quality, speculation, shared, open-files, all (default: overhead
follow-up). Each prints a table and writes bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time

from . import BENCHMARKS, DEFAULT
from .common import EMBEDDED, Options, machine_info, print_machine, reexec_with_blas


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="mlxd benchmarks: ratios against raw mlx-lm and peers, measured in one run.",
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"{', '.join(BENCHMARKS)} or all (default: {' '.join(DEFAULT)})",
    )
    p.add_argument("--runs", type=int, help="measured runs per case (default: per benchmark)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured runs first (default 1)")
    p.add_argument(
        "--model",
        default=EMBEDDED,
        help=f"model spec for mlxd and the baselines: {EMBEDDED} (default), an mlx-lm "
        "directory, or `tiny` (a small random model: fast, for checking the harness)",
    )
    p.add_argument("--max-tokens", type=int, help="tokens to generate per request")
    p.add_argument("--plot", action="store_true", help="write PNG charts next to the JSON")
    p.add_argument("--quick", action="store_true", help="a few cases only, for iteration (quality)")
    p.add_argument("-v", "--verbose", action="store_true", help="print each run")
    return p


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(args_list)
    names = args.names or list(DEFAULT)
    if "all" in names:
        names = list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {' '.join(unknown)}; choose from {' '.join(BENCHMARKS)} all")
        return 2
    if args.runs is not None and args.runs < 1:
        print("--runs must be >= 1")
        return 2
    reexec_with_blas(args_list)  # before MLX is imported here

    from .common import resolve_model

    opts = Options(
        model=resolve_model(args.model),
        runs=args.runs,
        warmup=max(0, args.warmup),
        max_tokens=args.max_tokens,
        plot=args.plot,
        verbose=args.verbose,
        quick=args.quick,
    )
    info = machine_info()
    print_machine(info)
    failed = 0
    for name in names:
        module = importlib.import_module(f".{BENCHMARKS[name]}", __package__)
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        try:
            asyncio.run(module.run(opts, info))
        except KeyboardInterrupt:
            return 130
        except Exception as exc:  # one broken benchmark must not hide the others' numbers
            failed += 1
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}")
            if opts.verbose:
                import traceback

                traceback.print_exc()
        print(f"({name}: {time.perf_counter() - t0:.0f} s)")
        _warn_if_busy(info.get("cores") or 1)
    return 1 if failed else 0


def _warn_if_busy(cores: int) -> None:
    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    if load > 0.75 * cores:
        print(f"WARNING: the machine was busy by the end (load {load:.1f} on {cores} cores)")


if __name__ == "__main__":
    code = main()
    # As `mlxd serve` does: each asyncio.run joined its default executor's threads, and one
    # that touched MLX (a prompt built off the event loop) makes MLX abort at interpreter exit
    # ("terminate called without an active exception"): make bench failed after its report.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
