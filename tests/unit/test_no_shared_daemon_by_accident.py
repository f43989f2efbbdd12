"""Issue #19 item 7: `mlxd serve` forwards to the user's shared daemon by default, so tests and
benchmarks say which daemon they mean: in-process unless they ask, and then a runtime directory
of their own; never the user's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bench.common import Daemon, shared_env

from mlxd import runtime
from tests.kit import daemon_env


def test_a_daemon_a_test_starts_serves_in_process_unless_asked(monkeypatch) -> None:
    monkeypatch.setenv("MLXD_SHARED", "1")  # the developer's shell says shared: not inherited
    assert daemon_env()["MLXD_SHARED"] == "0"
    assert "MLXD_RUNTIME_DIR" not in daemon_env()
    asked = daemon_env({"MLXD_SHARED": "1", "MLXD_RUNTIME_DIR": "/tmp/own"})
    assert asked["MLXD_SHARED"] == "1" and asked["MLXD_RUNTIME_DIR"] == "/tmp/own"
    with pytest.raises(ValueError, match="RUNTIME_DIR"):  # shared, but whose daemon? refused
        daemon_env({"MLXD_SHARED": "1"})


def test_the_test_run_has_a_runtime_directory_of_its_own() -> None:
    """tests/conftest.py: whatever a test starts with this environment reaches this run's
    runtime directory, never the user's (XDG_RUNTIME_DIR/mlxd or <tmp>/mlxd-<uid>)."""
    ours = Path(os.environ["MLXD_RUNTIME_DIR"])
    users = runtime.runtime_dir({k: v for k, v in os.environ.items() if k != "MLXD_RUNTIME_DIR"})
    assert ours != users and ours.name.startswith("mlxd-rt-run-")
    assert ours.is_dir() and ours.stat().st_mode & 0o077 == 0


def test_a_benchmark_serves_in_process_unless_given_its_own_runtime_directory() -> None:
    assert Daemon({}).env["MLXD_SHARED"] == "0"
    assert Daemon({}, env=shared_env(Path("/tmp/own"))).env["MLXD_RUNTIME_DIR"] == "/tmp/own"
    with pytest.raises(ValueError, match="RUNTIME_DIR"):
        Daemon({}, env={"MLXD_SHARED": "1"})
