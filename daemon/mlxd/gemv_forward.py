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
unchanged. The system's C compiler builds it once into the user's cache
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
COMPILE_TIMEOUT_S = 60


def wanted() -> bool:
    """Whether forwarding is on (it is unless MLXD_NO_GEMV_FORWARD is set)."""
    return not os.environ.get(OFF_ENV)


@functools.cache
def library() -> Path | None:
    """The built interposer, compiled now if this source and compiler have not built it yet;
    None when forwarding is off, or there is no source, no C compiler, or the build fails."""
    if not wanted():
        return None
    compiler = host.which("cc") or host.which("gcc")
    try:
        source = SOURCE.read_bytes()
    except OSError:
        return None
    if compiler is None:
        return None
    key = hashlib.sha256(source + compiler.encode()).hexdigest()[:12]
    out = host.cache_dir() / f"gemv-{key}" / NAME
    if out.is_file():
        return _usable(out)
    tmp = out.with_name(f".{NAME}.{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [compiler, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE), "-ldl"]
        # In a directory of ours, on absolute PATH entries: the compiler finds its own `as` and
        # `ld`, never a repository's.
        env = {**os.environ, "PATH": host.absolute_path()}
        done = subprocess.run(
            cmd, capture_output=True, timeout=COMPILE_TIMEOUT_S, cwd=out.parent, env=env
        )
        if done.returncode != 0:
            return None
        tmp.replace(out)  # atomic: a daemon starting meanwhile never loads half a file
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        tmp.unlink(missing_ok=True)
    return _usable(out)


def _usable(path: Path) -> Path | None:
    # LD_PRELOAD splits on spaces and colons: such a path cannot be preloaded.
    return None if any(c in str(path) for c in " \t:;") else path


@functools.cache
def mapped() -> bool:
    """Whether this process runs with the interposer loaded (preloaded at exec: fixed)."""
    try:
        with open("/proc/self/maps") as f:
            return any(NAME in line for line in f)
    except OSError:
        return False
