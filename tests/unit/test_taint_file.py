"""taint_file.py: rule 1's memory kept per user in the runtime directory. The file is private
(0600, ours, never through a symlink), holds digests only, is bounded, and an unusable one
leaves the memory in the process only (logged once at INFO, no traceback)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from mlxd import taint, uris
from mlxd.taint_file import Remembered
from mlxd.types import Message, Request

ENV = "file:///p/.env"
SECRET = "Explain:\nAPI_TOKEN=sk-live-5f2c9a8e7d6b"


def excluded(uri: str) -> bool:
    return uri.endswith(".env")


def chat(*messages: tuple[str, str]) -> Request:
    return Request(kind="chat", messages=[Message(r, c) for r, c in messages])


def key(n: int) -> str:
    return f"{n:064x}"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rt"
    d.mkdir(mode=0o700)
    return d


def tainted_by(memory: Remembered) -> str | None:
    return taint.Conversations(memory=memory).route(chat(("user", SECRET)), [], [], excluded)[1]


def test_a_conversation_tainted_in_one_process_is_tainted_in_the_next(run_dir):
    path = run_dir / "taint"
    first = taint.remembered(path)
    assert taint.Conversations(memory=first).route(chat(("user", SECRET)), [ENV], [], excluded)[1]
    assert tainted_by(taint.remembered(path)) == ENV  # a new process: loaded at start
    text = path.read_text()
    assert "API_TOKEN" not in text and "sk-live" not in text  # digests only
    assert text.count("\n") == 1 and text.endswith(f" {ENV}\n")


def test_a_memory_sees_what_another_wrote_after_it_loaded(run_dir):
    path = run_dir / "taint"
    a, b = taint.remembered(path), taint.remembered(path)
    assert tainted_by(b) is None
    taint.Conversations(memory=a).route(chat(("user", SECRET)), [ENV], [], excluded)
    assert tainted_by(b) == ENV  # re-read on a miss


def test_the_file_is_created_0600_whatever_the_umask(run_dir):
    old = os.umask(0)
    try:
        taint.remembered(run_dir / "taint").put(key(1), ENV)
    finally:
        os.umask(old)
    assert (run_dir / "taint").stat().st_mode & 0o777 == 0o600


def test_a_symlink_planted_at_the_path_is_not_followed(run_dir, tmp_path, caplog):
    target = tmp_path / "elsewhere"
    target.write_text(f"{key(7)} {ENV}\n")
    target.chmod(0o600)
    (run_dir / "taint").symlink_to(target)
    caplog.set_level(logging.INFO, "mlxd")
    memory = taint.remembered(run_dir / "taint")
    assert memory.get(key(7)) is None  # not read through the link
    memory.put(key(8), ENV)
    assert target.read_text() == f"{key(7)} {ENV}\n"  # not written through it
    assert memory.get(key(8)) == ENV  # kept in memory
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.parametrize("mode", [0o666, 0o640, 0o602])
def test_a_file_open_to_others_is_ignored(run_dir, mode, caplog):
    path = run_dir / "taint"
    path.write_text(f"{key(7)} {ENV}\n")
    path.chmod(mode)
    caplog.set_level(logging.INFO, "mlxd")
    memory = taint.remembered(path)
    assert memory.get(key(7)) is None  # another user may have planted it
    memory.put(key(8), ENV)
    assert path.read_text() == f"{key(7)} {ENV}\n"
    assert len(caplog.records) == 1 and "mode" in caplog.records[0].getMessage()


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a file to another uid")
def test_a_file_owned_by_another_user_is_ignored(run_dir):
    path = run_dir / "taint"
    path.write_text(f"{key(7)} {ENV}\n")
    path.chmod(0o600)
    os.chown(path, 12345, 12345)
    memory = taint.remembered(path)
    assert memory.get(key(7)) is None
    memory.put(key(8), ENV)
    assert path.read_text() == f"{key(7)} {ENV}\n"


@pytest.mark.parametrize("how", ["a file", "open to others"])
def test_an_unusable_directory_leaves_the_memory_in_the_process(tmp_path, how, caplog):
    parent = tmp_path / "rt"
    if how == "a file":
        parent.write_text("")
    else:
        parent.mkdir(mode=0o755)
        parent.chmod(0o755)
    caplog.set_level(logging.INFO, "mlxd")
    memory = taint.remembered(parent / "taint")
    memory.put(key(1), ENV)
    memory.put(key(2), ENV)
    assert memory.get(key(1)) == ENV and memory.get(key(3)) is None
    assert [r.levelno for r in caplog.records] == [logging.INFO]  # once
    assert not (how == "open to others" and (parent / "taint").exists())


def test_the_file_is_bounded_and_keeps_every_writers_most_recent(run_dir):
    path = run_dir / "taint"
    a, b = Remembered(4), Remembered(4)
    a.attach(path)
    b.attach(path)
    for n in range(20):
        (a if n % 2 else b).put(key(n), ENV if n % 2 else uris.LOCAL_ONLY)
        assert len(path.read_text().splitlines()) <= 2 * 4 + 1
    assert path.stat().st_mode & 0o777 == 0o600
    fresh = Remembered(4)
    fresh.attach(path)
    assert fresh.get(key(19)) == ENV and fresh.get(key(18)) == uris.LOCAL_ONLY
    assert [p.name for p in run_dir.iterdir()] == ["taint"]  # no temporary file left


def test_a_line_being_written_is_read_once_whole(run_dir):
    path = run_dir / "taint"
    memory = taint.remembered(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(fd, f"{key(5)} {ENV}\n{key(6)} file:///p/.e".encode())
    assert memory.get(key(5)) == ENV and memory.get(key(6)) is None
    os.write(fd, b"nv\n")
    os.close(fd)
    assert memory.get(key(6)) == ENV


def test_a_remembered_document_this_session_does_not_exclude_stays_local():
    """Remembered where .env was excluded (another window, an earlier config): kept local."""
    memory = taint.remembered()
    taint.Conversations(memory=memory).route(chat(("user", SECRET)), [ENV], [], excluded)
    docs, tainted = taint.Conversations(memory=memory).route(
        chat(("user", SECRET)), [], [], lambda uri: uri == uris.LOCAL_ONLY
    )
    assert tainted == ENV and uris.LOCAL_ONLY in docs


def test_a_uri_with_raw_whitespace_is_kept_escaped_on_one_line(run_dir):
    path = run_dir / "taint"
    taint.remembered(path).put(key(1), "file:///My Project/a\nb/.env")
    assert path.read_text() == f"{key(1)} file:///My%20Project/a%0Ab/.env\n"
    assert taint.remembered(path).get(key(1)) == "file:///My%20Project/a%0Ab/.env"


def test_a_line_left_unfinished_does_not_swallow_the_next_entry(run_dir):
    """A last line cut short (a full disk mid-write, a crash, an edit): the next entry is
    still its own line, so the next process still sees that conversation as tainted."""
    path = run_dir / "taint"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, f"{key(1)} {ENV}\n{key(2)} file:///p/.e".encode())
    os.close(fd)
    taint.remembered(path).put(key(3), ENV)
    fresh = taint.remembered(path)
    assert fresh.get(key(3)) == ENV and fresh.get(key(1)) == ENV
    assert fresh.get(key(2)) == "file:///p/.e"  # its digest was whole: still a taint


def test_a_fifo_planted_at_the_path_does_not_block_and_is_not_used(run_dir, caplog):
    """Opening a FIFO for reading waits for a writer: the daemon would hang at start."""
    import signal

    path = run_dir / "taint"
    os.mkfifo(path, 0o600)

    def hung(*_: object) -> None:
        raise TimeoutError("opening the taint file blocked")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)  # a guard against a hang, not a timing assert
    try:
        with caplog.at_level(logging.INFO, logger="mlxd.taint_file"):
            memory = taint.remembered(path)
            memory.put(key(1), ENV)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert memory.path is None and memory.get(key(1)) == ENV  # in this process only
    assert "not a regular file" in caplog.text


def test_a_failed_write_is_written_later_and_the_file_stays_in_use(run_dir, monkeypatch, caplog):
    """A full disk for a moment (the one thing here mocked: os.write fails once with ENOSPC):
    the entry is written with the next one, and this process still reads what another writes.
    Before, one failure left the memory in the process for its whole life: a conversation it
    tainted afterwards went to the cloud after a restart, another window's taint unseen."""
    import errno

    path = run_dir / "taint"
    memory, other = taint.remembered(path), taint.remembered(path)
    real_write, failures = os.write, [OSError(errno.ENOSPC, "No space left on device")]

    def write(fd: int, data: bytes) -> int:
        if failures:
            raise failures.pop()
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    caplog.set_level(logging.INFO, "mlxd")
    memory.put(key(1), ENV)  # fails
    monkeypatch.setattr(os, "write", real_write)
    memory.put(key(2), ENV)
    other.put(key(3), ENV)
    fresh = taint.remembered(path)
    assert fresh.get(key(1)) == ENV and fresh.get(key(2)) == ENV
    assert memory.get(key(3)) == ENV  # still reads the file
    assert [r.levelno for r in caplog.records] == [logging.INFO]  # said once
