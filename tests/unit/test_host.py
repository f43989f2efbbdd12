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


class _Passwd:
    def __init__(self, home: str) -> None:
        self.pw_dir = home


def test_a_relative_home_is_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HOME=home in a repository's directory: the cache (whose libraries mlxd preloads) would
    be the repository's home/.cache/mlxd. The passwd entry's home is used instead."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "home")
    monkeypatch.setattr(host.pwd, "getpwuid", lambda uid: _Passwd(str(tmp_path / "pw")))
    assert host.cache_dir() == tmp_path / "pw" / ".cache" / "mlxd"


def test_no_home_at_all_means_no_cache_and_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container's uid with no passwd entry and no HOME (`docker run -u 4242`)."""

    def no_entry(uid: int) -> None:
        raise KeyError(uid)

    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(host.pwd, "getpwuid", no_entry)
    assert host.cache_dir() is None


def test_no_absolute_path_entry_falls_back_to_the_systems_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for value in (None, ".:bin"):
        if value is None:
            monkeypatch.delenv("PATH", raising=False)
        else:
            monkeypatch.setenv("PATH", value)
        assert host.absolute_path() and host.which("true") is not None


def test_openblas_is_never_looked_for_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative HOME makes the user site relative, and `python -m` puts the working
    directory on sys.path: a repository's cmeel.prefix/lib/libopenblas.so.0 was a candidate
    (second attack, on an install without cmeel-openblas in the venv)."""
    planted = "cmeel.prefix/lib/libopenblas.so.0"
    for site_dir in (tmp_path / "home/.local/lib/python3.11/site-packages", tmp_path):
        (site_dir / planted).parent.mkdir(parents=True, exist_ok=True)
        (site_dir / planted).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", "home")
    monkeypatch.setattr(sys, "path", [str(tmp_path), "", *sys.path])
    dirs = blas._site_dirs()
    assert dirs and all(d.is_absolute() for d in dirs)
    assert not any(d.resolve().is_relative_to(tmp_path) for d in dirs)
    assert not any(c.resolve().is_relative_to(tmp_path) for c in blas._candidates())
