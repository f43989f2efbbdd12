"""Issue 18 item 18: messages in the user's editor's words.

A typo in the editor's settings used to read "invalid initializationOptions"; a missing key
said "hand one over from the editor (mlxd/setApiKey)"; a bad TOML file was named twice. The
daemon learns the editor from `initialize`'s clientInfo and names the setting the user edited
and the editor's own command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_protocol_errors import Raw
from tests.fakes import ENV_FILE

REPO = Path(__file__).resolve().parents[2]
VSCODE = {"name": "Visual Studio Code", "version": "1.106.0"}
CODE_SERVER = {"name": "code-server", "version": "1.106.0"}
NEOVIM = {"name": "Neovim", "version": "0.12.0"}


@pytest.fixture(autouse=True)
def _no_os_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's keyring is an empty file: no key from this machine's keyring."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.fakes.FileKeyring")
    monkeypatch.setenv(ENV_FILE, str(tmp_path / "keyring.json"))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("MLXD_TEST_NO_SUCH_KEY", raising=False)


async def _start(
    config: Path | None, client: dict[str, str] | None, options: Any = None
) -> tuple[Raw, list[str]]:
    """A daemon initialized as `client` would; the showMessage texts up to `initialized`."""
    d = await Raw.start(config)
    params: dict[str, Any] = {"processId": None, "capabilities": {}, "rootUri": None}
    if client is not None:
        params["clientInfo"] = client
    if options is not None:
        params["initializationOptions"] = options
    assert "result" in await d.request("initialize", params)
    d.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    await d.request("mlxd/models", {})  # answered after the initialized notification's messages
    return d, _shown(d)


def _shown(d: Raw) -> list[str]:
    return [f["params"]["message"] for f in d.frames if f.get("method") == "window/showMessage"]


async def _stop(d: Raw) -> None:
    await d.request("shutdown")
    d.send({"jsonrpc": "2.0", "method": "exit"})
    await d.wait()


async def test_invalid_toml_names_the_file_once(tmp_path: Path, tiny_model: Path) -> None:
    cfg = tmp_path / "mlxd.toml"
    cfg.write_text(f'[local\nmodel = "{tiny_model}"\n')
    d, shown = await _start(cfg, VSCODE)
    await _stop(d)
    [msg] = [m for m in shown if "invalid TOML" in m]
    assert msg.count(str(cfg)) == 1, msg


@pytest.mark.parametrize(
    ("client", "named"),
    [
        (VSCODE, 'setting "mlxd.config"'),
        (CODE_SERVER, 'setting "mlxd.config"'),
        (NEOVIM, "init_options (require('mlxd').setup)"),
        (None, "initializationOptions"),
    ],
)
async def test_a_settings_typo_names_the_setting_the_user_edited(
    tiny_config: Path, client: dict[str, str] | None, named: str
) -> None:
    d, shown = await _start(tiny_config, client, {"routing": {"chat": ["ghost"]}})
    d.send(
        {
            "jsonrpc": "2.0",
            "method": "workspace/didChangeConfiguration",
            "params": {"settings": {"mlxd": {"inline": {"multi_line": "sometimes"}}}},
        }
    )
    await d.request("mlxd/models", {})
    shown = _shown(d)
    await _stop(d)
    assert len(shown) == 2, shown
    for msg in shown:
        assert f"invalid {named}" in msg, msg
    assert "ghost" in shown[0] and "multi_line" in shown[1]
    if client is not None:
        assert not any("initializationOptions" in m for m in shown), shown


@pytest.mark.parametrize(
    ("client", "hint"),
    [
        (VSCODE, 'run "mlxd: Set API Key" in VS Code'),
        (NEOVIM, "run :MlxdSetKey {backend} in Neovim"),
        (None, "mlxd/setApiKey"),
    ],
)
async def test_no_key_hint_names_the_editors_command(
    tmp_path: Path, tiny_model: Path, client: dict[str, str] | None, hint: str
) -> None:
    cfg = tmp_path / "mlxd.toml"
    cfg.write_text(
        f'[local]\nmodel = "{tiny_model}"\n'
        '[backends.cloud]\nprotocol = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'model = "m"\napi_key_env = "MLXD_TEST_NO_SUCH_KEY"\n[routing]\ncloud = true\n'
    )
    d, _ = await _start(cfg, client)
    r = await d.request(
        "mlxd/chat", {"messages": [{"role": "user", "content": "hi"}], "backend": "cloud"}
    )
    await _stop(d)
    message = r["error"]["message"]
    assert "has no API key" in message and hint in message, message
    if client is not None:
        assert "mlxd/setApiKey" not in message, message
