"""Which config values are secrets: not only `api_key`, but a header that carries a key
(Azure's `api-key`, a gateway's `X-Auth-Token`, `Authorization`), the user-info of a
`base_url` (`https://user:pass@host`) and key-like query parameters (`?key=...`).

Every value found here is redacted like an API key (secrets.KeyStore.prime) and makes a config
file holding it subject to the 0600 rule (config.load_file).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

# A header or query parameter whose name says it carries a credential.
_SECRET_NAME = re.compile(
    r"auth|key|token|secret|passw|pwd|signature|^sig$|cookie|session|credential|bearer", re.I
)
# Shorter values are not learned for redaction (they would hit ordinary words); user-info is
# also removed from URLs structurally (secrets.redact_userinfo), whatever its length.
MIN_LEARNED = 6


def secret_values(backend: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(where, value) for each secret in one backend's raw or decoded config, `where` being the
    key path below the backend (`api_key`, `headers.api-key`, `base_url` user-info ...)."""
    out: list[tuple[str, str]] = []
    key = str(backend.get("api_key") or "").strip()
    if key:
        out.append(("api_key", key))
    headers = backend.get("headers")
    if isinstance(headers, Mapping):
        for name, value in headers.items():
            text = str(value).strip()
            if text and _SECRET_NAME.search(str(name)):
                out.append((f"headers.{name}", text))
                scheme, _, token = text.partition(" ")  # "Bearer X", "Basic X": X alone too
                if token.strip() and scheme.isalpha():
                    out.append((f"headers.{name}", token.strip()))
    url = str(backend.get("base_url") or "")
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return out
    for part in (user, password):
        if part:
            out.append(("base_url (user-info)", unquote(part)))
    if user or password:  # as it travels: a Basic Authorization header
        basic = f"{unquote(user or '')}:{unquote(password or '')}".encode()
        out.append(("base_url (user-info)", base64.b64encode(basic).decode()))
    for name, value in parse_qsl(parts.query, keep_blank_values=False):
        if _SECRET_NAME.search(name):
            out.append((f"base_url (query parameter {name})", value))
    return out
