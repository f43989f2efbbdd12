"""Building the few-row product interposer (mlxd/gemv_forward.py): once per source and
compiler, into the user's cache; nothing, and no error, without a working compiler."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlxd import blas, gemv_forward

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("cc") is None, reason="needs Linux and a C compiler"
)


# Each builds the kernel with the real compiler at -O3 (4-8 s on 2 cores): make test's tier,
# so that make test-fast stays under a minute; test_it_builds_once_into_the_cache and the
# vector-width builds (-O1) keep one real build in the fast tier.
COMPILES = pytest.mark.slow


@pytest.fixture(autouse=True)
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(gemv_forward.OFF_ENV, raising=False)
    gemv_forward.library.cache_clear()
    yield
    gemv_forward.library.cache_clear()


def fake_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cc = bin_dir / "cc"
    cc.write_text("#!/bin/sh\n" + script)
    cc.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


def test_it_builds_once_into_the_cache(tmp_path: Path) -> None:
    lib = gemv_forward.library()
    assert lib is not None and lib.is_file()
    assert lib.is_relative_to(tmp_path / "cache" / "mlxd")
    assert b"mlxd_gemv_forwarded" in lib.read_bytes()  # our interposer, not some other file
    built = lib.stat().st_mtime_ns
    gemv_forward.library.cache_clear()
    assert gemv_forward.library() == lib and lib.stat().st_mtime_ns == built  # not rebuilt
    assert [p.name for p in lib.parent.iterdir()] == [gemv_forward.NAME]  # no temporary left


def test_no_compiler_means_no_forwarding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # holds no cc or gcc
    assert gemv_forward.library() is None


def test_a_failing_compiler_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Writes part of its output, then fails, as a compiler that runs out of disk would.
    fake_compiler(
        tmp_path, monkeypatch, 'while [ "$1" != "-o" ]; do shift; done\necho x > "$2"\nexit 1\n'
    )
    assert gemv_forward.library() is None
    assert not list((tmp_path / "cache").rglob("*.so*"))


def test_the_off_switch_builds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gemv_forward.OFF_ENV, "1")
    assert gemv_forward.library() is None
    assert not (tmp_path / "cache").exists()


@COMPILES
def test_a_compiler_in_the_working_directory_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon may start in a repository's directory: an empty or relative PATH entry
    names it, and a `cc` shipped there must not be what builds (or is) the interposer."""
    repo = tmp_path / "repo"
    repo.mkdir()
    ran = tmp_path / "ran"
    cc = repo / "cc"
    cc.write_text(f"#!/bin/sh\ntouch {ran}\nexit 1\n")
    cc.chmod(0o755)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", f":.:bin:{os.environ['PATH']}")
    lib = gemv_forward.library()
    assert not ran.exists()
    assert lib is not None and lib.is_file()  # the system's compiler built it


@COMPILES
def test_a_relative_cache_home_is_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "cache-here")
    lib = gemv_forward.library()
    assert lib is not None and lib.is_relative_to(tmp_path / "home" / ".cache" / "mlxd")
    assert not (tmp_path / "cache-here").exists()


def test_no_home_means_no_forwarding_and_a_normal_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gemv_forward.host, "cache_dir", lambda: None)
    blas.preload.cache_clear()
    try:
        assert gemv_forward.library() is None
        found = blas.preload()  # OpenBLAS alone: no error
        assert found is None or gemv_forward.NAME not in found[0]
    finally:
        blas.preload.cache_clear()


@COMPILES
def test_a_file_others_could_write_is_never_preloaded(tmp_path: Path) -> None:
    lib = gemv_forward.library()
    assert lib is not None
    lib.write_bytes(b"not ours")
    lib.chmod(0o666)
    gemv_forward.library.cache_clear()
    assert gemv_forward.library() is None
    rebuilt = gemv_forward.library(rebuild=True)
    assert rebuilt == lib and b"mlxd_gemv_forwarded" in lib.read_bytes()
    assert lib.stat().st_mode & 0o777 == 0o755


@pytest.mark.skipif(blas.find_openblas() is None, reason="needs the venv's OpenBLAS")
@COMPILES
def test_a_truncated_build_is_rebuilt_at_the_next_start() -> None:
    lib = gemv_forward.library()
    assert lib is not None
    good = lib.read_bytes()
    lib.write_bytes(good[:100])  # a disk that filled up mid-write, say
    gemv_forward.library.cache_clear()
    blas.preload.cache_clear()
    try:
        found = blas.preload()
        assert found is not None and found[0].startswith(f"{lib}:")
        assert lib.read_bytes() == good
    finally:
        blas.preload.cache_clear()


@COMPILES
def test_under_a_loose_umask_what_we_preload_is_still_ours_alone(tmp_path: Path) -> None:
    """umask 000 made mlxd's cache directories world-writable: another user could swap the
    interposer or a libgfortran link between our check and the exec (second attack)."""
    old = os.umask(0)
    try:
        lib = gemv_forward.library()
        blas._gfortran_shim.cache_clear()
        shim = blas._gfortran_shim()
    finally:
        os.umask(old)
        blas._gfortran_shim.cache_clear()
    assert lib is not None
    cache = tmp_path / "cache" / "mlxd"
    for d in (cache, lib.parent, *([Path(shim)] if shim else [])):
        assert d.stat().st_mode & 0o777 == 0o700, d


def test_a_cache_under_a_directory_others_can_write_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone may rename what is inside
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared / "cache"))
    assert gemv_forward.library() is None
    blas._gfortran_shim.cache_clear()
    try:
        assert blas._gfortran_shim() is None
    finally:
        blas._gfortran_shim.cache_clear()


@COMPILES
def test_a_directory_an_older_mlxd_left_group_writable_is_fixed_and_used(tmp_path: Path) -> None:
    lib = gemv_forward.library()
    assert lib is not None
    lib.parent.chmod(0o775)  # what the first version made under umask 002
    gemv_forward.library.cache_clear()
    assert gemv_forward.library() == lib
    assert lib.parent.stat().st_mode & 0o777 == 0o700


@COMPILES
def test_a_compiler_without_march_native_builds_the_portable_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-march=native is a GCC/Clang flag: a compiler that rejects it still builds the kernel,
    untuned (the real compiler behind a wrapper that refuses the flag)."""
    real = shutil.which("cc")
    log = tmp_path / "flags"
    fake_compiler(
        tmp_path,
        monkeypatch,
        f'echo "$*" >> {log}\ncase "$*" in *-march=native*) exit 1;; esac\nexec {real} "$@"\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.path.dirname(real)}:/usr/bin:/bin")
    lib = gemv_forward.library()
    assert lib is not None and b"mlxd_gemv_forwarded" in lib.read_bytes()
    tried = log.read_text().splitlines()
    assert len(tried) == 2 and "-march=native" in tried[0] and "-march" not in tried[1]


@COMPILES
def test_another_cpu_gets_a_build_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A home shared by machines with different CPUs: a kernel tuned for one must never be
    preloaded on the other (an illegal instruction would kill every decode)."""
    here = gemv_forward.library()
    gemv_forward.library.cache_clear()
    monkeypatch.setattr(gemv_forward, "cpu", lambda: b"model name: another CPU\nflags: sse2")
    there = gemv_forward.library()
    assert here is not None and there is not None and here.parent != there.parent


def test_arm_cpus_are_told_apart() -> None:
    """Linux on Arm names a CPU by implementer, part and features, not "model name" or
    "flags": a Graviton2 build (no SVE) must not be reused on a Graviton3, or the reverse."""
    n1 = b"processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd atomics\nCPU part\t: 0xd0c\n"
    v1 = b"processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd atomics sve\nCPU part\t: 0xd40\n"
    assert gemv_forward.cpu_key(n1) != gemv_forward.cpu_key(v1)
    # Per-core lines do not split one CPU's key.
    assert gemv_forward.cpu_key(n1) == gemv_forward.cpu_key(n1.replace(b"243.75", b"250.00"))


@COMPILES
def test_a_cpu_it_cannot_name_gets_the_portable_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.which("cc")
    log = tmp_path / "flags"
    fake_compiler(tmp_path, monkeypatch, f'echo "$*" >> {log}\nexec {real} "$@"\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.path.dirname(real)}:/usr/bin:/bin")
    monkeypatch.setattr(gemv_forward, "cpu", lambda: b"")
    assert gemv_forward.library() is not None
    assert "-march" not in log.read_text()


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86-64 targets: needs an x86-64 cc")
@pytest.mark.parametrize(
    "target",
    [[], ["-mavx2", "-mfma"], ["-mavx512f", "-mavx512bw", "-mavx2", "-mfma"]],
    ids=["x86-64", "avx2", "avx512"],
)
def test_the_kernel_builds_for_every_x86_vector_width(target: list[str], tmp_path: Path) -> None:
    """-march=native builds for whatever CPU is here; the source must build for the others
    too (a register constraint that only AVX-512 can meet once broke every other build, and a
    failed build means plain-speed decoding, silently)."""
    out = tmp_path / "lib.so"
    # -O1: what fails at -O3 here fails there too (asm constraints, intrinsics), in half the time
    cmd = [shutil.which("cc") or "cc", "-O1", *target, "-Wno-psabi", "-shared", "-fPIC"]
    done = subprocess.run(
        [*cmd, "-pthread", "-o", str(out), str(gemv_forward.SOURCE), "-ldl", "-lm"],
        capture_output=True,
        text=True,
        timeout=gemv_forward.COMPILE_TIMEOUT_S,
    )
    assert done.returncode == 0 and out.stat().st_size > 0, done.stderr[-2000:]
