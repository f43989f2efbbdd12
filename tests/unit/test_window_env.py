"""A shared daemon's session reads its model paths and Hugging Face settings as its editor
window would (issue #19 item 8; attack #19 findings 2 and 3): relative paths against the
window's working directory, HF_* from the window's environment, never the daemon's."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlxd.models import EMBEDDED, resolve_spec
from mlxd.models.download import hub_options


def test_a_relative_model_path_is_the_windows(tmp_path: Path) -> None:
    (tmp_path / "models" / "coder").mkdir(parents=True)
    (tmp_path / "org" / "name").mkdir(parents=True)  # a directory shaped like a repo id
    cwd = str(tmp_path)
    assert resolve_spec("models/coder", cwd) == str(tmp_path / "models" / "coder")
    assert resolve_spec("org/name", cwd) == str(tmp_path / "org" / "name")
    assert resolve_spec("./missing", cwd) == str(tmp_path / "missing")  # its error names it
    assert resolve_spec("w.gguf", cwd) == str(tmp_path / "w.gguf")
    assert resolve_spec("mlx-community/X-4bit", cwd) == "mlx-community/X-4bit"  # a repo id
    assert resolve_spec(EMBEDDED, cwd) == EMBEDDED
    assert resolve_spec("/abs/m", cwd) == "/abs/m"
    assert resolve_spec("models/coder", None) == "models/coder"  # in-process: as given


@pytest.mark.parametrize("flag", ["1", "true", "ON", "yes"])
def test_an_offline_window_never_reaches_the_hub(flag: str) -> None:
    assert hub_options({"HF_HUB_OFFLINE": flag})["local_files_only"] is True
    assert hub_options({"TRANSFORMERS_OFFLINE": flag})["local_files_only"] is True
    assert hub_options({"HF_HUB_OFFLINE": "0"})["local_files_only"] is False


def test_the_windows_endpoint_cache_and_token(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_daemons_own")  # the daemon's: never another window's
    env = {"HOME": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9/"}
    opts = hub_options(env)
    assert opts["endpoint"] == "http://127.0.0.1:9"
    assert opts["cache_dir"] == str(tmp_path / ".cache" / "huggingface" / "hub")
    assert opts["token"] is False  # no token at all, not the daemon's
    assert hub_options({**env, "HF_HOME": "/h"})["cache_dir"] == "/h/hub"
    assert hub_options({**env, "HF_HUB_CACHE": "/c"})["cache_dir"] == "/c"
    assert hub_options({**env, "HF_TOKEN": "hf_window"})["token"] == "hf_window"
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "token").write_text("hf_logged_in\n")  # `hf auth login`
    assert hub_options({**env, "HF_HOME": str(tmp_path / "hf")})["token"] == "hf_logged_in"
    assert hub_options(None) == {}  # in-process: huggingface_hub's own reading


def test_a_tilde_and_the_embedded_override_are_the_windows(tmp_path: Path, monkeypatch) -> None:
    from mlxd.models import embedded_model_path

    monkeypatch.delenv("MLXD_EMBEDDED_GGUF", raising=False)
    cwd, win = str(tmp_path), {"HOME": "/home/win"}
    assert resolve_spec("~/m/coder", cwd, win) == "/home/win/m/coder"
    assert resolve_spec("~", cwd, win) == "/home/win"
    mirror = {**win, "MLXD_EMBEDDED_GGUF": "~/mirror.gguf"}
    assert resolve_spec(EMBEDDED, cwd, mirror) == "/home/win/mirror.gguf"
    assert resolve_spec(EMBEDDED, cwd, {"MLXD_EMBEDDED_GGUF": "rel.gguf"}) == f"{cwd}/rel.gguf"
    assert resolve_spec(EMBEDDED, cwd, win) == EMBEDDED  # nobody points it elsewhere
    # The daemon's own override (the first window's) is not this window's: the packaged file.
    monkeypatch.setenv("MLXD_EMBEDDED_GGUF", str(tmp_path / "first-windows.gguf"))
    packaged = embedded_model_path({})
    assert resolve_spec(EMBEDDED, cwd, win) == (str(packaged) if packaged else EMBEDDED)
    assert resolve_spec(EMBEDDED, None, win) == EMBEDDED  # in-process: as given


def test_the_hub_cache_under_a_tilde_is_the_windows_home() -> None:
    opts = hub_options({"HOME": "/home/win", "HF_HOME": "~/hf"})
    assert opts["cache_dir"] == "/home/win/hf/hub"
    assert hub_options({"HOME": "/home/win", "HF_HUB_CACHE": "~/c"})["cache_dir"] == "/home/win/c"
