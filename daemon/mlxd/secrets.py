"""API keys: where they come from, and how they are kept out of every log line and message.

Resolution order for a backend's key (first hit wins):
  1. a key the editor handed over with `mlxd/setApiKey` (held in memory; `persist` also stores it
     in the OS keyring),
  2. a literal `api_key` in the config (config.load_file only accepts it from a 0600 file),
  3. the environment variable named by `api_key_env`,
  4. the OS keyring: service "mlxd", username = the backend's name (`mlxd keys set NAME`).

Every key the store has ever seen is redacted from text with `redact()`, also in the forms a
server may echo it in: URL-encoded, base64 (at each byte offset), or behind JSON `\\uXXXX`
escapes or percent-escapes in the text; `log_redact.install_redaction()` makes the logging system
do the same for every record. Keyring calls can block (D-Bus, an unlock
prompt): call `get` / `set(persist=True)` from a worker thread in async code.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from types import ModuleType
from urllib.parse import quote, quote_plus, unquote

import msgspec

from mlxd import scrub
from mlxd.config import BackendConfig
from mlxd.credentials import MIN_LEARNED, secret_values
from mlxd.wording import PROTOCOL

SERVICE = "mlxd"
REDACTED = scrub.REDACTED
# Keyring has no portable way to enumerate entries: mlxd keeps the list of names it stored.
_INDEX_USER = "__mlxd_index__"
# A keyring miss is remembered this long, so a request does not query the keyring every time
# (a `mlxd keys set` in another process is picked up after at most this delay).
_MISS_TTL_S = 30.0

log = logging.getLogger(__name__)


def key_sources(name: str, cfg: BackendConfig, from_editor: str | None = None) -> str:
    """Where a key for `name` can come from, for a NotConfigured message (never the key).
    `from_editor`: how the user's editor hands one over (see wording.py)."""
    ways = []
    if cfg.api_key_env:
        ways.append(f"set the environment variable {cfg.api_key_env}")
    ways.append(f"run `mlxd keys set {name}`")
    ways.append(f"or {from_editor or PROTOCOL.set_key}")
    return ", ".join(ways)


def key_required(cfg: BackendConfig) -> bool:
    """Whether a backend refuses to run without a key (as the backends decide): Anthropic
    always; an OpenAI-compatible one when it names where its key comes from (keyless local
    servers exist)."""
    return cfg.protocol == "anthropic" or (
        cfg.protocol == "openai" and bool(cfg.api_key_env or cfg.api_key.strip())
    )


class KeyStore:
    """Looks up API keys and remembers every one it has seen, to redact them."""

    def __init__(self, backends: Mapping[str, BackendConfig] | None = None) -> None:
        self._lock = threading.Lock()
        self._memory: dict[str, str] = {}
        self._keyring_hits: dict[str, str] = {}
        self._keyring_misses: dict[str, float] = {}
        self._seen: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._forms: list[str] = []
        self._keyring_broken_logged = False
        # How the connected editor hands over a key, for "no API key" messages.
        self.from_editor: str | None = None
        # Called (from a thread) when a background keyring lookup has finished.
        self.on_checked: Callable[[], None] | None = None
        # Where `api_key_env` names are read: the session's editor environment (a session of
        # the shared daemon gets its forwarder's), not necessarily this process's.
        self.env: Mapping[str, str] = os.environ
        self._checking: set[str] = set()
        if backends:
            self.prime(backends)

    # --- lookup ---------------------------------------------------------------------------
    def get(self, backend_name: str, cfg: BackendConfig) -> str | None:
        """The key for a backend, or None (keyless). May block on the OS keyring."""
        with self._lock:
            key = self._memory.get(backend_name)
        if key:
            return key
        if cfg.api_key.strip():
            return self._learn(cfg.api_key)
        if cfg.api_key_env:
            env = self.env.get(cfg.api_key_env, "").strip()
            if env:
                return self._learn(env)
        return self._from_keyring(backend_name)

    def set(self, name: str, key: str, persist: bool = False) -> None:
        """Hold a key handed over by the editor; `persist` also stores it in the OS keyring."""
        key = key.strip()
        if not key:
            raise ValueError("empty API key")
        self._learn(key)
        with self._lock:
            self._memory[name] = key
        if persist:
            keyring_set(name, key)
            with self._lock:
                self._keyring_hits[name] = key
                self._keyring_misses.pop(name, None)

    def without_key(self, backends: Mapping[str, BackendConfig]) -> list[str]:
        """The backends that need a key and have none, as far as is known without blocking.
        One whose key could still be in the OS keyring is looked up there in a thread, and
        `on_checked` is called when that is done (it counts as having a key until then). A
        keyless OpenAI-compatible server's entry is looked up too: a key found is learned, so
        that no prompt carries it (scrub.py)."""
        out = []
        for name, cfg in backends.items():
            with self._lock:
                held = bool(self._memory.get(name)) or name in self._keyring_hits
                asked = name in self._keyring_misses
            env = self.env.get(cfg.api_key_env, "").strip() if cfg.api_key_env else ""
            if held or cfg.api_key.strip() or env or cfg.protocol not in ("openai", "anthropic"):
                continue
            if not asked:
                self._check_keyring(name, cfg)
            elif key_required(cfg):
                out.append(name)
        return out

    def _check_keyring(self, name: str, cfg: BackendConfig) -> None:
        with self._lock:
            if name in self._checking:
                return
            self._checking.add(name)

        def run() -> None:
            try:
                self.get(name, cfg)
            finally:
                with self._lock:
                    self._checking.discard(name)
                if self.on_checked is not None:
                    self.on_checked()

        threading.Thread(target=run, name=f"mlxd-keyring-{name}", daemon=True).start()

    def names(self) -> list[str]:
        """Backends with a key held in memory or found so far in the keyring (no values)."""
        with self._lock:
            return sorted(set(self._memory) | set(self._keyring_hits))

    def prime(self, backends: Mapping[str, BackendConfig]) -> None:
        """Learn the cheap-to-read keys (literal, env) and every other secret-bearing value
        (credentials.secret_values: key headers, URL user-info, key-like query parameters) up
        front, so logs are redacted from the first line on, even before a backend is used."""
        for cfg in backends.values():
            for _, value in secret_values(msgspec.structs.asdict(cfg)):
                if len(value) >= MIN_LEARNED:
                    self._learn(value)
            if cfg.api_key_env and self.env.get(cfg.api_key_env, "").strip():
                self._learn(self.env[cfg.api_key_env])

    def _from_keyring(self, name: str) -> str | None:
        with self._lock:
            if name in self._keyring_hits:
                return self._keyring_hits[name]
            missed = self._keyring_misses.get(name)
            if missed is not None and time.monotonic() - missed < _MISS_TTL_S:
                return None
        try:
            value = _keyring().get_password(SERVICE, name)
        except Exception as exc:  # any backend failure (no keyring, locked, D-Bus) = no key
            if not self._keyring_broken_logged:
                self._keyring_broken_logged = True
                log.info(
                    "OS keyring unavailable (%s); keys come from env/editor only", error_kind(exc)
                )
            value = None
        with self._lock:
            if value and value.strip():
                key = value.strip()
                self._keyring_hits[name] = key
            else:
                self._keyring_misses[name] = time.monotonic()
                return None
        return self._learn(key)

    # --- redaction ------------------------------------------------------------------------
    def _learn(self, key: str) -> str:
        key = key.strip()
        with self._lock:
            if key and key not in self._seen:
                self._seen.add(key)
                forms = {f for k in self._seen for f in _forms(k)}
                # Longest first, so a key that contains another is replaced whole.
                alts = sorted(forms, key=len, reverse=True)
                # Forms before the pattern: a stream reader must never see a pattern matching
                # a secret its forms lack (stream_redact's hold-back).
                self._forms = alts
                self._pattern = re.compile("|".join(re.escape(k) for k in alts))
                if len(key) >= scrub.SCRUB_MIN:
                    scrub.PROCESS.add(_forms(key))
        return key

    def redact(self, text: str) -> str:
        """`text` with every key this store has seen replaced by [REDACTED], and the user-info
        of any URL in it (`https://user:pass@host` -> `https://[REDACTED]@host`)."""
        if not text:
            return text
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
            # A key behind escapes ("\\u0073k-...", "sk%2D..."): show that text unescaped, so
            # the key in it is redacted. Other text keeps its escapes.
            for unescape in (_json_unescape, unquote):
                plain = unescape(text)
                if plain != text and pattern.search(plain):
                    text = pattern.sub(REDACTED, plain)
        return redact_userinfo(text)

    def scrub(self, text: str) -> str:
        """scrub.scrub: `text` with every key this process holds taken out (for providers)."""
        return scrub.scrub(text)

    def scrub_around(self, before: str, after: str) -> tuple[str, str]:
        """scrub.scrub_around: the text on either side of the cursor without a key it splits."""
        return scrub.scrub_around(before, after)

    def has_keys(self) -> bool:
        return self._pattern is not None

    @property
    def secret_pattern(self) -> re.Pattern[str] | None:
        """Matches every form of every secret seen (for stream_redact), None while none is."""
        return self._pattern

    def secret_forms(self) -> list[str]:
        """Every form of every secret seen, longest first."""
        return self._forms


_MIN_FORM = 8  # an encoded form shorter than this is not learned (it would hit ordinary text)

_URLSAFE = str.maketrans("+/", "-_")
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\([/\\\"])")


def _forms(key: str) -> list[str]:
    """A key and the encodings a server may echo it in: URL-encoded, and base64 (standard and
    URL-safe) whole and at each of the 3 byte offsets it can have inside a larger encoded
    payload (only the characters made of the key's bytes alone)."""
    raw = key.encode()
    encoded = [base64.b64encode(raw).decode()]
    for offset in range(3):
        text = base64.b64encode(b"\0" * offset + raw).decode()
        encoded.append(text[4 if offset else 0 : (offset + len(raw)) // 3 * 4])
    forms = [key, quote(key, safe=""), quote_plus(key, safe=""), quote(key)]
    forms += [re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), f) for f in forms[1:]]
    forms += encoded + [e.translate(_URLSAFE) for e in encoded]
    return [f for f in dict.fromkeys(forms) if f == key or len(f) >= _MIN_FORM]


def _json_unescape(text: str) -> str:
    """JSON string escapes `\\uXXXX`, `\\/`, `\\\\`, `\\"` decoded; the rest left as is."""
    return _JSON_ESCAPE.sub(lambda m: chr(int(m[1], 16)) if m[1] else m[2], text)


_USERINFO = re.compile(r"(?<=://)[^/\s@?#]+@")


def redact_userinfo(text: str) -> str:
    """Every URL's user-info (`user:pass@`) replaced by `[REDACTED]@`."""
    return _USERINFO.sub(REDACTED + "@", text)


def error_kind(exc: BaseException) -> str:
    # The exception's class only: a backend's message could in theory echo what it was given.
    return type(exc).__name__


# --- keyring helpers (the `mlxd keys` commands are in cli/keys.py) -----------------------------------------
def _keyring() -> ModuleType:
    """The keyring package, imported at its first use: a daemon whose backends are all local
    never looks a key up (0.1 s of CPU at every start)."""
    import keyring
    import keyring.errors

    return keyring


def keyring_set(name: str, key: str) -> None:
    _keyring().set_password(SERVICE, name, key)
    names = set(keyring_names())
    if name not in names:
        _keyring().set_password(SERVICE, _INDEX_USER, json.dumps(sorted(names | {name})))


def keyring_names() -> list[str]:
    ring = _keyring()
    try:
        raw = ring.get_password(SERVICE, _INDEX_USER)
        names = json.loads(raw) if raw else []
    except (ring.errors.KeyringError, ValueError, RuntimeError):
        return []
    return [n for n in names if isinstance(n, str)]


def keyring_has(name: str) -> bool:
    return bool(_keyring().get_password(SERVICE, name))


def keyring_delete(name: str) -> bool:
    """Remove `name`'s key from the OS keyring and its index; False when none was stored."""
    ring = _keyring()
    try:
        ring.delete_password(SERVICE, name)
    except ring.errors.PasswordDeleteError:
        return False
    names = keyring_names()
    if name in names:
        ring.set_password(SERVICE, _INDEX_USER, json.dumps([n for n in names if n != name]))
    return True
