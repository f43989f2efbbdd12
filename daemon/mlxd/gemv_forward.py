"""Few-row matrix products for MLX's CPU backend on OpenBLAS (Linux CPU decode speed).

A decode step multiplies one row, the token's hidden state, by every weight matrix; a
speculative verify pass multiplies a few rows (the drafted tokens). MLX's CPU backend sends
each product to `cblas_sgemm`, and the OpenBLAS build mlxd preloads (cmeel-openblas 0.3.31,
x86_64) packs the whole weight matrix first, whatever the number of rows. Measured on the
2-core box, the embedded model's forward pass with a 300-token KV cache (`make bench fastpath`
keeps the decode comparison): 1 row 93 ms on sgemm alone, 72-91 ms with one row on sgemv,
68 ms here; 2 rows 122, 118-190 and 77-80 ms; 9 rows 174, 176-212 and 157-161 ms.

native/gemv_forward.c, preloaded before OpenBLAS, takes row-major products of up to 16 rows:
each tile of B is read from memory once for all rows, on this machine's cores (its own small
thread pool; OPENBLAS_NUM_THREADS caps it too), and every other call goes to OpenBLAS. Each
output element is summed in one fixed order, whatever the number of rows or the split between
threads, so a row of a verify pass is bit-identical to the same row computed alone: greedy
speculative decoding returns exactly the plain decode's tokens. (Session 11's version sent
one-row products to sgemv: faster alone, but its sums differed from sgemm's in the last bits.)
After a prefill OpenBLAS's threads spin for ~0.1 s (THREAD_TIMEOUT 2^28 cycles) on the cores
these products need; `spin_env` shortens that for the processes that preload both.

The system's C compiler builds it once per source, compiler and CPU (`-march=native`) into the
user's cache (`~/.cache/mlxd/gemv-<hash>/`); without a compiler nothing is taken over and
products stay right, only slower. MLXD_NO_GEMV_FORWARD=1 turns it off.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from . import host

OFF_ENV = "MLXD_NO_GEMV_FORWARD"
SOURCE = Path(__file__).parent / "native" / "gemv_forward.c"
NAME = "libmlxd_gemv_forward.so"
MAX_ROWS = 16  # native/gemv_forward.c's: more rows go to OpenBLAS's sgemm (other sums)
COMPILE_TIMEOUT_S = 20  # once per install; a hung compiler must not hold a start long
# Tried in turn: tuned for this CPU, then portable (a compiler without -march=native).
FLAGS = (["-O3", "-march=native"], ["-O3"])
# OpenBLAS's spin after a call, 2^20 cycles (~0.4 ms here): still covers the gaps between a
# prefill's products, no longer the decode steps after it. The user's own setting wins.
SPIN_ENV = {"OPENBLAS_THREAD_TIMEOUT": "20"}


def spin_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to `environ` for a process that preloads the interposer."""
    return {k: v for k, v in SPIN_ENV.items() if k not in environ}


# The /proc/cpuinfo lines that tell CPUs apart: x86 (vendor, model, flags) and Arm (implementer,
# part, variant, features); not the per-core ones (MHz, BogoMIPS, ids).
_CPU_LINES = (
    b"vendor_id",
    b"cpu family",
    b"model",
    b"model name",
    b"stepping",
    b"flags",
    b"CPU implementer",
    b"CPU architecture",
    b"CPU variant",
    b"CPU part",
    b"Features",
)


@functools.cache
def cpu() -> bytes:
    """What -march=native builds for here (the lines of /proc/cpuinfo that tell CPUs apart;
    b"" when unknown, and then the build is portable): a home shared by machines with other
    CPUs gets a build of its own, never an illegal instruction."""
    try:
        with open("/proc/cpuinfo", "rb") as f:
            return cpu_key(f.read())
    except OSError:
        return b""


def cpu_key(cpuinfo: bytes) -> bytes:
    """The lines of a /proc/cpuinfo text that tell CPUs apart, as one sorted byte string."""
    lines = set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(b":")
        if name.strip() in _CPU_LINES:
            lines.add(name.strip() + b":" + value.strip())
    return b"\n".join(sorted(lines))


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
    key = hashlib.sha256(source + compiler.encode() + cpu()).hexdigest()[:12]
    directory = host.private_dir(cache, f"gemv-{key}")
    if directory is None:
        return None  # others could swap what we preload
    out = directory / NAME
    if out.is_file() and not rebuild:
        return _usable(out)
    tmp = out.with_name(f".{NAME}.{os.getpid()}")
    try:
        if not _compile(compiler, tmp):
            return None
        tmp.chmod(0o755)  # whatever the umask: only we may write what we preload
        tmp.replace(out)  # atomic: a daemon starting meanwhile never loads half a file
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        tmp.unlink(missing_ok=True)
    return _usable(out)


def _compile(compiler: str, out: Path) -> bool:
    # In a directory of ours, on absolute PATH entries: the compiler finds its own `as` and
    # `ld`, never a repository's.
    env = {**os.environ, "PATH": host.absolute_path()}
    common = ["-Wno-psabi", "-shared", "-fPIC", "-pthread", "-o", str(out), str(SOURCE), "-ldl"]
    for flags in FLAGS if cpu() else FLAGS[1:]:  # a CPU we cannot name: portable only
        done = subprocess.run(
            [compiler, *flags, *common],
            capture_output=True,
            timeout=COMPILE_TIMEOUT_S,
            cwd=out.parent,
            env=env,
        )
        if done.returncode == 0:
            return True
    return False


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
