"""Building the one-row product interposer (mlxd/gemv_forward.py): once per source and
compiler, into the user's cache; nothing, and no error, without a working compiler."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlxd import gemv_forward

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("cc") is None, reason="needs Linux and a C compiler"
)


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
