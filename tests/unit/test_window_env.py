"""A shared daemon's session reads its model paths and Hugging Face settings as its editor
window would (issue #19 item 8; attack #19 findings 2 and 3): relative paths against the
window's working directory, HF_* from the window's environment, never the daemon's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlxd.cli.daemon import GONE_CWD, _window
from mlxd.models import EMBEDDED, WindowEnv, resolve_spec
from mlxd.models.hub_child import child_env
from mlxd.models.specs import is_hf_repo


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
    assert resolve_spec("models/coder", None) == "models/coder"  # in-process: none here


def test_in_process_a_local_path_is_made_absolute_and_a_repo_id_stays_one(
    tmp_path: Path, monkeypatch
) -> None:
    """`cwd` None (in-process): this process's working directory decides, once; the pool and
    the loader never look a relative `org/name` up as a directory again (a shared daemon's
    own working directory is `/`, where `/org/name` may exist)."""
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert resolve_spec("org/name", None) == str(tmp_path / "org" / "name")
    assert resolve_spec("./models/x", None) == str(tmp_path / "models" / "x")
    assert resolve_spec("other/name", None) == "other/name"
    assert resolve_spec(EMBEDDED, None) == EMBEDDED
    # The spec as resolved is all the pool needs: a relative org/name is a repo id even where
    # a directory of that name exists (here, in this process's working directory).
    assert is_hf_repo("org/name") and not is_hf_repo(str(tmp_path / "org" / "name"))


def test_a_window_whose_directory_was_deleted_reads_its_relative_paths_nowhere() -> None:
    """A session's hello with no cwd (its forwarder's directory was deleted): the config, the
    model, HF_HOME and the CA bundle named relative name nothing, and nothing can be made
    there (before: cwd None, so a download child in `/` used `/hf`, the config `/m.toml`)."""
    env, cwd, config = _window({"env": {"HF_HOME": "hf", "SSL_CERT_FILE": "ca.pem"}, "cwd": None})
    assert cwd == GONE_CWD and config is None
    hub = WindowEnv(env, cwd).env
    for value in (hub["HF_HOME"], hub["SSL_CERT_FILE"], resolve_spec("./m", cwd)):
        assert value.startswith(GONE_CWD + "/"), value
        with pytest.raises(OSError):  # NotADirectoryError: nothing is made under /dev/null
            Path(value).mkdir(parents=True)
    assert resolve_spec("org/name", cwd) == "org/name"  # a repo id all the same


def test_a_download_runs_with_the_windows_environment_and_the_daemons_python(
    monkeypatch,
) -> None:
    # Attack finding H: huggingface_hub takes HF_*, the proxy and the CA bundle from its
    # process's environment: a shared daemon downloads for a window in a child of the window's
    # environment (hub_child.py), running the daemon's own mlxd (its PYTHONPATH, not the
    # window's, which may name another installation: attack finding A).
    monkeypatch.setenv("PYTHONPATH", "/daemon/code")
    monkeypatch.setenv("HTTPS_PROXY", "http://daemons-proxy:1")
    monkeypatch.setenv("HF_TOKEN", "hf_daemons_own")
    window = {
        "HOME": "/home/win",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "SSL_CERT_FILE": "/win/ca.pem",
        "PYTHONPATH": "/another/checkout",
        "PYTHONSAFEPATH": "1",
    }
    env = child_env(window)
    assert env["PYTHONPATH"] == "/daemon/code" and "PYTHONSAFEPATH" not in env
    assert {k: env[k] for k in ("HOME", "HF_ENDPOINT", "SSL_CERT_FILE")} == {
        "HOME": "/home/win",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "SSL_CERT_FILE": "/win/ca.pem",
    }
    assert "HTTPS_PROXY" not in env and "HF_TOKEN" not in env  # never the daemon's


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


@pytest.mark.parametrize(
    ("window", "cache"),
    [({"HF_HOME": "~/hf"}, "/home/win/hf/hub"), ({"HF_HUB_CACHE": "~/c"}, "/home/win/c")],
)
def test_the_hub_cache_under_a_tilde_is_the_windows_home(window: dict, cache: str) -> None:
    """What the download child's huggingface_hub makes of the window's settings."""
    import subprocess
    import sys

    code = "import huggingface_hub.constants as c; print(c.HF_HUB_CACHE)"
    env = child_env({"HOME": "/home/win", **window})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == cache, out


def test_a_windows_relative_hub_paths_are_made_absolute_against_its_directory() -> None:
    """attack5 finding 6: the download child ran in / and read a relative HF_HOME from there.
    Every path-valued Hub variable is the window's (SSL_CERT_DIR: each of its list); `~` is
    left to the child (its HOME is the window's); other variables are as they were."""
    from mlxd.models import WindowEnv

    window = {
        "HF_HOME": "hf",
        "HF_HUB_CACHE": "./hf/hub",
        "HF_XET_CACHE": "~/xet",
        "HF_TOKEN_PATH": "secrets/token",
        "XDG_CACHE_HOME": ".cache",
        "SSL_CERT_FILE": "certs/ca.pem",
        "SSL_CERT_DIR": f"certs{os.pathsep}/etc/ssl/certs",
        "REQUESTS_CA_BUNDLE": "ca.pem",
        "CURL_CA_BUNDLE": "/abs/ca.pem",
        "HF_ENDPOINT": "http://hub",
        "OTHER": "rel/path",
    }
    env = WindowEnv(window, "/proj").env
    assert env == {
        **window,
        "HF_HOME": "/proj/hf",
        "HF_HUB_CACHE": "/proj/./hf/hub",
        "HF_TOKEN_PATH": "/proj/secrets/token",
        "XDG_CACHE_HOME": "/proj/.cache",
        "SSL_CERT_FILE": "/proj/certs/ca.pem",
        "SSL_CERT_DIR": f"/proj/certs{os.pathsep}/etc/ssl/certs",
        "REQUESTS_CA_BUNDLE": "/proj/ca.pem",
    }
    assert WindowEnv(window, None).env == window  # no directory known: as given


def test_two_windows_share_a_download_only_with_the_same_hub_settings() -> None:
    """What a download runs with (token, endpoint, cache, proxy, CA, HOME) decides whether
    another window may use it; unrelated variables and the directory alone do not."""
    from mlxd.models import WindowEnv

    base = {"HOME": "/h", "HF_TOKEN": "hf_a", "HF_HOME": "/cache", "PATH": "/bin", "TERM": "x"}
    same = WindowEnv({**base, "PATH": "/usr/bin", "TERM": "y"}, "/other").identity
    assert WindowEnv(base, "/proj").identity == same
    for change in (
        {"HF_TOKEN": "hf_b"},
        {"HF_ENDPOINT": "http://mirror"},
        {"HTTPS_PROXY": "http://proxy:3128"},
        {"https_proxy": "http://proxy:3128"},
        {"SSL_CERT_FILE": "/corp.pem"},
        {"HOME": "/other-home"},
        {"HF_HOME": "cache"},  # relative: /proj/cache, not /cache
    ):
        assert WindowEnv({**base, **change}, "/proj").identity != same, change
    assert WindowEnv({**base, "HF_HOME": "cache"}, "/").identity == same  # /cache
