"""One-row matrix products on OpenBLAS's matrix-vector kernel (Linux CPU decode speed).

A decode step multiplies one row, the token's hidden state, by every weight matrix. MLX's CPU
backend sends each product to `cblas_sgemm`, and the OpenBLAS build mlxd preloads
(cmeel-openblas 0.3.31, x86_64) packs the whole weight matrix for that one row. Measured on
the 2-core box with the embedded model: the 49152x576 LM head takes 14.5 ms through sgemm and
5.7 ms through `cblas_sgemv`; a decode step 100 ms without forwarding, 63 ms with it (raw
mlx-lm, `make bench fastpath` keeps the comparison). OpenBLAS forwards such calls itself when
built with GEMM_GEMV_FORWARD, which this build lacks.

native/gemv_forward.c does the same from outside: preloaded before OpenBLAS, its
`cblas_sgemm` sends row-major products with one row to `cblas_sgemv` and every other call to
OpenBLAS's `cblas_sgemm`. Products with more rows (prefill, a speculative verify pass) are
unchanged. sgemv sums in another order than sgemm: a one-row result differs from the same
row of a multi-row product at float32 rounding (relative 1e-6), so a speculative verify pass
and a plain step can pick different greedy tokens where two logits tie within ~1e-4 (none in
~10k tokens of code tried; without forwarding the rows were bit-identical). The system's C
compiler builds it once into the user's cache
(`~/.cache/mlxd/gemv-<hash>/`); without a compiler nothing is forwarded and products stay
right, only slower. MLXD_NO_GEMV_FORWARD=1 turns it off.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from pathlib import Path

from . import host

OFF_ENV = "MLXD_NO_GEMV_FORWARD"
SOURCE = Path(__file__).parent / "native" / "gemv_forward.c"
NAME = "libmlxd_gemv_forward.so"
COMPILE_TIMEOUT_S = 20  # once per install; a hung compiler must not hold a start long


def wanted() -> bool:
    """Whether forwarding is on (it is unless MLXD_NO_GEMV_FORWARD is set)."""
    return not os.environ.get(OFF_ENV)


@functools.cache
def library(rebuild: bool = False) -> Path | None:
    """The built interposer, compiled now if this source and compiler have not built it yet
    (or `rebuild`: the cached one did not load); None when forwarding is off, or there is no
    source, no C compiler, no cache directory, or the build fails."""
    if not wanted():
        return None
    compiler = host.which("cc") or host.which("gcc")
    try:
        source = SOURCE.read_bytes()
    except OSError:
        return None
    if compiler is None:
        return None
    cache = host.cache_dir()
    if cache is None:
        return None
    key = hashlib.sha256(source + compiler.encode()).hexdigest()[:12]
    directory = host.private_dir(cache, f"gemv-{key}")
    if directory is None:
        return None  # others could swap what we preload
    out = directory / NAME
    if out.is_file() and not rebuild:
        return _usable(out)
    tmp = out.with_name(f".{NAME}.{os.getpid()}")
    try:
        cmd = [compiler, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE), "-ldl"]
        # In a directory of ours, on absolute PATH entries: the compiler finds its own `as` and
        # `ld`, never a repository's.
        env = {**os.environ, "PATH": host.absolute_path()}
        done = subprocess.run(
            cmd, capture_output=True, timeout=COMPILE_TIMEOUT_S, cwd=out.parent, env=env
        )
        if done.returncode != 0:
            return None
        tmp.chmod(0o755)  # whatever the umask: only we may write what we preload
        tmp.replace(out)  # atomic: a daemon starting meanwhile never loads half a file
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        tmp.unlink(missing_ok=True)
    return _usable(out)


def _usable(path: Path) -> Path | None:
    # LD_PRELOAD splits on spaces and colons: such a path cannot be preloaded. Only a file we
    # wrote is preloaded: nobody else may have put it there or changed it.
    if not host.fits_ld_path(path) or not host.safe_from_others(path):
        return None
    try:
        return path if path.stat().st_uid == os.getuid() else None
    except OSError:
        return None


@functools.cache
def mapped() -> bool:
    """Whether this process runs with the interposer loaded (preloaded at exec: fixed)."""
    try:
        with open("/proc/self/maps") as f:
            return any(NAME in line for line in f)
    except OSError:
        return False
