"""A faster softmax and SiLU for prefill chunks on CPU: MLX's CPU `exp` costs ~19 ns a value.

A 64-token prefill chunk of the embedded model computes 2.9 M sigmoids (SiLU in its MLP) and,
at a depth of 1,024 tokens, 18 M attention weights. MLX 0.32's CPU `exp` (scalar, with a slow
`floor`) runs at ~19 ns a value and its sigmoid at ~25 ns, against ~1 ns for numpy's. So half
of a deep chunk's time was `exp`. Here `exp` is built from MLX's fused elementwise ops
(`mx.compile`): the same kind of algorithm MLX uses (2^n times a polynomial, Cephes' `expf`
with Cody-Waite range reduction, relative error ~1e-7), at ~4 ns a value. Measured per layer: SwiGLU
of 64 x 1536 values 2.2 -> 0.5 ms, attention of 64 queries over 1,024 keys 14 -> 9 ms; a whole
prefill: `make bench prefill`.

Only inputs of at least MIN_ROWS query rows, float32, take this path. The attention of decode
steps and speculative verify passes (at most gemv_forward.MAX_ROWS rows) goes to mlxd's native
library where it is loaded (attention.py: row by row, so a verify pass's rows stay
bit-identical to plain decode steps), else to MLX's; so does their SwiGLU (activation.py,
value by value). Everything else (other dtypes, quantized KV caches, attention sinks) goes to
the original functions. Every layer's attention output is started at once (`start`), so MLX
computes a layer while Python builds the next one's graph.

`install(model)` swaps the functions into the model's mlx-lm module (its `swiglu` and
`scaled_dot_product_attention` globals); MLXD_NO_FAST_PREFILL_MATH=1 turns it off.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import partial
from types import ModuleType
from typing import Any

import mlx.core as mx

from mlxd.gemv_forward import MAX_ROWS

from .activation import available as native_swiglu_available
from .activation import swiglu as native_swiglu
from .attention import attention as native_attention
from .attention import available as native_attention_available

log = logging.getLogger(__name__)

OFF_ENV = "MLXD_NO_FAST_PREFILL_MATH"
# Fewer query rows than this keep MLX's ops: decode and verify passes (see the docstring).
MIN_ROWS = MAX_ROWS + 1
# exp(x) is computed for x in [LOW, HIGH]: below LOW the result is 0 (a float32 exp there is
# under the smallest normal number), above HIGH float32 overflows.
LOW = -87.33
HIGH = 88.37
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693359375  # ln 2 in two parts (Cody-Waite): n * _LN2_HI is exact in float32
_LN2_LO = -2.12194440e-4
_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1)


@partial(mx.compile, shapeless=True)
def _exp_parts(x: mx.array) -> tuple[mx.array, mx.array]:
    """exp(x) as (bits of 2^n as int32, p) with exp(x) = 2^n * p; x float32."""
    x = mx.clip(x, LOW, HIGH)
    biased = (x * _LOG2E + 127.5).astype(mx.int32)  # n + 127, n = round(x / ln 2): > 0 here
    n = (biased - 127).astype(mx.float32)
    r = x - n * _LN2_HI - n * _LN2_LO  # |r| <= ln(2) / 2
    p = _POLY[0]
    for c in _POLY[1:]:
        p = p * r + c
    p = (p * r + 0.5) * r * r + r + 1.0
    return mx.left_shift(biased, 23), p


def _pow2(bits: mx.array) -> mx.array:
    # Outside the compiled function: mx.compile(shapeless=True) cannot trace a view.
    return bits.view(mx.float32)


@partial(mx.compile, shapeless=True)
def _exp_join(pow2: mx.array, p: mx.array, x: mx.array) -> mx.array:
    return mx.where(x < LOW, 0.0, pow2 * p)


def exp(x: mx.array) -> mx.array:
    """e**x for a float32 array (any shape): relative error ~1e-7 on [LOW, HIGH], 0 below
    LOW (and for -inf), HIGH's value above it."""
    bits, p = _exp_parts(x)
    return _exp_join(_pow2(bits), p, x)


@partial(mx.compile, shapeless=True)
def _swiglu_join(pow2: mx.array, p: mx.array, gate: mx.array, up: mx.array) -> mx.array:
    return gate / (1.0 + pow2 * p) * up  # silu(g) = g / (1 + e^-g); gate * up may overflow


def swiglu(gate: mx.array, up: mx.array) -> mx.array:
    """silu(gate) * up, float32 arrays of one shape (mlx-lm's activations.swiglu)."""
    bits, p = _exp_parts(-gate)
    return _swiglu_join(_pow2(bits), p, gate, up)


def attention(
    queries: mx.array, keys: mx.array, values: mx.array, scale: float, mask: Any
) -> mx.array:
    """softmax(scale * Q K^T + mask) V, as mx.fast.scaled_dot_product_attention computes it.

    Shapes: queries (B, H, L, D), keys (B, Hkv, S, D) and values (B, Hkv, S, Dv) with H a
    multiple of Hkv (grouped-query attention); mask None, "causal" (query i sees keys up to
    S - L + i), or an array of shape (L, S) or (B, 1, L, S): bool (True: attend) or additive.
    A key masked out gets the lowest float32 score, as in MLX: a row that sees no key averages
    them all instead of dividing 0 by 0. Returns (B, H, L, Dv).
    """
    b, h, length, d = queries.shape
    kv_heads, keys_len = keys.shape[1], keys.shape[2]
    q = (queries * scale).reshape(b, kv_heads, h // kv_heads, length, d)
    scores = q @ mx.expand_dims(keys, 2).swapaxes(-1, -2)  # (B, Hkv, H/Hkv, L, S)
    lowest = mx.finfo(scores.dtype).min
    if isinstance(mask, str):
        rows = mx.arange(keys_len - length, keys_len)[:, None]
        scores = mx.where(rows >= mx.arange(keys_len)[None], scores, lowest)
    elif mask is not None:
        mask = mx.expand_dims(mask, 1) if mask.ndim == 4 else mask  # over (Hkv, H/Hkv)
        scores = mx.where(mask, scores, lowest) if mask.dtype == mx.bool_ else scores + mask
    weights = exp(scores - mx.max(scores, axis=-1, keepdims=True))
    out = (weights @ mx.expand_dims(values, 2)) / mx.sum(weights, axis=-1, keepdims=True)
    return out.reshape(b, h, length, values.shape[-1])


def _mask_shape_ok(mask: Any) -> bool:
    if mask is None or isinstance(mask, str):
        return mask is None or mask == "causal"
    return mask.ndim == 2 or (mask.ndim == 4 and mask.shape[1] == 1)


def start(out: mx.array) -> mx.array:
    """`out`, its computation started (mx.async_eval): MLX's CPU stream computes this layer
    while Python builds the next one's graph (~0.2 ms a layer of the embedded model; a forward
    pass's graph took ~6 ms to build, computed only after). A one-token pass 900 tokens deep
    measured 43.9 -> 32.1 ms, a 3-token one 64.0 -> 55.9 ms, mlx-lm's generate_step 28.7 ->
    39.8 tok/s; the values do not change. Inside a function transformation (mx.compile, vmap)
    nothing can be evaluated: there the graph is left as it is."""
    try:
        mx.async_eval(out)
    except ValueError:
        pass
    return out


def _for_prefill_attention(original: Callable[..., mx.array]) -> Callable[..., mx.array]:
    def scaled_dot_product_attention(
        queries: mx.array,
        keys: mx.array,
        values: mx.array,
        cache: Any,
        scale: float,
        mask: Any,
        sinks: Any = None,
    ) -> mx.array:
        out = None
        if (
            queries.dtype == mx.float32
            and sinks is None
            and not hasattr(cache, "bits")  # a quantized KV cache
            and _mask_shape_ok(mask)
        ):
            if queries.shape[2] >= MIN_ROWS:
                out = attention(queries, keys, values, scale, mask)
            else:
                out = native_attention(queries, keys, values, scale, mask)
        if out is None:
            out = original(queries, keys, values, cache=cache, scale=scale, mask=mask, sinks=sinks)
        return start(out)

    scaled_dot_product_attention.original = original  # type: ignore[attr-defined]
    return scaled_dot_product_attention


def _for_prefill_swiglu(original: Callable[..., mx.array]) -> Callable[..., mx.array]:
    def swiglu_(gate: mx.array, up: mx.array) -> mx.array:
        if gate.shape != up.shape or gate.dtype != mx.float32 or up.dtype != mx.float32:
            return original(gate, up)
        if gate.ndim >= 2 and gate.shape[-2] >= MIN_ROWS:
            return swiglu(gate, up)
        out = native_swiglu(gate, up)
        return original(gate, up) if out is None else out

    swiglu_.original = original  # type: ignore[attr-defined]
    return swiglu_


_WRAPPERS = {
    "scaled_dot_product_attention": _for_prefill_attention,
    "swiglu": _for_prefill_swiglu,
}


def modules_of(model: Any) -> list[ModuleType]:
    """The Python modules `model` and its layers are defined in (what `install` patches)."""
    names = {type(model).__module__} | {type(m).__module__ for m in model.modules()}
    return [m for m in map(sys.modules.get, sorted(names)) if m is not None]


def install(model: Any) -> list[str]:
    """Use this module's functions for `model`'s prefill chunks on CPU: the names swapped in
    the mlx-lm modules its layers come from (a wrapper model such as smollm3's runs llama's
    layers). Process-wide: every model of those modules gets them, whoever loads it. Idempotent.
    [] when MLX runs on a GPU, when MLXD_NO_FAST_PREFILL_MATH is set, or when no module has
    either name."""
    if os.environ.get(OFF_ENV) or mx.default_device() != mx.cpu:
        return []
    done: set[str] = set()
    for module in modules_of(model):
        for name, wrap in _WRAPPERS.items():
            current = getattr(module, name, None)
            if not callable(current):
                continue
            if not hasattr(current, "original"):
                setattr(module, name, wrap(current))
            done.add(name)
            log.debug("prefill math: %s in %s", name, module.__name__)
    if done:  # their checks compute a product: here, not inside a traced forward pass
        native_attention_available(), native_swiglu_available()
    return sorted(done)
