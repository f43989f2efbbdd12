"""The pure parts of the shared daemon (issue #19): the forwarder's frame splitter and replay
record, the runtime directory's checks, the peer check, and how the mode is chosen."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import pytest

from mlxd import runtime
from mlxd.cli.forward import shared_settings
from mlxd.cli.replay import REQUEST_FAILED, Replay, frame
from mlxd.frames import Splitter as Frames


def body(msg: dict) -> bytes:
    return json.dumps(msg).encode()


def test_frames_split_a_stream_cut_anywhere() -> None:
    msgs = [body({"id": n, "method": "m", "params": {"t": "é" * n}}) for n in range(5)]
    stream = b"".join(frame(m) for m in msgs)
    for cut in range(1, len(stream)):
        frames = Frames()
        got = frames.feed(stream[:cut]) + frames.feed(stream[cut:])
        assert got == msgs


def test_a_header_block_without_a_length_is_dropped() -> None:
    assert Frames().feed(b"X-Junk: 1\r\n\r\n" + frame(b"{}")) == [b"{}"]


def test_requests_in_flight_fail_with_32803_and_answered_ones_do_not() -> None:
    r = Replay()
    r.from_client(body({"jsonrpc": "2.0", "id": 1, "method": "mlxd/chat"}))
    r.from_client(body({"jsonrpc": "2.0", "id": "1", "method": "mlxd/chat"}))  # another id
    assert r.from_daemon(body({"jsonrpc": "2.0", "id": 1, "result": {}}))
    errors = [json.loads(Frames().feed(f)[0]) for f in r.failed("gone")]
    assert errors == [
        {"jsonrpc": "2.0", "id": "1", "error": {"code": REQUEST_FAILED, "message": "gone"}}
    ]
    assert r.failed("gone") == []  # each request fails once


def test_the_replay_restores_the_window_and_hides_its_own_answers() -> None:
    r = Replay()
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"capabilities": {}}}
    doc = {"textDocument": {"uri": "file:///a.py", "text": "x", "version": 1, "languageId": "py"}}
    change = {
        "textDocument": {"uri": "file:///a.py", "version": 2},
        "contentChanges": [{"text": "y"}],
    }
    for m in [
        init,
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": doc},
        {"jsonrpc": "2.0", "method": "textDocument/didChange", "params": change},
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didOpen",
            "params": {"textDocument": {"uri": "file:///b.py"}},
        },
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didClose",
            "params": {"textDocument": {"uri": "file:///b.py"}},
        },
        {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "mlxd/setApiKey",
            "params": {"backend": "c", "apiKey": "k"},
        },
    ]:
        r.from_client(body(m))
    assert r.from_daemon(body({"jsonrpc": "2.0", "id": 0, "result": {"capabilities": {}}}))
    assert r.from_daemon(body({"jsonrpc": "2.0", "id": 5, "result": {}}))  # the key was taken
    sent = [json.loads(b) for b in r.replay()]
    assert [m["method"] for m in sent] == [
        "initialize",
        "initialized",
        "mlxd/setApiKey",
        "textDocument/didOpen",  # with the text and version the edits made
    ]
    assert sent[-1]["params"]["textDocument"] == {**doc["textDocument"], "text": "y", "version": 2}
    own = [m["id"] for m in sent if "id" in m]
    assert all(i not in (0, 5) for i in own)  # the client's ids are not reused
    for i in own:
        assert not r.from_daemon(body({"jsonrpc": "2.0", "id": i, "result": {}}))
    assert r.from_daemon(body({"jsonrpc": "2.0", "method": "mlxd/status", "params": {}}))


def test_an_initialize_in_flight_at_a_crash_is_answered_by_the_new_daemon() -> None:
    """Editors never send `initialize` again: failing it lost the window (attack finding B)."""
    r = Replay()
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"capabilities": {}}}
    r.from_client(body(init))
    r.from_client(body({"jsonrpc": "2.0", "id": 1, "method": "mlxd/models"}))
    failed = [json.loads(Frames().feed(f)[0]) for f in r.failed("gone")]
    assert [f["id"] for f in failed] == [1]  # the other request fails, initialize waits
    sent = [json.loads(b) for b in r.replay()]
    assert sent[0] == init  # under the client's own id
    assert r.from_daemon(body({"jsonrpc": "2.0", "id": 0, "result": {"capabilities": {}}}))
    assert json.loads(r.replay()[0])["id"] != 0  # answered: later replays are the forwarder's


def test_after_exit_the_daemon_hanging_up_is_the_end() -> None:
    r = Replay()
    assert not r.exited
    r.from_client(body({"jsonrpc": "2.0", "method": "exit"}))
    assert r.exited


def test_the_runtime_dir_follows_the_env_var_then_xdg(tmp_path: Path) -> None:
    assert runtime.runtime_dir({"MLXD_RUNTIME_DIR": "/x", "XDG_RUNTIME_DIR": "/y"}) == Path("/x")
    assert runtime.runtime_dir({"XDG_RUNTIME_DIR": "/y"}) == Path("/y/mlxd")
    assert str(os.getuid()) in runtime.runtime_dir({}).name
    paths = runtime.Paths.at(tmp_path, version="9.9.9")
    # An upgraded mlxd never talks to an old one, another checkout or venv never to this one.
    assert paths.socket.name == f"mlxd-9.9.9-{runtime.INSTALL}.sock"
    # Relative or ~: absolute (the daemon runs in /, a forwarder in a project).
    assert runtime.runtime_dir({"MLXD_RUNTIME_DIR": "rel/d"}) == Path.cwd() / "rel/d"
    assert runtime.runtime_dir({"MLXD_RUNTIME_DIR": "~/d"}) == Path.home() / "d"


def test_the_installation_id_names_the_code_and_the_environment(tmp_path: Path) -> None:
    """Two copies of the same version (a checkout and a venv's) get sockets of their own."""
    import subprocess
    import sys

    copy = tmp_path / "mlxd"
    shutil.copytree(Path(runtime.__file__).parent, copy)
    code = "from mlxd import runtime; print(runtime.INSTALL)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert other.returncode == 0, other.stderr
    assert len(runtime.INSTALL) == 8 and other.stdout.strip() != runtime.INSTALL


def test_the_runtime_dir_is_created_0700_and_an_open_one_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "rt"
    runtime.ensure_dir(d)
    assert d.stat().st_mode & 0o777 == 0o700
    d.chmod(0o755)
    with pytest.raises(runtime.UnsafeRuntimeDir, match="mode 755"):
        runtime.ensure_dir(d)
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(runtime.UnsafeRuntimeDir, match="not a directory"):
        runtime.ensure_dir(f)


def test_only_the_daemons_own_uid_is_allowed() -> None:
    assert runtime.peer_allowed(1000, own=1000)
    assert not runtime.peer_allowed(0, own=1000)  # root is not us
    assert not runtime.peer_allowed(None, own=1000)  # an OS that cannot say


def test_peer_uid_reads_our_own_uid_over_a_socketpair() -> None:
    import socket

    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert runtime.peer_uid(a) == os.getuid()


def args(config: Path | None = None, shared: bool = False, no_shared: bool = False):
    return argparse.Namespace(
        config=str(config) if config else None, shared=shared, no_shared=no_shared
    )


def test_the_mode_flags_win_over_the_env_var_and_the_file(tmp_path: Path, monkeypatch) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text("[shared]\nenabled = true\nidle_exit_s = 12\n")
    monkeypatch.delenv("MLXD_SHARED", raising=False)
    monkeypatch.delenv("MLXD_CONFIG", raising=False)
    assert shared_settings(args(cfg)) == (True, 12.0)
    assert shared_settings(args(cfg, no_shared=True)) == (False, 12.0)
    monkeypatch.setenv("MLXD_SHARED", "0")
    assert shared_settings(args(cfg)) == (False, 12.0)
    assert shared_settings(args(cfg, shared=True)) == (True, 12.0)
    monkeypatch.delenv("MLXD_SHARED")
    assert shared_settings(args()) == (True, 300.0)  # forwarding by default (issue #19 item 1)
    cfg.write_text("[shared]\nenabled = false\n")
    assert shared_settings(args(cfg)) == (False, 300.0)  # the file turns it off
    cfg.write_text("[shared\n")
    assert shared_settings(args(cfg)) == (True, 300.0)  # a broken file: the defaults


def test_the_replay_resends_every_settings_change_in_order() -> None:
    # The last alone could be an invalid one the daemon refused (the one before stays in
    # force) or `null`: replayed alone, the window's cloud came back on (attack #19, 1).
    r = Replay()
    r.from_client(body({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}))
    changes = [{"settings": {"mlxd": {"routing": {"cloud": False}}}}, {"settings": None}]
    for params in changes:
        r.from_client(
            body({"jsonrpc": "2.0", "method": "workspace/didChangeConfiguration", "params": params})
        )
    sent = [json.loads(b) for b in r.replay()]
    assert [
        m["params"] for m in sent if m["method"] == "workspace/didChangeConfiguration"
    ] == changes


def test_a_runtime_dir_under_a_parent_others_may_write_is_refused(tmp_path: Path) -> None:
    # Whoever may rename entries there may swap the directory for their own and listen in
    # its place (attack #19, 5); a sticky parent (/tmp) forbids that.
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o777)
    with pytest.raises(runtime.UnsafeRuntimeDir, match="writable by others"):
        runtime.ensure_dir(parent / "rt")
    parent.chmod(0o1777)
    runtime.ensure_dir(parent / "rt2")


def test_connect_refuses_a_socket_served_by_another_user(tmp_path: Path, monkeypatch) -> None:
    import socket

    path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    try:
        assert runtime.connect(path) is not None  # ours
        monkeypatch.setattr(runtime, "peer_uid", lambda sock: os.getuid() + 1)
        assert runtime.connect(path) is None
    finally:
        server.close()


def _pump_against(daemon_says: bytes) -> tuple[int, list[str]]:
    """Run the forwarder's pump against a fake daemon that sends `daemon_says` and hangs up;
    (the exit code, the reconnects asked for)."""
    import socket

    from mlxd.cli.forward import pump

    ours, theirs = socket.socketpair(socket.AF_UNIX)
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    asked: list[str] = []

    def reconnect(answered: bool, dropped_s: float, deaths: int) -> str:
        asked.append("reconnect")
        return "no daemon in this test"

    theirs.sendall(daemon_says)
    theirs.close()
    try:
        return pump(ours, stdin_r, stdout_w, reconnect), asked
    finally:
        for fd in (stdin_r, stdin_w, stdout_r, stdout_w):
            os.close(fd)


def test_a_session_the_daemon_ended_is_not_taken_for_its_death(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLXD_RUNTIME_DIR", str(tmp_path))  # no `mlxd stop` marker there
    # Attack #19 finding 8: a hang-up after the daemon's own goodbye is the end of the session
    # (exit code as the daemon says), not a crash to recover from.
    ended = {"exitCode": 1, "reason": "client process 42 is gone"}
    goodbye = body({"jsonrpc": "2.0", "method": runtime.SESSION_ENDED, "params": ended})
    assert _pump_against(frame(goodbye)) == (1, [])
    code, asked = _pump_against(b"")  # a hang-up without it: the daemon died
    assert asked == ["reconnect"] and code == 1


def test_the_goodbye_is_not_forwarded_to_the_editor() -> None:
    r = Replay()
    params = {"exitCode": 0, "reason": None}
    assert not r.from_daemon(
        body({"jsonrpc": "2.0", "method": runtime.SESSION_ENDED, "params": params})
    )
    assert r.ended == params


def _daemons_text(text: str, changes: list[dict], encoding: str) -> str:
    """The text the daemon's own document store makes of `changes` (transport/documents.py)."""
    from lsprotocol import types as T
    from pygls.workspace import PositionCodec

    from mlxd.transport.documents import LSPTextDocument

    codec = PositionCodec(encoding=T.PositionEncodingKind(encoding))
    doc = LSPTextDocument("file:///p/a.py", text, position_codec=codec)
    for c in changes:
        if "range" not in c:
            doc.apply_change(T.TextDocumentContentChangeWholeDocument(text=c["text"]))
            continue
        r = c["range"]
        rng = T.Range(T.Position(**r["start"]), T.Position(**r["end"]))
        doc.apply_change(T.TextDocumentContentChangePartial(range=rng, text=c["text"]))
    return doc.source


def _replayed(text: str, changes: list[dict], encoding: str, version: int = 2) -> dict:
    r = Replay()
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}
    r.from_client(body(init))
    result = {"capabilities": {"positionEncoding": encoding}}
    assert r.from_daemon(body({"jsonrpc": "2.0", "id": 0, "result": result}))
    item = {"uri": "file:///p/a.py", "languageId": "python", "version": 1, "text": text}
    r.from_client(
        body({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": item}})
    )
    for n, c in enumerate(changes):
        params = {
            "textDocument": {"uri": "file:///p/a%2Epy", "version": n + 2},
            "contentChanges": [c],
        }
        r.from_client(
            body({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": params})
        )
    opened = [m for m in map(json.loads, r.replay()) if m["method"] == "textDocument/didOpen"]
    assert len(opened) == 1 and opened[0]["params"]["textDocument"]["version"] == len(changes) + 1
    return opened[0]["params"]["textDocument"]


def test_a_document_edited_past_any_bound_is_replayed_with_its_current_text() -> None:
    # Attack #19 finding 7: past 10,000 edits a document was dropped from the replay (no
    # editor reopens it: after a daemon crash it answered "not open"); now the edits are
    # applied to the text as they come (cli/synced.py), and memory stays the text.
    changes = []
    for n in range(10_001):
        at = {"line": 0, "character": n}
        changes.append({"range": {"start": at, "end": at}, "text": "x"})
    doc = _replayed("", changes, "utf-16")
    assert doc["text"] == "x" * len(changes)


@pytest.mark.parametrize("chunk", [3, 8, 1 << 16])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
def test_the_replayed_text_is_the_daemons_for_any_edits(
    encoding: str, chunk: int, monkeypatch
) -> None:
    # The forwarder applies edits as the daemon does: \r, \r\n and \n only (not \f, U+2028),
    # columns in the negotiated encoding, positions past a line or the document clamped, a
    # reversed range replacing nothing, an edit joining a \r and a \n, a whole-text change;
    # with the text cut in many chunks (edits across them) or one.
    import random

    from mlxd.cli import synced

    monkeypatch.setattr(synced, "CHUNK", chunk)

    rng = random.Random(19)
    alphabet = ["a", "b", "\n", "\r", "\r\n", "é", "😀", "\f", "\u2028", " "]
    text = "def f():\r\n    return 1\r\x0c😀\u2028é\n"
    for _ in range(8):
        changes = []
        for _ in range(150):
            if rng.random() < 0.01:
                changes.append({"text": "".join(rng.choices(alphabet, k=rng.randint(0, 8)))})
                continue
            pos = [{"line": rng.randint(0, 6), "character": rng.randint(0, 12)} for _ in "se"]
            ins = "".join(rng.choices(alphabet, k=rng.randint(0, 3)))
            changes.append({"range": {"start": pos[0], "end": pos[1]}, "text": ins})
        assert _replayed(text, changes, encoding)["text"] == _daemons_text(text, changes, encoding)


@pytest.mark.parametrize(
    "params",
    [
        {"textDocument": "file:///p/a.py"},
        {"textDocument": {"uri": 5}},
        {"textDocument": {"uri": "file:///p/a.py", "version": 3}, "contentChanges": 5},
        {"textDocument": {"uri": "file:///p/a.py"}, "contentChanges": [{"range": 1, "text": "x"}]},
        {
            "textDocument": {"uri": "file:///p/a.py"},
            "contentChanges": [{"range": {"start": {}}, "text": "x"}],
        },
        {"textDocument": {"uri": "file:///p/a.py"}, "contentChanges": [{"text": 5}, None]},
        [1, 2],
        None,
    ],
)
@pytest.mark.parametrize(
    "method", ["textDocument/didOpen", "textDocument/didChange", "textDocument/didClose"]
)
def test_a_malformed_document_message_never_breaks_the_forwarder(method: str, params) -> None:
    # The daemon answers a malformed message; the forwarder forwards it and must not raise.
    r = Replay()
    item = {"uri": "file:///p/a.py", "languageId": "python", "version": 1, "text": "ab"}
    r.from_client(
        body({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": item}})
    )
    r.from_client(body({"jsonrpc": "2.0", "method": method, "params": params}))
    r.replay()


def test_a_daemon_of_the_wire_before_the_welcome_has_another_socket() -> None:
    """Code updated in place (same version, same code and Python directories) must not pair
    a forwarder that waits for runtime.WELCOME with a daemon still running the code before
    it (which never sends one: each new window would wait START_WAIT_S, then serve
    in-process): the wire is part of the socket's name."""
    import hashlib
    import os
    import sys

    import mlxd.runtime as rt_mod

    old = f"{os.path.realpath(os.path.dirname(rt_mod.__file__))}\0{os.path.realpath(sys.prefix)}"
    assert rt_mod.INSTALL != hashlib.sha256(old.encode()).hexdigest()[:8]
    assert rt_mod.WIRE >= 2
