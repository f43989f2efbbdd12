"""The config schema: one msgspec Struct tree, read from TOML and from `initializationOptions`.

Keys are snake_case in both places. Every knob has a default, so an empty config is valid.
Unknown keys are errors (a typo should not silently do nothing).
"""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from .credentials import secret_values
from .errors import KEYLIKE, ConfigError, field_message, shown, with_choices

# What `api_key_env` must be: the name of an environment variable, never the key itself.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _is_key_not_name(value: str) -> bool:
    """Whether an `api_key_env` value is a key pasted where the variable's name goes: not a
    name at all (`sk-...`, base64), or a long mixed-case or underscore-free run of letters and
    digits (a base62 or hex key; names are UPPER_CASE or words joined by `_`)."""
    if not _ENV_NAME.fullmatch(value):
        return True
    mixed = value.lower() != value != value.upper()
    return bool(KEYLIKE.fullmatch(value)) and not value.isupper() and (mixed or "_" not in value)


def _mask(message: str) -> str:
    """`message` with every quoted value that looks like a key replaced by HIDDEN."""
    return re.sub(r"'([^'\s]*)'", lambda m: shown(m.group(1)), message)


class Base(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    pass


# The answer's budget when a chat / complete request gives no maxTokens, for every backend.
DEFAULT_MAX_TOKENS = 512

# Files that hold keys or credentials by convention: never sent to a cloud backend unless the
# user's own exclude list replaces this one. A glob without "/" matches the file name anywhere.
DEFAULT_EXCLUDE = (
    *("**/.env", "**/.env.*", "**/.envrc", "**/secrets/**"),
    *("*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore"),
    *("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "**/.ssh/**"),
    *(".netrc", ".pgpass", ".pypirc", ".npmrc", ".git-credentials", "**/.aws/credentials"),
    *("**/.docker/config.json", "**/.kube/config"),
)


class LocalConfig(Base):
    # "smollm2-135m" (embedded), a path to an mlx-lm model directory, or an HF repo id.
    model: str = "smollm2-135m"
    # Load at start, in the background, with progress.
    preload: bool = True
    # Deprecated alias of routing.max_tokens (read when that is not set), for one release.
    max_tokens: int = DEFAULT_MAX_TOKENS
    # "auto" | "always" | "never": dequantize small quantized models to float (faster on CPU).
    dequantize: Literal["auto", "always", "never"] = "auto"
    # Bytes of KV cache kept for prompt reuse across requests.
    prompt_cache_mb: int = 512
    # Memory budget for loaded models (GiB); 0 means a safe share of RAM.
    memory_limit_gb: float = 0.0
    # Unload a model after this many idle seconds; 0 keeps it warm forever.
    idle_unload_s: float = 0.0
    # "auto": a greedy request alone on its model decodes with prompt-lookup speculation
    # (identical tokens, fewer forward passes); "off": plain decoding.
    speculative: Literal["auto", "off"] = "auto"
    # Most draft tokens verified in one forward pass (the engine adapts below this).
    draft_tokens: int = 8
    # A small model of the same vocabulary that drafts for greedy decoding instead of prompt
    # lookup ("" = none; a spec like `model`): same output, fewer passes of a large model.
    draft_model: str = ""


class BackendConfig(Base):
    # "openai" (any OpenAI-compatible server) | "anthropic" | "mlx" (another local model,
    # e.g. a small one for inline completion; shares the local model pool and its budget).
    protocol: Literal["openai", "anthropic", "mlx"] = "openai"
    base_url: str = ""
    # Name of the environment variable holding the key ("" = keyless, e.g. a local server).
    api_key_env: str = ""
    # A literal key; only accepted from a file with mode 0600 (see load_file).
    api_key: str = ""
    # The model name sent to the provider; for "mlx": a model dir, HF repo id or "smollm2-135m".
    model: str = ""
    # "mlx" only: a draft model for it, as [local] draft_model.
    draft_model: str = ""
    # Use the legacy /completions endpoint for `mlxd/complete` (OpenAI-compatible only).
    completions: bool = False
    # Sent as `anthropic-version` (Anthropic only).
    anthropic_version: str = "2023-06-01"
    # Extra HTTP headers (e.g. OpenRouter's HTTP-Referer).
    headers: dict[str, str] = {}


class RoutingConfig(Base):
    # Master switch: false means nothing ever leaves the machine.
    cloud: bool = False
    # Preference order per request kind.
    chat: list[str] = msgspec.field(default_factory=lambda: ["local"])
    complete: list[str] = msgspec.field(default_factory=lambda: ["local"])
    inline: list[str] = msgspec.field(default_factory=lambda: ["local"])
    # A request's `model` alias mapped to its own chain.
    models: dict[str, list[str]] = {}
    # Documents never sent to a cloud backend (glob; `**` crosses directories).
    exclude: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    # maxTokens of a chat / complete request that gives none, whichever backend serves it.
    max_tokens: int = DEFAULT_MAX_TOKENS
    # Retries on 429/503 on the same backend, before the first token.
    max_retries: int = 2
    # Circuit breaker: consecutive failures that open it, and how long it stays open.
    breaker_failures: int = 3
    breaker_cooldown_s: float = 30.0


class TimeoutsConfig(Base):
    connect_s: float = 3.0
    # A backend that has sent no token by then is abandoned (fallback).
    first_token_s: float = 10.0
    inline_first_token_s: float = 1.5
    # Longest silence between two chunks of a stream.
    idle_s: float = 30.0
    # One budget per request, shared by every attempt of the fallback chain.
    total_s: float = 120.0


class LanguageConfig(Base):
    enabled: bool = True
    single_line: bool = False


class InlineConfig(Base):
    enabled: bool = True
    max_tokens: int = 64
    max_ms: int = 1500
    # Prompt budget (tokens) for prefix + suffix.
    context_tokens: int = 1024
    # Include snippets from other open documents of the same language.
    neighbor_snippets: bool = True
    # "auto": several lines only where the cursor starts a block (after `def f():`, `{`, ...),
    # else one line; "always": as many lines as max_tokens / max_ms allow; "never": one line.
    multi_line: Literal["auto", "always", "never"] = "auto"
    # Show only lines the model finished: a line cut by max_tokens / max_ms is dropped, never
    # shown as a fragment. false shows what arrived (tests with a random model, which never
    # ends a line).
    whole_lines: bool = True
    # Work ahead on local models only (inline/ahead.py): after a suggestion, the one that follows
    # it if accepted; after didOpen and when edits settle, prefill the likely next prompt.
    background: bool = True
    # At a resting block start, sampled candidates, the one that best leads into the code after
    # the cursor kept (inline/rerank.py); off: level with greedy on the bench, for ~3 s of CPU.
    rerank: bool = False
    languages: dict[str, LanguageConfig] = {}


class SharedConfig(Base):
    # One daemon per user for every editor window (`mlxd serve` forwards to it); read from the
    # config file only (`--shared` / `--no-shared` win), since the forwarder decides before any
    # editor setting arrives.
    enabled: bool = True
    # Seconds the shared daemon stays up after its last session ends (reopening is instant).
    idle_exit_s: float = 300.0
    # Seconds a model load (a Hugging Face download) goes on after the last window that waits
    # for it closed: a Reload Window within it finds it where it was (models/inflight.py).
    download_grace_s: float = 30.0


class Config(Base):
    local: LocalConfig = msgspec.field(default_factory=LocalConfig)
    backends: dict[str, BackendConfig] = {}
    routing: RoutingConfig = msgspec.field(default_factory=RoutingConfig)
    timeouts: TimeoutsConfig = msgspec.field(default_factory=TimeoutsConfig)
    inline: InlineConfig = msgspec.field(default_factory=InlineConfig)
    shared: SharedConfig = msgspec.field(default_factory=SharedConfig)


# A name is echoed in messages, logs and keyring entries: printable, one line, short.
_BACKEND_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def decode(data: Any) -> Config:
    """Validate a plain mapping into a Config, naming the offending key on failure."""
    if data is None:
        data = {}
    # msgspec reports dict entries as `backends[...]`: check each backend itself to name it.
    backends = data.get("backends") if isinstance(data, dict) else None
    if isinstance(backends, dict):
        for name, entry in backends.items():
            if not isinstance(name, str) or not _BACKEND_NAME.fullmatch(name):
                raise ConfigError(
                    f"backends: invalid name {str(name)[:80]!r}: use 1-64 letters, digits, "
                    "'_', '-' or '.', starting with a letter or digit"
                )
            try:
                msgspec.convert(entry, BackendConfig, strict=True)
            except msgspec.ValidationError as exc:
                message = field_message(str(exc), f"backends.{name}")
                raise ConfigError(_mask(with_choices(message, Config))) from None
    try:
        cfg = msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(_mask(with_choices(field_message(str(exc)), Config))) from None
    routing = data.get("routing") if isinstance(data, dict) else None
    if "max_tokens" not in (routing if isinstance(routing, dict) else {}):
        cfg.routing.max_tokens = cfg.local.max_tokens  # the old key, or the same default
    _check_semantics(cfg)
    return cfg


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge two raw config mappings; `override` wins key by key."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML config file into a raw mapping (decode() validates it)."""
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    _check_literal_keys(p, data)
    return data


def _check_literal_keys(path: Path, data: dict[str, Any]) -> None:
    """A file holding a literal secret (an API key, a key header, URL user-info, a key-like
    query parameter: credentials.secret_values) must be private to its owner (0600)."""
    backends = data.get("backends")
    if not isinstance(backends, dict):
        return
    holders = [
        f"backends.{n}.{where_values[0][0]}"
        for n, b in backends.items()
        if isinstance(b, dict) and (where_values := secret_values(b))
    ]
    if not holders:
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        what = "api_key" if holders[0].endswith(".api_key") else "secret"
        raise ConfigError(
            f"{path} holds a literal {what} ({holders[0]}) but is readable by "
            f"others (mode {mode:04o}); run `chmod 600 {path}` or use api_key_env / the keyring"
        )


def _check_semantics(cfg: Config) -> None:
    known = set(cfg.backends) | {"local"}
    for kind in ("chat", "complete", "inline"):
        for name in getattr(cfg.routing, kind):
            if name not in known:
                raise ConfigError(
                    f"routing.{kind}: unknown backend {shown(name)} (configured: {sorted(known)})"
                )
    for alias, chain in cfg.routing.models.items():
        for name in chain:
            if name not in known:
                raise ConfigError(f"routing.models.{alias}: unknown backend {shown(name)}")
    for name, b in cfg.backends.items():
        if name == "local":
            raise ConfigError("backends.local: the name 'local' is reserved for the MLX model")
        if not b.model:
            raise ConfigError(f"backends.{name}.model: required (the model name to use)")
        if b.api_key_env and _is_key_not_name(b.api_key_env):
            raise ConfigError(
                f"backends.{name}.api_key_env: looks like a key, not an environment variable "
                f"name (letters, digits and _); keep the key itself in the environment variable "
                f"this names, or run `mlxd keys set {name}`"
            )
        if b.protocol == "mlx":
            continue
        if b.draft_model:
            raise ConfigError(
                f'backends.{name}.draft_model: only for protocol = "mlx" (a local model); '
                "the provider decodes its model itself"
            )
        if not b.base_url:
            raise ConfigError(f"backends.{name}.base_url: required")
        if not b.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"backends.{name}.base_url: must start with http:// or https://")
    _check_ranges(cfg)


DAY_S = 86_400.0
# Every number of the schema and its range (lowest, highest, whether lowest itself is allowed);
# docs/configuration.md lists the same. Numbers are finite: TOML's nan and inf are refused.
RANGES: dict[str, tuple[float, float, bool]] = {
    "local.max_tokens": (1, 1_000_000, True),
    "routing.max_tokens": (1, 1_000_000, True),
    "local.prompt_cache_mb": (0, 1 << 20, True),  # 0: no prompt cache
    "local.memory_limit_gb": (0, 1 << 14, True),  # 0: a safe share of RAM
    "local.idle_unload_s": (0, 30 * DAY_S, True),  # 0: never unload
    "local.draft_tokens": (1, 64, True),
    "shared.idle_exit_s": (0, 30 * DAY_S, True),  # 0: exit with the last session
    "shared.download_grace_s": (0, DAY_S, True),  # 0: stop with the last window
    "routing.max_retries": (0, 100, True),
    "routing.breaker_failures": (1, 1_000_000, True),
    "routing.breaker_cooldown_s": (0, DAY_S, True),
    "timeouts.connect_s": (0, DAY_S, False),
    "timeouts.first_token_s": (0, DAY_S, False),
    "timeouts.inline_first_token_s": (0, DAY_S, False),
    "timeouts.idle_s": (0, DAY_S, False),
    "timeouts.total_s": (0, DAY_S, False),
    "inline.max_tokens": (1, 1_000_000, True),
    "inline.max_ms": (1, DAY_S * 1000, True),
    "inline.context_tokens": (1, 1_000_000, True),
}


def _check_ranges(cfg: Config) -> None:
    for key, (low, high, low_ok) in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if isinstance(value, float) and not math.isfinite(value):  # an int past 1e308 is one
            raise ConfigError(f"{key}: must be a finite number, got {value}")
        if value < low or (value == low and not low_ok) or value > high:
            lowest = f"{'>=' if low_ok else '>'} {_num(low)}"
            raise ConfigError(f"{key}: must be {lowest} and <= {_num(high)}, got {_num(value)}")


def _num(x: float) -> str:
    """A number as a person reads it: 20000, 1.5, 1e+308 (not 309 digits)."""
    if isinstance(x, float) and not x.is_integer():
        return f"{x:g}"
    if abs(x) < 10**15:
        return str(int(x))
    try:
        return f"{float(x):g}"
    except OverflowError:  # an int past any float: its order of magnitude
        return f"{'-' if x < 0 else ''}~1e+{len(str(abs(int(x)))) - 1}"
