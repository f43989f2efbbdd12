"""KeyStore resolution, redaction, and the `mlxd keys` commands (through a real pty)."""

from __future__ import annotations

import logging
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import keyring
import pytest
from jaraco.classes.properties import classproperty
from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked

from mlxd.config import BackendConfig
from mlxd.log_redact import RedactingFilter, install_redaction, uninstall_redaction
from mlxd.secrets import REDACTED, SERVICE, KeyStore, key_sources
from tests.fakes import ENV_FILE, FileKeyring

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-proj-SECRET-abcdefghijklmnop"


@pytest.fixture(autouse=True)
def ring(tmp_path):
    previous = keyring.get_keyring()
    ring = FileKeyring(tmp_path / "keyring.json")
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(previous)


class LockedKeyring(KeyringBackend):
    """A keyring that refuses every read, as a locked Secret Service does."""

    @classproperty
    def priority(cls) -> float:
        raise RuntimeError("only used when set explicitly")

    def get_password(self, service, username):
        raise KeyringLocked("the collection is locked")

    def set_password(self, service, username, password):
        raise KeyringLocked("the collection is locked")

    def delete_password(self, service, username):
        raise KeyringLocked("the collection is locked")


# --- resolution ---------------------------------------------------------------------------
def test_resolution_order_memory_literal_env_keyring(monkeypatch):
    monkeypatch.setenv("MLXD_TEST_KEY", "from-env-0001")
    keyring.set_password(SERVICE, "b", "from-keyring-0001")
    full = BackendConfig(
        base_url="http://x", api_key="from-config-0001", api_key_env="MLXD_TEST_KEY"
    )
    store = KeyStore()
    assert store.get("b", full) == "from-config-0001"
    store.set("b", "from-editor-0001")
    assert store.get("b", full) == "from-editor-0001"
    env_only = BackendConfig(base_url="http://x", api_key_env="MLXD_TEST_KEY")
    assert KeyStore().get("b", env_only) == "from-env-0001"
    monkeypatch.delenv("MLXD_TEST_KEY")
    assert KeyStore().get("b", env_only) == "from-keyring-0001"
    assert KeyStore().get("other", env_only) is None


def test_keys_are_stripped_and_empty_env_counts_as_absent(monkeypatch):
    monkeypatch.setenv("MLXD_TEST_KEY", "  ")
    cfg = BackendConfig(base_url="http://x", api_key_env="MLXD_TEST_KEY")
    store = KeyStore()
    assert store.get("b", cfg) is None
    store.set("b", "  pasted-with-newline-0001\n")
    assert store.get("b", cfg) == "pasted-with-newline-0001"


def test_set_with_persist_stores_in_the_keyring(ring):
    store = KeyStore()
    store.set("openai", KEY, persist=True)
    assert keyring.get_password(SERVICE, "openai") == KEY
    # A fresh store (a restarted daemon) finds it there.
    assert KeyStore().get("openai", BackendConfig(base_url="http://x")) == KEY
    assert store.names() == ["openai"]


def test_set_without_persist_stays_in_memory():
    store = KeyStore()
    store.set("openai", KEY)
    assert keyring.get_password(SERVICE, "openai") is None
    assert store.names() == ["openai"]


def test_keyring_failure_is_treated_as_absent_and_logged_without_key(caplog):
    caplog.set_level(logging.DEBUG)
    keyring.set_keyring(LockedKeyring())
    store = KeyStore()
    store.set("other", KEY)  # a known key, to prove it does not leak into the log line
    assert store.get("b", BackendConfig(base_url="http://x")) is None
    assert "keyring unavailable" in caplog.text and "KeyringLocked" in caplog.text
    assert KEY not in caplog.text


def test_key_sources_names_the_env_var_and_the_command():
    text = key_sources("groq", BackendConfig(base_url="http://x", api_key_env="GROQ_API_KEY"))
    assert "GROQ_API_KEY" in text and "mlxd keys set groq" in text and "editor" in text


# --- redaction ----------------------------------------------------------------------------
def test_redact_replaces_every_key_seen_from_any_source(monkeypatch):
    monkeypatch.setenv("MLXD_TEST_KEY", "env-key-0123456789")
    keyring.set_password(SERVICE, "k", "ring-key-0123456789")
    store = KeyStore({"a": BackendConfig(base_url="http://x", api_key="cfg-key-0123456789")})
    store.get("e", BackendConfig(base_url="http://x", api_key_env="MLXD_TEST_KEY"))
    store.get("k", BackendConfig(base_url="http://x"))
    store.set("m", "mem-key-0123456789")
    text = "cfg-key-0123456789 env-key-0123456789 ring-key-0123456789 mem-key-0123456789!"
    assert store.redact(text) == f"{REDACTED} {REDACTED} {REDACTED} {REDACTED}!"


def test_redact_prefers_the_longest_key():
    store = KeyStore()
    store.set("a", "abcd1234")
    store.set("b", "abcd1234-longer")
    assert store.redact("x abcd1234-longer y abcd1234") == f"x {REDACTED} y {REDACTED}"


def test_prime_learns_env_keys_before_any_request(monkeypatch):
    monkeypatch.setenv("MLXD_TEST_KEY", KEY)
    store = KeyStore({"openai": BackendConfig(base_url="http://x", api_key_env="MLXD_TEST_KEY")})
    assert store.redact(f"Bearer {KEY}") == f"Bearer {REDACTED}"


@pytest.fixture
def redacting():
    store = KeyStore()
    store.set("openai", KEY)
    install_redaction(store)
    yield store
    uninstall_redaction(store)


def test_installed_redaction_covers_messages_args_and_tracebacks(redacting, caplog):
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("mlxd.test")
    log.debug("header was %s", f"Bearer {KEY}")
    log.info(f"literal {KEY} in the message")
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError:
        log.exception("failed")
    assert caplog.text.count(REDACTED) >= 3
    assert "Bearer [REDACTED]" in caplog.text and "ValueError: bad key [REDACTED]" in caplog.text
    assert KEY not in caplog.text


def test_redaction_reaches_handlers_added_after_install(redacting, tmp_path):
    handler = logging.FileHandler(tmp_path / "late.log")
    logger = logging.getLogger("mlxd.late")
    logger.addHandler(handler)
    try:
        logger.warning("key=%s", KEY)
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = (tmp_path / "late.log").read_text()
    assert text.strip() == f"key={REDACTED}"


def test_redacting_filter_on_its_own():
    store = KeyStore()
    store.set("x", KEY)
    record = logging.LogRecord("n", logging.INFO, __file__, 1, "k=%s", (KEY,), None)
    assert RedactingFilter(store).filter(record) is True
    assert record.getMessage() == f"k={REDACTED}"


def test_uninstall_restores_the_record_factory():
    before = logging.getLogRecordFactory()
    store = KeyStore()
    install_redaction(store)
    assert logging.getLogRecordFactory() is not before
    uninstall_redaction(store)
    assert logging.getLogRecordFactory() is before


# --- the `mlxd keys` commands, run as a user would ----------------------------------------
def _env(keyfile: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHON_KEYRING_BACKEND"] = "tests.fakes.FileKeyring"
    env[ENV_FILE] = str(keyfile)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _run_in_pty(code: str, env: dict[str, str], typed: str) -> tuple[int, str]:
    """Run python code on a real terminal, type `typed` at the prompt, return (rc, screen)."""
    pid, fd = pty.fork()
    if pid == 0:  # child: the pty is its controlling terminal, so getpass uses /dev/tty
        os.execve(sys.executable, [sys.executable, "-c", code], env)
    screen = b""
    sent = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            screen += data
        if not sent and b"input hidden" in screen:
            os.write(fd, typed.encode() + b"\r")
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")


def test_keys_set_prompts_without_echo_and_stores_in_the_keyring(tmp_path):
    keyfile = tmp_path / "ring.json"
    env = _env(keyfile)
    code = "from mlxd.cli.keys import cmd_keys_set; raise SystemExit(cmd_keys_set('groq'))"
    rc, screen = _run_in_pty(code, env, KEY)
    assert rc == 0, screen
    assert "API key for groq" in screen and "stored the key for groq" in screen
    assert KEY not in screen  # not echoed
    assert FileKeyring(keyfile).get_password(SERVICE, "groq") == KEY

    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mlxd.cli.keys import cmd_keys_list; raise SystemExit(cmd_keys_list())",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert listed.returncode == 0 and listed.stdout.split() == ["groq"]
    assert KEY not in listed.stdout + listed.stderr

    deleted = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mlxd.cli.keys import cmd_keys_delete; raise SystemExit(cmd_keys_delete('groq'))",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert deleted.returncode == 0
    assert FileKeyring(keyfile).get_password(SERVICE, "groq") is None


def test_keys_set_with_empty_input_stores_nothing(tmp_path):
    keyfile = tmp_path / "ring.json"
    code = "from mlxd.cli.keys import cmd_keys_set; raise SystemExit(cmd_keys_set('groq'))"
    rc, screen = _run_in_pty(code, _env(keyfile), "")
    assert rc == 1 and "nothing stored" in screen
    assert not keyfile.exists()


def test_keys_list_checks_candidates_and_never_prints_values(capsys):
    keyring.set_password(SERVICE, "set-elsewhere", KEY)
    from mlxd.cli.keys import cmd_keys_delete, cmd_keys_list

    assert cmd_keys_list(["set-elsewhere", "absent"]) == 0
    out = capsys.readouterr()
    assert out.out.split() == ["set-elsewhere"] and KEY not in out.out + out.err
    assert cmd_keys_delete("absent") == 1


def test_keys_list_with_nothing_stored_says_so(capsys):
    """A new user's first `mlxd keys list` printed nothing at all (new-user pass, finding 16)."""
    from mlxd.cli.keys import cmd_keys_list

    assert cmd_keys_list(["nothing-here"]) == 0
    out = capsys.readouterr()
    assert out.out == "" and "no keys stored" in out.err and "mlxd keys set" in out.err


def test_scrub_takes_every_form_of_a_key_out_of_request_text_and_changes_nothing_else():
    from mlxd.backends.http import _scrubbed

    key = "sk-scrub-only-test-Zq9/x+Y7"  # '/' and '+': its URL encodings differ from it
    store, other = KeyStore(), KeyStore()
    assert store.scrub(f"x = '{key}'") == f"x = '{key}'"  # not seen yet: nothing to take out
    other.set("openai", key)  # another window of the shared daemon learned it
    code = 'url = "https://user:pass@host/"\nescaped = "a \\"quoted\\" \\\\u0041 word"\n'
    assert store.scrub(code) == code  # not a key: as it was (redact would unescape, strip userinfo)
    for form in (
        quote(key),
        quote(key, safe=""),
        quote(key, safe="").replace("%2F", "%2f").replace("%2B", "%2b"),
    ):
        assert store.scrub(f"a {form} b") == f"a {REDACTED} b", form
    body = {
        "messages": [{"role": "user", "content": f"key = '{key}'\n" + code}],
        key: [1, None, True, f"Bearer {key}."],
    }
    out = _scrubbed(body, store.scrub)
    assert key not in str(out) and out["messages"][0]["content"].endswith(code)
    assert out[REDACTED] == [1, None, True, f"Bearer {REDACTED}."]
    # Split by the cursor: neither side holds the whole key.
    assert store.scrub_around(f"k = '{key[:9]}", f"{key[9:]}'\n") == (f"k = '{REDACTED}", "'\n")
    assert store.scrub_around("k = 'sk-scrub", "-other'") == ("k = 'sk-scrub", "-other'")
    # A placeholder key of a local server (vLLM's EMPTY, Ollama's ollama) is a word of the code.
    store.set("vllm", "EMPTY")
    store.set("ollama", "ollama")
    assert store.scrub("c = ollama.Client(api_key='EMPTY')") == "c = ollama.Client(api_key='EMPTY')"
    assert store.redact("EMPTY") == REDACTED  # logs stay as they were
