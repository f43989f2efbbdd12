"""Linux CPU fast path: run MLX's float matmuls on OpenBLAS instead of reference BLAS.

The `mlx[cpu]` wheel links the netlib reference BLAS (a 512x576 @ 576x1536 float32 matmul:
~160 ms). An optimized library that exports the same `cblas_*` names, preloaded with LD_PRELOAD,
takes over those symbols (~3 ms). LD_PRELOAD only works at exec time, so the daemon re-executes
itself once, first thing, before it touches stdin or stdout. Ahead of OpenBLAS it preloads a
small interposer that computes products of a few rows (a decode step's, a speculative verify
pass's) itself, reading each weight once for all rows (gemv_forward.py).

PyPI's cmeel-openblas (a dependency on Linux x86_64) needs `libgfortran.so.5`, which a bare
Debian lacks. The mlx/numpy wheels bundle a renamed copy (`libgfortran-<hash>.so.5.0.0`): a
private directory of symlinks under the user's cache, put on LD_LIBRARY_PATH, makes it resolve.
These variables (and OPENBLAS_THREAD_TIMEOUT, set for the interposer) get their old values back
in the re-executed process, so children never see them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import site
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

from . import gemv_forward, host

NO_PRELOAD_ENV = "MLXD_NO_BLAS_PRELOAD"
# Set only in the re-executed process: the LD_* values to restore (JSON), and proof we did it.
_MARKER_ENV = "MLXD_BLAS_REEXEC"
# What a preload sets (preload_env), and the re-exec gives back once OpenBLAS has read it.
LD_VARS = ("LD_PRELOAD", "LD_LIBRARY_PATH", *gemv_forward.SPIN_ENV)
_GFORTRAN = "libgfortran.so.5"
_reexec_checked = False


def find_openblas() -> Path | None:
    """An OpenBLAS that preloads here: the venv's cmeel-openblas first, then the system's."""
    found = _preloadable()
    return found[0] if found else None


def blas_in_use() -> str:
    """Which BLAS MLX's CPU matmuls use in this process (for `mlxd doctor`)."""
    if sys.platform == "darwin":
        return "Accelerate"
    lib = _mapped_openblas()
    if lib is None:
        return "reference BLAS bundled with mlx (slow)"
    return f"OpenBLAS ({lib})" + (
        ", few-row products in mlxd's kernel" if gemv_forward.mapped() else ""
    )


def fast_blas_loaded() -> bool:
    """Whether float matmuls on CPU are fast here (OpenBLAS mapped, or Accelerate)."""
    return sys.platform == "darwin" or _mapped_openblas() is not None


def maybe_reexec_with_openblas(argv: list[str] | None = None) -> None:
    """Re-exec this process once with OpenBLAS preloaded, when that helps; else return.

    `argv` is the full command line to run again, interpreter included; the default,
    `sys.orig_argv`, keeps `-m` and other interpreter flags (`sys.argv` is taken to mean the
    same). Call it first thing, before anything reads stdin or writes stdout: file descriptors
    survive exec, Python's buffers do not, and everything imported so far is imported again.
    No-op on macOS, when MLX runs on a GPU, when OpenBLAS is already mapped, when no usable
    library exists, or when MLXD_NO_BLAS_PRELOAD is set.
    """
    global _reexec_checked
    if _reexec_checked or sys.platform != "linux" or not sys.executable:
        return
    _reexec_checked = True
    if _MARKER_ENV in os.environ:  # we are the re-executed process
        _restore_env()
        return
    if os.environ.get(NO_PRELOAD_ENV) or _mapped_openblas() or not _mlx_on_cpu():
        return
    found = preload()
    if found is None:
        return
    env = {**os.environ, **preload_env(os.environ, *found)}
    env[_MARKER_ENV] = json.dumps({k: os.environ.get(k) for k in LD_VARS})
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    try:
        os.execve(sys.executable, sys.orig_argv if argv in (None, sys.argv) else argv, env)
    except OSError:
        return  # carry on with reference BLAS


@functools.cache
def preload() -> tuple[str, str] | None:
    """(LD_PRELOAD entries, LD_LIBRARY_PATH entry or "") that `mlxd serve` runs with here: the
    few-row product interposer (gemv_forward.py) when it builds and loads, then OpenBLAS. None
    when no OpenBLAS preloads cleanly."""
    found = _preloadable()
    if found is None:
        return None
    lib, library_path = found
    for rebuild in (False, True):  # a cached build that does not load (truncated) is rebuilt
        shim = gemv_forward.library(rebuild)
        if shim is None:
            break
        if _probe(f"{shim}:{lib}", library_path):
            return f"{shim}:{lib}", library_path
    return str(lib), library_path


def preload_env(environ: Mapping[str, str], libs: str, library_path: str) -> dict[str, str]:
    """The variables (a subset of LD_VARS) to set over `environ` so that a process exec'd with
    them runs with `libs` preloaded (`preload()`'s pair): LD_PRELOAD and LD_LIBRARY_PATH put
    in front of the old values, and OpenBLAS's short idle spin when mlxd's kernel is among
    `libs` (gemv_forward.spin_env)."""
    env = {"LD_PRELOAD": _prepend(libs, environ.get("LD_PRELOAD"))}
    if library_path:
        env["LD_LIBRARY_PATH"] = _prepend(library_path, environ.get("LD_LIBRARY_PATH"))
    if gemv_forward.NAME in libs:
        env.update(gemv_forward.spin_env(environ))
    return env


# --- helpers ----------------------------------------------------------------------------------
def _prepend(value: str, old: str | None) -> str:
    return f"{value}:{old}" if old else value


def _restore_env() -> None:
    saved = json.loads(os.environ.pop(_MARKER_ENV) or "{}")
    for key in LD_VARS:
        if saved.get(key) is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved[key]


def _mapped_openblas() -> str | None:
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                if "libopenblas" in line:
                    return line.split(maxsplit=5)[-1].strip()
    except OSError:
        pass
    return None


def _mlx_on_cpu() -> bool:
    try:
        import mlx.core as mx
    except ImportError:
        return False
    return mx.default_device() == mx.cpu


def _site_dirs() -> list[Path]:
    """Where installed packages are, absolute, never the working directory: a relative HOME
    makes the user site relative, and `python -m` puts the working directory on sys.path (a
    repository's `cmeel.prefix/lib/libopenblas.so.0` must not be what we preload)."""
    user = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []
    try:
        cwd: Path | None = Path.cwd().resolve()
    except OSError:  # deleted: nothing can be found in it anyway
        cwd = None
    dirs = [Path(d) for d in dict.fromkeys([*site.getsitepackages(), *user, *sys.path]) if d]
    return [d for d in dirs if d.is_absolute() and d.is_dir() and d.resolve() != cwd]


def _candidates() -> list[Path]:
    venv = [d / "cmeel.prefix" / "lib" / "libopenblas.so.0" for d in _site_dirs()]
    arch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    system = [
        Path(f"/usr/lib/{arch}/openblas-pthread/libopenblas.so.0"),  # Debian libopenblas0-pthread
        Path(f"/usr/lib/{arch}/libopenblas.so.0"),
        Path("/usr/lib64/libopenblas.so.0"),
        Path("/usr/lib/libopenblas.so.0"),
    ]
    return [p for p in dict.fromkeys(venv + system) if p.is_file()]


@functools.cache
def _preloadable() -> tuple[Path, str] | None:
    """(library, extra LD_LIBRARY_PATH) of the first candidate that preloads cleanly."""
    for lib in _candidates():
        if not host.fits_ld_path(lib):
            continue
        if _probe(str(lib), ""):
            return lib, ""
        shim = _gfortran_shim()
        if shim and _probe(str(lib), shim):
            return lib, shim
    return None


def _probe(libs: str, library_path: str) -> bool:
    """Does a process start with `libs` preloaded? A missing dependency aborts it (exit 127)."""
    true = host.which("true")  # never a `true` in the working directory (a repository's)
    if true is None:
        return False
    env = {**os.environ, "LD_PRELOAD": libs, "OPENBLAS_NUM_THREADS": "1"}
    if library_path:
        env["LD_LIBRARY_PATH"] = _prepend(library_path, os.environ.get("LD_LIBRARY_PATH"))
    try:
        done = subprocess.run([true], env=env, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and b"ld.so" not in done.stderr


@functools.cache
def _gfortran_shim() -> str | None:
    """A directory where `libgfortran.so.5` names a wheel-bundled copy; None if there is none."""
    bundled = sorted(
        (p for d in _site_dirs() for p in d.glob("*.libs/libgfortran-*.so.5*")),
        key=lambda p: p.parent.name != "mlx_cpu.libs",  # mlx's own copy first
    )
    if not bundled:
        return None
    gfortran = bundled[0]
    cache = host.cache_dir()
    key = hashlib.sha256(str(gfortran).encode()).hexdigest()[:12]
    # On LD_LIBRARY_PATH: a directory only we can change (another user must not swap a link).
    shim = None if cache is None else host.private_dir(cache, f"blas-{key}")
    if shim is None:
        return None
    # The bundled copy finds its siblings (libquadmath-<hash>) through $ORIGIN, which is the
    # symlink's directory: link the whole .libs directory, then the plain name.
    links = {p.name: p for p in gfortran.parent.iterdir()} | {_GFORTRAN: gfortran}
    try:
        shim.mkdir(parents=True, exist_ok=True)
        for name, target in links.items():
            link = shim / name
            if link.is_symlink() and os.readlink(link) == str(target):
                continue
            tmp = shim / f".{name}.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            tmp.replace(link)  # atomic: a concurrent start never sees a missing link
    except OSError:
        return None
    return str(shim) if host.fits_ld_path(shim) else None
