"""Issue #15 attack F4: a hostile server echoes a key in another form -- URL-encoded, base64 at
any byte offset inside a larger payload, behind JSON escapes -- and it is still redacted."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import pytest

from mlxd.backends.http import error_message, snippet
from mlxd.secrets import KeyStore

KEYS = ["sk-attack+15/Zq9xW3vT7rK2mN8pL4==", "pw with spaces & ünïcode-0123", "plainkey0123"]


def store(key: str) -> KeyStore:
    keys = KeyStore()
    keys.set("b", key)
    return keys


def b64_pieces(key: str, encode) -> list[str]:
    """Every 8-character run of the base64 text that the key's bytes alone decide."""
    out = []
    for offset in range(3):
        text = encode(b"\0" * offset + key.encode()).decode()
        inner = text[4 if offset else 0 : (offset + len(key.encode())) // 3 * 4]
        out += [inner[i : i + 8] for i in range(0, len(inner) - 7, 4)]
    return out


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
@pytest.mark.parametrize("before", ["", "x", "xy", "xyz", '{"k": "'])
def test_base64_at_any_offset_is_redacted(key, encode, before):
    echoed = encode((before + key + '"}').encode()).decode()
    text = store(key).redact(f"bad token {echoed} rejected")
    assert not [p for p in b64_pieces(key, encode) if p in text], text
    assert "bad token" in text and "rejected" in text


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize(
    "encode",
    [
        lambda k: quote(k, safe=""),
        lambda k: quote_plus(k, safe=""),
        lambda k: _lower_hex(k),
        lambda k: json.dumps(k, ensure_ascii=True)[1:-1],
        lambda k: "".join(f"\\u{ord(c):04x}" for c in k),  # every character escaped
        lambda k: k.replace("/", "\\/"),
        lambda k: "".join(f"%{b:02X}" for b in k.encode()),  # every byte escaped
    ],
    ids=["quote", "quote_plus", "lower-hex", "json", "all-u-escapes", "json-slash", "all-pct"],
)
def test_escaped_echoes_are_redacted(key, encode):
    echoed = encode(key)
    text = store(key).redact(f"bad key {echoed} here")
    assert echoed not in text and key not in text and "[REDACTED]" in text, text


def _lower_hex(key: str) -> str:
    return "".join(chr(b) if b < 128 and chr(b).isalnum() else f"%{b:02x}" for b in key.encode())


def test_other_escapes_are_left_alone():
    keys = store(KEYS[0])
    text = 'caf\\u00e9 %20 path\\/x "q"'
    assert keys.redact(text) == text


@pytest.mark.parametrize(
    "body",
    [
        '{"error": {"message": "bad key \\u0073k-attack+15\\/Zq9xW3vT7rK2mN8pL4=="',  # broken
        '{"error": {"message": "bad key \\u0073k-attack+15\\/Zq9xW3vT7rK2mN8pL4=="}}',
        '{"detail": {"key": "\\u0073k-attack+15\\/Zq9xW3vT7rK2mN8pL4=="}}',
    ],
)
def test_error_bodies_with_escaped_keys_are_redacted(body):
    keys = store(KEYS[0])
    for text in (error_message(body.encode(), keys.redact), snippet(body.encode(), keys.redact)):
        assert "Zq9xW3vT7rK2mN8pL4" not in text, text
