"""A repository holding an `mlxd/` package is the working directory of every child mlxd starts
from the editor's directory (mlxd/host.py): each child must still run this installation's mlxd.
`python -m` puts the working directory first on sys.path unless it runs with -P."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from mlxd.client import Client
from mlxd.errors import ModelError
from mlxd.models.hub_child import fetch_in
from mlxd.models.hub_env import WindowEnv


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose `mlxd` package records that it ran, then exits."""
    repo = tmp_path / "repo"
    (repo / "mlxd").mkdir(parents=True)
    code = f"open({str(tmp_path / 'ran')!r}, 'a').write(__name__ + '\\n')\nraise SystemExit(3)\n"
    for name in ("__init__.py", "__main__.py"):
        (repo / "mlxd" / name).write_text(code)
    return repo


async def test_a_client_started_in_the_repository_runs_our_daemon(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    client = await Client.spawn(["--no-shared"])
    try:
        # Before -P the repository's package ran instead and exited: no answer ever came.
        result = await asyncio.wait_for(client.initialize(), 60)
        assert result["serverInfo"]["name"] == "mlxd"
    finally:
        assert await client.shutdown() == 0
    assert not (tmp_path / "ran").exists()


def test_a_download_in_the_windows_directory_runs_our_downloader(
    repo: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    with pytest.raises(ModelError) as err:
        fetch_in(
            WindowEnv(env, str(repo)),
            "nobody/nothing",
            ["*.json"],
            lambda d, t: None,
            threading.Event(),
        )
    assert not (tmp_path / "ran").exists()
    assert "exited with 3" not in str(err.value)  # our child ran and said why it failed
