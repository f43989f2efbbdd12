"""Issue 14 item 11, attacked: odd numbers in settings are refused with a message naming the key
(strings, bools and floats for ints, -0.0, huge values, infinities, NaN)."""

from __future__ import annotations

from typing import Any

import pytest

from mlxd.config import ConfigError, decode

REFUSED = [
    ({"inline": {"max_tokens": "5"}}, "inline.max_tokens"),
    ({"inline": {"max_tokens": 1.5}}, "inline.max_tokens"),
    ({"inline": {"max_tokens": True}}, "inline.max_tokens"),
    ({"timeouts": {"total_s": -0.0}}, "timeouts.total_s"),
    ({"timeouts": {"total_s": "inf"}}, "timeouts.total_s"),
    ({"timeouts": {"total_s": True}}, "timeouts.total_s"),
    ({"local": {"prompt_cache_mb": 10**40}}, "local.prompt_cache_mb"),
    ({"routing": {"max_retries": -0.0}}, "routing.max_retries"),
    ({"local": {"memory_limit_gb": float("-inf")}}, "local.memory_limit_gb"),
    ({"local": {"idle_unload_s": float("nan")}}, "local.idle_unload_s"),
    ({"inline": {"max_ms": 0}}, "inline.max_ms"),
    ({"routing": {"breaker_failures": 0}}, "routing.breaker_failures"),
]


@pytest.mark.parametrize(("settings", "key"), REFUSED, ids=[k for _, k in REFUSED])
def test_odd_numbers_are_refused_naming_the_key(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key}: "):
        decode(settings)


def test_a_huge_number_is_named_readably() -> None:
    with pytest.raises(ConfigError) as err:
        decode({"timeouts": {"total_s": 1e308}})
    assert len(str(err.value)) < 120, str(err.value)


@pytest.mark.parametrize(
    ("settings", "shown"),
    [
        ({"timeouts": {"total_s": 1e308}}, "got 1e+308"),
        ({"timeouts": {"total_s": -1e300}}, "got -1e+300"),
        ({"local": {"prompt_cache_mb": 10**40}}, "got 1e+40"),
        ({"local": {"prompt_cache_mb": 10**400}}, "got ~1e+400"),
        ({"inline": {"max_ms": 0}}, "got 0"),
        ({"timeouts": {"total_s": 1.5e9}}, "got 1500000000"),
    ],
)
def test_numbers_in_messages_are_short(settings: dict[str, Any], shown: str) -> None:
    with pytest.raises(ConfigError) as err:
        decode(settings)
    assert str(err.value).endswith(shown) and len(str(err.value)) < 120, str(err.value)


@pytest.mark.parametrize(
    "name", ["a\nb", "", "x" * 65, "tab\tname", "-lead", "sp ace", "\u202egro"]
)
def test_a_backend_name_that_is_not_a_plain_identifier_is_refused_escaped(name: str) -> None:
    entry = {"protocol": "openai", "base_url": "https://x", "model": "m"}
    with pytest.raises(ConfigError, match="^backends: invalid name ") as err:
        decode({"backends": {name: entry}})
    assert "\n" not in str(err.value) and "\t" not in str(err.value) and len(str(err.value)) < 200


@pytest.mark.parametrize("name", ["openai", "work-2", "claude_3.5", "A"])
def test_plain_backend_names_are_accepted(name: str) -> None:
    entry = {"protocol": "openai", "base_url": "https://x", "model": "m"}
    assert name in decode({"backends": {name: entry}}).backends
