"""Config decoding: every error names the key, and says what the key takes where that is a
fixed set of values (the message reaches the user as a showMessage, so it must be actionable)."""

from __future__ import annotations

from typing import Any

import pytest

from mlxd.config import ConfigError, decode


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"inline": {"multi_line": "sometimes"}},
            "inline.multi_line: invalid enum value 'sometimes'; "
            "expected one of 'auto', 'always', 'never'",
        ),
        (
            {"local": {"dequantize": "maybe"}},
            "local.dequantize: invalid enum value 'maybe'; "
            "expected one of 'auto', 'always', 'never'",
        ),
        (
            {"backends": {"work": {"protocol": "grpc", "base_url": "http://x"}}},
            "backends.work.protocol: invalid enum value 'grpc'; "
            "expected one of 'openai', 'anthropic', 'mlx'",
        ),
        ({"inline": {"max_ms": "fast"}}, "inline.max_ms: expected `int`, got `str`"),
        (
            {"local": {"speculative": "on"}},
            "local.speculative: invalid enum value 'on'; expected one of 'auto', 'off'",
        ),
        ({"local": {"draft_tokens": 0}}, "local.draft_tokens: must be >= 1 and <= 64, got 0"),
        ({"inline": {"multiline": "auto"}}, "inline.multiline: unknown field"),
    ],
)
def test_errors_name_the_key_and_the_allowed_values(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        decode(data)
    assert str(err.value) == message


def test_multi_line_defaults_to_auto_and_takes_each_value() -> None:
    assert decode({}).inline.multi_line == "auto"
    for value in ("auto", "always", "never"):
        assert decode({"inline": {"multi_line": value}}).inline.multi_line == value


def test_request_params_name_the_allowed_values_too() -> None:
    from mlxd import protocol as P

    with pytest.raises(P.InvalidParams) as err:
        P.parse({"messages": [{"role": "bot", "content": "x"}]}, P.ChatParams)
    assert str(err.value) == (
        "messages[0].role: invalid enum value 'bot'; expected one of 'system', 'user', 'assistant'"
    )


def test_a_draft_model_is_for_local_models_only() -> None:
    assert decode({"local": {"draft_model": "smollm2-135m"}}).local.draft_model == "smollm2-135m"
    mlx = {"protocol": "mlx", "model": "m", "draft_model": "d"}
    assert decode({"backends": {"small": mlx}}).backends["small"].draft_model == "d"
    cloud = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "draft_model": "d"}
    with pytest.raises(ConfigError, match=r"backends\.cloud\.draft_model: only for protocol"):
        decode({"backends": {"cloud": cloud}})
