"""The forwarder replays what is in force, not the window's history (attack #19 finding C and
its siblings): the settings the daemon last said are in force (runtime.SETTINGS_IN_FORCE)
plus the changes it never handled, and the keys it took (not one it refused)."""

from __future__ import annotations

import json
from typing import Any

from mlxd import runtime
from mlxd.cli.replay import Replay

CHANGE = "workspace/didChangeConfiguration"


def _b(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg).encode()


def _change(settings: Any) -> bytes:
    return _b({"jsonrpc": "2.0", "method": CHANGE, "params": {"settings": settings}})


def _in_force(settings: dict[str, Any], changes: int) -> bytes:
    params = {"settings": settings, "changes": changes}
    return _b({"jsonrpc": "2.0", "method": runtime.SETTINGS_IN_FORCE, "params": params})


def _window() -> Replay:
    r = Replay()
    opts = {"routing": {"cloud": False}}
    init = {"id": 0, "method": "initialize", "params": {"initializationOptions": opts}}
    r.from_client(_b({"jsonrpc": "2.0", **init}))
    assert not r.from_daemon(_in_force(opts, 0))  # consumed, never the editor's
    assert r.from_daemon(_b({"jsonrpc": "2.0", "id": 0, "result": {"capabilities": {}}}))
    r.from_client(_b({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
    return r


def _replayed(r: Replay) -> list[dict[str, Any]]:
    return [json.loads(b) for b in r.replay()]


def test_only_the_settings_in_force_are_replayed_on_the_initialize() -> None:
    r = _window()
    in_force = {"local": {"model": "a"}}
    for settings, handled, now in [
        ({"routing": {"cloud": "yes"}}, 1, {"routing": {"cloud": False}}),  # refused
        ({"local": {"model": "someorg/abandoned"}}, 2, {"local": {"model": "someorg/abandoned"}}),
        (in_force, 3, in_force),
        ({}, 4, in_force),  # a reload: the previous settings stay
    ]:
        r.from_client(_change(settings))
        assert not r.from_daemon(_in_force(now, handled))
    sent = _replayed(r)
    # Before: initialize, initialized and the four changes, each acted on again.
    assert [m["method"] for m in sent] == ["initialize", "initialized"]
    assert sent[0]["params"]["initializationOptions"] == in_force


def test_changes_the_daemon_never_handled_are_replayed_after_it() -> None:
    r = _window()
    r.from_client(_change({"local": {"model": "a"}}))
    r.from_client(_change({"local": {"model": "b"}}))
    r.from_daemon(_in_force({"local": {"model": "a"}}, 1))  # then it died
    sent = _replayed(r)
    assert [m["method"] for m in sent] == ["initialize", "initialized", CHANGE]
    assert sent[0]["params"]["initializationOptions"] == {"local": {"model": "a"}}
    assert sent[2]["params"]["settings"] == {"local": {"model": "b"}}
    # The new daemon counts from 0: its first word covers the change replayed to it.
    r.from_daemon(_in_force({"local": {"model": "a"}}, 0))
    r.from_daemon(_in_force({"local": {"model": "b"}}, 1))
    sent = _replayed(r)
    assert [m["method"] for m in sent] == ["initialize", "initialized"]
    assert sent[0]["params"]["initializationOptions"] == {"local": {"model": "b"}}


def test_a_refused_key_does_not_replace_the_one_in_force() -> None:
    r = _window()
    for n, key in ((1, "good"), (2, "")):
        params = {"backend": "cloud", "apiKey": key}
        r.from_client(_b({"jsonrpc": "2.0", "id": n, "method": "mlxd/setApiKey", "params": params}))
    assert r.from_daemon(_b({"jsonrpc": "2.0", "id": 1, "result": {}}))
    error = {"code": -32602, "message": "Invalid params"}
    assert r.from_daemon(_b({"jsonrpc": "2.0", "id": 2, "error": error}))
    keys = [m for m in _replayed(r) if m["method"] == "mlxd/setApiKey"]
    # Before: the refused one (the last sent) was replayed, and the key in force was lost.
    assert [m["params"]["apiKey"] for m in keys] == ["good"]


def test_a_key_never_answered_is_asked_again_and_kept_once_taken() -> None:
    r = _window()
    params = {"backend": "cloud", "apiKey": "k"}
    r.from_client(_b({"jsonrpc": "2.0", "id": 9, "method": "mlxd/setApiKey", "params": params}))
    # The daemon died first: the client was told it failed; the new daemon is asked for it.
    sent = _replayed(r)
    assert [m["method"] for m in sent] == ["initialize", "initialized", "mlxd/setApiKey"]
    assert not r.from_daemon(_b({"jsonrpc": "2.0", "id": sent[2]["id"], "result": {}}))
    assert [m["method"] for m in _replayed(r)][-1] == "mlxd/setApiKey"  # now in force
