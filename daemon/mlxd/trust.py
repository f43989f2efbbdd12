"""Config layers by trust: what a repository may change (ARCHITECTURE.md, "Trust boundaries").

The editor sends the user's own settings as the config object and whatever the opened
workspace carries apart, under WORKSPACE_KEY. The user's file, the user's settings and the
environment are trusted. The workspace layer is not: it may only tighten privacy and pick among
what the user configured, and may move data nowhere new --

  routing.exclude                 globs *added* to the user's excludes (never replacing them)
  routing.cloud                   false only
  routing.chat/complete/inline    a chain that moves data nowhere new (see _narrows): local
  routing.models                  backends only, or the user's own chain for that kind/alias
                                  with cloud backends removed (order kept)
  inline.enabled, inline.neighbor_snippets, inline.rerank, inline.languages.<id>.enabled   false only
  inline.max_tokens/max_ms/context_tokens/multi_line, inline.languages.<id>.single_line

Everything else (a backend, URL, header, key source, model path, timeouts ...) is dropped with
a warning naming the key. A layer that makes the config invalid is dropped whole.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from .config import Config, ConfigError, decode, shown

WORKSPACE_KEY = "workspace"

_WHY = "a workspace may only tighten privacy (add excludes, turn the cloud off, go local, "
_WHY += "drop cloud backends from your chains); set it in your user settings or config file"
_CHAINS = ("chat", "complete", "inline")
_INLINE_FREE = ("max_tokens", "max_ms", "context_tokens", "multi_line")
_INLINE_OFF_ONLY = ("enabled", "neighbor_snippets", "rerank")


def split(overlay: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """(the trusted config object, the workspace layer or None)."""
    user = {k: v for k, v in overlay.items() if k != WORKSPACE_KEY}
    return user, overlay.get(WORKSPACE_KEY)


def apply_workspace(trusted: dict[str, Any], cfg: Config, layer: Any) -> tuple[Config, list[str]]:
    """`cfg` (decoded from the raw mapping `trusted`) with what `layer` may change applied.

    Returns the config and one warning per dropped key ("workspace setting KEY ignored: ...").
    """
    if not layer:
        return cfg, []
    if not isinstance(layer, dict):
        return cfg, [f"workspace settings ignored: must be an object, got {type(layer).__name__}"]
    out = copy.deepcopy(trusted)
    notes: list[str] = []
    for section, value in layer.items():
        if section == "routing" and isinstance(value, dict):
            _routing(out.setdefault("routing", {}), cfg, value, notes)
        elif section == "inline" and isinstance(value, dict):
            _inline(out.setdefault("inline", {}), cfg, value, notes)
        else:
            notes.append(_dropped(section))
    try:
        return decode(out), notes
    except ConfigError as exc:
        return cfg, [*notes, f"workspace settings ignored: {exc}"]


def _routing(out: dict[str, Any], cfg: Config, layer: dict[str, Any], notes: list[str]) -> None:
    known = set(cfg.backends) | {"local"}
    local = {"local"} | {n for n, b in cfg.backends.items() if b.protocol == "mlx"}
    for key, value in layer.items():
        name = f"routing.{key}"
        if key == "exclude" and _strings(value):
            out["exclude"] = list(dict.fromkeys([*cfg.routing.exclude, *value]))
        elif key == "cloud" and isinstance(value, bool):
            if value and not cfg.routing.cloud:
                notes.append(_dropped(name, "true"))
            else:
                out["cloud"] = value and cfg.routing.cloud
        elif key in _CHAINS and _strings(value):
            own = getattr(cfg.routing, key)
            if set(value) <= known and _narrows(value, own, local):
                out[key] = value
            else:
                notes.append(_dropped(name, _unknown(value, known)))
        elif key == "models" and isinstance(value, dict):
            models = dict(cfg.routing.models)
            for alias, chain in value.items():
                own = cfg.routing.models.get(alias, [])
                if _strings(chain) and set(chain) <= known and _narrows(chain, own, local):
                    models[alias] = chain
                else:
                    notes.append(_dropped(f"{name}.{alias}", _unknown(chain, known)))
            out["models"] = models
        else:
            notes.append(_dropped(name))


def _inline(out: dict[str, Any], cfg: Config, layer: dict[str, Any], notes: list[str]) -> None:
    for key, value in layer.items():
        name = f"inline.{key}"
        if key in _INLINE_FREE:
            out[key] = value
        elif key in _INLINE_OFF_ONLY and isinstance(value, bool):
            if value and not getattr(cfg.inline, key):
                notes.append(_dropped(name, "true"))
            else:
                out[key] = value
        elif key == "languages" and isinstance(value, dict):
            langs = out.setdefault("languages", {})
            for lang, entry in value.items():
                own = cfg.inline.languages.get(lang)
                for k, v in (entry if isinstance(entry, dict) else {"": entry}).items():
                    if k == "single_line" or (k == "enabled" and v is False):
                        langs.setdefault(lang, {})[k] = v
                    elif k == "enabled" and v is True and (own is None or own.enabled):
                        pass  # already on
                    else:
                        notes.append(_dropped(f"{name}.{lang}.{k}".rstrip(".")))
        else:
            notes.append(_dropped(name))


def _narrows(chain: list[str], own: list[str], local: set[str]) -> bool:
    """Whether a workspace's `chain` moves data nowhere new: every entry is a local backend, or
    it is the user's `own` chain with some cloud backends removed, order kept (dropping a local
    one would send what it served to the cloud)."""
    if all(name in local for name in chain):
        return True
    rest = iter(own)
    for name in chain:
        for kept in rest:
            if kept == name:
                break
            if kept in local:
                return False
        else:
            return False
    return not any(kept in local for kept in rest)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _unknown(chain: Any, known: set[str]) -> str:
    if not _strings(chain):
        return "not a list of backend names"
    if not set(chain) <= known:
        return f"names a backend you have not configured ({shown(sorted(set(chain) - known)[0])})"
    return "not local backends only, nor your own chain with cloud backends removed"


def _dropped(key: str, detail: str = "") -> str:
    what = f"{key} = {detail}" if detail in ("true",) else key
    extra = f" ({detail})" if detail and detail != "true" else ""
    return f"workspace setting {what} ignored{extra}: {_WHY}"


def fail_closed(cfg: Config, file_error: str | None) -> tuple[Config, str | None]:
    """While the user's config file is invalid (or unreadable) nothing goes to the cloud: the
    editor's settings alone may not turn it on over a file that may have said `cloud = false`
    or listed excludes. Returns the config and the reason for `mlxd/status`, None if fine."""
    if file_error is None:
        return cfg, None
    routing = msgspec.structs.replace(cfg.routing, cloud=False)
    reason = f"cloud backends off until the config file is fixed: {file_error}"
    return msgspec.structs.replace(cfg, routing=routing), reason
