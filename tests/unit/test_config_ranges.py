"""Every number of the config schema has a documented range; out of it, the key is named."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mlxd.config import RANGES, Config, ConfigError, decode

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


def _cfg(key: str, value: float) -> dict:
    section, name = key.split(".")
    return {section: {name: value}}


def _numeric_keys() -> set[str]:
    cfg = Config()
    keys = set()
    for section in ("local", "routing", "timeouts", "inline", "shared"):
        for name in type(getattr(cfg, section)).__struct_fields__:
            value = getattr(getattr(cfg, section), name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                keys.add(f"{section}.{name}")
    return keys


def test_every_number_in_the_schema_has_a_range() -> None:
    assert _numeric_keys() == set(RANGES)


@pytest.mark.parametrize("key", sorted(RANGES))
def test_out_of_range_and_non_finite_values_name_the_key(key: str) -> None:
    low, high, low_ok = RANGES[key]
    is_int = isinstance(getattr(getattr(Config(), key.split(".")[0]), key.split(".")[1]), int)
    bad = [low - 1, high + 1] + ([] if low_ok else [low])
    if not is_int:
        bad += [math.nan, math.inf, -math.inf]
    for value in bad:
        with pytest.raises(ConfigError) as err:
            decode(_cfg(key, int(value) if is_int and math.isfinite(value) else value))
        assert str(err.value).startswith(f"{key}: "), (value, err.value)


@pytest.mark.parametrize("key", sorted(RANGES))
def test_the_ends_of_each_range_are_accepted(key: str) -> None:
    low, high, low_ok = RANGES[key]
    is_int = isinstance(getattr(getattr(Config(), key.split(".")[0]), key.split(".")[1]), int)
    for value in ([low] if low_ok else []) + [high]:
        decode(_cfg(key, int(value) if is_int else float(value)))


def test_the_issue_inputs() -> None:
    with pytest.raises(ConfigError, match="local.prompt_cache_mb"):
        decode({"local": {"prompt_cache_mb": -1}})
    with pytest.raises(ConfigError, match="timeouts.total_s: must be a finite number"):
        decode({"timeouts": {"total_s": math.nan}})


@pytest.mark.parametrize("key", sorted(RANGES))
def test_each_range_is_documented(key: str) -> None:
    section, name = key.split(".")
    low, high, _ = RANGES[key]
    part = DOC.split(f"## `[{section}]`", 1)[1].split("\n## ", 1)[0]
    row = next((ln for ln in part.splitlines() if ln.startswith(f"| `{name}` |")), "")
    heading = part.splitlines()[0]
    assert f"{int(high)}" in row + heading, (key, row)
