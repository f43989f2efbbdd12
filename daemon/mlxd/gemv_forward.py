"""Few-row matrix products for MLX's CPU backend on OpenBLAS (Linux CPU decode speed).

A decode step multiplies one row, the token's hidden state, by every weight matrix; a
speculative verify pass multiplies a few rows (the drafted tokens). MLX's CPU backend sends
each product to `cblas_sgemm`, and the OpenBLAS build mlxd preloads (cmeel-openblas 0.3.31,
x86_64) packs the whole weight matrix first, whatever the number of rows. Measured on the
2-core box, the embedded model's forward pass with a 300-token KV cache (`make bench fastpath`
keeps the decode comparison): 1 row 93 ms on sgemm alone, 72-91 ms with one row on sgemv,
68 ms here; 2 rows 122, 118-190 and 77-80 ms; 9 rows 174, 176-212 and 157-161 ms.

native/gemv_forward.c, preloaded before OpenBLAS, takes row-major products of up to 16 rows:
each tile of B is read from memory once for all rows, on this machine's cores but one (its own
small thread pool, one thread fewer than OpenBLAS's: a core stays free for the thread that
builds the next layer's graph, models/prefill_math.py's `start`), and every other call goes
to OpenBLAS. Each output element is summed in one fixed order, whatever the number of rows or
the split between threads, so a row of a verify pass is bit-identical to the same row
computed alone: greedy speculative decoding returns exactly the plain decode's tokens. (Session 11's version sent
one-row products to sgemv: faster alone, but its sums differed from sgemm's in the last bits.)
After a prefill OpenBLAS's threads spin for ~0.1 s (THREAD_TIMEOUT 2^28 cycles) on the cores
these products need; `spin_env` shortens that for the processes that preload both.

A model loaded from 4- or 8-bit affine weights (the embedded Q4_1 GGUF) and dequantized to
float32 for OpenBLAS registers each float matrix's quantized form with the interposer
(`shadow`): its products of up to MAX_ROWS rows (a decode step, a verify pass) then read 0.75
(4-bit, groups of 32) or 1.25 (8-bit) bytes a weight instead of 4, and unpack each weight to
the exact float the matrix holds (the library checks every weight when it registers one), so
decode reads a fifth of the bytes and the logits do not change by one bit. One or two rows
unpack in registers; more unpack four rows of the matrix at a time into L1 and make their sums
there. MLXD_NO_QUANTIZED_DECODE=1 turns the shadows off.

A product asked for with alpha SOFTMAX_ALPHA is softmax(A) B instead: the attention of decode
steps and verify passes (models/attention.py).

The system's C compiler builds it once per source, compiler and CPU (`-march=native`) into the
user's cache (`~/.cache/mlxd/gemv-<hash>/`); without a compiler nothing is taken over and
products stay right, only slower. MLXD_NO_GEMV_FORWARD=1 turns it off.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import subprocess
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from . import host

OFF_ENV = "MLXD_NO_GEMV_FORWARD"
SHADOW_OFF_ENV = "MLXD_NO_QUANTIZED_DECODE"
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
    common = [
        "-Wno-psabi",
        "-shared",
        "-fPIC",
        "-pthread",
        "-o",
        str(out),
        str(SOURCE),
        "-ldl",
        "-lm",
    ]
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


# --- quantized shadows of dequantized weights ---------------------------------------------------
@functools.cache
def shadow_rows() -> int:
    """The most rows a product reads a quantized shadow for in registers (native SHADOW_ROWS:
    3 on AVX-512, else 2); more rows unpack it into L1 first, a step up in a pass's cost. 2
    when the interposer is not loaded or predates the symbol."""
    if not mapped():
        return 2
    try:
        return int(ctypes.c_int.in_dll(ctypes.CDLL(None), "mlxd_shadow_rows").value)
    except ValueError:
        return 2


class Quantized(NamedTuple):
    """A module's affine-quantized weights as mlx-lm holds them (w = scales * q + biases per
    group of `group` weights along a row): `weight` uint32 (N, K * bits / 32), `scales` and
    `biases` (N, K / group)."""

    weight: Any
    scales: Any
    biases: Any
    bits: int
    group: int


class Shadows:
    """The quantized shadows registered for one model (`shadow`): `len()` of them registered
    now, `nbytes` of memory they take; `remove()` and `restore()` (or `suspended()`) take them
    out and put them back (an A/B in one process: bench prefill, the tests). They are removed
    for good when the model is collected (`retire`), and at the latest when this object is:
    the registry never points into freed arrays."""

    def __init__(self, lib: Any, entries: list[tuple[Any, ...]]) -> None:
        self._lib = lib
        self._entries = entries  # (weight, floats, q, scales, biases, bits, group): kept alive
        self._registered = len(entries)
        self._retired = False
        self.nbytes = sum(e[2].nbytes + e[3].nbytes + e[4].nbytes for e in entries)

    def __len__(self) -> int:
        return self._registered

    def restore(self) -> None:
        """Register every entry again (a no-op once retired; an entry the registry has no room
        for any more is not counted)."""
        if self._retired:
            return
        for entry in self._entries:
            self._registered += _register(self._lib, entry)

    def remove(self) -> None:
        """Take every entry out of the interposer's registry; returns once no product reads
        them (idempotent)."""
        for entry in self._entries:
            self._lib.mlxd_gemv_shadow_remove(_ptr(entry[1]))
        self._registered = 0

    def retire(self) -> None:
        """The model is gone: remove every entry, for good."""
        self._retired = True
        self.remove()

    def __del__(self) -> None:
        try:
            self.remove()
        except Exception:  # noqa: S110 - at interpreter exit ctypes or numpy may be gone
            pass

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """Products read the float matrices inside the block."""
        self.remove()
        try:
            yield
        finally:
            self.restore()


def shadow(model: Any, forms: Mapping[str, Quantized]) -> Shadows | None:
    """Register with the interposer, for each module path of `forms` whose float `weight` the
    model now holds, its quantized form (products of up to MAX_ROWS rows then read that
    instead: the module docstring). None when the interposer is not loaded, MLXD_NO_QUANTIZED_DECODE is set, or no
    form fits (bits 4 with groups of a multiple of 32, bits 8 with a multiple of 16, every
    weight unpacking to its float). The entries, and the arrays they point into, live as long
    as `model`."""
    if not forms or os.environ.get(SHADOW_OFF_ENV) or not mapped():
        return None
    import numpy as np

    lib = ctypes.CDLL(None)
    if not hasattr(lib, "mlxd_gemv_shadow_add"):
        return None  # an interposer built from an older source
    modules = dict(model.named_modules())
    entries: list[tuple[Any, ...]] = []
    for path, form in forms.items():
        weight = getattr(modules.get(path), "weight", None)
        if weight is None or str(weight.dtype) != "mlx.core.float32" or weight.ndim != 2:
            continue
        floats = np.array(weight, copy=False)  # the matrix's own buffer: the registry's key
        if not floats.flags.c_contiguous:
            continue
        n, k = floats.shape
        q = _repacked(np.array(form.weight), form.bits, n, k)
        scales = np.ascontiguousarray(np.array(form.scales), dtype=np.float32)
        biases = np.ascontiguousarray(np.array(form.biases), dtype=np.float32)
        if q is None or scales.shape != (n, k // form.group) or biases.shape != scales.shape:
            continue
        entry = (weight, floats, q, scales, biases, form.bits, form.group)
        if _register(lib, entry):
            entries.append(entry)
    if not entries:
        return None
    shadows = Shadows(lib, entries)
    weakref.finalize(model, shadows.retire)
    return shadows


def _register(lib: Any, entry: tuple[Any, ...]) -> int:
    """mlxd_gemv_shadow_add for one (weight, floats, q, scales, biases, bits, group) entry."""
    _, floats, q, scales, biases, bits, group = entry
    n, k = floats.shape
    return lib.mlxd_gemv_shadow_add(
        _ptr(floats), n, k, bits, group, _ptr(q), _ptr(scales), _ptr(biases)
    )


def _ptr(array: Any) -> ctypes.c_void_p:
    return ctypes.c_void_p(array.ctypes.data)


def _repacked(packed: Any, bits: int, n: int, k: int) -> Any:
    """mlx-lm's packing (uint32 words, value i of a word at bits i * bits) as the interposer
    reads it: 8-bit, one byte a weight in order; 4-bit, 16 bytes per 32 weights, byte j holding
    weights j (low nibble) and j + 16 (high). None for other widths or shapes."""
    import numpy as np

    raw = np.ascontiguousarray(packed).view(np.uint8)
    if bits == 8 and raw.shape == (n, k):
        return raw
    if bits != 4 or raw.shape != (n, k // 2) or k % 32:
        return None
    q = np.stack([raw & 15, raw >> 4], axis=-1).reshape(n, k // 32, 2, 16)
    return np.ascontiguousarray(q[:, :, 0, :] | (q[:, :, 1, :] << 4)).reshape(n, k // 2)
