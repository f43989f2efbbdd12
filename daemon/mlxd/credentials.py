"""Which config values are secrets: not only `api_key`, but a header that carries a key
(Azure's `api-key`, a gateway's `X-Auth-Token`, `Authorization`), the user-info of a
`base_url` (`https://user:pass@host`) and key-like query parameters (`?key=...`).

A header is a secret when its name says so, and also whenever its value has MIN_HEADER_SECRET
or more characters, unless its name is one of PUBLIC_HEADERS (a credential header may be named
anything: `X-JWT-Assertion`). Each is learned whole and in the forms a server may echo: the
token after a scheme (`Bearer X`), a Basic token's decoded user, password and `user:password`,
and each value of a cookie list (`a=1; b=2`).

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
# Headers known to carry no secret: neither redacted nor subject to the 0600 rule.
PUBLIC_HEADERS = frozenset(
    h.lower()
    for h in (
        "OpenAI-Organization",
        "OpenAI-Project",
        "OpenAI-Beta",
        "anthropic-version",
        "anthropic-beta",
        "HTTP-Referer",
        "Referer",
        "X-Title",
        "User-Agent",
        "Content-Type",
        "Accept",
        "Accept-Language",
    )
)
MIN_HEADER_SECRET = 12
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
            if not text or str(name).lower() in PUBLIC_HEADERS:
                continue
            if _SECRET_NAME.search(str(name)) or len(text) >= MIN_HEADER_SECRET:
                out += [(f"headers.{name}", form) for form in _header_forms(text)]
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


def _header_forms(text: str) -> list[str]:
    """A secret header value and the parts of it a server may echo on their own."""
    forms = [text]
    scheme, _, token = text.partition(" ")  # "Bearer X", "Basic X": X alone too
    token = token.strip()
    if token and scheme.isalpha():
        forms.append(token)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(token, validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            user, sep, password = decoded.partition(":")
            if sep:
                forms += [decoded, user, password]
    pairs = [p.partition("=") for p in text.split(";")]  # a cookie list: "a=1; b=2"
    if len(pairs) > 1 or (pairs[0][1] and " " not in text):
        values = [v.strip() for _, sep, v in pairs if sep]
        # A long or digit-bearing value: "lang=english" must not redact the word everywhere.
        forms += [v for v in values if len(v) >= MIN_HEADER_SECRET or any(map(str.isdigit, v))]
    return [f for f in dict.fromkeys(forms) if f]
