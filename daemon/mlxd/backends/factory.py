"""The backend factory: the backends a config names, built once and kept across reloads.

"local" comes from [local]; each [backends.NAME] is an OpenAI-compatible server, an Anthropic
server, or another local model ("mlx") sharing the one model pool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..config import Config
from ..models import ModelPool, WindowEnv, resolve_spec
from ..secrets import KeyStore
from ..types import Backend
from .local import LocalBackend
from .pools import HTTPPools


def make_backends(
    cfg: Config,
    old: Mapping[str, Backend],
    old_cfg: Config,
    keys: KeyStore,
    pool: ModelPool,
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    pools: HTTPPools | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Backend]:
    """The backends of `cfg`, by name. An HTTP backend whose settings (and the timeouts) did not
    change since `old_cfg` is kept from `old`: its HTTP session and the streams in flight; a
    local one of the same name, model, draft and dequantize setting is kept, with the new
    settings. `cwd`, `env`: the editor window's (a shared daemon's session), for relative model
    paths and HF_* settings (None: this process's); `pools`: the process's HTTP connection
    pools; `warn` tells the window of a setting that cannot serve (a draft's vocabulary)."""

    def local(name: str, spec: str, draft: str) -> LocalBackend:
        resolved, hub = resolve_spec(spec, cwd, env), None if env is None else WindowEnv(env, cwd)
        draft, prev = resolve_spec(draft, cwd, env) if draft else "", old.get(name)
        same = (resolved, cfg.local.dequantize, draft)
        if isinstance(prev, LocalBackend) and (prev.spec, prev.dequantize, prev.draft) == same:
            # Kept, with the new settings: what it learned of its model (the prompts its KV
            # cache holds, the heads a continuation extends, the measured speed) stays true.
            # Rebuilt on any settings change, a job's continuation met a backend that knew
            # none of it and rendered another prompt: a cold prefill (12 of 299 reused).
            prev.inline_cfg, prev.hub = cfg.inline, hub
            return prev
        how = {"dequantize": cfg.local.dequantize, "inline_cfg": cfg.inline, "hub": hub}
        return LocalBackend(name, resolved, pool, draft=draft, warn=warn, **how)  # type: ignore[arg-type]

    backends: dict[str, Backend] = {"local": local("local", cfg.local.model, cfg.local.draft_model)}
    window_pools: Any = pools.for_window(env, cwd) if pools is not None else None  # its CA bundle
    for name, b in cfg.backends.items():
        prev = old.get(name)
        unchanged = old_cfg.backends.get(name) == b and old_cfg.timeouts == cfg.timeouts
        if b.protocol == "mlx":
            backends[name] = local(name, b.model, b.draft_model)
        elif prev is not None and unchanged:
            backends[name] = prev
        # The HTTP backends (aiohttp: 0.2 s of CPU) are imported by the first config that
        # names one: most windows and most of the test suite's daemons are local only.
        elif b.protocol == "anthropic":
            from .anthropic import AnthropicBackend

            backends[name] = AnthropicBackend(name, b, cfg.timeouts, keys, window_pools)
        else:
            from .openai import OpenAIBackend

            backends[name] = OpenAIBackend(name, b, cfg.timeouts, keys, window_pools)
    return backends


def retired(
    old: Mapping[str, Backend], new: Mapping[str, Backend]
) -> tuple[list[Backend], set[str]]:
    """What a reload leaves behind: the HTTP backends to close, and the local model specs no
    backend uses any more (for the pool to forget)."""
    kept = {s for b in new.values() if b.is_local for s in b.specs}
    to_close = [b for b in old.values() if not b.is_local and b not in new.values()]
    forget = {s for b in old.values() if b.is_local for s in b.specs if s not in kept}
    return to_close, forget
