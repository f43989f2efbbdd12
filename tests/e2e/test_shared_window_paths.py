# ruff: noqa: F811 (the rt fixture is imported from test_shared_daemon)
"""A window's relative paths are read against that window's working directory, and against
nothing when that directory was deleted: never against the shared daemon's `/` (issue #19,
item 8). Real forwarders and daemons over real stdio, in a runtime directory of the test's own.

- A relative MLXD_RUNTIME_DIR in a deleted working directory: `mlxd serve` (shared or not)
  serves the window in-process and says why; `mlxd status` / `stop` say why; no traceback.
- A relative MLXD_CONFIG / --config in a deleted working directory names no file (before: the
  daemon read it from `/`).
- A model spec: `org/name` with no such directory in the window's working directory is a Hub
  repo id even when `/org/name` exists (the daemon's working directory); `./models/x` is each
  window's own.

The tests that plant a file in `/` need to be able to write there (root, as in this project's
containers) and are skipped otherwise.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.e2e.test_attack6_shared import gone_cwd
from tests.e2e.test_shared_daemon import daemon_pids, rt, start_raw  # noqa: F401 (fixture)
from tests.kit import daemon_env

pytestmark = pytest.mark.slow

_MODES = pytest.mark.parametrize(
    "mode", [pytest.param("0", id="in-process"), pytest.param("1", id="shared")]
)
ROOT_WRITABLE = os.access("/", os.W_OK)
needs_root = pytest.mark.skipif(
    not ROOT_WRITABLE, reason="plants a file in / (the daemon's working directory): not writable"
)
GONE = "is relative and the working directory is gone"
CHAT = {"messages": [{"role": "user", "content": "hi"}], "maxTokens": 2}


@_MODES
async def test_a_relative_runtime_dir_in_a_deleted_directory_serves_in_process(
    rt, tmp_path, tiny_config, mode
):
    """Steps: `mlxd serve` in a deleted working directory with MLXD_RUNTIME_DIR=rt-rel. Before:
    a FileNotFoundError traceback (os.getcwd() in runtime_dir), exit 1, no `initialize`."""
    env = {"MLXD_RUNTIME_DIR": "rt-rel", "MLXD_SHARED": mode}
    d = await start_raw(rt, tiny_config, env=env, parent=gone_cwd(tmp_path))
    try:
        await d.initialize()
        r = await d.request("mlxd/stats")
        assert r["result"]["server"]["pid"] == d.proc.pid, r  # in-process
        assert d.proc.stdin is not None
        d.proc.stdin.close()
        why = await d.ended()
    finally:
        await d.kill()
    assert "Traceback" not in why, why
    if mode == "1":
        assert (
            f"serving in-process: runtime directory unusable: MLXD_RUNTIME_DIR=rt-rel {GONE}" in why
        )
    assert daemon_pids(rt) == []


@pytest.mark.parametrize("command", ["status", "stop"])
def test_status_and_stop_with_a_relative_runtime_dir_in_a_deleted_directory_say_why(
    tmp_path, command
):
    env = {**daemon_env(), "MLXD_RUNTIME_DIR": "rt-rel"}
    cmd = [*gone_cwd(tmp_path), sys.executable, "-m", "mlxd", command]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"MLXD_RUNTIME_DIR=rt-rel {GONE}" in done.stderr, done.stderr


@pytest.fixture
def planted(tiny_model: Path):
    """`/<unique>.toml` (a config naming a model nobody asked for) and `/<unique>/name` (the
    tiny model): what a daemon reading relative paths from `/` would find."""
    name = f"mlxd-test-{uuid.uuid4().hex[:10]}"
    config, model = Path("/") / f"{name}.toml", Path("/") / name / "name"
    config.write_text('[local]\nmodel = "/planted/model"\npreload = false\n')
    model.parent.mkdir()
    model.symlink_to(tiny_model, target_is_directory=True)
    try:
        yield name
    finally:
        config.unlink()
        shutil.rmtree(model.parent)


@needs_root
@pytest.mark.parametrize("how", ["MLXD_CONFIG", "--config"])
async def test_a_relative_config_in_a_deleted_directory_is_not_read_from_slash(
    rt, tmp_path, planted, how
):
    """Steps: a window in a deleted working directory names `<unique>.toml` (relative), which
    exists in `/` only. The window must not get that file's model. Before: the daemon read
    `/<unique>.toml` (its own working directory) and served `/planted/model`."""
    env = {"MLXD_SHARED": "1"}
    config = None
    if how == "MLXD_CONFIG":
        env["MLXD_CONFIG"] = f"{planted}.toml"
    else:
        config = Path(f"{planted}.toml")
    d = await start_raw(rt, config, env=env, parent=gone_cwd(tmp_path))
    try:
        await d.initialize()
        r = await d.request("mlxd/models", {})
        names = [m["name"] for m in r["result"]["models"]]
        assert "/planted/model" not in names, names
        assert (await d.request("mlxd/stats"))["result"]["server"]["pid"] != d.proc.pid
    finally:
        await d.kill()


@needs_root
@_MODES
async def test_a_repo_id_is_not_the_daemons_directory_of_that_name(rt, tmp_path, planted, mode):
    """Steps: a window in its own project directory (no `<unique>/name` there) configures
    local.model = "<unique>/name", offline (HF_HUB_OFFLINE=1); `/<unique>/name` holds a model.
    A chat must fail (a repo id, offline), not be answered by `/<unique>/name`. Before, shared:
    the pool checked the spec as a directory against the daemon's `/` and loaded it."""
    project = tmp_path / "project"
    project.mkdir()
    cfg = project / "m.toml"
    cfg.write_text(f'[local]\nmodel = "{planted}/name"\npreload = false\n')
    env = {"MLXD_SHARED": mode, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    d = await start_raw(rt, cfg, cwd=project, env=env)
    try:
        await d.initialize()
        r = await d.request("mlxd/chat", CHAT)
        assert "error" in r, r
    finally:
        await d.kill()


async def test_two_windows_relative_model_paths_are_each_their_own(rt, tmp_path, tiny_model):
    """Steps: windows A and B (shared, one daemon) in two project directories, both with
    local.model = "./models/x" and "org/name" backends; A's directory has both (the tiny
    model), B's has neither. A's chats are answered by its local models; B's fail, naming
    B's own path for ./models/x (not A's, not `/`'s), and taking org/name for a repo id
    (offline): B never gets A's model."""
    windows = {}
    for who in ("a", "b"):
        project = tmp_path / who
        project.mkdir()
        if who == "a":
            for rel in ("models/x", "org/name"):
                (project / rel).parent.mkdir(parents=True)
                (project / rel).symlink_to(tiny_model, target_is_directory=True)
        (project / "m.toml").write_text(
            '[local]\nmodel = "./models/x"\npreload = false\n'
            '[backends.repo]\nprotocol = "mlx"\nmodel = "org/name"\n'
        )
        env = {"MLXD_SHARED": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
        windows[who] = (project, env)
    a = await start_raw(rt, windows["a"][0] / "m.toml", cwd=windows["a"][0], env=windows["a"][1])
    b = None
    try:
        await a.initialize()
        b = await start_raw(
            rt, windows["b"][0] / "m.toml", cwd=windows["b"][0], env=windows["b"][1]
        )
        await b.initialize()
        pids = {(await w.request("mlxd/stats"))["result"]["server"]["pid"] for w in (a, b)}
        assert len(pids) == 1 and daemon_pids(rt) == list(pids)  # one shared daemon
        for backend in ("local", "repo"):
            ask = {**CHAT, "backend": backend}
            ra, rb = await asyncio.gather(a.request("mlxd/chat", ask), b.request("mlxd/chat", ask))
            assert "result" in ra, ra
            assert "error" in rb, rb
        missing = str(windows["b"][0] / "models" / "x")
        rb = await b.request("mlxd/chat", {**CHAT, "backend": "local"})
        assert missing in str(rb["error"]), rb
    finally:
        for w in (a, b):
            if w is not None:
                await w.kill()
