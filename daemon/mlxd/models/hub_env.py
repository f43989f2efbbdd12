"""An editor window's environment and working directory, as its Hugging Face downloads use
them in the shared daemon (issue #19 item 8; hub_child.py runs each in a child process).

    window = WindowEnv(env, cwd)   # env's relative HF_HOME, SSL_CERT_FILE, ... made absolute
    window.identity                # what another window must share to use its download
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

# What decides what a download fetches, from where, as whom and into which cache: the variables
# of these names or prefixes (HF_TOKEN, HF_ENDPOINT, HF_HOME, ...; the proxy; the CA bundle).
# HOME and XDG_CACHE_HOME place the default cache and the token file.
HUB_PREFIXES = ("HF_", "HUGGINGFACE_", "HUGGING_FACE_")
HUB_NAMES = frozenset(
    {"HOME", "XDG_CACHE_HOME", "TRANSFORMERS_OFFLINE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}
    | {"SSL_CERT_FILE", "SSL_CERT_DIR"}
    | {f"{p}_PROXY" for p in ("HTTP", "HTTPS", "ALL", "NO")}
    | {f"{p}_proxy" for p in ("http", "https", "all", "no")}
)
# The path-valued ones a process reads relative to its working directory (SSL_CERT_DIR: a list).
HUB_PATHS = frozenset(
    {"HF_HOME", "HF_HUB_CACHE", "HF_ASSETS_CACHE", "HF_XET_CACHE", "HF_TOKEN_PATH"}
    | {"HF_STORED_TOKENS_PATH", "HUGGINGFACE_HUB_CACHE", "HUGGINGFACE_ASSETS_CACHE"}
    | {"XDG_CACHE_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}
)


@dataclass(frozen=True, eq=False)
class WindowEnv:
    """An editor window's environment and working directory, as its downloads use them.

    `env`: the window's environment with every HUB_PATHS variable made absolute against `cwd`
    (a relative HF_HOME=hf is the window's `<cwd>/hf`, never the daemon's `/hf`); a leading `~`
    is left for the child, whose HOME is the window's. `identity`: what two windows must share
    for one to use a download the other's environment runs (the HUB_* variables, resolved)."""

    env: Mapping[str, str]
    cwd: str | None = None
    identity: tuple[tuple[str, str], ...] = field(init=False)

    def __post_init__(self) -> None:
        env = {k: _absolute(k, v, self.cwd) for k, v in self.env.items()}
        object.__setattr__(self, "env", env)
        hub = sorted((k, v) for k, v in env.items() if k in HUB_NAMES or k.startswith(HUB_PREFIXES))
        object.__setattr__(self, "identity", tuple(hub))


def _absolute(name: str, value: str, cwd: str | None) -> str:
    if name not in HUB_PATHS or not cwd:
        return value
    parts = value.split(os.pathsep) if name == "SSL_CERT_DIR" else [value]
    own = [p if not p or p.startswith("~") else os.path.join(cwd, p) for p in parts]
    return os.pathsep.join(own)
