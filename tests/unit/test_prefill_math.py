"""Prefill chunks' softmax and SiLU on mlxd's exp (models/prefill_math.py): as accurate as
MLX's ops, used only from MIN_ROWS query rows up, and swapped into a real model's module."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from mlxd.models import prefill_math as pm


@pytest.fixture
def llama_module() -> Iterator[object]:
    """mlx-lm's llama module with its own functions, put back as they were after the test
    (install is process-wide: a model an earlier test in this worker loaded may have wrapped
    them, and the fresh clone's run then counted MLX's `want` as a prefill call: [17, 17])."""
    import mlx_lm.models.llama as llama

    saved = {name: getattr(llama, name) for name in pm._WRAPPERS}
    for name, fn in saved.items():
        while hasattr(fn, "original"):
            fn = fn.original
        setattr(llama, name, fn)
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


def test_swiglu_does_not_overflow_where_silu_times_up_does_not() -> None:
    gate, up = mx.array([-87.0, 80.0]), mx.array([1e38, 1e30])
    want = np.array(nn.silu(gate) * up)  # about [-143, 8e31]: finite
    got = np.array(pm.swiglu(gate, up))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-5)


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


def test_attention_with_a_value_head_size_of_its_own() -> None:
    # DeepSeek-V2, MiniCPM3: values narrower than queries and keys (the attack's crash).
    key = iter(mx.random.split(mx.random.key(3), 3))
    q = mx.random.normal((1, 4, 20, 32), key=next(key))
    k = mx.random.normal((1, 4, 20, 32), key=next(key))
    v = mx.random.normal((1, 4, 20, 24), key=next(key))
    want = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.2, mask="causal")
    got = pm.attention(q, k, v, 0.2, "causal")
    assert got.shape == want.shape == (1, 4, 20, 24)
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=2e-6)


def test_a_row_that_sees_no_key_is_finite_as_in_mlx() -> None:
    # Left padding in a batch: the padded rows see nothing. MLX averages every key there; a
    # NaN in them became the next layer's value and spread through the whole sequence.
    key = iter(mx.random.split(mx.random.key(4), 3))
    q = mx.random.normal((1, 2, 18, 16), key=next(key))
    k = mx.random.normal((1, 2, 18, 16), key=next(key))
    mask = mx.ones((1, 1, 18, 18), dtype=mx.bool_)
    mask[:, :, :3, :] = False
    want = mx.fast.scaled_dot_product_attention(q, k, k, scale=0.25, mask=mask)
    got = pm.attention(q, k, k, 0.25, mask)
    assert np.isfinite(np.array(got)).all()
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-5, atol=2e-6)


def test_fewer_rows_than_min_rows_keep_mlxs_ops_bit_for_bit(llama_module: object) -> None:
    calls: list[int] = []
    original = llama_module.scaled_dot_product_attention  # type: ignore[attr-defined]
    wrapped = pm._for_prefill_attention(original)
    seen = pm.attention
    me = threading.get_ident()

    def counted(q: mx.array, *a: object) -> mx.array:
        # This test's calls only: a model thread an earlier test left in this worker may still
        # prefill through the module (the fresh clone's run saw [17, 17]).
        if threading.get_ident() == me:
            calls.append(q.shape[2])
        return seen(q, *a)

    pm.attention = counted  # type: ignore[assignment]
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


def test_a_model_that_wraps_another_modules_layers_gets_them_too(
    llama_module: object, tiny_model: Path
) -> None:
    from mlx_lm import load

    class Wrapper(nn.Module):  # as smollm3's Model runs llama's layers
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

    model, _ = load(str(tiny_model))
    assert pm.install(Wrapper(model)) == ["scaled_dot_product_attention", "swiglu"]
    assert hasattr(llama_module.swiglu, "original")  # type: ignore[attr-defined]


def test_the_off_switch_installs_nothing(
    llama_module: object, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlx_lm import load

    monkeypatch.setenv(pm.OFF_ENV, "1")
    model, _ = load(str(tiny_model))
    original = llama_module.swiglu  # type: ignore[attr-defined]
    assert pm.install(model) == []
    assert llama_module.swiglu is original  # type: ignore[attr-defined]
