"""Prefill chunks' softmax and SiLU on mlxd's exp (models/prefill_math.py): as accurate as
MLX's ops, used only from MIN_ROWS query rows up, and swapped into a real model's module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from mlxd.models import prefill_math as pm


@pytest.fixture
def llama_module() -> Iterator[object]:
    """mlx-lm's llama module, its functions put back after the test (install is process-wide)."""
    import mlx_lm.models.llama as llama

    saved = {name: getattr(llama, name) for name in pm._WRAPPERS}
    yield llama
    for name, value in saved.items():
        setattr(llama, name, value)


def test_exp_matches_float64_over_the_float32_range() -> None:
    x = mx.linspace(pm.LOW, pm.HIGH, 1_000_003)
    got = np.array(pm.exp(x), dtype=np.float64)
    want = np.exp(np.array(x, dtype=np.float64))
    assert np.max(np.abs(got - want) / want) < 2e-7


def test_exp_is_zero_below_the_smallest_normal_and_for_minus_infinity() -> None:
    x = mx.array([-mx.inf, -1e30, -100.0, pm.LOW - 0.01, 0.0])
    assert np.array(pm.exp(x)).tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]


def test_swiglu_equals_silu_times_up() -> None:
    gate = mx.random.normal((1, 40, 96), key=mx.random.key(1)) * 8
    up = mx.random.normal((1, 40, 96), key=mx.random.key(2))
    want = np.array(nn.silu(gate) * up)
    np.testing.assert_allclose(np.array(pm.swiglu(gate, up)), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("length", "keys_len", "mask"),
    [
        (24, 24, "causal"),
        (20, 300, "causal"),  # a chunk deep in the prompt: it sees every earlier key
        (18, 18, None),
        (20, 50, "bool"),  # batched prefill: left padding as a boolean mask
        (20, 50, "additive"),
    ],
)
def test_attention_equals_mlxs_with_grouped_query_heads(
    length: int, keys_len: int, mask: str | None
) -> None:
    key = iter(mx.random.split(mx.random.key(7), 5))
    q = mx.random.normal((2, 9, length, 32), key=next(key))
    k = mx.random.normal((2, 3, keys_len, 32), key=next(key))
    v = mx.random.normal((2, 3, keys_len, 32), key=next(key))
    m: object = mask
    if mask == "bool":
        m = mx.random.uniform(shape=(2, 1, length, keys_len), key=next(key)) > 0.3
    elif mask == "additive":
        m = mx.random.normal((2, 1, length, keys_len), key=next(key))
    want = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.17, mask=m)
    got = pm.attention(q, k, v, 0.17, m)
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=2e-6)


def test_fewer_rows_than_min_rows_keep_mlxs_ops_bit_for_bit(llama_module: object) -> None:
    calls: list[int] = []
    original = llama_module.scaled_dot_product_attention  # type: ignore[attr-defined]
    wrapped = pm._for_prefill_attention(original)
    seen = pm.attention
    pm.attention = lambda q, *a: calls.append(q.shape[2]) or seen(q, *a)  # type: ignore[assignment]
    try:
        for rows in (1, pm.MIN_ROWS - 1, pm.MIN_ROWS):
            q = mx.random.normal((1, 4, rows, 16), key=mx.random.key(rows))
            k = mx.random.normal((1, 2, rows + 5, 16), key=mx.random.key(rows + 1))
            mask = "causal" if rows > 1 else None
            got = wrapped(q, k, k, cache=None, scale=0.25, mask=mask)
            want = original(q, k, k, cache=None, scale=0.25, mask=mask)
            if rows < pm.MIN_ROWS:  # a decode step or a verify pass: exactly MLX's
                assert (np.array(got) == np.array(want)).all()
    finally:
        pm.attention = seen  # type: ignore[assignment]
    assert calls == [pm.MIN_ROWS]


def test_install_swaps_a_real_models_functions_once_and_keeps_its_logits(
    llama_module: object, tiny_model: Path
) -> None:
    from mlx_lm import load

    model, tok = load(str(tiny_model))
    ids = mx.array([tok.encode("def total(items):\n    return sum(i.price for i in items)\n" * 3)])
    assert ids.shape[1] >= pm.MIN_ROWS
    before = model(ids)
    assert pm.install(model) == ["scaled_dot_product_attention", "swiglu"]
    wrapped = llama_module.swiglu  # type: ignore[attr-defined]
    assert pm.install(model) == ["scaled_dot_product_attention", "swiglu"]
    assert llama_module.swiglu is wrapped  # not wrapped twice  # type: ignore[attr-defined]
    assert sys.modules[type(model).__module__] is llama_module
    after = model(ids)
    np.testing.assert_allclose(np.array(after), np.array(before), rtol=1e-4, atol=1e-4)
    assert (np.array(after.argmax(-1)) == np.array(before.argmax(-1))).all()


def test_the_off_switch_installs_nothing(
    llama_module: object, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlx_lm import load

    monkeypatch.setenv(pm.OFF_ENV, "1")
    model, _ = load(str(tiny_model))
    original = llama_module.swiglu  # type: ignore[attr-defined]
    assert pm.install(model) == []
    assert llama_module.swiglu is original  # type: ignore[attr-defined]
