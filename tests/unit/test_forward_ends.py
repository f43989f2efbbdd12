"""How the forwarder answers the requests a session's end leaves unanswered (issue #19, attack
finding E's siblings): the real pump() between pipes and a socket pair, a scripted daemon on
the other end. Every request the forwarder read is answered exactly once, with the reason."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from mlxd import runtime
from mlxd.cli.forward import pump
from mlxd.cli.replay import REQUEST_FAILED, frame
from mlxd.frames import Splitter


def _msg(msg: dict) -> bytes:
    return frame(json.dumps(msg).encode())


# A $/progress frame, what the daemons here stream.
NOTE = _msg({"jsonrpc": "2.0", "method": "$/progress", "params": {"token": 1, "value": {}}})


def _run(client_says: list[dict], daemon_ends: bytes) -> tuple[int, list[dict], list[str]]:
    """The client sends `client_says`; the fake daemon reads them all, answers none, sends
    `daemon_ends` and hangs up. (exit code, frames the editor got, reconnects asked for)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    asked: list[str] = []

    def daemon() -> None:
        got, frames = 0, Splitter()
        while got < len(client_says):
            got += len(frames.feed(theirs.recv(1 << 16)))
        theirs.sendall(daemon_ends)
        theirs.close()

    def reconnect(answered: bool, dropped_s: float, deaths: int) -> str:
        asked.append("reconnect")
        return "no daemon in this test"

    thread = threading.Thread(target=daemon)
    thread.start()
    os.write(stdin_w, b"".join(_msg(m) for m in client_says))
    try:
        code = pump(ours, stdin_r, stdout_w, reconnect)
        thread.join(10)
        os.close(stdout_w)
        out = b""
        while chunk := os.read(stdout_r, 1 << 16):
            out += chunk
        return code, [json.loads(b) for b in Splitter().feed(out)], asked
    finally:
        for fd in (stdin_r, stdin_w, stdout_r):
            os.close(fd)


CHAT = {"jsonrpc": "2.0", "id": 7, "method": "mlxd/chat", "params": {}}


def _goodbye(reason: str | None, code: int = 0) -> bytes:
    params = {"exitCode": code, "reason": reason}
    return _msg({"jsonrpc": "2.0", "method": runtime.SESSION_ENDED, "params": params})


def test_a_request_the_daemon_never_answered_gets_the_sessions_end_reason(
    tmp_path: Path, monkeypatch
) -> None:
    # Before: no answer at all; the forwarder exited with id 7 unanswered.
    monkeypatch.setenv("MLXD_RUNTIME_DIR", str(tmp_path))
    code, got, asked = _run([CHAT], _goodbye("the shared daemon was stopped (mlxd stop)"))
    assert code == 0 and asked == []
    assert [f["id"] for f in got] == [7]
    assert got[0]["error"]["code"] == REQUEST_FAILED
    assert "stopped (mlxd stop)" in got[0]["error"]["message"]


def test_after_exit_nothing_more_is_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLXD_RUNTIME_DIR", str(tmp_path))
    exit_ = {"jsonrpc": "2.0", "method": "exit"}
    code, got, _ = _run([CHAT, exit_], _goodbye(None, 1))
    assert code == 1 and got == []


def test_a_stopped_daemon_that_left_without_goodbye_is_not_called_restarted(
    tmp_path: Path, monkeypatch
) -> None:
    # `mlxd stop`'s marker is there: the window is told the daemon was stopped, not that "a new
    # one serves this window, send the request again" (before: that, then exit 1).
    monkeypatch.setenv("MLXD_RUNTIME_DIR", str(tmp_path))
    runtime.paths().stopped.write_text("1")
    code, got, asked = _run([CHAT], b"")
    assert code == 1 and asked == []
    assert [f["id"] for f in got] == [7] and got[0]["error"]["code"] == REQUEST_FAILED
    message = got[0]["error"]["message"]
    assert "stopped (mlxd stop)" in message and "send the request again" not in message, message


def _streaming_daemon(theirs: socket.socket, stop: threading.Event, saw_eof: list[bool]) -> None:
    """A daemon streaming a chat's $/progress without end: it stops when the forwarder shuts
    its side (the session's end, as the real daemon sees it) or when the test says so."""
    theirs.settimeout(0.01)
    try:
        while not stop.is_set():
            theirs.sendall(NOTE * 50)
            try:
                if theirs.recv(1 << 16) == b"":
                    saw_eof.append(True)
                    return
            except TimeoutError:
                pass
    except OSError:
        pass
    finally:
        theirs.close()


def _pump_in_thread(ours: socket.socket, stdin: int, stdout: int) -> tuple[threading.Thread, list]:
    result: list = []

    def run() -> None:
        try:
            result.append(pump(ours, stdin, stdout, lambda *a: "no daemon in this test"))
        except BaseException as exc:  # the test reports it, not the thread's excepthook
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_an_editor_that_closed_stdout_mid_stream_ends_the_session_with_status_0() -> None:
    # A window reloaded while a chat streams: the extension host closes the forwarder's stdout.
    # Before: the next frame raised BrokenPipeError out of pump (exit status 1, a traceback).
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    stop, saw_eof = threading.Event(), []
    daemon = threading.Thread(target=_streaming_daemon, args=(theirs, stop, saw_eof))
    daemon.start()
    try:
        thread, result = _pump_in_thread(ours, stdin_r, stdout_w)
        os.read(stdout_r, 1 << 16)  # the stream reaches the editor...
        os.close(stdout_r)  # ...which goes away without closing stdin
        thread.join(10)
        assert result == [0]
        daemon.join(10)
        assert saw_eof == [True]  # the forwarder ended the session on the daemon's side
    finally:
        stop.set()
        daemon.join(10)
        for fd in (stdin_r, stdin_w, stdout_w):
            os.close(fd)


def _streaming_daemon_process(
    sock: socket.socket, frames: int | None = None, after_eof: bool = False
) -> subprocess.Popen:
    """A daemon in a child process (so that its socket never runs dry), given `sock`:
    `frames` $/progress frames then a final one (method "done"), then waiting for EOF; None:
    streaming until its socket is closed under it, deaf to the forwarder's shutdown.
    `after_eof`: it first waits for that shutdown (the editor's EOF reached the forwarder)."""
    done = _msg({"jsonrpc": "2.0", "method": "done"})
    code = f"import os\nfd = {sock.fileno()}\n"
    if after_eof:
        code += "while os.read(fd, 1 << 16):\n    pass\n"
    if frames is None:
        code += f"while True:\n    os.write(fd, {NOTE!r} * 2000)\n"  # more than the buffer holds
    else:
        code += (
            f"for _ in range({frames}):\n    os.write(fd, {NOTE!r})\n"
            f"os.write(fd, {done!r})\nwhile os.read(fd, 1 << 16):\n    pass\n"
        )
    child = subprocess.Popen([sys.executable, "-c", code], pass_fds=[sock.fileno()])
    sock.close()
    return child


def _stop(child: subprocess.Popen, *fds: int) -> None:
    """Kill the daemon process `child`, close `fds` (those still open)."""
    child.kill()
    child.wait()
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def test_the_editors_eof_ends_the_forwarder_even_while_the_daemon_keeps_streaming() -> None:
    # The grace after the editor's EOF held only while the socket was quiet: a daemon still
    # streaming (one that ignores the forwarder's shutdown, here) kept the forwarder alive
    # forever. The daemon is another process, so that the socket seldom runs dry; on 2 busy
    # cores it still may near the deadline, which ended the old loop too: this catches the
    # fault in about half the runs; the full-stdout test below catches its sibling always.
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    daemon = _streaming_daemon_process(theirs)

    def editor_reads() -> None:
        with contextlib.suppress(OSError):
            while os.read(stdout_r, 1 << 16):
                pass

    threading.Thread(target=editor_reads, daemon=True).start()
    try:
        thread, result = _pump_in_thread(ours, stdin_r, stdout_w)
        os.close(stdin_w)
        thread.join(10)
        assert result == [0], "the forwarder still ran 10 s after the editor's EOF"
        assert daemon.wait(10) != 0  # its socket was closed under it: EPIPE
    finally:
        _stop(daemon, stdin_r, stdout_w, stdout_r)


def test_an_editor_slow_to_read_a_non_blocking_stdout_loses_nothing() -> None:
    # An editor whose end of the pipe is non-blocking (or one that reads late): the pipe fills.
    # _Editor took EAGAIN for "the editor has gone" and ended the session silently: the chat
    # was lost. Now it waits for room: every frame arrives, in order, and the forwarder goes on.
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    os.set_blocking(stdout_w, False)
    daemon = _streaming_daemon_process(theirs, 3000)  # ~270 KB: a 64 KB pipe fills
    try:
        thread, result = _pump_in_thread(ours, stdin_r, stdout_w)
        time.sleep(1.0)  # not reading meanwhile
        got, out = [], b""
        splitter = Splitter()
        while not got or got[-1].get("method") != "done":
            out = os.read(stdout_r, 1 << 16)
            assert out, "stdout closed before the last frame"
            got += [json.loads(b) for b in splitter.feed(out)]
        assert len(got) == 3001 and result == [], (len(got), result)
        os.close(stdin_w)
        thread.join(10)
        assert result == [0]
    finally:
        _stop(daemon, stdin_r, stdout_r, stdout_w, stdin_w)


def test_an_editor_that_died_without_reading_its_full_stdout_ends_the_forwarder(
    monkeypatch,
) -> None:
    # The editor died, and something still holds the pipe's read end without reading: the
    # forwarder's write blocked for good and never came back to its check of the parent (an
    # orphan). Now it waits for room in steps and checks the parent meanwhile.
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    daemon = _streaming_daemon_process(theirs)
    parent = os.getppid()
    try:
        thread, result = _pump_in_thread(ours, stdin_r, stdout_w)
        time.sleep(1.5)  # the pipe is full: the forwarder waits for room
        assert thread.is_alive()
        monkeypatch.setattr(os, "getppid", lambda: parent + 1)  # the editor has died
        thread.join(10)
        assert result == [0], "the forwarder still ran 10 s after its editor died"
    finally:
        _stop(daemon, stdin_r, stdin_w, stdout_r, stdout_w)


def test_stdin_and_stdout_one_socket_closed_with_an_answer_unread_ends_with_status_0() -> None:
    # socat EXEC:, inetd-style launchers: stdin and stdout are one socket. Closed by the editor
    # with an answer unread, reading it fails with ECONNRESET: before, a traceback and status 1.
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    editor, forwarder_end = socket.socketpair(socket.AF_UNIX)
    answer = _msg({"jsonrpc": "2.0", "id": 1, "result": "x" * 100_000})

    def daemon() -> None:
        with contextlib.suppress(OSError):
            while data := theirs.recv(1 << 16):
                if b'"id": 1' in data:
                    theirs.sendall(answer)
        theirs.close()

    serving = threading.Thread(target=daemon)
    serving.start()
    try:
        fd = forwarder_end.fileno()
        thread, result = _pump_in_thread(ours, fd, fd)
        editor.sendall(_msg({"jsonrpc": "2.0", "id": 1, "method": "mlxd/stats", "params": {}}))
        editor.sendall(_msg({"jsonrpc": "2.0", "id": 2, "method": "mlxd/stats", "params": {}}))
        time.sleep(0.5)  # the answer is in the editor's socket, unread
        editor.close()
        thread.join(10)
        assert result == [0], result
    finally:
        serving.join(10)
        forwarder_end.close()


def test_the_grace_after_the_editors_eof_holds_while_its_stdout_is_full() -> None:
    # The editor closed stdin and reads nothing more: the daemon's last frames fill the pipe.
    # The write waited for room and checked only that the editor lived: the forwarder outlived
    # its grace for as long as the editor did (re-attack, session 15).
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    daemon = _streaming_daemon_process(theirs, after_eof=True)
    os.close(stdin_w)
    try:
        thread, result = _pump_in_thread(ours, stdin_r, stdout_w)
        thread.join(10)
        assert result == [0], "the forwarder still ran 10 s after the editor's EOF"
    finally:
        _stop(daemon, stdin_r, stdout_r, stdout_w)
