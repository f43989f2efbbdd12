"""Config semantics: the 0600 guard for literal keys, load_file's errors, merge, and the
decode/semantic errors that name the key (they reach the user as a showMessage)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mlxd.config import ConfigError, decode, load_file, merge

CLOUD = {"base_url": "https://api.example.com/v1", "model": "m"}
KEYED = '[backends.work]\nbase_url = "https://api.example.com/v1"\nmodel = "m"\napi_key = "sk-x"\n'

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def config_file(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "mlxd.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


# --- the 0600 guard -----------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_a_literal_key_in_a_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = config_file(tmp_path, KEYED, mode)
    with pytest.raises(ConfigError) as err:
        load_file(path)
    message = str(err.value)
    assert "backends.work.api_key" in message
    assert f"mode {mode:04o}" in message and f"chmod 600 {path}" in message
    assert "sk-x" not in message  # the key itself is never echoed


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_literal_key_in_a_private_file_is_read(tmp_path: Path, mode: int) -> None:
    data = load_file(config_file(tmp_path, KEYED, mode))
    assert decode(data).backends["work"].api_key == "sk-x"


@posix_only
def test_a_file_without_literal_keys_may_be_world_readable(tmp_path: Path) -> None:
    text = KEYED.replace('api_key = "sk-x"', 'api_key_env = "WORK_KEY"')
    assert decode(load_file(config_file(tmp_path, text, 0o644))).backends["work"].api_key == ""


@posix_only
def test_an_empty_literal_key_is_no_key(tmp_path: Path) -> None:
    load_file(config_file(tmp_path, KEYED.replace('"sk-x"', '""'), 0o644))


# --- load_file errors ---------------------------------------------------------------------


def test_a_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*nope\.toml"):
        load_file(tmp_path / "nope.toml")


@pytest.mark.parametrize("raw", [b"[local\nmodel = 1\n", b"model = \xff\n"])
def test_bad_toml_or_bad_utf8_names_the_file(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "mlxd.toml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError, match=rf"{path}: invalid TOML"):
        load_file(path)


# --- merge --------------------------------------------------------------------------------


def test_merge_is_deep_and_the_override_wins_key_by_key() -> None:
    base = {"routing": {"cloud": False, "chat": ["a", "local"]}, "local": {"model": "x"}}
    override = {"routing": {"cloud": True}, "inline": {"max_ms": 300}}
    assert merge(base, override) == {
        "routing": {"cloud": True, "chat": ["a", "local"]},
        "local": {"model": "x"},
        "inline": {"max_ms": 300},
    }


def test_merge_replaces_lists_and_leaves_both_inputs_alone() -> None:
    base: dict[str, Any] = {"routing": {"exclude": ["*.pem"]}}
    override: dict[str, Any] = {"routing": {"exclude": ["*.key"]}}
    assert merge(base, override) == {"routing": {"exclude": ["*.key"]}}
    assert base == {"routing": {"exclude": ["*.pem"]}}
    assert override == {"routing": {"exclude": ["*.key"]}}


def test_a_scalar_override_replaces_a_whole_table() -> None:
    assert merge({"local": {"model": "x"}}, {"local": "oops"}) == {"local": "oops"}
    with pytest.raises(ConfigError, match=r"^local: expected `object`, got `str`$"):
        decode(merge({"local": {"model": "x"}}, {"local": "oops"}))


# --- decode and semantic errors name the key ----------------------------------------------


def test_an_empty_config_is_valid_and_keeps_everything_local() -> None:
    cfg = decode(None)
    assert cfg == decode({})
    assert (cfg.routing.cloud, cfg.routing.chat, cfg.backends) == (False, ["local"], {})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"local": {"modle": "x"}}, "local.modle: unknown field"),
        ({"timeouts": {"connect_s": "3"}}, "timeouts.connect_s: expected `float`, got `str`"),
        ({"routing": {"chat": "local"}}, "routing.chat: expected `array`, got `str`"),
        ({"backends": {"work": {**CLOUD, "headerz": {}}}}, "backends.work.headerz: unknown field"),
        ({"routing": {"chat": ["nope"]}}, "routing.chat: unknown backend 'nope' (configured: ['local'])"),
        ({"routing": {"models": {"big": ["nope"]}}}, "routing.models.big: unknown backend 'nope'"),
        ({"backends": {"local": CLOUD}}, "backends.local: the name 'local' is reserved for the MLX model"),
        ({"backends": {"w": {"base_url": "https://x"}}}, "backends.w.model: required (the model name to use)"),
        ({"backends": {"w": {"model": "m"}}}, "backends.w.base_url: required"),
        ({"backends": {"w": {**CLOUD, "base_url": "ftp://x"}}}, "backends.w.base_url: must start with http:// or https://"),
        ({"timeouts": {"total_s": 0}}, "timeouts.total_s: must be > 0 and <= 86400, got 0"),
        ({"local": {"max_tokens": 0}}, "local.max_tokens: must be >= 1 and <= 1000000, got 0"),
        ({"inline": {"max_ms": -1}}, "inline.max_ms: must be >= 1 and <= 86400000, got -1"),
        ({"routing": {"breaker_failures": 0}}, "routing.breaker_failures: must be >= 1 and <= 1000000, got 0"),
        ({"routing": {"max_retries": -1}}, "routing.max_retries: must be >= 0 and <= 100, got -1"),
    ],
)  # fmt: skip
def test_each_bad_value_is_refused_with_a_message_naming_its_key(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        decode(data)
    assert str(err.value) == message


def test_an_mlx_backend_needs_a_model_but_no_url() -> None:
    cfg = decode({"backends": {"small": {"protocol": "mlx", "model": "smollm2-135m"}}})
    assert cfg.backends["small"].base_url == ""


def test_routing_max_tokens_reads_the_old_local_key_when_it_is_not_set() -> None:
    """`local.max_tokens` is the deprecated alias of `routing.max_tokens` (issue #13)."""
    assert decode({}).routing.max_tokens == 512
    assert decode({"local": {"max_tokens": 5}}).routing.max_tokens == 5
    both = {"local": {"max_tokens": 5}, "routing": {"max_tokens": 9}}
    assert decode(both).routing.max_tokens == 9
    with pytest.raises(
        ConfigError, match=r"^routing\.max_tokens: must be >= 1 and <= 1000000, got 0$"
    ):
        decode({"routing": {"max_tokens": 0}})


PASTED_KEYS = [
    "sk-proj-Pasted0123456789abcdef",
    "sk-ant-api03-Zq9xW3vT7rK2mN8pL4",
    "Zq9xW3vT7rK2mN8pL4abc",  # base62, a valid identifier
    "a1b2c3d4e5f6a7b8c9d0e1f2",  # lower-case hex, a valid identifier
    "xoxb1234567890abcdefgh",
    "AIzaSyD-0123456789abcdef",
]


@pytest.mark.parametrize("key", PASTED_KEYS)
def test_a_key_pasted_into_api_key_env_is_refused_without_quoting_it(key):
    with pytest.raises(ConfigError) as err:
        decode({"backends": {"w": {**CLOUD, "api_key_env": key}}})
    message = str(err.value)
    assert message.startswith("backends.w.api_key_env: looks like a key, not an environment")
    assert key not in message and key[:8] not in message


@pytest.mark.parametrize(
    "name", ["OPENAI_API_KEY", "MISTRAL_API_KEY2", "my_openai_key", "GROQ_KEY", "_K", "Key"]
)
def test_environment_variable_names_are_accepted(name):
    assert decode({"backends": {"w": {**CLOUD, "api_key_env": name}}})


@pytest.mark.parametrize(
    "data",
    [
        {"backends": {"w": {**CLOUD, "protocol": "{key}"}}},
        {"inline": {"multi_line": "{key}"}},
        {"local": {"dequantize": "{key}"}},
        {"routing": {"chat": ["{key}"]}},
        {"routing": {"models": {"fast": ["{key}"]}}},
        {"{key}": "x"},
        {"backends": {"w": {**CLOUD, "{key}": "x"}}},
    ],
)
@pytest.mark.parametrize("key", PASTED_KEYS[:3])
def test_config_errors_never_quote_a_value_that_looks_like_a_key(data, key):
    import json

    with pytest.raises(ConfigError) as err:
        decode(json.loads(json.dumps(data).replace("{key}", key)))
    assert key not in str(err.value) and "looks like a key, not shown" in str(err.value)


def test_config_errors_still_quote_ordinary_values():
    with pytest.raises(ConfigError, match="invalid enum value 'sometimes'"):
        decode({"inline": {"multi_line": "sometimes"}})
    with pytest.raises(ConfigError, match="unknown backend 'evil'"):
        decode({"routing": {"chat": ["evil"]}})
