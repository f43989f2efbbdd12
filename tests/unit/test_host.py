"""The host's PATH and cache directory as the daemon uses them at start (mlxd/host.py): the
editor may start mlxd in a repository's directory, and nothing the repository ships may run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mlxd import blas, host


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding executables named as the system's, each leaving a mark."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("true", "cc", "gcc"):
        exe = repo / name
        exe.write_text(f"#!/bin/sh\ntouch {tmp_path / ('ran-' + name)}\n")
        exe.chmod(0o755)
    monkeypatch.chdir(repo)
    # Empty, "." and relative entries all name the working directory (or a folder in it).
    monkeypatch.setenv("PATH", f":.:{repo.name}/..:{os.environ['PATH']}:")
    return repo


def test_only_absolute_path_entries_are_searched(repo: Path) -> None:
    entries = host.absolute_path().split(os.pathsep)
    assert entries and all(Path(p).is_absolute() for p in entries)
    for name in ("true", "cc"):
        found = host.which(name)
        assert found is not None and Path(found).is_absolute()
        assert Path(found).parent != repo


@pytest.mark.skipif(sys.platform != "linux", reason="the preload probe is Linux-only")
def test_the_blas_probe_never_runs_the_working_directorys_true(repo: Path, tmp_path: Path) -> None:
    assert blas._probe("", "")  # a real `true` ran, preloading nothing
    assert not (tmp_path / "ran-true").exists()


def test_the_cache_dir_ignores_a_relative_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "rel")
    assert host.cache_dir() == tmp_path / "home" / ".cache" / "mlxd"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert host.cache_dir() == tmp_path / "xdg" / "mlxd"
