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


@pytest.mark.xfail(
    strict=True,
    reason="attack: a huge float (1e308) is printed as its 309-digit integer in the error: "
    "config._num uses int(x) for every integral float",
)
def test_a_huge_number_is_named_readably() -> None:
    with pytest.raises(ConfigError) as err:
        decode({"timeouts": {"total_s": 1e308}})
    assert len(str(err.value)) < 120, str(err.value)
